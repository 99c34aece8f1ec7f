//! One vCPU in SVM guest mode: its VMCB and registers, intercepts, and
//! the run loop — VMRUN, decode the exit, let the portable
//! dispatcher (`vmexit::handle_exit`) complete or refuse it, resume —
//! which returns only when the scheduler or domain layer must act.

use super::super::mem::{alloc_zeroed_frame, FRAMES};
use super::super::{apic, ioapic};
use super::bitmaps::{iopm_pa, msrpm_pa};
use super::extstate::ExtState;
use super::guest::SvmGuest;
use super::pcpu::{this_pcpu, SvmError};
use super::vmcb::{intercept_cr, misc1, misc2, tlb, Vmcb, VmcbSegment, INTERCEPT_ALL_DR};
use super::vmrun::{svm_vmrun, GuestRegs};
use crate::domain::vcpu::{SegmentState, VcpuEntryState};
use crate::mm::{FramePool, Mfn};
use crate::paging::asid::VcpuAsid;
use crate::vmexit::event::{self, Event, NmiMask, V_INTR_MASKING, V_IRQ};
use crate::vmexit::io::IoPortPolicy;
use crate::vmexit::msr::efer;
use crate::vmexit::{code_name, completes_alone, handle_exit, ExitAction, VcpuEnv, VmExit};

mod intr;

/// PAT at reset (APM vol. 2, §7.8.2): WB, WT, UC-, UC, repeated.
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
/// GDTR and IDTR limit at reset (APM vol. 2, §14.1.3).
const RESET_DESCRIPTOR_TABLE_LIMIT: u32 = 0xffff;
/// DR6 and DR7 at reset.
const DR6_RESET: u64 = 0xffff_0ff0;
const DR7_RESET: u64 = 0x400;
/// DR7 L0-L3/G0-G3: a breakpoint in DR0-3 is armed (Xen's
/// `DR7_ACTIVE_MASK`).
const DR7_ENABLES: u64 = 0xff;

/// A vCPU's hardware state: its VMCB frame (owned, freed on drop), the
/// GPRs VMRUN does not switch, and its FPU and debug registers.
pub struct SvmVcpu {
    vmcb: Mfn,
    /// The frame holding its [`ExtState`].
    ext: Mfn,
    regs: GuestRegs,
    /// Its TLB tag on the pCPU it last ran on.
    asid: VcpuAsid,
    /// Its translations must go before it runs again: it drops its ASID.
    flush_pending: bool,
    /// What V_IRQ holds for the current VMRUN.
    offered: Option<intr::Offered>,
    /// Its virtual NMI mask (SVM keeps none).
    nmi: NmiMask,
}

impl SvmVcpu {
    /// A vCPU about to start from `entry` (for a PVH guest,
    /// `VcpuEntryState::pvh`), with nested paging rooted at `npt_root` and
    /// the port policy `io`.
    pub fn new(
        entry: &VcpuEntryState,
        npt_root: Mfn,
        io: IoPortPolicy,
    ) -> Result<SvmVcpu, SvmError> {
        let vmcb = alloc_zeroed_frame().ok_or(SvmError::OutOfMemory)?;
        let Some(ext) = alloc_zeroed_frame() else {
            FRAMES.lock().free(vmcb);
            return Err(SvmError::OutOfMemory);
        };
        let mut vcpu = SvmVcpu {
            vmcb,
            ext,
            regs: GuestRegs {
                rbx: entry.gprs.rbx,
                rcx: entry.gprs.rcx,
                rdx: entry.gprs.rdx,
                rsi: entry.gprs.rsi,
                rdi: entry.gprs.rdi,
                rbp: entry.gprs.rbp,
                ..GuestRegs::default()
            },
            asid: VcpuAsid::NONE,
            flush_pending: false,
            offered: None,
            nmi: NmiMask::default(),
        };
        vcpu.ext_mut().reset();
        let vmcb = vcpu.vmcb_mut();
        set_intercepts(vmcb, io, npt_root);
        load_entry_state(vmcb, entry);
        Ok(vcpu)
    }

    /// Readies the next VMRUN, under the lock that guards `env`'s
    /// domain: injects a waiting NMI, or offers `upcall` (the
    /// event-channel upcall vector, if the guest has not taken it in
    /// this stretch yet) or else the local APIC's highest deliverable
    /// vector.
    pub fn prepare(&mut self, env: &mut impl VcpuEnv, upcall: Option<u8>) {
        self.offer_interrupt(upcall, env);
    }

    /// Completes `exit`, the one the last [`Self::vmrun`] ended with
    /// ([`Self::exit`]), under the lock again: counts it, acknowledges an
    /// interrupt the guest took and lets the dispatcher act. Returns what
    /// the caller must do ([`ExitAction::Resume`]: VMRUN again) and
    /// whether the guest took the upcall.
    pub fn complete(&mut self, exit: VmExit, env: &mut impl VcpuEnv) -> (ExitAction, bool) {
        self.count_exit(env);
        if exit == VmExit::Iret {
            self.nmi_iret();
        }
        let upcall_taken = self.interrupt_taken(env) == Some(intr::Offered::Upcall);
        let action = handle_exit(exit, &mut self.guest(), env);
        if action != ExitAction::Resume {
            return (action, upcall_taken);
        }
        if !env.may_run() {
            return (ExitAction::Stopped, upcall_taken);
        }
        // A timer that expired while the host handled the exit was
        // taken by the host at STGI, not as an INTR exit: the slice
        // is over all the same (a guest exiting all the time would
        // otherwise run until its next hypercall). So is a device
        // interrupt: the run loop must route it now.
        if apic::timer_fired() || ioapic::any_pending() {
            return (ExitAction::Preempted, upcall_taken);
        }
        (ExitAction::Resume, upcall_taken)
    }

    /// The exit the last [`Self::vmrun`] ended with.
    pub fn exit(&self) -> VmExit {
        let c = &self.vmcb().control;
        VmExit::decode(c.exitcode, c.exitinfo1, c.exitinfo2)
    }

    /// Whether `exit` (this vCPU's last) concerns this vCPU alone
    /// (`vmexit::completes_alone`): the machine lock's reader side may
    /// complete it.
    pub fn completes_alone(&self, exit: VmExit) -> bool {
        completes_alone(exit, self.regs.rcx)
    }

    /// The guest's registers and state as they stand between runs: the
    /// hypercall layer reads arguments and writes results through it.
    pub fn guest(&mut self) -> SvmGuest<'_> {
        // SAFETY: as in `vmcb_mut`: the frame is this vCPU's alone, and the
        // returned view borrows `self` mutably, so no other reference to
        // the VMCB can exist while it lives.
        let vmcb = unsafe { &mut *(self.vmcb.hpa() as *mut Vmcb) };
        // SAFETY: as in `ext_mut`; a different frame from the VMCB's.
        let ext = unsafe { &mut *(self.ext.hpa() as *mut ExtState) };
        SvmGuest {
            vmcb,
            regs: &mut self.regs,
            ext,
            flush_pending: &mut self.flush_pending,
        }
    }

    /// Makes `event` pending for the next VMRUN (EVENTINJ).
    pub fn inject(&mut self, event: Event) {
        self.vmcb_mut().control.event_inj = event.encode();
    }

    /// Makes `vector` a pending virtual interrupt (V_IRQ): the guest takes
    /// it when its RFLAGS.IF allows; the CPU clears V_IRQ on delivery.
    pub fn set_virtual_interrupt(&mut self, vector: u8) {
        let (int_ctl, int_vector) = event::virtual_interrupt(vector);
        let control = &mut self.vmcb_mut().control;
        control.int_ctl = int_ctl;
        control.int_vector = int_vector;
    }

    /// Withdraws a virtual interrupt the guest has not taken yet (its
    /// event was handled meanwhile).
    pub fn clear_virtual_interrupt(&mut self) {
        self.vmcb_mut().control.int_ctl &= !V_IRQ;
    }

    /// Whether a virtual interrupt is still waiting for the guest.
    pub fn virtual_interrupt_pending(&self) -> bool {
        self.vmcb().control.int_ctl & V_IRQ != 0
    }

    /// Flushes the guest's TLB entries at the next VMRUN (after an NPT
    /// entry is removed or weakened).
    pub fn flush_tlb(&mut self) {
        self.flush_pending = true;
    }

    /// One VMRUN, with no lock held: it touches only this vCPU's own
    /// frames and registers and this pCPU's ASIDs and FPU; the caller
    /// completes the exit with [`Self::complete`].
    pub fn vmrun(&mut self) {
        let pcpu = this_pcpu();
        let vmcb_pa = self.vmcb.hpa();
        if self.ext_mut().make_current() {
            // Its DR0-3 are not in the CPU. With a breakpoint enabled in
            // its DR7 they must be (else another vCPU's addresses would
            // fire); otherwise the first DR access loads them (Xen's
            // svm_restore_dr).
            let control = if self.vmcb().save.dr7 & DR7_ENABLES != 0 {
                self.ext_mut().load_debug_registers();
                0
            } else {
                INTERCEPT_ALL_DR
            };
            self.vmcb_mut().control.intercept_dr = control;
        }
        if core::mem::take(&mut self.flush_pending) {
            self.asid.flush();
        }
        let asid = pcpu.asids.lock().enter(&mut self.asid);
        let control = &mut self.vmcb_mut().control;
        control.guest_asid = asid.asid;
        control.tlb_control = if asid.flush_all {
            tlb::FLUSH_ALL
        } else {
            tlb::DO_NOTHING
        };
        control.vmcb_clean = 0;
        // SAFETY: SVM is enabled on this pCPU (this_pcpu); the VMCB frame
        // is owned by this vCPU and no reference to it is live across the
        // call; host_vmcb_pa is this pCPU's own host-state VMCB; `regs` is
        // a valid exclusive borrow.
        unsafe { svm_vmrun(&mut self.regs, vmcb_pa, pcpu.host_vmcb_pa) };
        let control = &mut self.vmcb_mut().control;
        // An event cut short by the exit must be delivered again. Exits
        // that inject (instruction intercepts) never interrupt delivery,
        // so the dispatcher cannot overwrite this.
        control.event_inj =
            Event::decode_exit_int_info(control.exitintinfo).map_or(0, Event::encode);
    }

    /// Counts the exit the last VMRUN ended with in `env`.
    fn count_exit(&self, env: &mut impl VcpuEnv) {
        let vmcb = self.vmcb();
        let c = &vmcb.control;
        // RAX, RCX and RDI name what was asked: the hypercall and its
        // sub-op (VMMCALL), the leaf and sub-leaf (CPUID), the MSR
        // (docs/linux-guest.md's lists were read from this line under
        // `loglvl=trace`); RIP says whose code it was.
        log::trace!(
            "svm: exit {} ({:#x}) asid={} rip={:#x} info1={:#x} info2={:#x} rax={:#x} rcx={:#x} rdi={:#x}",
            code_name(c.exitcode),
            c.exitcode,
            c.guest_asid,
            vmcb.save.rip,
            c.exitinfo1,
            c.exitinfo2,
            vmcb.save.rax,
            self.regs.rcx,
            self.regs.rdi
        );
        env.count_exit(c.exitcode);
    }

    fn vmcb(&self) -> &Vmcb {
        // SAFETY: the frame was allocated for this vCPU alone, is
        // identity-mapped, page-aligned and initialised (zeroed, then
        // written); every Vmcb field is an integer, so any contents are a
        // valid Vmcb. The CPU writes it only inside `svm_vmrun`, while no
        // reference exists.
        unsafe { &*(self.vmcb.hpa() as *const Vmcb) }
    }

    fn vmcb_mut(&mut self) -> &mut Vmcb {
        // SAFETY: as in `vmcb`; `&mut self` makes this the only reference.
        unsafe { &mut *(self.vmcb.hpa() as *mut Vmcb) }
    }

    fn ext_mut(&mut self) -> &mut ExtState {
        // SAFETY: the frame was allocated zeroed for this vCPU alone and
        // is identity-mapped and page-aligned; an all-zero ExtState is
        // valid, and only this vCPU (through `&mut self`) or, while it
        // is not running, `ExtState::make_current` of the next vCPU on
        // this pCPU, touch it, never both at once.
        unsafe { &mut *(self.ext.hpa() as *mut ExtState) }
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        self.ext_mut().release();
        let mut frames = FRAMES.lock();
        frames.free(self.ext);
        frames.free(self.vmcb);
    }
}

/// Intercepts (APM vol. 2, §15.9-15.14): everything that could touch host
/// state or other domains exits; guest exceptions do not.
fn set_intercepts(vmcb: &mut Vmcb, io: IoPortPolicy, npt_root: Mfn) {
    let c = &mut vmcb.control;
    // CR0/CR4 writes are checked as Xen's hvm_set_cr0/hvm_set_cr4 do;
    // debug registers are loaded on first use (`extstate`).
    c.intercept_cr = intercept_cr::CR0_WRITE | intercept_cr::CR4_WRITE;
    c.intercept_dr = INTERCEPT_ALL_DR;
    c.intercept_misc1 = misc1::INTR
        | misc1::NMI
        | misc1::SMI
        | misc1::CPUID
        | misc1::INVD
        | misc1::HLT
        | misc1::INVLPGA
        | misc1::IOIO_PROT
        | misc1::MSR_PROT
        | misc1::SHUTDOWN;
    c.intercept_misc2 = misc2::VMRUN
        | misc2::VMMCALL
        | misc2::VMLOAD
        | misc2::VMSAVE
        | misc2::STGI
        | misc2::CLGI
        | misc2::SKINIT
        | misc2::MONITOR
        | misc2::MWAIT
        | misc2::XSETBV;
    c.iopm_base_pa = iopm_pa(io);
    c.msrpm_base_pa = msrpm_pa();
    c.int_ctl = V_INTR_MASKING;
    c.np_enable = 1;
    c.n_cr3 = npt_root.hpa();
}

/// The guest state save area from `entry`; what `entry` does not name
/// starts as after a reset (APM vol. 2, §14.1.3), plus EFER.SVME, which
/// VMRUN requires and guests never see.
fn load_entry_state(vmcb: &mut Vmcb, entry: &VcpuEntryState) {
    let segment = |s: &SegmentState| VmcbSegment {
        selector: s.selector,
        attrib: s.attrib,
        limit: s.limit,
        base: s.base,
    };
    let s = &mut vmcb.save;
    s.cs = segment(&entry.cs);
    s.ds = segment(&entry.ds);
    s.es = segment(&entry.es);
    s.ss = segment(&entry.ss);
    s.fs = segment(&entry.ds);
    s.gs = segment(&entry.ds);
    s.tr = segment(&entry.tr);
    // Reset: GDTR and IDTR at 0 with a 64 KiB limit (real mode's IVT).
    s.gdtr = VmcbSegment {
        limit: RESET_DESCRIPTOR_TABLE_LIMIT,
        ..VmcbSegment::default()
    };
    s.idtr = s.gdtr;
    // CPL is SS.DPL (0 for every state VCPUOP_initialise accepts from a
    // kernel; a guest asking for ring 3 gets it).
    s.cpl = u8::try_from((entry.ss.attrib >> 5) & 3).unwrap_or(0);
    s.efer = entry.efer | efer::SVME;
    s.cr0 = entry.cr0;
    s.cr3 = entry.cr3;
    s.cr4 = entry.cr4;
    s.rflags = entry.rflags;
    s.rip = entry.rip;
    s.rsp = entry.gprs.rsp;
    s.rax = entry.gprs.rax;
    s.dr6 = DR6_RESET;
    s.dr7 = DR7_RESET;
    s.g_pat = DEFAULT_PAT;
}
