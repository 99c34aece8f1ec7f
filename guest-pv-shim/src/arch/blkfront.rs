//! blkfront: a virtual block device of this guest (`device/vbd/<devid>`),
//! connected as Linux's xen-blkfront does (`talk_to_blkback`,
//! `blkback_changed`, `blkfront_connect`):
//!
//! 1. wait for the backend (`<dir>/backend`) to reach InitWait;
//! 2. initialise the ring page, grant it to the backend domain, allocate
//!    an unbound port for it, and write `ring-ref`, `event-channel` and
//!    `protocol` = `x86_64-abi` in one transaction, then Initialised;
//! 3. wait for Connected, read `sectors`, `info`, `sector-size`,
//!    `feature-flush-cache` and `feature-persistent`, then go Connected.
//!
//! Requests: up to [`QUEUE_DEPTH`] in flight, each with its own
//! [`MAX_REQUEST_SECTORS`] sectors of data pages (one static pool: one
//! device per guest). With persistent grants (`feature-persistent`
//! written by both ends, as Linux's xen-blkfront negotiates it) each data
//! page is granted writable once, at its first use, and the grant kept:
//! the backend keeps it mapped and copies with `memcpy`. Without, a
//! request's pages are granted when it is queued (read-only for a
//! write) and the grants ended when its response comes.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use abi::convert::usize_from_u64;
use abi::xen::blkif::{
    BlkifRequest, BlkifResponse, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY, BLKIF_SECTOR_BYTES, VDISK_READONLY,
    XEN_IO_PROTO_ABI_X86_64,
};
use abi::xen::domid::DomId;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::GrantRef;
use abi::xen::ring::{FrontRing, RingError};
use abi::xen::PAGE_SIZE;

use super::evtchn::Events;
use super::gnttab::Grants;
use super::shared_page::SharedFrame;
use super::xenbus_front::StoreRing;
use crate::blkfront::{rw_request, BadResponse, InFlight, Tracker};
pub use crate::blkfront::{MAX_REQUEST_SECTORS, QUEUE_DEPTH};
use crate::error::XenError;
use crate::grant::GrantError;
use crate::xenbus::path::PathBuf;
use crate::xenbus::state::XenbusState;
use crate::xenbus::{Client, Tx, XenbusError};

const SEGS: usize = BLKIF_MAX_SEGMENTS_PER_REQUEST;
/// Bytes of one request's data pages.
pub const REQUEST_BYTES: usize = SEGS * PAGE_SIZE;

static RING: SharedFrame = SharedFrame::new();
static DATA: [SharedFrame; QUEUE_DEPTH * SEGS] = [const { SharedFrame::new() }; QUEUE_DEPTH * SEGS];
static CONNECTED: AtomicBool = AtomicBool::new(false);

/// Why the device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkfrontError {
    /// No `device/vbd/<devid>` (or the one asked for is missing).
    NoDevice,
    /// A second device: the shim has one ring and one pool.
    AlreadyConnected,
    /// The store failed.
    Xenbus(XenbusError),
    /// Our grant table failed.
    Grant(GrantError),
    /// An event-channel hypercall failed.
    Event(XenError),
    /// The backend went to this state instead of connecting.
    BackendState(XenbusState),
    /// A backend key is missing or not a number.
    BadKey(&'static str),
    /// The backend broke the ring protocol.
    Ring(RingError),
    /// A response answered no request in flight.
    BadResponse(BadResponse),
    /// The request is empty, too large, or past the device's end.
    BadRange { sector: u64, sectors: u64 },
    /// All [`QUEUE_DEPTH`] requests are in flight.
    Busy,
    /// The backend answered a request with this `BLKIF_RSP_*`.
    Status { sector: u64, status: i16 },
}

impl From<XenbusError> for BlkfrontError {
    fn from(e: XenbusError) -> Self {
        Self::Xenbus(e)
    }
}

impl From<GrantError> for BlkfrontError {
    fn from(e: GrantError) -> Self {
        Self::Grant(e)
    }
}

impl From<RingError> for BlkfrontError {
    fn from(e: RingError) -> Self {
        Self::Ring(e)
    }
}

/// A request that completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Its id: [`Blkfront::data`] of it holds a read's data until the
    /// next request is queued.
    pub id: usize,
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// First sector.
    pub sector: u64,
    /// Sectors.
    pub sectors: u32,
    /// `BLKIF_RSP_*`.
    pub status: i16,
}

/// A connected virtual block device.
pub struct Blkfront {
    events: Events,
    grants: Grants,
    backend_id: DomId,
    port: EvtchnPort,
    devid: u32,
    ring: FrontRing<'static, BlkifRequest, BlkifResponse>,
    tracker: Tracker,
    sectors: u64,
    info: u32,
    flush: bool,
    /// Both ends offered `feature-persistent`.
    persistent: bool,
    /// With persistent grants: each data page's grant (0: none yet).
    data_grefs: [GrantRef; QUEUE_DEPTH * SEGS],
}

impl Blkfront {
    /// Connects device `devid` (`None`: the first under `device/vbd`),
    /// with persistent grants if the backend offers them.
    pub fn connect(
        xs: &mut Client<StoreRing>,
        events: &Events,
        grants: &Grants,
        devid: Option<u32>,
    ) -> Result<Blkfront, BlkfrontError> {
        Self::connect_with(xs, events, grants, devid, true)
    }

    /// [`Blkfront::connect`]; `persistent`: offer `feature-persistent`
    /// (Linux's `feature_persistent` parameter).
    pub fn connect_with(
        xs: &mut Client<StoreRing>,
        events: &Events,
        grants: &Grants,
        devid: Option<u32>,
        persistent: bool,
    ) -> Result<Blkfront, BlkfrontError> {
        let devid = match devid {
            Some(d) => d,
            None => first_device(xs)?,
        };
        let dir = PathBuf::format(format_args!("device/vbd/{devid}"))?;
        let dir = dir.as_str();
        if xs.read_state(dir)? == XenbusState::Unknown {
            return Err(BlkfrontError::NoDevice);
        }
        if CONNECTED.swap(true, Ordering::SeqCst) {
            return Err(BlkfrontError::AlreadyConnected);
        }
        let backend = xs.other_end(dir)?;
        let backend_id = read_number(xs, dir, "backend-id")?;
        let backend_id =
            DomId::try_from(backend_id).map_err(|_| BlkfrontError::BadKey("backend-id"))?;
        let state = xs.wait_for_state(backend.as_str(), |s| s >= XenbusState::InitWait)?;
        if state > XenbusState::Connected {
            return Err(BlkfrontError::BackendState(state));
        }
        let words: &'static [AtomicU32; 1024] = RING.view();
        let ring = FrontRing::init(words)?;
        let ring_ref = grants.grant_frame(backend_id, &RING, false)?;
        let port = events
            .xen()
            .evtchn_alloc_unbound(backend_id)
            .map_err(BlkfrontError::Event)?;
        publish_ring(xs, dir, ring_ref, port, persistent)?;
        xs.switch_state(dir, XenbusState::Initialised)?;
        let state = xs.wait_for_state(backend.as_str(), |s| s >= XenbusState::Connected)?;
        if state != XenbusState::Connected {
            return Err(BlkfrontError::BackendState(state));
        }
        let sectors = read_number(xs, backend.as_str(), "sectors")?;
        let info = read_number(xs, backend.as_str(), "info")?;
        let info = u32::try_from(info).map_err(|_| BlkfrontError::BadKey("info"))?;
        let sector_size = read_number(xs, backend.as_str(), "sector-size")?;
        if sector_size != BLKIF_SECTOR_BYTES as u64 {
            return Err(BlkfrontError::BadKey("sector-size"));
        }
        let flush = read_number(xs, backend.as_str(), "feature-flush-cache").unwrap_or(0) == 1;
        let persistent =
            persistent && read_number(xs, backend.as_str(), "feature-persistent").unwrap_or(0) == 1;
        xs.switch_state(dir, XenbusState::Connected)?;
        Ok(Blkfront {
            events: *events,
            grants: *grants,
            backend_id,
            port,
            devid,
            ring,
            tracker: Tracker::new(),
            sectors,
            info,
            flush,
            persistent,
            data_grefs: [0; QUEUE_DEPTH * SEGS],
        })
    }

    /// The `handle` of requests: the device id's low 16 bits (Linux's
    /// `info->handle`, a `blkif_vdev_t`).
    fn handle(&self) -> u16 {
        (self.devid & 0xffff) as u16
    }

    /// The vdev number (`xvda` = 51712).
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> DomId {
        self.backend_id
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Attached read-only (`VDISK_READONLY` in `info`).
    pub fn read_only(&self) -> bool {
        self.info & VDISK_READONLY != 0
    }

    /// Data grants are persistent (both ends offered it).
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// The backend offers `BLKIF_OP_FLUSH_DISKCACHE`.
    pub fn has_flush(&self) -> bool {
        self.flush
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// Queues a read or write of `sectors` from `sector` with the data
    /// already in request `id`'s pages ([`Blkfront::free_id`],
    /// [`Blkfront::fill`]); published by the next [`Blkfront::kick`] or
    /// wait.
    pub fn submit(
        &mut self,
        id: usize,
        operation: u8,
        sector: u64,
        sectors: u32,
    ) -> Result<(), BlkfrontError> {
        let inside = sector
            .checked_add(u64::from(sectors))
            .is_some_and(|end| end <= self.sectors);
        if sectors == 0 || sectors > MAX_REQUEST_SECTORS || !inside {
            return Err(BlkfrontError::BadRange {
                sector,
                sectors: sectors.into(),
            });
        }
        // At most 11 pages: fits a u8.
        let nr_grefs = (sectors.div_ceil(8) & 0xff) as u8;
        let pages = usize::from(nr_grefs);
        let mut grefs = [0; SEGS];
        for (i, gref) in grefs.iter_mut().enumerate().take(pages) {
            *gref = match self.data_grant(id * SEGS + i, operation) {
                Ok(r) => r,
                Err(e) => {
                    self.end_grants(&grefs[..i]);
                    return Err(e.into());
                }
            };
        }
        let req = rw_request(operation, id as u64, self.handle(), sector, sectors, &grefs);
        let flight = InFlight {
            operation,
            sector,
            sectors,
            grefs,
            nr_grefs,
        };
        self.push(id, &req, flight)
    }

    /// The grant of data page `page` for an `operation` request: its
    /// persistent grant (made writable at first use), or a new one
    /// (read-only for a write).
    fn data_grant(&mut self, page: usize, operation: u8) -> Result<GrantRef, GrantError> {
        if !self.persistent {
            let readonly = operation == BLKIF_OP_WRITE;
            return self
                .grants
                .grant_frame(self.backend_id, &DATA[page], readonly);
        }
        if self.data_grefs[page] == 0 {
            self.data_grefs[page] = self
                .grants
                .grant_frame(self.backend_id, &DATA[page], false)?;
        }
        Ok(self.data_grefs[page])
    }

    /// Queues `BLKIF_OP_FLUSH_DISKCACHE` as request `id`.
    pub fn submit_flush(&mut self, id: usize) -> Result<(), BlkfrontError> {
        let req = BlkifRequest {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            id: id as u64,
            handle: self.handle(),
            ..Default::default()
        };
        let flight = InFlight {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            sector: 0,
            sectors: 0,
            grefs: [0; SEGS],
            nr_grefs: 0,
        };
        self.push(id, &req, flight)
    }

    /// Queues `req` as it is (its `id` must be a free id, its grants the
    /// caller's): for tests of the backend's checks.
    pub fn submit_raw(&mut self, req: &BlkifRequest) -> Result<(), BlkfrontError> {
        let id = usize::try_from(req.id).map_err(|_| BlkfrontError::Busy)?;
        let flight = InFlight {
            operation: req.operation,
            sector: req.sector_number,
            sectors: 0,
            grefs: [0; SEGS],
            nr_grefs: 0,
        };
        self.push(id, req, flight)
    }

    /// Queues `req` in the ring; it is published (and the backend
    /// notified) by the next [`Blkfront::kick`], so that a batch costs one
    /// notification (Linux's blk-mq `commit_rqs`).
    fn push(
        &mut self,
        id: usize,
        req: &BlkifRequest,
        flight: InFlight,
    ) -> Result<(), BlkfrontError> {
        if id >= QUEUE_DEPTH || self.tracker.free_id().is_none() {
            return Err(BlkfrontError::Busy);
        }
        self.ring.queue_request(req)?;
        self.tracker.start(id, flight);
        Ok(())
    }

    /// Publishes the queued requests and notifies the backend if it
    /// asked to be (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn kick(&mut self) -> Result<(), BlkfrontError> {
        if self.ring.push_requests_and_check_notify() {
            self.notify()?;
        }
        Ok(())
    }

    /// A free request id, if fewer than [`QUEUE_DEPTH`] are in flight.
    pub fn free_id(&self) -> Option<usize> {
        self.tracker.free_id()
    }

    /// Writes `bytes` (a multiple of 8) into request `id`'s pages at `offset`.
    pub fn fill(&self, id: usize, offset: usize, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if let Some(cell) = data_word(id, offset + i * 8) {
                cell.store(word, Ordering::Relaxed);
            }
        }
    }

    /// Reads request `id`'s pages at `offset` into `buf` (a multiple of 8).
    pub fn data(&self, id: usize, offset: usize, buf: &mut [u8]) {
        for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
            if let Some(cell) = data_word(id, offset + i * 8) {
                chunk.copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
            }
        }
    }

    /// The next completion, sleeping on the port until one comes (after
    /// publishing what is queued); its grants are ended. Errors if
    /// nothing is in flight.
    pub fn wait_completion(&mut self) -> Result<Completion, BlkfrontError> {
        if self.tracker.in_flight() == 0 {
            return Err(BlkfrontError::Busy);
        }
        self.kick()?;
        loop {
            if let Some(done) = self.poll_completion()? {
                return Ok(done);
            }
            if !self.ring.final_check_for_responses()? {
                self.events
                    .wait_any(&[self.port], None)
                    .map_err(BlkfrontError::Event)?;
            }
        }
    }

    /// The next completion, if a response is there (never sleeps).
    pub fn poll_completion(&mut self) -> Result<Option<Completion>, BlkfrontError> {
        let Some(rsp) = self.ring.take_response()? else {
            return Ok(None);
        };
        let (id, flight) = self
            .tracker
            .finish(&rsp)
            .map_err(BlkfrontError::BadResponse)?;
        self.end_grants(&flight.grefs[..usize::from(flight.nr_grefs)]);
        Ok(Some(Completion {
            id,
            operation: flight.operation,
            sector: flight.sector,
            sectors: flight.sectors,
            status: rsp.status,
        }))
    }

    /// Ends access through `grefs` (not persistent ones: those are kept).
    /// With a copying backend they are idle once the response came; one
    /// still in use stays granted (leaked) rather than reused.
    fn end_grants(&self, grefs: &[GrantRef]) {
        if self.persistent {
            return;
        }
        for gref in grefs {
            let _ = self.grants.table().end_access(*gref);
        }
    }

    /// Reads `buf.len() / 512` sectors from `sector` into `buf`, with up
    /// to `depth` requests in flight.
    pub fn read(&mut self, sector: u64, buf: &mut [u8], depth: usize) -> Result<(), BlkfrontError> {
        let count = (buf.len() / BLKIF_SECTOR_BYTES) as u64;
        self.read_sectors(sector, count, depth, |s, data| {
            let at = usize_from_u64(s - sector) * BLKIF_SECTOR_BYTES;
            buf[at..at + BLKIF_SECTOR_BYTES].copy_from_slice(data);
        })
    }

    /// Writes `buf` (a multiple of 512 bytes) from `sector`, with up to
    /// `depth` requests in flight.
    pub fn write(&mut self, sector: u64, buf: &[u8], depth: usize) -> Result<(), BlkfrontError> {
        let count = (buf.len() / BLKIF_SECTOR_BYTES) as u64;
        self.write_sectors(sector, count, depth, |s, data| {
            let at = usize_from_u64(s - sector) * BLKIF_SECTOR_BYTES;
            data.copy_from_slice(&buf[at..at + BLKIF_SECTOR_BYTES]);
        })
    }

    /// Reads `count` sectors from `sector` in requests as large as they
    /// go, `depth` in flight; `consume(sector, data)` sees each sector.
    pub fn read_sectors(
        &mut self,
        sector: u64,
        count: u64,
        depth: usize,
        mut consume: impl FnMut(u64, &[u8; BLKIF_SECTOR_BYTES]),
    ) -> Result<(), BlkfrontError> {
        let mut one = [0u8; BLKIF_SECTOR_BYTES];
        let plan = Plan {
            operation: BLKIF_OP_READ,
            sector,
            count,
            unit: MAX_REQUEST_SECTORS,
            depth,
        };
        self.transfer(
            plan,
            |_, _, _| {},
            |bf, done| {
                let sectors = done.sector..done.sector + u64::from(done.sectors);
                for (i, s) in sectors.enumerate() {
                    bf.data(done.id, i * BLKIF_SECTOR_BYTES, &mut one);
                    consume(s, &one);
                }
            },
        )
    }

    /// Writes `count` sectors from `sector` in requests as large as they
    /// go, `depth` in flight; `produce(sector, data)` fills each sector.
    pub fn write_sectors(
        &mut self,
        sector: u64,
        count: u64,
        depth: usize,
        mut produce: impl FnMut(u64, &mut [u8; BLKIF_SECTOR_BYTES]),
    ) -> Result<(), BlkfrontError> {
        let mut one = [0u8; BLKIF_SECTOR_BYTES];
        let plan = Plan {
            operation: BLKIF_OP_WRITE,
            sector,
            count,
            unit: MAX_REQUEST_SECTORS,
            depth,
        };
        self.transfer(
            plan,
            |bf, id, first| {
                let sectors = (count - (first - sector)).min(MAX_REQUEST_SECTORS.into());
                for (i, s) in (first..first + sectors).enumerate() {
                    produce(s, &mut one);
                    bf.fill(id, i * BLKIF_SECTOR_BYTES, &one);
                }
            },
            |_, _| {},
        )
    }

    /// Moves `count` sectors from `sector` without touching the data
    /// pages (a benchmark's path): I/Os of `unit` sectors, each split into
    /// requests of at most [`MAX_REQUEST_SECTORS`], `depth` in flight.
    pub fn stream(
        &mut self,
        operation: u8,
        sector: u64,
        count: u64,
        unit: u32,
        depth: usize,
    ) -> Result<(), BlkfrontError> {
        let plan = Plan {
            operation,
            sector,
            count,
            unit: unit.max(1),
            depth,
        };
        self.transfer(plan, |_, _, _| {}, |_, _| {})
    }

    /// Flushes the backend's disk cache (nothing if it has no flush).
    pub fn flush(&mut self) -> Result<(), BlkfrontError> {
        if !self.flush {
            return Ok(());
        }
        let id = self.tracker.free_id().ok_or(BlkfrontError::Busy)?;
        self.submit_flush(id)?;
        let done = self.wait_completion()?;
        check(&done)
    }

    /// Runs `plan`: `before(id, first sector)` fills a request's pages
    /// before it is queued, `after` sees each one that completed OKAY.
    /// The first error ends the queueing; what is in flight is waited for.
    fn transfer(
        &mut self,
        plan: Plan,
        mut before: impl FnMut(&Self, usize, u64),
        mut after: impl FnMut(&Self, &Completion),
    ) -> Result<(), BlkfrontError> {
        let depth = plan.depth.clamp(1, QUEUE_DEPTH);
        let unit = u64::from(plan.unit);
        let mut next = 0u64;
        let mut result = Ok(());
        loop {
            // Fill the queue, publish the batch, then take every response
            // that is there (at least one).
            while next < plan.count && self.tracker.in_flight() < depth && result.is_ok() {
                let id = self.tracker.free_id().ok_or(BlkfrontError::Busy)?;
                let in_unit = unit - next % unit;
                let count = (plan.count - next)
                    .min(in_unit)
                    .min(MAX_REQUEST_SECTORS.into());
                let count = u32::try_from(count).unwrap_or(MAX_REQUEST_SECTORS);
                let first = plan.sector + next;
                before(self, id, first);
                match self.submit(id, plan.operation, first, count) {
                    Ok(()) => next += u64::from(count),
                    Err(e) => result = Err(e),
                }
            }
            if self.tracker.in_flight() == 0 {
                return result;
            }
            let mut done = Some(self.wait_completion()?);
            while let Some(d) = done {
                match check(&d) {
                    Ok(()) => after(self, &d),
                    Err(e) => result = result.and(Err(e)),
                }
                done = self.poll_completion()?;
            }
        }
    }

    /// The shared ring's page as words: for tests of the backend's
    /// defences (a `req_prod` that runs ahead).
    pub fn ring_words(&self) -> &'static [AtomicU32; 1024] {
        RING.view()
    }

    /// Notifies the backend.
    pub fn notify(&self) -> Result<(), BlkfrontError> {
        self.events
            .xen()
            .evtchn_send(self.port)
            .map_err(BlkfrontError::Event)
    }

    /// The backend's state and our port, for a caller that watches it.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Grants request `id`'s page `page` to the backend and returns the
    /// reference (for raw requests); end it with [`Blkfront::end_grant`].
    pub fn grant_page(
        &self,
        id: usize,
        page: usize,
        readonly: bool,
    ) -> Result<GrantRef, BlkfrontError> {
        let frame = DATA.get(id * SEGS + page).ok_or(BlkfrontError::Busy)?;
        Ok(self.grants.grant_frame(self.backend_id, frame, readonly)?)
    }

    /// Ends access through `gref`.
    pub fn end_grant(&self, gref: GrantRef) -> Result<(), BlkfrontError> {
        Ok(self.grants.table().end_access(gref)?)
    }
}

/// A run of requests: `count` sectors from `sector`, in I/Os of `unit`
/// sectors, `depth` in flight.
struct Plan {
    operation: u8,
    sector: u64,
    count: u64,
    unit: u32,
    depth: usize,
}

/// `Ok` for `BLKIF_RSP_OKAY`, else the status as an error.
fn check(done: &Completion) -> Result<(), BlkfrontError> {
    if done.status == BLKIF_RSP_OKAY {
        Ok(())
    } else {
        Err(BlkfrontError::Status {
            sector: done.sector,
            status: done.status,
        })
    }
}

/// The word at byte `offset` (8-aligned) of request `id`'s pages.
fn data_word(id: usize, offset: usize) -> Option<&'static AtomicU64> {
    let frame = DATA.get(id * SEGS + offset / PAGE_SIZE)?;
    let words: &[AtomicU64; 512] = frame.view();
    words.get(offset % PAGE_SIZE / 8)
}

/// The first device under `device/vbd` (lowest number).
fn first_device(xs: &mut Client<StoreRing>) -> Result<u32, BlkfrontError> {
    let dir = match xs.directory(Tx::NONE, "device/vbd") {
        Ok(dir) => dir,
        Err(XenbusError::Store(_)) => return Err(BlkfrontError::NoDevice),
        Err(e) => return Err(e.into()),
    };
    dir.iter()
        .filter_map(|name| name.parse().ok())
        .min()
        .ok_or(BlkfrontError::NoDevice)
}

/// `<dir>/<key>` as a decimal number.
fn read_number(
    xs: &mut Client<StoreRing>,
    dir: &str,
    key: &'static str,
) -> Result<u64, BlkfrontError> {
    let path = PathBuf::format(format_args!("{dir}/{key}"))?;
    let value = xs
        .read_str(Tx::NONE, path.as_str())
        .map_err(|_| BlkfrontError::BadKey(key))?;
    value.parse().map_err(|_| BlkfrontError::BadKey(key))
}

/// Writes the transport keys in one transaction (retried on `EAGAIN`).
fn publish_ring(
    xs: &mut Client<StoreRing>,
    dir: &str,
    ring_ref: GrantRef,
    port: EvtchnPort,
    persistent: bool,
) -> Result<(), BlkfrontError> {
    let ring_ref = PathBuf::format(format_args!("{ring_ref}"))?;
    let port = PathBuf::format(format_args!("{port}"))?;
    let keys = [
        ("ring-ref", ring_ref.as_str()),
        ("event-channel", port.as_str()),
        ("protocol", XEN_IO_PROTO_ABI_X86_64),
        ("feature-persistent", if persistent { "1" } else { "0" }),
    ];
    xs.transaction(|xs, tx| {
        for (key, value) in keys {
            let path = PathBuf::format(format_args!("{dir}/{key}"))?;
            xs.write(tx, path.as_str(), value.as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}
