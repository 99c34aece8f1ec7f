//! SVM exit codes and their decoding into a typed [`VmExit`].
//!
//! Source: AMD64 APM vol. 2, appendix C ("SVM Intercept Exit Codes") and
//! §15.10.2 (IOIO), §15.11 (MSR), §15.25.6 (nested page faults).

use super::io::IoAccess;

pub use abi::svm_exit::{code, code_name};

/// Which RDMSR/WRMSR caused an MSR exit (EXITINFO1 bit 0, APM §15.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrDirection {
    /// RDMSR: ECX = index; result in EDX:EAX.
    Read,
    /// WRMSR: ECX = index, EDX:EAX = value.
    Write,
}

/// An instruction for a feature CPUID hides from guests (SVM, XSAVE,
/// MONITOR/MWAIT); each is answered with #UD, as on a CPU without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedInstruction {
    Vmrun,
    Vmload,
    Vmsave,
    Stgi,
    Clgi,
    Skinit,
    Invlpga,
    Monitor,
    Mwait,
    Xsetbv,
}

/// A VM exit, decoded from the VMCB's EXITCODE, EXITINFO1 and EXITINFO2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// MOV to CR`n`, or (for CR0) CLTS or LMSW: the instruction has not
    /// run; xen-core decodes and emulates it (no decode assists).
    CrWrite(u8),
    /// A MOV to or from a debug register while the vCPU's DR0-3 are not
    /// loaded: load them and re-run the instruction (Xen's lazy switch).
    DebugRegisterAccess,
    /// An intercepted exception (none are intercepted today).
    Exception { vector: u8, error_code: u32 },
    /// A physical interrupt arrived while the guest ran: the host takes it
    /// after STGI (this is how the timer preempts a guest).
    Interrupt,
    /// A physical NMI arrived while the guest ran.
    Nmi,
    /// A system management interrupt arrived while the guest ran.
    Smi,
    /// An INIT signal arrived while the guest ran.
    Init,
    /// The guest can take a virtual interrupt now: intercepted only to
    /// inject a waiting NMI once an interrupt shadow or a pending event
    /// is over ([`super::event::NmiEntry::Window`]).
    VirtualInterruptWindow,
    /// IRET, intercepted while a virtual NMI is in service; it has not
    /// run, and runs when the guest resumes (Xen's `VMEXIT_IRET`).
    Iret,
    /// CPUID (2 bytes).
    Cpuid,
    /// HLT (1 byte).
    Hlt,
    /// VMMCALL (3 bytes): a hypercall.
    Vmmcall,
    /// RDMSR/WRMSR (2 bytes each).
    Msr(MsrDirection),
    /// Port I/O to a port the guest does not own.
    Io(IoAccess),
    /// Shutdown: the guest triple-faulted.
    Shutdown,
    /// INVD (2 bytes): completed as a no-op, since dropping dirty cache
    /// lines would corrupt memory the guest does not own.
    Invd,
    /// An instruction the guest may not use.
    Refused(RefusedInstruction),
    /// Nested page fault: `gpa` has no (or too weak a) NPT mapping.
    /// `error_code` is EXITINFO1: bit 0 present, 1 write, 2 user, 3
    /// reserved bit, 4 fetch, 32 final translation, 33 guest page walk.
    NestedPageFault { gpa: u64, error_code: u64 },
    /// VMRUN refused the guest state (VMCB consistency checks failed).
    InvalidGuestState,
    /// Any exit code xen-core does not intercept; reaching it is a bug or
    /// a CPU quirk, and is treated as fatal for the domain.
    Unknown(u64),
}

impl VmExit {
    /// Decodes an exit from the VMCB fields EXITCODE, EXITINFO1, EXITINFO2.
    pub fn decode(exit_code: u64, exit_info1: u64, exit_info2: u64) -> VmExit {
        use code::*;
        // QEMU reports VMEXIT_INVALID with only the low 32 bits set.
        if exit_code & 0xffff_ffff == INVALID_LOW32 {
            return VmExit::InvalidGuestState;
        }
        match exit_code {
            CR_WRITE_BASE..=CR_WRITE_LAST => {
                VmExit::CrWrite(((exit_code - CR_WRITE_BASE) & 0xf) as u8)
            }
            DR_READ_BASE..=DR_WRITE_LAST => VmExit::DebugRegisterAccess,
            EXCEPTION_BASE..=EXCEPTION_LAST => VmExit::Exception {
                vector: ((exit_code - EXCEPTION_BASE) & 0x1f) as u8,
                error_code: (exit_info1 & 0xffff_ffff) as u32,
            },
            INTR => VmExit::Interrupt,
            NMI => VmExit::Nmi,
            SMI => VmExit::Smi,
            INIT => VmExit::Init,
            VINTR => VmExit::VirtualInterruptWindow,
            IRET => VmExit::Iret,
            CPUID => VmExit::Cpuid,
            HLT => VmExit::Hlt,
            VMMCALL => VmExit::Vmmcall,
            MSR if exit_info1 & 1 == 0 => VmExit::Msr(MsrDirection::Read),
            MSR => VmExit::Msr(MsrDirection::Write),
            IOIO => VmExit::Io(IoAccess::decode(exit_info1, exit_info2)),
            SHUTDOWN => VmExit::Shutdown,
            INVD => VmExit::Invd,
            VMRUN => VmExit::Refused(RefusedInstruction::Vmrun),
            VMLOAD => VmExit::Refused(RefusedInstruction::Vmload),
            VMSAVE => VmExit::Refused(RefusedInstruction::Vmsave),
            STGI => VmExit::Refused(RefusedInstruction::Stgi),
            CLGI => VmExit::Refused(RefusedInstruction::Clgi),
            SKINIT => VmExit::Refused(RefusedInstruction::Skinit),
            INVLPGA => VmExit::Refused(RefusedInstruction::Invlpga),
            MONITOR => VmExit::Refused(RefusedInstruction::Monitor),
            MWAIT => VmExit::Refused(RefusedInstruction::Mwait),
            XSETBV => VmExit::Refused(RefusedInstruction::Xsetbv),
            NPF => VmExit::NestedPageFault {
                gpa: exit_info2,
                error_code: exit_info1,
            },
            other => VmExit::Unknown(other),
        }
    }

    /// Length in bytes of the instruction that caused this exit, for the
    /// instructions whose RIP xen-core advances itself (QEMU 7.2 has no
    /// NRIP save). `None` for events, faults and port I/O (whose next RIP
    /// is in EXITINFO2, see [`IoAccess::next_rip`]).
    pub fn instruction_len(&self) -> Option<u64> {
        match self {
            // 0f a2
            VmExit::Cpuid => Some(2),
            // f4
            VmExit::Hlt => Some(1),
            // 0f 01 d9
            VmExit::Vmmcall => Some(3),
            // 0f 32 / 0f 30
            VmExit::Msr(_) => Some(2),
            // 0f 08
            VmExit::Invd => Some(2),
            _ => None,
        }
    }

    /// The RIP after the intercepted instruction, given the guest's RIP at
    /// the exit. `None` if this exit is not an instruction xen-core
    /// completes. RIP wraps like the CPU's; a 32-bit guest's EIP is kept
    /// within 4 GiB.
    pub fn next_rip(&self, rip: u64, long_mode: bool) -> Option<u64> {
        let next = match self {
            VmExit::Io(io) => io.next_rip,
            _ => rip.wrapping_add(self.instruction_len()?),
        };
        Some(if long_mode { next } else { next & 0xffff_ffff })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_exits_seen_under_qemu() {
        assert_eq!(VmExit::decode(0x81, 0, 0), VmExit::Vmmcall);
        assert_eq!(VmExit::decode(0x72, 0, 0), VmExit::Cpuid);
        assert_eq!(VmExit::decode(0x78, 0, 0), VmExit::Hlt);
        assert_eq!(VmExit::decode(0x74, 0, 0), VmExit::Iret);
        assert_eq!(VmExit::decode(0x64, 0, 0), VmExit::VirtualInterruptWindow);
        assert_eq!(
            VmExit::decode(0x400, 0x2_0000_0007, 0x1000),
            VmExit::NestedPageFault {
                gpa: 0x1000,
                error_code: 0x2_0000_0007
            }
        );
        assert_eq!(VmExit::decode(0x7c, 0, 0), VmExit::Msr(MsrDirection::Read));
        assert_eq!(VmExit::decode(0x7c, 1, 0), VmExit::Msr(MsrDirection::Write));
        assert_eq!(
            VmExit::decode(0x4e, 0x2, 0),
            VmExit::Exception {
                vector: 14,
                error_code: 2
            }
        );
    }

    #[test]
    fn decodes_cr_writes_and_dr_accesses() {
        assert_eq!(VmExit::decode(0x10, 0, 0), VmExit::CrWrite(0));
        assert_eq!(VmExit::decode(0x14, 0, 0), VmExit::CrWrite(4));
        assert_eq!(VmExit::decode(0x20, 0, 0), VmExit::DebugRegisterAccess);
        assert_eq!(VmExit::decode(0x37, 0, 0), VmExit::DebugRegisterAccess);
    }

    #[test]
    fn invalid_state_is_recognised_by_its_low_32_bits() {
        assert_eq!(VmExit::decode(u64::MAX, 0, 0), VmExit::InvalidGuestState);
        assert_eq!(VmExit::decode(0xffff_ffff, 0, 0), VmExit::InvalidGuestState);
    }

    #[test]
    fn unknown_codes_stay_unknown() {
        assert_eq!(VmExit::decode(0x6e, 0, 0), VmExit::Unknown(0x6e));
        assert_eq!(
            VmExit::decode(0x1_0000_0400, 0, 0),
            VmExit::Unknown(0x1_0000_0400)
        );
    }

    #[test]
    fn rip_advance_uses_the_instruction_lengths() {
        let at = 0x1000;
        assert_eq!(VmExit::Vmmcall.next_rip(at, true), Some(0x1003));
        assert_eq!(VmExit::Cpuid.next_rip(at, true), Some(0x1002));
        assert_eq!(VmExit::Hlt.next_rip(at, true), Some(0x1001));
        assert_eq!(
            VmExit::Msr(MsrDirection::Write).next_rip(at, true),
            Some(0x1002)
        );
        assert_eq!(VmExit::Interrupt.next_rip(at, true), None);
        assert_eq!(VmExit::Shutdown.next_rip(at, true), None);
    }

    #[test]
    fn rip_advance_wraps_eip_in_32_bit_mode() {
        assert_eq!(VmExit::Vmmcall.next_rip(0xffff_fffe, false), Some(1));
        assert_eq!(
            VmExit::Vmmcall.next_rip(0xffff_fffe, true),
            Some(0x1_0000_0001)
        );
    }

    #[test]
    fn io_next_rip_comes_from_exitinfo2() {
        let exit = VmExit::decode(0x7b, (0x80 << 16) | 0x10, 0x2345);
        assert_eq!(exit.next_rip(0x2344, true), Some(0x2345));
    }
}
