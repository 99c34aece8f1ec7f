//! The persistent-grant window: [`WINDOW_PAGES`] GFNs right after the
//! foreign-mapping hole (also past RAM, inside the identity map) where a
//! backend keeps frontends' pages mapped for as long as the device is
//! connected (blkif's `feature-persistent`: Linux's blkback keeps such
//! grants mapped and copies with `memcpy` instead of a grant operation
//! per request). A slot holds one mapping; [`WindowMapping`] copies
//! bytes in and out of it.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::convert::usize_from_u64;

use abi::xen::domid::DomId;
use abi::xen::grant_table::{GrantHandle, GrantRef};
use abi::xen::PAGE_SIZE;

use super::{GrantOpError, Grants, FOREIGN_MAP_GPA, FOREIGN_MAP_SLOTS};

/// First GPA of the window: the end of the foreign-mapping hole.
pub const WINDOW_GPA: u64 = FOREIGN_MAP_GPA + (FOREIGN_MAP_SLOTS * PAGE_SIZE) as u64;
/// Pages in the window: persistent mappings held at once, over all
/// devices (blkif's 32 requests of 11 pages).
pub const WINDOW_PAGES: usize = 352;
/// The end of the hole and the window: the GFNs from [`FOREIGN_MAP_GPA`]
/// to here take grant mappings only.
pub const GRANT_HOLE_END: u64 = WINDOW_GPA + (WINDOW_PAGES * PAGE_SIZE) as u64;

/// Bit `i % 64` of word `i / 64`: slot `i` holds a mapping.
static USED: [AtomicU64; WINDOW_PAGES.div_ceil(64)] =
    [const { AtomicU64::new(0) }; WINDOW_PAGES.div_ceil(64)];

/// A foreign page kept mapped at a slot of the window; unmap with
/// [`Grants::unmap_persistent`].
#[derive(Debug)]
pub struct WindowMapping {
    slot: usize,
    handle: GrantHandle,
}

impl WindowMapping {
    fn gpa(&self) -> u64 {
        WINDOW_GPA + (self.slot * PAGE_SIZE) as u64
    }

    /// Copies `buf.len()` bytes of the page from `offset` into `buf`;
    /// `false`, copying nothing, if that runs past the page.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > PAGE_SIZE)
        {
            return false;
        }
        // SAFETY: the slot's GFN holds the granted page while `self`
        // lives (only `Grants::unmap_persistent`, which consumes it,
        // removes it), inside the identity map (checked at init);
        // `offset + len` is within the page. The bytes are plain data
        // another domain may change meanwhile: they are copied, never
        // interpreted in place.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (usize_from_u64(self.gpa()) + offset) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        true
    }

    /// Copies `bytes` into the page at `offset`; `false`, copying
    /// nothing, if that runs past the page.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > PAGE_SIZE)
        {
            return false;
        }
        // SAFETY: as in `read`; the page was mapped writable (a
        // read-only mapping is never made here).
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (usize_from_u64(self.gpa()) + offset) as *mut u8,
                bytes.len(),
            );
        }
        true
    }
}

/// The lowest free slot, now taken (a word at a time: a full window
/// costs one load per word).
fn claim_slot() -> Option<usize> {
    for (w, word) in USED.iter().enumerate() {
        let mut seen = word.load(Ordering::SeqCst);
        loop {
            let free = (!seen).trailing_zeros() as usize;
            let slot = w * 64 + free;
            if free == 64 || slot >= WINDOW_PAGES {
                break;
            }
            match word.compare_exchange(seen, seen | 1 << free, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(slot),
                Err(now) => seen = now,
            }
        }
    }
    None
}

fn release_slot(slot: usize) {
    USED[slot / 64].fetch_and(!(1 << (slot % 64)), Ordering::SeqCst);
}

impl Grants {
    /// `GNTTABOP_map_grant_ref` of `dom`'s `gref`, writable, at a free
    /// slot of the window ([`GrantOpError::NoSlot`] if all are taken).
    pub fn map_persistent(
        &self,
        dom: DomId,
        gref: GrantRef,
    ) -> Result<WindowMapping, GrantOpError> {
        let slot = claim_slot().ok_or(GrantOpError::NoSlot)?;
        let gpa = WINDOW_GPA + (slot * PAGE_SIZE) as u64;
        match self.map_at(dom, gref, false, gpa) {
            Ok(handle) => Ok(WindowMapping { slot, handle }),
            Err(e) => {
                release_slot(slot);
                Err(e)
            }
        }
    }

    /// Unmaps `mapping`; on failure it is handed back (still in place).
    pub fn unmap_persistent(
        &self,
        mapping: WindowMapping,
    ) -> Result<(), (WindowMapping, GrantOpError)> {
        match self.unmap_at(mapping.gpa(), mapping.handle) {
            Ok(()) => {
                release_slot(mapping.slot);
                Ok(())
            }
            Err(e) => Err((mapping, e)),
        }
    }
}
