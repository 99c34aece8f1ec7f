//! The shared grant entries (`struct grant_entry_v1`, 8 bytes) in a
//! granter's table frames.
//!
//! The granter may rewrite an entry at any time. The hypervisor reads an
//! entry once into a local copy, checks that copy and acts on it (never a
//! second fetch: XSA-155), and sets `GTF_reading`/`GTF_writing` with a
//! compare-and-set that fails if the flags or domid changed since the
//! read, as Xen's `guest_cmpxchg` on the (flags, domid) pair does. The
//! compare and the write happen under the hypervisor lock while the
//! caller's vCPU is in the hypervisor; with vCPUs of the granter running
//! on other pCPUs the arch layer would have to make them one locked
//! `cmpxchg` on the frame.

use abi::xen::grant_table::GrantEntryV1;
use zerocopy::{FromBytes, IntoBytes};

use crate::mm::{Mfn, PhysMem};

/// Bytes of one v1 entry.
const ENTRY_BYTES: usize = core::mem::size_of::<GrantEntryV1>();

/// Where one grant entry lives in machine memory; made only by
/// [`super::table::GrantTable::locate`], so the entry lies in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLoc {
    mfn: Mfn,
    offset: usize,
}

impl EntryLoc {
    /// Entry `index` (below 512) of table frame `mfn`.
    pub(super) fn new(mfn: Mfn, index: usize) -> Self {
        Self {
            mfn,
            offset: index * ENTRY_BYTES,
        }
    }
}

/// Writes a whole entry: the hypervisor filling a reserved entry (the
/// console page granted to dom0) before the domain first runs.
pub fn write(mem: &mut impl PhysMem, at: EntryLoc, entry: &GrantEntryV1) {
    mem.frame_mut(at.mfn)[at.offset..at.offset + ENTRY_BYTES].copy_from_slice(entry.as_bytes());
}

/// One fetch of the whole entry.
pub fn read(mem: &impl PhysMem, at: EntryLoc) -> GrantEntryV1 {
    let bytes = &mem.frame(at.mfn)[at.offset..at.offset + ENTRY_BYTES];
    // Cannot fail: exactly the entry's size.
    GrantEntryV1::read_from_bytes(bytes).unwrap_or_default()
}

/// Sets the entry's flags to `flags` if its flags and domid are still
/// those of `seen`; otherwise returns the entry as it is now (one fetch).
pub fn compare_and_set_flags(
    mem: &mut impl PhysMem,
    at: EntryLoc,
    seen: &GrantEntryV1,
    flags: u16,
) -> Result<(), GrantEntryV1> {
    let now = read(mem, at);
    if now.flags != seen.flags || now.domid != seen.domid {
        return Err(now);
    }
    write_flags(mem, at, flags);
    Ok(())
}

/// Clears `mask` in the entry's flags, leaving the other bits as the
/// granter has them (Xen's `gnttab_clear_flags`, a locked `andw`).
pub fn clear_flags(mem: &mut impl PhysMem, at: EntryLoc, mask: u16) {
    if mask != 0 {
        let flags = read(mem, at).flags;
        write_flags(mem, at, flags & !mask);
    }
}

fn write_flags(mem: &mut impl PhysMem, at: EntryLoc, flags: u16) {
    mem.frame_mut(at.mfn)[at.offset..at.offset + 2].copy_from_slice(&flags.to_le_bytes());
}
