//! How much the one machine lock costs: per pCPU, how often it was taken,
//! how often it had to wait for another pCPU, and for how long (TSC
//! ticks; instructions under `-icount`). Printed at power-off, so every
//! scenario's log says how contended the lock was under its load: the
//! figure that says when finer locks pay (docs/architecture.md, "Lock
//! order"). Xen's counterpart is its lock profiling (`xenlockprof`).
//!
//! An acquisition that finds the lock free costs one counter increment;
//! only one that waits reads the TSC twice.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::mutex::{TicketMutex, TicketMutexGuard};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use super::super::{smp, tsc};

/// One pCPU's counts.
struct PcpuCounts {
    taken: AtomicU64,
    waited: AtomicU64,
    wait_ticks: AtomicU64,
}

static COUNTS: [PcpuCounts; MAX_PCPUS] = [const {
    PcpuCounts {
        taken: AtomicU64::new(0),
        waited: AtomicU64::new(0),
        wait_ticks: AtomicU64::new(0),
    }
}; MAX_PCPUS];

/// Takes `lock` for this pCPU, counting the acquisition and any wait.
pub(super) fn lock_counted<T>(lock: &'static TicketMutex<T>) -> TicketMutexGuard<'static, T> {
    let counts = &COUNTS[this_cpu().index % MAX_PCPUS];
    counts.taken.fetch_add(1, Ordering::Relaxed);
    if let Some(guard) = lock.try_lock() {
        return guard;
    }
    let start = tsc::now();
    let guard = lock.lock();
    counts.waited.fetch_add(1, Ordering::Relaxed);
    counts
        .wait_ticks
        .fetch_add(tsc::now().wrapping_sub(start), Ordering::Relaxed);
    guard
}

/// Logs each online pCPU's counts (at power-off).
pub(super) fn log_all() {
    let hz = tsc::hz().max(1);
    for (pcpu, c) in COUNTS.iter().enumerate().take(smp::online() as usize) {
        let taken = c.taken.load(Ordering::Relaxed);
        let waited = c.waited.load(Ordering::Relaxed);
        let ticks = c.wait_ticks.load(Ordering::Relaxed);
        let per_mille = waited.saturating_mul(1000) / taken.max(1);
        let wait_us = u128::from(ticks) * 1_000_000 / u128::from(hz);
        let mean = ticks / waited.max(1);
        log::info!(
            "machine lock: pCPU {pcpu}: taken {taken}, waited {waited} ({}.{}%), \
             {wait_us} us waiting, {mean} TSC ticks per wait",
            per_mille / 10,
            per_mille % 10
        );
    }
}
