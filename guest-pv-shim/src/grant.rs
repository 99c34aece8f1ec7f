//! The granting side of Xen's v1 grant table (`xen/include/public/grant_table.h`):
//! allocating grant references, writing entries in the order Xen reads
//! them, and ending access only when no mapping or copy is in progress
//! (Linux `gnttab_end_foreign_access_ref_v1`). Also the `GNTST_*` status
//! of the other side's operations.
//!
//! Portable: entries are atomics laid out as `grant_entry_v1`, so this
//! runs over the real table frames (`arch::gnttab`) and over a simulated
//! table in the host tests.

use core::fmt;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};

use abi::xen::domid::DomId;
use abi::xen::grant_table::{
    GrantRef, GNTTAB_NR_RESERVED_ENTRIES, GRANT_ENTRIES_V1_PER_FRAME, GTF_PERMIT_ACCESS,
    GTF_READING, GTF_READONLY, GTF_WRITING,
};

/// Grant-table frames the shim maps (512 entries each).
pub const GRANT_FRAMES: usize = 1;
/// Entries of the shim's grant table.
pub const MAX_GRANT_REFS: usize = GRANT_FRAMES * GRANT_ENTRIES_V1_PER_FRAME as usize;
/// The first reference the shim hands out: entries below are reserved for
/// the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`; 0 is the console ring).
pub const FIRST_FREE_REF: GrantRef = GNTTAB_NR_RESERVED_ENTRIES;

/// `struct grant_entry_v1`, 8 bytes, as atomics: the granting guest writes
/// `domid` and `frame`, then `flags`; the hypervisor sets and clears
/// `GTF_reading`/`GTF_writing` in `flags` while the grant is in use.
#[repr(C)]
pub struct GrantEntryCell {
    /// `GTF_*` type and flags.
    pub flags: AtomicU16,
    /// The domain granted access.
    pub domid: AtomicU16,
    /// The granted GFN.
    pub frame: AtomicU32,
}

/// Why a grant operation of the granting side failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// All references of the table are in use.
    TableFull,
    /// The GFN does not fit the v1 entry's 32-bit frame field.
    FrameTooBig(u64),
    /// The reference was not handed out by [`GrantTable::grant_access`].
    NotGranted(GrantRef),
    /// The other domain still maps or copies the frame
    /// (`GTF_reading`/`GTF_writing` set): the entry stays valid.
    InUse(GrantRef),
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TableFull => write!(f, "grant table full"),
            Self::FrameTooBig(gfn) => write!(f, "GFN {gfn:#x} does not fit a v1 entry"),
            Self::NotGranted(r) => write!(f, "grant reference {r} is not granted"),
            Self::InUse(r) => write!(f, "grant reference {r} is in use (reading/writing)"),
        }
    }
}

/// The entries of this domain's grant table and which references are
/// handed out (a bitmap: no allocation).
pub struct GrantTable<'a> {
    entries: &'a [GrantEntryCell],
    used: [AtomicU64; MAX_GRANT_REFS / 64],
}

impl<'a> GrantTable<'a> {
    /// The table over `entries` (at most [`MAX_GRANT_REFS`] are used);
    /// entries are not cleared: reserved ones belong to the toolstack.
    pub fn new(entries: &'a [GrantEntryCell]) -> Self {
        Self {
            entries: &entries[..entries.len().min(MAX_GRANT_REFS)],
            used: [const { AtomicU64::new(0) }; MAX_GRANT_REFS / 64],
        }
    }

    /// Grants `domid` access to our frame `gfn`, read-only or read-write;
    /// returns the reference to pass to it. `domid` and `frame` are
    /// written first, then (after a write barrier) `flags`, so the
    /// hypervisor never sees a valid entry with stale fields.
    pub fn grant_access(
        &self,
        domid: DomId,
        gfn: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let frame = u32::try_from(gfn).map_err(|_| GrantError::FrameTooBig(gfn))?;
        let gref = self.claim().ok_or(GrantError::TableFull)?;
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.write_entry(gref, domid, frame, flags);
        Ok(gref)
    }

    /// Ends access through `gref` if no mapping or copy uses it: clears the
    /// flags with compare-and-exchange against the hypervisor's
    /// `GTF_reading`/`GTF_writing` updates, then frees the reference.
    pub fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let entry = self.claimed(gref)?;
        let mut flags = entry.flags.load(Ordering::SeqCst);
        loop {
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse(gref));
            }
            match entry
                .flags
                .compare_exchange(flags, 0, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => flags = now,
            }
        }
        self.release(gref);
        Ok(())
    }

    /// Rewrites a handed-out entry, in the same order as [`Self::grant_access`]
    /// (to show the hypervisor copes with an entry changed under a mapping).
    pub fn rewrite(
        &self,
        gref: GrantRef,
        domid: DomId,
        gfn: u64,
        flags: u16,
    ) -> Result<(), GrantError> {
        let frame = u32::try_from(gfn).map_err(|_| GrantError::FrameTooBig(gfn))?;
        self.claimed(gref)?;
        self.write_entry(gref, domid, frame, flags);
        Ok(())
    }

    /// The entry's current flags (`GTF_*`, with the hypervisor's bits).
    pub fn flags(&self, gref: GrantRef) -> Option<u16> {
        self.entries
            .get(gref as usize)
            .map(|e| e.flags.load(Ordering::SeqCst))
    }

    fn write_entry(&self, gref: GrantRef, domid: DomId, frame: u32, flags: u16) {
        let entry = &self.entries[gref as usize];
        entry.domid.store(domid, Ordering::Relaxed);
        entry.frame.store(frame, Ordering::Relaxed);
        // wmb(): the fields above before the flags that make them valid.
        fence(Ordering::Release);
        entry.flags.store(flags, Ordering::Release);
    }

    fn claim(&self) -> Option<GrantRef> {
        (FIRST_FREE_REF as usize..self.entries.len()).find_map(|i| {
            let gref = GrantRef::try_from(i).ok()?;
            let bit = 1 << (i % 64);
            let was = self.used[i / 64].fetch_or(bit, Ordering::SeqCst);
            (was & bit == 0).then_some(gref)
        })
    }

    fn claimed(&self, gref: GrantRef) -> Result<&GrantEntryCell, GrantError> {
        let i = gref as usize;
        let handed_out = i >= FIRST_FREE_REF as usize
            && i < self.entries.len()
            && self.used[i / 64].load(Ordering::SeqCst) & (1 << (i % 64)) != 0;
        if handed_out {
            Ok(&self.entries[i])
        } else {
            Err(GrantError::NotGranted(gref))
        }
    }

    fn release(&self, gref: GrantRef) {
        let i = gref as usize;
        self.used[i / 64].fetch_and(!(1 << (i % 64)), Ordering::SeqCst);
    }
}

/// A `GNTST_*` status of a grant operation (`grant_table.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

/// `GNTST_*` names by `-status` (0 = okay .. 13 = no_space).
const GNTST_NAMES: [&str; 14] = [
    "GNTST_okay",
    "GNTST_general_error",
    "GNTST_bad_domain",
    "GNTST_bad_gntref",
    "GNTST_bad_handle",
    "GNTST_bad_virt_addr",
    "GNTST_bad_dev_addr",
    "GNTST_no_device_space",
    "GNTST_permission_denied",
    "GNTST_bad_page",
    "GNTST_bad_copy_arg",
    "GNTST_address_too_big",
    "GNTST_eagain",
    "GNTST_no_space",
];

impl GrantStatus {
    /// `Ok` for `GNTST_okay`, else the status as an error.
    pub fn check(status: i16) -> Result<(), GrantStatus> {
        if status == abi::xen::grant_table::GNTST_OKAY {
            Ok(())
        } else {
            Err(GrantStatus(status))
        }
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match GNTST_NAMES.get(self.0.unsigned_abs() as usize) {
            Some(name) if self.0 <= 0 => f.write_str(name),
            _ => write!(f, "GNTST({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests;
