//! Xen's credit scheduler (credit1, `xen/common/sched/credit.c`) for up
//! to [`MAX_SCHED_PCPUS`] pCPUs: one [`Credit`] for the machine, a run
//! queue per pCPU.
//!
//! - Each domain has a weight and a cap (`DomainSched`); each vCPU a
//!   credit, a priority and a hard affinity ([`Unit`]).
//! - A running vCPU burns 10 credits per ms of system time it runs
//!   ([`CREDITS_PER_MSEC`]). Every tick ([`TICK_NS`], global: run by
//!   the first pass that finds it due) every pCPU's current vCPU joins
//!   the accounting list (it is using CPU) and loses a BOOST; every
//!   [`TICKS_PER_TSLICE`] ticks [`acct::Accounting`] shares `nr_pcpus`
//!   slices' credit by weight and sets UNDER/OVER from the credit's sign.
//! - A waiting vCPU is in the run queue of the pCPU it last ran on
//!   (`Unit::pcpu`; one that never ran, or was pinned away from it, is
//!   in every queue of its affinity: `queue`). A queue is ordered by
//!   priority (BOOST > UNDER > OVER), first in first out within one; a
//!   vCPU that stops running while still runnable goes to the back of its
//!   priority; one that yields goes behind one lower-priority runnable
//!   vCPU as well (Xen's `__runq_insert`), so a yield hands the pCPU to
//!   any other waiting vCPU.
//! - A pass keeps the current vCPU until its slice ends or its queue
//!   holds a higher priority, then takes its queue's first; if that is
//!   OVER or there is none it steals the first vCPU of higher priority
//!   from the other queues that may run here (Xen's
//!   `csched_load_balance`; an idle pCPU takes any). A vCPU current on
//!   one pCPU is never taken by another.
//! - A vCPU that wakes while UNDER gets BOOST. [`Scheduler::tickle`]
//!   names the pCPUs that must pass now (`tickle`): an idle one for each
//!   waiting vCPU, else the one whose current it outranks, and those
//!   whose current may no longer run there. [`Scheduler::should_preempt`]
//!   asks the same for one pCPU, so the run loop stops a vCPU that would
//!   otherwise go on after a hypercall.
//! - A parked vCPU (its domain spent its cap) or one whose affinity
//!   leaves out a pCPU is not picked there.
//!
//! Wakes are seen, not told: each pass (and each tickle) compares every
//! vCPU's runnability with what the queue held (`Unit::queued`), so the
//! event, timer and APIC code need no scheduler hook. The ordered run
//! queues are the pick's order key (priority, then arrival), found by one
//! walk over the vCPUs rather than linked lists: at most `MAX_DOMAINS ×
//! MAX_VCPUS` entries, the same walk the timers take. All of it runs
//! under the run loops' one lock.

mod acct;
mod queue;
mod tickle;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod smp_tests;
#[cfg(test)]
// Tests index the fixtures they built.
#[allow(clippy::indexing_slicing)]
mod tests;
#[cfg(test)]
mod tickle_tests;

use abi::xen::vcpu::RUNSTATE_RUNNING;

use super::params::{CpuMask, Priority, Unit};
use super::{earliest, may_run, next_timer_deadline, Decision, Scheduler, VcpuRef};
use crate::domain::table::DomainTable;
use acct::Accounting;

/// Credit earned or spent per ms of CPU (Xen's `CSCHED_CREDITS_PER_MSEC`).
pub const CREDITS_PER_MSEC: u64 = 10;
/// Longest a vCPU runs while another of its priority waits, ns (Xen's
/// default `tslice`, 30 ms).
pub const TSLICE_NS: u64 = 30_000_000;
/// Ticks per time slice (Xen's `CSCHED_TICKS_PER_TSLICE`).
pub const TICKS_PER_TSLICE: u64 = 3;
/// Between ticks, ns.
pub const TICK_NS: u64 = TSLICE_NS / TICKS_PER_TSLICE;
/// Credit one pCPU hands out per slice (Xen's `credits_per_tslice`).
pub const CREDITS_PER_TSLICE: i64 = (CREDITS_PER_MSEC * TSLICE_NS / NS_PER_MS).cast_signed();
/// A vCPU above this leaves the accounting list with half its credit.
const MAX_CREDIT: i64 = CREDITS_PER_TSLICE;
/// Credit never falls below this at accounting.
const MIN_CREDIT: i64 = -CREDITS_PER_TSLICE;
/// Ticks one scheduling pass catches up on after the pCPU was away
/// (bounded work); older ones are dropped.
const MAX_CATCHUP_TICKS: u64 = 3 * TICKS_PER_TSLICE;
const NS_PER_MS: u64 = 1_000_000;

/// Most pCPUs one [`Credit`] schedules (the arch side starts at most 8,
/// `arch::x86_64::cpu::MAX_PCPUS`); pCPUs past it get no vCPU.
pub const MAX_SCHED_PCPUS: u32 = 8;
/// Per-pCPU slots.
const NR_SLOTS: usize = MAX_SCHED_PCPUS as usize;

/// The vCPU on a pCPU now.
#[derive(Clone, Copy, Debug)]
struct Running {
    vcpu: VcpuRef,
    /// System time CPU time and credit were last charged up to.
    since_ns: u64,
    slice_end_ns: u64,
}

/// One pCPU's state (Xen's `csched_pcpu` and `curr_on_cpu`).
#[derive(Clone, Copy, Debug)]
struct Pcpu {
    current: Option<Running>,
    /// Its current vCPU yielded: it goes behind the others at the next
    /// pass (Xen's `CSCHED_FLAG_UNIT_YIELD`).
    yielded: bool,
    /// The vCPU that yielded this pCPU at its last pass: `tickle` does not
    /// hand the pCPU straight back to it.
    yielder: Option<VcpuRef>,
}

impl Pcpu {
    const IDLE: Self = Self {
        current: None,
        yielded: false,
        yielder: None,
    };
}

/// The credit scheduler of the whole machine: each pCPU's current vCPU
/// and run queue, and the global ticks and accounting (Xen runs those
/// per pCPU and on a master pCPU).
#[derive(Clone, Debug)]
pub struct Credit {
    /// pCPUs it schedules (`0..nr_pcpus`); the accounting shares credit
    /// for as many.
    nr_pcpus: u32,
    pcpus: [Pcpu; NR_SLOTS],
    /// Arrival order for the next vCPU that joins a queue.
    next_seq: u64,
    /// The next tick's system time; `None` before the first pass.
    next_tick_ns: Option<u64>,
    ticks: u64,
    acct: Accounting,
}

/// What a pass gives its pCPU.
enum Pick {
    /// The current vCPU goes on in its slice.
    Keep(Running),
    /// This vCPU starts a new slice (it may be the current one again).
    Start(VcpuRef),
    Idle,
}

impl Credit {
    /// The scheduler of `nr_pcpus` pCPUs (at most [`MAX_SCHED_PCPUS`]),
    /// having run nothing.
    pub const fn new(nr_pcpus: u32) -> Self {
        Self {
            nr_pcpus: if nr_pcpus < MAX_SCHED_PCPUS {
                nr_pcpus
            } else {
                MAX_SCHED_PCPUS
            },
            pcpus: [Pcpu::IDLE; NR_SLOTS],
            next_seq: 0,
            next_tick_ns: None,
            ticks: 0,
            acct: Accounting::new(),
        }
    }

    /// The pCPU `v` is current on, if any.
    pub fn running_on(&self, v: VcpuRef) -> Option<u32> {
        (0..self.nr_pcpus).find(|p| self.current_of(*p).is_some_and(|c| c.vcpu == v))
    }

    /// The pCPUs it schedules.
    fn online(&self) -> CpuMask {
        CpuMask::first(self.nr_pcpus)
    }

    fn slot(&self, pcpu: u32) -> Option<&Pcpu> {
        self.pcpus
            .get(usize::try_from(pcpu).ok()?)
            .filter(|_| pcpu < self.nr_pcpus)
    }

    fn slot_mut(&mut self, pcpu: u32) -> Option<&mut Pcpu> {
        let nr = self.nr_pcpus;
        self.pcpus
            .get_mut(usize::try_from(pcpu).ok()?)
            .filter(|_| pcpu < nr)
    }

    fn current_of(&self, pcpu: u32) -> Option<Running> {
        self.slot(pcpu).and_then(|s| s.current)
    }

    /// Charges pCPU `pcpu`'s current vCPU's CPU time and credit up to
    /// `now_ns`.
    fn burn_current(&mut self, domains: &mut DomainTable, pcpu: u32, now_ns: u64) {
        let Some(cur) = self.slot_mut(pcpu).and_then(|s| s.current.as_mut()) else {
            return;
        };
        let ran = now_ns.saturating_sub(cur.since_ns);
        cur.since_ns = cur.since_ns.max(now_ns);
        let vcpu = cur.vcpu;
        let Some(d) = domains.get_mut(vcpu.domid) else {
            return;
        };
        if let Some(v) = d.vcpu_mut(vcpu.vcpu_id) {
            v.account(ran);
        }
        if let Some(u) = d.sched_mut().unit_mut(vcpu.vcpu_id) {
            burn(u, ran);
        }
    }

    /// The ticks due by `now_ns` (Xen's `csched_tick`), with an
    /// accounting every [`TICKS_PER_TSLICE`]th.
    fn run_ticks(&mut self, domains: &mut DomainTable, now_ns: u64) {
        let mut next = *self.next_tick_ns.get_or_insert(now_ns + TICK_NS);
        for _ in 0..MAX_CATCHUP_TICKS {
            if now_ns < next {
                break;
            }
            self.tick(domains, now_ns);
            next += TICK_NS;
        }
        // Still behind: the pCPUs were away; start again from now.
        self.next_tick_ns = Some(if next <= now_ns {
            now_ns + TICK_NS
        } else {
            next
        });
    }

    /// One tick for every pCPU: each current vCPU is charged up to now,
    /// is using CPU, so it earns credit from now on, and its boost ends
    /// (Xen's `csched_unit_acct`).
    fn tick(&mut self, domains: &mut DomainTable, now_ns: u64) {
        for pcpu in 0..self.nr_pcpus {
            self.burn_current(domains, pcpu, now_ns);
            let Some(u) = self
                .current_of(pcpu)
                .and_then(|c| unit_mut(domains, c.vcpu))
            else {
                continue;
            };
            if u.priority == Priority::Boost {
                u.priority = Priority::Under;
            }
            u.active = true;
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(TICKS_PER_TSLICE) {
            self.acct.run(domains, self.nr_pcpus);
        }
    }

    /// Queues the vCPUs that became runnable since the last pass (a
    /// wake: BOOST if UNDER and not parked, Xen's `csched_unit_wake`) and
    /// drops those that stopped being runnable. Each vCPU not current
    /// anywhere has its runstate changed at `now_ns` if it woke, slept or
    /// went down or up since (Xen's `vcpu_wake`, `vcpu_sleep_nosync`);
    /// one still waiting in a queue is runnable already (since its wake,
    /// or since it was taken off), so only a wake and a vCPU that may not
    /// run are looked at.
    fn refresh_queue(&mut self, domains: &mut DomainTable, now_ns: u64) {
        for d in domains.iter_mut() {
            for id in 0..d.nr_vcpus() {
                let runnable = d.vcpu_may_run(id);
                let Some(u) = d.sched_mut().unit_mut(id) else {
                    continue;
                };
                let waiting = runnable && u.queued;
                if runnable && !u.queued {
                    u.queued = true;
                    u.seq = self.next_seq;
                    self.next_seq += 1;
                    u.wakes = u.wakes.saturating_add(1);
                    if u.priority == Priority::Under && !u.parked {
                        u.priority = Priority::Boost;
                    }
                } else if !runnable {
                    u.queued = false;
                }
                if !waiting {
                    d.sync_runstate(id, now_ns);
                }
            }
        }
    }

    /// Whether `v`, current on `pcpu`, may go on running there. (A unit
    /// not marked running is a new domain's that took a destroyed one's
    /// domid: not the vCPU that ran.)
    fn eligible_on(&self, domains: &DomainTable, v: VcpuRef, pcpu: u32) -> bool {
        may_run(domains, v)
            && unit(domains, v).is_some_and(|u| u.running && !u.parked && u.affinity.contains(pcpu))
    }

    /// Puts `v` at the end of its priority's queue.
    fn requeue(&mut self, domains: &mut DomainTable, v: VcpuRef) {
        if let Some(u) = unit_mut(domains, v) {
            u.seq = self.next_seq;
            self.next_seq += 1;
        }
    }

    /// What `pcpu` runs from `now_ns` (Xen's `csched_schedule`): its
    /// own queue's choice ([`Self::pick_local`]); if that is OVER or
    /// nothing, a vCPU of higher priority stolen from another queue
    /// (Xen's `csched_load_balance`).
    fn pick(&mut self, domains: &DomainTable, pcpu: u32, now_ns: u64) -> Pick {
        let (local, local_pri) = self.pick_local(domains, pcpu, now_ns);
        // Alone, there is no other queue to steal from.
        if local_pri.is_some_and(|p| p > Priority::Over) || self.nr_pcpus == 1 {
            return local;
        }
        match self.steal(domains, pcpu, local_pri) {
            Some(w) => Pick::Start(w.vcpu),
            None => local,
        }
    }

    /// `pcpu`'s choice from its own queue, with its priority: the current
    /// vCPU until its slice ends, unless the queue holds a vCPU of higher
    /// priority; then the queue's first, the current one back at the end
    /// of its priority (behind a lower one too if it yielded, Xen's
    /// `__runq_insert`).
    fn pick_local(
        &mut self,
        domains: &DomainTable,
        pcpu: u32,
        now_ns: u64,
    ) -> (Pick, Option<Priority>) {
        let cur = self
            .current_of(pcpu)
            .filter(|c| self.eligible_on(domains, c.vcpu, pcpu));
        let yielder = cur.map(|c| c.vcpu);
        let yielded = self.slot_mut(pcpu).is_some_and(|s| {
            s.yielder = yielder.filter(|_| s.yielded);
            core::mem::take(&mut s.yielded)
        });
        let own = self.own_best(domains, pcpu);
        let cur_pri = cur.and_then(|c| priority(domains, c.vcpu));
        let own_pri = own.map(|w| w.priority);
        match (cur, own) {
            (Some(c), _) if !yielded && now_ns < c.slice_end_ns && own_pri <= cur_pri => {
                (Pick::Keep(c), cur_pri)
            }
            (Some(c), Some(_)) if !yielded && own_pri < cur_pri => (Pick::Start(c.vcpu), cur_pri),
            (_, Some(w)) => (Pick::Start(w.vcpu), own_pri),
            (Some(c), None) => (Pick::Start(c.vcpu), cur_pri),
            (None, None) => (Pick::Idle, None),
        }
    }

    /// Makes `next` `pcpu`'s current vCPU at `now_ns`, keeping
    /// `Unit::running`, `Unit::pcpu` and both vCPUs' runstates true to it
    /// (Xen's `sched_switch_units`: the one taken off leaves running
    /// first, then the new one enters it).
    fn set_current(
        &mut self,
        domains: &mut DomainTable,
        pcpu: u32,
        next: Option<Running>,
        now_ns: u64,
    ) {
        let Some(slot) = self.slot_mut(pcpu) else {
            return;
        };
        let previous = core::mem::replace(&mut slot.current, next);
        let (old, new) = (previous.map(|r| r.vcpu), next.map(|r| r.vcpu));
        if old == new {
            return;
        }
        if let Some(old) = old {
            if let Some(u) = unit_mut(domains, old) {
                u.running = false;
            }
            if let Some(d) = domains.get_mut(old.domid) {
                d.sync_runstate(old.vcpu_id, now_ns);
            }
        }
        if let Some(new) = new {
            if let Some(u) = unit_mut(domains, new) {
                u.running = true;
                u.pcpu = Some(pcpu);
                u.runs = u.runs.saturating_add(1);
            }
            if let Some(v) = domains
                .get_mut(new.domid)
                .and_then(|d| d.vcpu_mut(new.vcpu_id))
            {
                v.runstate_mut().sync(RUNSTATE_RUNNING, now_ns);
            }
        }
    }

    /// When an idle `pcpu` must come back although nothing runs: the
    /// next tick if a parked vCPU of its queue waits for accounting to
    /// unpark it.
    fn idle_wake(&self, domains: &DomainTable, pcpu: u32) -> Option<u64> {
        let parked = domains.iter().any(|d| {
            (0..d.nr_vcpus()).any(|id| {
                d.sched()
                    .unit(id)
                    .is_some_and(|u| u.parked && u.queued && self.in_queue_of(u, pcpu))
            })
        });
        parked.then_some(self.next_tick_ns).flatten()
    }
}

impl Scheduler for Credit {
    fn schedule(&mut self, domains: &mut DomainTable, pcpu: u32, now_ns: u64) -> Decision {
        if self.slot(pcpu).is_none() {
            return Decision::Idle { wake_at_ns: None };
        }
        self.burn_current(domains, pcpu, now_ns);
        self.run_ticks(domains, now_ns);
        self.refresh_queue(domains, now_ns);
        let tick = self.next_tick_ns.unwrap_or(now_ns + TICK_NS);
        // Alone, this pCPU serves every timer.
        let timer = next_timer_deadline(domains, |u| {
            self.nr_pcpus == 1 || self.timer_pcpu(u) == pcpu
        });
        let previous = self.current_of(pcpu).map(|c| c.vcpu);
        let running = match self.pick(domains, pcpu, now_ns) {
            Pick::Keep(c) => c,
            Pick::Start(vcpu) => {
                if let Some(p) = previous {
                    self.requeue(domains, p);
                }
                let running = Running {
                    vcpu,
                    since_ns: now_ns,
                    slice_end_ns: now_ns.saturating_add(TSLICE_NS),
                };
                self.set_current(domains, pcpu, Some(running), now_ns);
                running
            }
            Pick::Idle => {
                if let Some(p) = previous {
                    self.requeue(domains, p);
                }
                self.set_current(domains, pcpu, None, now_ns);
                let wake_at_ns = earliest(timer, self.idle_wake(domains, pcpu));
                return Decision::Idle { wake_at_ns };
            }
        };
        let slice_end_ns = running.slice_end_ns;
        Decision::Run {
            vcpu: running.vcpu,
            switched: previous != Some(running.vcpu),
            slice_end_ns,
            next_event_ns: earliest(timer, Some(tick.min(slice_end_ns))).unwrap_or(slice_end_ns),
        }
    }

    fn yield_current(&mut self, pcpu: u32) {
        if let Some(s) = self.slot_mut(pcpu) {
            s.yielded = true;
        }
    }

    fn current(&self, pcpu: u32) -> Option<VcpuRef> {
        self.current_of(pcpu).map(|r| r.vcpu)
    }

    fn should_preempt(&self, domains: &DomainTable, pcpu: u32) -> bool {
        self.current_of(pcpu).is_some() && self.targets(domains, false).contains(pcpu)
    }

    fn tickle(&mut self, domains: &mut DomainTable, now_ns: u64) -> CpuMask {
        self.refresh_queue(domains, now_ns);
        self.targets(domains, true)
    }
}

/// The priority `u` has, or will have once the next pass sees it woken.
fn waking_priority(u: &Unit) -> Priority {
    if !u.queued && u.priority == Priority::Under && !u.parked {
        Priority::Boost
    } else {
        u.priority
    }
}

/// Takes `ns` of CPU from `u`'s credit, keeping the remainder below one
/// credit for next time (Xen's `burn_credits`).
fn burn(u: &mut Unit, ns: u64) {
    let val = ns
        .saturating_mul(CREDITS_PER_MSEC)
        .saturating_add(u.residual);
    u.residual = val % NS_PER_MS;
    let credits = i32::try_from(val / NS_PER_MS).unwrap_or(i32::MAX);
    u.credit = u.credit.saturating_sub(credits);
}

fn unit(domains: &DomainTable, v: VcpuRef) -> Option<&Unit> {
    domains.get(v.domid)?.sched().unit(v.vcpu_id)
}

fn unit_mut(domains: &mut DomainTable, v: VcpuRef) -> Option<&mut Unit> {
    domains.get_mut(v.domid)?.sched_mut().unit_mut(v.vcpu_id)
}

fn priority(domains: &DomainTable, v: VcpuRef) -> Option<Priority> {
    unit(domains, v).map(|u| u.priority)
}
