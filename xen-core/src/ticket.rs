//! The protocol of the machine lock and the domain locks
//! (`arch::x86_64::machine::lock` wraps it around the values they guard):
//! ticket locks, one of them with a reader side, whose waiters spin a
//! while and then halt until a release kicks them. Portable so the host
//! tests it with threads standing in for pCPUs.
//!
//! **Tickets.** Every acquirer takes a ticket and waits until it is
//! served, so pCPUs get a lock in the order they asked. A writer keeps
//! its ticket until it releases, then waits for the readers ahead of it
//! to leave. A reader, once served, counts itself in and serves the next
//! ticket at once: readers in a row share the lock, and a writer behind
//! them waits only for those.
//!
//! **Halting.** A waiter spins [`SPIN_LIMIT`] turns, then publishes the
//! ticket it waits on and itself in the lock's `halted` mask, looks at
//! what it waits for again (its ticket served, or, for a writer already
//! served, the readers gone) and halts. Whoever makes that true reads
//! `halted` afterwards and kicks the one halted waiter whose ticket is
//! now served: only the next in line wakes, not every waiter to see
//! that its turn has not come (each wake-up is an IPI and a halt again,
//! costly when the pCPUs are themselves emulated). Both sides use
//! sequentially consistent operations, so either the waiter sees the
//! change or the releaser sees the waiter: no wake-up is lost. A kick
//! that comes before the halt must end it at once ([`Waiting::halt`]).
//! Why halt at all: xen-core's pCPUs are themselves virtual when it runs
//! nested, and a host that deschedules the lock holder leaves spinners
//! burning the time it needs (docs/architecture.md, "Waiters halt").

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Turns a waiter spins (a PAUSE each) before it halts: a few
/// microseconds on hardware, longer than most sections hold a lock.
pub const SPIN_LIMIT: u32 = 2000;

/// CPUs a lock's `halted` mask can name.
pub const MAX_WAITERS: usize = 64;

/// How a CPU waits: who it is, how it halts and how it wakes another.
pub trait Waiting {
    /// Turns it spins before it halts.
    const SPINS: u32 = SPIN_LIMIT;
    /// This CPU's number, below [`MAX_WAITERS`].
    fn me(&self) -> usize;
    /// A clock for the time spent waiting (read only when a wait begins
    /// and ends), in the caller's ticks.
    fn now(&self) -> u64;
    /// Halts until a kick; returns at once if a kick came since the last
    /// halt returned. May return early: callers look again.
    fn halt(&self);
    /// Ends `cpu`'s halt, or its next one.
    fn kick(&self, cpu: usize);
}

/// A ticket lock's words and the CPUs halted waiting on it.
#[derive(Debug)]
pub struct TicketLock {
    /// The next ticket handed out.
    next: AtomicU32,
    /// The ticket served now.
    serving: AtomicU32,
    /// Bit N: CPU N is halted waiting on this lock.
    halted: AtomicU64,
    /// The ticket CPU N waits on, while its `halted` bit is set.
    awaits: [AtomicU32; MAX_WAITERS],
}

impl Default for TicketLock {
    fn default() -> Self {
        Self::new()
    }
}

impl TicketLock {
    /// A free lock (const, so it can be a `static`).
    pub const fn new() -> Self {
        TicketLock {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            halted: AtomicU64::new(0),
            awaits: [const { AtomicU32::new(0) }; MAX_WAITERS],
        }
    }

    /// Takes a ticket and waits until it is served; the ticks waited
    /// ([`Waiting::now`]), `None` if it was served at once.
    pub fn acquire(&self, w: &impl Waiting) -> Option<u64> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if self.serving.load(Ordering::Acquire) == ticket {
            return None;
        }
        let start = w.now();
        self.wait_until(w, ticket, || self.serving.load(Ordering::SeqCst) == ticket);
        Some(w.now().wrapping_sub(start))
    }

    /// Serves the next ticket and kicks its holder if it is halted.
    pub fn release(&self, w: &impl Waiting) {
        self.serving.fetch_add(1, Ordering::SeqCst);
        self.kick_served(w);
    }

    /// Kicks the halted waiter whose ticket is served now, if any (a
    /// waiter on another ticket would only halt again); nothing to walk
    /// when nobody is halted.
    fn kick_served(&self, w: &impl Waiting) {
        let mut halted = self.halted.load(Ordering::SeqCst);
        if halted == 0 {
            return;
        }
        let serving = self.serving.load(Ordering::SeqCst);
        while halted != 0 {
            let cpu = halted.trailing_zeros() as usize;
            halted &= halted - 1;
            if self.awaits[cpu].load(Ordering::SeqCst) == serving {
                w.kick(cpu);
            }
        }
    }

    /// Spins, then halts, until `ready`, which comes true once `ticket`
    /// is served (module docs: whoever makes it true then reads `halted`
    /// and the ticket each halted waiter awaits).
    fn wait_until<W: Waiting>(&self, w: &W, ticket: u32, ready: impl Fn() -> bool) {
        for _ in 0..W::SPINS {
            if ready() {
                return;
            }
            core::hint::spin_loop();
        }
        let me = w.me() % MAX_WAITERS;
        let bit = 1u64 << me;
        self.awaits[me].store(ticket, Ordering::SeqCst);
        loop {
            self.halted.fetch_or(bit, Ordering::SeqCst);
            if ready() {
                self.halted.fetch_and(!bit, Ordering::Relaxed);
                return;
            }
            w.halt();
            self.halted.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// A ticket lock with a reader side (module docs).
#[derive(Debug, Default)]
pub struct RwTicketLock {
    ticket: TicketLock,
    /// Readers in their section now.
    readers: AtomicU32,
    /// The most readers seen in at once.
    most_readers: AtomicU32,
}

impl RwTicketLock {
    /// A free lock (const, so it can be a `static`).
    pub const fn new() -> Self {
        RwTicketLock {
            ticket: TicketLock::new(),
            readers: AtomicU32::new(0),
            most_readers: AtomicU32::new(0),
        }
    }

    /// Takes the writer side, in ticket order, once the readers ahead
    /// are gone; the ticks waited, `None` if it had the lock at once.
    /// Release with [`Self::write_release`].
    pub fn write_acquire(&self, w: &impl Waiting) -> Option<u64> {
        let waited = self.ticket.acquire(w);
        if self.readers.load(Ordering::SeqCst) == 0 {
            return waited;
        }
        let start = w.now();
        // Its ticket is the one served: the last reader out kicks it.
        let mine = self.ticket.serving.load(Ordering::SeqCst);
        self.ticket
            .wait_until(w, mine, || self.readers.load(Ordering::SeqCst) == 0);
        Some(waited.unwrap_or(0) + w.now().wrapping_sub(start))
    }

    /// Gives up the writer side: the next ticket is served.
    pub fn write_release(&self, w: &impl Waiting) {
        self.ticket.release(w);
    }

    /// Takes the reader side, in ticket order; the ticks waited, `None`
    /// if it was served at once. Release with [`Self::read_release`].
    pub fn read_acquire(&self, w: &impl Waiting) -> Option<u64> {
        let waited = self.ticket.acquire(w);
        let now = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_readers.fetch_max(now, Ordering::Relaxed);
        // Counted in: the next ticket may be served (another reader
        // joins; a writer waits for the count to drop to zero).
        self.ticket.release(w);
        waited
    }

    /// The last reader out kicks the writer that holds the served ticket
    /// if it halted waiting for the count to drop to zero.
    pub fn read_release(&self, w: &impl Waiting) {
        if self.readers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.ticket.kick_served(w);
        }
    }

    /// The most readers that were in at once.
    pub fn most_readers(&self) -> u32 {
        self.most_readers.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread::{self, Thread};

    /// Threads as CPUs: a halt parks (a kick before it leaves the token
    /// that ends it at once, as a pending IPI ends HLT); `SPINS` turns
    /// before it (0: every wait halts, so every wake-up is a kick).
    struct Threads<const SPINS: u32> {
        me: usize,
        all: Arc<std::sync::OnceLock<Vec<Thread>>>,
    }

    impl<const N: u32> Waiting for Threads<N> {
        const SPINS: u32 = N;

        fn me(&self) -> usize {
            self.me
        }
        fn now(&self) -> u64 {
            0
        }
        fn halt(&self) {
            thread::park();
        }
        fn kick(&self, cpu: usize) {
            if let Some(t) = self.all.get().and_then(|all| all.get(cpu)) {
                t.unpark();
            }
        }
    }

    /// What the threads saw inside their sections.
    #[derive(Default)]
    struct Inside {
        writers: AtomicU32,
        readers: AtomicU32,
        broken: AtomicBool,
        sections: AtomicU64,
    }

    /// Runs `body` on `threads` threads, each as CPU `me`, once every
    /// thread can be kicked.
    fn on_cpus<const SPINS: u32>(threads: usize, body: impl Fn(&Threads<SPINS>) + Sync) {
        let all = Arc::new(std::sync::OnceLock::new());
        thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|me| {
                    let (body, all) = (&body, Arc::clone(&all));
                    s.spawn(move || {
                        let w = Threads::<SPINS> { me, all };
                        while w.all.get().is_none() {
                            thread::yield_now();
                        }
                        body(&w);
                    })
                })
                .collect();
            let _ = all.set(handles.iter().map(|h| h.thread().clone()).collect());
        });
    }

    /// `threads` threads each take the lock `rounds` times, thread N as a
    /// writer every `N + 1`-th round (thread 0 always), and check inside
    /// each section that a writer is alone and a reader meets no writer.
    /// Returning at all means no wake-up was lost (a lost one parks a
    /// thread for ever).
    fn run<const SPINS: u32>(threads: usize, rounds: u32) -> (Inside, u32) {
        let lock = RwTicketLock::new();
        let inside = Inside::default();
        on_cpus::<SPINS>(threads, |w| {
            for round in 0..rounds {
                let writer = (round as usize).is_multiple_of(w.me + 1);
                section(&lock, &inside, w, writer);
            }
        });
        let most = lock.most_readers();
        (inside, most)
    }

    fn section(lock: &RwTicketLock, inside: &Inside, w: &impl Waiting, writer: bool) {
        if writer {
            lock.write_acquire(w);
            let others = inside.writers.fetch_add(1, Ordering::SeqCst);
            if others != 0 || inside.readers.load(Ordering::SeqCst) != 0 {
                inside.broken.store(true, Ordering::SeqCst);
            }
            thread::yield_now();
            inside.writers.fetch_sub(1, Ordering::SeqCst);
            lock.write_release(w);
        } else {
            lock.read_acquire(w);
            inside.readers.fetch_add(1, Ordering::SeqCst);
            if inside.writers.load(Ordering::SeqCst) != 0 {
                inside.broken.store(true, Ordering::SeqCst);
            }
            thread::yield_now();
            inside.readers.fetch_sub(1, Ordering::SeqCst);
            lock.read_release(w);
        }
        inside.sections.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn writers_are_alone_readers_share_and_nobody_is_left_halted() {
        let (inside, most) = run::<SPIN_LIMIT>(4, 1000);
        assert!(!inside.broken.load(Ordering::SeqCst));
        assert_eq!(inside.sections.load(Ordering::SeqCst), 4 * 1000);
        assert!((1..=3).contains(&most), "readers at once: {most}");
    }

    /// Every wait halts at once: each wake-up must come from a kick to
    /// the one waiter whose ticket is served.
    #[test]
    fn waiters_that_always_halt_are_each_kicked_in_turn() {
        let (inside, most) = run::<0>(4, 1000);
        assert!(!inside.broken.load(Ordering::SeqCst));
        assert_eq!(inside.sections.load(Ordering::SeqCst), 4 * 1000);
        assert!((1..=3).contains(&most), "readers at once: {most}");
    }

    #[test]
    fn a_ticket_lock_serves_in_order_and_wakes_its_halted_waiters() {
        let lock = TicketLock::new();
        let count = AtomicU64::new(0);
        on_cpus::<0>(3, |w| {
            for _ in 0..1000 {
                lock.acquire(w);
                // Not atomic as a whole: a lost update shows two holders
                // at once.
                let c = count.load(Ordering::Relaxed);
                thread::yield_now();
                count.store(c + 1, Ordering::Relaxed);
                lock.release(w);
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 3 * 1000);
    }
}
