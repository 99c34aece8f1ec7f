//! The run queues (Xen's per-pCPU `runq`), as views of the vCPUs rather
//! than lists: a vCPU waiting for a pCPU belongs to the queue of the pCPU
//! it last ran on (`Unit::pcpu`, Xen's `processor`); one that never ran,
//! or whose affinity no longer has that pCPU, to the queue of every pCPU
//! of its affinity (Xen would move it to one with `csched_res_pick`). A
//! queue is ordered by priority, then arrival (`Unit::seq`).

use core::cmp::Reverse;

use super::{waking_priority, Credit};
use crate::domain::table::DomainTable;
use crate::sched::params::{CpuMask, Priority, Unit};
use crate::sched::VcpuRef;

/// A vCPU that may be given a pCPU and has none: runnable, not parked,
/// no pCPU's current.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waiting {
    pub(super) vcpu: VcpuRef,
    /// Its priority, BOOST already if it woke since the last pass.
    pub(super) priority: Priority,
    seq: u64,
    pub(super) affinity: CpuMask,
    /// The pCPU whose queue it is in; `None`: every pCPU's of its
    /// affinity.
    pub(super) home: Option<u32>,
}

impl Waiting {
    /// Its place in a queue's order: greater goes first.
    fn key(&self) -> (Priority, Reverse<u64>) {
        (self.priority, Reverse(self.seq))
    }

    /// Whether it is in `pcpu`'s own queue.
    fn in_queue_of(&self, pcpu: u32) -> bool {
        match self.home {
            Some(home) => home == pcpu,
            None => self.affinity.contains(pcpu),
        }
    }

    /// Whether `pcpu` may take it from another pCPU's queue.
    fn stealable_by(&self, pcpu: u32) -> bool {
        self.home.is_some_and(|h| h != pcpu) && self.affinity.contains(pcpu)
    }
}

impl Credit {
    /// The queue `u` waits in, if one pCPU's (see the module docs).
    pub(super) fn home(&self, u: &Unit) -> Option<u32> {
        u.pcpu
            .filter(|p| *p < self.nr_pcpus && u.affinity.contains(*p))
    }

    /// Whether `u` is in `pcpu`'s own queue.
    pub(super) fn in_queue_of(&self, u: &Unit, pcpu: u32) -> bool {
        match self.home(u) {
            Some(home) => home == pcpu,
            None => u.affinity.contains(pcpu),
        }
    }

    /// The pCPU that comes back for `u`'s timers: its queue's, the first
    /// of its affinity's if it is in several (pCPU 0 if none is online).
    /// One pCPU per timer, so idle pCPUs do not all wake for each.
    pub(super) fn timer_pcpu(&self, u: &Unit) -> u32 {
        self.home(u)
            .or_else(|| u.affinity.and(self.online()).iter().next())
            .unwrap_or(0)
    }

    /// Every vCPU waiting for a pCPU, in one walk over the domains.
    pub(super) fn waiting<'a>(
        &'a self,
        domains: &'a DomainTable,
    ) -> impl Iterator<Item = Waiting> + 'a {
        domains.iter().flat_map(move |d| {
            (0..d.nr_vcpus()).filter_map(move |id| {
                let u = d.sched().unit(id)?;
                let vcpu = VcpuRef {
                    domid: d.domid(),
                    vcpu_id: id,
                };
                if u.parked || !d.vcpu_may_run(id) || self.running_on(vcpu).is_some() {
                    return None;
                }
                Some(Waiting {
                    vcpu,
                    priority: waking_priority(u),
                    // A wake the queue has not seen yet joins at its end.
                    seq: if u.queued { u.seq } else { u64::MAX },
                    affinity: u.affinity,
                    home: self.home(u),
                })
            })
        })
    }

    /// The first vCPU of `pcpu`'s own queue.
    pub(super) fn own_best(&self, domains: &DomainTable, pcpu: u32) -> Option<Waiting> {
        self.waiting(domains)
            .filter(|w| w.in_queue_of(pcpu))
            .max_by_key(Waiting::key)
    }

    /// The vCPU `pcpu` steals from the other queues (Xen's
    /// `csched_runq_steal`): the first, of a priority above `floor`
    /// (anything if `None`: an idle pCPU takes any work), whose affinity
    /// has `pcpu`.
    pub(super) fn steal(
        &self,
        domains: &DomainTable,
        pcpu: u32,
        floor: Option<Priority>,
    ) -> Option<Waiting> {
        self.waiting(domains)
            .filter(|w| w.stealable_by(pcpu) && floor.is_none_or(|f| w.priority > f))
            .max_by_key(Waiting::key)
    }
}
