//! Reaching XenStore the way a Xen HVM/PVH guest does (Linux's
//! `xenbus_probe.c`, `xen_hvm_init` path): `HVMOP_get_param`
//! `HVM_PARAM_STORE_PFN` gives the GFN of the domain's
//! `struct xenstore_domain_interface` page (the domain builder put it in
//! our RAM), `HVM_PARAM_STORE_EVTCHN` the unbound port dom0 has bound to
//! its store. [`connect`] views that page and returns a
//! [`crate::xenbus::Client`]; every wait sleeps on the port with
//! [`Events::wait_any`] (no spinning).

use abi::xen::event_channel::EvtchnPort;
use abi::xen::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};

use super::evtchn::Events;
use super::phys::IdentityMap;
use super::shared_page::view_at;
use crate::error::XenError;
use crate::xenbus::ring::XenstoreInterface;
use crate::xenbus::{Client, Transport, XenbusError};

/// Why the store could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `HVMOP_get_param` failed.
    Param(XenError),
    /// The domain has no store (a parameter is 0).
    NoStore,
    /// The page is outside what the shim maps, or the port is too large.
    BadParam,
}

/// The store's ring page and event channel.
pub struct StoreRing {
    events: Events,
    port: EvtchnPort,
    page: &'static XenstoreInterface,
    timeout_ns: Option<u64>,
}

impl StoreRing {
    /// The store's event-channel port.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Makes each wait give up (`XenbusError::Timeout`) after `ns` of
    /// system time; `None` (the default) waits as long as it takes, as
    /// Linux does.
    pub fn set_timeout(&mut self, ns: Option<u64>) {
        self.timeout_ns = ns;
    }

    /// The raw page, for tests of the store's defences (corrupting the
    /// indices); drivers never need it.
    pub fn page(&self) -> &'static XenstoreInterface {
        self.page
    }
}

impl Transport for StoreRing {
    fn page(&self) -> &XenstoreInterface {
        self.page
    }

    fn notify(&mut self) {
        // Fails only if the port is gone; the wait then times out or the
        // page's `error` says why.
        let _ = self.events.xen().evtchn_send(self.port);
    }

    fn wait(&mut self) -> Result<(), XenbusError> {
        let deadline = match self.timeout_ns {
            Some(ns) => Some(
                self.events
                    .now()
                    .ok_or(XenbusError::Timeout)?
                    .saturating_add(ns),
            ),
            None => None,
        };
        match self.events.wait_any(&[self.port], deadline) {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(_) => Err(XenbusError::Timeout),
        }
    }
}

/// Starts the event-channel client ([`Events::init`]) and connects: what
/// a kernel that does nothing else with events calls.
pub fn init(xen: &super::hypercall::Xen) -> Result<Client<StoreRing>, ConnectError> {
    let events = Events::init(xen).map_err(ConnectError::Param)?;
    connect(&events)
}

/// Finds the store through the HVM parameters and returns a client on it.
pub fn connect(events: &Events) -> Result<Client<StoreRing>, ConnectError> {
    let xen = events.xen();
    let pfn = xen
        .hvm_get_param(HVM_PARAM_STORE_PFN)
        .map_err(ConnectError::Param)?;
    let port = xen
        .hvm_get_param(HVM_PARAM_STORE_EVTCHN)
        .map_err(ConnectError::Param)?;
    if pfn == 0 || port == 0 {
        return Err(ConnectError::NoStore);
    }
    let gpa = pfn.checked_shl(abi::xen::PAGE_SHIFT).unwrap_or(0);
    let port = EvtchnPort::try_from(port).map_err(|_| ConnectError::BadParam)?;
    if gpa >> abi::xen::PAGE_SHIFT != pfn || !IdentityMap::covers(gpa, abi::xen::PAGE_SIZE as u64) {
        return Err(ConnectError::BadParam);
    }
    // SAFETY: the store page the domain builder gave us: page-aligned (a
    // PFN), identity-mapped (checked), ours for the domain's life and
    // viewed only as atomics.
    let page = unsafe { view_at(gpa) };
    Ok(Client::new(StoreRing {
        events: *events,
        port,
        page,
        timeout_ns: None,
    }))
}
