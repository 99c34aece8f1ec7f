//! Xen's store wire protocol (`xen/include/public/io/xs_wire.h`): the
//! `xsd_sockmsg` header, the message types, the `xsd_errors` strings and
//! the size limits, shared by the store in dom0 (`xenstore`) and the
//! guests' client (`guest_pv_shim::xenbus`). Every field is
//! little-endian `u32` on x86.

use core::fmt;

/// `XENSTORE_PAYLOAD_MAX`: the largest payload after a header, in bytes.
/// A client that announces more is a protocol violation (the connection
/// is dropped, as xenstored does).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path, in bytes.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: the longest path below a domain's home
/// (`/local/domain/<domid>/`), in bytes; xenstored's `path-max` quota.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// Size of `struct xsd_sockmsg`, in bytes.
pub const HEADER_SIZE: usize = 16;

/// `enum xsd_sockmsg_type`: the message types, with Xen's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_CONTROL` (`XS_DEBUG`): not served.
    Control = 0,
    /// `XS_DIRECTORY`: a node's children, NUL-separated.
    Directory = 1,
    /// `XS_READ`: a node's value.
    Read = 2,
    /// `XS_GET_PERMS`: a node's permissions as strings ("n0", "r1", ...).
    GetPerms = 3,
    /// `XS_WATCH`: path, token.
    Watch = 4,
    /// `XS_UNWATCH`: path, token.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: replies with the new transaction id.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: "T" commits, "F" aborts.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`: domid, gfn, event channel port (privileged).
    Introduce = 8,
    /// `XS_RELEASE`: domid (privileged).
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`: domid → "/local/domain/<domid>".
    GetDomainPath = 10,
    /// `XS_WRITE`: path, value (the value is binary, not NUL-terminated).
    Write = 11,
    /// `XS_MKDIR`: path.
    Mkdir = 12,
    /// `XS_RM`: path (removes the subtree).
    Rm = 13,
    /// `XS_SET_PERMS`: path, then one permission string per entry.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: server → client, path and token.
    WatchEvent = 15,
    /// `XS_ERROR`: server → client, one `xsd_errors` string.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`: domid → "T" or "F" (privileged).
    IsDomainIntroduced = 17,
    /// `XS_RESUME`: not served.
    Resume = 18,
    /// `XS_SET_TARGET`: not served.
    SetTarget = 19,
    /// `XS_RESET_WATCHES`: drops the connection's watches and transactions.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: path, offset → generation, children from offset.
    DirectoryPart = 22,
    /// `XS_GET_FEATURE`: not served.
    GetFeature = 23,
    /// `XS_SET_FEATURE`: not served.
    SetFeature = 24,
    /// `XS_GET_QUOTA`: not served.
    GetQuota = 25,
    /// `XS_SET_QUOTA`: not served.
    SetQuota = 26,
}

impl MsgType {
    /// The type with Xen's number `raw`, or `None` for an unknown type.
    pub fn from_raw(raw: u32) -> Option<Self> {
        use MsgType::*;
        const ALL: [MsgType; 26] = [
            Control,
            Directory,
            Read,
            GetPerms,
            Watch,
            Unwatch,
            TransactionStart,
            TransactionEnd,
            Introduce,
            Release,
            GetDomainPath,
            Write,
            Mkdir,
            Rm,
            SetPerms,
            WatchEvent,
            Error,
            IsDomainIntroduced,
            Resume,
            SetTarget,
            ResetWatches,
            DirectoryPart,
            GetFeature,
            SetFeature,
            GetQuota,
            SetQuota,
        ];
        ALL.into_iter().find(|t| *t as u32 == raw)
    }
}

/// `struct xsd_sockmsg`: the header in front of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `type`: a [`MsgType`] number (kept raw: unknown types get `ENOSYS`).
    pub msg_type: u32,
    /// `req_id`: chosen by the client, echoed in the reply.
    pub req_id: u32,
    /// `tx_id`: the transaction, 0 for none.
    pub tx_id: u32,
    /// `len`: payload bytes after the header.
    pub len: u32,
}

impl Header {
    /// Decodes the 16 header bytes.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            msg_type: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    /// Encodes the header as 16 little-endian bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        for (i, w) in [self.msg_type, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// The errors of `xsd_errors`, sent as `XS_ERROR` with the name as a
/// NUL-terminated string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsError {
    /// Invalid argument: bad path, bad number, wrong argument count.
    Einval,
    /// The caller's permissions do not allow the access.
    Eacces,
    /// Already exists (a duplicate watch).
    Eexist,
    /// Is a directory (dom0's store never sends it).
    Eisdir,
    /// No such node, watch or transaction.
    Enoent,
    /// Out of memory.
    Enomem,
    /// A quota was exceeded.
    Enospc,
    /// Internal I/O error.
    Eio,
    /// Directory not empty (dom0's store never sends it).
    Enotempty,
    /// Unknown or unserved message type.
    Enosys,
    /// Read-only (dom0's store never sends it).
    Erofs,
    /// A transaction is already active on this request.
    Ebusy,
    /// A transaction conflicted with another change: retry it.
    Eagain,
    /// Already connected (dom0's store never sends it).
    Eisconn,
    /// Argument list too long: a reply that would not fit in a payload.
    E2big,
    /// Operation not permitted: an unprivileged domain changing an owner.
    Eperm,
}

impl XsError {
    /// The `xsd_errors` string for this error.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Einval => "EINVAL",
            Self::Eacces => "EACCES",
            Self::Eexist => "EEXIST",
            Self::Eisdir => "EISDIR",
            Self::Enoent => "ENOENT",
            Self::Enomem => "ENOMEM",
            Self::Enospc => "ENOSPC",
            Self::Eio => "EIO",
            Self::Enotempty => "ENOTEMPTY",
            Self::Enosys => "ENOSYS",
            Self::Erofs => "EROFS",
            Self::Ebusy => "EBUSY",
            Self::Eagain => "EAGAIN",
            Self::Eisconn => "EISCONN",
            Self::E2big => "E2BIG",
            Self::Eperm => "EPERM",
        }
    }

    /// The error an `XS_ERROR` payload names (its string, NUL optional);
    /// `None` for a string not in `xsd_errors`.
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        let name = payload.strip_suffix(&[0]).unwrap_or(payload);
        ALL_ERRORS
            .into_iter()
            .find(|e| e.as_str().as_bytes() == name)
    }
}

/// Every [`XsError`].
const ALL_ERRORS: [XsError; 16] = [
    XsError::Einval,
    XsError::Eacces,
    XsError::Eexist,
    XsError::Eisdir,
    XsError::Enoent,
    XsError::Enomem,
    XsError::Enospc,
    XsError::Eio,
    XsError::Enotempty,
    XsError::Enosys,
    XsError::Erofs,
    XsError::Ebusy,
    XsError::Eagain,
    XsError::Eisconn,
    XsError::E2big,
    XsError::Eperm,
];

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_its_payload() {
        for e in ALL_ERRORS {
            assert_eq!(XsError::from_payload(e.as_str().as_bytes()), Some(e));
            let with_nul = [e.as_str().as_bytes(), b"\0"].concat();
            assert_eq!(XsError::from_payload(&with_nul), Some(e));
        }
        assert_eq!(XsError::from_payload(b"EWHAT\0"), None);
    }

    #[test]
    fn header_round_trips_little_endian() {
        let h = Header {
            msg_type: MsgType::Write as u32,
            req_id: 0x0102_0304,
            tx_id: 7,
            len: 4096,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..8], &[11, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(Header::decode(&bytes), h);
        assert_eq!(MsgType::from_raw(26), Some(MsgType::SetQuota));
        assert_eq!(MsgType::from_raw(20), None);
    }
}
