//! The management channel's byte stream on COM2: bytes in through the
//! frame [`Decoder`], messages out as frames.
//!
//! COM2 raises no interrupt dom0 could take, so the agent polls it: the
//! receive FIFO is read empty on every pass. While bytes keep coming (an
//! upload) the link counts as [`Link::receiving`] for [`RX_ACTIVE_NS`]
//! after the last one, and the agent polls without sleeping; QEMU refills
//! the 16-byte FIFO only as it is read, so sleeping between every 16
//! bytes would make an upload crawl.

use alloc::vec::Vec;

use guest_pv_shim::arch::uart::Uart;
use guest_pv_shim::println;
use mgmt::{encode_message, Decoded, Decoder, ServerMessage};

/// How long after the last received byte the agent keeps polling without
/// sleeping, ns.
pub const RX_ACTIVE_NS: u64 = 2_000_000;
/// A partial frame is given up (truncated) after the line was idle this
/// long, ns (the `mgmt` docs ask for a few hundred ms).
pub const IDLE_FLUSH_NS: u64 = 200_000_000;
/// Most bytes taken from COM2 per pass, so consoles are served during a
/// long upload.
const READ_BUDGET: usize = 4096;

/// COM2 with the protocol's framing.
pub struct Link {
    uart: Uart,
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
    /// COM2, initialised.
    pub fn com2() -> Link {
        Link {
            uart: Uart::com2(),
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

    /// Whether bytes arrived within the last [`RX_ACTIVE_NS`].
    pub fn receiving(&self, now: u64) -> bool {
        now.saturating_sub(self.last_rx_ns) < RX_ACTIVE_NS
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
