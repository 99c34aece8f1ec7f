//! A domain's maptrack: the grant mappings it holds, by handle (Xen's
//! `struct grant_mapping`). `GNTTABOP_map_grant_ref` returns the handle;
//! `GNTTABOP_unmap_grant_ref` takes it back.

use abi::xen::domid::DomId;
use abi::xen::grant_table::{GrantHandle, GrantRef};

use super::MAPTRACK_ENTRIES;
use crate::mm::{Gfn, Mfn};

/// Whose grant a mapping came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Grant reference `gref` of the live domain `domid`, which counts
    /// this mapping in its active entry for `gref`.
    Grant {
        /// The granting domain.
        domid: DomId,
        /// Its grant reference.
        gref: GrantRef,
    },
    /// The granter was destroyed while this mapping existed: the mapping
    /// alone keeps the frame out of the pool (see [`super::release`]).
    Orphan,
}

/// One grant mapping in the mapper's p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Whose grant it is.
    pub source: Source,
    /// The granted frame.
    pub mfn: Mfn,
    /// Where the mapper has it (from `host_addr`).
    pub gfn: Gfn,
    /// Mapped read-only (`GNTMAP_readonly`).
    pub readonly: bool,
}

/// The bounded table of a domain's grant mappings.
#[derive(Clone, Debug)]
pub struct Maptrack {
    slots: [Option<Mapping>; MAPTRACK_ENTRIES],
}

impl Default for Maptrack {
    fn default() -> Self {
        Self::new()
    }
}

impl Maptrack {
    /// No mappings.
    pub const fn new() -> Self {
        Self {
            slots: [None; MAPTRACK_ENTRIES],
        }
    }

    /// Whether another mapping fits.
    pub fn has_room(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    /// Records `m` under the lowest free handle; `None` if full.
    pub fn insert(&mut self, m: Mapping) -> Option<GrantHandle> {
        let (handle, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())?;
        *slot = Some(m);
        GrantHandle::try_from(handle).ok()
    }

    /// The mapping with `handle` (any value a guest passes is fine).
    pub fn get(&self, handle: GrantHandle) -> Option<&Mapping> {
        self.slots.get(usize::try_from(handle).ok()?)?.as_ref()
    }

    /// Removes and returns the mapping with `handle`.
    pub fn remove(&mut self, handle: GrantHandle) -> Option<Mapping> {
        self.slots.get_mut(usize::try_from(handle).ok()?)?.take()
    }

    /// Removes and returns any one mapping (to empty the table).
    pub fn pop(&mut self) -> Option<Mapping> {
        self.slots.iter_mut().find_map(Option::take)
    }

    /// All mappings with their handles.
    pub fn iter(&self) -> impl Iterator<Item = (GrantHandle, &Mapping)> {
        self.slots
            .iter()
            .zip(0..)
            .filter_map(|(s, h)| s.as_ref().map(|m| (h, m)))
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a mapping sits at `gfn` of the mapper's p2m.
    pub fn maps_gfn(&self, gfn: Gfn) -> bool {
        self.slots.iter().flatten().any(|m| m.gfn == gfn)
    }

    /// Whether an orphaned mapping still holds `mfn`.
    pub fn holds_orphan(&self, mfn: Mfn) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|m| m.source == Source::Orphan && m.mfn == mfn)
    }

    /// Makes every mapping of `granter`'s grants an orphan.
    pub fn orphan(&mut self, granter: DomId) {
        for m in self.slots.iter_mut().flatten() {
            if matches!(m.source, Source::Grant { domid, .. } if domid == granter) {
                m.source = Source::Orphan;
            }
        }
    }
}
