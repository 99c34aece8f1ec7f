//! A domain's grant table: the frames holding its shared entries, an
//! active entry per grant reference, and its maptrack.
//!
//! The active entries and the maptrack live on the hypervisor heap,
//! allocated (fallibly) as they are needed: 4 KiB of active entries per
//! table frame when the domain grows its table, the maptrack (7.5 KiB)
//! when it first maps a grant. A domain that grants one frame's worth
//! (a console and a store ring) and maps none, most domUs, costs 4 KiB.

use alloc::boxed::Box;

use abi::xen::domid::DomId;
use abi::xen::grant_table::{GrantRef, GRANT_ENTRIES_V1_PER_FRAME};
use heapless::Vec;

use super::entry::EntryLoc;
use super::maptrack::Maptrack;
use super::{GRANT_TABLE_FRAMES, NR_GRANT_ENTRIES};
use crate::mm::{FramePool, Gfn, Mfn, PhysMem};

/// What the hypervisor keeps about a grant reference while it is in use
/// (Xen's `active_grant_entry`): who pinned it, which frame, how often.
/// Set from the shared entry when the first pin is taken; later pins of
/// the same grantee reuse it without looking at the shared entry's frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveEntry {
    /// The pinned frame (MFNs are below 2^32: [`crate::mm::frame::MAX_PHYS_MEM`]).
    mfn: u32,
    /// The grantee holding the pins.
    pub domid: DomId,
    /// Read-only pins (mappings, copies in progress).
    pub readers: u8,
    /// Writable pins.
    pub writers: u8,
}

impl ActiveEntry {
    /// Whether any pin is held.
    pub fn is_pinned(&self) -> bool {
        self.readers != 0 || self.writers != 0
    }

    /// The pinned frame.
    pub fn mfn(&self) -> Mfn {
        Mfn(self.mfn.into())
    }

    pub(super) fn raw_mfn(&self) -> u32 {
        self.mfn
    }
}

/// The table cannot grow as asked; the doc comment is the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, displaydoc::Display)]
pub enum GrowError {
    /// more than {GRANT_TABLE_FRAMES} grant-table frames
    TooLarge,
    /// out of machine frames
    OutOfFrames,
    /// no heap for the active entries and maptrack
    OutOfMemory,
}

/// The maptrack of a domain that has none yet.
static NO_MAPPINGS: Maptrack = Maptrack::new();

/// One domain's grant table.
#[derive(Clone, Debug)]
pub struct GrantTable {
    frames: Vec<Mfn, GRANT_TABLE_FRAMES>,
    frame_gfns: [Option<Gfn>; GRANT_TABLE_FRAMES],
    /// One active entry per grant reference of `frames`.
    active: alloc::vec::Vec<ActiveEntry>,
    /// One element once the domain mapped a grant.
    maptrack: Option<Box<[Maptrack]>>,
}

impl Default for GrantTable {
    fn default() -> Self {
        Self::new()
    }
}

impl GrantTable {
    /// A table of no frames (every grant reference is out of range).
    pub const fn new() -> Self {
        Self {
            frames: Vec::new(),
            frame_gfns: [None; GRANT_TABLE_FRAMES],
            active: alloc::vec::Vec::new(),
            maptrack: None,
        }
    }

    /// Allocates the maptrack if not done yet.
    pub fn reserve(&mut self) -> Result<(), GrowError> {
        if self.maptrack.is_none() {
            let mut v = alloc::vec::Vec::new();
            v.try_reserve_exact(1).map_err(|_| GrowError::OutOfMemory)?;
            v.push(Maptrack::new());
            self.maptrack = Some(v.into_boxed_slice());
        }
        Ok(())
    }

    /// Heap bytes held: the active entries and the maptrack.
    pub fn heap_bytes(&self) -> usize {
        self.active.capacity() * core::mem::size_of::<ActiveEntry>()
            + self
                .maptrack
                .as_ref()
                .map_or(0, |_| core::mem::size_of::<Maptrack>())
    }

    /// Frames the table has now (`nr_frames` of `GNTTABOP_query_size`).
    pub fn nr_frames(&self) -> u32 {
        // At most GRANT_TABLE_FRAMES, a small constant.
        u32::try_from(self.frames.len()).unwrap_or(u32::MAX)
    }

    /// Grant references usable now.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * GRANT_ENTRIES_V1_PER_FRAME
    }

    /// Table frame `idx`, if allocated.
    pub fn frame(&self, idx: usize) -> Option<Mfn> {
        self.frames.get(idx).copied()
    }

    /// Where the domain mapped table frame `idx`, if it did.
    pub fn frame_gfn(&self, idx: usize) -> Option<Gfn> {
        self.frame_gfns.get(idx).copied().flatten()
    }

    /// Records where table frame `idx` is mapped.
    pub fn set_frame_gfn(&mut self, idx: usize, gfn: Option<Gfn>) {
        if let Some(slot) = self.frame_gfns.get_mut(idx) {
            *slot = gfn;
        }
    }

    /// Grows the table to `nr` frames (never shrinks), each allocated
    /// and scrubbed (all entries `GTF_invalid`). All or nothing.
    pub fn grow(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        nr: usize,
    ) -> Result<(), GrowError> {
        if nr > GRANT_TABLE_FRAMES {
            return Err(GrowError::TooLarge);
        }
        let entries = nr * GRANT_ENTRIES_V1_PER_FRAME as usize;
        let more = entries.saturating_sub(self.active.len());
        self.active
            .try_reserve_exact(more)
            .map_err(|_| GrowError::OutOfMemory)?;
        let before = self.frames.len();
        while self.frames.len() < nr {
            let Some(mfn) = pool.alloc() else {
                while self.frames.len() > before {
                    if let Some(mfn) = self.frames.pop() {
                        pool.free(mfn);
                    }
                }
                return Err(GrowError::OutOfFrames);
            };
            mem.frame_mut(mfn).fill(0);
            // Cannot fail: nr <= capacity.
            let _ = self.frames.push(mfn);
        }
        if more > 0 {
            self.active.resize(entries, ActiveEntry::default());
        }
        Ok(())
    }

    /// Where entry `gref` lives; `None` beyond the table.
    pub fn locate(&self, gref: GrantRef) -> Option<EntryLoc> {
        let per_frame = GRANT_ENTRIES_V1_PER_FRAME;
        let mfn = self.frames.get(usize::try_from(gref / per_frame).ok()?)?;
        Some(EntryLoc::new(*mfn, (gref % per_frame) as usize))
    }

    /// The active entry of `gref` (a default one beyond the table).
    pub fn active(&self, gref: GrantRef) -> ActiveEntry {
        let i = usize::try_from(gref).ok();
        i.and_then(|i| self.active.get(i))
            .copied()
            .unwrap_or_default()
    }

    fn active_mut(&mut self, gref: GrantRef) -> Option<&mut ActiveEntry> {
        let i = usize::try_from(gref).ok()?;
        self.active.get_mut(i)
    }

    /// Takes a pin on `gref` for `domid` on frame `mfn`. Counts stay below
    /// [`super::MAX_PINS`]: checked by the caller.
    pub(super) fn pin(&mut self, gref: GrantRef, domid: DomId, mfn: u32, readonly: bool) {
        if let Some(a) = self.active_mut(gref) {
            a.domid = domid;
            a.mfn = mfn;
            if readonly {
                a.readers += 1;
            } else {
                a.writers += 1;
            }
        }
    }

    /// Drops a pin on `gref`; returns the entry as it is after.
    pub(super) fn unpin(&mut self, gref: GrantRef, readonly: bool) -> ActiveEntry {
        let Some(a) = self.active_mut(gref) else {
            return ActiveEntry::default();
        };
        if readonly {
            a.readers = a.readers.saturating_sub(1);
        } else {
            a.writers = a.writers.saturating_sub(1);
        }
        *a
    }

    /// Whether `mfn` is pinned through any grant reference: its owner must
    /// not give it up.
    pub fn is_pinned(&self, mfn: Mfn) -> bool {
        self.active.iter().any(|a| a.is_pinned() && a.mfn() == mfn)
    }

    /// Every pinned frame, sorted (for lookups while the owner is
    /// released).
    pub fn pinned_frames(&self) -> Vec<u32, { NR_GRANT_ENTRIES as usize }> {
        let mut frames: Vec<u32, { NR_GRANT_ENTRIES as usize }> = self
            .active
            .iter()
            .filter(|a| a.is_pinned())
            .map(|a| a.mfn)
            .collect();
        frames.sort_unstable();
        frames
    }

    /// Mappings this domain holds.
    pub fn maptrack(&self) -> &Maptrack {
        self.maptrack
            .as_deref()
            .and_then(<[Maptrack]>::first)
            .unwrap_or(&NO_MAPPINGS)
    }

    /// Mappings this domain holds, writable; `None` until
    /// [`Self::reserve`] allocated the maptrack.
    pub fn maptrack_mut(&mut self) -> Option<&mut Maptrack> {
        self.maptrack
            .as_deref_mut()
            .and_then(<[Maptrack]>::first_mut)
    }

    /// Scrubs the table frames and returns them to the pool.
    pub fn free_frames(&mut self, pool: &mut impl FramePool, mem: &mut impl PhysMem) {
        while let Some(mfn) = self.frames.pop() {
            mem.frame_mut(mfn).fill(0);
            pool.free(mfn);
        }
        self.frame_gfns = [None; GRANT_TABLE_FRAMES];
    }
}
