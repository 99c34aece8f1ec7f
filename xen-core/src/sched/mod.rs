//! Scheduling vCPUs on pCPUs.
//!
//! The run loop asks its pCPU's [`Scheduler`] what to run at each
//! scheduling point (a VM exit that blocked, yielded or shut down the
//! vCPU, or the pCPU's timer at [`Decision::Run::next_event_ns`]), after
//! firing due one-shot timers itself ([`fire_timers`]: a blocked vCPU
//! wakes at its timer even without an event channel; the run loop raises
//! VIRQ_TIMER there). The scheduler charges CPU time, then keeps the
//! current vCPU until its slice ends or picks the next one. An idle pCPU halts until [`Decision::Idle::wake_at_ns`] (the
//! earliest timer) or an interrupt.
//!
//! The policy is Xen's credit scheduler ([`Credit`]): weights, caps,
//! BOOST for woken vCPUs, hard affinity. Its per-domain and per-vCPU
//! state ([`params`]) lives in the domain. Seams for several pCPUs: each
//! pCPU gets its own [`Credit`] (its run queue: the vCPUs whose affinity
//! and `Unit::pcpu` place them there), the accounting moves to one
//! master pCPU, and a wake for another pCPU's queue kicks it with an IPI
//! where [`Scheduler::should_preempt`] is asked today.

#![forbid(unsafe_code)]

mod credit;
pub mod params;

#[cfg(test)]
mod tests;

pub use credit::{Credit, CREDITS_PER_MSEC, TICK_NS, TSLICE_NS};

use abi::xen::domid::DomId;

use crate::domain::table::DomainTable;
use crate::domain::{Domain, DomainState};

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
        /// It is not the vCPU that ran last: load its state and refresh
        /// its pvclock (`time::pvclock::update_vcpu_time`).
        switched: bool,
        /// System time its slice ends.
        slice_end_ns: u64,
        /// Earliest of the slice end and every pending one-shot timer:
        /// when the scheduler must run again.
        next_event_ns: u64,
    },
    /// Nothing may run: halt until `wake_at_ns` (system time) or an
    /// interrupt. `None`: no timer is pending either.
    Idle {
        /// The earliest one-shot timer of a running domain's vCPU.
        wake_at_ns: Option<u64>,
    },
}

/// A scheduling policy for one pCPU.
pub trait Scheduler {
    /// Fires due timers, charges the current vCPU's CPU time and decides
    /// what runs from `now_ns` (system time).
    fn schedule(&mut self, domains: &mut DomainTable, now_ns: u64) -> Decision;
    /// `SCHEDOP_yield` (and HLT's or a block's successor): the current
    /// vCPU gives up the rest of its slice at the next [`Self::schedule`].
    fn yield_current(&mut self);
    /// The vCPU the last decision runs, if any.
    fn current(&self) -> Option<VcpuRef>;
    /// Whether a vCPU that may run here now outranks the current one, so
    /// the current one must stop at this exit rather than go on (Xen's
    /// tickle after a wake).
    fn should_preempt(&self, domains: &DomainTable) -> bool;
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

/// The earliest pending one-shot timer among running domains' vCPUs.
pub fn next_timer_deadline(domains: &DomainTable) -> Option<u64> {
    domains
        .iter()
        .filter(|d| d.state() == DomainState::Running)
        .flat_map(|d| d.vcpus().iter().filter_map(|v| v.next_deadline_ns()))
        .min()
}

/// Whether `v` exists and may be given a pCPU now.
fn may_run(domains: &DomainTable, v: VcpuRef) -> bool {
    domains
        .get(v.domid)
        .is_some_and(|d| d.vcpu_may_run(v.vcpu_id))
}
