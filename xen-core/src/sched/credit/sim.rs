//! A model of the run loops of several pCPUs for the scheduler's tests:
//! each pCPU comes back at its decision's next event or at an earlier VM
//! exit, runs a pass (due timers fire, then `schedule`), and after every
//! pass `tickle` names the pCPUs to kick, which pass at once. Time only
//! moves forward; ties go to the lowest pCPU, so a run is deterministic.

use alloc::vec::Vec;

use super::Credit;
use crate::domain::table::DomainTable;
use crate::domain::vcpu::VcpuEntryState;
use crate::domain::DomainConfig;
use crate::paging::sim::machine;
use crate::sched::params::CpuMask;
use crate::sched::{fire_timers, Decision, Scheduler, VcpuRef};

/// Passes at one instant before the model calls it a livelock.
const MAX_PASSES_AT_ONCE: u32 = 1000;

/// One domain of a test machine.
#[derive(Clone, Debug)]
pub(super) struct DomSpec {
    pub(super) vcpus: u32,
    pub(super) weight: u16,
    pub(super) cap: u16,
    /// Each vCPU's hard affinity (all pCPUs if shorter).
    pub(super) affinity: Vec<CpuMask>,
}

impl DomSpec {
    /// `vcpus` vCPUs of weight 256, no cap, free to run anywhere.
    pub(super) fn new(vcpus: u32) -> Self {
        Self {
            vcpus,
            weight: 256,
            cap: 0,
            affinity: Vec::new(),
        }
    }
}

/// Domains of `specs`, started and unpaused, for `nr_pcpus` pCPUs.
pub(super) fn domains(specs: &[DomSpec], nr_pcpus: u32) -> DomainTable {
    let (mut pool, mut mem) = machine(4 * specs.len() as u64 + 4);
    let mut t = DomainTable::new();
    for (i, spec) in specs.iter().enumerate() {
        let cfg = DomainConfig {
            name: &alloc::format!("d{i}"),
            max_pages: 1,
            vcpus: spec.vcpus,
        };
        let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
        let d = t.get_mut(id).unwrap();
        d.sched_mut()
            .set(Some(spec.weight), Some(spec.cap), nr_pcpus)
            .unwrap();
        for v in 0..spec.vcpus {
            d.vcpu_mut(v).unwrap().start(VcpuEntryState::default());
            if let Some(mask) = spec.affinity.get(v as usize) {
                d.sched_mut()
                    .set_affinity(v, spec.vcpus, *mask, CpuMask::first(nr_pcpus))
                    .unwrap();
            }
        }
        d.unpause().unwrap();
    }
    t
}

/// Every vCPU of `t`.
pub(super) fn all_vcpus(t: &DomainTable) -> Vec<VcpuRef> {
    t.iter()
        .flat_map(|d| {
            (0..d.nr_vcpus()).map(move |vcpu_id| VcpuRef {
                domid: d.domid(),
                vcpu_id,
            })
        })
        .collect()
}

/// The machine: the scheduler, the domains and each pCPU's run loop.
pub(super) struct Sim {
    pub(super) s: Credit,
    pub(super) t: DomainTable,
    pub(super) now: u64,
    /// Each pCPU's next scheduling point (`None`: halted without a timer).
    next: Vec<Option<u64>>,
    /// VM exit gaps, taken in turn: a running vCPU exits this long after
    /// it entered unless its decision's next event comes first.
    gaps: Vec<u64>,
    gap: usize,
    /// Passes at `now` so far.
    passes_now: u32,
    /// Whether each pCPU's last pass was a yield.
    yielded: Vec<bool>,
}

impl Sim {
    /// `t` on `nr_pcpus` pCPUs, each about to run its first pass at 0.
    pub(super) fn new(t: DomainTable, nr_pcpus: u32, gaps: &[u64]) -> Self {
        Self {
            s: Credit::new(nr_pcpus),
            t,
            now: 0,
            next: (0..nr_pcpus).map(|_| Some(0)).collect(),
            gaps: gaps.to_vec(),
            gap: 0,
            passes_now: 0,
            yielded: (0..nr_pcpus).map(|_| false).collect(),
        }
    }

    pub(super) fn nr_pcpus(&self) -> u32 {
        u32::try_from(self.next.len()).unwrap()
    }

    /// A scheduling pass on `pcpu` now, as its run loop makes it.
    pub(super) fn pass(&mut self, pcpu: u32) -> Decision {
        self.passes_now += 1;
        assert!(
            self.passes_now < MAX_PASSES_AT_ONCE,
            "livelock at {}",
            self.now
        );
        fire_timers(&mut self.t, self.now, |_, _| {});
        self.yielded[pcpu as usize] = false;
        let d = self.s.schedule(&mut self.t, pcpu, self.now);
        let next = match d {
            Decision::Run {
                vcpu,
                next_event_ns,
                ..
            } => {
                let on = (0..self.nr_pcpus()).filter(|p| self.s.current(*p) == Some(vcpu));
                assert!(on.eq([pcpu]), "{vcpu:?} current elsewhere too");
                self.gap += 1;
                let gap = self.gaps[self.gap % self.gaps.len()];
                Some(next_event_ns.min(self.now + gap))
            }
            Decision::Idle { wake_at_ns } => wake_at_ns,
        };
        self.next[pcpu as usize] = next;
        d
    }

    /// `pcpu`'s current vCPU yields (`SCHEDOP_yield`): a pass at once.
    pub(super) fn yield_pass(&mut self, pcpu: u32) -> Decision {
        self.s.yield_current(pcpu);
        let d = self.pass(pcpu);
        self.yielded[pcpu as usize] = true;
        d
    }

    /// Whether `pcpu`'s last pass was a yield.
    pub(super) fn yielded(&self, pcpu: u32) -> bool {
        self.yielded[pcpu as usize]
    }

    /// Kicks the pCPUs `tickle` names: they pass next.
    pub(super) fn kick(&mut self) -> CpuMask {
        let mask = self.s.tickle(&mut self.t, self.now);
        for pcpu in mask.iter() {
            self.next[pcpu as usize] = Some(self.now);
        }
        mask
    }

    /// Runs every pCPU's loop until `end`; then charges each current
    /// vCPU up to `end`.
    pub(super) fn run_until(&mut self, end: u64) {
        while let Some((pcpu, at)) = self.earliest().filter(|(_, at)| *at < end) {
            self.advance_to(at);
            self.pass(pcpu);
            // A pass leaves nothing for its own pCPU to do.
            assert!(
                !self.kick().contains(pcpu),
                "pCPU {pcpu} kicked by its own pass"
            );
        }
        self.advance_to(end);
        for pcpu in 0..self.nr_pcpus() {
            if self.s.current(pcpu).is_some() {
                self.pass(pcpu);
            }
        }
        self.kick();
    }

    /// Kicks and passes until `tickle` names nobody; panics if that takes
    /// more than a few rounds.
    pub(super) fn settle(&mut self) {
        for _ in 0..4 * self.nr_pcpus() + 4 {
            let mask = self.kick();
            if mask.is_empty() {
                return;
            }
            for pcpu in mask.iter() {
                self.pass(pcpu);
            }
        }
        panic!("tickle does not settle at {}", self.now);
    }

    fn advance_to(&mut self, at: u64) {
        if at > self.now {
            self.now = at;
            self.passes_now = 0;
        }
    }

    /// The pCPU whose scheduling point comes first, with its time.
    fn earliest(&self) -> Option<(u32, u64)> {
        (0u32..)
            .zip(&self.next)
            .filter_map(|(pcpu, at)| at.map(|at| (pcpu, at)))
            .min_by_key(|(pcpu, at)| (*at, *pcpu))
    }

    /// CPU time of each vCPU of `vcpus`, ns.
    pub(super) fn cpu_times(&self, vcpus: &[VcpuRef]) -> Vec<u64> {
        vcpus
            .iter()
            .map(|v| {
                let d = self.t.get(v.domid).unwrap();
                d.vcpu(v.vcpu_id).unwrap().cpu_time_ns()
            })
            .collect()
    }
}
