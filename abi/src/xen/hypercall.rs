//! Hypercall numbers, `xen/include/public/xen.h` (`__HYPERVISOR_*`).
//!
//! x86_64 convention: RAX = number; RDI, RSI, RDX, R10, R8 = arguments 1-5;
//! result in RAX (0 or positive on success, a negative [`Errno`] on error).
//! xen-core implements only part of this list; the rest return `-ENOSYS`.
//!
//! [`Errno`]: super::errno::Errno

/// `__HYPERVISOR_set_trap_table` (PV only).
pub const SET_TRAP_TABLE: u64 = 0;
/// `__HYPERVISOR_mmu_update` (PV only).
pub const MMU_UPDATE: u64 = 1;
/// `__HYPERVISOR_set_gdt` (PV only).
pub const SET_GDT: u64 = 2;
/// `__HYPERVISOR_stack_switch` (PV only).
pub const STACK_SWITCH: u64 = 3;
/// `__HYPERVISOR_set_callbacks` (PV only).
pub const SET_CALLBACKS: u64 = 4;
/// `__HYPERVISOR_fpu_taskswitch` (PV only).
pub const FPU_TASKSWITCH: u64 = 5;
/// `__HYPERVISOR_sched_op_compat` (obsolete since 3.0.2).
pub const SCHED_OP_COMPAT: u64 = 6;
/// `__HYPERVISOR_platform_op` (formerly `dom0_op`).
pub const PLATFORM_OP: u64 = 7;
/// `__HYPERVISOR_set_debugreg` (PV only).
pub const SET_DEBUGREG: u64 = 8;
/// `__HYPERVISOR_get_debugreg` (PV only).
pub const GET_DEBUGREG: u64 = 9;
/// `__HYPERVISOR_update_descriptor` (PV only).
pub const UPDATE_DESCRIPTOR: u64 = 10;
/// `__HYPERVISOR_memory_op`: see [`super::memory`].
pub const MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_multicall`.
pub const MULTICALL: u64 = 13;
/// `__HYPERVISOR_update_va_mapping` (PV only).
pub const UPDATE_VA_MAPPING: u64 = 14;
/// `__HYPERVISOR_set_timer_op`: arg1 = absolute system time in ns of the
/// vCPU's one-shot timer (VIRQ_TIMER), 0 to cancel.
pub const SET_TIMER_OP: u64 = 15;
/// `__HYPERVISOR_event_channel_op_compat` (obsolete since 3.0.2).
pub const EVENT_CHANNEL_OP_COMPAT: u64 = 16;
/// `__HYPERVISOR_xen_version`: see [`super::version`].
pub const XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io`: see [`super::console_io`].
pub const CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_physdev_op_compat` (obsolete since 3.0.2).
pub const PHYSDEV_OP_COMPAT: u64 = 19;
/// `__HYPERVISOR_grant_table_op`: see [`super::grant_table`].
pub const GRANT_TABLE_OP: u64 = 20;
/// `__HYPERVISOR_vm_assist`: see [`super::vm_assist`].
pub const VM_ASSIST: u64 = 21;
/// `__HYPERVISOR_update_va_mapping_otherdomain` (PV only).
pub const UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
/// `__HYPERVISOR_iret` (x86 PV only).
pub const IRET: u64 = 23;
/// `__HYPERVISOR_vcpu_op`: see [`super::vcpu`].
pub const VCPU_OP: u64 = 24;
/// `__HYPERVISOR_set_segment_base` (x86_64 PV only).
pub const SET_SEGMENT_BASE: u64 = 25;
/// `__HYPERVISOR_mmuext_op` (PV only).
pub const MMUEXT_OP: u64 = 26;
/// `__HYPERVISOR_xsm_op`.
pub const XSM_OP: u64 = 27;
/// `__HYPERVISOR_nmi_op`.
pub const NMI_OP: u64 = 28;
/// `__HYPERVISOR_sched_op`: see [`super::sched`].
pub const SCHED_OP: u64 = 29;
/// `__HYPERVISOR_callback_op`.
pub const CALLBACK_OP: u64 = 30;
/// `__HYPERVISOR_xenoprof_op`.
pub const XENOPROF_OP: u64 = 31;
/// `__HYPERVISOR_event_channel_op`: see [`super::event_channel`].
pub const EVENT_CHANNEL_OP: u64 = 32;
/// `__HYPERVISOR_physdev_op`.
pub const PHYSDEV_OP: u64 = 33;
/// `__HYPERVISOR_hvm_op`: see [`super::hvm`].
pub const HVM_OP: u64 = 34;
/// `__HYPERVISOR_sysctl` (Xen's toolstack ABI; ours is [`crate::control`]).
pub const SYSCTL: u64 = 35;
/// `__HYPERVISOR_domctl` (Xen's toolstack ABI; ours is [`crate::control`]).
pub const DOMCTL: u64 = 36;
/// `__HYPERVISOR_kexec_op`.
pub const KEXEC_OP: u64 = 37;
/// `__HYPERVISOR_tmem_op` (removed from Xen).
pub const TMEM_OP: u64 = 38;
/// `__HYPERVISOR_argo_op`.
pub const ARGO_OP: u64 = 39;
/// `__HYPERVISOR_xenpmu_op`.
pub const XENPMU_OP: u64 = 40;
/// `__HYPERVISOR_dm_op`.
pub const DM_OP: u64 = 41;
/// `__HYPERVISOR_hypfs_op`.
pub const HYPFS_OP: u64 = 42;
/// `__HYPERVISOR_arch_0`; on x86 `__HYPERVISOR_mca` (xen-mca.h).
pub const ARCH_0: u64 = 48;
/// `__HYPERVISOR_arch_1`; on x86 `__HYPERVISOR_paging_domctl_cont` (Xen-internal).
pub const ARCH_1: u64 = 49;
/// `__HYPERVISOR_arch_7`: unused by Xen on x86; our control hypercall
/// ([`crate::control::HYPERVISOR_CONTROL_OP`]).
pub const ARCH_7: u64 = 55;
/// Size of the hypercall number space a dispatch table must cover.
pub const NR_HYPERCALLS: u64 = 64;

/// Xen's name of hypercall `nr` (without `__HYPERVISOR_`), for logs and
/// statistics; `None` for a number Xen does not define.
pub fn name(nr: u64) -> Option<&'static str> {
    Some(match nr {
        SET_TRAP_TABLE => "set_trap_table",
        MMU_UPDATE => "mmu_update",
        SET_GDT => "set_gdt",
        STACK_SWITCH => "stack_switch",
        SET_CALLBACKS => "set_callbacks",
        FPU_TASKSWITCH => "fpu_taskswitch",
        SCHED_OP_COMPAT => "sched_op_compat",
        PLATFORM_OP => "platform_op",
        SET_DEBUGREG => "set_debugreg",
        GET_DEBUGREG => "get_debugreg",
        UPDATE_DESCRIPTOR => "update_descriptor",
        MEMORY_OP => "memory_op",
        MULTICALL => "multicall",
        UPDATE_VA_MAPPING => "update_va_mapping",
        SET_TIMER_OP => "set_timer_op",
        EVENT_CHANNEL_OP_COMPAT => "event_channel_op_compat",
        XEN_VERSION => "xen_version",
        CONSOLE_IO => "console_io",
        PHYSDEV_OP_COMPAT => "physdev_op_compat",
        GRANT_TABLE_OP => "grant_table_op",
        VM_ASSIST => "vm_assist",
        UPDATE_VA_MAPPING_OTHERDOMAIN => "update_va_mapping_otherdomain",
        IRET => "iret",
        VCPU_OP => "vcpu_op",
        SET_SEGMENT_BASE => "set_segment_base",
        MMUEXT_OP => "mmuext_op",
        XSM_OP => "xsm_op",
        NMI_OP => "nmi_op",
        SCHED_OP => "sched_op",
        CALLBACK_OP => "callback_op",
        XENOPROF_OP => "xenoprof_op",
        EVENT_CHANNEL_OP => "event_channel_op",
        PHYSDEV_OP => "physdev_op",
        HVM_OP => "hvm_op",
        SYSCTL => "sysctl",
        DOMCTL => "domctl",
        KEXEC_OP => "kexec_op",
        TMEM_OP => "tmem_op",
        ARGO_OP => "argo_op",
        XENPMU_OP => "xenpmu_op",
        DM_OP => "dm_op",
        HYPFS_OP => "hypfs_op",
        ARCH_0 => "mca",
        ARCH_1 => "paging_domctl_cont",
        ARCH_7 => "control_op",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_xen_h() {
        assert_eq!(super::name(18), Some("console_io"));
        assert_eq!(super::name(29), Some("sched_op"));
        assert_eq!(super::name(55), Some("control_op"));
        assert_eq!(super::name(63), None);
    }
}
