//! Xen's node permissions: an owner (entry 0, whose letter is the
//! default for everyone else) and per-domain entries, written as strings
//! like "n0", "r1", "b5" (`xenstore_strings_to_perms`). xenstored's
//! `perm_for_conn` decides what a caller may do.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::XsError;
use crate::DomId;

/// `DOMID_ANY` (`xen.h`): an entry matching every domain.
pub const DOMID_ANY: DomId = 0x7FF5;

/// What one entry grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Whether this grants reading.
    pub fn can_read(self) -> bool {
        matches!(self, Self::Read | Self::Both)
    }

    /// Whether this grants writing.
    pub fn can_write(self) -> bool {
        matches!(self, Self::Write | Self::Both)
    }

    fn letter(self) -> char {
        match self {
            Self::None => 'n',
            Self::Read => 'r',
            Self::Write => 'w',
            Self::Both => 'b',
        }
    }
}

/// One permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The domain the entry is about ([`DOMID_ANY`] for all).
    pub domid: DomId,
    /// What it grants.
    pub access: Access,
}

/// A node's permissions: never empty; entry 0 is the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(Vec<Perm>);

/// What a caller may do with a node (xenstored's `XS_PERM_*` mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// May read the value, children and permissions.
    pub read: bool,
    /// May write, create below, remove.
    pub write: bool,
    /// Owns the node: may change its permissions.
    pub owner: bool,
}

impl Perms {
    /// Permissions with only an owner, whose letter is everyone's default.
    pub fn owned_by(owner: DomId, default: Access) -> Self {
        Self(alloc::vec![Perm {
            domid: owner,
            access: default
        }])
    }

    /// Permissions from entries (entry 0 the owner), `None` if empty.
    pub fn from_entries(entries: Vec<Perm>) -> Option<Self> {
        (!entries.is_empty()).then_some(Self(entries))
    }

    /// The owner (entry 0).
    pub fn owner(&self) -> DomId {
        self.0[0].domid
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: permissions have an owner entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same entries with a new owner (xenstored: an unprivileged
    /// domain owns the nodes it creates).
    pub fn with_owner(&self, owner: DomId) -> Self {
        let mut entries = self.0.clone();
        entries[0].domid = owner;
        Self(entries)
    }

    /// The entries without those naming `domid` (other than the owner),
    /// and with the owner replaced by `new_owner` if it was `domid`:
    /// xenstored's clean-up when a domain goes away, so a later domain
    /// reusing the domid inherits nothing.
    pub fn forget(&self, domid: DomId, new_owner: DomId) -> Self {
        let mut entries: Vec<Perm> = Vec::with_capacity(self.0.len());
        for (i, p) in self.0.iter().enumerate() {
            if i == 0 {
                let owner = if p.domid == domid { new_owner } else { p.domid };
                entries.push(Perm {
                    domid: owner,
                    access: p.access,
                });
            } else if p.domid != domid {
                entries.push(*p);
            }
        }
        Self(entries)
    }

    /// xenstored's `perm_for_conn`: privileged callers and the owner get
    /// everything; otherwise the first entry naming the caller (or
    /// [`DOMID_ANY`]) after the owner, else the owner entry's letter.
    pub fn rights_for(&self, domid: DomId, privileged: bool) -> Rights {
        let matches = |p: &Perm| p.domid == domid || p.domid == DOMID_ANY;
        if privileged || matches(&self.0[0]) {
            return Rights {
                read: true,
                write: true,
                owner: true,
            };
        }
        let entry = self.0[1..]
            .iter()
            .find(|p| matches(p))
            .unwrap_or(&self.0[0]);
        Rights {
            read: entry.access.can_read(),
            write: entry.access.can_write(),
            owner: false,
        }
    }

    /// The `XS_GET_PERMS` payload: one NUL-terminated string per entry.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            let s: String = format!("{}{}", p.access.letter(), p.domid);
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out
    }

    /// Parses permission strings ("r1", ...), at least one, or `EINVAL`.
    pub fn parse(strings: &[&[u8]]) -> Result<Self, XsError> {
        if strings.is_empty() {
            return Err(XsError::Einval);
        }
        let entries = strings
            .iter()
            .map(|s| parse_one(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(entries))
    }
}

fn parse_one(s: &[u8]) -> Result<Perm, XsError> {
    let (&letter, digits) = s.split_first().ok_or(XsError::Einval)?;
    let access = match letter {
        b'n' => Access::None,
        b'r' => Access::Read,
        b'w' => Access::Write,
        b'b' => Access::Both,
        _ => return Err(XsError::Einval),
    };
    let domid = crate::path::parse_domid(digits)?;
    let domid = DomId::try_from(domid).map_err(|_| XsError::Einval)?;
    Ok(Perm { domid, access })
}
