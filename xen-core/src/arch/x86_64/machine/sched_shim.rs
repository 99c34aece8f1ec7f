//! TEMPORARY (replaced by the smpsched branch's API): the new scheduler
//! API over one single-pCPU Credit per pCPU.
use crate::domain::table::DomainTable;
use crate::sched::params::CpuMask;
use crate::sched::{Decision, Scheduler, VcpuRef};

pub struct Credit {
    per: [crate::sched::Credit; 8],
}

impl Credit {
    pub fn new(n: u32) -> Self {
        Self {
            per: core::array::from_fn(|p| crate::sched::Credit::new(p as u32, n)),
        }
    }
    pub fn schedule(&mut self, d: &mut DomainTable, pcpu: u32, now: u64) -> Decision {
        if pcpu != 0 {
            return Decision::Idle { wake_at_ns: None };
        }
        self.per[pcpu as usize].schedule(d, now)
    }
    pub fn yield_current(&mut self, pcpu: u32) {
        self.per[pcpu as usize].yield_current()
    }
    #[allow(dead_code)]
    pub fn current(&self, pcpu: u32) -> Option<VcpuRef> {
        self.per[pcpu as usize].current()
    }
    pub fn should_preempt(&self, d: &DomainTable, pcpu: u32) -> bool {
        self.per[pcpu as usize].should_preempt(d)
    }
    pub fn tickle(&mut self, _d: &mut DomainTable, _now: u64) -> CpuMask {
        CpuMask(0)
    }
}
