//! `HYPERVISOR_vcpu_op`, `xen/include/public/vcpu.h`.
//!
//! `vcpu_op(cmd, vcpuid, arg)`: arg2 = target vCPU id of the calling
//! domain, arg3 = guest virtual address of the sub-op struct (or 0).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VCPUOP_initialise`: set a vCPU's initial register state.
pub const VCPUOP_INITIALISE: u32 = 0;
/// `VCPUOP_up`: start an initialised vCPU. arg unused.
pub const VCPUOP_UP: u32 = 1;
/// `VCPUOP_down`: stop a vCPU. arg unused.
pub const VCPUOP_DOWN: u32 = 2;
/// `VCPUOP_is_up`: returns 1 if the vCPU runs, 0 if it is down. arg unused.
pub const VCPUOP_IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info`: arg -> [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area`.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer`: arg -> [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer`: arg unused.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer`: arg -> [`VcpuSetSingleshotTimer`]; the
/// timer raises VIRQ_TIMER on the vCPU.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`: arg unused.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`: move the vCPU's `vcpu_info` out of the
/// shared-info page; arg -> [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi`.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid`.
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the timeout has passed
/// (Xen may ignore the flag).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `struct vcpu_set_singleshot_timer`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (ns since boot, as in `vcpu_time_info`) to fire at.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*` flags.
    pub flags: u32,
    /// Implicit C tail padding; zero.
    pub pad0: u32,
}

/// `struct vcpu_set_periodic_timer`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetPeriodicTimer {
    /// Period in ns.
    pub period_ns: u64,
}

/// `struct vcpu_register_vcpu_info`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame of the page to hold the `vcpu_info` (a GFN for PVH guests,
    /// despite Xen's field name).
    pub mfn: u64,
    /// Byte offset in that page; the 64-byte `vcpu_info` must fit in it.
    pub offset: u32,
    /// Unused; zero.
    pub rsvd: u32,
}

/// `struct vcpu_runstate_info`, 48 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// Implicit C padding; zero.
    pub pad0: u32,
    /// System time (ns) the current state was entered.
    pub state_entry_time: u64,
    /// Time (ns) spent in each `RUNSTATE_*`, indexed by state.
    pub time: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_vcpu_h() {
        assert_eq!(size_of::<VcpuSetSingleshotTimer>(), 16);
        assert_eq!(offset_of!(VcpuSetSingleshotTimer, flags), 8);
        assert_eq!(size_of::<VcpuSetPeriodicTimer>(), 8);
        assert_eq!(size_of::<VcpuRegisterVcpuInfo>(), 16);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, offset), 8);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, rsvd), 12);
        assert_eq!(size_of::<VcpuRunstateInfo>(), 48);
        assert_eq!(offset_of!(VcpuRunstateInfo, state_entry_time), 8);
        assert_eq!(offset_of!(VcpuRunstateInfo, time), 16);
    }
}
