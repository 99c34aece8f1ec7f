//! `bench-trace` only: where dom0's time goes while it serves block
//! rings, in TSC ticks (instructions under `-icount shift=0`). Each pass
//! of the agent's loop that served blkif requests counts: the time dom0
//! slept before it (the frontend's share, the world switches, the event's
//! delivery), the loop's other work in that pass, and the blkback stages
//! (taking requests off the ring, the disk, grant copies or memcpy of the
//! data, answering and notifying). Printed and reset when a device is
//! released: `bench: blk d1 xvda: ...`.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_pv_shim::arch::cpu::rdtsc;
use guest_pv_shim::println;

/// A stage of a pass.
#[derive(Clone, Copy)]
pub enum Stage {
    /// Requests taken off the ring and checked.
    Ring = 0,
    /// Disk I/O.
    Disk,
    /// Data moved between the frontend's pages and dom0's buffer.
    Data,
    /// Responses queued, pushed, the frontend notified.
    Answer,
    /// Grant maps and unmaps (persistent grants).
    Map,
}

const STAGES: usize = 5;
const NAMES: [&str; STAGES] = ["ring", "disk", "data", "answer", "map"];

static STAGE: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static PASSES: AtomicU64 = AtomicU64::new(0);
static HYPERCALLS: AtomicU64 = AtomicU64::new(0);
static ASLEEP: AtomicU64 = AtomicU64::new(0);
static PASS_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Requests served in the current pass (0: the pass does not count).
static IN_PASS: AtomicU64 = AtomicU64::new(0);

/// A running stopwatch.
pub struct Watch(u64);

impl Watch {
    /// Starts.
    pub fn start() -> Self {
        Watch(rdtsc())
    }

    /// Adds the time since the start (or the last lap) to `stage`.
    pub fn lap(&mut self, stage: Stage) {
        let now = rdtsc();
        STAGE[stage as usize].fetch_add(now - self.0, Ordering::Relaxed);
        self.0 = now;
    }
}

/// `n` requests were served in this pass.
pub fn served(n: usize) {
    IN_PASS.fetch_add(n as u64, Ordering::Relaxed);
    REQUESTS.fetch_add(n as u64, Ordering::Relaxed);
}

/// One more hypercall on the data path.
pub fn hypercall() {
    HYPERCALLS.fetch_add(1, Ordering::Relaxed);
}

/// The agent's loop: a pass that began at `woke` (after sleeping since
/// `slept`) ends now; it counts if it served requests.
pub fn pass_done(slept: u64, woke: u64) {
    if IN_PASS.swap(0, Ordering::Relaxed) == 0 {
        return;
    }
    PASSES.fetch_add(1, Ordering::Relaxed);
    ASLEEP.fetch_add(woke - slept, Ordering::Relaxed);
    PASS_TOTAL.fetch_add(rdtsc() - woke, Ordering::Relaxed);
}

/// Prints the totals for the device released and starts again.
pub fn report(domid: u16, vdev: &str) {
    let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
    let stages: [u64; STAGES] = core::array::from_fn(|i| take(&STAGE[i]));
    let pass = take(&PASS_TOTAL);
    // Map time is inside Data.
    let blk: u64 = stages[..Stage::Map as usize].iter().sum();
    println!(
        "bench: blk d{domid} {vdev}: {} requests, {} passes, {} data hypercalls; tsc asleep {}, pass {} (loop other {}{})",
        take(&REQUESTS),
        take(&PASSES),
        take(&HYPERCALLS),
        take(&ASLEEP),
        pass,
        pass.saturating_sub(blk),
        NAMES
            .iter()
            .zip(stages)
            .fold(alloc::string::String::new(), |s, (n, v)| alloc::format!("{s}, {n} {v}"))
    );
}
