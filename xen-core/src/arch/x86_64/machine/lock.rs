//! The machine lock: a ticket lock (pCPUs get it in the order they
//! asked) whose waiters stop spinning after [`SPIN_LIMIT`] turns and halt
//! until the holder's release kicks them.
//!
//! Why not `spin`'s `TicketMutex`, which this replaced: xen-core's pCPUs
//! are themselves virtual when it runs nested (QEMU's threads, a KVM
//! host's vCPUs), and a host that deschedules the pCPU holding the lock,
//! or the one next in line, leaves every other pCPU spinning for a host
//! time slice (lock-holder preemption). With four QEMU threads on two host
//! cores, `smp-events` waited on 76-94% of its acquisitions, about 9 ms
//! each, and ran 418 s instead of 45-55 s. A halted pCPU gives its host
//! CPU back to the one that holds or gets the lock next. This is what
//! Linux's paravirtual spinlocks do (`pv_wait`/`pv_kick`), with a
//! halt and a kick IPI standing in for the hypercalls.
//!
//! No wake-up is lost: a waiter publishes itself in `halted` and then
//! looks at `serving` again; the releaser moves `serving` and then reads
//! `halted` (both locked operations, full barriers), so either the
//! waiter sees its turn or the releaser sees the waiter and kicks it.
//! A kick that arrives between the waiter's look and its HLT stays
//! pending through the STI shadow and ends the HLT at once.
//!
//! Counts per pCPU (acquisitions, those that had to wait, TSC ticks
//! waited; instructions under `-icount`) are printed at power-off
//! ([`log_counts`]): how contended the lock was under each scenario's
//! load, the figure that says when finer locks pay.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use super::super::{apic, smp, tsc};

/// Turns a waiter spins (PAUSE each) before it halts: a few
/// microseconds on hardware, longer than most exits hold the lock.
const SPIN_LIMIT: u32 = 2000;

/// A ticket lock over `T` whose waiters halt (module docs).
pub(super) struct MachineLock<T> {
    /// The next ticket handed out.
    next: AtomicU32,
    /// The ticket that holds the lock.
    serving: AtomicU32,
    /// Bit N: pCPU N is halted waiting for its turn.
    halted: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and the ticket
// protocol hands out one guard at a time (the holder's ticket is
// `serving`); `T: Send` lets the value move between pCPUs with it.
unsafe impl<T: Send> Sync for MachineLock<T> {}

/// The lock, held.
pub(super) struct MachineGuard<'a, T> {
    lock: &'a MachineLock<T>,
}

impl<T> MachineLock<T> {
    pub(super) const fn new(value: T) -> Self {
        MachineLock {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            halted: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock for this pCPU, in ticket order.
    pub(super) fn lock(&self) -> MachineGuard<'_, T> {
        let me = this_cpu().index % MAX_PCPUS;
        let counts = &COUNTS[me];
        counts.taken.fetch_add(1, Ordering::Relaxed);
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if self.serving.load(Ordering::Acquire) != ticket {
            let start = tsc::now();
            self.wait_for(ticket, me);
            counts.waited.fetch_add(1, Ordering::Relaxed);
            counts
                .wait_ticks
                .fetch_add(tsc::now().wrapping_sub(start), Ordering::Relaxed);
        }
        MachineGuard { lock: self }
    }

    /// Spins, then halts, until `ticket` is served.
    fn wait_for(&self, ticket: u32, me: usize) {
        for _ in 0..SPIN_LIMIT {
            if self.serving.load(Ordering::Acquire) == ticket {
                return;
            }
            core::hint::spin_loop();
        }
        let bit = 1u64 << me;
        loop {
            self.halted.fetch_or(bit, Ordering::SeqCst);
            if self.serving.load(Ordering::SeqCst) == ticket {
                self.halted.fetch_and(!bit, Ordering::Relaxed);
                return;
            }
            apic::cpu_halt();
            self.halted.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

impl<T> Deref for MachineGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the one holder (the ticket protocol), so
        // no `&mut` to the value exists elsewhere while it lives.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for MachineGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique
        // among the guard's own.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for MachineGuard<'_, T> {
    /// Serves the next ticket and kicks the halted waiters (each looks
    /// whether its turn came; the others halt again).
    fn drop(&mut self) {
        self.lock.serving.fetch_add(1, Ordering::SeqCst);
        let halted = self.lock.halted.load(Ordering::SeqCst);
        for cpu in (0..MAX_PCPUS).filter(|&c| halted & (1 << c) != 0) {
            smp::kick(cpu);
        }
    }
}

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

/// Logs each online pCPU's counts (at power-off).
pub(super) fn log_counts() {
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
