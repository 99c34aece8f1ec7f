//! The target half of the backend: the handshake's ring and port, the
//! rings' service, grant copies through `GNTTABOP_copy` and the disk.

use alloc::collections::btree_map::{BTreeMap, Entry};
use core::sync::atomic::AtomicU32;

use abi::xen::blkif::{BlkifRequest, BlkifResponse, BLKIF_RSP_OKAY};
use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::{
    GnttabCopy, GnttabCopyPtr, GrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
    GNTST_GENERAL_ERROR, GNTST_OKAY,
};
use abi::xen::ring::{BackRing, RingError, RingIdx};
use abi::xen::PAGE_SIZE;
use guest_pv_shim::arch::gnttab::window::WindowMapping;
use guest_pv_shim::xenbus::state::XenbusState;
use guest_pv_shim::{println, Events, ForeignMapping, Grants};

use super::engine::{self, BlockIo, GrantIo, SegmentCopy, BATCH_MAX, BOUNCE_BYTES};
use super::xenbus::{self, Action};
use super::{BlockBackends, Device, LOGGED_REFUSALS_MAX, MAX_DEVICES, REQUESTS_PER_PASS};
use crate::devices::Disk;
use crate::store::StoreService;

/// A connected device's ring page (mapped by grant) and our port.
pub struct Connection {
    mapping: ForeignMapping,
    port: EvtchnPort,
    /// The next request to take (= the next response: every request
    /// taken is answered in the same pass).
    next: RingIdx,
    /// Its port fired, or the last pass left requests waiting.
    pending: bool,
    /// The frontend's data grants kept mapped, if it reuses them
    /// (`feature-persistent`).
    persistent: Option<Persistent>,
}

/// A frontend's persistent grants (blkif.h `feature-persistent`, Linux
/// blkback's `persistent_gnts`): each reference is mapped at its first
/// use, writable, into the window (`window::WINDOW_PAGES` slots over all
/// devices), and stays mapped until the device disconnects; the data is
/// then copied with `memcpy`, no grant operation per request. A
/// reference that cannot be mapped (bad, revoked, read-only, the window
/// or maptrack full) is served by grant copy as without the feature,
/// which gives its error.
#[derive(Default)]
struct Persistent {
    maps: BTreeMap<GrantRef, WindowMapping>,
}

impl Persistent {
    /// `gref`'s mapping, mapped now if it is not yet.
    fn get(&mut self, grants: &Grants, domid: DomId, gref: GrantRef) -> Option<&WindowMapping> {
        match self.maps.entry(gref) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) => {
                #[cfg(feature = "bench-trace")]
                let mut watch = super::trace::Watch::start();
                let mapped = grants.map_persistent(domid, gref);
                #[cfg(feature = "bench-trace")]
                watch.lap(super::trace::Stage::Map);
                Some(e.insert(mapped.ok()?))
            }
        }
    }

    fn unmap_all(self, grants: &Grants) {
        for (gref, mapping) in self.maps {
            if let Err((_, e)) = grants.unmap_persistent(mapping) {
                println!("dom0: blk: unmapping persistent grant {gref} failed: {e}");
            }
        }
    }
}

impl Connection {
    fn close(self, events: &Events, grants: &Grants) {
        let _ = events.xen().evtchn_close(self.port);
        if let Some(p) = self.persistent {
            p.unmap_all(grants);
        }
        if let Err((_, e)) = grants.unmap(self.mapping) {
            println!("dom0: blk: unmapping a ring failed: {e}");
        }
    }
}

/// dom0's side of every grant copy: one request's data, page-aligned.
#[repr(C, align(4096))]
struct Bounce([u8; BOUNCE_BYTES]);

static BOUNCE: spin::Mutex<Bounce> = spin::Mutex::new(Bounce([0; BOUNCE_BYTES]));

impl BlockBackends {
    /// One pass: releases the rings of devices gone, follows every
    /// frontend's state, takes the rings' events and serves at most
    /// [`REQUESTS_PER_PASS`] requests per device, round robin. Returns
    /// whether another pass is due at once (requests left waiting, or
    /// store nodes written whose watch events are still to be sent).
    pub fn serve(
        &mut self,
        store: &mut StoreService,
        events: &Events,
        grants: &Grants,
        disk: &mut Disk,
    ) -> bool {
        for conn in self.released.drain(..) {
            conn.close(events, grants);
        }
        let mut again = false;
        for device in &mut self.devices {
            again |= device.follow_frontend(store, events, grants);
        }
        self.take_events(events);
        let n = self.devices.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            again |= self.devices[i].serve_ring(store, events, grants, disk);
        }
        self.next = (self.next + 1) % n.max(1);
        again
    }

    /// Marks the devices whose port fired.
    fn take_events(&mut self, events: &Events) {
        let mut ports = [0; MAX_DEVICES];
        let mut n = 0;
        for conn in self.devices.iter().filter_map(|d| d.conn.as_ref()) {
            ports[n] = conn.port;
            n += 1;
        }
        // Each take clears one port's mark: at most n (+1 that fired anew).
        for _ in 0..=n {
            let Some(port) = events.take(&ports[..n]) else {
                break;
            };
            let fired = self.devices.iter_mut().filter_map(|d| d.conn.as_mut());
            for conn in fired.filter(|c| c.port == port) {
                conn.pending = true;
            }
        }
    }
}

impl Device {
    /// Applies [`xenbus::next_action`]; true if it wrote to the store.
    fn follow_frontend(
        &mut self,
        store: &mut StoreService,
        events: &Events,
        grants: &Grants,
    ) -> bool {
        let theirs = self.frontend_state(store);
        match xenbus::next_action(self.state, self.conn.is_some(), theirs) {
            Action::Stay => return false,
            Action::Connect => match self.connect(store, events, grants) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.switch_state(store, XenbusState::Connected);
                }
                Err(e) => {
                    println!(
                        "dom0: blk: d{} {}: cannot connect: {e}",
                        self.domid, self.vdev
                    );
                    self.switch_state(store, XenbusState::Closing);
                }
            },
            Action::Disconnect(state) => {
                if let Some(conn) = self.conn.take() {
                    conn.close(events, grants);
                    println!("dom0: blk: d{} {}: disconnected", self.domid, self.vdev);
                }
                self.switch_state(store, state);
            }
            Action::Reopen => self.switch_state(store, XenbusState::InitWait),
        }
        true
    }

    /// Reads the frontend's parameters, maps its ring, binds its port and
    /// publishes the device's size (Linux's `connect_ring` + `connect`).
    fn connect(
        &mut self,
        store: &mut StoreService,
        events: &Events,
        grants: &Grants,
    ) -> Result<Connection, alloc::string::String> {
        let front = xenbus::frontend_path(self.domid, self.devid);
        let params = xenbus::ring_params(|key| store.read(&alloc::format!("{front}/{key}")))
            .map_err(|e| alloc::format!("{e}"))?;
        let mapping = grants
            .map(self.domid, params.ring_ref, false)
            .map_err(|e| alloc::format!("mapping ring-ref {}: {e}", params.ring_ref))?;
        let port = match events
            .xen()
            .evtchn_bind_interdomain(self.domid, params.event_channel)
        {
            Ok(port) => port,
            Err(e) => {
                let _ = grants.unmap(mapping);
                return Err(alloc::format!(
                    "binding event-channel {}: {e}",
                    params.event_channel
                ));
            }
        };
        let nodes = xenbus::connect_nodes(
            self.domid,
            self.devid,
            &self.target.extent,
            self.target.read_only,
        );
        let _ = store.write_nodes(&nodes);
        println!(
            "dom0: blk: d{} {} ({}): connected, volume {} ({} sectors{}), ring-ref {}, event-channel {}{}",
            self.domid,
            self.vdev,
            self.devid,
            self.target.extent.name,
            self.target.extent.sectors,
            if self.target.read_only { ", read-only" } else { "" },
            params.ring_ref,
            params.event_channel,
            if params.persistent { ", persistent grants" } else { "" }
        );
        Ok(Connection {
            mapping,
            port,
            next: 0,
            // Requests may have been queued before we bound the port.
            pending: true,
            persistent: params.persistent.then(Persistent::default),
        })
    }

    /// Serves up to [`REQUESTS_PER_PASS`] requests of a connected device
    /// whose port fired. True if requests are left (another pass is
    /// due) or the ring was found broken (its state was written).
    fn serve_ring(
        &mut self,
        store: &mut StoreService,
        events: &Events,
        grants: &Grants,
        disk: &mut Disk,
    ) -> bool {
        let Some(conn) = self.conn.as_mut().filter(|c| c.pending) else {
            return false;
        };
        let words: &[AtomicU32; 1024] = conn.mapping.view();
        let Ok(mut ring) = BackRing::<BlkifRequest, BlkifResponse>::attach(words, conn.next) else {
            return false;
        };
        #[cfg(feature = "bench-trace")]
        let mut watch = super::trace::Watch::start();
        // Take a batch (bounded), serve it, answer it in ring order.
        let mut reqs = [BlkifRequest::default(); BATCH_MAX];
        let (mut n, mut served) = (0, 0u32);
        let outcome = loop {
            if served == REQUESTS_PER_PASS {
                break Ok(true);
            }
            match ring.take_request() {
                Ok(Some(req)) => {
                    reqs[n] = req;
                    n += 1;
                    served += 1;
                }
                Ok(None) => match ring.final_check_for_requests() {
                    Ok(true) => continue,
                    Ok(false) => break Ok(false),
                    Err(e) => break Err(e),
                },
                Err(e) => break Err(e),
            }
        };
        #[cfg(feature = "bench-trace")]
        {
            watch.lap(super::trace::Stage::Ring);
            super::trace::served(n);
        }
        let mut outcomes = [Ok(BLKIF_RSP_OKAY); BATCH_MAX];
        let mut copier = Copier {
            grants,
            domid: self.domid,
            persistent: conn.persistent.as_mut(),
        };
        let mut bounce = BOUNCE.lock();
        let io = &mut DiskIo(disk);
        engine::execute_batch(
            &reqs[..n],
            &self.target,
            io,
            &mut copier,
            &mut bounce.0,
            &mut outcomes[..n],
        );
        drop(bounce);
        #[cfg(feature = "bench-trace")]
        let mut watch = super::trace::Watch::start();
        for (req, outcome) in reqs[..n].iter().zip(&outcomes[..n]) {
            let status = match outcome {
                Ok(status) => {
                    self.requests += 1;
                    *status
                }
                Err(e) => {
                    self.errors += 1;
                    if self.errors <= LOGGED_REFUSALS_MAX {
                        println!(
                            "dom0: blk: d{} {}: request id {:#x} op {} sector {}: {e}",
                            self.domid, self.vdev, req.id, req.operation, req.sector_number
                        );
                    }
                    e.status()
                }
            };
            let rsp = BlkifResponse {
                id: req.id,
                operation: req.operation,
                status,
                ..Default::default()
            };
            // Cannot fail: each was taken from this ring in this pass.
            let _ = ring.queue_response(&rsp);
        }
        conn.next = conn.next.wrapping_add(served);
        if ring.push_responses_and_check_notify() {
            #[cfg(feature = "bench-trace")]
            super::trace::hypercall();
            let _ = events.xen().evtchn_send(conn.port);
        }
        #[cfg(feature = "bench-trace")]
        watch.lap(super::trace::Stage::Answer);
        match outcome {
            Ok(more) => {
                conn.pending = more;
                more
            }
            Err(e) => {
                let prod = match e {
                    RingError::ProducerOverflow { prod } => prod,
                    _ => 0,
                };
                println!(
                    "dom0: blk: d{} {}: ring indices ran ahead (req_prod {prod}, next {}): device disconnected",
                    self.domid, self.vdev, conn.next
                );
                if let Some(conn) = self.conn.take() {
                    conn.close(events, grants);
                }
                self.switch_state(store, XenbusState::Closing);
                true
            }
        }
    }
}

/// The disk as the engine's [`BlockIo`].
struct DiskIo<'a>(&'a mut Disk);

impl BlockIo for DiskIo<'_> {
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ()> {
        #[cfg(feature = "bench-trace")]
        let mut watch = super::trace::Watch::start();
        let done = self.0.read_blocks(lba, buf).map_err(|_| ());
        #[cfg(feature = "bench-trace")]
        watch.lap(super::trace::Stage::Disk);
        done
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), ()> {
        #[cfg(feature = "bench-trace")]
        let mut watch = super::trace::Watch::start();
        let done = self.0.write_blocks(lba, buf).map_err(|_| ());
        #[cfg(feature = "bench-trace")]
        watch.lap(super::trace::Stage::Disk);
        done
    }

    fn flush(&mut self) -> Result<(), ()> {
        self.0.flush().map_err(|_| ())
    }
}

/// Moves data between a frontend's pages and the bounce buffer: by
/// `memcpy` through a persistent mapping where the frontend reuses its
/// grants and the page is mapped, else by grant copies named by GFN and
/// offset (dom0's memory is 1:1: address = GPA): one `GNTTABOP_copy`
/// batch per request, a segment split where it crosses a page of the
/// buffer.
struct Copier<'a> {
    grants: &'a Grants,
    domid: DomId,
    persistent: Option<&'a mut Persistent>,
}

/// A page's size as the `u16` of copy offsets and lengths.
const PAGE_BYTES: u16 = 4096;
const _: () = assert!(PAGE_BYTES as usize == PAGE_SIZE);
/// The offset bits of an address.
const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

/// Copy ops of one request at most: 11 segments, each in two pieces.
const MAX_OPS: usize = 2 * abi::xen::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST;

impl Copier<'_> {
    /// The persistent mapping of `gref`, if the frontend reuses its
    /// grants and it is (or now gets) mapped.
    fn mapped(&mut self, gref: GrantRef) -> Option<&WindowMapping> {
        let (grants, domid) = (self.grants, self.domid);
        self.persistent.as_mut()?.get(grants, domid, gref)
    }

    /// Grant copies of `segs` between the frontend's pages and the
    /// buffer at `buf` (one hypercall; nothing if `segs` is empty).
    fn run(&self, segs: &[SegmentCopy], buf: *const u8, to_guest: bool) -> Result<(), i16> {
        if segs.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "bench-trace")]
        super::trace::hypercall();
        let base = buf as u64;
        let mut ops = [GnttabCopy::default(); MAX_OPS];
        let mut n = 0;
        for s in segs {
            let mut done: u16 = 0;
            while done < s.len {
                let addr = base + (s.buf_offset + usize::from(done)) as u64;
                // The offset in its page: the low 12 bits.
                let in_page = (addr & PAGE_MASK) as u16;
                let len = (PAGE_BYTES - in_page).min(s.len - done);
                let guest = GnttabCopyPtr {
                    u: s.gref.into(),
                    domid: self.domid,
                    offset: s.page_offset + done,
                    pad0: 0,
                };
                let mine = GnttabCopyPtr {
                    u: addr >> abi::xen::PAGE_SHIFT,
                    domid: DOMID_SELF,
                    offset: in_page,
                    pad0: 0,
                };
                let (source, dest, flags) = if to_guest {
                    (mine, guest, GNTCOPY_DEST_GREF)
                } else {
                    (guest, mine, GNTCOPY_SOURCE_GREF)
                };
                ops[n] = GnttabCopy {
                    source,
                    dest,
                    len,
                    flags,
                    ..Default::default()
                };
                n += 1;
                done += len;
            }
        }
        self.grants
            .copy_batch(&mut ops[..n])
            .map_err(|_| GNTST_GENERAL_ERROR)?;
        match ops[..n].iter().find(|op| op.status != GNTST_OKAY) {
            Some(op) => Err(op.status),
            None => Ok(()),
        }
    }
}

/// The segments of one request left to grant-copy, and their count.
type Rest = (
    [SegmentCopy; abi::xen::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST],
    usize,
);

const NO_SEGMENT: SegmentCopy = SegmentCopy {
    gref: 0,
    page_offset: 0,
    buf_offset: 0,
    len: 0,
};

impl Copier<'_> {
    /// `copy(mapping, segment)` for each segment whose page is mapped;
    /// the others (and any whose copy said no) are left.
    fn memcpy_mapped(
        &mut self,
        segs: &[SegmentCopy],
        mut copy: impl FnMut(&WindowMapping, &SegmentCopy) -> bool,
    ) -> Rest {
        let mut rest: Rest = ([NO_SEGMENT; _], 0);
        for s in segs {
            if !self.mapped(s.gref).is_some_and(|m| copy(m, s)) {
                rest.0[rest.1] = *s;
                rest.1 += 1;
            }
        }
        rest
    }

    /// Moves `segs` between the frontend's pages and the buffer at `buf`
    /// (`to_guest`: out to the pages): `memcpy` through the persistent
    /// window where `copy` can, one grant-copy hypercall for the rest.
    fn transfer(
        &mut self,
        segs: &[SegmentCopy],
        buf: *const u8,
        to_guest: bool,
        copy: impl FnMut(&WindowMapping, &SegmentCopy) -> bool,
    ) -> Result<(), i16> {
        #[cfg(feature = "bench-trace")]
        let mut watch = super::trace::Watch::start();
        let rest = self.memcpy_mapped(segs, copy);
        let done = self.run(&rest.0[..rest.1], buf, to_guest);
        #[cfg(feature = "bench-trace")]
        watch.lap(super::trace::Stage::Data);
        done
    }
}

/// Where segment `s` lies in the request's buffer.
fn in_buffer(s: &SegmentCopy) -> core::ops::Range<usize> {
    s.buf_offset..s.buf_offset + usize::from(s.len)
}

impl GrantIo for Copier<'_> {
    fn copy_in(&mut self, segs: &[SegmentCopy], buf: &mut [u8]) -> Result<(), i16> {
        let base = buf.as_mut_ptr();
        self.transfer(segs, base, false, |m, s| {
            buf.get_mut(in_buffer(s))
                .is_some_and(|dst| m.read(usize::from(s.page_offset), dst))
        })
    }

    fn copy_out(&mut self, segs: &[SegmentCopy], buf: &[u8]) -> Result<(), i16> {
        self.transfer(segs, buf.as_ptr(), true, |m, s| {
            buf.get(in_buffer(s))
                .is_some_and(|src| m.write(usize::from(s.page_offset), src))
        })
    }
}
