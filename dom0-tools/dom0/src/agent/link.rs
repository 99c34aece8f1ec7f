//! The management channel's byte stream on COM2: bytes in through the
//! frame [`Decoder`], messages out as frames.
//!
//! COM2's receive interrupt (IER bit 0, which the UART's set-up enables;
//! its FIFO raises it at 14 bytes, or after 4 character times with fewer)
//! reaches dom0 as an event: its ISA IRQ's GSI (xen-core puts it on
//! dom0's command line as `com2-gsi=N`) is mapped to a pirq and bound to
//! a port ([`DeviceIrq`]). The agent sleeps until some event arrives and
//! then reads the receive FIFO empty, which lowers the interrupt line, so
//! the next byte raises it again (ISA IRQs are edge-triggered). Only a
//! pass that stopped at its read budget, and a partial frame waiting for
//! its idle flush, need a deadline ([`Link::deadline`]). Without the
//! interrupt (a hypervisor without pirqs) the agent looks every
//! [`POLL_NS`].

use alloc::vec::Vec;

use guest_pv_shim::arch::uart::Uart;
use guest_pv_shim::{println, DeviceIrq, Events};
use mgmt::{encode_message, Decoded, Decoder, ServerMessage};

/// How long dom0 sleeps between looks at COM2 when its interrupt could
/// not be bound, ns.
pub const POLL_NS: u64 = 5_000_000;
/// A partial frame is given up (truncated) after the line was idle this
/// long, ns (the `mgmt` docs ask for a few hundred ms).
pub const IDLE_FLUSH_NS: u64 = 200_000_000;
/// Most bytes taken from COM2 per pass, so consoles are served during a
/// long upload.
const READ_BUDGET: usize = 4096;

/// COM2 with the protocol's framing.
pub struct Link {
    uart: Uart,
    /// COM2's interrupt as an event, if bound.
    irq: Option<DeviceIrq>,
    decoder: Decoder,
    /// Read from COM2, not yet given to the decoder: `unread[taken..]`.
    unread: Vec<u8>,
    taken: usize,
    /// Bytes read in this pass ([`Link::begin_pass`]).
    pass_bytes: usize,
    /// System time of the last received byte.
    last_rx_ns: u64,
    /// Whether the decoder was flushed since that byte.
    flushed: bool,
}

impl Link {
    /// COM2, initialised, its interrupt (GSI `gsi`) bound to a port of
    /// ours if it can be.
    pub fn com2(events: &Events, gsi: Option<u32>) -> Link {
        let uart = Uart::com2();
        let irq = gsi.and_then(|gsi| match DeviceIrq::bind(events.xen(), gsi) {
            Ok(irq) => {
                println!(
                    "dom0: mgmt: COM2 interrupt: GSI {gsi} pirq {} port {}",
                    irq.pirq, irq.port
                );
                Some(irq)
            }
            Err(e) => {
                println!("dom0: mgmt: COM2 interrupt not bound ({e}): polling every {POLL_NS} ns");
                None
            }
        });
        Link {
            uart,
            irq,
            decoder: Decoder::new(),
            unread: Vec::with_capacity(READ_BUDGET),
            taken: 0,
            pass_bytes: 0,
            last_rx_ns: 0,
            flushed: true,
        }
    }

    /// Starts a pass of the agent's loop: COM2 may be read for
    /// [`READ_BUDGET`] more bytes.
    pub fn begin_pass(&mut self) {
        self.pass_bytes = 0;
    }

    /// The next decoded item: a frame's payload or why bytes were dropped.
    /// Reads COM2 (up to [`READ_BUDGET`] bytes a pass) when the decoder needs more;
    /// `None` when what arrived is used up. After the line was idle for
    /// [`IDLE_FLUSH_NS`], a partial frame comes out as truncated.
    pub fn next_item(&mut self, now: u64) -> Option<Decoded> {
        loop {
            let mut input = &self.unread[self.taken..];
            let item = self.decoder.decode(&mut input);
            self.taken = self.unread.len() - input.len();
            if item.is_some() {
                return item;
            }
            if !self.refill(now) {
                break;
            }
        }
        if !self.flushed && now.saturating_sub(self.last_rx_ns) >= IDLE_FLUSH_NS {
            // A cut-short frame, or garbage the decoder dropped and has
            // not reported yet (it reports garbage at the next frame).
            let item = self.decoder.flush();
            self.flushed = item.is_none();
            return item;
        }
        None
    }

    /// Acknowledges COM2's interrupt if it fired: the pass read the FIFO
    /// empty (or stopped at its budget, and then the agent does not sleep).
    pub fn end_pass(&mut self, events: &Events) {
        if let Some(irq) = self.irq {
            if events.take(&[irq.port]).is_some() {
                if let Err(e) = irq.eoi(events.xen()) {
                    println!("dom0: mgmt: COM2 interrupt EOI failed: {e}");
                }
            }
        }
    }

    /// When the agent must look at COM2 again without an event: now if
    /// the pass stopped at its read budget (the FIFO may hold more, and
    /// its interrupt line stays raised); at the idle flush of a partial
    /// frame; every [`POLL_NS`] without the interrupt; else never.
    pub fn deadline(&self, now: u64) -> Option<u64> {
        if self.pass_bytes >= READ_BUDGET {
            return Some(now);
        }
        let flush = (!self.flushed).then(|| self.last_rx_ns.saturating_add(IDLE_FLUSH_NS));
        let poll = self.irq.is_none().then(|| now + POLL_NS);
        match (flush, poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends `message` as one frame (a message too large for a frame is
    /// a bug of ours: reported on the hypervisor console, not sent).
    pub fn send(&mut self, message: &ServerMessage) {
        match encode_message(message) {
            Ok(frame) => self.uart.write(&frame),
            Err(e) => println!("dom0: mgmt: reply not sent: {e}"),
        }
    }

    /// Sends bytes that are already a frame.
    pub fn send_raw(&mut self, frame: &[u8]) {
        self.uart.write(frame);
    }

    /// Reads what COM2 holds, within the pass's budget; whether any came.
    /// The decoder takes all it is given, so nothing is left unread here.
    fn refill(&mut self, now: u64) -> bool {
        self.unread.clear();
        self.taken = 0;
        while self.pass_bytes < READ_BUDGET {
            match self.uart.try_read() {
                Some(byte) => self.unread.push(byte),
                None => break,
            }
            self.pass_bytes += 1;
        }
        if self.unread.is_empty() {
            return false;
        }
        self.last_rx_ns = now;
        self.flushed = false;
        true
    }
}
