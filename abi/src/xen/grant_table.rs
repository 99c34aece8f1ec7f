//! `HYPERVISOR_grant_table_op`, `xen/include/public/grant_table.h` (v1).
//!
//! `grant_table_op(cmd, uop, count)`: arg2 = guest virtual address of an
//! array of `count` sub-op structs. The hypercall returns 0 or a negative
//! errno for the call as a whole; each entry's outcome is its `status`
//! field, a `GNTST_*` code.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `grant_ref_t`: index into a domain's grant table.
pub type GrantRef = u32;
/// `grant_handle_t`: names one mapping made by `map_grant_ref`.
pub type GrantHandle = u32;

/// `GNTTABOP_map_grant_ref`: array of [`GnttabMapGrantRef`].
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`: array of [`GnttabUnmapGrantRef`].
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`: one [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy`: array of [`GnttabCopy`].
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`: one [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version` (only version 1 is supported).
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames` (v2).
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref`.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush` (ARM).
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries 0-7 are reserved for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: GrantRef = 8;
/// `GNTTAB_RESERVED_CONSOLE`: the entry granting the console ring to dom0.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// `GNTTAB_RESERVED_XENSTORE`: the entry granting the xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;
/// Number of v1 entries in one 4 KiB grant-table frame.
pub const GRANT_ENTRIES_V1_PER_FRAME: u32 = 512;

/// `struct grant_entry_v1`, 8 bytes: one entry of a guest's grant table.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags. Written by the granting guest; the
    /// hypervisor sets and clears `GTF_reading`/`GTF_writing`.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted frame (a GFN of the granting domain for PVH guests).
    pub frame: u32,
}

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: `domid` may transfer a frame to us.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`: the type bits of `flags`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: restrict to read-only access.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by the hypervisor while mapped or copied from.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by the hypervisor while mapped writable or copied to.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`: map with write-through caching.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`: map uncached.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`: PAT bit of the mapping.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_transfer_committed` (accept_transfer entries).
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// `GTF_transfer_completed` (accept_transfer entries).
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// `GNTMAP_device_map`: map for device (DMA) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`: map for CPU access at `host_addr`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`: map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map` (PV).
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte` (PV).
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// `GNTMAP_guest_avail_mask`: bits 16-31 are free for the guest.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

/// `GNTCOPY_source_gref`: `source.u` is a grant reference, else a GFN.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: `dest.u` is a grant reference, else a GFN.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`: unknown domain id.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`: unknown or unusable grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`: unknown mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`: unusable address to map at.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr`: unusable device address to unmap.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space`: I/O MMU out of space.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`: the frame is not usable for this operation.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`: copy crosses a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big`.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain`: not done; try again.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space`: out of space (handles, maptrack entries).
pub const GNTST_NO_SPACE: i16 = -13;

/// `struct gnttab_map_grant_ref`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabMapGrantRef {
    /// IN: where to map: for a PVH caller, the guest physical address (GFN
    /// << 12) to place the granted frame at.
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the granter's grant reference.
    pub r#ref: GrantRef,
    /// IN: the granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: GrantHandle,
    /// OUT: bus address for `GNTMAP_device_map`.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapGrantRef {
    /// IN: address given to map (0 to skip the host mapping).
    pub host_addr: u64,
    /// IN: bus address given by map (0 to skip the device mapping).
    pub dev_bus_addr: u64,
    /// IN: handle returned by map.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding; zero.
    pub pad0: u16,
}

/// `struct gnttab_setup_table`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTable {
    /// IN: domain, normally `DOMID_SELF`.
    pub dom: DomId,
    /// Implicit C padding; zero.
    pub pad0: u16,
    /// IN: number of grant-table frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding; zero.
    pub pad1: [u8; 6],
    /// IN: guest virtual address of a u64 array receiving `nr_frames`
    /// frame numbers (for auto-translated guests the caller maps them
    /// with `XENMEM_add_to_physmap` instead).
    pub frame_list: u64,
}

/// `struct gnttab_copy_ptr`, 16 bytes: one side of a [`GnttabCopy`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtr {
    /// The union `u`: a grant reference (u32, if the `GNTCOPY_*_gref` flag
    /// is set) or a GFN of the caller (u64).
    pub u: u64,
    /// Domain owning the frame.
    pub domid: DomId,
    /// Byte offset within the frame.
    pub offset: u16,
    /// Implicit C tail padding; zero.
    pub pad0: u32,
}

impl GnttabCopyPtr {
    /// `u.ref`: the grant reference in the low 32 bits (little-endian union).
    pub const fn gref(&self) -> GrantRef {
        (self.u & 0xffff_ffff) as u32
    }
}

/// `struct gnttab_copy`, 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopy {
    /// IN: where to copy from.
    pub source: GnttabCopyPtr,
    /// IN: where to copy to.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy; neither side may cross its page.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding; zero.
    pub pad0: u16,
}

/// `struct gnttab_query_size`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabQuerySize {
    /// IN: domain, normally `DOMID_SELF`.
    pub dom: DomId,
    /// Implicit C padding; zero.
    pub pad0: u16,
    /// OUT: current number of grant-table frames.
    pub nr_frames: u32,
    /// OUT: the most frames the domain may have.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding; zero.
    pub pad1: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_grant_table_h() {
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(offset_of!(GrantEntryV1, domid), 2);
        assert_eq!(offset_of!(GrantEntryV1, frame), 4);
        assert_eq!(
            GRANT_ENTRIES_V1_PER_FRAME as usize * size_of::<GrantEntryV1>(),
            4096
        );
        assert_eq!(size_of::<GnttabMapGrantRef>(), 32);
        assert_eq!(offset_of!(GnttabMapGrantRef, flags), 8);
        assert_eq!(offset_of!(GnttabMapGrantRef, r#ref), 12);
        assert_eq!(offset_of!(GnttabMapGrantRef, dom), 16);
        assert_eq!(offset_of!(GnttabMapGrantRef, status), 18);
        assert_eq!(offset_of!(GnttabMapGrantRef, handle), 20);
        assert_eq!(offset_of!(GnttabMapGrantRef, dev_bus_addr), 24);
        assert_eq!(size_of::<GnttabUnmapGrantRef>(), 24);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, dev_bus_addr), 8);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, status), 20);
        assert_eq!(size_of::<GnttabSetupTable>(), 24);
        assert_eq!(offset_of!(GnttabSetupTable, nr_frames), 4);
        assert_eq!(offset_of!(GnttabSetupTable, status), 8);
        assert_eq!(offset_of!(GnttabSetupTable, frame_list), 16);
        assert_eq!(size_of::<GnttabCopy>(), 40);
        assert_eq!(
            offset_of!(GnttabCopy, source) + offset_of!(GnttabCopyPtr, domid),
            8
        );
        assert_eq!(
            offset_of!(GnttabCopy, source) + offset_of!(GnttabCopyPtr, offset),
            10
        );
        assert_eq!(offset_of!(GnttabCopy, dest), 16);
        assert_eq!(
            offset_of!(GnttabCopy, dest) + offset_of!(GnttabCopyPtr, domid),
            24
        );
        assert_eq!(offset_of!(GnttabCopy, len), 32);
        assert_eq!(offset_of!(GnttabCopy, flags), 34);
        assert_eq!(offset_of!(GnttabCopy, status), 36);
        assert_eq!(size_of::<GnttabQuerySize>(), 16);
        assert_eq!(offset_of!(GnttabQuerySize, nr_frames), 4);
        assert_eq!(offset_of!(GnttabQuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(GnttabQuerySize, status), 12);
    }

    #[test]
    fn flag_values_match_grant_table_h() {
        assert_eq!(GTF_READONLY, 0x4);
        assert_eq!(GTF_READING, 0x8);
        assert_eq!(GTF_WRITING, 0x10);
        assert_eq!(GNTMAP_READONLY, 0x4);
        assert_eq!(GNTMAP_GUEST_AVAIL_MASK, 0xffff_0000);
    }
}
