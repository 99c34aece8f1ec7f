//! The guest's side of Xen's 2-level event ABI
//! (`xen/include/public/xen.h`, `struct shared_info` / `struct vcpu_info`):
//! the pending and mask bitmaps in shared info, the per-vCPU
//! `evtchn_upcall_pending` and `evtchn_pending_sel`, the upcall's scan,
//! and the table of per-port handlers it calls.
//!
//! Portable: the bitmaps are atomics laid out as Xen's fields, so the same
//! code runs over the real shared-info page (see `arch::evtchn`) and over
//! a simulated one in the host tests.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use abi::xen::event_channel::{EvtchnPort, EVTCHN_2L_NR_CHANNELS};

/// Bits in one word of the bitmaps (`BITS_PER_EVTCHN_WORD`, x86_64).
pub const BITS_PER_WORD: u32 = u64::BITS;
/// Words of each 2-level bitmap: 4096 ports / 64.
pub const EVTCHN_WORDS: usize = (EVTCHN_2L_NR_CHANNELS / BITS_PER_WORD) as usize;
/// Most ports with a handler at once.
pub const MAX_PORT_HANDLERS: usize = 64;
/// Times the upcall rescans when new events arrived during a scan, before
/// it returns and leaves the rest to the next upcall (`upcall_pending` is
/// still set, so the hypervisor raises it again).
pub const MAX_SCAN_PASSES: usize = 8;

/// `evtchn_pending` and `evtchn_mask` of `struct shared_info`, 1024 bytes
/// at offset 2048: bit `p % 64` of word `p / 64` is port `p`.
#[repr(C)]
pub struct EventBitmaps {
    /// Set by the hypervisor when a port is signalled; cleared by the guest.
    pub pending: [AtomicU64; EVTCHN_WORDS],
    /// Set by the guest to stop upcalls for a port (it still becomes pending).
    pub mask: [AtomicU64; EVTCHN_WORDS],
}

/// The event fields at the start of `struct vcpu_info` (bytes 0..16).
#[repr(C)]
pub struct VcpuEvents {
    /// Set by the hypervisor when it sets a selector bit; cleared by the
    /// guest before it scans.
    pub upcall_pending: AtomicU8,
    /// Upcall mask (used by PV guests and by `SCHEDOP_block`).
    pub upcall_mask: AtomicU8,
    _pad: [u8; 6],
    /// Bit `w`: word `w` of `pending` may hold unmasked pending ports.
    pub pending_sel: AtomicU64,
}

/// A port outside the 2-level ABI's 4096.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPort(pub EvtchnPort);

/// Word index and bit of `port` in the bitmaps.
pub fn port_bit(port: EvtchnPort) -> Result<(usize, u64), BadPort> {
    if port >= EVTCHN_2L_NR_CHANNELS {
        return Err(BadPort(port));
    }
    Ok(((port / BITS_PER_WORD) as usize, 1 << (port % BITS_PER_WORD)))
}

impl EventBitmaps {
    /// Sets the mask bit of `port` (no upcall while set).
    pub fn mask(&self, port: EvtchnPort) -> Result<(), BadPort> {
        let (word, bit) = port_bit(port)?;
        self.mask[word].fetch_or(bit, Ordering::SeqCst);
        Ok(())
    }

    /// Whether `port` is masked.
    pub fn is_masked(&self, port: EvtchnPort) -> Result<bool, BadPort> {
        let (word, bit) = port_bit(port)?;
        Ok(self.mask[word].load(Ordering::SeqCst) & bit != 0)
    }

    /// Whether `port` is pending.
    pub fn is_pending(&self, port: EvtchnPort) -> Result<bool, BadPort> {
        let (word, bit) = port_bit(port)?;
        Ok(self.pending[word].load(Ordering::SeqCst) & bit != 0)
    }

    /// Clears the pending bit of `port` atomically; whether it was set.
    pub fn test_and_clear_pending(&self, port: EvtchnPort) -> Result<bool, BadPort> {
        let (word, bit) = port_bit(port)?;
        Ok(self.pending[word].fetch_and(!bit, Ordering::SeqCst) & bit != 0)
    }
}

/// Xen's 2-level upcall scan (Linux `evtchn_2l_handle_events`, Mini-OS
/// `do_hypervisor_callback`): clear `upcall_pending` first, take the
/// selector with an atomic exchange, then for each selected word take the
/// pending & unmasked bits one port at a time, clearing each pending bit
/// atomically before `handle(port)` runs (so an event arriving during the
/// handler makes the port pending again and is not lost). Rescans while
/// `upcall_pending` was set again, at most [`MAX_SCAN_PASSES`] times.
/// Returns how many events were handled.
pub fn scan(
    bitmaps: &EventBitmaps,
    vcpu: &VcpuEvents,
    mut handle: impl FnMut(EvtchnPort),
) -> usize {
    let mut handled = 0;
    for _ in 0..MAX_SCAN_PASSES {
        if vcpu.upcall_pending.swap(0, Ordering::SeqCst) == 0 {
            break;
        }
        let mut selector = vcpu.pending_sel.swap(0, Ordering::SeqCst);
        while selector != 0 {
            let word = selector.trailing_zeros();
            selector &= selector - 1;
            handled += scan_word(bitmaps, word, &mut handle);
        }
    }
    handled
}

/// Handles every pending, unmasked port of `word` (re-reading the word
/// after each port: a handler may have made others pending or masked).
fn scan_word(bitmaps: &EventBitmaps, word: u32, handle: &mut impl FnMut(EvtchnPort)) -> usize {
    let mut handled = 0;
    let index = word as usize;
    loop {
        let active = bitmaps.pending[index].load(Ordering::SeqCst)
            & !bitmaps.mask[index].load(Ordering::SeqCst);
        if active == 0 {
            return handled;
        }
        let bit = active.trailing_zeros();
        let port = word * BITS_PER_WORD + bit;
        // Clear before handling; only a bit we cleared is ours to handle.
        if bitmaps.pending[index].fetch_and(!(1 << bit), Ordering::SeqCst) & (1 << bit) != 0 {
            handle(port);
            handled += 1;
        }
    }
}

/// A per-port handler, called from the upcall with interrupts disabled:
/// keep it short and touch only atomics.
pub type Handler = fn(EvtchnPort);

/// Marks a free slot of the handler table.
const NO_PORT: u32 = u32::MAX;

/// The table of per-port handlers, and a "fired" bitmap of ports whose
/// events the upcall handled and no waiter has taken yet.
pub struct Dispatcher {
    ports: [AtomicU32; MAX_PORT_HANDLERS],
    handlers: spin::Mutex<[Option<Handler>; MAX_PORT_HANDLERS]>,
    fired: [AtomicU64; EVTCHN_WORDS],
    /// Some port fired since the last [`Dispatcher::take_any`].
    any: AtomicBool,
}

/// The handler table is full ([`MAX_PORT_HANDLERS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            ports: [const { AtomicU32::new(NO_PORT) }; MAX_PORT_HANDLERS],
            handlers: spin::Mutex::new([None; MAX_PORT_HANDLERS]),
            fired: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            any: AtomicBool::new(false),
        }
    }

    /// Whether any port fired since the last call (and clears that); the
    /// ports' own fired marks stay for [`Dispatcher::take_fired`].
    pub fn take_any(&self) -> bool {
        self.any.swap(false, Ordering::SeqCst)
    }

    /// Calls `handler` for each event on `port` (replacing an earlier one);
    /// a port without a handler is still recorded as fired. The caller
    /// keeps upcalls off meanwhile (the upcall only `try_lock`s).
    pub fn set_handler(&self, port: EvtchnPort, handler: Option<Handler>) -> Result<(), TableFull> {
        port_bit(port).map_err(|_| TableFull)?;
        let mut handlers = self.handlers.lock();
        let slot = self
            .slot_of(port)
            .or_else(|| self.slot_of(NO_PORT))
            .ok_or(TableFull)?;
        handlers[slot] = handler;
        self.ports[slot].store(
            if handler.is_some() { port } else { NO_PORT },
            Ordering::SeqCst,
        );
        Ok(())
    }

    fn slot_of(&self, port: u32) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.load(Ordering::SeqCst) == port)
    }

    /// Records an event on `port` and calls its handler (from the upcall).
    pub fn dispatch(&self, port: EvtchnPort) {
        let Ok((word, bit)) = port_bit(port) else {
            return;
        };
        self.fired[word].fetch_or(bit, Ordering::SeqCst);
        self.any.store(true, Ordering::SeqCst);
        let handler = self.slot_of(port).and_then(|slot| {
            // Upcalls are off whenever the table is locked, so this only
            // fails if a handler itself changes the table: skip it then.
            self.handlers.try_lock().and_then(|h| h[slot])
        });
        if let Some(handler) = handler {
            handler(port);
        }
    }

    /// Takes (clears) the fired mark of the first of `ports` that has one.
    pub fn take_fired(&self, ports: &[EvtchnPort]) -> Option<EvtchnPort> {
        ports.iter().copied().find(|&port| match port_bit(port) {
            Ok((word, bit)) => self.fired[word].fetch_and(!bit, Ordering::SeqCst) & bit != 0,
            Err(_) => false,
        })
    }

    /// Forgets a fired mark of `port` (after closing it).
    pub fn clear_fired(&self, port: EvtchnPort) {
        let _ = self.take_fired(&[port]);
    }
}

#[cfg(test)]
mod tests;
