//! The credit scheduler on several pCPUs, against [`super::sim`]'s model
//! of their run loops: safety and work conservation under random
//! blocking, waking, pausing, pinning and capping; CPU shares with pinned
//! vCPUs, caps and many spinning vCPUs.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::sim::{all_vcpus, domains, DomSpec, Sim};
use super::{TICK_NS, TSLICE_NS};
use crate::sched::params::{CpuMask, Unit};
use crate::sched::{Scheduler, VcpuRef};

/// CPU time of `vcpus` over `window` ns after a warm-up, as fractions of
/// one pCPU.
fn shares(sim: &mut Sim, vcpus: &[VcpuRef], window: u64) -> Vec<f64> {
    sim.run_until(sim.now + 20 * TSLICE_NS);
    let before = sim.cpu_times(vcpus);
    sim.run_until(sim.now + window);
    sim.cpu_times(vcpus)
        .iter()
        .zip(before)
        .map(|(after, before)| (after - before) as f64 / window as f64)
        .collect()
}

/// A domain of `vcpus` vCPUs of `weight`, each pinned to `mask`.
fn pinned(vcpus: u32, weight: u16, mask: u64) -> DomSpec {
    DomSpec {
        weight,
        affinity: (0..vcpus).map(|_| CpuMask(mask)).collect(),
        ..DomSpec::new(vcpus)
    }
}

fn unit(sim: &Sim, v: VcpuRef) -> Unit {
    *sim.t.get(v.domid).unwrap().sched().unit(v.vcpu_id).unwrap()
}

fn may_run(sim: &Sim, v: VcpuRef) -> bool {
    sim.t.get(v.domid).unwrap().vcpu_may_run(v.vcpu_id)
}

/// Safety and work conservation once `tickle` names nobody.
fn check(sim: &Sim) -> Result<(), TestCaseError> {
    let currents: Vec<Option<VcpuRef>> = (0..sim.nr_pcpus()).map(|p| sim.s.current(p)).collect();
    let all = all_vcpus(&sim.t);
    for (pcpu, v) in (0u32..).zip(&currents) {
        // Only a vCPU that yielded the pCPU may still outrank its current.
        prop_assert!(
            !sim.s.should_preempt(&sim.t, pcpu) || sim.yielded(pcpu),
            "pCPU {} settled",
            pcpu
        );
        let Some(v) = *v else {
            // Idle: nothing that may run here waits.
            for w in &all {
                let u = unit(sim, *w);
                prop_assert!(
                    !may_run(sim, *w)
                        || u.parked
                        || !u.affinity.contains(pcpu)
                        || currents.contains(&Some(*w)),
                    "pCPU {} idles while {:?} waits",
                    pcpu,
                    w
                );
            }
            continue;
        };
        prop_assert_eq!(currents.iter().filter(|c| **c == Some(v)).count(), 1);
        let u = unit(sim, v);
        prop_assert!(may_run(sim, v) && !u.parked, "{:?} may not run", v);
        prop_assert!(u.affinity.contains(pcpu), "{:?} off its affinity", v);
        prop_assert!(u.running && u.pcpu == Some(pcpu));
        prop_assert_eq!(sim.s.running_on(v), Some(pcpu));
    }
    for w in &all {
        prop_assert_eq!(unit(sim, *w).running, currents.contains(&Some(*w)));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Run(u64),
    Block(usize, Option<u64>),
    Wake(usize),
    Pause(usize),
    Unpause(usize),
    Yield(u32),
    Pin(usize, u64),
    Cap(usize, u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..3 * TSLICE_NS).prop_map(Op::Run),
        3 => (any::<usize>(), prop::option::of(0u64..4 * TSLICE_NS)).prop_map(|(i, t)| Op::Block(i, t)),
        3 => any::<usize>().prop_map(Op::Wake),
        1 => any::<usize>().prop_map(Op::Pause),
        1 => any::<usize>().prop_map(Op::Unpause),
        2 => (0u32..4).prop_map(Op::Yield),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(i, m)| Op::Pin(i, m)),
        1 => (any::<usize>(), prop_oneof![Just(0u16), 5u16..=100]).prop_map(|(i, c)| Op::Cap(i, c)),
    ]
}

/// Domains for `nr_pcpus` pCPUs: 1 to 3 vCPUs each, any weight, some
/// capped, vCPUs pinned to any non-empty set of pCPUs.
fn specs(nr_pcpus: u32) -> impl Strategy<Value = Vec<DomSpec>> {
    let all = (1u64 << nr_pcpus) - 1;
    prop::collection::vec(
        (
            1u32..=3,
            32u16..=1024,
            prop_oneof![3 => Just(0u16), 1 => 5u16..=100],
            prop::collection::vec(1..=all, 3),
        )
            .prop_map(|(vcpus, weight, cap, masks)| DomSpec {
                vcpus,
                weight,
                cap,
                affinity: masks.into_iter().map(CpuMask).collect(),
            }),
        1..=5,
    )
}

/// `op` as the run loops would meet it.
fn apply(sim: &mut Sim, op: &Op, vcpus: &[VcpuRef]) {
    let nr = sim.nr_pcpus();
    let vcpu = |i: usize| vcpus[i % vcpus.len()];
    let domid = |i: usize| vcpus[i % vcpus.len()].domid;
    match *op {
        Op::Run(dt) => sim.run_until(sim.now + dt),
        Op::Block(i, timer) => {
            let v = vcpu(i);
            let now = sim.now;
            let x = sim.t.get_mut(v.domid).unwrap().vcpu_mut(v.vcpu_id).unwrap();
            if let Some(dt) = timer {
                x.set_timer(now + dt);
            }
            x.block();
            // A vCPU blocks on its own pCPU, which passes at once.
            if let Some(pcpu) = sim.s.running_on(v) {
                sim.pass(pcpu);
            }
        }
        Op::Wake(i) => {
            let v = vcpu(i);
            sim.t
                .get_mut(v.domid)
                .unwrap()
                .vcpu_mut(v.vcpu_id)
                .unwrap()
                .wake();
        }
        Op::Pause(i) => {
            let _ = sim.t.get_mut(domid(i)).unwrap().pause();
        }
        Op::Unpause(i) => {
            let _ = sim.t.get_mut(domid(i)).unwrap().unpause();
        }
        Op::Yield(pcpu) => {
            if pcpu < nr && sim.s.current(pcpu).is_some() {
                sim.yield_pass(pcpu);
            }
        }
        Op::Pin(i, mask) => {
            let v = vcpu(i);
            let d = sim.t.get_mut(v.domid).unwrap();
            let nr_vcpus = d.nr_vcpus();
            let online = CpuMask::first(nr);
            let _ = d
                .sched_mut()
                .set_affinity(v.vcpu_id, nr_vcpus, CpuMask(mask), online);
        }
        Op::Cap(i, cap) => {
            let _ = sim
                .t
                .get_mut(domid(i))
                .unwrap()
                .sched_mut()
                .set(None, Some(cap), nr);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against random blocking, timers, waking, pausing, yielding,
    /// pinning and capping on 1 to 4 pCPUs, once the kicks `tickle` asks
    /// for are done: no vCPU is current on two pCPUs; each current vCPU
    /// may run there (runnable, not parked, in its affinity); no pCPU
    /// idles while a vCPU that may run there waits; `Unit::running` and
    /// `Unit::pcpu` tell the truth.
    #[test]
    fn safe_and_work_conserving(
        (nr, specs, gaps, ops) in (1u32..=4).prop_flat_map(|nr| (
            Just(nr),
            specs(nr),
            prop::collection::vec(20_000u64..2 * TICK_NS, 1..4),
            prop::collection::vec(op(), 1..60),
        ))
    ) {
        let mut sim = Sim::new(domains(&specs, nr), nr, &gaps);
        let vcpus = all_vcpus(&sim.t);
        sim.settle();
        check(&sim)?;
        for op in &ops {
            apply(&mut sim, op, &vcpus);
            sim.settle();
            check(&sim)?;
        }
    }

    /// Two CPU-bound domains pinned to pCPU 0 share it in proportion to
    /// their weights (within 10%) while the other pCPUs run other work,
    /// pinned there or free to come to pCPU 0.
    #[test]
    fn weights_hold_on_a_pinned_pcpu(
        w0 in 128u16..=512,
        w1 in 128u16..=512,
        nr in 2u32..=4,
        others_free in any::<bool>(),
        gaps in prop::collection::vec(200_000u64..2 * TICK_NS, 1..4),
    ) {
        let mut specs = vec![pinned(1, w0, 0b1), pinned(1, w1, 0b1)];
        let rest = (1u64 << nr) - 2;
        let other_mask = if others_free { (1u64 << nr) - 1 } else { rest };
        specs.extend((1..nr).map(|_| pinned(1, 256, other_mask)));
        let mut sim = Sim::new(domains(&specs, nr), nr, &gaps);
        let vcpus = all_vcpus(&sim.t);
        let got = shares(&mut sim, &vcpus, 200 * TSLICE_NS);
        let want = f64::from(w1) / f64::from(w0);
        prop_assert!((got[1] / got[0] - want).abs() <= 0.1 * want, "{:?} for {}:{}", got, w0, w1);
    }

    /// A capped domain of 1 to 4 spinning vCPUs gets its cap (percent of
    /// one pCPU) within 5 points on 4 pCPUs, beside CPU-bound rivals.
    /// (Up to 50%: with at most 7 vCPUs on 4 pCPUs, each would get more
    /// uncapped.)
    #[test]
    fn a_cap_holds_on_four_pcpus(
        cap in 5u16..=50,
        vcpus in 1u32..=4,
        rivals in 0usize..=3,
        gaps in prop::collection::vec(200_000u64..2 * TICK_NS, 1..4),
    ) {
        let mut specs = vec![DomSpec { cap, ..DomSpec::new(vcpus) }];
        specs.extend((0..rivals).map(|_| DomSpec::new(2)));
        let mut sim = Sim::new(domains(&specs, 4), 4, &gaps);
        let all = all_vcpus(&sim.t);
        let got = shares(&mut sim, &all, 200 * TSLICE_NS);
        let capped: f64 = got.iter().take(vcpus as usize).sum();
        let want = f64::from(cap) / 100.0;
        prop_assert!((capped - want).abs() <= 0.05, "cap {}: {:?}", cap, got);
    }
}

#[test]
fn weights_256_to_512_on_a_pinned_pcpu_beside_other_work() {
    let mut specs = vec![pinned(1, 256, 0b1), pinned(1, 512, 0b1)];
    specs.extend((1..4).map(|p| pinned(1, 256, 1 << p)));
    let mut sim = Sim::new(domains(&specs, 4), 4, &[TICK_NS / 3]);
    let vcpus = all_vcpus(&sim.t);
    let got = shares(&mut sim, &vcpus, 300 * TSLICE_NS);
    assert!((got[1] / got[0] - 2.0).abs() < 0.2, "{got:?}");
    // The others have a pCPU each.
    assert!(got[2..].iter().all(|s| *s > 0.99), "{got:?}");
}

/// A cap of 25% on a domain of 2 spinning vCPUs holds within 5 points on
/// 4 pCPUs beside 3 uncapped domains of 2, which share the rest.
#[test]
fn a_cap_of_25_percent_holds_on_four_pcpus() {
    let mut specs = vec![DomSpec {
        cap: 25,
        ..DomSpec::new(2)
    }];
    specs.extend((0..3).map(|_| DomSpec::new(2)));
    let mut sim = Sim::new(domains(&specs, 4), 4, &[TICK_NS / 3, TICK_NS]);
    let all = all_vcpus(&sim.t);
    let got = shares(&mut sim, &all, 300 * TSLICE_NS);
    let capped: f64 = got[..2].iter().sum();
    assert!((capped - 0.25).abs() <= 0.05, "{got:?}");
    let used: f64 = got.iter().sum();
    assert!((used - 4.0).abs() < 1e-6, "{got:?}");
}

/// 8 domains × 2 spinning vCPUs on 4 pCPUs: every vCPU gets at least
/// half its fair share (a quarter of a pCPU) in every window, and no
/// pCPU idles.
#[test]
fn sixteen_spinners_on_four_pcpus_all_progress() {
    let specs: Vec<DomSpec> = (0..8).map(|_| DomSpec::new(2)).collect();
    let mut sim = Sim::new(domains(&specs, 4), 4, &[TICK_NS / 7, TICK_NS / 2, TICK_NS]);
    let vcpus = all_vcpus(&sim.t);
    for _ in 0..3 {
        let got = shares(&mut sim, &vcpus, 100 * TSLICE_NS);
        let fair = 4.0 / 16.0;
        assert!(got.iter().all(|s| *s >= fair / 2.0), "{got:?}");
        let used: f64 = got.iter().sum();
        assert!((used - 4.0).abs() < 1e-6, "{got:?}");
    }
}

/// Proptest's case: a cap above what the domain would get anyway does
/// not bind (1 capped vCPU and 4 rivals on 4 pCPUs: 0.8 each).
#[test]
fn a_cap_above_the_fair_share_does_not_bind() {
    let mut specs = vec![DomSpec {
        cap: 86,
        ..DomSpec::new(1)
    }];
    specs.extend((0..2).map(|_| DomSpec::new(2)));
    let mut sim = Sim::new(domains(&specs, 4), 4, &[200_000]);
    let all = all_vcpus(&sim.t);
    let got = shares(&mut sim, &all, 200 * TSLICE_NS);
    assert!(got.iter().all(|s| (s - 0.8).abs() < 0.05), "{got:?}");
}
