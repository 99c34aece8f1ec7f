//! PVH boot information, `xen/include/public/arch-x86/hvm/start_info.h`.
//!
//! A PVH guest (and xen-core itself, booted by QEMU) is entered in 32-bit
//! protected mode with paging off and EBX = guest physical address of
//! [`HvmStartInfo`]. All addresses here are guest physical addresses.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Longest command line (kernel or module) a domain is given, in bytes
/// without the NUL (Xen's `MAX_GUEST_CMDLINE`, `xen/include/public/xen.h`).
pub const MAX_CMDLINE: usize = 1024;

/// `XEN_HVM_START_MAGIC_VALUE`: value of [`HvmStartInfo::magic`].
pub const HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct hvm_start_info`, 56 bytes (version 1 layout).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmStartInfo {
    /// Must be [`HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure: 0 has no memory map, 1 has one.
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// GPA of the module list, an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// GPA of the NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// GPA of the ACPI RSDP, 0 if none.
    pub rsdp_paddr: u64,
    /// GPA of the memory map, an array of [`HvmMemmapEntry`] (version >= 1).
    pub memmap_paddr: u64,
    /// Number of entries in the memory map (version >= 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`, 32 bytes: one boot module.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmModlistEntry {
    /// GPA of the module's first byte.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// GPA of the module's NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`, 24 bytes: one E820-style region.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmMemmapEntry {
    /// GPA of the region's start.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// One of the `XEN_HVM_MEMMAP_TYPE_*` values.
    pub kind: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `XEN_HVM_MEMMAP_TYPE_RAM`: usable RAM.
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED`.
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI`: ACPI reclaimable.
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS`: ACPI non-volatile storage.
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`.
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED`.
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM`: persistent memory.
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_start_info_h() {
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(HvmStartInfo, memmap_paddr), 40);
        assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(size_of::<HvmMemmapEntry>(), 24);
        assert_eq!(offset_of!(HvmMemmapEntry, kind), 16);
    }
}
