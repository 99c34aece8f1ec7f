//! The portable half of the vCPU loop: what to do about one VM exit.
//!
//! The arch layer runs the guest, decodes the exit ([`VmExit::decode`]) and
//! calls [`handle_exit`] with the guest's state behind [`GuestState`] and
//! the domain's services behind [`VcpuEnv`]. Exits xen-core completes on
//! its own (CPUID, MSRs, refused instructions) return
//! [`ExitAction::Resume`]; the rest go up to the scheduler and domain
//! layer.

use crate::domain::CrashReason;
use crate::guest_mem::GuestFault;
use crate::logger::GUEST;
use crate::paging::guest_walk::GuestPaging;
use crate::vlapic::{Ipi, Vlapic};

use super::cpuid::{guest_cpuid, CpuidResult, GuestIdentity};
use super::cr::CrUpdate;
use super::event::Event;
use super::exit::VmExit;
use super::insn::{Segment, MAX_INSN_LEN};
use super::msr::{GuestMsr, MsrFault, MsrWrite};
use super::unclaimed;
use super::MsrDirection;

/// A general-purpose register of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gpr {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

/// The state of one vCPU stopped at a VM exit (arch: its VMCB and the
/// register block the VMRUN stub fills).
pub trait GuestState {
    /// A general-purpose register, 64 bits wide.
    fn gpr(&self, reg: Gpr) -> u64;
    /// Sets a general-purpose register.
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    /// The guest's RIP at the exit.
    fn rip(&self) -> u64;
    /// The guest's RFLAGS.
    fn rflags(&self) -> u64;
    /// Sets RFLAGS (an emulated instruction's flags result).
    fn set_rflags(&mut self, value: u64);
    /// Moves RIP past an instruction xen-core completed, ending any
    /// interrupt shadow (STI; HLT) as the CPU would.
    fn skip_to(&mut self, next_rip: u64);
    /// Whether the guest runs 64-bit code (EFER.LMA and CS.L): otherwise
    /// EIP wraps at 4 GiB.
    fn in_64bit_mode(&self) -> bool;
    /// The guest's CR0.
    fn cr0(&self) -> u64 {
        self.control_regs().cr0
    }
    /// CR0, CR3, CR4 and EFER (as the CPU uses it: SVME included).
    fn control_regs(&self) -> GuestPaging;
    /// Stores CR0, CR4 and EFER from an emulated CR write, flushing the
    /// guest's TLB if it asks.
    fn set_control_regs(&mut self, update: CrUpdate);
    /// The code segment's default operand size: 16, 32 or 64.
    fn code_bitness(&self) -> u32;
    /// The hidden base of segment register `segment`.
    fn segment_base(&self, segment: Segment) -> u64;
    /// The current privilege level (0..=3).
    fn cpl(&self) -> u8;
    /// Loads the vCPU's DR0-3 into the CPU and stops intercepting debug
    /// register accesses until another vCPU runs on this pCPU.
    fn take_debug_registers(&mut self);
    /// The stored value of an allow-listed MSR.
    fn msr(&self, msr: GuestMsr) -> u64;
    /// Stores an allow-listed MSR's value (checked by [`GuestMsr::write`]).
    fn set_msr(&mut self, msr: GuestMsr, value: u64);
    /// Makes the guest take `event` when it next runs.
    fn inject(&mut self, event: Event);
}

/// What exit handling needs from the vCPU's domain and the host.
pub trait VcpuEnv {
    /// Domain and vCPU ids, for CPUID and for log lines.
    fn identity(&self) -> GuestIdentity;
    /// The host CPU's CPUID answer.
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;
    /// Counts one VM exit (raw EXITCODE) in the domain's statistics; the
    /// run loop calls it for every exit, handled here or not.
    fn count_exit(&mut self, exit_code: u64);
    /// Writes the hypercall stubs (`abi::xen::cpuid::hypercall_page`) into
    /// the domain's page at `gpa`. `Err` if the domain does not own a
    /// writable RAM page there; the guest then gets #GP.
    fn write_hypercall_page(&mut self, gpa: u64) -> Result<(), HypercallPageError>;
    /// Reads `buf.len()` bytes at guest linear address `gva` as the vCPU
    /// with control registers `regs` would at CPL 0 (a data read).
    fn read_guest_linear(
        &mut self,
        regs: GuestPaging,
        gva: u64,
        buf: &mut [u8],
    ) -> Result<(), GuestFault>;
    /// Whether nobody claims `gpa`: the domain's p2m does not map it and
    /// its memory map names no range (RAM or reserved) that holds it.
    fn gpa_unclaimed(&self, gpa: u64) -> bool;
    /// Whether an emulated device claims `gpa` for this domain (dom0's
    /// ECAM, mediated by `pci::vpci`): its accesses go to
    /// [`VcpuEnv::mmio_read`] and [`VcpuEnv::mmio_write`].
    fn mmio_claimed(&self, gpa: u64) -> bool;
    /// A load of `size` bytes (1, 2, 4 or 8) from a claimed `gpa`.
    fn mmio_read(&mut self, gpa: u64, size: u8) -> u64;
    /// A store of the low `size` bytes of `value` to a claimed `gpa`.
    fn mmio_write(&mut self, gpa: u64, size: u8, value: u64);
    /// Fetches instruction bytes at linear address `addr` as the vCPU
    /// would (its own page walk under `paging`, as CPL 3 if `user`, then
    /// the p2m) into `buf`; returns how many bytes from the start could be
    /// fetched.
    fn fetch_insn(&mut self, paging: GuestPaging, user: bool, addr: u64, buf: &mut [u8]) -> usize;
    /// The vCPU's local APIC, allocated on first use (`None` if the
    /// vCPU is gone or the heap exhausted).
    fn vlapic(&mut self) -> Option<&mut Vlapic>;
    /// The vCPU's local APIC if the guest has used it (an unused one is
    /// in its reset state and delivers nothing).
    fn vlapic_in_use(&mut self) -> Option<&mut Vlapic>;
    /// System time in ns and the TSC's rate in Hz, for the APIC timer.
    fn clock(&self) -> (u64, u64);
    /// Delivers an IPI the vCPU's APIC issued to the vCPUs of its own
    /// domain it names (`vlapic::deliver_ipi`); others are ignored.
    fn send_ipi(&mut self, ipi: Ipi);
    /// Whether the vCPU may still run: an exit it caused (an INIT IPI to
    /// itself) may have taken it, or its whole domain, down.
    fn may_run(&self) -> bool;
    /// Whether an NMI waits for the vCPU (Xen's `v->arch.nmi_pending`).
    fn nmi_pending(&self) -> bool;
    /// The waiting NMI is being injected: its latch is cleared.
    fn ack_nmi(&mut self);
}

/// Fetches the instruction at CS:RIP as the vCPU would (its page walk at
/// its CPL, then the p2m) into `bytes`: up to [`MAX_INSN_LEN`] bytes,
/// fewer if the next page cannot be fetched. Returns the count. The CR
/// write and unclaimed-MMIO decoders both start here.
pub(super) fn fetch_at_rip(
    guest: &impl GuestState,
    env: &mut impl VcpuEnv,
    bytes: &mut [u8; MAX_INSN_LEN],
) -> usize {
    let rip = guest.rip();
    let at = if guest.code_bitness() == 64 {
        rip
    } else {
        guest.segment_base(Segment::Cs).wrapping_add(rip) & 0xffff_ffff
    };
    env.fetch_insn(guest.control_regs(), guest.cpl() == 3, at, bytes)
}

/// The hypercall page could not be written (the GPA is not the domain's
/// RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallPageError;

/// What the vCPU loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Handled: run the guest again.
    Resume,
    /// VMMCALL: serve hypercall RAX with the guest's registers, put the
    /// result in RAX, then resume. RIP is already past the VMMCALL; a
    /// hypercall that must restart moves it back by 3.
    Hypercall,
    /// HLT (RIP already past it): block the vCPU until an event or timer.
    Halt,
    /// HLT with interrupts disabled (RIP already past it): nothing but an
    /// NMI could wake the vCPU, so it goes down, and the domain powers
    /// off if no other vCPU is up (Xen's `hvm_hlt`: how Linux PVH guests
    /// without ACPI power off, halting in `native_machine_halt`).
    VcpuDown,
    /// A physical interrupt, NMI or SMI ended the run: the host handles
    /// it, and the scheduler may switch vCPUs before resuming.
    Preempted,
    /// The domain must be marked crashed; its vCPU must not run again.
    Crash(CrashReason),
    /// The vCPU took itself down while its exit was handled (an INIT
    /// IPI to itself: it waits for SIPI), perhaps its domain with it
    /// (no vCPU left up: powered off). Not from [`handle_exit`]: the
    /// arch loop asks [`VcpuEnv::may_run`] after each handled exit.
    Stopped,
}

/// RFLAGS.IF: maskable interrupts enabled.
const RFLAGS_IF: u64 = 1 << 9;

/// Handles one exit: completes what xen-core emulates, injects what the
/// guest gets instead, and says what the caller must do.
pub fn handle_exit(
    exit: VmExit,
    guest: &mut impl GuestState,
    env: &mut impl VcpuEnv,
) -> ExitAction {
    match exit {
        VmExit::CrWrite(cr) => super::cr_write::handle(cr, guest, env),
        // The instruction runs again, on the vCPU's own registers.
        VmExit::DebugRegisterAccess => {
            guest.take_debug_registers();
            ExitAction::Resume
        }
        VmExit::Cpuid => {
            cpuid(guest, env);
            complete(exit, guest)
        }
        VmExit::Msr(direction) => msr(exit, direction, guest, env),
        VmExit::Vmmcall => {
            complete(exit, guest);
            ExitAction::Hypercall
        }
        VmExit::Hlt => {
            complete(exit, guest);
            if guest.rflags() & RFLAGS_IF == 0 {
                ExitAction::VcpuDown
            } else {
                ExitAction::Halt
            }
        }
        VmExit::Io(io) => unclaimed::port_io(io, guest, env),
        VmExit::Invd => complete(exit, guest),
        // CPUID hides these features: answer as a CPU without them would.
        VmExit::Refused(_) => {
            guest.inject(Event::invalid_opcode());
            ExitAction::Resume
        }
        VmExit::Interrupt | VmExit::Nmi | VmExit::Smi | VmExit::Init => ExitAction::Preempted,
        // The arch layer acted on these (NMI window, NMI unmasked); the
        // next entry offers what is pending.
        VmExit::VirtualInterruptWindow | VmExit::Iret => ExitAction::Resume,
        VmExit::Shutdown => ExitAction::Crash(CrashReason::TripleFault),
        VmExit::InvalidGuestState => ExitAction::Crash(CrashReason::InvalidGuestState),
        VmExit::NestedPageFault { gpa, error_code } => {
            unclaimed::nested_page_fault(gpa, error_code, guest, env)
        }
        VmExit::Exception { vector, .. } => ExitAction::Crash(CrashReason::UnhandledExit {
            code: super::exit::code::EXCEPTION_BASE + u64::from(vector),
        }),
        VmExit::Unknown(code) => ExitAction::Crash(CrashReason::UnhandledExit { code }),
    }
}

/// Xen's own MSRs (the hypercall page at `0x4000_0000` among them): a
/// write there may fill guest memory.
const XEN_MSR_BASE: u32 = 0x4000_0000;
const XEN_MSR_LAST: u32 = 0x4000_ffff;

/// Whether `exit` concerns its vCPU alone, so that the machine lock's
/// reader side may complete it while other pCPUs complete theirs
/// (docs/architecture.md, "Locks"). Its handler then reaches only the
/// vCPU's own state and its domain's (counters, the local APIC, the p2m
/// and guest page tables, read), reads guest memory but never writes it,
/// and at most sends an IPI within the domain, which [`VcpuEnv::send_ipi`]
/// reports so the writer side tells the target's pCPU. `rcx` is the
/// guest's RCX (the MSR index of an RDMSR/WRMSR): a write to one of
/// Xen's MSRs may fill the hypercall page, which is guest memory, so it
/// is the writer's. Every other exit (hypercalls, HLT, interrupts,
/// control-register writes, crashes) is the writer's too.
pub fn completes_alone(exit: VmExit, rcx: u64) -> bool {
    match exit {
        VmExit::Io(_)
        | VmExit::Cpuid
        | VmExit::NestedPageFault { .. }
        | VmExit::VirtualInterruptWindow
        | VmExit::Msr(MsrDirection::Read) => true,
        VmExit::Msr(MsrDirection::Write) => {
            !(XEN_MSR_BASE..=XEN_MSR_LAST).contains(&((rcx & 0xffff_ffff) as u32))
        }
        _ => false,
    }
}

/// Moves RIP past the exit's instruction.
fn complete(exit: VmExit, guest: &mut impl GuestState) -> ExitAction {
    if let Some(next) = exit.next_rip(guest.rip(), guest.in_64bit_mode()) {
        guest.skip_to(next);
    }
    ExitAction::Resume
}

fn cpuid(guest: &mut impl GuestState, env: &impl VcpuEnv) {
    let leaf = (guest.gpr(Gpr::Rax) & 0xffff_ffff) as u32;
    let subleaf = (guest.gpr(Gpr::Rcx) & 0xffff_ffff) as u32;
    let r = guest_cpuid(leaf, subleaf, env.host_cpuid(leaf, subleaf), env.identity());
    guest.set_gpr(Gpr::Rax, r.eax.into());
    guest.set_gpr(Gpr::Rbx, r.ebx.into());
    guest.set_gpr(Gpr::Rcx, r.ecx.into());
    guest.set_gpr(Gpr::Rdx, r.edx.into());
}

fn msr(
    exit: VmExit,
    direction: MsrDirection,
    guest: &mut impl GuestState,
    env: &mut impl VcpuEnv,
) -> ExitAction {
    let index = (guest.gpr(Gpr::Rcx) & 0xffff_ffff) as u32;
    if super::lapic::is_apic_msr(index) {
        return apic_msr(exit, direction, index, guest, env);
    }
    let outcome = GuestMsr::from_index(index).and_then(|msr| match direction {
        MsrDirection::Read => {
            let value = msr.read(guest.msr(msr))?;
            guest.set_gpr(Gpr::Rax, value & 0xffff_ffff);
            guest.set_gpr(Gpr::Rdx, value >> 32);
            Ok(())
        }
        MsrDirection::Write => {
            let value =
                ((guest.gpr(Gpr::Rdx) & 0xffff_ffff) << 32) | (guest.gpr(Gpr::Rax) & 0xffff_ffff);
            match msr.write(value, guest.msr(msr), guest.cr0())? {
                MsrWrite::Store(stored) => guest.set_msr(msr, stored),
                MsrWrite::Discard => {}
                MsrWrite::HypercallPage { gpa } => {
                    env.write_hypercall_page(gpa)
                        .map_err(|HypercallPageError| MsrFault::HypercallPageNotRam)?;
                }
            }
            Ok(())
        }
    });
    match outcome {
        Ok(()) => complete(exit, guest),
        Err(fault) => {
            let who = env.identity();
            log::warn!(
                target: GUEST,
                "d{}v{}: {:?} MSR {:#x} refused ({:?}): #GP",
                who.domid,
                who.vcpu_id,
                direction,
                index,
                fault
            );
            guest.inject(Event::general_protection());
            ExitAction::Resume
        }
    }
}

/// RDMSR/WRMSR of a local APIC MSR (`vmexit::lapic`); refusals are #GP.
fn apic_msr(
    exit: VmExit,
    direction: MsrDirection,
    index: u32,
    guest: &mut impl GuestState,
    env: &mut impl VcpuEnv,
) -> ExitAction {
    let outcome = match direction {
        MsrDirection::Read => super::lapic::read(index, guest, env).map(|value| {
            guest.set_gpr(Gpr::Rax, value & 0xffff_ffff);
            guest.set_gpr(Gpr::Rdx, value >> 32);
        }),
        MsrDirection::Write => {
            let value =
                ((guest.gpr(Gpr::Rdx) & 0xffff_ffff) << 32) | (guest.gpr(Gpr::Rax) & 0xffff_ffff);
            super::lapic::write(index, value, guest, env)
        }
    };
    match outcome {
        Ok(()) => complete(exit, guest),
        Err(fault) => {
            let who = env.identity();
            log::info!(
                target: GUEST,
                "d{}v{}: {:?} APIC MSR {:#x} refused ({:?}): #GP",
                who.domid,
                who.vcpu_id,
                direction,
                index,
                fault
            );
            guest.inject(Event::general_protection());
            ExitAction::Resume
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::vmexit::cr;
    use crate::vmexit::msr::efer;
    use abi::convert::usize_from_u64;

    /// A vCPU's state held in plain fields, as the VMCB would hold it.
    #[derive(Default)]
    pub(crate) struct FakeGuest {
        pub gprs: [u64; 16],
        pub rip: u64,
        pub long_mode: bool,
        pub cr0: u64,
        pub cr4: u64,
        pub efer: u64,
        pub fs_base: u64,
        pub cs_base: u64,
        pub injected: Vec<Event>,
        pub flushed: bool,
        pub debug_registers_taken: u32,
        pub rflags: u64,
    }

    impl GuestState for FakeGuest {
        fn gpr(&self, reg: Gpr) -> u64 {
            self.gprs[reg as usize]
        }
        fn set_gpr(&mut self, reg: Gpr, value: u64) {
            self.gprs[reg as usize] = value;
        }
        fn rip(&self) -> u64 {
            self.rip
        }
        fn rflags(&self) -> u64 {
            self.rflags
        }
        fn set_rflags(&mut self, value: u64) {
            self.rflags = value;
        }
        fn skip_to(&mut self, next_rip: u64) {
            self.rip = next_rip;
        }
        fn in_64bit_mode(&self) -> bool {
            self.long_mode
        }
        fn control_regs(&self) -> GuestPaging {
            GuestPaging {
                cr0: self.cr0,
                cr3: 0,
                cr4: self.cr4,
                efer: self.efer,
            }
        }
        fn set_control_regs(&mut self, update: CrUpdate) {
            self.cr0 = update.regs.cr0;
            self.cr4 = update.regs.cr4;
            self.efer = update.regs.efer;
            self.flushed |= update.flush_tlb;
        }
        fn code_bitness(&self) -> u32 {
            if self.long_mode {
                64
            } else {
                32
            }
        }
        fn segment_base(&self, segment: Segment) -> u64 {
            match segment {
                Segment::Fs => self.fs_base,
                Segment::Cs => self.cs_base,
                _ => 0,
            }
        }
        fn cpl(&self) -> u8 {
            0
        }
        fn take_debug_registers(&mut self) {
            self.debug_registers_taken += 1;
        }
        fn msr(&self, msr: GuestMsr) -> u64 {
            match msr {
                GuestMsr::Efer => self.efer,
                GuestMsr::FsBase => self.fs_base,
                _ => 0,
            }
        }
        fn set_msr(&mut self, msr: GuestMsr, value: u64) {
            match msr {
                GuestMsr::Efer => self.efer = value,
                GuestMsr::FsBase => self.fs_base = value,
                other => panic!("test does not model {other:?}"),
            }
        }
        fn inject(&mut self, event: Event) {
            self.injected.push(event);
        }
    }

    /// Owns GFNs 0..16, and its memory map names GFNs 0..32 (16..32 are
    /// holes in its RAM); code is `code` at linear address `code_at`;
    /// records hypercall-page writes; an emulated device claims the page
    /// at [`FAKE_DEVICE`] (reads [`FAKE_DEVICE_DATA`], writes recorded).
    #[derive(Default)]
    pub(crate) struct FakeEnv {
        pub hypercall_pages: Vec<u64>,
        pub code: Vec<u8>,
        pub code_at: u64,
        pub device_reads: Vec<(u64, u8)>,
        pub device_writes: Vec<(u64, u8, u64)>,
        pub vlapic: Vlapic,
        pub now_ns: u64,
        pub ipis: Vec<Ipi>,
    }

    /// [`FakeEnv`]'s TSC rate.
    pub(crate) const FAKE_TSC_HZ: u64 = 1_000_000_000;

    /// End of [`FakeEnv`]'s memory map.
    pub(crate) const FAKE_MEMMAP_END: u64 = 32 << 12;
    /// The page [`FakeEnv`]'s emulated device claims.
    pub(crate) const FAKE_DEVICE: u64 = 0xb000_0000;
    /// What the emulated device's registers read.
    pub(crate) const FAKE_DEVICE_DATA: u64 = 0x8877_6655_4433_2211;

    impl VcpuEnv for FakeEnv {
        fn identity(&self) -> GuestIdentity {
            GuestIdentity {
                domid: 7,
                vcpu_id: 0,
            }
        }
        fn count_exit(&mut self, _exit_code: u64) {}
        fn host_cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
            CpuidResult {
                eax: leaf,
                ebx: 0,
                ecx: !0,
                edx: !0,
            }
        }
        fn write_hypercall_page(&mut self, gpa: u64) -> Result<(), HypercallPageError> {
            if gpa >> 12 < 16 {
                self.hypercall_pages.push(gpa);
                Ok(())
            } else {
                Err(HypercallPageError)
            }
        }
        fn read_guest_linear(
            &mut self,
            _regs: GuestPaging,
            gva: u64,
            buf: &mut [u8],
        ) -> Result<(), GuestFault> {
            // One page of INT3s from `code_at`, starting with `code`.
            let start = gva.wrapping_sub(self.code_at);
            if gva < self.code_at || start + buf.len() as u64 > 0x1000 {
                return Err(GuestFault::TooLong);
            }
            for (i, byte) in buf.iter_mut().enumerate() {
                *byte = *self.code.get(usize_from_u64(start) + i).unwrap_or(&0xcc);
            }
            Ok(())
        }
        fn gpa_unclaimed(&self, gpa: u64) -> bool {
            gpa >= FAKE_MEMMAP_END
        }
        fn mmio_claimed(&self, gpa: u64) -> bool {
            gpa >> 12 == FAKE_DEVICE >> 12
        }
        fn mmio_read(&mut self, gpa: u64, size: u8) -> u64 {
            self.device_reads.push((gpa, size));
            FAKE_DEVICE_DATA
        }
        fn mmio_write(&mut self, gpa: u64, size: u8, value: u64) {
            self.device_writes.push((gpa, size, value));
        }
        fn fetch_insn(
            &mut self,
            _paging: GuestPaging,
            _user: bool,
            addr: u64,
            buf: &mut [u8],
        ) -> usize {
            let start = usize_from_u64(addr.wrapping_sub(self.code_at));
            let code = self.code.get(start..).unwrap_or(&[]);
            let n = code.len().min(buf.len());
            buf[..n].copy_from_slice(&code[..n]);
            n
        }
        fn vlapic(&mut self) -> Option<&mut Vlapic> {
            Some(&mut self.vlapic)
        }
        fn vlapic_in_use(&mut self) -> Option<&mut Vlapic> {
            Some(&mut self.vlapic)
        }
        fn clock(&self) -> (u64, u64) {
            (self.now_ns, FAKE_TSC_HZ)
        }
        fn send_ipi(&mut self, ipi: Ipi) {
            self.ipis.push(ipi);
        }
        fn may_run(&self) -> bool {
            true
        }
        fn nmi_pending(&self) -> bool {
            false
        }
        fn ack_nmi(&mut self) {}
    }

    pub(crate) fn guest_at(rip: u64) -> FakeGuest {
        FakeGuest {
            rip,
            efer: efer::SVME,
            ..Default::default()
        }
    }

    /// A 64-bit guest at 0x2000 whose code there is `code`.
    fn long_mode_guest(code: &[u8]) -> (FakeGuest, FakeEnv) {
        let g = FakeGuest {
            rip: 0x2000,
            long_mode: true,
            cr0: cr::cr0::PE | cr::cr0::ET | cr::cr0::PG,
            cr4: cr::cr4::PAE,
            efer: efer::SVME | efer::LME | efer::LMA,
            ..Default::default()
        };
        let env = FakeEnv {
            code: code.to_vec(),
            code_at: 0x2000,
            ..Default::default()
        };
        (g, env)
    }

    #[test]
    fn mov_to_cr4_of_an_offered_bit_is_stored_and_skipped() {
        // mov cr4, rbx; the fake host's leaf 1 offers every EDX bit.
        let (mut g, mut env) = long_mode_guest(&[0x0f, 0x22, 0xe3, 0x90]);
        g.gprs[Gpr::Rbx as usize] = cr::cr4::PAE | cr::cr4::OSFXSR;
        assert_eq!(
            handle_exit(VmExit::CrWrite(4), &mut g, &mut env),
            ExitAction::Resume
        );
        assert_eq!(g.cr4, cr::cr4::PAE | cr::cr4::OSFXSR);
        assert_eq!(g.rip, 0x2003);
        assert!(g.injected.is_empty());
    }

    #[test]
    fn mov_to_cr4_of_a_hidden_bit_gets_gp_and_changes_nothing() {
        let (mut g, mut env) = long_mode_guest(&[0x0f, 0x22, 0xe0]);
        g.gprs[Gpr::Rax as usize] = cr::cr4::PAE | cr::cr4::VMXE;
        assert_eq!(
            handle_exit(VmExit::CrWrite(4), &mut g, &mut env),
            ExitAction::Resume
        );
        assert_eq!(g.cr4, cr::cr4::PAE);
        assert_eq!(g.rip, 0x2000);
        assert_eq!(g.injected, [Event::general_protection()]);
    }

    #[test]
    fn pvh_entry_enables_long_mode_through_cr0() {
        // 32-bit `mov cr0, eax` at CS base 0x100000 + EIP 0x2000.
        let mut g = guest_at(0x2000);
        g.cs_base = 0x10_0000;
        g.cr0 = cr::cr0::PE | cr::cr0::ET;
        g.cr4 = cr::cr4::PAE;
        g.efer = efer::SVME | efer::LME;
        g.gprs[Gpr::Rax as usize] = 0xdead_beef_0000_0000 | g.cr0 | cr::cr0::PG;
        let mut env = FakeEnv {
            code: vec![0x0f, 0x22, 0xc0],
            code_at: 0x10_2000,
            ..Default::default()
        };
        handle_exit(VmExit::CrWrite(0), &mut g, &mut env);
        assert!(g.injected.is_empty(), "only EAX counts in 32-bit code");
        assert_eq!(g.cr0, cr::cr0::PE | cr::cr0::ET | cr::cr0::PG);
        assert_eq!(g.efer, efer::SVME | efer::LME | efer::LMA);
        assert!(g.flushed);
        assert_eq!(g.rip, 0x2003);
    }

    #[test]
    fn clts_and_lmsw_from_memory() {
        // clts; lmsw [rip+0] -> the two bytes after it.
        let (mut g, mut env) =
            long_mode_guest(&[0x0f, 0x06, 0x0f, 0x01, 0x35, 0, 0, 0, 0, 0x0b, 0x00]);
        g.cr0 |= cr::cr0::TS;
        handle_exit(VmExit::CrWrite(0), &mut g, &mut env);
        assert_eq!(g.cr0 & cr::cr0::TS, 0);
        assert_eq!(g.rip, 0x2002);
        handle_exit(VmExit::CrWrite(0), &mut g, &mut env);
        assert!(g.injected.is_empty());
        assert_eq!(g.cr0 & 0xf, cr::cr0::PE | cr::cr0::MP | cr::cr0::TS);
        assert_eq!(g.rip, 0x2009);
    }

    #[test]
    fn undecodable_cr_write_crashes_the_domain() {
        let (mut g, mut env) = long_mode_guest(&[0x90]);
        assert_eq!(
            handle_exit(VmExit::CrWrite(4), &mut g, &mut env),
            ExitAction::Crash(CrashReason::UnhandledExit { code: 0x14 })
        );
        let (mut g, mut env) = long_mode_guest(&[]);
        assert_eq!(
            handle_exit(VmExit::CrWrite(0), &mut g, &mut env),
            ExitAction::Crash(CrashReason::UnhandledExit { code: 0x10 })
        );
    }

    #[test]
    fn debug_register_access_loads_them_and_reruns_the_instruction() {
        let (mut g, mut env) = (guest_at(0x800), FakeEnv::default());
        assert_eq!(
            handle_exit(VmExit::decode(0x21, 0, 0), &mut g, &mut env),
            ExitAction::Resume
        );
        assert_eq!(g.debug_registers_taken, 1);
        assert_eq!(g.rip, 0x800);
        assert!(g.injected.is_empty());
    }

    #[test]
    fn cpuid_answers_and_advances_two_bytes() {
        let (mut g, mut env) = (guest_at(0x1000), FakeEnv::default());
        g.gprs[Gpr::Rax as usize] = 0x4000_0000;
        g.gprs[Gpr::Rbx as usize] = 0xdead_beef_0000_0000;
        assert_eq!(
            handle_exit(VmExit::Cpuid, &mut g, &mut env),
            ExitAction::Resume
        );
        assert_eq!(g.rip, 0x1002);
        assert_eq!(g.gpr(Gpr::Rax), 0x4000_0005);
        assert_eq!(
            g.gpr(Gpr::Rbx),
            0x566e_6558,
            "upper half cleared as by CPUID"
        );
        assert!(g.injected.is_empty());
    }

    #[test]
    fn cpuid_hides_svm_from_the_host_answer() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        g.gprs[Gpr::Rax as usize] = 0x8000_0001;
        handle_exit(VmExit::Cpuid, &mut g, &mut env);
        assert_eq!(g.gpr(Gpr::Rcx) & (1 << 2), 0);
    }

    #[test]
    fn vmmcall_and_hlt_advance_and_go_up() {
        let (mut g, mut env) = (guest_at(0x2000), FakeEnv::default());
        assert_eq!(
            handle_exit(VmExit::Vmmcall, &mut g, &mut env),
            ExitAction::Hypercall
        );
        assert_eq!(g.rip, 0x2003);
        g.rflags = RFLAGS_IF;
        assert_eq!(handle_exit(VmExit::Hlt, &mut g, &mut env), ExitAction::Halt);
        assert_eq!(g.rip, 0x2004);
        g.rflags = 0;
        assert_eq!(
            handle_exit(VmExit::Hlt, &mut g, &mut env),
            ExitAction::VcpuDown,
            "HLT with interrupts off"
        );
        assert_eq!(g.rip, 0x2005);
    }

    #[test]
    fn msr_outside_the_allow_list_injects_gp_without_advancing() {
        let (mut g, mut env) = (guest_at(0x3000), FakeEnv::default());
        g.gprs[Gpr::Rcx as usize] = 0xc001_0117; // VM_HSAVE_PA
        for dir in [MsrDirection::Read, MsrDirection::Write] {
            assert_eq!(
                handle_exit(VmExit::Msr(dir), &mut g, &mut env),
                ExitAction::Resume
            );
        }
        assert_eq!(g.rip, 0x3000);
        assert_eq!(
            g.injected,
            [Event::general_protection(), Event::general_protection()]
        );
    }

    #[test]
    fn efer_write_then_read() {
        let (mut g, mut env) = (guest_at(0x4000), FakeEnv::default());
        g.gprs[Gpr::Rcx as usize] = 0xc000_0080;
        g.gprs[Gpr::Rax as usize] = efer::LME | efer::NXE;
        handle_exit(VmExit::Msr(MsrDirection::Write), &mut g, &mut env);
        assert_eq!(g.efer, efer::SVME | efer::LME | efer::NXE);
        g.gprs[Gpr::Rax as usize] = 0;
        handle_exit(VmExit::Msr(MsrDirection::Read), &mut g, &mut env);
        assert_eq!(g.gpr(Gpr::Rax), efer::LME | efer::NXE);
        assert_eq!(g.gpr(Gpr::Rdx), 0);
        assert_eq!(g.rip, 0x4004);
        assert!(g.injected.is_empty());
    }

    fn wrmsr(g: &mut FakeGuest, env: &mut FakeEnv, index: u32, value: u64) {
        g.gprs[Gpr::Rcx as usize] = index.into();
        g.gprs[Gpr::Rdx as usize] = value >> 32;
        g.gprs[Gpr::Rax as usize] = value & 0xffff_ffff;
        handle_exit(VmExit::Msr(MsrDirection::Write), g, env);
    }

    fn rdmsr(g: &mut FakeGuest, env: &mut FakeEnv, index: u32) -> u64 {
        g.gprs[Gpr::Rcx as usize] = index.into();
        handle_exit(VmExit::Msr(MsrDirection::Read), g, env);
        (g.gprs[Gpr::Rdx as usize] << 32) | g.gprs[Gpr::Rax as usize]
    }

    #[test]
    fn apic_base_msr_reads_the_vlapic_and_refuses_reserved_bits() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        assert_eq!(rdmsr(&mut g, &mut env, 0x1b), 0xfee0_0900);
        assert_eq!(g.rip, 2);
        wrmsr(&mut g, &mut env, 0x1b, 0xfee0_0900 | 1);
        assert_eq!(g.injected, [Event::general_protection()]);
        assert_eq!(g.rip, 2, "not completed");
        g.injected.clear();
        wrmsr(&mut g, &mut env, 0x1b, 0xfee0_0d00);
        assert!(g.injected.is_empty());
        assert!(env.vlapic.x2apic_mode());
    }

    #[test]
    fn x2apic_msrs_gp_in_xapic_mode_and_self_ipi_reaches_the_domain() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        rdmsr(&mut g, &mut env, 0x802);
        assert_eq!(g.injected, [Event::general_protection()]);
        g.injected.clear();
        wrmsr(&mut g, &mut env, 0x1b, 0xfee0_0d00);
        wrmsr(&mut g, &mut env, 0x80f, 0x1ff);
        wrmsr(&mut g, &mut env, 0x83f, 0x51);
        assert!(g.injected.is_empty());
        assert_eq!(env.ipis.len(), 1);
        assert_eq!(env.ipis[0].vector(), 0x51);
        assert_eq!(rdmsr(&mut g, &mut env, 0x802), 0, "vCPU 0's x2APIC id");
        wrmsr(&mut g, &mut env, 0x83f, 0x100);
        assert_eq!(g.injected, [Event::general_protection()]);
    }

    #[test]
    fn tsc_deadline_msr_arms_the_apic_timer() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        env.now_ns = 1_000;
        wrmsr(&mut g, &mut env, 0x1b, 0xfee0_0d00);
        wrmsr(&mut g, &mut env, 0x80f, 0x1ff);
        wrmsr(&mut g, &mut env, 0x832, 0x4_0040);
        // FakeGuest's TSC reads 0; at 1 GHz, TSC 5000 is 5000 ns away.
        wrmsr(&mut g, &mut env, 0x6e0, 5_000);
        assert!(g.injected.is_empty());
        assert_eq!(rdmsr(&mut g, &mut env, 0x6e0), 5_000);
        assert_eq!(env.vlapic.timer_deadline_ns(), Some(6_000));
    }

    #[test]
    fn wrmsr_takes_edx_eax_and_ignores_upper_halves() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        g.gprs[Gpr::Rcx as usize] = 0xc000_0100;
        g.gprs[Gpr::Rdx as usize] = 0x1234_5678_ffff_8000;
        g.gprs[Gpr::Rax as usize] = 0x9abc_def0_0000_1000;
        handle_exit(VmExit::Msr(MsrDirection::Write), &mut g, &mut env);
        assert!(g.injected.is_empty());
        assert_eq!(g.fs_base, 0xffff_8000_0000_1000);
        g.gprs[Gpr::Rdx as usize] = 0x0000_8000;
        handle_exit(VmExit::Msr(MsrDirection::Write), &mut g, &mut env);
        assert_eq!(g.injected, [Event::general_protection()], "non-canonical");
        assert_eq!(g.fs_base, 0xffff_8000_0000_1000);
    }

    #[test]
    fn hypercall_page_msr_writes_only_owned_pages() {
        let (mut g, mut env) = (guest_at(0x100), FakeEnv::default());
        g.gprs[Gpr::Rcx as usize] = 0x4000_0000;
        g.gprs[Gpr::Rax as usize] = 0x5000;
        handle_exit(VmExit::Msr(MsrDirection::Write), &mut g, &mut env);
        assert_eq!(env.hypercall_pages, [0x5000]);
        assert_eq!(g.rip, 0x102);
        g.gprs[Gpr::Rax as usize] = 0x10_0000;
        handle_exit(VmExit::Msr(MsrDirection::Write), &mut g, &mut env);
        assert_eq!(env.hypercall_pages, [0x5000]);
        assert_eq!(g.injected, [Event::general_protection()]);
        assert_eq!(g.rip, 0x102);
    }

    #[test]
    fn only_exits_of_the_vcpu_alone_complete_under_the_reader_side() {
        let port = VmExit::decode(0x7b, (0x80 << 16) | (1 << 4) | 1, 0x501);
        let npf = VmExit::decode(0x400, 0b110, 0xfee0_0300);
        let (read, write) = (MsrDirection::Read, MsrDirection::Write);
        for exit in [port, VmExit::Cpuid, npf, VmExit::VirtualInterruptWindow] {
            assert!(completes_alone(exit, 0), "{exit:?}");
        }
        assert!(completes_alone(VmExit::Msr(read), 0x4000_0000));
        assert!(completes_alone(VmExit::Msr(write), 0x830), "x2APIC ICR");
        assert!(completes_alone(VmExit::Msr(write), 0xffff_ffff_c000_0100));
        assert!(!completes_alone(VmExit::Msr(write), 0x4000_0000));
        assert!(!completes_alone(VmExit::Msr(write), 0x1_4000_0001));
        for exit in [
            VmExit::Vmmcall,
            VmExit::Hlt,
            VmExit::Interrupt,
            VmExit::CrWrite(0),
            VmExit::Shutdown,
            VmExit::Iret,
        ] {
            assert!(!completes_alone(exit, 0), "{exit:?}");
        }
    }

    proptest::proptest! {
        /// A reader section never writes guest memory: no WRMSR it may
        /// complete fills a hypercall page, whatever the index and value.
        #[test]
        fn no_msr_write_a_reader_completes_writes_guest_memory(
            rcx: u64,
            value: u64,
        ) {
            let (mut g, mut env) = (guest_at(0x100), FakeEnv::default());
            g.gprs[Gpr::Rcx as usize] = rcx;
            g.gprs[Gpr::Rax as usize] = value & 0xffff_ffff;
            g.gprs[Gpr::Rdx as usize] = value >> 32;
            let exit = VmExit::Msr(MsrDirection::Write);
            if completes_alone(exit, rcx) {
                handle_exit(exit, &mut g, &mut env);
                proptest::prop_assert!(env.hypercall_pages.is_empty());
            }
        }
    }

    #[test]
    fn port_io_goes_to_the_null_handler() {
        let (mut g, mut env) = (guest_at(0x500), FakeEnv::default());
        let exit = VmExit::decode(0x7b, (0x3f8 << 16) | (1 << 4) | 1, 0x501);
        assert_eq!(handle_exit(exit, &mut g, &mut env), ExitAction::Resume);
        assert_eq!(g.rip, 0x501);
        assert_eq!(g.gprs[Gpr::Rax as usize], 0xff);
        assert!(g.injected.is_empty());
    }

    #[test]
    fn hidden_features_instructions_raise_ud() {
        let (mut g, mut env) = (guest_at(0x600), FakeEnv::default());
        let codes = [0x80, 0x82, 0x83, 0x84, 0x85, 0x86, 0x7a, 0x8a, 0x8b, 0x8d];
        for code in codes {
            assert_eq!(
                handle_exit(VmExit::decode(code, 0, 0), &mut g, &mut env),
                ExitAction::Resume
            );
        }
        assert_eq!(g.injected.len(), codes.len());
        assert!(g.injected.iter().all(|e| *e == Event::invalid_opcode()));
        assert_eq!(g.rip, 0x600);
    }

    #[test]
    fn invd_is_a_no_op() {
        let (mut g, mut env) = (guest_at(0x700), FakeEnv::default());
        assert_eq!(
            handle_exit(VmExit::decode(0x76, 0, 0), &mut g, &mut env),
            ExitAction::Resume
        );
        assert_eq!(g.rip, 0x702);
        assert!(g.injected.is_empty());
    }

    #[test]
    fn fatal_exits_crash_the_domain() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        let crash = |code, info1, info2, g: &mut FakeGuest, env: &mut FakeEnv| {
            handle_exit(VmExit::decode(code, info1, info2), g, env)
        };
        assert_eq!(
            crash(0x7f, 0, 0, &mut g, &mut env),
            ExitAction::Crash(CrashReason::TripleFault)
        );
        assert_eq!(
            crash(u64::MAX, 0, 0, &mut g, &mut env),
            ExitAction::Crash(CrashReason::InvalidGuestState)
        );
        assert_eq!(
            crash(0x400, 0x1_0000_0007, 0xfee0_0000, &mut g, &mut env),
            ExitAction::Crash(CrashReason::NptFault { gpa: 0xfee0_0000 })
        );
        assert_eq!(
            crash(0x6e, 0, 0, &mut g, &mut env),
            ExitAction::Crash(CrashReason::UnhandledExit { code: 0x6e })
        );
        assert_eq!(
            crash(0x4d, 0, 0, &mut g, &mut env),
            ExitAction::Crash(CrashReason::UnhandledExit { code: 0x4d })
        );
    }

    #[test]
    fn physical_events_preempt() {
        let (mut g, mut env) = (guest_at(0), FakeEnv::default());
        for code in [0x60, 0x61, 0x62] {
            assert_eq!(
                handle_exit(VmExit::decode(code, 0, 0), &mut g, &mut env),
                ExitAction::Preempted
            );
        }
    }
}
