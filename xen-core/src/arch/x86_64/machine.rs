//! The hypervisor on this machine: the domain table, every vCPU's SVM
//! state, the scheduler and the clock, shared by every pCPU under one
//! reader-writer lock (readers also lock their vCPU's domain), and what
//! the pCPUs do with them (the loop itself is in
//! [`run`]). Portable code decides (scheduler, VM-exit and hypercall
//! handlers); this module only carries out.

mod lock;
mod run;

pub use run::{ap_main, started};

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use abi::bundle::{Bundle, BundleEntry, ImageKind};
use abi::debug_exit::{EXIT_DOM0_CRASH, EXIT_POWEROFF, EXIT_REBOOT};
use abi::xen::domid::DomId;
use abi::xen::event_channel::{VIRQ_DOM_EXC, VIRQ_TIMER};
use pvh_builder::BootModule;

use super::cpu::MAX_PCPUS;
use super::ecam::Ecam;
use super::fatal::{exit, fatal};
use super::mem::{IdentityMap, ReaderPhys, FRAMES};
use super::serial::LOG;
use super::svm::{self, SvmVcpu};
use super::{ioapic, smp, tsc};
use crate::boot_domains::{build_boot_domain, BootDomain, BootMemory};
use crate::domain::table::{DomainTable, DOM0};
use crate::domain::vcpu_ops::VcpuDown;
use crate::domain::{Domain, DomainState, ShutdownReason};
use crate::event;
use crate::guest_mem::{GuestFault, GuestVirt};
use crate::hypercall::{self, Caller, HostFacts, HypercallEnv, HypercallOutcome, HypercallRegs};
use crate::mm::{FramePool, Gfn, Mfn, PhysMem, PAGE_SHIFT};
use crate::paging::guest_walk::GuestPaging;
use crate::pci::vpci::Vpci;
use crate::sched::{self, Credit, Scheduler, VcpuRef};
use crate::time::Clock;
use crate::vlapic::{self, Ipi, Vlapic};
use crate::vmexit::cpuid::{CpuidResult, GuestIdentity};
use crate::vmexit::cr_write::guest_cr4_valid_bits;
use crate::vmexit::io::IoPortPolicy;
use crate::vmexit::{code_name, ExitAction, Gpr, GuestState, HypercallPageError, VcpuEnv, VmExit};
use lock::{DomainLocks, ReaderSide};
use run::Loaded;

/// Where dom0's 1:1 RAM starts: its kernel is linked here (16 MiB), above
/// xen-core's image at 1 MiB.
const DOM0_BASE: Mfn = Mfn(0x1000);
/// Pages in one MiB.
const PAGES_PER_MIB: u64 = (1 << 20) >> PAGE_SHIFT;

/// The domain table: large (every domain's p2m root, vCPUs, counters), so
/// it lives in static memory, not on the boot stack.
static DOMAINS: spin::Mutex<DomainTable> = spin::Mutex::new(DomainTable::new());

/// A vCPU's SVM state and the p2m generation its guest TLB was last
/// flushed at: when the domain's p2m loses an entry (grant unmap, shared
/// info moved, foreign unmap) every vCPU of it flushes before running.
struct VcpuSlot {
    svm: SvmVcpu,
    p2m_generation: u64,
}

/// Everything the pCPUs share; one reader-writer lock guards it all once
/// the machine runs (`run::lock`, `run::read`; readers see only a
/// [`ReaderView`]; docs/architecture.md "Locks").
pub struct Machine {
    /// The static table, owned by the machine for its lifetime.
    domains: &'static mut DomainTable,
    /// Boxed: a pCPU runs a vCPU from its slot with the lock released,
    /// so the slot must not move when others are inserted.
    vcpus: BTreeMap<VcpuRef, Box<VcpuSlot>>,
    sched: Credit,
    /// What each pCPU has loaded (its vCPU in guest mode, or its exit
    /// being handled). A cell each: a reader section re-enters its vCPU
    /// and changes its own pCPU's entry; writers reach them all without
    /// locking (`get_mut`).
    loaded: [spin::Mutex<Option<Loaded>>; MAX_PCPUS],
    clock: Clock,
    phys: IdentityMap,
    /// Free frames before the first domain was built: power-off checks
    /// that destroying every domain gave them all back.
    free_before_domains: u64,
    /// Usable RAM frames at boot, for PHYSINFO.
    total_frames: u64,
}

impl Machine {
    /// A machine with no domains yet.
    pub fn new(phys: IdentityMap, clock: Clock) -> Self {
        let (free, total) = {
            let frames = FRAMES.lock();
            (frames.free_frames(), frames.usable_frames())
        };
        Self {
            domains: spin::MutexGuard::leak(
                DOMAINS
                    .try_lock()
                    .unwrap_or_else(|| fatal(format_args!("domain table already in use"))),
            ),
            vcpus: BTreeMap::new(),
            sched: Credit::new(smp::online()),
            loaded: [const { spin::Mutex::new(None) }; MAX_PCPUS],
            clock,
            phys,
            free_before_domains: free,
            total_frames: total,
        }
    }

    /// Programs the IO-APICs from the platform description, every pin
    /// masked until a domain binds its GSI.
    pub fn init_interrupts(&mut self, platform: &crate::platform::Platform) {
        let gsis = ioapic::init(platform);
        self.domains.irqs_mut().set_platform(&gsis);
        ioapic::program(self.domains.irqs_mut().take_changed());
    }

    /// Turns the device interrupts the host took into events on the
    /// bound ports (waking their vCPUs) and reprograms the pins the
    /// routing changed (an EOI, a bind, a close).
    fn route_interrupts(&mut self) {
        let mut pending = ioapic::take_pending();
        while pending != 0 {
            let gsi = pending.trailing_zeros();
            pending &= pending - 1;
            event::raise_pirq(self.domains, &mut self.phys, gsi);
        }
        ioapic::program(self.domains.irqs_mut().take_changed());
    }

    /// Builds dom0 (fatal if it cannot be built) and the bundle's domUs (a
    /// domU that cannot be built is logged and skipped), and unpauses them.
    /// dom0 gets the bundle's dom0 modules as boot modules, a domU the
    /// domU modules of its name.
    pub fn build_boot_domains(&mut self, bundle: &Bundle<'static>) {
        let dom0_modules: Vec<BootModule<'static>> = bundle
            .entries()
            .filter(|e| e.kind == ImageKind::Dom0Module)
            .map(|e| BootModule {
                data: e.image,
                cmdline: e.cmdline,
            })
            .collect();
        for entry in bundle.entries().filter(|e| e.kind == ImageKind::Dom0Kernel) {
            if let Err(e) = self.build(&entry, &dom0_modules) {
                fatal(format_args!("dom0: cannot build \"{}\": {e}", entry.name));
            }
        }
        for entry in bundle.entries().filter(|e| e.kind == ImageKind::DomUKernel) {
            let modules: Vec<BootModule<'static>> = bundle
                .entries()
                .filter(|m| m.kind == ImageKind::DomUModule && m.name == entry.name)
                .map(|m| BootModule {
                    data: m.image,
                    cmdline: m.cmdline,
                })
                .collect();
            if let Err(e) = self.build(&entry, &modules) {
                log::error!("domU \"{}\" not started: {e}", entry.name);
            }
        }
    }

    fn build(
        &mut self,
        entry: &BundleEntry<'static>,
        modules: &[BootModule<'static>],
    ) -> Result<(), BuildFailure> {
        let pages = u64::from(entry.memory_mib) * PAGES_PER_MIB;
        let memory = match entry.kind {
            ImageKind::Dom0Kernel => {
                FRAMES
                    .lock()
                    .alloc_range(DOM0_BASE, pages)
                    .map_err(|e| BuildFailure::Dom0Memory(e, pages))?;
                BootMemory::Identity { first: DOM0_BASE }
            }
            ImageKind::DomUKernel | ImageKind::Dom0Module | ImageKind::DomUModule => {
                BootMemory::Fresh
            }
        };
        let cmdline = match entry.kind {
            ImageKind::Dom0Kernel => dom0_cmdline(entry.cmdline),
            ImageKind::DomUKernel | ImageKind::Dom0Module | ImageKind::DomUModule => {
                entry.cmdline.into()
            }
        };
        let spec = BootDomain {
            name: entry.name,
            image: entry.image,
            cmdline: &cmdline,
            pages,
            vcpus: entry.vcpus,
            memory,
            control: entry.control,
            modules,
        };
        let (domid, start) =
            build_boot_domain(self.domains, &mut *FRAMES.lock(), &mut self.phys, &spec)
                .map_err(BuildFailure::Domain)?;
        if entry.kind == ImageKind::Dom0Kernel {
            self.map_dom0_bars(domid);
        }
        if let Err(e) = self.start_vcpu(VcpuRef { domid, vcpu_id: 0 }) {
            let _ = self.domains.kill(domid);
            let _ = self
                .domains
                .destroy(domid, &mut *FRAMES.lock(), &mut self.phys);
            return Err(BuildFailure::Svm(e));
        }
        if let Some(domain) = self.domains.get_mut(domid) {
            let _ = domain.unpause();
        }
        log::info!(
            "d{domid} \"{}\": {} MiB, entry {:#x}, start info at {:#x}{}",
            entry.name,
            entry.memory_mib,
            start.rip,
            start.gprs.rbx,
            if entry.control {
                ", control domain"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// Maps dom0's planned BARs 1:1 and uncached (`pci::bars`); a BAR
    /// that cannot be mapped is logged and left out.
    fn map_dom0_bars(&mut self, domid: DomId) {
        let (Some(devices), Some(dom0)) = (crate::pci::get(), self.domains.get_mut(domid)) else {
            return;
        };
        let (mut bars, mut pages) = (0, 0);
        for bar in devices.dom0_bars() {
            let mapped = (0..bar.pages).try_for_each(|i| {
                let mfn = Mfn(bar.first.0 + i);
                dom0.map_mmio(&mut *FRAMES.lock(), &mut self.phys, Gfn(mfn.0), mfn)
            });
            match mapped {
                Ok(()) => (bars, pages) = (bars + 1, pages + bar.pages),
                Err(e) => log::warn!(
                    "pci: {} BAR{} not mapped into dom0: {e}",
                    bar.bdf,
                    bar.index
                ),
            }
        }
        log::info!("pci: {bars} BARs ({pages} pages) mapped 1:1 uncached into dom0");
    }

    /// Gives vCPU `v` a fresh VMCB from the new register state it was
    /// given (boot, SET_VCPU_CONTEXT, VCPUOP_initialise, a STARTUP IPI),
    /// replacing any earlier one; nothing if it has none.
    /// A vCPU loaded on another pCPU keeps its slot (that pCPU runs from
    /// it with the lock released); it loads its new state itself before
    /// its next VMRUN.
    fn start_vcpu(&mut self, v: VcpuRef) -> Result<(), svm::SvmError> {
        let Some(domain) = self.domains.get_mut(v.domid) else {
            return Ok(());
        };
        let here = super::cpu::this_cpu().index;
        if self
            .loaded
            .iter_mut()
            .enumerate()
            .any(|(p, l)| p != here && l.get_mut().is_some_and(|l| l.vcpu == v))
        {
            return Ok(());
        }
        let Some(entry) = domain.vcpu_take_new_context(v.vcpu_id) else {
            return Ok(());
        };
        let io = if domain.hardware().is_some() {
            IoPortPolicy::Dom0
        } else {
            IoPortPolicy::None
        };
        let svm = SvmVcpu::new(&entry, domain.p2m().root(), io)?;
        let slot = VcpuSlot {
            svm,
            p2m_generation: domain.p2m_generation(),
        };
        self.vcpus.insert(v, Box::new(slot));
        Ok(())
    }

    /// Hands the machine to every pCPU; dom0's shutdown ends it.
    pub fn run(self) -> ! {
        run::start(self)
    }

    /// Fires due one-shot timers (the vCPU wakes and gets VIRQ_TIMER if it
    /// bound it) and ends SCHEDOP_poll waits that timed out.
    fn fire_timers(&mut self, now: u64) {
        let phys = &mut self.phys;
        sched::fire_timers(self.domains, now, |domain, vcpu_id| {
            event::raise_virq(domain, phys, VIRQ_TIMER, vcpu_id);
        });
        event::expire_polls(self.domains, now);
    }

    /// Loads the new register state `v` was given, if any, into a fresh
    /// VMCB; the domain crashes (false) if there is no memory for one.
    fn load_new_context(&mut self, v: VcpuRef) -> bool {
        let Err(e) = self.start_vcpu(v) else {
            return true;
        };
        let (domid, vcpu_id) = (v.domid, v.vcpu_id);
        log::error!("d{domid}v{vcpu_id}: cannot start: {e:?}");
        if let Some(d) = self.domains.get_mut(domid) {
            d.crash(crate::domain::CrashReason::InvalidGuestState);
        }
        false
    }

    /// Acts on how `v` stopped (a hypercall is served by [`Self::hypercall`]).
    fn after_exit(&mut self, v: VcpuRef, action: ExitAction, pcpu: usize) {
        let Some(domain) = self.domains.get_mut(v.domid) else {
            return;
        };
        let env = ExitEnv::new(domain, &mut self.phys, v.vcpu_id);
        match action {
            ExitAction::Resume => {}
            ExitAction::Preempted => {
                super::apic::take_timer_fired();
            }
            ExitAction::Stopped => self.stopped_itself(v.domid),
            ExitAction::Halt => {
                // HLT with an event, an APIC interrupt or an NMI already
                // pending falls straight through.
                if !event::events_need_delivery(env.domain, env.phys, v.vcpu_id) {
                    if let Some(vcpu) = env.domain.vcpu_mut(v.vcpu_id) {
                        if vcpu.apic_pending_vector().is_none() && !vcpu.nmi_pending() {
                            vcpu.block();
                        }
                    }
                }
            }
            ExitAction::VcpuDown => {
                let last = env.domain.vcpu_down(v.vcpu_id) == Ok(VcpuDown::DomainPoweredOff);
                if last {
                    log::info!(
                        "d{} \"{}\" shut down: Poweroff (its last vCPU halted with interrupts off)",
                        v.domid,
                        env.domain.name()
                    );
                    event::raise_global_virq(self.domains, &mut self.phys, VIRQ_DOM_EXC);
                    self.domain_stopped(v.domid);
                }
            }
            ExitAction::Crash(reason) => {
                let rip = self.vcpus.get_mut(&v).map_or(0, |s| s.svm.guest().rip());
                let Some(domain) = self.domains.get_mut(v.domid) else {
                    return;
                };
                let env = ExitEnv::new(domain, &mut self.phys, v.vcpu_id);
                log::error!(
                    "d{} \"{}\" crashed: {reason} (vCPU {}, RIP {rip:#x})",
                    v.domid,
                    env.domain.name(),
                    v.vcpu_id
                );
                env.domain.crash(reason);
                event::raise_global_virq(self.domains, &mut self.phys, VIRQ_DOM_EXC);
                self.domain_stopped(v.domid);
            }
            ExitAction::Hypercall => {
                self.hypercall(v, pcpu);
            }
        }
    }

    /// A vCPU of `domid` INITed itself: if that left no vCPU up, the
    /// domain powered off (Xen's `hvm_vcpu_down`): tell dom0, as
    /// `SCHEDOP_shutdown` does.
    fn stopped_itself(&mut self, domid: DomId) {
        let Some(domain) = self.domains.get(domid) else {
            return;
        };
        let DomainState::Shutdown(reason) = domain.state() else {
            return;
        };
        log::info!(
            "d{domid} \"{}\" shut down: {reason:?} (no vCPU up)",
            domain.name()
        );
        event::raise_global_virq(self.domains, &mut self.phys, VIRQ_DOM_EXC);
        self.domain_stopped(domid);
    }

    /// Serves the VMMCALL `v` stopped at; true if the guest may resume at
    /// once (`hypercall::returns_directly`).
    fn hypercall(&mut self, v: VcpuRef, pcpu: usize) -> bool {
        let Some(slot) = self.vcpus.get_mut(&v) else {
            return false;
        };
        let mut guest = slot.svm.guest();
        let regs = HypercallRegs::capture(&guest, guest.cpl());
        let caller = Caller {
            domid: v.domid,
            vcpu_id: v.vcpu_id,
            paging: guest.paging(),
        };
        let mut env = ConsoleEnv {
            clock: &self.clock,
            total_frames: self.total_frames,
        };
        let outcome = hypercall::handle_hypercall(
            self.domains,
            &mut *FRAMES.lock(),
            &mut self.phys,
            &mut env,
            &caller,
            &regs,
        );
        guest.set_gpr(Gpr::Rax, outcome.rax());
        if let HypercallOutcome::Continue(c) = outcome {
            for (reg, value) in c.registers() {
                guest.set_gpr(reg, value);
            }
            // Back onto the VMMCALL: the guest calls again for the rest.
            let vmmcall_len = VmExit::Vmmcall.instruction_len().unwrap_or(3);
            let rip = guest.rip().wrapping_sub(vmmcall_len);
            guest.set_rip(rip);
        }
        if hypercall::returns_directly(regs.rax, &outcome) {
            return true;
        }
        match outcome {
            HypercallOutcome::Return(_)
            | HypercallOutcome::Block
            | HypercallOutcome::Continue(_) => {}
            HypercallOutcome::DomainDestroyed(domid) => {
                // DESTROY waits until no vCPU of it is loaded.
                self.vcpus.retain(|r, _| r.domid != domid);
            }
            HypercallOutcome::VcpuStarted { domid, vcpu_id } => {
                self.load_new_context(VcpuRef { domid, vcpu_id });
            }
            HypercallOutcome::Yield => self.sched.yield_current(run::pcpu_id(pcpu)),
            HypercallOutcome::Shutdown(reason) => {
                if let Some(d) = self.domains.get(v.domid) {
                    log::info!("d{} \"{}\" shut down: {reason:?}", v.domid, d.name());
                }
                self.domain_stopped(v.domid);
            }
        }
        false
    }

    /// A domain stopped running (shut down or crashed). dom0 stopping ends
    /// the machine, as a Xen host goes down with its control domain.
    fn domain_stopped(&mut self, domid: DomId) {
        if domid != DOM0 {
            return;
        }
        let status = match self.domains.get(DOM0).map(Domain::state) {
            Some(DomainState::Shutdown(ShutdownReason::Poweroff)) => EXIT_POWEROFF,
            Some(DomainState::Shutdown(ShutdownReason::Reboot)) => EXIT_REBOOT,
            _ => EXIT_DOM0_CRASH,
        };
        self.power_off(status)
    }

    /// Prints each domain's statistics, stops and destroys every domain
    /// (memory scrubbed, back in the pool) and ends the machine.
    fn power_off(&mut self, status: u8) -> ! {
        // The other pCPUs leave guest mode and then wait for the lock,
        // which this pCPU keeps to the end.
        run::stop_other_pcpus();
        for domain in self.domains.iter() {
            log_statistics(domain);
        }
        self.vcpus.clear();
        let domids: alloc::vec::Vec<DomId> = self.domains.iter().map(Domain::domid).collect();
        let mut pool = FRAMES.lock();
        for domid in domids {
            let _ = self.domains.kill(domid);
            let _ = self.domains.destroy(domid, &mut *pool, &mut self.phys);
        }
        let free = pool.free_frames();
        let leaked = self.free_before_domains.saturating_sub(free);
        log::info!("frames: {free} free after stopping all domains, {leaked} leaked");
        run::log_lock_counts();
        log::info!("xen-core: powering off");
        exit(status)
    }
}

/// What a reader section of the machine lock reaches (`lock::ReaderSide`):
/// its vCPU's domain under that domain's lock, the identity map for
/// reading, and its own pCPU's `loaded` entry. Not the domain table
/// itself, whose `get` would read a domain another reader holds.
struct ReaderView<'a> {
    domains: DomainLocks<'a>,
    phys: ReaderPhys<'a>,
    loaded: &'a [spin::Mutex<Option<Loaded>>; MAX_PCPUS],
}

impl ReaderSide for Machine {
    type View<'a> = ReaderView<'a>;
    fn reader_view(&self) -> ReaderView<'_> {
        ReaderView {
            domains: DomainLocks(self.domains),
            phys: ReaderPhys(&self.phys),
            loaded: &self.loaded,
        }
    }
}

/// ISA IRQ of COM2, dom0's management line.
const COM2_ISA_IRQ: u8 = 3;

/// dom0's command line: the bundle's, plus `com2-gsi=N`, the GSI COM2's
/// ISA IRQ arrives on (its MADT override, if any), and
/// `pci-ecam=BASE:FIRST-LAST`, segment 0's ECAM region (MCFG), where dom0
/// scans PCI (each access mediated by `pci::vpci`): what dom0 would read
/// in the MADT and MCFG, which it cannot map (it has no ACPI access yet).
fn dom0_cmdline(bundle: &str) -> alloc::string::String {
    let platform = crate::platform::get();
    let gsi = platform
        .and_then(|p| p.isa_irq(COM2_ISA_IRQ))
        .map_or(u32::from(COM2_ISA_IRQ), |o| o.gsi);
    let sep = if bundle.is_empty() { "" } else { " " };
    let mut cmdline = alloc::format!("{bundle}{sep}com2-gsi={gsi}");
    let ecam = platform.and_then(|p| p.ecam_regions().iter().find(|r| r.segment == 0));
    if let Some(r) = ecam {
        cmdline += &alloc::format!(" pci-ecam={:#x}:{}-{}", r.base, r.bus_start, r.bus_end);
    }
    cmdline
}

/// One domain's counters, as printed at power-off.
fn log_statistics(d: &Domain) {
    log::info!(
        "d{} \"{}\": {:?}, {} ms CPU, {} KiB",
        d.domid(),
        d.name(),
        d.state(),
        d.cpu_time_ns() / 1_000_000,
        d.tot_pages() * 4
    );
    for (code, count) in d.exits().iter() {
        log::info!("  exit {} ({code:#x}): {count}", code_name(code));
    }
    for (nr, count) in d.hypercalls().iter() {
        let name = abi::xen::hypercall::name(nr).unwrap_or("unknown");
        log::info!("  hypercall {name} ({nr}): {count}");
    }
    log::info!("  hypervisor memory: {} bytes", d.hypervisor_bytes());
}

/// Why a boot domain did not start.
enum BuildFailure {
    Dom0Memory(crate::mm::frame::FrameError, u64),
    Domain(crate::boot_domains::BootDomainError),
    Svm(svm::SvmError),
}

impl core::fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Dom0Memory(e, pages) => write!(
                f,
                "its {} MiB of 1:1 memory at {:#x} are not free RAM: {e:?}",
                pages / PAGES_PER_MIB,
                DOM0_BASE.hpa()
            ),
            Self::Domain(e) => write!(f, "{e}"),
            Self::Svm(e) => write!(f, "vCPU: {e:?}"),
        }
    }
}

/// What exit handling needs from the vCPU's domain: the identity map
/// itself under the writer side, its [`ReaderPhys`] under a reader's.
struct ExitEnv<'a, P: PhysMem = IdentityMap> {
    domain: &'a mut Domain,
    phys: &'a mut P,
    vcpu_id: u32,
    /// An IPI changed another vCPU of the domain: its pCPU must be told,
    /// which a reader section leaves to the writer side.
    signalled: bool,
}

impl<'a, P: PhysMem> ExitEnv<'a, P> {
    fn new(domain: &'a mut Domain, phys: &'a mut P, vcpu_id: u32) -> Self {
        ExitEnv {
            domain,
            phys,
            vcpu_id,
            signalled: false,
        }
    }
}

impl<P: PhysMem> VcpuEnv for ExitEnv<'_, P> {
    fn identity(&self) -> GuestIdentity {
        GuestIdentity {
            domid: self.domain.domid(),
            vcpu_id: self.vcpu_id,
        }
    }

    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        svm::host_cpuid(leaf, subleaf)
    }

    fn count_exit(&mut self, exit_code: u64) {
        self.domain.record_exit(self.vcpu_id, exit_code);
    }

    fn write_hypercall_page(&mut self, gpa: u64) -> Result<(), HypercallPageError> {
        hypercall::write_hypercall_page(self.domain, self.phys, gpa)
    }

    fn read_guest_linear(
        &mut self,
        regs: GuestPaging,
        gva: u64,
        buf: &mut [u8],
    ) -> Result<(), GuestFault> {
        GuestVirt::new(self.domain.p2m(), &mut *self.phys, regs, false).copy_from_guest(gva, buf)
    }

    fn gpa_unclaimed(&self, gpa: u64) -> bool {
        self.domain.gpa_unclaimed(&*self.phys, gpa)
    }

    fn fetch_insn(&mut self, paging: GuestPaging, user: bool, addr: u64, buf: &mut [u8]) -> usize {
        GuestVirt::new(self.domain.p2m(), self.phys, paging, user).fetch_prefix(addr, buf)
    }

    fn mmio_claimed(&self, gpa: u64) -> bool {
        self.apic_offset(gpa).is_some() || self.vpci().is_some_and(|v| v.claims(gpa))
    }

    fn mmio_read(&mut self, gpa: u64, size: u8) -> u64 {
        if let Some(offset) = self.apic_offset(gpa) {
            let now = tsc::system_time_ns();
            return self
                .vlapic()
                .map_or(0, |a| a.mmio_read(offset, size, now).into());
        }
        self.vpci().map_or(u64::MAX, |v| v.read(gpa, size))
    }

    fn mmio_write(&mut self, gpa: u64, size: u8, value: u64) {
        if let Some(offset) = self.apic_offset(gpa) {
            let now = tsc::system_time_ns();
            // Wider stores are dropped by the model, as in Xen.
            let value = (value & 0xffff_ffff) as u32;
            let ipi = self
                .vlapic()
                .and_then(|a| a.mmio_write(offset, size, value, now));
            if let Some(ipi) = ipi {
                self.send_ipi(ipi);
            }
            return;
        }
        if let Some(v) = self.vpci() {
            v.write(gpa, size, value);
        }
    }

    fn vlapic(&mut self) -> Option<&mut Vlapic> {
        self.domain.vcpu_mut(self.vcpu_id)?.vlapic_mut()
    }

    fn vlapic_in_use(&mut self) -> Option<&mut Vlapic> {
        let vcpu = self.domain.vcpu_mut(self.vcpu_id)?;
        vcpu.vlapic()?;
        vcpu.vlapic_mut()
    }

    fn clock(&self) -> (u64, u64) {
        (tsc::system_time_ns(), tsc::hz())
    }

    fn send_ipi(&mut self, ipi: Ipi) {
        vlapic::deliver_ipi(self.domain, self.vcpu_id, ipi);
        self.signalled = true;
    }

    fn may_run(&self) -> bool {
        self.domain.vcpu_may_run(self.vcpu_id)
    }

    fn nmi_pending(&self) -> bool {
        self.domain
            .vcpu(self.vcpu_id)
            .is_some_and(crate::domain::vcpu::Vcpu::nmi_pending)
    }

    fn ack_nmi(&mut self) {
        if let Some(vcpu) = self.domain.vcpu_mut(self.vcpu_id) {
            vcpu.ack_nmi();
        }
    }
}

impl<P: PhysMem> ExitEnv<'_, P> {
    /// The offset of `gpa` in the vCPU's xAPIC MMIO page, if it is there
    /// (the APIC enabled in xAPIC mode).
    fn apic_offset(&self, gpa: u64) -> Option<u32> {
        let base = self.domain.vcpu(self.vcpu_id)?.apic_mmio_base()?;
        let offset = gpa.checked_sub(base)?;
        u32::try_from(offset).ok().filter(|&o| o < 0x1000)
    }

    /// dom0's mediated configuration space (`pci::vpci`); `None` for a
    /// domU, or before PCI was enumerated.
    fn vpci(&self) -> Option<Vpci<'static, Ecam>> {
        self.domain.hardware()?;
        let platform = crate::platform::get()?;
        Some(Vpci {
            devices: crate::pci::get()?,
            regions: platform.ecam_regions(),
            cfg: Ecam::new(platform),
        })
    }
}

/// The hypervisor console and clock, for hypercalls.
struct ConsoleEnv<'a> {
    clock: &'a Clock,
    total_frames: u64,
}

impl HypercallEnv for ConsoleEnv<'_> {
    fn clock(&self) -> &Clock {
        self.clock
    }

    fn tsc(&self) -> u64 {
        tsc::now()
    }

    fn host(&self) -> HostFacts {
        // dom0's vCPU 0 stands for every guest: leaves 1 and 7 differ
        // only in the APIC id.
        let who = GuestIdentity {
            domid: DOM0,
            vcpu_id: 0,
        };
        HostFacts {
            nr_pcpus: smp::online(),
            total_frames: self.total_frames,
            guest_cr4_valid: guest_cr4_valid_bits(|leaf| svm::host_cpuid(leaf, 0), who),
        }
    }

    fn online_pcpus(&self) -> u32 {
        super::smp::online()
    }

    fn read_log(&self, offset: u64, buf: &mut [u8]) -> (usize, u64) {
        LOG.with_ring(|older, newer| {
            let total = (older.len() + newer.len()) as u64;
            (crate::logger::copy_log(older, newer, offset, buf), total)
        })
    }

    fn console_write(&mut self, domid: DomId, _name: &str, line: &[u8]) {
        // Xen's tag; the handler passes printable ASCII only.
        let text = core::str::from_utf8(line).unwrap_or("?");
        #[cfg(feature = "bench-trace")]
        log::info!("bench: console-d{domid} {}", tsc::now());
        log::info!("(d{domid}) {text}");
    }

    /// xen-core reads no console input yet: there is never anything to
    /// return.
    fn console_read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
}
