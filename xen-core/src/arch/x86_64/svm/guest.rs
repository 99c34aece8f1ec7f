//! A stopped vCPU seen through [`GuestState`]: its VMCB, the registers
//! VMRUN does not switch, and its lazily loaded debug registers.

use core::arch::x86_64::_rdtsc;

use x86_64::registers::model_specific::Msr;

use super::extstate::ExtState;
use super::vmcb::{attrib, Vmcb};
use super::vmrun::GuestRegs;
use crate::paging::guest_walk::GuestPaging;
use crate::vmexit::cr::CrUpdate;
use crate::vmexit::event::Event;
use crate::vmexit::insn::Segment;
use crate::vmexit::msr::{efer, GuestMsr};
use crate::vmexit::{Gpr, GuestState};

/// PATCH_LEVEL: the host's microcode revision (read-only).
const MSR_PATCH_LEVEL: u32 = 0x8b;

/// A stopped vCPU's state: [`GuestState`] over its VMCB and registers.
pub struct SvmGuest<'a> {
    pub(super) vmcb: &'a mut Vmcb,
    pub(super) regs: &'a mut GuestRegs,
    pub(super) ext: &'a mut ExtState,
    pub(super) flush_pending: &'a mut bool,
}

impl SvmGuest<'_> {
    /// The control registers a guest page walk depends on.
    pub fn paging(&self) -> GuestPaging {
        let s = &self.vmcb.save;
        GuestPaging {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        }
    }

    /// Sets RIP (a restarted hypercall moves it back over VMMCALL).
    pub fn set_rip(&mut self, rip: u64) {
        self.vmcb.save.rip = rip;
    }
}

impl GuestState for SvmGuest<'_> {
    fn gpr(&self, reg: Gpr) -> u64 {
        let r = &*self.regs;
        match reg {
            Gpr::Rax => self.vmcb.save.rax,
            Gpr::Rsp => self.vmcb.save.rsp,
            Gpr::Rbx => r.rbx,
            Gpr::Rcx => r.rcx,
            Gpr::Rdx => r.rdx,
            Gpr::Rsi => r.rsi,
            Gpr::Rdi => r.rdi,
            Gpr::Rbp => r.rbp,
            Gpr::R8 => r.r8,
            Gpr::R9 => r.r9,
            Gpr::R10 => r.r10,
            Gpr::R11 => r.r11,
            Gpr::R12 => r.r12,
            Gpr::R13 => r.r13,
            Gpr::R14 => r.r14,
            Gpr::R15 => r.r15,
        }
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        let r = &mut *self.regs;
        let slot = match reg {
            Gpr::Rax => &mut self.vmcb.save.rax,
            Gpr::Rsp => &mut self.vmcb.save.rsp,
            Gpr::Rbx => &mut r.rbx,
            Gpr::Rcx => &mut r.rcx,
            Gpr::Rdx => &mut r.rdx,
            Gpr::Rsi => &mut r.rsi,
            Gpr::Rdi => &mut r.rdi,
            Gpr::Rbp => &mut r.rbp,
            Gpr::R8 => &mut r.r8,
            Gpr::R9 => &mut r.r9,
            Gpr::R10 => &mut r.r10,
            Gpr::R11 => &mut r.r11,
            Gpr::R12 => &mut r.r12,
            Gpr::R13 => &mut r.r13,
            Gpr::R14 => &mut r.r14,
            Gpr::R15 => &mut r.r15,
        };
        *slot = value;
    }

    fn rip(&self) -> u64 {
        self.vmcb.save.rip
    }

    fn rflags(&self) -> u64 {
        self.vmcb.save.rflags
    }

    fn set_rflags(&mut self, value: u64) {
        self.vmcb.save.rflags = value;
    }

    fn skip_to(&mut self, next_rip: u64) {
        self.vmcb.save.rip = next_rip;
        // Bit 0: the STI / MOV SS shadow ends with the instruction.
        self.vmcb.control.interrupt_shadow &= !1;
    }

    fn in_64bit_mode(&self) -> bool {
        let s = &self.vmcb.save;
        s.efer & efer::LMA != 0 && s.cs.attrib & attrib::L != 0
    }

    fn control_regs(&self) -> GuestPaging {
        self.paging()
    }

    fn set_control_regs(&mut self, update: CrUpdate) {
        let s = &mut self.vmcb.save;
        s.cr0 = update.regs.cr0;
        s.cr4 = update.regs.cr4;
        s.efer = update.regs.efer | efer::SVME;
        *self.flush_pending |= update.flush_tlb;
    }

    fn code_bitness(&self) -> u32 {
        if self.in_64bit_mode() {
            64
        } else if self.vmcb.save.cs.attrib & attrib::DB != 0 {
            32
        } else {
            16
        }
    }

    fn segment_base(&self, segment: Segment) -> u64 {
        let s = &self.vmcb.save;
        match segment {
            Segment::Es => s.es.base,
            Segment::Cs => s.cs.base,
            Segment::Ss => s.ss.base,
            Segment::Ds => s.ds.base,
            Segment::Fs => s.fs.base,
            Segment::Gs => s.gs.base,
        }
    }

    fn cpl(&self) -> u8 {
        self.vmcb.save.cpl
    }

    fn take_debug_registers(&mut self) {
        self.ext.load_debug_registers();
        self.vmcb.control.intercept_dr = 0;
    }

    fn msr(&self, msr: GuestMsr) -> u64 {
        let s = &self.vmcb.save;
        match msr {
            GuestMsr::Efer => s.efer,
            GuestMsr::Star => s.star,
            GuestMsr::Lstar => s.lstar,
            GuestMsr::Cstar => s.cstar,
            GuestMsr::Sfmask => s.sfmask,
            GuestMsr::FsBase => s.fs.base,
            GuestMsr::GsBase => s.gs.base,
            GuestMsr::KernelGsBase => s.kernel_gs_base,
            GuestMsr::SysenterCs => s.sysenter_cs,
            GuestMsr::SysenterEsp => s.sysenter_esp,
            GuestMsr::SysenterEip => s.sysenter_eip,
            GuestMsr::Pat => s.g_pat,
            GuestMsr::DebugCtl => s.dbgctl,
            GuestMsr::LastBranchFromIp => s.br_from,
            GuestMsr::LastBranchToIp => s.br_to,
            GuestMsr::LastExceptionFromIp => s.last_excp_from,
            GuestMsr::LastExceptionToIp => s.last_excp_to,
            // SAFETY: RDTSC only reads the counter.
            GuestMsr::Tsc => unsafe { _rdtsc() }.wrapping_add(self.vmcb.control.tsc_offset),
            // SAFETY: PATCH_LEVEL exists on every AMD CPU (and QEMU's);
            // reading it has no side effects.
            GuestMsr::MicrocodeRevision => unsafe { Msr::new(MSR_PATCH_LEVEL).read() },
            GuestMsr::XenHypercallPage | GuestMsr::Fixed(_) => 0,
        }
    }

    fn set_msr(&mut self, msr: GuestMsr, value: u64) {
        let s = &mut self.vmcb.save;
        let slot = match msr {
            GuestMsr::Efer => &mut s.efer,
            GuestMsr::Star => &mut s.star,
            GuestMsr::Lstar => &mut s.lstar,
            GuestMsr::Cstar => &mut s.cstar,
            GuestMsr::Sfmask => &mut s.sfmask,
            GuestMsr::FsBase => &mut s.fs.base,
            GuestMsr::GsBase => &mut s.gs.base,
            GuestMsr::KernelGsBase => &mut s.kernel_gs_base,
            GuestMsr::SysenterCs => &mut s.sysenter_cs,
            GuestMsr::SysenterEsp => &mut s.sysenter_esp,
            GuestMsr::SysenterEip => &mut s.sysenter_eip,
            GuestMsr::Pat => &mut s.g_pat,
            // Without LBR virtualisation VMRUN does not load these: they
            // are only read back, as in Xen on such a CPU.
            GuestMsr::DebugCtl => &mut s.dbgctl,
            GuestMsr::LastBranchFromIp => &mut s.br_from,
            GuestMsr::LastBranchToIp => &mut s.br_to,
            GuestMsr::LastExceptionFromIp => &mut s.last_excp_from,
            GuestMsr::LastExceptionToIp => &mut s.last_excp_to,
            // `GuestMsr::write` never stores these.
            GuestMsr::XenHypercallPage
            | GuestMsr::Tsc
            | GuestMsr::MicrocodeRevision
            | GuestMsr::Fixed(_) => return,
        };
        *slot = value;
    }

    fn inject(&mut self, event: Event) {
        self.vmcb.control.event_inj = event.encode();
    }
}
