//! The machine lock and the domain locks over the values they guard:
//! `crate::ticket`'s protocol (ticket order, waiters that halt and are
//! kicked), with this pCPU's halt and kick IPI.
//!
//! The machine lock is a reader-writer lock. Its writer side is what the
//! whole machine lock was before: the scheduling pass, hypercalls and
//! every exit that wakes, blocks or signals another vCPU hold it alone.
//! Its reader side is shared: exits that concern their vCPU alone are
//! completed under it by several pCPUs at once, each also holding its
//! vCPU's domain lock ([`DomainLocks`]), so two domains' exits no longer
//! wait for each other (docs/architecture.md, "Locks").
//!
//! Counts per pCPU (acquisitions on each side, those that had to wait,
//! TSC ticks waited; instructions under `-icount`), the most readers seen
//! at once and the domain-lock waits are printed at power-off
//! ([`log_counts`]): how contended the locks were under each scenario's
//! load.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, Ordering};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use super::super::{apic, smp, tsc};
use crate::domain::table::DomainTable;
use crate::domain::Domain;
use crate::domain_cell::DomainCell;
use crate::ticket::{RwTicketLock, TicketLock, Waiting};
use abi::xen::domid::DomId;

/// Domain locks: a domain's is stripe `domid % DOMAIN_LOCK_STRIPES`. Two
/// domains that share one only wait for each other as they did under
/// the one machine lock; a fixed array needs no allocation and no life
/// cycle (a domain created or destroyed takes the writer side anyway).
const DOMAIN_LOCK_STRIPES: usize = 64;

// Every pCPU can be named in a lock's halted mask.
const _: () = assert!(MAX_PCPUS <= crate::ticket::MAX_WAITERS);

/// This pCPU, waiting: HLT, and the wake IPI to end another's.
struct Pcpu;

impl Waiting for Pcpu {
    fn me(&self) -> usize {
        this_cpu().index % MAX_PCPUS
    }

    fn now(&self) -> u64 {
        tsc::now()
    }

    /// A kick that came before the HLT stays pending through STI's
    /// shadow and ends it at once.
    fn halt(&self) {
        apic::cpu_halt();
    }

    /// The wake IPI, not the kick: the woken pCPU's run loop has nothing
    /// to look at beyond the lock.
    fn kick(&self, cpu: usize) {
        smp::wake(cpu);
    }
}

/// A reader-writer lock over `T` (module docs). Writers get `&mut T`;
/// readers only `T`'s [`ReaderSide`] view.
pub(super) struct MachineLock<T> {
    lock: RwTicketLock,
    value: UnsafeCell<T>,
}

/// What a reader section may reach of `T`: a view narrower than `&T`
/// (for the machine: no `&DomainTable`, whose `get` would read a domain
/// another reader holds, but its domain locks).
pub(super) trait ReaderSide {
    type View<'a>
    where
        Self: 'a;
    fn reader_view(&self) -> Self::View<'_>;
}

// SAFETY: the value is reached through a writer guard (the lock makes it
// the one holder) or a reader's view (which `ReaderSide` keeps to what
// readers may share); `T: Send` lets the value move between pCPUs with
// it.
unsafe impl<T: Send> Sync for MachineLock<T> {}

/// The lock, held as writer.
pub(super) struct MachineGuard<'a, T> {
    lock: &'a MachineLock<T>,
}

/// The lock, held as a reader.
pub(super) struct ReaderGuard<'a, T> {
    lock: &'a MachineLock<T>,
}

impl<T> MachineLock<T> {
    pub(super) const fn new(value: T) -> Self {
        MachineLock {
            lock: RwTicketLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock as writer for this pCPU, in ticket order, once the
    /// readers ahead of it are gone.
    pub(super) fn lock(&self) -> MachineGuard<'_, T> {
        let waited = self.lock.write_acquire(&Pcpu);
        COUNTS[Pcpu.me()].writer.count(waited);
        MachineGuard { lock: self }
    }

    /// Takes the lock as a reader for this pCPU, in ticket order.
    pub(super) fn read(&self) -> ReaderGuard<'_, T> {
        let waited = self.lock.read_acquire(&Pcpu);
        COUNTS[Pcpu.me()].reader.count(waited);
        ReaderGuard { lock: self }
    }

    /// The most reader sections that were in at once.
    pub(super) fn most_readers(&self) -> u32 {
        self.lock.most_readers()
    }
}

impl<T> Deref for MachineGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the writer side: no other writer and no
        // reader is in, so no other reference to the value is live.
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
    fn drop(&mut self) {
        self.lock.lock.write_release(&Pcpu);
    }
}

impl<T: ReaderSide> ReaderGuard<'_, T> {
    /// What this reader may reach.
    pub(super) fn view(&self) -> T::View<'_> {
        // SAFETY: no writer is in while a reader is (the writer side waits
        // for the readers to leave; a reader's ticket is served only after
        // the writer ahead of it released), so nobody has `&mut T`
        // meanwhile; other readers hold `&T` too, and reach through it
        // only the `ReaderSide` view, whose types say what they share.
        unsafe { (*self.lock.value.get()).reader_view() }
    }
}

impl<T> Drop for ReaderGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.lock.read_release(&Pcpu);
    }
}

/// The domain locks a reader section takes (one at a time), over the
/// shared domain table.
pub(super) struct DomainLocks<'a>(pub(super) &'a DomainTable);

/// A domain, held by one reader section.
pub(super) struct DomainGuard<'a> {
    domain: &'a mut Domain,
    stripe: &'a TicketLock,
}

static DOMAIN_STRIPES: [TicketLock; DOMAIN_LOCK_STRIPES] =
    [const { TicketLock::new() }; DOMAIN_LOCK_STRIPES];

impl<'a> DomainLocks<'a> {
    /// Locks the domain `domid`, if there is one. The caller holds the
    /// machine lock's reader side (that is where this view comes from)
    /// and no other domain lock.
    pub(super) fn lock(&self, domid: DomId) -> Option<DomainGuard<'a>> {
        let cell: &'a DomainCell = self.0.cell(domid)?;
        let stripe = &DOMAIN_STRIPES[usize::from(domid) % DOMAIN_LOCK_STRIPES];
        if stripe.acquire(&Pcpu).is_some() {
            DOMAIN_WAITS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller holds the reader side, which excludes every
        // writer, and readers reach the table only through this view,
        // which offers no `get`; the stripe excludes every other reader of
        // this domain until the guard drops, and the borrow cannot
        // outlive the guard (it is reached only through it).
        let domain = unsafe { cell.get_locked() };
        Some(DomainGuard { domain, stripe })
    }
}

impl Deref for DomainGuard<'_> {
    type Target = Domain;
    fn deref(&self) -> &Domain {
        self.domain
    }
}

impl DerefMut for DomainGuard<'_> {
    fn deref_mut(&mut self) -> &mut Domain {
        self.domain
    }
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        self.stripe.release(&Pcpu);
    }
}

/// One side's counts on one pCPU.
struct SideCounts {
    taken: AtomicU64,
    waited: AtomicU64,
    wait_ticks: AtomicU64,
}

impl SideCounts {
    const fn new() -> Self {
        SideCounts {
            taken: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_ticks: AtomicU64::new(0),
        }
    }

    /// One acquisition, and the TSC ticks it waited if it had to.
    fn count(&self, waited: Option<u64>) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        if let Some(ticks) = waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
            self.wait_ticks.fetch_add(ticks, Ordering::Relaxed);
        }
    }
}

/// One pCPU's counts.
struct PcpuCounts {
    writer: SideCounts,
    reader: SideCounts,
}

static COUNTS: [PcpuCounts; MAX_PCPUS] = [const {
    PcpuCounts {
        writer: SideCounts::new(),
        reader: SideCounts::new(),
    }
}; MAX_PCPUS];
/// Domain-lock acquisitions that had to wait.
static DOMAIN_WAITS: AtomicU64 = AtomicU64::new(0);

/// Logs each online pCPU's counts, then the readers' (at power-off);
/// `most_readers` is the machine lock's.
pub(super) fn log_counts(most_readers: u32) {
    let hz = u128::from(tsc::hz().max(1));
    let mut reads = 0;
    for (pcpu, c) in COUNTS.iter().enumerate().take(smp::online() as usize) {
        let (w, r) = (&c.writer, &c.reader);
        let taken = w.taken.load(Ordering::Relaxed);
        let waited = w.waited.load(Ordering::Relaxed);
        let ticks = w.wait_ticks.load(Ordering::Relaxed);
        let per_mille = waited.saturating_mul(1000) / taken.max(1);
        let wait_us = u128::from(ticks) * 1_000_000 / hz;
        let mean = ticks / waited.max(1);
        let read = r.taken.load(Ordering::Relaxed);
        let read_waited = r.waited.load(Ordering::Relaxed);
        let read_us = u128::from(r.wait_ticks.load(Ordering::Relaxed)) * 1_000_000 / hz;
        reads += read;
        log::info!(
            "machine lock: pCPU {pcpu}: taken {taken}, waited {waited} ({}.{}%), \
             {wait_us} us waiting, {mean} TSC ticks per wait; as reader {read}, \
             waited {read_waited}, {read_us} us waiting",
            per_mille / 10,
            per_mille % 10
        );
    }
    log::info!(
        "machine lock: {reads} exits completed under the reader side, at most \
         {most_readers} reader sections at once; domain locks waited {} times",
        DOMAIN_WAITS.load(Ordering::Relaxed)
    );
}
