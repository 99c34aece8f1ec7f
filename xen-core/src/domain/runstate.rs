//! A vCPU's `struct vcpu_runstate_info` (`xen/include/public/vcpu.h`):
//! its `RUNSTATE_*` state, the system time (ns, the time the pvclock
//! publishes) it entered it, and the time spent in each state, kept as
//! Xen's `xen/common/sched/core.c` keeps `v->runstate`.
//!
//! - [`Runstate::change`] is Xen's `vcpu_runstate_change`: the time since
//!   `state_entry_time` goes to the old state, then the new one starts.
//! - [`Runstate::get`] is Xen's `vcpu_runstate_get`: a copy with the
//!   current state's time brought up to now (`VCPUOP_get_runstate_info`).
//! - [`Runstate::info`] is `v->runstate` itself, what Xen copies to a
//!   registered area (`update_runstate_area`, `xen/arch/x86/domain.c`).
//!
//! Who changes it, at the points Xen does: the scheduler, as it makes a
//! vCPU current on a pCPU (running) or takes it off (blocked, runnable
//! or offline, Xen's `sched_switch_units`), and as it sees a vCPU that is
//! not current wake, sleep, go down or up, or its domain pause
//! ([`crate::sched`]; Xen's `vcpu_wake` and `vcpu_sleep_nosync`). Xen
//! starts the accounting at `vcpu_create` (offline); here it starts the
//! first time the scheduler looks at the vCPU ([`Runstate::sync`]), in
//! the locked section that created the domain or at the next pass.
//!
//! The times only grow and their sum is the time since the accounting
//! started; a clock read earlier than `state_entry_time` (another pCPU's
//! pass) changes the state without moving time, as Xen's `delta > 0`.

#![forbid(unsafe_code)]

use abi::xen::vcpu::{VcpuRunstateInfo, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE};

use super::vcpu::VcpuRunState;

/// A registered runstate area: Xen's `runstate_guest(v)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunstateArea {
    /// Guest virtual address of the vCPU's `vcpu_runstate_info`.
    pub gva: u64,
    /// The 32-bit layout (44 bytes): it was registered by a 32-bit
    /// caller.
    pub compat: bool,
}

/// One vCPU's runstate, and where the guest asked for a copy of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runstate {
    info: VcpuRunstateInfo,
    /// The accounting started (`state_entry_time` is a real time).
    started: bool,
    area: Option<RunstateArea>,
}

impl Runstate {
    /// Not started: offline, no time yet.
    pub const fn new() -> Self {
        Self {
            info: VcpuRunstateInfo {
                state: RUNSTATE_OFFLINE,
                pad0: 0,
                state_entry_time: 0,
                time: [0; 4],
            },
            started: false,
            area: None,
        }
    }

    /// The current `RUNSTATE_*`.
    pub fn state(&self) -> i32 {
        self.info.state
    }

    /// Xen's `v->runstate`: the times up to `state_entry_time`.
    pub fn info(&self) -> &VcpuRunstateInfo {
        &self.info
    }

    /// Xen's `vcpu_runstate_get`: the times up to `now_ns`.
    pub fn get(&self, now_ns: u64) -> VcpuRunstateInfo {
        let mut info = self.info;
        if self.started {
            let delta = now_ns.saturating_sub(info.state_entry_time);
            let state = info.state;
            if let Some(t) = slot(&mut info, state) {
                *t = t.saturating_add(delta);
            }
        }
        info
    }

    /// Xen's `vcpu_runstate_change`: enters `state` (a `RUNSTATE_*`) at
    /// `now_ns`, the time since the last change going to the old state.
    /// Starts the accounting at `now_ns` if it had not started.
    pub fn change(&mut self, state: i32, now_ns: u64) {
        if !self.started {
            self.started = true;
            self.info.state_entry_time = now_ns;
        }
        let delta = now_ns.saturating_sub(self.info.state_entry_time);
        if delta > 0 {
            let old = self.info.state;
            if let Some(t) = slot(&mut self.info, old) {
                *t = t.saturating_add(delta);
            }
            self.info.state_entry_time = now_ns;
        }
        self.info.state = state;
    }

    /// [`Self::change`] to `state` unless it is the state already (the
    /// scheduler's walk); starts the accounting at `now_ns` either way.
    pub fn sync(&mut self, state: i32, now_ns: u64) {
        if !self.started || self.info.state != state {
            self.change(state, now_ns);
        }
    }

    /// The registered area, if any.
    pub fn area(&self) -> Option<RunstateArea> {
        self.area
    }

    /// `VCPUOP_register_runstate_memory_area`: `gva` 0 unregisters (Xen's
    /// null handle).
    pub fn set_area(&mut self, gva: u64, compat: bool) {
        self.area = (gva != 0).then_some(RunstateArea { gva, compat });
    }
}

/// The `RUNSTATE_*` of a vCPU no pCPU runs, by Xen's rule as it takes
/// one off (`sched_switch_units`): blocked if it waits for an event,
/// runnable if it may run (up, and its domain `running`), else offline
/// (down, or its domain paused, shut down or dying).
pub fn off_cpu(run_state: VcpuRunState, domain_running: bool) -> i32 {
    match run_state {
        VcpuRunState::Blocked => RUNSTATE_BLOCKED,
        VcpuRunState::Runnable if domain_running => RUNSTATE_RUNNABLE,
        VcpuRunState::Runnable | VcpuRunState::Down => RUNSTATE_OFFLINE,
    }
}

/// `info.time[state]`; `None` for a state outside `RUNSTATE_*`.
fn slot(info: &mut VcpuRunstateInfo, state: i32) -> Option<&mut u64> {
    info.time.get_mut(usize::try_from(state).ok()?)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use abi::xen::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn each_state_gets_the_time_until_the_next_change() {
        let mut r = Runstate::new();
        r.sync(RUNSTATE_OFFLINE, 100);
        r.change(RUNSTATE_RUNNABLE, 150);
        r.change(RUNSTATE_RUNNING, 160);
        r.change(RUNSTATE_BLOCKED, 200);
        assert_eq!(r.info().time, [40, 10, 0, 50]);
        assert_eq!(r.info().state_entry_time, 200);
        assert_eq!(r.get(230).time, [40, 10, 30, 50], "get adds the open state");
        assert_eq!(r.info().time[RUNSTATE_BLOCKED as usize], 0, "get copies");
    }

    #[test]
    fn an_earlier_clock_changes_the_state_but_not_the_times() {
        let mut r = Runstate::new();
        r.sync(RUNSTATE_RUNNING, 1000);
        r.change(RUNSTATE_RUNNABLE, 900);
        assert_eq!(r.state(), RUNSTATE_RUNNABLE);
        assert_eq!(r.info().state_entry_time, 1000);
        assert_eq!(r.get(800).time, [0; 4]);
    }

    #[test]
    fn nothing_is_counted_before_the_accounting_starts() {
        let r = Runstate::new();
        assert_eq!(r.get(5000).time, [0; 4]);
        let mut r = r;
        r.sync(RUNSTATE_RUNNABLE, 5000);
        assert_eq!(r.info().time, [0; 4]);
        assert_eq!(r.info().state_entry_time, 5000);
    }

    #[test]
    fn a_null_area_is_no_area() {
        let mut r = Runstate::new();
        r.set_area(0x1000, true);
        assert_eq!(
            r.area(),
            Some(RunstateArea {
                gva: 0x1000,
                compat: true
            })
        );
        r.set_area(0, false);
        assert_eq!(r.area(), None);
    }

    proptest! {
        /// Model: the time since the accounting started, split by the
        /// state in force. Whatever the changes (including clock reads
        /// that go back), the kept times sum to the elapsed time and
        /// each equals the model's.
        #[test]
        fn times_sum_to_the_elapsed_time(
            start in 0u64..1 << 40,
            steps in proptest::collection::vec((0i32..4, -1000i64..1_000_000), 0..64),
            probe in 0u64..1_000_000,
        ) {
            let mut r = Runstate::new();
            r.sync(RUNSTATE_OFFLINE, start);
            let mut model = [0u64; 4];
            let (mut state, mut entry, mut clock) = (RUNSTATE_OFFLINE, start, start);
            for (next, dt) in steps {
                clock = clock.saturating_add_signed(dt);
                r.change(next, clock);
                if clock > entry {
                    model[usize::try_from(state).unwrap()] += clock - entry;
                    entry = clock;
                }
                state = next;
                prop_assert_eq!(r.state(), state);
                prop_assert_eq!(r.info().time, model);
                prop_assert_eq!(r.info().state_entry_time, entry);
            }
            let now = entry + probe;
            let got = r.get(now);
            prop_assert_eq!(got.time.iter().sum::<u64>(), now - start);
            prop_assert_eq!(got.state_entry_time, entry);
        }
    }
}
