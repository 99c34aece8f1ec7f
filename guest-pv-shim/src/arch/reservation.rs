//! The reservation sub-ops of `memory_op` (`xen/include/public/memory.h`)
//! a balloon driver makes for its own domain (and dom0 for another,
//! [`Xen::decrease_reservation_of`]), and the region of GFNs a shim kernel
//! lends its balloon. Frame numbers are GFNs (PVH); every list is passed
//! through the boot identity map (GVA = GPA).

use core::ops::Range;

use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::hypercall as nr;
use abi::xen::memory::{
    XenMemoryReservation, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_POPULATE_PHYSMAP,
};
use abi::xen::start_info::XEN_HVM_MEMMAP_TYPE_RAM;
use abi::xen::PAGE_SHIFT;

use super::gnttab::FOREIGN_MAP_GPA;
use super::hypercall::{addr_of_struct, call, Xen};
use crate::balloon::Reservation;
use crate::error::{check, XenError};
use crate::start_info::StartInfo;

impl Xen {
    /// `XENMEM_decrease_reservation` (order 0) of `gfns` of domain
    /// `domid`: the number of frames given back. Xen stops at the first
    /// GFN it refuses (not the domain's own RAM, in use by another
    /// domain): the count says how far it went.
    pub fn decrease_reservation_of(&self, domid: DomId, gfns: &[u64]) -> Result<u64, XenError> {
        self.reservation(XENMEM_DECREASE_RESERVATION, domid, gfns)
    }

    /// `XENMEM_populate_physmap` (order 0) at `gfns` of this domain:
    /// fresh zeroed frames; the number populated (it stops at the first
    /// GFN refused: mapped already, or the domain at its maximum).
    pub fn populate_physmap(&self, gfns: &[u64]) -> Result<u64, XenError> {
        self.reservation(XENMEM_POPULATE_PHYSMAP, DOMID_SELF, gfns)
    }

    fn reservation(&self, cmd: u32, domid: DomId, gfns: &[u64]) -> Result<u64, XenError> {
        let arg = XenMemoryReservation {
            extent_start: gfns.as_ptr() as u64,
            nr_extents: gfns.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid,
            pad0: [0; 6],
        };
        // SAFETY: Xen reads `arg` and the `nr_extents` GFNs of `gfns`,
        // both live for the call; PVH populate writes nothing back. The
        // frames it takes away or adds are not Rust objects: the caller
        // names GFNs it does not use (the balloon's region).
        check(unsafe { call(nr::MEMORY_OP, [cmd.into(), addr_of_struct(&arg), 0, 0, 0]) })
    }

    /// `XENMEM_current_reservation` of this domain: the frames it holds.
    pub fn current_reservation(&self) -> Result<u64, XenError> {
        self.reservation_of(XENMEM_CURRENT_RESERVATION)
    }

    /// `XENMEM_maximum_reservation` of this domain: the most it may hold.
    pub fn maximum_reservation(&self) -> Result<u64, XenError> {
        self.reservation_of(XENMEM_MAXIMUM_RESERVATION)
    }

    fn reservation_of(&self, cmd: u32) -> Result<u64, XenError> {
        let domid: DomId = DOMID_SELF;
        // SAFETY: Xen reads the `domid_t`, a live local.
        check(unsafe { call(nr::MEMORY_OP, [cmd.into(), addr_of_struct(&domid), 0, 0, 0]) })
    }
}

impl Reservation for Xen {
    fn current_pages(&mut self) -> Result<u64, XenError> {
        self.current_reservation()
    }

    fn decrease(&mut self, gfns: &[u64]) -> Result<u64, XenError> {
        self.decrease_reservation_of(DOMID_SELF, gfns)
    }

    fn populate(&mut self, gfns: &[u64]) -> Result<u64, XenError> {
        self.populate_physmap(gfns)
    }
}

extern "C" {
    /// One past the image's last page (`guest.ld`).
    static __image_end: [u8; 0];
}

/// Room left after the image for what the domain builder puts there
/// (start info, memory map, command line: `pvh-builder`'s boot layout),
/// which the shim reads at entry.
pub const BOOT_INFO_RESERVE: u64 = 1 << 20;

/// The GFNs a shim kernel lends its balloon: from [`BOOT_INFO_RESERVE`]
/// past the image to the end of the RAM range holding the image, below
/// the grant-mapping hole. The shim has no page allocator: nothing of it
/// lives there (its frames, rings and shared pages are in the image or
/// past RAM). Empty if the memory map has no such range.
pub fn balloon_region(start_info: &StartInfo) -> Range<u64> {
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let first = image_end.saturating_add(BOOT_INFO_RESERVE) >> PAGE_SHIFT;
    let ram_end = start_info
        .memmap()
        .iter()
        .filter(|e| e.kind == XEN_HVM_MEMMAP_TYPE_RAM)
        .find(|e| e.addr <= image_end && image_end - e.addr < e.size)
        .map_or(0, |e| e.addr + e.size)
        .min(FOREIGN_MAP_GPA);
    first..(ram_end >> PAGE_SHIFT).max(first)
}
