//! netfront's connection (Linux `xen-netfront.c`'s `talk_to_netback`
//! and `netback_changed`): waits for the toolstack's `device/vif/<devid>`
//! and the backend's InitWait, grants both ring pages and every buffer
//! page to the backend, allocates the event channel, publishes
//! `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy` and
//! `feature-rx-notify` in one transaction, goes Connected, posts the rx
//! buffers and waits for the backend's Connected. The pages are this
//! image's, so one vif per guest (devid 0 by default).

use core::sync::atomic::AtomicU32;

use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::GrantRef;

use super::evtchn::Events;
use super::gnttab::Grants;
use super::shared_page::SharedFrame;
use super::xenbus_front::StoreRing;
use crate::netfront::{parse_mac, Buffers, NetfrontError, Rings, Stats, RX_BUFS, TX_BUFS};
use crate::page_bytes::PageBytes;
use crate::xenbus::path::PathBuf;
use crate::xenbus::state::XenbusState;
use crate::xenbus::{Client, Tx, XenbusError};

static TX_RING: SharedFrame = SharedFrame::new();
static RX_RING: SharedFrame = SharedFrame::new();
static TX_PAGES: [SharedFrame; TX_BUFS] = [const { SharedFrame::new() }; TX_BUFS];
static RX_PAGES: [SharedFrame; RX_BUFS] = [const { SharedFrame::new() }; RX_BUFS];
/// Set once a frontend took the pages.
static TAKEN: spin::Once<()> = spin::Once::new();

/// Why the vif could not be connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// A store request failed.
    Store(XenbusError),
    /// The toolstack's `mac` is not a MAC.
    BadMac,
    /// Granting a page or allocating the port failed.
    Setup(&'static str),
    /// The backend went Closing/Closed instead of connecting.
    BackendClosed(XenbusState),
    /// This image's pages are already in use by another frontend.
    InUse,
    /// The rings could not be laid out.
    Rings(NetfrontError),
}

impl From<XenbusError> for ConnectError {
    fn from(e: XenbusError) -> Self {
        Self::Store(e)
    }
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "xenstore: {e:?}"),
            Self::BadMac => write!(f, "mac is not aa:bb:cc:dd:ee:ff"),
            Self::Setup(what) => write!(f, "{what} failed"),
            Self::BackendClosed(s) => write!(f, "backend went {s}"),
            Self::InUse => write!(f, "the netfront pages are in use"),
            Self::Rings(e) => write!(f, "{e}"),
        }
    }
}

/// The buffer pages and their grants.
pub struct Pages {
    tx_grefs: [GrantRef; TX_BUFS],
    rx_grefs: [GrantRef; RX_BUFS],
}

impl Buffers for Pages {
    fn tx_page(&self, id: usize) -> &PageBytes {
        TX_PAGES[id].view()
    }
    fn tx_gref(&self, id: usize) -> GrantRef {
        self.tx_grefs[id]
    }
    fn rx_page(&self, id: usize) -> &PageBytes {
        RX_PAGES[id].view()
    }
    fn rx_gref(&self, id: usize) -> GrantRef {
        self.rx_grefs[id]
    }
}

/// A connected vif.
pub struct Netfront {
    rings: Rings<'static, Pages>,
    events: Events,
    port: EvtchnPort,
    mac: [u8; 6],
    backend_id: u16,
}

impl Netfront {
    /// Connects vif `devid` (see the module's documentation); sleeps on
    /// the store until the toolstack attached it and the backend is
    /// Connected.
    pub fn connect(
        xs: &mut Client<StoreRing>,
        events: &Events,
        grants: &Grants,
        devid: u32,
    ) -> Result<Netfront, ConnectError> {
        let dir = PathBuf::format(format_args!("device/vif/{devid}"))?;
        let dir = dir.as_str();
        let backend_key = PathBuf::format(format_args!("{dir}/backend-id"))?;
        xs.wait_until(backend_key.as_str(), |v| v.is_some())?;
        let backend_id = xs
            .read_str(Tx::NONE, backend_key.as_str())?
            .trim()
            .parse::<u16>()
            .map_err(|_| ConnectError::Store(XenbusError::Protocol))?;
        let mac_key = PathBuf::format(format_args!("{dir}/mac"))?;
        let mac =
            parse_mac(xs.read_str(Tx::NONE, mac_key.as_str())?).ok_or(ConnectError::BadMac)?;
        let backend = xs.other_end(dir)?;
        let state = xs.wait_for_state(backend.as_str(), |s| s >= XenbusState::InitWait)?;
        if state >= XenbusState::Closing {
            return Err(ConnectError::BackendClosed(state));
        }
        let mut taken = false;
        TAKEN.call_once(|| taken = true);
        if !taken {
            return Err(ConnectError::InUse);
        }
        let (pages, tx_ref, rx_ref) = grant_pages(grants, backend_id)?;
        let port = events
            .xen()
            .evtchn_alloc_unbound(backend_id)
            .map_err(|_| ConnectError::Setup("EVTCHNOP_alloc_unbound"))?;
        let tx_words: &'static [AtomicU32; 1024] = TX_RING.view();
        let rx_words: &'static [AtomicU32; 1024] = RX_RING.view();
        let rings = Rings::init(tx_words, rx_words, pages).map_err(ConnectError::Rings)?;
        publish(xs, dir, tx_ref, rx_ref, port)?;
        xs.switch_state(dir, XenbusState::Connected)?;
        let mut front = Netfront {
            rings,
            events: *events,
            port,
            mac,
            backend_id,
        };
        front.post_rx();
        let state = xs.wait_for_state(backend.as_str(), |s| s >= XenbusState::Connected)?;
        if state != XenbusState::Connected {
            return Err(ConnectError::BackendClosed(state));
        }
        Ok(front)
    }

    /// The MAC the toolstack gave this vif.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// The event channel to the backend.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.rings.stats()
    }

    /// The rings, for a guest that builds its own requests.
    pub fn rings(&mut self) -> &mut Rings<'static, Pages> {
        &mut self.rings
    }

    /// The tx ring's page, for tests of the backend's defences
    /// (corrupting `req_prod`); drivers never need it.
    pub fn tx_ring_page(&self) -> &'static [AtomicU32; 1024] {
        TX_RING.view()
    }

    /// Sends the backend an event.
    pub fn notify(&self) {
        let _ = self.events.xen().evtchn_send(self.port);
    }

    fn post_rx(&mut self) {
        if self.rings.post_rx() {
            self.notify();
        }
    }

    /// Sends `frame`; `Err(TxFull)` while every buffer is in flight.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetfrontError> {
        self.send_with_flags(frame, 0)
    }

    /// [`Self::send`] with `NETTXF_*` flags on its request.
    pub fn send_with_flags(&mut self, frame: &[u8], flags: u16) -> Result<(), NetfrontError> {
        self.rings.reap_tx()?;
        if self.rings.send_with_flags(frame, flags)? {
            self.notify();
        }
        Ok(())
    }

    /// Whether a frame could be sent now.
    pub fn can_send(&mut self) -> bool {
        self.rings.reap_tx().is_ok() && self.rings.can_send()
    }

    /// Receives the next frame into `buf`; its buffer is posted again.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetfrontError> {
        let got = self.rings.recv(buf)?;
        if got.is_some() {
            self.post_rx();
        }
        Ok(got)
    }

    /// Whether a received frame waits.
    pub fn rx_pending(&self) -> bool {
        self.rings.rx_pending()
    }

    /// Sleeps until the backend sends an event or system time reaches
    /// `deadline_ns`; returns at once if a frame or a tx response waits.
    /// Tx responses are taken in first: left in the ring they would end
    /// every wait at once.
    pub fn wait(&mut self, deadline_ns: Option<u64>) {
        if self.rings.reap_tx().is_err() || self.rings.final_check().unwrap_or(true) {
            return;
        }
        let _ = self.events.wait_any(&[self.port], deadline_ns);
    }

    /// Like [`Self::wait`], for a guest that takes its own tx responses
    /// ([`Rings::take_tx_response`]): they are left in the ring.
    pub fn wait_raw(&mut self, deadline_ns: Option<u64>) {
        if self.rings.final_check().unwrap_or(true) {
            return;
        }
        let _ = self.events.wait_any(&[self.port], deadline_ns);
    }

    /// System time, ns.
    pub fn now(&self) -> u64 {
        self.events.now().unwrap_or(0)
    }
}

/// Grants the ring pages and every buffer page to the backend.
fn grant_pages(grants: &Grants, backend: u16) -> Result<(Pages, GrantRef, GrantRef), ConnectError> {
    let grant = |frame: &SharedFrame, readonly| {
        grants
            .grant_frame(backend, frame, readonly)
            .map_err(|_| ConnectError::Setup("granting a page"))
    };
    let tx_ref = grant(&TX_RING, false)?;
    let rx_ref = grant(&RX_RING, false)?;
    let mut pages = Pages {
        tx_grefs: [0; TX_BUFS],
        rx_grefs: [0; RX_BUFS],
    };
    for (gref, frame) in pages.tx_grefs.iter_mut().zip(&TX_PAGES) {
        *gref = grant(frame, true)?;
    }
    for (gref, frame) in pages.rx_grefs.iter_mut().zip(&RX_PAGES) {
        *gref = grant(frame, false)?;
    }
    Ok((pages, tx_ref, rx_ref))
}

/// `talk_to_netback`'s transaction.
fn publish(
    xs: &mut Client<StoreRing>,
    dir: &str,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: EvtchnPort,
) -> Result<(), ConnectError> {
    let keys = [
        ("tx-ring-ref", tx_ref),
        ("rx-ring-ref", rx_ref),
        ("event-channel", port),
        ("request-rx-copy", 1),
        ("feature-rx-notify", 1),
        ("feature-sg", 0),
        ("feature-gso-tcpv4", 0),
    ];
    xs.transaction(|xs, tx| {
        for (key, value) in keys {
            let path = PathBuf::format(format_args!("{dir}/{key}"))?;
            let value = PathBuf::format(format_args!("{value}"))?;
            xs.write(tx, path.as_str(), value.as_str().as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}
