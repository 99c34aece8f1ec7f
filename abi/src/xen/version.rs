//! `HYPERVISOR_xen_version`, `xen/include/public/version.h` and
//! `xen/include/public/features.h`.
//!
//! `xen_version(cmd, arg)`: arg = guest virtual address of the sub-op's
//! buffer. All sub-ops return 0 on success except [`XENVER_VERSION`] and
//! [`XENVER_PAGESIZE`], which return their value.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Xen major version xen-core claims (returned by [`XENVER_VERSION`] and CPUID).
pub const XEN_VERSION_MAJOR: u16 = 4;
/// Xen minor version xen-core claims.
pub const XEN_VERSION_MINOR: u16 = 19;

/// The [`XENVER_VERSION`] return value: `major << 16 | minor`.
pub const fn version_word(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// `XENVER_version`: arg unused; returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: arg -> [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info`: arg -> [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities`: arg -> [`XenCapabilitiesInfo`].
pub const XENVER_CAPABILITIES: u32 = 3;
/// `XENVER_changeset`: arg -> [`XenChangesetInfo`].
pub const XENVER_CHANGESET: u32 = 4;
/// `XENVER_platform_parameters`: arg -> [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features`: arg <-> [`XenFeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;
/// `XENVER_pagesize`: arg unused; returns the page size in bytes.
pub const XENVER_PAGESIZE: u32 = 7;
/// `XENVER_guest_handle`: arg -> [`XenDomainHandle`].
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline`: arg -> [`XenCommandline`].
pub const XENVER_COMMANDLINE: u32 = 9;
/// `XENVER_build_id`: arg <-> `xen_varbuf`; returns the bytes written.
pub const XENVER_BUILD_ID: u32 = 10;
/// `XENVER_extraversion2`: non-truncating extraversion through `xen_varbuf`.
pub const XENVER_EXTRAVERSION2: u32 = 11;
/// `XENVER_capabilities2`: non-truncating capabilities through `xen_varbuf`.
pub const XENVER_CAPABILITIES2: u32 = 12;
/// `XENVER_changeset2`: non-truncating changeset through `xen_varbuf`.
pub const XENVER_CHANGESET2: u32 = 13;
/// `XENVER_commandline2`: non-truncating command line through `xen_varbuf`.
pub const XENVER_COMMANDLINE2: u32 = 14;

/// `xen_extraversion_t`: NUL-padded version suffix, e.g. `".0"`.
pub type XenExtraversion = [u8; XEN_EXTRAVERSION_LEN];
/// `XEN_EXTRAVERSION_LEN`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `xen_capabilities_info_t`: space-separated ABI names, NUL-padded.
pub type XenCapabilitiesInfo = [u8; XEN_CAPABILITIES_INFO_LEN];
/// `XEN_CAPABILITIES_INFO_LEN`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `xen_changeset_info_t`: source revision, NUL-padded.
pub type XenChangesetInfo = [u8; XEN_CHANGESET_INFO_LEN];
/// `XEN_CHANGESET_INFO_LEN`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `xen_domain_handle_t` (`xen.h`): the 16-byte handle (a UUID) the
/// toolstack gives a domain at creation.
pub type XenDomainHandle = [u8; XEN_DOMAIN_HANDLE_LEN];
/// Bytes of a [`XenDomainHandle`].
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;
/// `xen_commandline_t`: the hypervisor command line, NUL-padded.
pub type XenCommandline = [u8; 1024];

/// `struct xen_compile_info`, 144 bytes. All strings NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenCompileInfo {
    /// Compiler name and version.
    pub compiler: [u8; 64],
    /// User who built the hypervisor.
    pub compile_by: [u8; 16],
    /// Build host's domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}

/// `struct xen_platform_parameters`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParameters {
    /// Start of the hypervisor's virtual-address hole (PV only; 0 for PVH).
    pub virt_start: u64,
}

/// `compat_platform_parameters_t`, 4 bytes: what a 32-bit caller gets
/// (`virt_start` is a `compat_ulong_t`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CompatPlatformParameters {
    /// As [`XenPlatformParameters::virt_start`], 32 bits.
    pub virt_start: u32,
}

/// `struct xen_feature_info`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit feature submap (bits `32*idx ..`) to return.
    pub submap_idx: u32,
    /// OUT: the submap; bit `n` is `XENFEAT_(32*idx + n)`.
    pub submap: u32,
}

/// `XENFEAT_writable_page_tables` (PV).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables` (PV).
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`: the guest sees GFNs, not MFNs (PVH/HVM).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`: event upcalls through a plain vector
/// (`HVM_PARAM_CALLBACK_TYPE_VECTOR`).
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`: the domain is the control domain.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity` (ARM).
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported` (ARM).
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_NR_SUBMAPS`: number of 32-bit submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_version_h() {
        assert_eq!(size_of::<XenExtraversion>(), 16);
        assert_eq!(size_of::<XenCompileInfo>(), 144);
        assert_eq!(offset_of!(XenCompileInfo, compile_by), 64);
        assert_eq!(offset_of!(XenCompileInfo, compile_domain), 80);
        assert_eq!(offset_of!(XenCompileInfo, compile_date), 112);
        assert_eq!(size_of::<XenFeatureInfo>(), 8);
        assert_eq!(offset_of!(XenFeatureInfo, submap), 4);
        assert_eq!(size_of::<XenPlatformParameters>(), 8);
        assert_eq!(size_of::<CompatPlatformParameters>(), 4);
        assert_eq!(size_of::<XenChangesetInfo>(), 64);
        assert_eq!(size_of::<XenDomainHandle>(), 16);
        assert_eq!(size_of::<XenCommandline>(), 1024);
    }

    #[test]
    fn version_word_is_major_minor() {
        assert_eq!(
            version_word(XEN_VERSION_MAJOR, XEN_VERSION_MINOR),
            0x0004_0013
        );
    }
}
