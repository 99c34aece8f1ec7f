//! Scheduling vCPUs on pCPUs.
//!
//! One [`Scheduler`] serves every pCPU, under the lock that guards the
//! domain table. Each pCPU's run loop asks it what to run at each
//! scheduling point (a VM exit that blocked, yielded or shut down the
//! vCPU, a kick from another pCPU, or its timer at
//! [`Decision::Run::next_event_ns`]), after firing due one-shot timers
//! itself ([`fire_timers`]: a blocked vCPU wakes at its timer even
//! without an event channel; the run loop raises VIRQ_TIMER there). The
//! scheduler charges CPU time, then keeps the current vCPU until its
//! slice ends or picks the next one. An idle pCPU halts until
//! [`Decision::Idle::wake_at_ns`] (the earliest timer it serves) or an
//! interrupt. Each vCPU's timers are served by one pCPU, the one whose
//! run queue it waits in (any pass fires every due timer).
//! After every locked section the run loop asks [`Scheduler::tickle`]
//! which pCPUs must run a pass now (a wake, a pause, a pin) and kicks
//! them with an IPI.
//!
//! The policy is Xen's credit scheduler ([`Credit`]): weights, caps,
//! BOOST for woken vCPUs, hard affinity, a run queue per pCPU with work
//! stealing. Its per-domain and per-vCPU state ([`params`]) lives in the
//! domain.

#![forbid(unsafe_code)]

mod credit;
pub mod params;

#[cfg(test)]
mod tests;

pub use credit::{Credit, CREDITS_PER_MSEC, MAX_SCHED_PCPUS, TICK_NS, TSLICE_NS};

use abi::xen::domid::DomId;

use crate::domain::table::DomainTable;
use crate::domain::{Domain, DomainState};
use params::CpuMask;

/// One vCPU of one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRef {
    /// Its domain.
    pub domid: DomId,
    /// Its id in the domain.
    pub vcpu_id: u32,
}

/// What a pCPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run `vcpu` (VMRUN its VMCB) until the next VM exit, and program the
    /// pCPU's timer for `next_event_ns` to come back in time.
    Run {
        /// The vCPU.
        vcpu: VcpuRef,
        /// It is not the vCPU that ran last on this pCPU: load its state
        /// and refresh its pvclock (`time::pvclock::update_vcpu_time`).
        switched: bool,
        /// System time its slice ends.
        slice_end_ns: u64,
        /// Earliest of the slice end, the next tick and every pending
        /// timer this pCPU serves: when the scheduler must run again.
        next_event_ns: u64,
    },
    /// Nothing may run: halt until `wake_at_ns` (system time) or an
    /// interrupt. `None`: no timer is pending either.
    Idle {
        /// The earliest timer of a running domain's vCPU this pCPU
        /// serves.
        wake_at_ns: Option<u64>,
    },
}

/// A scheduling policy for the machine's pCPUs. The run loop of each
/// pCPU calls it under the lock that also guards the domain table.
pub trait Scheduler {
    /// Charges pCPU `pcpu`'s current vCPU up to `now_ns` (system time),
    /// runs due ticks and accounting, notices wakes, and decides what
    /// `pcpu` runs.
    fn schedule(&mut self, domains: &mut DomainTable, pcpu: u32, now_ns: u64) -> Decision;
    /// `SCHEDOP_yield` (and HLT's or a block's successor): `pcpu`'s
    /// current vCPU gives up the rest of its slice at the next
    /// [`Self::schedule`] of `pcpu`.
    fn yield_current(&mut self, pcpu: u32);
    /// The vCPU `pcpu`'s last decision runs, if any.
    fn current(&self, pcpu: u32) -> Option<VcpuRef>;
    /// Whether `pcpu`'s current vCPU must stop at this exit: a woken
    /// vCPU outranks it and should take this pCPU, or it may no longer
    /// run here.
    fn should_preempt(&self, domains: &DomainTable, pcpu: u32) -> bool;
    /// Notices wakes since the last pass (BOOST, once per wake) and
    /// returns the pCPUs that must run a scheduling pass now (Xen's
    /// `__runq_tickle`): an idle pCPU a waiting vCPU may use (its last
    /// one first), or the pCPU whose current vCPU a woken one outranks,
    /// or whose current vCPU may no longer run there. An idle pCPU with
    /// nothing eligible is not named, so this does not repeat itself; nor
    /// is a pCPU right after its own pass, nor for the vCPU that just
    /// yielded it (its `should_preempt` decides at the next exit).
    fn tickle(&mut self, domains: &mut DomainTable, now_ns: u64) -> CpuMask;
}

/// Wakes every vCPU whose one-shot timer is due at `now_ns` (and disarms
/// it), calling `fired(domain, vcpu_id)` for each (the run loop raises
/// VIRQ_TIMER there), and every vCPU whose APIC timer raised its vector;
/// returns how many fired.
pub fn fire_timers(
    domains: &mut DomainTable,
    now_ns: u64,
    mut fired: impl FnMut(&mut Domain, u32),
) -> usize {
    let mut count = 0;
    for d in domains.iter_mut() {
        for id in (0u32..).take(d.vcpus().len()) {
            if d.vcpu_mut(id).is_some_and(|v| v.expire_timer(now_ns)) {
                fired(d, id);
                count += 1;
            }
            // The APIC timer's vector waits in its IRR; no VIRQ.
            if d.vcpu_mut(id).is_some_and(|v| v.expire_apic_timer(now_ns)) {
                count += 1;
            }
        }
    }
    count
}

/// The earliest pending one-shot or APIC timer or `SCHEDOP_poll`
/// timeout among running domains' vCPUs whose scheduling state `owned`
/// accepts.
pub fn next_timer_deadline(
    domains: &DomainTable,
    owned: impl Fn(&params::Unit) -> bool,
) -> Option<u64> {
    domains
        .iter()
        .filter(|d| d.state() == DomainState::Running)
        .flat_map(|d| {
            d.vcpus()
                .iter()
                .filter(|v| d.sched().unit(v.id()).is_some_and(&owned))
                .filter_map(|v| earliest(v.next_deadline_ns(), d.events().poll_deadline(v.id())))
        })
        .min()
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `v` exists and may be given a pCPU now.
fn may_run(domains: &DomainTable, v: VcpuRef) -> bool {
    domains
        .get(v.domid)
        .is_some_and(|d| d.vcpu_may_run(v.vcpu_id))
}
