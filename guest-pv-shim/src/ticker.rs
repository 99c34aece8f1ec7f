//! The demo loop of the `ticker` example and dom0: numbered lines with the
//! vCPU's system time, alternating the ways a guest gives up the pCPU, so
//! that interleaving and advancing time show in the hypervisor's log.

use crate::{println, Clock, Xen, XenError};

/// Ticks when the command line has no `ticks=N`.
pub const DEFAULT_TICKS: u32 = 5;
/// How far ahead a tick's one-shot timer is set.
pub const TICK_TIMER_NS: u64 = 10_000_000;

/// How a tick waits before the next.
#[derive(Clone, Copy)]
enum Wait {
    Yield,
    SingleshotBlock,
    TimerOpBlock,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Yield => "yield",
            Wait::SingleshotBlock => "vcpu-singleshot-block",
            Wait::TimerOpBlock => "set-timer-op-block",
        }
    }

    fn wait(self, xen: &Xen, now: u64) -> Result<(), XenError> {
        match self {
            Wait::Yield => xen.sched_yield(),
            Wait::SingleshotBlock => {
                xen.vcpu_set_singleshot_timer(0, now + TICK_TIMER_NS, 0)?;
                xen.sched_block()
            }
            Wait::TimerOpBlock => {
                xen.set_timer_op(now + TICK_TIMER_NS)?;
                xen.sched_block()
            }
        }
    }
}

/// Prints `<prefix>tick <i> system_time=<ns> wait=<how>` `ticks` times,
/// then `<prefix>ticks done: <n> monotonic=<yes|no> in <ms> ms` (system
/// time from the first tick to the end). Returns whether
/// system time never went backwards; a failed read or hypercall is printed
/// and returned as an error.
pub fn run(xen: &Xen, clock: &Clock, prefix: &str, ticks: u32) -> Result<bool, TickError> {
    run_waits(
        xen,
        clock,
        prefix,
        ticks,
        &[Wait::Yield, Wait::SingleshotBlock, Wait::TimerOpBlock],
    )
}

/// As [`run`], waiting by turns with a yield and a `set_timer_op` block
/// (the examples that count ticks on two vCPUs).
pub fn run_yield_and_block(
    xen: &Xen,
    clock: &Clock,
    prefix: &str,
    ticks: u32,
) -> Result<bool, TickError> {
    run_waits(
        xen,
        clock,
        prefix,
        ticks,
        &[Wait::Yield, Wait::TimerOpBlock],
    )
}

fn run_waits(
    xen: &Xen,
    clock: &Clock,
    prefix: &str,
    ticks: u32,
    waits: &[Wait],
) -> Result<bool, TickError> {
    let wait_of = |i: u32| waits[i as usize % waits.len()];
    run_with(
        clock,
        prefix,
        ticks,
        |i| wait_of(i).name(),
        |i, now| wait_of(i).wait(xen, now),
    )
}

/// As [`run`], waiting with `wait(i, now)` after tick `i`, printed as
/// `wait=<name(i)>` (e.g. dom0 serves consoles until the next tick).
pub fn run_with(
    clock: &Clock,
    prefix: &str,
    ticks: u32,
    name: impl Fn(u32) -> &'static str,
    mut wait: impl FnMut(u32, u64) -> Result<(), XenError>,
) -> Result<bool, TickError> {
    let mut last = 0;
    let mut first = None;
    let mut monotonic = true;
    for i in 0..ticks {
        let now = clock.system_time_ns().ok_or(TickError::ClockUnstable)?;
        first.get_or_insert(now);
        monotonic &= now >= last;
        last = now;
        println!("{prefix}tick {i} system_time={now} wait={}", name(i));
        wait(i, now).map_err(|e| {
            println!("{prefix}tick {i}: {} failed: {e}", name(i));
            TickError::Hypercall(e)
        })?;
    }
    let end = clock.system_time_ns().ok_or(TickError::ClockUnstable)?;
    let elapsed_ms = end.saturating_sub(first.unwrap_or(end)) / 1_000_000;
    println!(
        "{prefix}ticks done: {ticks} monotonic={} in {elapsed_ms} ms",
        if monotonic { "yes" } else { "no" }
    );
    Ok(monotonic)
}

/// Why the loop stopped early.
#[derive(Clone, Copy, Debug)]
pub enum TickError {
    /// vcpu_time_info never read consistently.
    ClockUnstable,
    /// A yield, timer or block hypercall failed.
    Hypercall(XenError),
}
