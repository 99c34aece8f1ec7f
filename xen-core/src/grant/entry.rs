//! The shared grant entries (`struct grant_entry_v1`, 8 bytes) in a
//! granter's table frames, reached only through
//! [`crate::mm::shared_frame`]: the granter may rewrite an entry at any
//! time, on another pCPU.
//!
//! As in Xen's `_set_status_v1`: the (flags, domid) pair is fetched once
//! as one 32-bit word ([`Header`]), checked, and the status bits are set
//! with one locked `cmpxchg` on that word, which fails if the granter
//! changed either meanwhile (then the new word is checked again). Only
//! once `GTF_reading`/`GTF_writing` are set, which forbids the granter to
//! change the entry, is `frame` read ([`read_frame`]), so the frame used
//! is the one the granter cannot take back (XSA-155 class).

use abi::xen::domid::DomId;
use abi::xen::grant_table::GrantEntryV1;
use core::mem::{offset_of, size_of};

use crate::mm::{Mfn, PhysMem};

/// Bytes of one v1 entry.
const ENTRY_BYTES: usize = size_of::<GrantEntryV1>();

/// Where one grant entry lives in machine memory; made only by
/// [`super::table::GrantTable::locate`], so the entry lies in its frame
/// and is 8-byte aligned.
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

    fn field(self, offset: usize) -> usize {
        self.offset + offset
    }
}

/// The entry's first word: `flags` (bits 15:0) and `domid` (bits 31:16),
/// as Xen's `union grant_combo` sees them on little-endian x86.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain the entry grants to.
    pub domid: DomId,
}

impl Header {
    fn from_word(word: u32) -> Self {
        Self {
            flags: (word & 0xffff) as u16,
            domid: (word >> 16) as u16,
        }
    }

    fn word(self) -> u32 {
        u32::from(self.flags) | u32::from(self.domid) << 16
    }
}

const _: () = assert!(offset_of!(GrantEntryV1, flags) == 0);
const _: () = assert!(offset_of!(GrantEntryV1, domid) == 2);

/// Writes a whole entry: the hypervisor filling a reserved entry (the
/// console page granted to dom0) before the domain first runs. `frame`
/// first, then the header, as a granter must.
pub fn write(mem: &mut impl PhysMem, at: EntryLoc, entry: &GrantEntryV1) {
    let frame = mem.shared_frame(at.mfn);
    let header = Header {
        flags: entry.flags,
        domid: entry.domid,
    };
    // In range and aligned: `EntryLoc` is made only for an entry in its frame.
    let _ = frame.store_u32(at.field(offset_of!(GrantEntryV1, frame)), entry.frame);
    let _ = frame.store_u32(at.offset, header.word());
}

/// One fetch of the entry's header.
pub fn read_header(mem: &mut impl PhysMem, at: EntryLoc) -> Header {
    // In range and aligned (see `EntryLoc`): cannot fail.
    Header::from_word(mem.shared_frame(at.mfn).load_u32(at.offset).unwrap_or(0))
}

/// One fetch of the entry's `frame` (a GFN of the granter): read only
/// after the status bits are set.
pub fn read_frame(mem: &mut impl PhysMem, at: EntryLoc) -> u32 {
    let off = at.field(offset_of!(GrantEntryV1, frame));
    // In range and aligned (see `EntryLoc`): cannot fail.
    mem.shared_frame(at.mfn).load_u32(off).unwrap_or(0)
}

/// The whole entry, one fetch per word (for the toolstack's view and tests).
pub fn read(mem: &mut impl PhysMem, at: EntryLoc) -> GrantEntryV1 {
    let header = read_header(mem, at);
    GrantEntryV1 {
        flags: header.flags,
        domid: header.domid,
        frame: read_frame(mem, at),
    }
}

/// One locked `cmpxchg` of the header: becomes `new` if it is still
/// `seen`; otherwise returns the header as it is now.
pub fn compare_exchange_header(
    mem: &mut impl PhysMem,
    at: EntryLoc,
    seen: Header,
    new: Header,
) -> Result<(), Header> {
    match mem
        .shared_frame(at.mfn)
        .compare_exchange_u32(at.offset, seen.word(), new.word())
    {
        Ok(result) => result.map_err(Header::from_word),
        // In range and aligned (see `EntryLoc`): cannot happen.
        Err(_) => Err(seen),
    }
}

/// Clears `mask` in the entry's flags with one locked `and`, leaving the
/// other bits as the granter has them (Xen's `gnttab_clear_flags`).
pub fn clear_flags(mem: &mut impl PhysMem, at: EntryLoc, mask: u16) {
    if mask != 0 {
        // In range and aligned (see `EntryLoc`): cannot fail.
        let _ = mem.shared_frame(at.mfn).fetch_and_u16(at.offset, !mask);
    }
}
