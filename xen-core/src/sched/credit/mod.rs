//! Xen's credit scheduler (credit1, `xen/common/sched/credit.c`), one
//! run queue per pCPU.
//!
//! - Each domain has a weight and a cap (`DomainSched`); each vCPU a
//!   credit, a priority and a hard affinity ([`Unit`]).
//! - The running vCPU burns 10 credits per ms of system time it runs
//!   ([`CREDITS_PER_MSEC`]). Every tick ([`TICK_NS`]) it joins the
//!   accounting list (it is using CPU) and loses a BOOST; every
//!   [`TICKS_PER_TSLICE`] ticks [`acct::Accounting`] shares a slice's
//!   credit by weight and sets UNDER/OVER from the credit's sign.
//! - The run queue is ordered by priority (BOOST > UNDER > OVER), first
//!   in first out within one; a vCPU that stops running while still
//!   runnable goes to the back of its priority; one that yields goes
//!   behind one lower-priority runnable vCPU as well (Xen's
//!   `__runq_insert`), so a yield hands the pCPU to any other waiting vCPU.
//! - A vCPU that wakes while UNDER gets BOOST, and if that is above the
//!   running vCPU's priority it takes the pCPU at the next scheduling
//!   point (Xen's `__runq_tickle`; [`Scheduler::should_preempt`] lets the
//!   run loop stop a vCPU that would otherwise go on after a hypercall).
//! - A parked vCPU (its domain spent its cap) or one whose affinity
//!   leaves out this pCPU is not picked.
//!
//! Wakes are seen, not told: each scheduling pass compares every vCPU's
//! runnability with what the queue held (`Unit::queued`), so the event,
//! timer and APIC code need no scheduler hook. The ordered run queue is
//! the pick's order key (priority, then arrival), found by one pass over
//! the vCPUs rather than a linked list: at most `MAX_DOMAINS ×
//! MAX_VCPUS` entries, the same walk the timers take.

mod acct;

#[cfg(test)]
// Tests index the fixtures they built.
#[allow(clippy::indexing_slicing)]
mod tests;

use super::params::{Priority, Unit};
use super::{may_run, next_timer_deadline, Decision, Scheduler, VcpuRef};
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

/// The vCPU on the pCPU now.
#[derive(Clone, Copy, Debug)]
struct Running {
    vcpu: VcpuRef,
    /// System time CPU time and credit were last charged up to.
    since_ns: u64,
    slice_end_ns: u64,
}

/// The credit scheduler of one pCPU: its run queue and, while there is
/// one pCPU, the accounting (Xen runs that on a master pCPU).
#[derive(Clone, Debug)]
pub struct Credit {
    /// The pCPU this run queue feeds.
    pcpu: u32,
    /// pCPUs the accounting shares credit for.
    nr_pcpus: u32,
    current: Option<Running>,
    yielded: bool,
    /// Arrival order for the next vCPU that joins the queue.
    next_seq: u64,
    /// The next tick's system time; `None` before the first pass.
    next_tick_ns: Option<u64>,
    ticks: u64,
    acct: Accounting,
}

impl Credit {
    /// The scheduler of pCPU `pcpu` of `nr_pcpus`, having run nothing.
    pub const fn new(pcpu: u32, nr_pcpus: u32) -> Self {
        Self {
            pcpu,
            nr_pcpus,
            current: None,
            yielded: false,
            next_seq: 0,
            next_tick_ns: None,
            ticks: 0,
            acct: Accounting::new(),
        }
    }

    /// Charges the running vCPU's CPU time and credit up to `now_ns`.
    fn burn_current(&mut self, domains: &mut DomainTable, now_ns: u64) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let ran = now_ns.saturating_sub(cur.since_ns);
        cur.since_ns = cur.since_ns.max(now_ns);
        let Some(d) = domains.get_mut(cur.vcpu.domid) else {
            return;
        };
        if let Some(v) = d.vcpu_mut(cur.vcpu.vcpu_id) {
            v.account(ran);
        }
        if let Some(u) = d.sched_mut().unit_mut(cur.vcpu.vcpu_id) {
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
            self.tick(domains);
            next += TICK_NS;
        }
        // Still behind: the pCPU was away; start again from now.
        self.next_tick_ns = Some(if next <= now_ns {
            now_ns + TICK_NS
        } else {
            next
        });
    }

    /// One tick: the running vCPU is using CPU, so it earns credit from
    /// now on and its boost ends (Xen's `csched_unit_acct`).
    fn tick(&mut self, domains: &mut DomainTable) {
        if let Some(u) = self.current.and_then(|c| unit_mut(domains, c.vcpu)) {
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
    /// drops those that stopped being runnable.
    fn refresh_queue(&mut self, domains: &mut DomainTable) {
        for d in domains.iter_mut() {
            for id in 0..d.nr_vcpus() {
                let runnable = d.vcpu_may_run(id);
                let Some(u) = d.sched_mut().unit_mut(id) else {
                    continue;
                };
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
            }
        }
    }

    /// Whether `v` may be given this pCPU now.
    fn eligible(&self, domains: &DomainTable, v: VcpuRef) -> bool {
        may_run(domains, v) && unit(domains, v).is_some_and(|u| self.may_take(u))
    }

    fn may_take(&self, u: &Unit) -> bool {
        !u.parked && u.affinity.contains(self.pcpu)
    }

    /// The queued vCPU first in the run queue's order, other than
    /// `except`, with its priority.
    fn best_waiting(
        &self,
        domains: &DomainTable,
        except: Option<VcpuRef>,
    ) -> Option<(VcpuRef, Priority)> {
        let mut best: Option<(VcpuRef, Priority, u64)> = None;
        for d in domains.iter() {
            for id in 0..d.nr_vcpus() {
                let v = VcpuRef {
                    domid: d.domid(),
                    vcpu_id: id,
                };
                let Some(u) = d.sched().unit(id) else {
                    continue;
                };
                if Some(v) == except || !u.queued || !self.may_take(u) || !d.vcpu_may_run(id) {
                    continue;
                }
                if best.is_none_or(|(_, p, s)| {
                    (u.priority, core::cmp::Reverse(u.seq)) > (p, core::cmp::Reverse(s))
                }) {
                    best = Some((v, u.priority, u.seq));
                }
            }
        }
        best.map(|(v, p, _)| (v, p))
    }

    /// Puts the running vCPU back at the end of its priority's queue.
    fn requeue_current(&mut self, domains: &mut DomainTable) {
        let seq = self.next_seq;
        if let Some(u) = self.current.and_then(|c| unit_mut(domains, c.vcpu)) {
            u.seq = seq;
            self.next_seq += 1;
        }
    }

    /// Gives the pCPU to `vcpu` for a new slice from `now_ns`.
    fn start(&mut self, domains: &mut DomainTable, vcpu: VcpuRef, now_ns: u64) -> Running {
        let switched = self.current.map(|c| c.vcpu) != Some(vcpu);
        let pcpu = self.pcpu;
        if let Some(u) = unit_mut(domains, vcpu) {
            u.pcpu = Some(pcpu);
            if switched {
                u.runs = u.runs.saturating_add(1);
            }
        }
        let running = Running {
            vcpu,
            since_ns: now_ns,
            slice_end_ns: now_ns.saturating_add(TSLICE_NS),
        };
        self.current = Some(running);
        running
    }

    /// When the pCPU must come back although nothing runs: the next
    /// tick if a parked vCPU waits for accounting to unpark it.
    fn idle_wake(&self, domains: &DomainTable) -> Option<u64> {
        let parked = domains.iter().any(|d| {
            (0..d.nr_vcpus()).any(|id| d.sched().unit(id).is_some_and(|u| u.parked && u.queued))
        });
        parked.then_some(self.next_tick_ns).flatten()
    }
}

impl Scheduler for Credit {
    fn schedule(&mut self, domains: &mut DomainTable, now_ns: u64) -> Decision {
        self.burn_current(domains, now_ns);
        self.run_ticks(domains, now_ns);
        self.refresh_queue(domains);
        let tick = self.next_tick_ns.unwrap_or(now_ns + TICK_NS);
        let timer = next_timer_deadline(domains);
        let previous = self.current;
        let cur = previous.filter(|c| self.eligible(domains, c.vcpu));
        let waiting = self.best_waiting(domains, cur.map(|c| c.vcpu));
        let yielded = core::mem::take(&mut self.yielded);
        let running = match cur {
            Some(c)
                if !yielded
                    && now_ns < c.slice_end_ns
                    && waiting.is_none_or(|(_, p)| Some(p) <= priority(domains, c.vcpu)) =>
            {
                c
            }
            _ => {
                self.requeue_current(domains);
                // Xen's `__runq_insert`: a vCPU that yielded goes behind
                // one lower-priority runnable vCPU too, so any other
                // waiting vCPU runs before it.
                let next = match (yielded, cur) {
                    (true, Some(_)) => waiting.or_else(|| self.best_waiting(domains, None)),
                    _ => self.best_waiting(domains, None),
                };
                match next {
                    Some((vcpu, _)) => self.start(domains, vcpu, now_ns),
                    None => {
                        self.current = None;
                        let wake_at_ns = earliest(timer, self.idle_wake(domains));
                        return Decision::Idle { wake_at_ns };
                    }
                }
            }
        };
        let slice_end_ns = running.slice_end_ns;
        Decision::Run {
            vcpu: running.vcpu,
            switched: previous.map(|p| p.vcpu) != Some(running.vcpu),
            slice_end_ns,
            next_event_ns: earliest(timer, Some(tick.min(slice_end_ns))).unwrap_or(slice_end_ns),
        }
    }

    fn yield_current(&mut self) {
        self.yielded = true;
    }

    fn current(&self) -> Option<VcpuRef> {
        self.current.map(|r| r.vcpu)
    }

    fn should_preempt(&self, domains: &DomainTable) -> bool {
        let Some(cur) = self.current else {
            return false;
        };
        let Some(mine) = priority(domains, cur.vcpu) else {
            return true;
        };
        domains.iter().any(|d| {
            (0..d.nr_vcpus()).any(|id| {
                let v = VcpuRef {
                    domid: d.domid(),
                    vcpu_id: id,
                };
                v != cur.vcpu
                    && d.vcpu_may_run(id)
                    && d.sched()
                        .unit(id)
                        .is_some_and(|u| self.may_take(u) && waking_priority(u) > mine)
            })
        })
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

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
