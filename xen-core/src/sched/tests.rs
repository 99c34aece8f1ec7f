use proptest::prelude::*;

use super::*;
use crate::domain::vcpu::{VcpuEntryState, VcpuRunState};
use crate::domain::{DomainConfig, ShutdownReason};
use crate::paging::sim::machine;

/// Domains with `vcpus[i]` vCPUs each, all started and unpaused.
fn domains(vcpus: &[u32]) -> DomainTable {
    let (mut pool, mut mem) = machine(4 * vcpus.len() as u64 + 4);
    let mut t = DomainTable::new();
    for (i, n) in vcpus.iter().enumerate() {
        let cfg = DomainConfig {
            name: &format!("d{i}"),
            max_pages: 1,
            vcpus: *n,
        };
        let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
        let d = t.get_mut(id).unwrap();
        for v in 0..*n {
            d.vcpu_mut(v).unwrap().start(VcpuEntryState::default());
        }
        d.unpause().unwrap();
    }
    t
}

/// One scheduling point as the run loop makes it: due timers fire, then
/// the scheduler decides.
fn step(s: &mut Credit, t: &mut DomainTable, now: u64) -> Decision {
    fire_timers(t, now, |_, _| {});
    s.schedule(t, 0, now)
}

fn r(domid: DomId, vcpu_id: u32) -> VcpuRef {
    VcpuRef { domid, vcpu_id }
}

fn ran(d: Decision) -> Option<VcpuRef> {
    match d {
        Decision::Run { vcpu, .. } => Some(vcpu),
        Decision::Idle { .. } => None,
    }
}

#[test]
fn boost_then_slices_and_yields_in_queue_order() {
    let mut t = domains(&[2, 1]);
    let mut s = Credit::new(1);
    // Every vCPU woke (BOOST): the first in the queue runs; the
    // scheduler comes back at the first tick.
    let d = step(&mut s, &mut t, 0);
    assert_eq!(
        d,
        Decision::Run {
            vcpu: r(1, 0),
            switched: true,
            slice_end_ns: TSLICE_NS,
            next_event_ns: TICK_NS
        }
    );
    // Within the slice the same vCPU goes on.
    assert_eq!(ran(step(&mut s, &mut t, 1_000)), Some(r(1, 0)));
    // Its tick ends its boost: the boosted ones waiting go first.
    assert_eq!(ran(step(&mut s, &mut t, TICK_NS)), Some(r(1, 1)));
    // A yield goes to the back of its priority.
    s.yield_current(0);
    assert_eq!(ran(step(&mut s, &mut t, TICK_NS + 10)), Some(r(2, 0)));
    s.yield_current(0);
    assert_eq!(ran(step(&mut s, &mut t, TICK_NS + 20)), Some(r(1, 1)));
    // CPU time was charged to whoever ran.
    let cpu = |t: &DomainTable, v: VcpuRef| {
        t.get(v.domid)
            .unwrap()
            .vcpu(v.vcpu_id)
            .unwrap()
            .cpu_time_ns()
    };
    assert_eq!(cpu(&t, r(1, 0)), TICK_NS);
    assert_eq!(cpu(&t, r(1, 1)), 10);
    assert_eq!(cpu(&t, r(2, 0)), 10);
}

#[test]
fn a_yield_hands_the_pcpu_to_a_lower_priority_waiter() {
    let mut t = domains(&[1, 1]);
    let mut s = Credit::new(1);
    assert_eq!(ran(step(&mut s, &mut t, 0)), Some(r(1, 0)));
    // d1's tick ends its boost: d2, still boosted, takes the pCPU.
    assert_eq!(ran(step(&mut s, &mut t, TICK_NS)), Some(r(2, 0)));
    // d2 yields while above d1: as in Xen, it goes behind d1.
    s.yield_current(0);
    assert_eq!(ran(step(&mut s, &mut t, TICK_NS + 10)), Some(r(1, 0)));
}

#[test]
fn a_lone_vcpu_that_yields_runs_again() {
    let mut t = domains(&[1]);
    let mut s = Credit::new(1);
    assert_eq!(ran(step(&mut s, &mut t, 0)), Some(r(1, 0)));
    s.yield_current(0);
    let d = step(&mut s, &mut t, 5);
    assert!(
        matches!(d, Decision::Run { switched: false, slice_end_ns, .. } if slice_end_ns == 5 + TSLICE_NS)
    );
}

#[test]
fn blocked_vcpu_sleeps_until_its_timer_and_idle_waits_for_it() {
    let mut t = domains(&[1]);
    let mut s = Credit::new(1);
    assert_eq!(ran(step(&mut s, &mut t, 0)), Some(r(1, 0)));
    let v = t.get_mut(1).unwrap().vcpu_mut(0).unwrap();
    v.set_timer(1_000_000);
    v.block();
    assert_eq!(
        step(&mut s, &mut t, 10),
        Decision::Idle {
            wake_at_ns: Some(1_000_000)
        }
    );
    assert_eq!(s.current(0), None);
    assert_eq!(
        step(&mut s, &mut t, 999_999),
        Decision::Idle {
            wake_at_ns: Some(1_000_000)
        }
    );
    assert!(matches!(
        step(&mut s, &mut t, 1_000_000),
        Decision::Run { vcpu, switched: true, .. } if vcpu == r(1, 0)
    ));
    // Blocked without a timer: idle with nothing to wait for.
    t.get_mut(1).unwrap().vcpu_mut(0).unwrap().block();
    assert_eq!(
        step(&mut s, &mut t, 2_000_000),
        Decision::Idle { wake_at_ns: None }
    );
}

#[test]
fn next_event_is_the_earliest_timer() {
    let mut t = domains(&[1, 1]);
    let mut s = Credit::new(1);
    let v = t.get_mut(2).unwrap().vcpu_mut(0).unwrap();
    v.set_timer(300);
    v.block();
    assert!(matches!(
        step(&mut s, &mut t, 0),
        Decision::Run {
            next_event_ns: 300,
            slice_end_ns: TSLICE_NS,
            ..
        }
    ));
}

#[test]
fn paused_and_stopped_domains_are_skipped() {
    let mut t = domains(&[1, 1, 1]);
    let mut s = Credit::new(1);
    t.get_mut(1).unwrap().pause().unwrap();
    t.get_mut(2).unwrap().shutdown(ShutdownReason::Poweroff);
    let v = t.get_mut(1).unwrap().vcpu_mut(0).unwrap();
    v.set_timer(50);
    for now in [0, TSLICE_NS, 2 * TSLICE_NS] {
        assert_eq!(ran(step(&mut s, &mut t, now)), Some(r(3, 0)));
    }
    t.get_mut(3)
        .unwrap()
        .crash(crate::domain::CrashReason::TripleFault);
    // A paused domain's timer does not wake an idle pCPU.
    assert_eq!(
        step(&mut s, &mut t, 3 * TSLICE_NS),
        Decision::Idle { wake_at_ns: None }
    );
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Block(usize),
    BlockWithTimer(usize, u64),
    Wake(usize),
    Yield,
    Pause(usize),
    Unpause(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..3 * TSLICE_NS).prop_map(Op::Advance),
        2 => any::<usize>().prop_map(Op::Block),
        2 => (any::<usize>(), 0u64..4 * TSLICE_NS).prop_map(|(i, dt)| Op::BlockWithTimer(i, dt)),
        1 => any::<usize>().prop_map(Op::Wake),
        2 => Just(Op::Yield),
        1 => any::<usize>().prop_map(Op::Pause),
        1 => any::<usize>().prop_map(Op::Unpause),
    ]
}

/// Every vCPU of `t`, and every domid.
fn vcpus_and_domids(t: &DomainTable) -> (Vec<VcpuRef>, Vec<DomId>) {
    let all = t
        .iter()
        .flat_map(|d| (0u32..).take(d.vcpus().len()).map(move |v| r(d.domid(), v)))
        .collect();
    (all, t.iter().map(|d| d.domid()).collect())
}

/// What happens to a vCPU or domain from outside it: a wake (an event,
/// a timer), a pause, an unpause. Other ops: nothing.
fn apply_outside(op: &Op, t: &mut DomainTable, all: &[VcpuRef], domids: &[DomId]) {
    match *op {
        Op::Wake(i) => {
            let v = all[i % all.len()];
            t.get_mut(v.domid)
                .unwrap()
                .vcpu_mut(v.vcpu_id)
                .unwrap()
                .wake();
        }
        Op::Pause(i) => {
            let _ = t.get_mut(domids[i % domids.len()]).unwrap().pause();
        }
        Op::Unpause(i) => {
            let _ = t.get_mut(domids[i % domids.len()]).unwrap().unpause();
        }
        _ => {}
    }
}

fn run_state(t: &DomainTable, v: VcpuRef) -> VcpuRunState {
    t.get(v.domid).unwrap().vcpu(v.vcpu_id).unwrap().run_state()
}

proptest! {
    /// Against random blocking, timers, pauses and yields: the vCPU run is
    /// always allowed to run, a timer never wakes a vCPU before its
    /// deadline, and the pCPU idles only when no vCPU may run.
    /// (Starvation and shares: `credit::tests`.)
    #[test]
    fn fair_and_safe(shape in prop::collection::vec(1u32..4, 1..4), ops in prop::collection::vec(op(), 1..200)) {
        let mut t = domains(&shape);
        let (all, domids) = vcpus_and_domids(&t);
        let mut s = Credit::new(1);
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Advance(dt) => now += dt,
                Op::Block(i) | Op::BlockWithTimer(i, _) => {
                    let v = all[i % all.len()];
                    let vcpu = t.get_mut(v.domid).unwrap().vcpu_mut(v.vcpu_id).unwrap();
                    if let Op::BlockWithTimer(_, dt) = op {
                        vcpu.set_timer(now + dt);
                    }
                    vcpu.block();
                }
                Op::Wake(_) | Op::Pause(_) | Op::Unpause(_) => apply_outside(&op, &mut t, &all, &domids),
                Op::Yield => s.yield_current(0),
            }
            let before: Vec<(VcpuRunState, Option<u64>, bool)> = all
                .iter()
                .map(|v| {
                    let vcpu = t.get(v.domid).unwrap().vcpu(v.vcpu_id).unwrap();
                    (vcpu.run_state(), vcpu.timer_deadline_ns(), may_run(&t, *v))
                })
                .collect();
            let decision = step(&mut s, &mut t, now);
            for (v, (state, deadline, _)) in all.iter().zip(&before) {
                if *state == VcpuRunState::Blocked && run_state(&t, *v) == VcpuRunState::Runnable {
                    let deadline = deadline.expect("woken without a timer");
                    prop_assert!(now >= deadline, "{:?} woke at {} before {}", v, now, deadline);
                }
            }
            match decision {
                Decision::Run { vcpu, next_event_ns, slice_end_ns, .. } => {
                    prop_assert!(may_run(&t, vcpu), "{:?} is not runnable", vcpu);
                    prop_assert!(next_event_ns <= slice_end_ns && now < slice_end_ns);
                    prop_assert!(next_event_ns <= now + TICK_NS);
                }
                Decision::Idle { wake_at_ns } => {
                    prop_assert!(all.iter().all(|v| !may_run(&t, *v)));
                    prop_assert_eq!(wake_at_ns, next_timer_deadline(&t, |_| true));
                }
            }
        }
    }
}

proptest! {
    /// Xen's runstate rules against random blocking, wakes, pauses and
    /// yields on two pCPUs, checked after each pass: a vCPU is running
    /// exactly while it is current on a pCPU, otherwise blocked, runnable
    /// or offline by Xen's rule (`Domain::runstate_off_cpu`); no time
    /// goes backwards; the times sum to the time since the first pass;
    /// the time running of a vCPU not running now is its CPU time.
    #[test]
    fn runstate_follows_xen(shape in prop::collection::vec(1u32..4, 1..4), ops in prop::collection::vec(op(), 1..200)) {
        use abi::xen::vcpu::RUNSTATE_RUNNING;
        let mut t = domains(&shape);
        let (all, domids) = vcpus_and_domids(&t);
        let mut s = Credit::new(2);
        let mut now = 0u64;
        let mut seen = vec![[0u64; 4]; all.len()];
        let mut start = None;
        for (k, op) in ops.into_iter().enumerate() {
            let pcpu = u32::try_from(k % 2).unwrap();
            match op {
                Op::Advance(dt) => now += dt,
                Op::Block(_) | Op::BlockWithTimer(..) => {
                    // Only a current vCPU blocks itself (HLT, SCHEDOP_block).
                    if let Some(v) = s.current(pcpu) {
                        let vcpu = t.get_mut(v.domid).unwrap().vcpu_mut(v.vcpu_id).unwrap();
                        if let Op::BlockWithTimer(_, dt) = op {
                            vcpu.set_timer(now + dt);
                        }
                        vcpu.block();
                    }
                }
                Op::Wake(_) | Op::Pause(_) | Op::Unpause(_) => apply_outside(&op, &mut t, &all, &domids),
                Op::Yield => s.yield_current(pcpu),
            }
            fire_timers(&mut t, now, |_, _| {});
            s.schedule(&mut t, pcpu, now);
            let start = *start.get_or_insert(now);
            for (v, seen) in all.iter().zip(seen.iter_mut()) {
                let d = t.get(v.domid).unwrap();
                let vcpu = d.vcpu(v.vcpu_id).unwrap();
                let info = vcpu.runstate().get(now);
                let current = s.running_on(*v).is_some();
                let want = if current { RUNSTATE_RUNNING } else { d.runstate_off_cpu(v.vcpu_id) };
                prop_assert_eq!(info.state, want, "{:?}", v);
                prop_assert!(info.time.iter().zip(seen.iter()).all(|(t, s)| t >= s), "{:?} went back", v);
                *seen = info.time;
                prop_assert_eq!(info.time.iter().sum::<u64>(), now - start, "{:?}", v);
                if !current {
                    prop_assert_eq!(info.time[0], vcpu.cpu_time_ns(), "{:?}", v);
                }
            }
        }
    }
}
