//! `HYPERVISOR_memory_op`, `xen/include/public/memory.h`; the E820 entry
//! that `XENMEM_memory_map` returns (Xen's `struct e820entry`).
//!
//! `memory_op(cmd, arg)`: arg = guest virtual address of the sub-op
//! struct. For a PVH guest every frame number here is a GFN.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `XENMEM_increase_reservation`: arg -> [`XenMemoryReservation`]; returns
/// the number of extents allocated.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`: give frames back (balloon out); arg ->
/// [`XenMemoryReservation`] whose `extent_start` lists GFNs; returns the
/// number of extents released.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`: arg -> domid; returns pages held.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`: arg -> domid; returns the page limit.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_machphys_mfn_list` (PV).
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_populate_physmap`: back GFNs with fresh frames (balloon in);
/// arg -> [`XenMemoryReservation`] whose `extent_start` lists GFNs;
/// returns the number of extents populated.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`: map a hypervisor-provided frame (shared info,
/// grant table) at a GFN; arg -> [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`: the caller's E820 map; arg <-> [`XenMemoryMap`].
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_machine_memory_map`: the host's E820 map (privileged).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// `XENMEM_exchange`.
pub const XENMEM_EXCHANGE: u32 = 11;
/// `XENMEM_machphys_mapping` (PV).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// `XENMEM_set_memory_map` (privileged).
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// `XENMEM_maximum_gpfn`: arg -> domid; returns the highest GFN.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`: arg -> [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_add_to_physmap_batch`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;

/// `XENMAPSPACE_shared_info`: `idx` 0 is the domain's shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: `idx` is a grant-table frame index (OR'd with
/// [`XENMAPIDX_GRANT_TABLE_STATUS`] for v2 status frames).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`: `idx` is a GFN of the domain to move to `gpfn`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`: `size` GFNs from `idx`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`: another domain's GFN (batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio` (ARM only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `XENMAPIDX_grant_table_status`: flag in `idx` for grant status frames.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `XENMEMF_populate_on_demand` bit of `mem_flags`.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request` bit of `mem_flags`.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode` bit of `mem_flags`.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMEMF_get_address_bits`: the address-width limit in `mem_flags` (0 = none).
pub const fn xenmemf_address_bits(mem_flags: u32) -> u32 {
    mem_flags & 0xff
}

/// `struct xen_memory_reservation`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservation {
    /// Guest virtual address of an array of `nr_extents` frame numbers
    /// (u64; GFNs for a PVH guest). 0 for increase_reservation without output.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` contiguous frames.
    pub extent_order: u32,
    /// `XENMEMF_*` flags and address-bits limit.
    pub mem_flags: u32,
    /// Target domain, normally `DOMID_SELF`.
    pub domid: DomId,
    /// Implicit C tail padding; zero.
    pub pad0: [u8; 6],
}

/// `struct xen_add_to_physmap`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes, normally `DOMID_SELF`.
    pub domid: DomId,
    /// Number of GFNs for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`: where `idx` comes from.
    pub space: u32,
    /// Index into that space.
    pub idx: u64,
    /// GFN to map the frame at.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes, normally `DOMID_SELF`.
    pub domid: DomId,
    /// Implicit C padding; zero.
    pub pad0: [u8; 6],
    /// GFN to unmap.
    pub gpfn: u64,
}

/// `struct xen_add_to_physmap_batch`, 32 bytes (interface version
/// 0x00040700 and later: `foreign_domid` is the union's `gmfn_foreign`
/// member, `res0` for the other spaces). Linux's privcmd calls it
/// `xen_add_to_physmap_range`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmapBatch {
    /// IN: the domain whose physmap changes, normally `DOMID_SELF`.
    pub domid: DomId,
    /// IN: `XENMAPSPACE_*` where `idxs` come from.
    pub space: u16,
    /// IN: number of entries.
    pub size: u16,
    /// IN: for `XENMAPSPACE_gmfn_foreign`, the domain whose frames are
    /// mapped.
    pub foreign_domid: DomId,
    /// IN: guest address of `size` indexes into the space (`xen_ulong_t`).
    pub idxs: u64,
    /// IN: guest address of `size` GFNs where they appear (`xen_pfn_t`).
    pub gpfns: u64,
    /// OUT: guest address of `size` per-entry results (`int`: 0 or a
    /// negative errno).
    pub errs: u64,
}

/// `struct xen_memory_map`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in [`E820Entry`] entries; OUT: entries written.
    pub nr_entries: u32,
    /// Implicit C padding; zero.
    pub pad0: u32,
    /// Guest virtual address of an array of [`E820Entry`].
    pub buffer: u64,
}

/// `struct xen_foreign_memory_map`, 24 bytes: `XENMEM_set_memory_map`'s
/// argument (the toolstack sets a domain's E820 map).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMap {
    /// The domain whose map is set.
    pub domid: DomId,
    /// Implicit C padding; zero.
    pub pad0: [u8; 6],
    /// The map: `nr_entries` [`E820Entry`] at `buffer`.
    pub map: XenMemoryMap,
}

/// Most entries in a domain's E820 memory map: the PVH start-info map the
/// builder lays out and the map `XENMEM_set_memory_map` stores (a longer
/// one is `-EINVAL`). Ours; Xen allows up to its `E820MAX`, far more than a
/// PVH domain built here has regions.
pub const MAX_MEMMAP_ENTRIES: usize = 16;

/// Xen's `struct e820entry` (packed, 20 bytes), the element of
/// [`XenMemoryMap::buffer`].
#[repr(C, packed)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct E820Entry {
    /// Guest physical address of the region's start.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// One of the `E820_*` types.
    pub kind: u32,
}

/// `E820_RAM`: usable RAM.
pub const E820_RAM: u32 = 1;
/// `E820_RESERVED`.
pub const E820_RESERVED: u32 = 2;
/// `E820_ACPI`: ACPI reclaimable.
pub const E820_ACPI: u32 = 3;
/// `E820_NVS`: ACPI non-volatile storage.
pub const E820_NVS: u32 = 4;
/// `E820_UNUSABLE`.
pub const E820_UNUSABLE: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_memory_h() {
        assert_eq!(size_of::<XenMemoryReservation>(), 32);
        assert_eq!(offset_of!(XenMemoryReservation, nr_extents), 8);
        assert_eq!(offset_of!(XenMemoryReservation, extent_order), 16);
        assert_eq!(offset_of!(XenMemoryReservation, mem_flags), 20);
        assert_eq!(offset_of!(XenMemoryReservation, domid), 24);
        assert_eq!(size_of::<XenAddToPhysmap>(), 24);
        assert_eq!(offset_of!(XenAddToPhysmap, size), 2);
        assert_eq!(offset_of!(XenAddToPhysmap, space), 4);
        assert_eq!(offset_of!(XenAddToPhysmap, idx), 8);
        assert_eq!(offset_of!(XenAddToPhysmap, gpfn), 16);
        assert_eq!(size_of::<XenAddToPhysmapBatch>(), 32);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, space), 2);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, size), 4);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, foreign_domid), 6);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, idxs), 8);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, gpfns), 16);
        assert_eq!(offset_of!(XenAddToPhysmapBatch, errs), 24);
        assert_eq!(size_of::<XenRemoveFromPhysmap>(), 16);
        assert_eq!(offset_of!(XenRemoveFromPhysmap, gpfn), 8);
        assert_eq!(size_of::<XenMemoryMap>(), 16);
        assert_eq!(size_of::<XenForeignMemoryMap>(), 24);
        assert_eq!(offset_of!(XenForeignMemoryMap, map), 8);
        assert_eq!(offset_of!(XenMemoryMap, buffer), 8);
        assert_eq!(size_of::<E820Entry>(), 20);
        assert_eq!(align_of::<E820Entry>(), 1);
        assert_eq!(offset_of!(E820Entry, kind), 16);
    }
}
