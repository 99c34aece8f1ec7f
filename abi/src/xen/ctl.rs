//! The start of Xen's `struct xen_sysctl` (`sysctl.h`) and `struct
//! xen_domctl` (`domctl.h`): the toolstack-only hypercalls. xen-core
//! serves neither (dom0's toolstack uses the control ABI); it reads this
//! much to answer as Xen does: `-EACCES` for another interface version,
//! then `-EPERM` for a caller without the privilege.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.19 (last bumped in 4.17).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.19 (bumped in 4.19).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x17;

/// `XENPF_INTERFACE_VERSION` (`platform.h`): `platform_op`'s struct
/// starts with the same header.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;

/// The first 8 bytes of `struct xen_sysctl`, `struct xen_domctl` and
/// `struct xen_platform_op`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenCtlHeader {
    /// `XEN_SYSCTL_*` / `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// Must be the interface version above (`-EACCES` otherwise).
    pub interface_version: u32,
}
