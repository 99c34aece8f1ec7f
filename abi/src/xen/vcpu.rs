//! `HYPERVISOR_vcpu_op`, `xen/include/public/vcpu.h`.
//!
//! `vcpu_op(cmd, vcpuid, arg)`: arg2 = target vCPU id of the calling
//! domain, arg3 = guest virtual address of the sub-op struct (or 0).

use core::mem::size_of;

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

/// `struct vcpu_register_runstate_memory_area`, 8 bytes: where the
/// hypervisor writes the vCPU's [`VcpuRunstateInfo`] (a guest virtual
/// address, in Xen's HVM ABI; the union's handle and `p` alike).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Address of the area.
    pub addr: u64,
}

/// `XEN_RUNSTATE_UPDATE`: bit 63 of
/// [`VcpuRunstateInfo::state_entry_time`], set in guest memory while the
/// area is being written (with the runstate update flag assist on).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

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
    /// System time (ns) the current state was entered; while Xen writes
    /// a registered area of a domain with
    /// [`super::vm_assist::VMASST_TYPE_RUNSTATE_UPDATE_FLAG`] on, also
    /// [`XEN_RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Time (ns) spent in each `RUNSTATE_*`, indexed by state.
    pub time: [u64; 4],
}

/// `VCPU_HVM_MODE_32B`: [`VcpuHvmContext::cpu_regs`] holds a
/// `vcpu_hvm_x86_32` ([`crate::control::VcpuHvmX86_32`]).
pub const VCPU_HVM_MODE_32B: u32 = 0;
/// `VCPU_HVM_MODE_64B`: [`VcpuHvmContext::cpu_regs`] holds a
/// [`VcpuHvmX86_64`].
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_64` (`xen/include/public/hvm/hvm_vcpu.h`), 112
/// bytes: a vCPU starting in 64-bit mode. Xen gives it flat segments
/// itself (CS 64-bit code, DS/ES/SS flat data, a busy 64-bit TSS).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuHvmX86_64 {
    /// RAX.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RBX.
    pub rbx: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RIP; canonical.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0; PG must be set.
    pub cr0: u64,
    /// CR3: the guest-physical address of the top-level page table.
    pub cr3: u64,
    /// CR4; PAE must be set.
    pub cr4: u64,
    /// EFER; LME must be set (LMA is set for the guest).
    pub efer: u64,
}

/// Size of the `cpu_regs` union of [`VcpuHvmContext`] (its larger member,
/// `vcpu_hvm_x86_32`).
pub const VCPU_HVM_REGS_SIZE: usize = 120;

/// `struct vcpu_hvm_context` (`hvm_vcpu.h`), 128 bytes: the argument of
/// `VCPUOP_initialise` for an HVM/PVH vCPU, the same layout for 32- and
/// 64-bit callers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmContext {
    /// `VCPU_HVM_MODE_*`.
    pub mode: u32,
    /// Zero.
    pub pad: u32,
    /// The union `cpu_regs`: a `vcpu_hvm_x86_32` or a [`VcpuHvmX86_64`]
    /// by `mode`, as raw bytes.
    pub cpu_regs: [u8; VCPU_HVM_REGS_SIZE],
}

impl Default for VcpuHvmContext {
    fn default() -> Self {
        Self {
            mode: VCPU_HVM_MODE_32B,
            pad: 0,
            cpu_regs: [0; VCPU_HVM_REGS_SIZE],
        }
    }
}

impl VcpuHvmContext {
    /// A 64-bit-mode context holding `regs`.
    pub fn x86_64(regs: &VcpuHvmX86_64) -> Self {
        let mut ctx = Self {
            mode: VCPU_HVM_MODE_64B,
            ..Self::default()
        };
        ctx.cpu_regs[..size_of::<VcpuHvmX86_64>()].copy_from_slice(regs.as_bytes());
        ctx
    }

    /// A 32-bit-mode context holding `regs`.
    pub fn x86_32(regs: &crate::control::VcpuHvmX86_32) -> Self {
        let mut ctx = Self::default();
        ctx.cpu_regs.copy_from_slice(regs.as_bytes());
        ctx
    }

    /// The union read as `vcpu_hvm_x86_64` (whatever `mode` says).
    pub fn regs_64(&self) -> VcpuHvmX86_64 {
        VcpuHvmX86_64::read_from_prefix(&self.cpu_regs)
            .map(|(r, _)| r)
            .unwrap_or_default()
    }

    /// The union read as `vcpu_hvm_x86_32` (whatever `mode` says).
    pub fn regs_32(&self) -> crate::control::VcpuHvmX86_32 {
        crate::control::VcpuHvmX86_32::read_from_bytes(&self.cpu_regs).unwrap_or_default()
    }
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
        assert_eq!(size_of::<VcpuHvmX86_64>(), 112);
        assert_eq!(offset_of!(VcpuHvmX86_64, efer), 104);
        assert_eq!(size_of::<VcpuHvmContext>(), 128);
        assert_eq!(offset_of!(VcpuHvmContext, cpu_regs), 8);
    }

    #[test]
    fn hvm_context_round_trips_both_modes() {
        let r64 = VcpuHvmX86_64 {
            rip: 0x1234,
            efer: 0x500,
            ..Default::default()
        };
        let c = VcpuHvmContext::x86_64(&r64);
        assert_eq!((c.mode, c.regs_64()), (VCPU_HVM_MODE_64B, r64));
        let r32 = crate::control::VcpuHvmX86_32 {
            eip: 7,
            tr_ar: 0x8b,
            ..Default::default()
        };
        let c = VcpuHvmContext::x86_32(&r32);
        assert_eq!((c.mode, c.regs_32()), (VCPU_HVM_MODE_32B, r32));
    }
}
