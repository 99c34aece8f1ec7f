//! netfront: the guest's end of the PV network device (`io/netif.h`),
//! as Linux's `xen-netfront.c` drives it, with copying receive
//! (`request-rx-copy`) and one page per packet (no `feature-sg`).
//!
//! - **tx**: a frame is copied into a free buffer page (granted
//!   read-only to the backend once, at connect), one `netif_tx_request`
//!   names it; the buffer is free again when its response comes.
//! - **rx**: every rx buffer page (granted writable) is posted as a
//!   `netif_rx_request`; the backend copies a frame into it and answers
//!   with the length; the frame is read out and the buffer posted again.
//!
//! Portable: [`Rings`] works over the two ring pages and the buffers
//! ([`Buffers`]); the store handshake and the hypercalls are in
//! `arch::netfront`. Host tests run it against a backend made of
//! `BackRing`s.

use core::fmt;

use abi::convert::u32_const;
use abi::xen::grant_table::GrantRef;
use abi::xen::netif::{
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETIF_RSP_OKAY,
};
use abi::xen::ring::{FrontRing, RingError};
use abi::xen::PAGE_SIZE;
use core::sync::atomic::AtomicU32;

use crate::page_bytes::{read_bytes, write_bytes, PageBytes};

/// Tx buffer pages (frames in flight at once).
pub const TX_BUFS: usize = 32;
/// Rx buffer pages posted to the backend.
pub const RX_BUFS: usize = 32;
/// Largest frame sent: the Ethernet MTU 1500 plus its 14-byte header.
pub const MTU_FRAME: usize = 1514;

/// The pages the rings point at: buffer `id`'s page and its grant.
pub trait Buffers {
    /// Tx buffer `id` (< [`TX_BUFS`]).
    fn tx_page(&self, id: usize) -> &PageBytes;
    /// Its grant to the backend.
    fn tx_gref(&self, id: usize) -> GrantRef;
    /// Rx buffer `id` (< [`RX_BUFS`]).
    fn rx_page(&self, id: usize) -> &PageBytes;
    /// Its grant to the backend.
    fn rx_gref(&self, id: usize) -> GrantRef;
}

/// Why the frontend refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetfrontError {
    /// A frame larger than [`MTU_FRAME`] or empty.
    BadFrame(usize),
    /// Every tx buffer is in flight.
    TxFull,
    /// The backend broke a ring (answered what was never asked).
    Ring(RingError),
    /// The backend answered a request id we never used or twice.
    BadId(u16),
}

impl fmt::Display for NetfrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFrame(n) => write!(f, "frame of {n} bytes (1..={MTU_FRAME})"),
            Self::TxFull => write!(f, "all {TX_BUFS} tx buffers in flight"),
            Self::Ring(e) => write!(f, "ring: {e:?}"),
            Self::BadId(id) => write!(f, "response for unknown id {id}"),
        }
    }
}

impl From<RingError> for NetfrontError {
    fn from(e: RingError) -> Self {
        Self::Ring(e)
    }
}

/// What the frontend counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames queued on tx.
    pub tx_packets: u64,
    /// Tx responses other than `NETIF_RSP_OKAY`.
    pub tx_errors: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Rx responses with an error status (or a bad offset/length).
    pub rx_errors: u64,
}

/// Both rings and the buffers' bookkeeping.
pub struct Rings<'a, B> {
    tx: FrontRing<'a, NetifTxRequest, NetifTxResponse>,
    rx: FrontRing<'a, NetifRxRequest, NetifRxResponse>,
    bufs: B,
    /// Bit `id`: tx buffer `id` is in flight.
    tx_busy: u64,
    /// Bit `id`: rx buffer `id` is posted.
    rx_posted: u64,
    stats: Stats,
}

const _: () = assert!(TX_BUFS <= 64 && RX_BUFS <= 64);

impl<'a, B: Buffers> Rings<'a, B> {
    /// Initialises both shared rings (the frontend owns their headers).
    pub fn init(
        tx_page: &'a [AtomicU32],
        rx_page: &'a [AtomicU32],
        bufs: B,
    ) -> Result<Self, NetfrontError> {
        Ok(Rings {
            tx: FrontRing::init(tx_page)?,
            rx: FrontRing::init(rx_page)?,
            bufs,
            tx_busy: 0,
            rx_posted: 0,
            stats: Stats::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The buffers (for a guest that builds its own requests).
    pub fn buffers(&self) -> &B {
        &self.bufs
    }

    /// Posts every rx buffer not yet posted; true if the backend wants
    /// an event.
    pub fn post_rx(&mut self) -> bool {
        let mut queued = false;
        for id in (0u16..).take(RX_BUFS) {
            if self.rx_posted & (1 << id) != 0 || self.rx.is_full() {
                continue;
            }
            let req = NetifRxRequest {
                id,
                pad: 0,
                gref: self.bufs.rx_gref(usize::from(id)),
            };
            if self.rx.queue_request(&req).is_ok() {
                self.rx_posted |= 1 << id;
                queued = true;
            }
        }
        queued && self.rx.push_requests_and_check_notify()
    }

    /// Takes the tx responses in, freeing their buffers.
    pub fn reap_tx(&mut self) -> Result<(), NetfrontError> {
        while let Some(rsp) = self.tx.take_response()? {
            let id = usize::from(rsp.id);
            if id >= TX_BUFS || self.tx_busy & (1 << id) == 0 {
                return Err(NetfrontError::BadId(rsp.id));
            }
            self.tx_busy &= !(1 << id);
            if rsp.status != NETIF_RSP_OKAY {
                self.stats.tx_errors += 1;
            }
        }
        Ok(())
    }

    /// Whether a tx buffer is free (after [`Self::reap_tx`]).
    pub fn can_send(&self) -> bool {
        self.tx_busy.count_ones() < u32_const::<TX_BUFS>() && !self.tx.is_full()
    }

    /// Sends `frame` (copied into a free buffer); true if the backend
    /// wants an event.
    pub fn send(&mut self, frame: &[u8]) -> Result<bool, NetfrontError> {
        self.send_with_flags(frame, 0)
    }

    /// [`Self::send`] with `NETTXF_*` flags on the request (e.g.
    /// `NETTXF_CSUM_BLANK`: the backend fills the TCP/UDP checksum).
    pub fn send_with_flags(&mut self, frame: &[u8], flags: u16) -> Result<bool, NetfrontError> {
        let size = u16::try_from(frame.len())
            .ok()
            .filter(|n| (1..=MTU_FRAME).contains(&usize::from(*n)))
            .ok_or(NetfrontError::BadFrame(frame.len()))?;
        let id = (0u16..)
            .take(TX_BUFS)
            .find(|id| self.tx_busy & (1 << id) == 0)
            .ok_or(NetfrontError::TxFull)?;
        write_bytes(self.bufs.tx_page(usize::from(id)), 0, frame);
        let req = NetifTxRequest {
            gref: self.bufs.tx_gref(usize::from(id)),
            offset: 0,
            flags,
            id,
            size,
        };
        self.send_raw(&req)?;
        self.tx_busy |= 1 << id;
        self.stats.tx_packets += 1;
        Ok(self.tx.push_requests_and_check_notify())
    }

    /// Queues `req` as it is (a hostile guest's own requests; the
    /// caller pushes with [`Self::push_tx`]). Its id should not be a
    /// buffer's in flight.
    pub fn send_raw(&mut self, req: &NetifTxRequest) -> Result<(), NetfrontError> {
        self.tx
            .queue_request(req)
            .map_err(|_| NetfrontError::TxFull)
    }

    /// Publishes queued tx requests; true if the backend wants an event.
    pub fn push_tx(&mut self) -> bool {
        self.tx.push_requests_and_check_notify()
    }

    /// Takes the next tx response as it is (for a guest that queued its
    /// own requests with [`Self::send_raw`]).
    pub fn take_tx_response(&mut self) -> Result<Option<NetifTxResponse>, NetfrontError> {
        Ok(self.tx.take_response()?)
    }

    /// Receives the next frame into `buf` (its length), reposting its
    /// buffer; `None` if no frame is waiting. A frame longer than `buf`
    /// is cut to it.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetfrontError> {
        loop {
            let Some(rsp) = self.rx.take_response()? else {
                return Ok(None);
            };
            let id = usize::from(rsp.id);
            if id >= RX_BUFS || self.rx_posted & (1 << id) == 0 {
                return Err(NetfrontError::BadId(rsp.id));
            }
            self.rx_posted &= !(1 << id);
            if let Some(n) = self.read_rx(id, &rsp, buf) {
                self.stats.rx_packets += 1;
                return Ok(Some(n));
            }
            self.stats.rx_errors += 1;
        }
    }

    fn read_rx(&self, id: usize, rsp: &NetifRxResponse, buf: &mut [u8]) -> Option<usize> {
        let len = usize::try_from(rsp.status).ok().filter(|n| *n > 0)?;
        let offset = usize::from(rsp.offset);
        if offset + len > PAGE_SIZE {
            return None;
        }
        let n = len.min(buf.len());
        read_bytes(self.bufs.rx_page(id), offset, &mut buf[..n]).then_some(n)
    }

    /// Whether a received frame is waiting.
    pub fn rx_pending(&self) -> bool {
        self.rx.unconsumed_responses().is_ok_and(|n| n > 0)
    }

    /// Before sleeping: asks for an event on the next rx or tx response;
    /// true if one is already there.
    pub fn final_check(&mut self) -> Result<bool, NetfrontError> {
        let rx = self.rx.final_check_for_responses()?;
        let tx = self.tx.final_check_for_responses()?;
        Ok(rx || tx)
    }
}

/// `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests;
