//! Who `tickle` kicks, who `should_preempt` stops, and who a pass takes,
//! on two pCPUs, step by step.

use super::sim::{domains, DomSpec, Sim};
use super::TICK_NS;
use crate::sched::params::{CpuMask, Priority, Unit};
use crate::sched::{Decision, Scheduler, VcpuRef};

fn r(domid: u16, vcpu_id: u32) -> VcpuRef {
    VcpuRef { domid, vcpu_id }
}

fn unit_mut(sim: &mut Sim, v: VcpuRef) -> &mut Unit {
    sim.t
        .get_mut(v.domid)
        .unwrap()
        .sched_mut()
        .unit_mut(v.vcpu_id)
        .unwrap()
}

/// `n` one-vCPU domains on two pCPUs, `blocked` of them blocked.
fn machine(n: usize, blocked: &[u16]) -> Sim {
    let specs: Vec<DomSpec> = (0..n).map(|_| DomSpec::new(1)).collect();
    let mut t = domains(&specs, 2);
    for domid in blocked {
        t.get_mut(*domid).unwrap().vcpu_mut(0).unwrap().block();
    }
    Sim::new(t, 2, &[TICK_NS])
}

#[test]
fn a_wake_kicks_an_idle_pcpu_not_the_busy_one() {
    let mut sim = machine(2, &[2]);
    sim.settle();
    assert_eq!((sim.s.current(0), sim.s.current(1)), (Some(r(1, 0)), None));
    sim.t.get_mut(2).unwrap().vcpu_mut(0).unwrap().wake();
    // d2 is boosted, above d1, but pCPU 1 idles: d1 goes on.
    assert!(!sim.s.should_preempt(&sim.t, 0));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0b10));
    assert_eq!(unit_mut(&mut sim, r(2, 0)).priority, Priority::Boost);
    assert!(matches!(sim.pass(1), Decision::Run { vcpu, .. } if vcpu == r(2, 0)));
    // Once: the wake was counted once and nobody is kicked again.
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0));
    assert_eq!(unit_mut(&mut sim, r(2, 0)).wakes, 1);
}

#[test]
fn a_wake_preempts_the_pcpu_whose_current_it_outranks() {
    let mut sim = machine(3, &[]);
    sim.settle();
    assert_eq!(
        (sim.s.current(0), sim.s.current(1)),
        (Some(r(1, 0)), Some(r(2, 0)))
    );
    // d3 ran on pCPU 1 and blocked; d1 and d2 lost their boost.
    let d3 = unit_mut(&mut sim, r(3, 0));
    d3.pcpu = Some(1);
    d3.priority = Priority::Under;
    sim.t.get_mut(3).unwrap().vcpu_mut(0).unwrap().block();
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0));
    unit_mut(&mut sim, r(1, 0)).priority = Priority::Over;
    unit_mut(&mut sim, r(2, 0)).priority = Priority::Under;
    sim.t.get_mut(3).unwrap().vcpu_mut(0).unwrap().wake();
    // Its own pCPU's current is below its BOOST: that one stops, even
    // though pCPU 0 runs an OVER vCPU.
    assert!(sim.s.should_preempt(&sim.t, 1));
    assert!(!sim.s.should_preempt(&sim.t, 0));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0b10));
    assert!(matches!(sim.pass(1), Decision::Run { vcpu, switched: true, .. } if vcpu == r(3, 0)));
    // d2 waits in pCPU 1's queue, UNDER: pCPU 0's OVER current is not
    // preempted for it, but pCPU 0's next pass steals it.
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0));
    assert!(matches!(sim.pass(0), Decision::Run { vcpu, .. } if vcpu == r(2, 0)));
    assert_eq!(unit_mut(&mut sim, r(2, 0)).pcpu, Some(0));
    assert_eq!(sim.s.running_on(r(1, 0)), None);
}

#[test]
fn an_idle_pcpu_with_nothing_it_may_run_is_not_kicked() {
    let specs = vec![
        DomSpec {
            affinity: vec![CpuMask(0b01)],
            ..DomSpec::new(1)
        };
        2
    ];
    let mut sim = Sim::new(domains(&specs, 2), 2, &[TICK_NS]);
    sim.settle();
    assert_eq!((sim.s.current(0), sim.s.current(1)), (Some(r(1, 0)), None));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0));
    assert_eq!(sim.pass(1), Decision::Idle { wake_at_ns: None });
}

#[test]
fn pinning_the_current_vcpu_away_moves_it() {
    let mut sim = machine(1, &[]);
    sim.settle();
    assert_eq!(sim.s.current(0), Some(r(1, 0)));
    sim.t
        .get_mut(1)
        .unwrap()
        .sched_mut()
        .set_affinity(0, 1, CpuMask(0b10), CpuMask::first(2))
        .unwrap();
    // Its pCPU stops it; only then may pCPU 1 take it.
    assert!(sim.s.should_preempt(&sim.t, 0));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0b01));
    assert!(matches!(sim.pass(1), Decision::Idle { .. }));
    assert!(matches!(sim.pass(0), Decision::Idle { .. }));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0b10));
    assert!(matches!(sim.pass(1), Decision::Run { vcpu, switched: true, .. } if vcpu == r(1, 0)));
    let u = *unit_mut(&mut sim, r(1, 0));
    assert_eq!((u.pcpu, u.running, u.runs), (Some(1), true, 2));
}

#[test]
fn a_blocked_vcpus_timer_wakes_only_its_own_pcpu() {
    let mut sim = machine(2, &[]);
    sim.settle();
    // d2 ran on pCPU 1; d1 on pCPU 0. Both block with timers.
    let now = sim.now;
    for (domid, pcpu, at) in [(1, 0, 5_000), (2, 1, 7_000)] {
        let v = sim.t.get_mut(domid).unwrap().vcpu_mut(0).unwrap();
        v.set_timer(now + at);
        v.block();
        assert_eq!(
            sim.pass(pcpu),
            Decision::Idle {
                wake_at_ns: Some(now + at)
            }
        );
    }
}

#[test]
fn a_new_domain_on_a_current_vcpus_domid_is_not_taken_for_it() {
    let mut sim = machine(1, &[]);
    sim.settle();
    assert_eq!(sim.s.current(0), Some(r(1, 0)));
    // d1 was destroyed and a new d1 created: its unit is fresh.
    unit_mut(&mut sim, r(1, 0)).running = false;
    assert!(sim.s.should_preempt(&sim.t, 0));
    sim.settle();
    // It runs, but as a switch: the pCPU loads its state.
    assert_eq!(sim.s.current(0), Some(r(1, 0)));
    assert!(unit_mut(&mut sim, r(1, 0)).running);
    assert_eq!(unit_mut(&mut sim, r(1, 0)).runs, 2);
}

#[test]
fn a_yield_is_not_undone_by_tickle() {
    let specs = vec![
        DomSpec {
            affinity: vec![CpuMask(0b01)],
            ..DomSpec::new(1)
        };
        2
    ];
    let mut sim = Sim::new(domains(&specs, 2), 2, &[TICK_NS]);
    sim.settle();
    assert_eq!(sim.s.current(0), Some(r(1, 0)));
    unit_mut(&mut sim, r(1, 0)).priority = Priority::Under;
    unit_mut(&mut sim, r(2, 0)).priority = Priority::Over;
    // d1 yields to d2, below it: tickle does not give pCPU 0 straight
    // back, but d2's next exit does (as with one pCPU).
    assert!(matches!(sim.yield_pass(0), Decision::Run { vcpu, .. } if vcpu == r(2, 0)));
    assert_eq!(sim.s.tickle(&mut sim.t, sim.now), CpuMask(0));
    assert!(sim.s.should_preempt(&sim.t, 0));
    assert!(matches!(sim.pass(0), Decision::Run { vcpu, .. } if vcpu == r(1, 0)));
}
