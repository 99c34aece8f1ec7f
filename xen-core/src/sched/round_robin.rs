//! The first scheduler: round robin over every runnable vCPU of every
//! running domain, in (domid, vCPU id) order, with a fixed time slice.
//!
//! Fair by construction: the next vCPU is the first runnable one after
//! the last picked in that cyclic order, so a vCPU that stays runnable is
//! picked within one round (at most as many picks as there are vCPUs).
//! Blocked, down, paused, shut-down and crashed ones are skipped.

use super::{may_run, next_timer_deadline, Decision, Scheduler, VcpuRef, TIME_SLICE_NS};
use crate::domain::table::DomainTable;

/// The vCPU on the pCPU now.
#[derive(Clone, Copy, Debug)]
struct Running {
    vcpu: VcpuRef,
    /// System time CPU time was last charged up to.
    since_ns: u64,
    slice_end_ns: u64,
}

/// Round-robin scheduler for one pCPU.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    current: Option<Running>,
    /// The vCPU picked last: the round continues after it.
    cursor: Option<VcpuRef>,
    yielded: bool,
}

impl RoundRobin {
    /// A scheduler that has run nothing yet.
    pub const fn new() -> Self {
        Self {
            current: None,
            cursor: None,
            yielded: false,
        }
    }

    /// Charges the current vCPU for the time since it was last charged.
    fn account(&mut self, domains: &mut DomainTable, now_ns: u64) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let ran = now_ns.saturating_sub(cur.since_ns);
        cur.since_ns = cur.since_ns.max(now_ns);
        if let Some(v) = domains
            .get_mut(cur.vcpu.domid)
            .and_then(|d| d.vcpu_mut(cur.vcpu.vcpu_id))
        {
            v.account(ran);
        }
    }

    /// The first runnable vCPU after the cursor in (domid, id) order,
    /// wrapping around (so possibly the cursor itself).
    fn next(&self, domains: &DomainTable) -> Option<VcpuRef> {
        let mut after: Option<VcpuRef> = None;
        let mut first: Option<VcpuRef> = None;
        let runnable = domains.iter().flat_map(|d| {
            (0u32..)
                .take(d.vcpus().len())
                .filter(|id| d.vcpu_may_run(*id))
                .map(|vcpu_id| VcpuRef {
                    domid: d.domid(),
                    vcpu_id,
                })
        });
        for v in runnable {
            if self.cursor.is_none_or(|c| v > c) && after.is_none_or(|a| v < a) {
                after = Some(v);
            }
            if first.is_none_or(|f| v < f) {
                first = Some(v);
            }
        }
        after.or(first)
    }
}

impl Scheduler for RoundRobin {
    fn schedule(&mut self, domains: &mut DomainTable, now_ns: u64) -> Decision {
        self.account(domains, now_ns);
        let timer = next_timer_deadline(domains);
        let run = |vcpu, switched, slice_end_ns: u64| Decision::Run {
            vcpu,
            switched,
            slice_end_ns,
            next_event_ns: timer.map_or(slice_end_ns, |t| t.min(slice_end_ns)),
        };
        let previous = self.current;
        if let Some(cur) = previous {
            if !self.yielded && now_ns < cur.slice_end_ns && may_run(domains, cur.vcpu) {
                return run(cur.vcpu, false, cur.slice_end_ns);
            }
        }
        self.yielded = false;
        let Some(vcpu) = self.next(domains) else {
            self.current = None;
            return Decision::Idle { wake_at_ns: timer };
        };
        let slice_end_ns = now_ns.saturating_add(TIME_SLICE_NS);
        self.current = Some(Running {
            vcpu,
            since_ns: now_ns,
            slice_end_ns,
        });
        self.cursor = Some(vcpu);
        run(vcpu, previous.map(|p| p.vcpu) != Some(vcpu), slice_end_ns)
    }

    fn yield_current(&mut self) {
        self.yielded = true;
    }

    fn current(&self) -> Option<VcpuRef> {
        self.current.map(|r| r.vcpu)
    }
}
