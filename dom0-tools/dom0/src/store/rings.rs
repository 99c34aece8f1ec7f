//! The domains' store rings in dom0, as xenstored's `domain.c` holds
//! them: on `XS_INTRODUCE` map the domain's `xenstore_domain_interface`
//! (its grant `GNTTAB_RESERVED_XENSTORE`, else a foreign mapping of
//! `HVM_PARAM_STORE_PFN`, as xenstored falls back to `xenforeignmemory`),
//! bind the port it offered dom0, and service the ring whenever that port
//! fires or the store has output for the domain (a watch event); notify
//! the domain when anything moved. A ring that breaks the protocol
//! (`ring::service` fails) loses its connection alone: its mapping and
//! port go, the other domains are served on.

use abi::xen::domid::DomId;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::GNTTAB_RESERVED_XENSTORE;
use abi::xen::PAGE_SHIFT;
use guest_pv_shim::arch::foreign::ForeignFrame;
use guest_pv_shim::xenbus::ring::XenstoreInterface;
use guest_pv_shim::{println, Events, ForeignMapping, Grants};
use xenstore::{ring, ConnId, Store};

use super::page::RingPage;

/// Domains whose rings are served at once: every domain but dom0
/// (xen-core's `MAX_DOMAINS` is 64).
pub const MAX_RINGS: usize = 63;
/// First GPA of dom0's window for foreign-mapped store rings, one page
/// per slot: right after the console backend's window
/// (`console_backend::CONSOLE_MAP_GPA`, 64 pages).
pub const STORE_MAP_GPA: u64 = crate::console_backend::CONSOLE_MAP_GPA + (64 << PAGE_SHIFT);

/// How a ring page is mapped into dom0.
enum Mapping {
    /// Through the domain's `GNTTAB_RESERVED_XENSTORE` grant.
    Grant(ForeignMapping),
    /// Through `CONTROL_OP_MAP_FOREIGN` of its store PFN.
    Foreign(ForeignFrame),
}

/// One domain's mapped ring and dom0's end of its event channel.
struct DomainRing {
    domid: DomId,
    port: EvtchnPort,
    mapping: Mapping,
}

impl DomainRing {
    fn page(&self) -> &XenstoreInterface {
        match &self.mapping {
            Mapping::Grant(m) => m.view(),
            Mapping::Foreign(f) => f.view(),
        }
    }
}

/// The rings being served.
pub struct Rings {
    slots: [Option<DomainRing>; MAX_RINGS],
}

impl Rings {
    /// No rings yet.
    pub const fn new() -> Self {
        Rings {
            slots: [const { None }; MAX_RINGS],
        }
    }

    /// Maps `domid`'s ring (guest frame `gfn`), binds its port `remote`
    /// and serves what it already holds. On failure the store's
    /// connection of the domain is dropped (said on COM1).
    pub fn attach(
        &mut self,
        store: &mut Store,
        events: &Events,
        grants: &Grants,
        (domid, gfn, remote): (DomId, u64, u32),
    ) {
        self.detach(events, grants, domid, "re-introduced");
        match self.map_and_bind(events, grants, domid, gfn, remote) {
            Ok((slot, how)) => {
                println!(
                    "dom0: store: introduced d{domid}: ring gfn {gfn:#x} by {how}, port {remote}"
                );
                if let Some(ring) = self.slots[slot].as_ref() {
                    ring::init_page(&mut RingPage(ring.page()));
                }
                self.service(store, events, grants, slot);
            }
            Err(why) => {
                println!("dom0: store: d{domid} not connected: {why}");
                store.disconnect(ConnId::Domain(domid));
            }
        }
    }

    fn map_and_bind(
        &mut self,
        events: &Events,
        grants: &Grants,
        domid: DomId,
        gfn: u64,
        remote: u32,
    ) -> Result<(usize, &'static str), alloc::string::String> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| alloc::format!("{MAX_RINGS} rings already"))?;
        let xen = events.xen();
        let (mapping, how) = match grants.map(domid, GNTTAB_RESERVED_XENSTORE, false) {
            Ok(m) => (Mapping::Grant(m), "grant"),
            Err(grant_error) => {
                let at = (STORE_MAP_GPA >> PAGE_SHIFT) + slot as u64;
                let frame = xen.map_foreign_frame(domid, gfn, at).map_err(|e| {
                    alloc::format!("map of grant {GNTTAB_RESERVED_XENSTORE} failed ({grant_error}), map of gfn {gfn:#x} failed ({e})")
                })?;
                (Mapping::Foreign(frame), "foreign mapping")
            }
        };
        match xen.evtchn_bind_interdomain(domid, remote) {
            Ok(port) => {
                self.slots[slot] = Some(DomainRing {
                    domid,
                    port,
                    mapping,
                });
                Ok((slot, how))
            }
            Err(e) => {
                unmap(events, grants, domid, mapping);
                Err(alloc::format!("bind of port {remote} failed: {e}"))
            }
        }
    }

    /// Unmaps `domid`'s ring and closes its port, if it has one.
    pub fn detach(&mut self, events: &Events, grants: &Grants, domid: DomId, why: &str) {
        let Some(slot) = self.slot_of(domid) else {
            return;
        };
        if let Some(ring) = self.slots[slot].take() {
            println!("dom0: store: d{domid} ring released: {why}");
            let _ = events.xen().evtchn_close(ring.port);
            unmap(events, grants, domid, ring.mapping);
        }
    }

    fn slot_of(&self, domid: DomId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|r| r.domid == domid))
    }

    /// Serves every ring whose port fired or that has output waiting.
    pub fn serve(&mut self, store: &mut Store, events: &Events, grants: &Grants) {
        let mut ports = [0; MAX_RINGS];
        let mut n = 0;
        for ring in self.slots.iter().flatten() {
            ports[n] = ring.port;
            n += 1;
        }
        let mut fired = [false; MAX_RINGS];
        for _ in 0..n {
            let Some(port) = events.take(&ports[..n]) else {
                break;
            };
            if let Some(slot) = self
                .slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|r| r.port == port))
            {
                fired[slot] = true;
            }
        }
        for (slot, fired) in fired.into_iter().enumerate() {
            let waiting = self.slots[slot]
                .as_ref()
                .is_some_and(|r| store.has_output(ConnId::Domain(r.domid)));
            if fired || waiting {
                self.service(store, events, grants, slot);
            }
        }
    }

    /// One `ring::service` of the ring in `slot`: notify on progress,
    /// detach on a protocol violation.
    fn service(&mut self, store: &mut Store, events: &Events, grants: &Grants, slot: usize) {
        let Some(ring) = self.slots[slot].as_ref() else {
            return;
        };
        let domid = ring.domid;
        match ring::service(store, domid, &mut RingPage(ring.page())) {
            Ok(true) => {
                let _ = events.xen().evtchn_send(ring.port);
            }
            Ok(false) => {}
            Err(e) => {
                println!(
                    "dom0: store: d{domid} connection dropped: {e:?}; other domains are served on"
                );
                // The guest may read `error` now.
                let _ = events.xen().evtchn_send(ring.port);
                self.detach(events, grants, domid, "protocol violation");
            }
        }
    }
}

fn unmap(events: &Events, grants: &Grants, domid: DomId, mapping: Mapping) {
    let failed = |e: &dyn core::fmt::Display| println!("dom0: store: d{domid} unmap failed: {e}");
    match mapping {
        Mapping::Grant(m) => {
            if let Err((_, e)) = grants.unmap(m) {
                failed(&e);
            }
        }
        Mapping::Foreign(f) => {
            if let Err((_, e)) = events.xen().unmap_foreign_frame(f) {
                failed(&e);
            }
        }
    }
}
