//! Our control ABI: domain and system control for dom0, versioned
//! major.minor. Xen's own toolstack ABI (domctl/sysctl) is unstable and
//! laid out differently, so this is ours; `docs/abi.md` documents it and
//! `abi/tests/control_abi.snapshot` pins its layout.
//!
//! Call: RAX = [`HYPERVISOR_CONTROL_OP`], RDI = `CONTROL_OP_*`, RSI = guest
//! virtual address of the request, RDX = guest virtual address of the
//! response (0 for operations without one). Returns 0 or a negative Xen
//! errno. Only the privileged domain (dom0) may call it (`-EPERM`
//! otherwise). Every request starts with a [`ControlHeader`]; a version
//! the hypervisor does not speak fails with `-EACCES`, like Xen's domctl.
//! Padding and reserved fields must be zero (`-EINVAL`), so later minor
//! versions can give them a meaning.

mod domain;
mod memory;
mod sched;
mod stats;
mod vcpu;

pub use domain::*;
pub use memory::*;
pub use sched::*;
pub use stats::*;
pub use vcpu::*;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::errno::Errno;

/// Major version: bumped for any change that breaks an existing caller
/// (a layout, a number or a meaning changes).
pub const CONTROL_ABI_MAJOR: u16 = 1;
/// Minor version: bumped for additions only (new operations or constants,
/// a meaning given to a zero reserved field). Reset to 0 with each major.
pub const CONTROL_ABI_MINOR: u16 = 4;

/// The control hypercall: `__HYPERVISOR_arch_7`, which Xen on x86 leaves
/// unused. Not Xen's `__HYPERVISOR_domctl` (36): our layouts differ from
/// Xen's, and a Xen toolstack calling 36 must get `-ENOSYS`, not a
/// misread request.
pub const HYPERVISOR_CONTROL_OP: u64 = crate::xen::hypercall::ARCH_7;

/// `interface_version` value of this ABI: `major << 16 | minor`.
pub const CONTROL_INTERFACE_VERSION: u32 =
    (CONTROL_ABI_MAJOR as u32) << 16 | CONTROL_ABI_MINOR as u32;

/// Get one domain's [`DomainInfo`]: [`DomainRequest`] -> [`DomainInfo`].
pub const CONTROL_OP_GETINFO: u32 = 1;
/// List domains in domid order: [`ListRequest`] -> [`ListResponse`].
pub const CONTROL_OP_LIST: u32 = 2;
/// Create a paused, empty domain: [`CreateRequest`] -> [`CreateResponse`].
pub const CONTROL_OP_CREATE: u32 = 3;
/// Destroy a domain and scrub its memory: [`DomainRequest`], no response.
pub const CONTROL_OP_DESTROY: u32 = 4;
/// Pause a domain's vCPUs: [`DomainRequest`], no response.
pub const CONTROL_OP_PAUSE: u32 = 5;
/// Unpause a domain: [`DomainRequest`], no response.
pub const CONTROL_OP_UNPAUSE: u32 = 6;
/// Give a domain fresh, zeroed memory: [`PopulateRequest`] -> [`PopulateResponse`].
pub const CONTROL_OP_POPULATE_MEMORY: u32 = 7;
/// Map a domain's frames into the caller for building: [`MapRequest`], no response.
pub const CONTROL_OP_MAP_FOREIGN: u32 = 8;
/// Undo [`CONTROL_OP_MAP_FOREIGN`]: [`UnmapRequest`], no response.
pub const CONTROL_OP_UNMAP_FOREIGN: u32 = 9;
/// Set a vCPU's initial state: [`SetVcpuContextRequest`], no response.
pub const CONTROL_OP_SET_VCPU_CONTEXT: u32 = 10;
/// Read a domain's counters: [`DomainRequest`] -> [`DomainStats`].
pub const CONTROL_OP_GET_STATS: u32 = 11;
/// Read host facts: [`ControlHeader`] -> [`Physinfo`].
pub const CONTROL_OP_PHYSINFO: u32 = 12;
/// Read the hypervisor's log ring (`xl dmesg`; Xen's sysctl
/// `readconsole`): [`ReadConsoleRequest`] -> [`ReadConsoleResponse`].
/// Added in 1.1.
pub const CONTROL_OP_READCONSOLE: u32 = 13;
/// Set a domain's memory limit (`xl mem-max`; Xen's domctl `max_mem`):
/// [`SetMaxMemRequest`], no response. Added in 1.3.
pub const CONTROL_OP_SET_MAX_MEM: u32 = 14;
/// Read a domain's per-vCPU state and counters and its weight and cap
/// (`xl vcpu-list`, `xentop`): [`DomainRequest`] -> [`VcpuStatsResponse`].
/// Added in 1.4.
pub const CONTROL_OP_GET_VCPU_STATS: u32 = 15;
/// Set and read a domain's credit scheduler weight and cap (`xl
/// sched-credit`): [`SchedCreditRequest`] -> [`SchedCreditInfo`]. Added
/// in 1.4.
pub const CONTROL_OP_SCHED_CREDIT: u32 = 16;
/// Set a vCPU's hard affinity (`xl vcpu-pin`): [`VcpuAffinityRequest`]
/// -> [`VcpuAffinityResponse`]. Added in 1.4.
pub const CONTROL_OP_SET_VCPU_AFFINITY: u32 = 17;

/// First 8 bytes of every control request.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ControlHeader {
    /// The caller's ABI version, `major << 16 | minor`.
    pub interface_version: u32,
    /// Reserved; zero.
    pub pad: u32,
}

impl ControlHeader {
    /// A header for this version of the ABI.
    pub const CURRENT: ControlHeader = ControlHeader {
        interface_version: CONTROL_INTERFACE_VERSION,
        pad: 0,
    };

    /// The door's check: the caller's major equals ours and its minor is
    /// not newer (`-EACCES`); the reserved field is zero (`-EINVAL`).
    pub fn check(&self) -> Result<(), Errno> {
        let major = (self.interface_version >> 16) as u16;
        let minor = (self.interface_version & 0xffff) as u16;
        if major != CONTROL_ABI_MAJOR || minor > CONTROL_ABI_MINOR {
            return Err(Errno::EACCES);
        }
        if self.pad != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

impl Default for ControlHeader {
    fn default() -> Self {
        Self::CURRENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_at_the_door() {
        assert_eq!(ControlHeader::CURRENT.check(), Ok(()));
        let with = |v: u32, pad: u32| {
            ControlHeader {
                interface_version: v,
                pad,
            }
            .check()
        };
        assert_eq!(
            with(CONTROL_INTERFACE_VERSION + (1 << 16), 0),
            Err(Errno::EACCES)
        );
        assert_eq!(with(CONTROL_INTERFACE_VERSION + 1, 0), Err(Errno::EACCES));
        assert_eq!(with(0, 0), Err(Errno::EACCES));
        assert_eq!(with(CONTROL_INTERFACE_VERSION, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn control_hypercall_is_unused_by_xen() {
        assert_eq!(HYPERVISOR_CONTROL_OP, 55);
        assert_ne!(HYPERVISOR_CONTROL_OP, crate::xen::hypercall::DOMCTL);
    }
}
