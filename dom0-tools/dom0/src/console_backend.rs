//! dom0's PV console backend (`xen/include/public/io/console.h`), in the
//! role of Xen's xenconsoled: for every other domain that has a console
//! (`HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN` of that domain,
//! read with `HVMOP_get_param`), map its ring, bind its console event
//! channel, and when woken by it read the output, keep the last
//! [`HISTORY_BYTES`] per domain and print each complete line on the
//! hypervisor console as
//!
//! ```text
//! [<name>] <line>
//! ```
//!
//! (COM1 shows it after xen-core's `(d0) ` tag). Lines longer than
//! [`LINE_MAX`] are cut; a partial line is printed when the ring is
//! released.
//!
//! The ring is mapped through the grant the domain builder made
//! (`GNTTAB_RESERVED_CONSOLE`, boot-time domains); if there is none (the
//! toolstack's domains), through `CONTROL_OP_MAP_FOREIGN` of the console
//! PFN, as xenconsoled falls back to foreign mapping when a domain has no
//! console grant. Foreign mappings sit at [`CONSOLE_MAP_GPA`] + slot pages.
//!
//! Domains come from the control hypercall's list, rescanned every
//! [`DOMAIN_CHECK_NS`] (not for the management agent, which creates and
//! destroys domains itself: [`Backend::rescan_on_events_only`]), whenever
//! `VIRQ_DOM_EXC` fires and when asked ([`Backend::rescan_soon`]); a domain that shut down is drained one
//! last time and its ring released (unmap, close), but its history is
//! kept until the domain is gone, so that `dom0ctl console` still shows
//! what it printed. Status lines start with `dom0: console: `.

use abi::control::{
    parse_domain_name, DomainInfo, DOMAIN_FLAG_DYING, DOMAIN_FLAG_SHUTDOWN, DOMAIN_NAME_MAX,
};
use abi::convert::usize_from_u64;
use abi::xen::domid::{DomId, DOMID_INVALID};
use abi::xen::event_channel::{EvtchnPort, VIRQ_DOM_EXC};
use abi::xen::grant_table::GNTTAB_RESERVED_CONSOLE;
use abi::xen::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use abi::xen::PAGE_SHIFT;
use guest_pv_shim::arch::foreign::ForeignFrame;
use guest_pv_shim::pvconsole::{History, LineAssembler, XenconsShared};
use guest_pv_shim::{println, Events, ForeignMapping, GrantOpError, Grants, Xen, XenError};

/// Consoles known at once: every domain the hypervisor can run but dom0
/// (xen-core's `MAX_DOMAINS` is 64).
pub const MAX_CONSOLES: usize = 63;
/// Output kept per domain (the last 4 KiB).
pub const HISTORY_BYTES: usize = 4096;
/// Longest line printed in one piece.
pub const LINE_MAX: usize = 160;
/// How often the domain list is rescanned (ns of system time).
pub const DOMAIN_CHECK_NS: u64 = 100_000_000;
/// First GPA of dom0's window for foreign-mapped console rings, one page
/// per console slot: past RAM and the grant hole (2 GiB), and clear of
/// the domain builder's window, inside the 4 GiB identity map.
pub const CONSOLE_MAP_GPA: u64 = 0xE000_0000;
/// Bytes read from one ring per wake-up, so one domain cannot starve the others.
const DRAIN_BUDGET: usize = 4096;
/// Domains examined per list call, and list calls per scan.
const MAX_LIST_CALLS: usize = 64;

/// How a console's ring page is mapped into dom0.
enum RingMapping {
    /// Through the domain's console grant.
    Grant(ForeignMapping),
    /// Through `CONTROL_OP_MAP_FOREIGN` of its console PFN.
    Foreign(ForeignFrame),
}

/// A mapped ring and our end of its event channel.
struct Ring {
    mapping: RingMapping,
    port: EvtchnPort,
}

impl Ring {
    fn shared(&self) -> &XenconsShared {
        match &self.mapping {
            RingMapping::Grant(m) => m.view(),
            RingMapping::Foreign(f) => f.view(),
        }
    }
}

/// Why a console's output ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleEnd {
    /// The domain shut down with this Xen `SHUTDOWN_*` reason.
    Shutdown(u32),
    /// The domain was destroyed (or is being destroyed).
    Destroyed,
}

/// One domain's console.
struct Console {
    domid: DomId,
    name: [u8; DOMAIN_NAME_MAX],
    name_len: usize,
    /// The ring while the domain runs; `None` once it ended.
    ring: Option<Ring>,
    ended: Option<ConsoleEnd>,
    history: History<HISTORY_BYTES>,
    line: LineAssembler<LINE_MAX>,
    /// Output left in the ring after the last budget ran out.
    more: bool,
}

impl Console {
    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// Why the backend could not start.
#[derive(Clone, Copy, Debug)]
pub enum StartError {
    /// Event channels could not be set up.
    Events(XenError),
    /// Grant tables could not be set up.
    Grants(GrantOpError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Events(e) => write!(f, "event channels: {e}"),
            Self::Grants(e) => write!(f, "grant tables: {e}"),
        }
    }
}

/// Bytes oldest first, as two slices (a ring buffer's older and newer part).
pub type TwoSlices<'a> = (&'a [u8], &'a [u8]);

/// A console's output after a position, for a stream
/// ([`Backend::output_since`]). Bytes that fell out of the history before
/// they were taken are skipped.
pub struct Output<'a> {
    /// The bytes, oldest first, as two slices.
    pub bytes: TwoSlices<'a>,
    /// Position after them (pass it to the next call).
    pub next: u64,
    /// Set once the console ended and everything was taken.
    pub ended: Option<ConsoleEnd>,
}

/// The backend: known consoles, and the domains already looked at.
pub struct Backend {
    events: Events,
    grants: Grants,
    consoles: spin::MutexGuard<'static, [Option<Console>; MAX_CONSOLES]>,
    /// Port of `VIRQ_DOM_EXC`, if the hypervisor sends it.
    dom_exc: Option<EvtchnPort>,
    /// Live domains examined that have no console (or failed), so each
    /// is reported once; pruned when they are gone, as domids are reused.
    examined: [DomId; MAX_CONSOLES],
    examined_len: usize,
    /// System time of the next scan; `u64::MAX`: only when asked.
    next_check: u64,
    /// Rescan every [`DOMAIN_CHECK_NS`] (else only on `VIRQ_DOM_EXC` and
    /// when asked).
    periodic: bool,
    /// Whether another domain than dom0 was alive at the last scan.
    domus_alive: bool,
    /// DomUs the last scan found shut down or dying (for the store's
    /// `@releaseDomain`).
    stopped: [DomId; MAX_CONSOLES],
    stopped_len: usize,
}

static CONSOLES: spin::Mutex<[Option<Console>; MAX_CONSOLES]> =
    spin::Mutex::new([const { None }; MAX_CONSOLES]);

impl Backend {
    /// Sets up events and grants and attaches every domain with a console.
    pub fn start(xen: &Xen, ram_end: u64) -> Result<Backend, StartError> {
        let events = Events::init(xen).map_err(StartError::Events)?;
        let grants = Grants::init(xen, ram_end).map_err(StartError::Grants)?;
        let dom_exc = xen.evtchn_bind_virq(VIRQ_DOM_EXC, 0).ok();
        let mut backend = Backend {
            events,
            grants,
            consoles: CONSOLES.lock(),
            dom_exc,
            examined: [DOMID_INVALID; MAX_CONSOLES],
            examined_len: 0,
            next_check: 0,
            periodic: true,
            domus_alive: true,
            stopped: [DOMID_INVALID; MAX_CONSOLES],
            stopped_len: 0,
        };
        println!(
            "dom0: console: backend started (VIRQ_DOM_EXC {})",
            match dom_exc {
                Some(_) => "bound",
                None => "unavailable: list rescanned on a timer only",
            }
        );
        backend.scan();
        Ok(backend)
    }

    /// The event-channel client (for [`Events::block_until`]).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Rescans only when `VIRQ_DOM_EXC` fires or when asked
    /// ([`Backend::rescan_soon`]), not on a timer, if the hypervisor sends
    /// `VIRQ_DOM_EXC`: for a caller that creates and destroys the domains
    /// itself (the management agent), so that an idle dom0 sleeps.
    pub fn rescan_on_events_only(&mut self) {
        if self.dom_exc.is_some() {
            self.periodic = false;
            if self.next_check != 0 {
                self.next_check = u64::MAX;
            }
        }
    }

    /// When the backend next needs to run without an event (a rescan),
    /// if ever.
    pub fn next_scan(&self) -> Option<u64> {
        (self.next_check != u64::MAX).then_some(self.next_check)
    }

    /// The domUs the last domain scan found shut down or dying.
    pub fn stopped_domains(&self) -> &[DomId] {
        &self.stopped[..self.stopped_len]
    }

    /// The grant-table client (for the store's ring mappings).
    pub fn grants(&self) -> Grants {
        self.grants
    }

    /// The hypercall interface.
    pub fn xen(&self) -> &Xen {
        self.events.xen()
    }

    /// vCPU 0's system time, ns.
    pub fn now(&self) -> Result<u64, XenError> {
        self.events
            .now()
            .ok_or(XenError(abi::xen::errno::Errno::EAGAIN.to_return()))
    }

    /// Serves consoles until system time `deadline_ns`, sleeping between
    /// events; with a deadline already past, takes what is pending and
    /// returns without sleeping.
    pub fn serve_until(&mut self, deadline_ns: u64) -> Result<(), XenError> {
        loop {
            self.drain_leftovers();
            let now = self.now()?;
            if now >= self.next_check {
                self.scan();
            }
            if now >= deadline_ns {
                return self.take_pending();
            }
            self.wait_and_drain(deadline_ns.min(self.next_check))?;
        }
    }

    /// Serves consoles until no domain but dom0 is alive, then releases all.
    pub fn serve_until_domus_down(&mut self) -> Result<(), XenError> {
        while self.domus_alive {
            let next = self.next_check;
            self.serve_until(next)?;
        }
        self.release_all();
        Ok(())
    }

    /// Drains and releases every ring (before dom0 powers off).
    pub fn release_all(&mut self) {
        for console in self.consoles.iter_mut().flatten() {
            release(&self.events, &self.grants, console, "dom0 stops");
        }
    }

    /// Makes the next service pass rescan the domain list (a domain was
    /// just created or destroyed).
    pub fn rescan_soon(&mut self) {
        self.next_check = 0;
    }

    /// Rescans the domain list now (a client asks for a console the
    /// backend may not have attached yet).
    pub fn rescan(&mut self) {
        self.scan();
    }

    /// Drains and releases `domid`'s ring before it is destroyed (its
    /// history stays until the domain is gone from the list).
    pub fn forget(&mut self, domid: DomId) {
        if let Some(console) = self.console_mut(domid) {
            console.ended.get_or_insert(ConsoleEnd::Destroyed);
        }
        let (events, grants) = (self.events, self.grants);
        if let Some(console) = self.console_mut(domid) {
            release(&events, &grants, console, "domain destroyed");
        }
        self.rescan_soon();
    }

    /// `domid`'s name and kept output (oldest first, two slices) and the
    /// stream position after it; `None` if the backend has no console for it.
    pub fn history(&self, domid: DomId) -> Option<(&str, TwoSlices<'_>, u64)> {
        let console = self.console(domid)?;
        Some((
            console.name(),
            console.history.contents(),
            console.history.total(),
        ))
    }

    /// `domid`'s output from stream position `from` on (see
    /// [`Backend::history`]); `None` once the console is gone (the domain
    /// was destroyed and the list rescanned).
    pub fn output_since(&self, domid: DomId, from: u64) -> Option<Output<'_>> {
        let console = self.console(domid)?;
        let total = console.history.total();
        let (a, b) = console.history.contents();
        let kept = (a.len() + b.len()) as u64;
        let start = from.max(total - kept).min(total);
        // Skip the kept bytes before `start`.
        let skip = usize_from_u64(kept - (total - start));
        let bytes = if skip < a.len() {
            (&a[skip..], b)
        } else {
            (&b[skip - a.len()..], &[][..])
        };
        Some(Output {
            bytes,
            next: total,
            ended: console.ended.filter(|_| console.ring.is_none()),
        })
    }

    /// Writes console input for `domid` into its `in` ring and notifies
    /// it; bytes written (0 when the ring is full), `None` if `domid` has
    /// no live console or its ring is corrupt.
    pub fn write_input(&mut self, domid: DomId, bytes: &[u8]) -> Option<usize> {
        let ring = self.console(domid)?.ring.as_ref()?;
        let n = ring.shared().write_input(bytes).ok()?;
        if n > 0 {
            let _ = self.events.xen().evtchn_send(ring.port);
        }
        Some(n)
    }

    fn console(&self, domid: DomId) -> Option<&Console> {
        self.consoles.iter().flatten().find(|c| c.domid == domid)
    }

    fn console_mut(&mut self, domid: DomId) -> Option<&mut Console> {
        self.consoles
            .iter_mut()
            .flatten()
            .find(|c| c.domid == domid)
    }

    /// The ports a wait listens on: every live ring's and `VIRQ_DOM_EXC`'s.
    fn ports(&self) -> ([EvtchnPort; MAX_CONSOLES + 1], usize) {
        let mut ports = [0; MAX_CONSOLES + 1];
        let mut n = 0;
        let rings = self
            .consoles
            .iter()
            .flatten()
            .filter_map(|c| c.ring.as_ref());
        for port in rings.map(|r| r.port).chain(self.dom_exc) {
            ports[n] = port;
            n += 1;
        }
        (ports, n)
    }

    fn wait_and_drain(&mut self, until: u64) -> Result<(), XenError> {
        let (ports, n) = self.ports();
        if let Some(port) = self.events.wait_any(&ports[..n], Some(until))? {
            self.fired(port);
        }
        Ok(())
    }

    /// Handles every port that fired, without sleeping.
    fn take_pending(&mut self) -> Result<(), XenError> {
        let (ports, n) = self.ports();
        for _ in 0..n {
            match self.events.take(&ports[..n]) {
                Some(port) => self.fired(port),
                None => break,
            }
        }
        Ok(())
    }

    fn fired(&mut self, port: EvtchnPort) {
        if Some(port) == self.dom_exc {
            self.next_check = 0;
            return;
        }
        let events = self.events;
        if let Some(console) = self
            .consoles
            .iter_mut()
            .flatten()
            .find(|c| c.ring.as_ref().is_some_and(|r| r.port == port))
        {
            drain(&events, console);
        }
    }

    fn drain_leftovers(&mut self) {
        for console in self.consoles.iter_mut().flatten().filter(|c| c.more) {
            drain(&self.events, console);
        }
    }

    /// Lists the domains: attaches new ones with a console, releases the
    /// rings of those that shut down, forgets those that are gone, notes
    /// whether any domU lives.
    fn scan(&mut self) {
        let xen = *self.events.xen();
        let mut listed = [false; MAX_CONSOLES];
        let mut still_examined = 0;
        let mut domus_alive = false;
        let mut stopped_len = 0;
        let mut start = 0;
        for _ in 0..MAX_LIST_CALLS {
            let Ok(list) = xen.domain_list(start) else {
                break;
            };
            let count = (list.nr_entries as usize).min(list.domains.len());
            for info in &list.domains[..count] {
                // dom0 itself has no console ring here; a control domU does.
                if info.domid == 0 {
                    continue;
                }
                let stopped = info.flags & (DOMAIN_FLAG_SHUTDOWN | DOMAIN_FLAG_DYING) != 0;
                domus_alive |= !stopped;
                if stopped && stopped_len < MAX_CONSOLES {
                    self.stopped[stopped_len] = info.domid;
                    stopped_len += 1;
                }
                if let Some(i) = self.examined[..self.examined_len]
                    .iter()
                    .position(|&d| d == info.domid)
                {
                    // Keep it, in the front part of the array.
                    self.examined.swap(i, still_examined);
                    still_examined += 1;
                    continue;
                }
                if self.slot_of(info.domid).is_none() && info.flags & DOMAIN_FLAG_DYING == 0 {
                    // A domU that already shut down still has its ring
                    // (until it is destroyed): attach, drain, release.
                    if !self.attach(info) && self.examined_len < MAX_CONSOLES {
                        self.examined.swap(self.examined_len, still_examined);
                        self.examined[still_examined] = info.domid;
                        self.examined_len += 1;
                        still_examined += 1;
                    }
                }
                if let Some(i) = self.slot_of(info.domid) {
                    listed[i] = true;
                    self.update(i, info);
                }
            }
            if list.next_domid == DOMID_INVALID || list.next_domid <= start {
                break;
            }
            start = list.next_domid;
        }
        self.examined_len = still_examined;
        for (slot, listed) in self.consoles.iter_mut().zip(listed) {
            if !listed {
                if let Some(mut console) = slot.take() {
                    console.ended.get_or_insert(ConsoleEnd::Destroyed);
                    release(&self.events, &self.grants, &mut console, "domain gone");
                }
            }
        }
        self.domus_alive = domus_alive;
        self.stopped_len = stopped_len;
        self.next_check = if self.periodic {
            self.events.now().unwrap_or(0) + DOMAIN_CHECK_NS
        } else {
            u64::MAX
        };
    }

    /// Releases slot `i`'s ring if its domain (`info`) shut down or is dying.
    fn update(&mut self, i: usize, info: &DomainInfo) {
        let Some(console) = self.consoles[i].as_mut() else {
            return;
        };
        let end = if info.flags & DOMAIN_FLAG_DYING != 0 {
            ConsoleEnd::Destroyed
        } else if info.flags & DOMAIN_FLAG_SHUTDOWN != 0 {
            ConsoleEnd::Shutdown(info.shutdown_reason)
        } else {
            return;
        };
        console.ended.get_or_insert(end);
        release(&self.events, &self.grants, console, "domain shut down");
    }

    fn slot_of(&self, domid: DomId) -> Option<usize> {
        self.consoles
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.domid == domid))
    }

    /// Attaches `info`'s console; false if it has none or it failed.
    fn attach(&mut self, info: &DomainInfo) -> bool {
        let domid = info.domid;
        let name = parse_domain_name(&info.name).unwrap_or("?");
        let xen = *self.events.xen();
        let (pfn, evtchn) = match (
            xen.hvm_get_param_of(domid, HVM_PARAM_CONSOLE_PFN),
            xen.hvm_get_param_of(domid, HVM_PARAM_CONSOLE_EVTCHN),
        ) {
            (Ok(pfn), Ok(evtchn)) if pfn != 0 && evtchn != 0 => (pfn, evtchn),
            (pfn, evtchn) => {
                println!("dom0: console: d{domid} ({name}) has no console (pfn {pfn:?}, evtchn {evtchn:?})");
                return false;
            }
        };
        let Some(slot) = self.consoles.iter().position(Option::is_none) else {
            println!(
                "dom0: console: d{domid} ({name}) not served: {MAX_CONSOLES} consoles already"
            );
            return false;
        };
        let Some(mapping) = self.map_ring(domid, name, pfn, slot) else {
            return false;
        };
        let port = match u32::try_from(evtchn)
            .map_err(|_| XenError(abi::xen::errno::Errno::EINVAL.to_return()))
            .and_then(|p| xen.evtchn_bind_interdomain(domid, p))
        {
            Ok(port) => port,
            Err(e) => {
                println!("dom0: console: d{domid} ({name}) bind of port {evtchn} failed: {e}");
                unmap(&self.grants, xen, domid, mapping);
                return false;
            }
        };
        let how = match mapping {
            RingMapping::Grant(_) => "grant",
            RingMapping::Foreign(_) => "foreign mapping",
        };
        let mut console = Console {
            domid,
            name: [0; DOMAIN_NAME_MAX],
            name_len: name.len().min(DOMAIN_NAME_MAX),
            ring: Some(Ring { mapping, port }),
            ended: None,
            history: History::new(),
            line: LineAssembler::new(),
            more: false,
        };
        console.name[..console.name_len].copy_from_slice(&name.as_bytes()[..console.name_len]);
        println!(
            "dom0: console: attached d{domid} ({name}) gfn={pfn:#x} port {evtchn} -> local {port}, ring by {how}"
        );
        drain(&self.events, &mut console);
        self.consoles[slot] = Some(console);
        true
    }

    /// Maps `domid`'s console ring: its console grant, else the frame at
    /// `pfn` at console slot `slot` of [`CONSOLE_MAP_GPA`].
    fn map_ring(&self, domid: DomId, name: &str, pfn: u64, slot: usize) -> Option<RingMapping> {
        let grant_error = match self.grants.map(domid, GNTTAB_RESERVED_CONSOLE, false) {
            Ok(m) => return Some(RingMapping::Grant(m)),
            Err(e) => e,
        };
        let at_gfn = (CONSOLE_MAP_GPA >> PAGE_SHIFT) + slot as u64;
        match self.events.xen().map_foreign_frame(domid, pfn, at_gfn) {
            Ok(frame) => Some(RingMapping::Foreign(frame)),
            Err(e) => {
                println!(
                    "dom0: console: d{domid} ({name}) map of grant {GNTTAB_RESERVED_CONSOLE} failed ({grant_error}), map of gfn {pfn:#x} failed ({e})"
                );
                None
            }
        }
    }
}

/// Reads what `console`'s ring holds (up to the budget), keeps it in the
/// history, prints complete lines, and notifies the frontend of the space.
fn drain(events: &Events, console: &mut Console) {
    let Some(ring) = console.ring.as_ref() else {
        return;
    };
    let xen = events.xen();
    let mut buf = [0u8; 512];
    let mut total = 0;
    console.more = false;
    while total < DRAIN_BUDGET {
        let n = match ring.shared().read_output(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                ring.shared().discard_output();
                println!(
                    "dom0: console: d{} ({}): {e}; output dropped",
                    console.domid,
                    console.name()
                );
                0
            }
        };
        if n == 0 {
            break;
        }
        total += n;
        console.history.push(&buf[..n]);
        let (name, name_len) = (console.name, console.name_len);
        console
            .line
            .feed(&buf[..n], |line| print_line(xen, &name[..name_len], line));
    }
    console.more = total >= DRAIN_BUDGET;
    if total > 0 {
        let _ = xen.evtchn_send(ring.port);
    }
}

/// Prints `[<name>] <line>` with one CONSOLEIO_write (xen-core turns
/// non-printable bytes into `?`).
fn print_line(xen: &Xen, name: &[u8], line: &[u8]) {
    let mut out = [0u8; DOMAIN_NAME_MAX + LINE_MAX + 4];
    let mut len = 0;
    for part in [b"[".as_slice(), name, b"] ", line, b"\n"] {
        out[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    let _ = xen.console_write(&out[..len]);
}

/// Last drain, pending partial line, then unmap and close; the history
/// stays. Nothing if the ring is already released.
fn release(events: &Events, grants: &Grants, console: &mut Console, why: &str) {
    drain(events, console);
    let Some(ring) = console.ring.take() else {
        return;
    };
    console.more = false;
    let (name, name_len) = (console.name, console.name_len);
    console
        .line
        .flush(|line| print_line(events.xen(), &name[..name_len], line));
    println!(
        "dom0: console: released d{} ({}): {why}; {} bytes of output, last {} kept",
        console.domid,
        console.name(),
        console.history.total(),
        console.history.total().min(HISTORY_BYTES as u64)
    );
    let _ = events.xen().evtchn_close(ring.port);
    unmap(grants, *events.xen(), console.domid, ring.mapping);
}

fn unmap(grants: &Grants, xen: Xen, domid: DomId, mapping: RingMapping) {
    let failed = |e: &dyn core::fmt::Display| println!("dom0: console: d{domid} unmap failed: {e}");
    match mapping {
        RingMapping::Grant(m) => {
            if let Err((_, e)) = grants.unmap(m) {
                failed(&e);
            }
        }
        RingMapping::Foreign(f) => {
            if let Err((_, e)) = xen.unmap_foreign_frame(f) {
                failed(&e);
            }
        }
    }
}
