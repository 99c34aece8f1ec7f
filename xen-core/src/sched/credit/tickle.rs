//! Which pCPUs must run a scheduling pass now (Xen's `__runq_tickle`,
//! for every waiting vCPU at once rather than per wake).
//!
//! - A pCPU whose current vCPU may no longer run there (blocked, paused,
//!   parked, its domain gone, its affinity changed).
//! - For each waiting vCPU, an idle pCPU of its affinity not already
//!   given one, its own pCPU first: the idle pCPU's pass takes work from
//!   its queue or steals it, so nobody waits while a pCPU it may use
//!   idles. As in Xen, a running vCPU is left alone when an idler can
//!   take the newcomer.
//! - Otherwise the pCPU of its queue if it outranks that pCPU's current
//!   vCPU (BOOST over UNDER over OVER); for one in every queue of its
//!   affinity, the pCPU whose current it outranks most. Not for the vCPU
//!   that yielded that pCPU at its last pass (tickle only: the pCPU
//!   would otherwise be handed straight back and the yield undone;
//!   `should_preempt` still stops the new vCPU at its next exit, as with
//!   one pCPU).
//!
//! A pass on each of these pCPUs makes the mask empty again unless it
//! moved a vCPU back to a queue (a preempted one may then go to an idle
//! pCPU): an idle pCPU is named only while something eligible waits.

use super::{priority, Credit, NR_SLOTS};
use crate::domain::table::DomainTable;
use crate::sched::params::{CpuMask, Priority};

impl Credit {
    /// The pCPUs that must run a pass now (see the module docs);
    /// `tickling`: for `tickle`, which leaves a yield alone.
    pub(super) fn targets(&self, domains: &DomainTable, tickling: bool) -> CpuMask {
        let mut mask = CpuMask(0);
        let mut idle = CpuMask(0);
        // Each busy pCPU's current vCPU's priority.
        let mut running: [Option<Priority>; NR_SLOTS] = [None; NR_SLOTS];
        for (pcpu, slot) in (0..self.nr_pcpus).zip(running.iter_mut()) {
            match self.current_of(pcpu) {
                None => idle = idle.with(pcpu),
                Some(c) if !self.eligible_on(domains, c.vcpu, pcpu) => mask = mask.with(pcpu),
                Some(c) => *slot = priority(domains, c.vcpu),
            }
        }
        let current_pri = |pcpu: u32| {
            usize::try_from(pcpu)
                .ok()
                .and_then(|i| running.get(i).copied().flatten())
        };
        let online = self.online();
        for w in self.waiting(domains) {
            let idlers = w.affinity.and(online).and(idle);
            let idler = w
                .home
                .filter(|h| idlers.contains(*h))
                .or_else(|| idlers.iter().next());
            if let Some(pcpu) = idler {
                idle = idle.without(pcpu);
                mask = mask.with(pcpu);
                continue;
            }
            let outranked = |pcpu: &u32| {
                current_pri(*pcpu).is_some_and(|c| w.priority > c)
                    && !(tickling && self.slot(*pcpu).and_then(|s| s.yielder) == Some(w.vcpu))
            };
            let victim = match w.home {
                Some(home) => Some(home).filter(outranked),
                None => w
                    .affinity
                    .and(online)
                    .iter()
                    .filter(outranked)
                    .min_by_key(|pcpu| current_pri(*pcpu)),
            };
            if let Some(pcpu) = victim {
                mask = mask.with(pcpu);
            }
        }
        mask
    }
}
