//! The loop every pCPU runs, and how the pCPUs keep each other right.
//!
//! One reader-writer lock guards the [`Machine`] (the domain table, the
//! vCPU slots, the scheduler), and nobody holds it around VMRUN, so
//! guests run on every pCPU at once. A pCPU takes the writer side for a
//! scheduling pass, a hypercall and every exit that involves more than
//! its vCPU; an exit that concerns its vCPU alone it completes under the
//! reader side and its domain's lock, next to other domains' exits on
//! other pCPUs ([`reader_exit`]; the lock order is in
//! docs/architecture.md, "Locks"). Before each release of the writer
//! side the pCPU looks at what the others have loaded
//! ([`Machine::after_section`]):
//!
//! - a pCPU the scheduler tickles (a wake it should take, an idle pCPU
//!   with work) gets a kick IPI (vector 0xfc, Xen's `EVENT_CHECK_VECTOR`);
//! - a vCPU in guest mode elsewhere that has an event (its upcall flag
//!   set since it entered), an APIC interrupt or an NMI (latched since
//!   it entered: Xen's `vcpu_kick`) to take, or may no longer
//!   run (paused, blocked, dying), has its pCPU kicked once per entry:
//!   the IPI is an INTR exit there, and the next entry offers the
//!   interrupt or stops the vCPU;
//! - a vCPU in guest mode elsewhere whose domain's p2m lost an entry
//!   since it entered has its pCPU kicked and waited for until it has
//!   left guest mode (a synchronous TLB shootdown, as Xen's
//!   `flush_tlb_mask` before a frame is freed): it flushes before its
//!   next VMRUN, and no stale translation outlives the lock holder's
//!   section.
//!
//! A reader section leaves nothing that needs them: it hands over to the
//! writer side whenever its exit signalled another vCPU or the vCPU may
//! not go on.
//!
//! Which pCPU is in guest mode is an atomic sequence per pCPU
//! ([`GUEST_SEQ`], odd in guest mode), made odd under the lock (either
//! side) and even right after `#VMEXIT` without it, so the writer can
//! wait for a pCPU to leave guest mode while that pCPU waits for the
//! lock.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;

use super::super::cpu::MAX_PCPUS;
use super::super::fatal::fatal;
use super::super::serial::LOG;
use super::super::{apic, cpu_idle_until, smp, svm, tsc};
use super::lock::{MachineGuard, MachineLock, ReaderGuard};
use super::{ExitEnv, Machine, VcpuSlot};
use crate::domain::Domain;
use crate::event;
use crate::hypercall::runstate_area;
use crate::logger::{DRAIN_BYTES_IDLE, DRAIN_BYTES_PER_SCHEDULE};
use crate::mm::PhysMem;
use crate::sched::{Decision, Scheduler, VcpuRef};
use crate::time::pvclock;
use crate::vmexit::{ExitAction, VmExit};

/// The machine, once built; every pCPU's loop locks it (a reader-writer
/// ticket lock: pCPUs get it in the order they asked).
static MACHINE: Once<MachineLock<Machine>> = Once::new();

/// Each pCPU's guest-mode sequence: odd from just before VMRUN (set
/// under the lock) to just after `#VMEXIT` (set without it).
static GUEST_SEQ: [AtomicU64; MAX_PCPUS] = [const { AtomicU64::new(0) }; MAX_PCPUS];

/// What a pCPU has loaded, as the others see it under the lock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loaded {
    pub(super) vcpu: VcpuRef,
    /// Its domain's p2m generation when its TLB was last made current.
    p2m_generation: u64,
    /// Its pCPU was kicked since this entry: once is enough.
    kicked: bool,
    /// Its `evtchn_upcall_pending` was set at this entry: the upcall was
    /// offered, and a later event merges into it without a kick (Xen
    /// kicks only when the flag goes from 0 to 1).
    upcall_at_entry: bool,
    /// The APIC vector offered at this entry: only another one kicks.
    apic_at_entry: Option<u8>,
    /// An NMI still waited after this entry (masked, or held for a
    /// window): only one latched later kicks.
    nmi_at_entry: bool,
}

/// Publishes the machine and runs the boot pCPU's loop; the APs leave
/// their idle loop ([`ap_main`]) on the kick.
pub(super) fn start(machine: Machine) -> ! {
    MACHINE.call_once(|| MachineLock::new(machine));
    for cpu in 1..smp::online() as usize {
        smp::kick(cpu);
    }
    run_pcpu(0)
}

/// Whether the machine runs (an AP may leave its idle loop for
/// [`ap_main`]).
pub fn started() -> bool {
    MACHINE.get().is_some()
}

/// An AP's loop once the machine runs.
pub fn ap_main(index: usize) -> ! {
    run_pcpu(index)
}

/// pCPU index `pcpu` as the scheduler numbers it (it is below
/// `MAX_PCPUS`, so exact; `u32::MAX` names no pCPU).
pub(super) fn pcpu_id(pcpu: usize) -> u32 {
    u32::try_from(pcpu).unwrap_or(u32::MAX)
}

fn machine() -> &'static MachineLock<Machine> {
    match MACHINE.get() {
        Some(m) => m,
        None => fatal(format_args!("machine: locked before it was built")),
    }
}

/// The machine lock, as writer.
fn lock() -> MachineGuard<'static, Machine> {
    machine().lock()
}

/// The machine lock, as a reader.
fn read() -> ReaderGuard<'static, Machine> {
    machine().read()
}

/// Logs what the locks cost (at power-off, `lock::log_counts`).
pub(super) fn log_lock_counts() {
    super::lock::log_counts(machine().most_readers());
}

/// Kicks every other pCPU out of guest mode and waits until each has
/// left it; they then wait for the lock, which the caller keeps (power
/// off).
pub(super) fn stop_other_pcpus() {
    let me = super::super::cpu::this_cpu().index;
    for cpu in (0..smp::online() as usize).filter(|&c| c != me) {
        wait_out_of_guest(cpu);
    }
}

/// If `cpu` is in guest mode, kicks it and spins until it has left.
fn wait_out_of_guest(cpu: usize) {
    let Some(seq) = GUEST_SEQ.get(cpu) else {
        return;
    };
    let entered = seq.load(Ordering::Acquire);
    if entered % 2 == 0 {
        return;
    }
    smp::kick(cpu);
    while seq.load(Ordering::Acquire) == entered {
        core::hint::spin_loop();
    }
}

/// The scheduler loop of pCPU `pcpu`: never returns; dom0's shutdown
/// ends the machine.
fn run_pcpu(pcpu: usize) -> ! {
    let mut slice_end = 0;
    loop {
        let mut m = lock();
        let machine = &mut *m;
        machine.route_interrupts();
        let now = tsc::system_time_ns();
        machine.fire_timers(now);
        let previous = machine.sched.current(pcpu_id(pcpu));
        let decision = machine.sched.schedule(machine.domains, pcpu_id(pcpu), now);
        let next = match decision {
            Decision::Run { vcpu, .. } => Some(vcpu),
            Decision::Idle { .. } => None,
        };
        // Xen's `context_switch`: the runstate areas of the vCPU going
        // out and of the one coming in, once their states changed.
        if previous != next {
            for v in previous.into_iter().chain(next) {
                machine.update_runstate_area(v);
            }
        }
        // Another vCPU, or none: the last one's FPU state goes to its
        // area before another pCPU may pick it.
        if !matches!(
            decision,
            Decision::Run {
                switched: false,
                ..
            }
        ) {
            svm::save_this_pcpu();
        }
        m.after_section(pcpu);
        match decision {
            Decision::Idle { wake_at_ns } => {
                drop(m);
                // Idle time is the log's: sleep once it is all out.
                if LOG.drain(DRAIN_BYTES_IDLE) > 0 {
                    continue;
                }
                // Each pCPU serves the timers and poll timeouts of the
                // vCPUs in its queue (the scheduler's `wake_at_ns`).
                cpu_idle_until(wake_at_ns.map_or(u64::MAX, tsc::tsc_at_ns));
                apic::take_timer_fired();
                apic::take_kicked();
            }
            Decision::Run {
                vcpu,
                switched,
                slice_end_ns,
                next_event_ns,
            } => {
                // A bounded drain as each slice starts, none between a
                // guest's hypercalls (it would lengthen their wait), and
                // never under the lock; an empty log needs none, and the
                // lock is kept.
                if switched || slice_end_ns != slice_end {
                    slice_end = slice_end_ns;
                    if LOG.pending() > 0 {
                        drop(m);
                        LOG.drain(DRAIN_BYTES_PER_SCHEDULE);
                        m = lock();
                    }
                }
                run_vcpu(m, pcpu, vcpu, switched, next_event_ns);
            }
        }
    }
}

/// Runs `v` on `pcpu` until its slice ends or it needs the scheduler,
/// then acts on how it stopped. Exits that concern `v` alone are
/// completed, and `v` re-entered, under the reader side
/// ([`reader_exit`]); other exits xen-core completes, and hypercalls
/// that return directly (`hypercall::returns_directly`), resume the
/// guest from the writer side. Either way the timer stays armed for
/// `until_ns`: no scheduling pass.
fn run_vcpu(
    mut m: MachineGuard<'static, Machine>,
    pcpu: usize,
    v: VcpuRef,
    switched: bool,
    until_ns: u64,
) {
    if switched {
        m.update_pvclock(v);
    }
    apic::arm_at_tsc(tsc::tsc_at_ns(until_ns));
    let mut upcall_taken = false;
    while let Some(slot) = m.load(v, pcpu, &mut upcall_taken) {
        m.after_section(pcpu);
        drop(m);
        let (exit, completed) = loop {
            // SAFETY: `load` (or a reader section's `enter`) returned this
            // vCPU's boxed slot and marked it loaded on this pCPU: no
            // other pCPU replaces or frees a loaded slot (`start_vcpu`,
            // `DESTROY` wait for it to be unloaded; power off waits for
            // this pCPU to leave guest mode, then keeps the lock), and
            // nothing else touches a loaded vCPU's VMCB, so this is the
            // only reference while the lock is released.
            unsafe { (*slot).svm.vmrun() };
            if let Some(seq) = GUEST_SEQ.get(pcpu) {
                seq.fetch_add(1, Ordering::AcqRel);
            }
            // SAFETY: as for `vmrun` just above.
            let exit = unsafe { (*slot).svm.exit() };
            match reader_exit(v, pcpu, slot, exit, &mut upcall_taken) {
                ReaderExit::Entered => {}
                ReaderExit::ToWriter(completed) => break (exit, completed),
            }
        };
        m = lock();
        let action = completed.unwrap_or_else(|| {
            let (action, taken) = m.complete(v, exit);
            upcall_taken |= taken;
            action
        });
        match action {
            // A kick asks for a scheduling pass if the scheduler tickled
            // this pCPU (a better vCPU woke, or this one may not stay);
            // otherwise it only brought an interrupt, offered below.
            ExitAction::Resume => {
                if apic::take_kicked() && m.sched.should_preempt(m.domains, pcpu_id(pcpu)) {
                    m.after_exit(v, ExitAction::Preempted, pcpu);
                    break;
                }
            }
            ExitAction::Hypercall => {
                if !(m.hypercall(v, pcpu) && m.may_resume(v, pcpu)) {
                    break;
                }
            }
            action => {
                apic::disarm();
                m.after_exit(v, action, pcpu);
                break;
            }
        }
    }
    // A timer that fired meanwhile: the run loop reads the time itself.
    apic::disarm();
    apic::take_timer_fired();
    m.unload(v, pcpu);
    m.after_section(pcpu);
}

/// How a reader section left `v`.
enum ReaderExit {
    /// Its exit completed, it is loaded for its next VMRUN.
    Entered,
    /// The writer side goes on: with the exit still to complete (`None`:
    /// not one a reader completes), or completed with this action, which
    /// needs the writer (not a plain resume, another vCPU signalled, a
    /// kick to look at, new register state, or `v` may not run now).
    ToWriter(Option<ExitAction>),
}

/// Completes `v`'s exit under the machine lock's reader side and its
/// domain's lock, and readies its next entry, if the exit concerns `v`
/// alone (`vmexit::completes_alone`) and leaves nothing for anybody else
/// to do: the path Linux's port, MMIO and CPUID exits take, with no
/// other domain's exits waiting for it (docs/architecture.md, "Locks").
fn reader_exit(
    v: VcpuRef,
    pcpu: usize,
    slot: *mut VcpuSlot,
    exit: VmExit,
    upcall_taken: &mut bool,
) -> ReaderExit {
    // SAFETY: as for `vmrun` in `run_vcpu`: the slot is loaded on this
    // pCPU, so this is the only reference to it; it lives until this
    // function returns, before the caller uses the pointer again.
    let slot = unsafe { &mut *slot };
    if !slot.svm.completes_alone(exit) {
        return ReaderExit::ToWriter(None);
    }
    let guard = read();
    let view = guard.view();
    let Some(mut domain) = view.domains.lock(v.domid) else {
        return ReaderExit::ToWriter(None);
    };
    let mut phys = view.phys;
    let mut env = ExitEnv::new(&mut domain, &mut phys, v.vcpu_id);
    let (action, taken) = slot.svm.complete(exit, &mut env);
    let signalled = env.signalled;
    *upcall_taken |= taken;
    let to_writer = ReaderExit::ToWriter(Some(action));
    let fresh = domain
        .vcpu(v.vcpu_id)
        .is_some_and(|c| c.pending_context().is_some());
    if action != ExitAction::Resume || signalled || fresh || apic::kicked() {
        return to_writer;
    }
    let Some(loaded) = enter(&mut domain, &mut phys, slot, v, pcpu, upcall_taken) else {
        return to_writer;
    };
    if let Some(entry) = view.loaded.get(pcpu) {
        *entry.lock() = Some(loaded);
    }
    if let Some(seq) = GUEST_SEQ.get(pcpu) {
        seq.fetch_add(1, Ordering::AcqRel);
    }
    ReaderExit::Entered
}

/// Readies `v`'s next VMRUN on `pcpu` from its `slot`, under its
/// domain's lock (either side of the machine lock): its TLB flushed if
/// its p2m lost an entry, its upcall offered (again once the guest
/// cleared the last one). What the other pCPUs see it loaded with, or
/// `None` if `v` may not run now.
fn enter<P: PhysMem>(
    domain: &mut Domain,
    phys: &mut P,
    slot: &mut VcpuSlot,
    v: VcpuRef,
    pcpu: usize,
    upcall_taken: &mut bool,
) -> Option<Loaded> {
    if !domain.vcpu_may_run(v.vcpu_id) {
        return None;
    }
    if domain.p2m_generation() != slot.p2m_generation {
        slot.svm.flush_tlb();
        slot.p2m_generation = domain.p2m_generation();
    }
    let (upcall_at_entry, pending) = event::upcall_at_entry(domain, phys, v.vcpu_id);
    let apic_at_entry = domain.vcpu(v.vcpu_id).and_then(|c| c.apic_pending_vector());
    if !upcall_at_entry {
        *upcall_taken = false;
    }
    let mut env = ExitEnv::new(domain, phys, v.vcpu_id);
    slot.svm
        .prepare(&mut env, pending.filter(|_| !*upcall_taken));
    let nmi_at_entry = env.domain.vcpu(v.vcpu_id).is_some_and(|c| c.nmi_pending());
    env.domain
        .vcpu_mut(v.vcpu_id)?
        .set_loaded_on(Some(pcpu_id(pcpu)));
    Some(Loaded {
        vcpu: v,
        p2m_generation: slot.p2m_generation,
        kicked: false,
        upcall_at_entry,
        apic_at_entry,
        nmi_at_entry,
    })
}

impl Machine {
    /// Publishes `v`'s time in its pvclock as it starts a slice (before
    /// the guest mapped shared info there is nowhere to publish).
    fn update_pvclock(&mut self, v: VcpuRef) {
        if let Some(domain) = self.domains.get_mut(v.domid) {
            let _ = pvclock::update_vcpu_time(
                domain,
                &mut self.phys,
                v.vcpu_id,
                &self.clock,
                tsc::now(),
            );
        }
    }

    /// Writes `v`'s registered runstate area, if any, through its own
    /// page tables (`hypercall::runstate_area::update_runstate_area`).
    /// `v` is this pCPU's: not loaded anywhere else.
    fn update_runstate_area(&mut self, v: VcpuRef) {
        let Some(domain) = self.domains.get(v.domid) else {
            return;
        };
        let vcpus = &mut self.vcpus;
        runstate_area::update_runstate_area(domain, &mut self.phys, v.vcpu_id, || {
            vcpus.get_mut(&v).map(|slot| slot.svm.guest().paging())
        });
    }

    /// Readies `v`'s next VMRUN on `pcpu` and marks it loaded there:
    /// its new register state loaded if it has one (VCPUOP_initialise, a
    /// STARTUP IPI), then [`enter`]. The slot to run from, or `None` if
    /// `v` may not run now.
    fn load(
        &mut self,
        v: VcpuRef,
        pcpu: usize,
        upcall_taken: &mut bool,
    ) -> Option<*mut super::VcpuSlot> {
        // New register state only now and then (VCPUOP_initialise, a
        // STARTUP IPI): look before loading.
        let fresh = self
            .domains
            .get(v.domid)
            .and_then(|d| d.vcpu(v.vcpu_id))
            .is_some_and(|c| c.pending_context().is_some());
        if fresh && !self.load_new_context(v) {
            return None;
        }
        let domain = self.domains.get_mut(v.domid)?;
        let slot = self.vcpus.get_mut(&v)?;
        let loaded = enter(domain, &mut self.phys, slot, v, pcpu, upcall_taken)?;
        *self.loaded.get_mut(pcpu)?.get_mut() = Some(loaded);
        // In guest mode from now on, as the others see it.
        GUEST_SEQ.get(pcpu)?.fetch_add(1, Ordering::AcqRel);
        Some(&raw mut **slot)
    }

    /// Completes `exit`, the one `v` just took (counted, interrupts
    /// acknowledged, the dispatcher's action); whether it took the upcall.
    fn complete(&mut self, v: VcpuRef, exit: VmExit) -> (ExitAction, bool) {
        let (Some(domain), Some(slot)) = (self.domains.get_mut(v.domid), self.vcpus.get_mut(&v))
        else {
            return (ExitAction::Stopped, false);
        };
        let mut env = ExitEnv::new(domain, &mut self.phys, v.vcpu_id);
        slot.svm.complete(exit, &mut env)
    }

    /// `pcpu` is done with `v` for this stretch.
    fn unload(&mut self, v: VcpuRef, pcpu: usize) {
        if let Some(l) = self.loaded.get_mut(pcpu) {
            *l.get_mut() = None;
        }
        if let Some(vcpu) = self
            .domains
            .get_mut(v.domid)
            .and_then(|d| d.vcpu_mut(v.vcpu_id))
        {
            vcpu.set_loaded_on(None);
        }
    }

    /// Whether `v` may go on after a hypercall that returned directly:
    /// it may still run, and no timer, device interrupt or better vCPU
    /// is due here. A privileged caller's routing changes (an EOI, a
    /// pirq bound or closed) are programmed first, as the run loop would.
    fn may_resume(&mut self, v: VcpuRef, pcpu: usize) -> bool {
        let Some(domain) = self.domains.get(v.domid) else {
            return false;
        };
        if domain.hardware().is_some() {
            super::ioapic::program(self.domains.irqs_mut().take_changed());
        }
        self.domains
            .get(v.domid)
            .is_some_and(|d| d.vcpu_may_run(v.vcpu_id))
            && !apic::timer_fired()
            && !super::ioapic::any_pending()
            && !self.sched.should_preempt(self.domains, pcpu_id(pcpu))
    }

    /// Before `me` lets go of the lock: kicks the pCPUs the scheduler
    /// tickles and those whose loaded vCPU has something to take or must
    /// stop, and waits out of guest mode those whose vCPU's p2m lost an
    /// entry (module docs).
    fn after_section(&mut self, me: usize) {
        // Alone, there is nobody to tell: the next pass sees it all.
        if smp::online() == 1 {
            return;
        }
        let tickled = self.sched.tickle(self.domains, tsc::system_time_ns());
        let mut kick = tickled.0;
        let mut shootdown = 0u64;
        for (cpu, loaded) in self.loaded.iter_mut().enumerate() {
            let Some(l) = loaded.get_mut().as_mut().filter(|_| cpu != me) else {
                continue;
            };
            let Some(d) = self.domains.get(l.vcpu.domid) else {
                continue;
            };
            if d.p2m_generation() != l.p2m_generation {
                shootdown |= 1 << cpu;
                continue;
            }
            let id = l.vcpu.vcpu_id;
            let apic = d.vcpu(id).and_then(|v| v.apic_pending_vector());
            let nmi = d.vcpu(id).is_some_and(|v| v.nmi_pending());
            let wants = !d.vcpu_may_run(id)
                || (!l.upcall_at_entry && event::upcall_pending(d, &mut self.phys, id))
                || (apic.is_some() && apic != l.apic_at_entry)
                || (nmi && !l.nmi_at_entry);
            if wants && !l.kicked {
                l.kicked = true;
                kick |= 1 << cpu;
            }
        }
        for cpu in (0..MAX_PCPUS).filter(|&c| c != me && kick & (1 << c) != 0) {
            smp::kick(cpu);
        }
        for cpu in (0..MAX_PCPUS).filter(|&c| shootdown & (1 << c) != 0) {
            wait_out_of_guest(cpu);
        }
    }
}
