//! dom0's PV console backend (`xen/include/public/io/console.h`), in the
//! role of Xen's xenconsoled: for every other domain that has a console
//! (`HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN` of that domain,
//! read with `HVMOP_get_param`), map its ring through the grant the
//! domain builder made (`GNTTAB_RESERVED_CONSOLE`), bind its console
//! event channel, and when woken by it read the output, keep the last
//! [`HISTORY_BYTES`] per domain and print each complete line on the
//! hypervisor console as
//!
//! ```text
//! [<name>] <line>
//! ```
//!
//! (COM1 shows it after xen-core's `(d0) ` tag). Lines longer than
//! [`LINE_MAX`] are cut; a partial line is printed when its domain is
//! gone. Domains come from the control hypercall's list, rescanned every
//! [`DOMAIN_CHECK_NS`] and whenever `VIRQ_DOM_EXC` fires; a domain that
//! shut down or disappeared is drained one last time and released
//! (unmap, close). Status lines start with `dom0: console: `.

use abi::control::{
    parse_domain_name, DomainInfo, DOMAIN_FLAG_DYING, DOMAIN_FLAG_SHUTDOWN, DOMAIN_NAME_MAX,
};
use abi::xen::domid::{DomId, DOMID_INVALID};
use abi::xen::event_channel::{EvtchnPort, VIRQ_DOM_EXC};
use abi::xen::grant_table::GNTTAB_RESERVED_CONSOLE;
use abi::xen::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use guest_pv_shim::pvconsole::{History, LineAssembler, XenconsShared};
use guest_pv_shim::{println, Events, ForeignMapping, GrantOpError, Grants, Xen, XenError};

/// Consoles served at once.
pub const MAX_CONSOLES: usize = 16;
/// Output kept per domain (the last 4 KiB).
pub const HISTORY_BYTES: usize = 4096;
/// Longest line printed in one piece.
pub const LINE_MAX: usize = 160;
/// How often the domain list is rescanned (ns of system time).
pub const DOMAIN_CHECK_NS: u64 = 100_000_000;
/// Bytes read from one ring per wake-up, so one domain cannot starve the others.
const DRAIN_BUDGET: usize = 4096;
/// Domains examined per list call, and list calls per scan.
const MAX_LIST_CALLS: usize = 64;

/// One served console.
struct Console {
    domid: DomId,
    name: [u8; DOMAIN_NAME_MAX],
    name_len: usize,
    mapping: ForeignMapping,
    /// Our end of its console event channel.
    port: EvtchnPort,
    history: History<HISTORY_BYTES>,
    line: LineAssembler<LINE_MAX>,
    /// Output left in the ring after the last budget ran out.
    more: bool,
}

impl Console {
    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    fn ring(&self) -> &XenconsShared {
        self.mapping.view()
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

/// The backend: served consoles, and the domains already looked at.
pub struct Backend {
    events: Events,
    grants: Grants,
    consoles: spin::MutexGuard<'static, [Option<Console>; MAX_CONSOLES]>,
    /// Port of `VIRQ_DOM_EXC`, if the hypervisor sends it.
    dom_exc: Option<EvtchnPort>,
    /// Domains examined (served, without console, or failed), so each is
    /// reported once.
    examined: [DomId; MAX_CONSOLES * 4],
    examined_len: usize,
    next_check: u64,
    /// Whether another domain than dom0 was alive at the last scan.
    domus_alive: bool,
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
            examined: [DOMID_INVALID; MAX_CONSOLES * 4],
            examined_len: 0,
            next_check: 0,
            domus_alive: true,
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

    /// Serves consoles until system time `deadline_ns`.
    pub fn serve_until(&mut self, deadline_ns: u64) -> Result<(), XenError> {
        loop {
            self.drain_leftovers();
            let now = self.now()?;
            if now >= self.next_check {
                self.scan();
            }
            if now >= deadline_ns {
                return Ok(());
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

    /// Drains and releases every console (before dom0 powers off).
    pub fn release_all(&mut self) {
        for slot in self.consoles.iter_mut() {
            if let Some(console) = slot.take() {
                release(&self.events, &self.grants, console, "dom0 stops");
            }
        }
    }

    /// Writes console input for `domid` into its `in` ring and notifies
    /// it; bytes written (0 when the ring is full), `None` if `domid` has
    /// no served console or its ring is corrupt.
    #[allow(
        dead_code,
        reason = "the API console input (a later issue's CLI) goes through"
    )]
    pub fn write_input(&mut self, domid: DomId, bytes: &[u8]) -> Option<usize> {
        let console = self.consoles.iter().flatten().find(|c| c.domid == domid)?;
        let n = console.ring().write_input(bytes).ok()?;
        if n > 0 {
            let _ = self.events.xen().evtchn_send(console.port);
        }
        Some(n)
    }

    fn now(&self) -> Result<u64, XenError> {
        self.events
            .now()
            .ok_or(XenError(abi::xen::errno::Errno::EAGAIN.to_return()))
    }

    fn wait_and_drain(&mut self, until: u64) -> Result<(), XenError> {
        let mut ports = [0; MAX_CONSOLES + 1];
        let mut n = 0;
        for port in self
            .consoles
            .iter()
            .flatten()
            .map(|c| c.port)
            .chain(self.dom_exc)
        {
            ports[n] = port;
            n += 1;
        }
        let Some(port) = self.events.wait_any(&ports[..n], Some(until))? else {
            return Ok(());
        };
        if Some(port) == self.dom_exc {
            self.next_check = 0;
        } else if let Some(console) = self.consoles.iter_mut().flatten().find(|c| c.port == port) {
            drain(&self.events, console);
        }
        Ok(())
    }

    fn drain_leftovers(&mut self) {
        for console in self.consoles.iter_mut().flatten().filter(|c| c.more) {
            drain(&self.events, console);
        }
    }

    /// Lists the domains: attaches new ones with a console, releases
    /// those that shut down or are gone, notes whether any domU lives.
    fn scan(&mut self) {
        let xen = *self.events.xen();
        let mut alive = [false; MAX_CONSOLES];
        let mut domus_alive = false;
        let mut start = 0;
        for _ in 0..MAX_LIST_CALLS {
            let Ok(list) = xen.domain_list(start) else {
                break;
            };
            let count = (list.nr_entries as usize).min(list.domains.len());
            for info in &list.domains[..count] {
                if info.flags & abi::control::DOMAIN_FLAG_PRIVILEGED != 0 {
                    continue;
                }
                let down = info.flags & (DOMAIN_FLAG_SHUTDOWN | DOMAIN_FLAG_DYING) != 0;
                domus_alive |= !down;
                if let Some(i) = self.slot_of(info.domid) {
                    alive[i] = !down;
                } else if info.flags & DOMAIN_FLAG_DYING == 0 && !self.was_examined(info.domid) {
                    // A domU that already shut down still has its ring
                    // (until it is destroyed): attach, drain, release.
                    self.attach(info);
                    if let Some(i) = self.slot_of(info.domid) {
                        alive[i] = !down;
                    }
                }
            }
            if list.next_domid == DOMID_INVALID || list.next_domid <= start {
                break;
            }
            start = list.next_domid;
        }
        for (slot, alive) in self.consoles.iter_mut().zip(alive) {
            if !alive {
                if let Some(console) = slot.take() {
                    release(&self.events, &self.grants, console, "domain shut down");
                }
            }
        }
        self.domus_alive = domus_alive;
        self.next_check = self.events.now().unwrap_or(0) + DOMAIN_CHECK_NS;
    }

    fn slot_of(&self, domid: DomId) -> Option<usize> {
        self.consoles
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.domid == domid))
    }

    fn was_examined(&self, domid: DomId) -> bool {
        self.examined[..self.examined_len].contains(&domid)
    }

    fn attach(&mut self, info: &DomainInfo) {
        if self.examined_len < self.examined.len() {
            self.examined[self.examined_len] = info.domid;
            self.examined_len += 1;
        }
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
                return;
            }
        };
        let Some(slot) = self.consoles.iter().position(Option::is_none) else {
            println!(
                "dom0: console: d{domid} ({name}) not served: {MAX_CONSOLES} consoles already"
            );
            return;
        };
        let mapping = match self.grants.map(domid, GNTTAB_RESERVED_CONSOLE, false) {
            Ok(m) => m,
            Err(e) => {
                println!("dom0: console: d{domid} ({name}) map of grant {GNTTAB_RESERVED_CONSOLE} failed: {e}");
                return;
            }
        };
        let port = match u32::try_from(evtchn)
            .map_err(|_| XenError(abi::xen::errno::Errno::EINVAL.to_return()))
            .and_then(|p| xen.evtchn_bind_interdomain(domid, p))
        {
            Ok(port) => port,
            Err(e) => {
                println!("dom0: console: d{domid} ({name}) bind of port {evtchn} failed: {e}");
                if let Err((_, e)) = self.grants.unmap(mapping) {
                    println!("dom0: console: d{domid} unmap failed: {e}");
                }
                return;
            }
        };
        let mut console = Console {
            domid,
            name: [0; DOMAIN_NAME_MAX],
            name_len: name.len().min(DOMAIN_NAME_MAX),
            mapping,
            port,
            history: History::new(),
            line: LineAssembler::new(),
            more: false,
        };
        console.name[..console.name_len].copy_from_slice(&name.as_bytes()[..console.name_len]);
        println!(
            "dom0: console: attached d{domid} ({name}) gfn={pfn:#x} port {evtchn} -> local {port}"
        );
        drain(&self.events, &mut console);
        self.consoles[slot] = Some(console);
    }
}

/// Reads what `console`'s ring holds (up to the budget), keeps it in the
/// history, prints complete lines, and notifies the frontend of the space.
fn drain(events: &Events, console: &mut Console) {
    let xen = events.xen();
    let mut buf = [0u8; 512];
    let mut total = 0;
    console.more = false;
    while total < DRAIN_BUDGET {
        let n = match console.ring().read_output(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                console.ring().discard_output();
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
        let _ = xen.evtchn_send(console.port);
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

/// Last drain, pending partial line, then unmap and close.
fn release(events: &Events, grants: &Grants, mut console: Console, why: &str) {
    drain(events, &mut console);
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
    let _ = events.xen().evtchn_close(console.port);
    if let Err((_, e)) = grants.unmap(console.mapping) {
        println!("dom0: console: d{} unmap failed: {e}", console.domid);
    }
}
