//! The registers of a hypercall and Xen's two calling conventions.
//!
//! - 64-bit caller (EFER.LMA and CS.L): RAX = number; RDI, RSI, RDX, R10,
//!   R8 = arguments 1-5 (`xen/include/public/arch-x86/xen-x86_64.h`).
//! - 32-bit caller (protected mode, or compatibility mode): EAX = number;
//!   EBX, ECX, EDX, ESI, EDI = arguments 1-5, each 32 bits
//!   (`arch-x86/xen-x86_32.h`; Xen's `hvm_hypercall` truncates them).

use crate::vmexit::{Gpr, GuestState};

/// The guest registers a hypercall reads, captured at the VMMCALL exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallRegs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// R8.
    pub r8: u64,
    /// R10.
    pub r10: u64,
    /// The vCPU runs 64-bit code (EFER.LMA and CS.L): the 64-bit convention.
    pub long_mode: bool,
    /// Current privilege level (the VMCB's CPL field). Xen refuses
    /// hypercalls from CPL > 0 of an HVM guest with `-EPERM`.
    pub cpl: u8,
}

impl HypercallRegs {
    /// Captures the registers of the vCPU in `guest`, which runs at `cpl`.
    pub fn capture(guest: &impl GuestState, cpl: u8) -> Self {
        Self {
            rax: guest.gpr(Gpr::Rax),
            rbx: guest.gpr(Gpr::Rbx),
            rcx: guest.gpr(Gpr::Rcx),
            rdx: guest.gpr(Gpr::Rdx),
            rsi: guest.gpr(Gpr::Rsi),
            rdi: guest.gpr(Gpr::Rdi),
            r8: guest.gpr(Gpr::R8),
            r10: guest.gpr(Gpr::R10),
            long_mode: guest.in_64bit_mode(),
            cpl,
        }
    }
}

/// Hypercall number and arguments after the calling convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawArgs {
    /// Hypercall number.
    pub nr: u64,
    /// Arguments 1-5 (zero-extended from 32 bits for a 32-bit caller).
    pub arg: [u64; 5],
    /// The caller uses the 32-bit convention.
    pub compat: bool,
}

/// Xen's hypercall continuation (`hypercall_create_continuation`): the
/// caller re-issues the same hypercall with `args`, because the rest of
/// the work must not run in one go (the caller may be preempted between
/// pieces, and no hypercall holds the pCPU for an unbounded time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    nr: u64,
    args: [u64; 5],
    compat: bool,
}

impl Continuation {
    /// The same continuation with argument `index` also set to `value`.
    pub fn with_arg(mut self, index: usize, value: u64) -> Self {
        if let Some(slot) = self.args.get_mut(index) {
            *slot = value;
        }
        self
    }

    /// The register values that make the caller call again: RAX = the
    /// hypercall number, the arguments in the caller's convention. The run
    /// loop also moves RIP back onto the VMMCALL.
    pub fn registers(&self) -> [(Gpr, u64); 6] {
        let [a1, a2, a3, a4, a5] = self.args;
        if self.compat {
            [
                (Gpr::Rax, self.nr),
                (Gpr::Rbx, a1),
                (Gpr::Rcx, a2),
                (Gpr::Rdx, a3),
                (Gpr::Rsi, a4),
                (Gpr::Rdi, a5),
            ]
        } else {
            [
                (Gpr::Rax, self.nr),
                (Gpr::Rdi, a1),
                (Gpr::Rsi, a2),
                (Gpr::Rdx, a3),
                (Gpr::R10, a4),
                (Gpr::R8, a5),
            ]
        }
    }
}

impl RawArgs {
    /// A continuation of this hypercall with argument `index` set to
    /// `value` and the others unchanged.
    pub fn continue_with(&self, index: usize, value: u64) -> Continuation {
        let mut args = self.arg;
        if let Some(slot) = args.get_mut(index) {
            *slot = value;
        }
        Continuation {
            nr: self.nr,
            args,
            compat: self.compat,
        }
    }

    /// A continuation with the same arguments: the work's progress is
    /// kept by the hypervisor (e.g. a dying domain's remaining frames).
    pub fn again(&self) -> Continuation {
        Continuation {
            nr: self.nr,
            args: self.arg,
            compat: self.compat,
        }
    }

    /// Applies the caller's convention to `regs`.
    pub fn from_regs(regs: &HypercallRegs) -> Self {
        if regs.long_mode {
            Self {
                nr: regs.rax,
                arg: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8],
                compat: false,
            }
        } else {
            let low = |r: u64| r & 0xffff_ffff;
            Self {
                nr: low(regs.rax),
                arg: [
                    low(regs.rbx),
                    low(regs.rcx),
                    low(regs.rdx),
                    low(regs.rsi),
                    low(regs.rdi),
                ],
                compat: true,
            }
        }
    }

    /// Argument `i` (0-based) as a C `int`/`unsigned int` (low 32 bits);
    /// 0 past the last argument.
    pub fn u32(&self, i: usize) -> u32 {
        (self.arg.get(i).copied().unwrap_or(0) & 0xffff_ffff) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(long_mode: bool) -> HypercallRegs {
        HypercallRegs {
            rax: 0xdead_0000_0000_0012,
            rbx: 0x1111_1111_aaaa_aaaa,
            rcx: 0x2222_2222_bbbb_bbbb,
            rdx: 0x3333_3333_cccc_cccc,
            rsi: 0x4444_4444_dddd_dddd,
            rdi: 0x5555_5555_eeee_eeee,
            r8: 0x6666_6666_ffff_ffff,
            r10: 0x7777_7777_9999_9999,
            long_mode,
            cpl: 0,
        }
    }

    #[test]
    fn long_mode_uses_rdi_rsi_rdx_r10_r8() {
        let a = RawArgs::from_regs(&regs(true));
        assert_eq!(a.nr, 0xdead_0000_0000_0012);
        assert_eq!(
            a.arg,
            [
                0x5555_5555_eeee_eeee,
                0x4444_4444_dddd_dddd,
                0x3333_3333_cccc_cccc,
                0x7777_7777_9999_9999,
                0x6666_6666_ffff_ffff
            ]
        );
        assert!(!a.compat);
    }

    #[test]
    fn protected_mode_uses_ebx_ecx_edx_esi_edi_truncated() {
        let a = RawArgs::from_regs(&regs(false));
        assert_eq!(a.nr, 0x12);
        assert_eq!(
            a.arg,
            [
                0xaaaa_aaaa,
                0xbbbb_bbbb,
                0xcccc_cccc,
                0xdddd_dddd,
                0xeeee_eeee
            ]
        );
        assert!(a.compat);
        assert_eq!(a.u32(0), 0xaaaa_aaaa);
    }
}
