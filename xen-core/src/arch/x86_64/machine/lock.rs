//! The machine lock and the domain locks: ticket locks (pCPUs get them
//! in the order they asked) whose waiters stop spinning after
//! [`SPIN_LIMIT`] turns and halt until a release kicks them.
//!
//! The machine lock is a reader-writer lock. Its writer side is what the
//! whole machine lock was before: the scheduling pass, hypercalls and
//! every exit that wakes, blocks or signals another vCPU hold it alone.
//! Its reader side is shared: exits that concern their vCPU alone are
//! completed under it by several pCPUs at once, each also holding its
//! vCPU's domain lock ([`DomainLocks`]), so two domains' exits no longer
//! wait for each other (docs/architecture.md, "Locks"). Readers and
//! writers take a ticket alike and are served in that order; a reader,
//! once served, counts itself in and serves the next ticket at once, so
//! readers in a row share the lock and a writer waits only for the
//! readers ahead of it.
//!
//! Why waiters halt (`spin`'s `TicketMutex` was here first): xen-core's
//! pCPUs are themselves virtual when it runs nested (QEMU's threads, a
//! KVM host's vCPUs), and a host that deschedules the pCPU holding the
//! lock, or the one next in line, leaves every other pCPU spinning for a
//! host time slice (lock-holder preemption). With four QEMU threads on
//! two host cores, `smp-events` waited on 76-94% of its acquisitions,
//! about 9 ms each, and ran 418 s instead of 45-55 s. A halted pCPU
//! gives its host CPU back to the one that holds or gets the lock next.
//! This is what Linux's paravirtual spinlocks do (`pv_wait`/`pv_kick`),
//! with a halt and a kick IPI standing in for the hypercalls.
//!
//! No wake-up is lost: a waiter publishes itself in `halted` and then
//! looks at what it waits for again (its ticket served, the readers
//! gone); the releaser changes that and then reads `halted` (all
//! sequentially consistent: locked operations and loads), so either the
//! waiter sees the change or the releaser sees the waiter and kicks it.
//! A kick that arrives between the waiter's look and its HLT stays
//! pending through the STI shadow and ends the HLT at once.
//!
//! Counts per pCPU (acquisitions on each side, those that had to wait,
//! TSC ticks waited; instructions under `-icount`) and the most readers
//! seen at once are printed at power-off ([`log_counts`]).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use super::super::{apic, smp, tsc};
use crate::domain::table::DomainTable;
use crate::domain::Domain;
use crate::domain_cell::DomainCell;
use abi::xen::domid::DomId;

/// Turns a waiter spins (PAUSE each) before it halts: a few
/// microseconds on hardware, longer than most exits hold the lock.
const SPIN_LIMIT: u32 = 2000;

/// Domain locks: a domain's is stripe `domid % DOMAIN_LOCK_STRIPES`. Two
/// domains that share one only wait for each other as they did under
/// the one machine lock; a fixed array needs no allocation and no life
/// cycle (a domain created or destroyed takes the writer side anyway).
const DOMAIN_LOCK_STRIPES: usize = 64;

/// A ticket lock's words and the pCPUs halted waiting on it.
struct Ticket {
    /// The next ticket handed out.
    next: AtomicU32,
    /// The ticket served now.
    serving: AtomicU32,
    /// Bit N: pCPU N is halted waiting on this lock.
    halted: AtomicU64,
}

impl Ticket {
    const fn new() -> Self {
        Ticket {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            halted: AtomicU64::new(0),
        }
    }

    /// Takes a ticket and waits until it is served; whether it waited.
    fn acquire(&self, me: usize) -> bool {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if self.serving.load(Ordering::Acquire) == ticket {
            return false;
        }
        self.wait_until(me, || self.serving.load(Ordering::SeqCst) == ticket);
        true
    }

    /// Serves the next ticket and kicks the halted waiters (each looks
    /// whether its turn came; the others halt again).
    fn release(&self) {
        self.serving.fetch_add(1, Ordering::SeqCst);
        self.kick_halted();
    }

    fn kick_halted(&self) {
        let halted = self.halted.load(Ordering::SeqCst);
        for cpu in (0..MAX_PCPUS).filter(|&c| halted & (1 << c) != 0) {
            smp::kick(cpu);
        }
    }

    /// Spins, then halts, until `ready` (module docs: whoever makes it
    /// true reads `halted` afterwards).
    fn wait_until(&self, me: usize, ready: impl Fn() -> bool) {
        for _ in 0..SPIN_LIMIT {
            if ready() {
                return;
            }
            core::hint::spin_loop();
        }
        let bit = 1u64 << me;
        loop {
            self.halted.fetch_or(bit, Ordering::SeqCst);
            if ready() {
                self.halted.fetch_and(!bit, Ordering::Relaxed);
                return;
            }
            apic::cpu_halt();
            self.halted.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// This pCPU's index, as the counts and the halted masks number it.
fn me() -> usize {
    this_cpu().index % MAX_PCPUS
}

/// A reader-writer ticket lock over `T` whose waiters halt (module
/// docs). Writers get `&mut T`; readers only `T`'s [`ReaderSide`] view.
pub(super) struct MachineLock<T> {
    ticket: Ticket,
    /// Readers in their section now.
    readers: AtomicU32,
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

// SAFETY: the value is reached through a writer guard (the ticket
// protocol and the reader count make it the one holder) or a reader's
// view (which `ReaderSide` keeps to what readers may share); `T: Send`
// lets the value move between pCPUs with it.
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
            ticket: Ticket::new(),
            readers: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock as writer for this pCPU, in ticket order, once the
    /// readers ahead of it are gone.
    pub(super) fn lock(&self) -> MachineGuard<'_, T> {
        let me = me();
        let start = tsc::now();
        let mut waited = self.ticket.acquire(me);
        if self.readers.load(Ordering::SeqCst) != 0 {
            self.ticket
                .wait_until(me, || self.readers.load(Ordering::SeqCst) == 0);
            waited = true;
        }
        COUNTS[me].writer.count(waited, start);
        MachineGuard { lock: self }
    }

    /// Takes the lock as a reader for this pCPU, in ticket order.
    pub(super) fn read(&self) -> ReaderGuard<'_, T> {
        let me = me();
        let start = tsc::now();
        let waited = self.ticket.acquire(me);
        let now = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_READERS.fetch_max(now, Ordering::Relaxed);
        // Counted in: the next ticket may be served (another reader
        // joins; a writer waits for the count to drop to zero).
        self.ticket.release();
        COUNTS[me].reader.count(waited, start);
        ReaderGuard { lock: self }
    }
}

impl<T> Deref for MachineGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the one holder (its ticket is served and
        // no reader is in), so no `&mut` to the value exists elsewhere
        // while it lives.
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
        self.lock.ticket.release();
    }
}

impl<T: ReaderSide> ReaderGuard<'_, T> {
    /// What this reader may reach.
    pub(super) fn view(&self) -> T::View<'_> {
        // SAFETY: no writer holds the lock while a reader is counted in
        // (a writer waits for the count to be zero after its ticket is
        // served, and a reader's ticket is served only after the writer
        // ahead of it released), so nobody has `&mut T` meanwhile; other
        // readers hold `&T` too, and reach through it only the
        // `ReaderSide` view, whose types say what they may share.
        unsafe { (*self.lock.value.get()).reader_view() }
    }
}

impl<T> Drop for ReaderGuard<'_, T> {
    /// The last reader out kicks the halted waiters (a writer waiting for
    /// the count to drop to zero among them).
    fn drop(&mut self) {
        if self.lock.readers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.lock.ticket.kick_halted();
        }
    }
}

/// The domain locks a reader section takes (one at a time), over the
/// shared domain table.
pub(super) struct DomainLocks<'a>(pub(super) &'a DomainTable);

/// A domain, held by one reader section.
pub(super) struct DomainGuard<'a> {
    domain: &'a mut Domain,
    stripe: &'a Ticket,
}

static DOMAIN_STRIPES: [Ticket; DOMAIN_LOCK_STRIPES] =
    [const { Ticket::new() }; DOMAIN_LOCK_STRIPES];

impl<'a> DomainLocks<'a> {
    /// Locks the domain `domid`, if there is one. The caller holds the
    /// machine lock's reader side (that is where this view comes from)
    /// and no other domain lock.
    pub(super) fn lock(&self, domid: DomId) -> Option<DomainGuard<'a>> {
        let cell: &'a DomainCell = self.0.cell(domid)?;
        let stripe = &DOMAIN_STRIPES[usize::from(domid) % DOMAIN_LOCK_STRIPES];
        if stripe.acquire(me()) {
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
        self.stripe.release();
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

    /// One acquisition begun at TSC `start`.
    fn count(&self, waited: bool, start: u64) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        if waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
            self.wait_ticks
                .fetch_add(tsc::now().wrapping_sub(start), Ordering::Relaxed);
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
/// The most reader sections seen in at once.
static MOST_READERS: AtomicU32 = AtomicU32::new(0);
/// Domain-lock acquisitions that had to wait.
static DOMAIN_WAITS: AtomicU64 = AtomicU64::new(0);

/// Logs each online pCPU's counts, then the readers' (at power-off).
pub(super) fn log_counts() {
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
        "machine lock: {reads} exits completed under the reader side, at most {} \
         reader sections at once; domain locks waited {} times",
        MOST_READERS.load(Ordering::Relaxed),
        DOMAIN_WAITS.load(Ordering::Relaxed)
    );
}
