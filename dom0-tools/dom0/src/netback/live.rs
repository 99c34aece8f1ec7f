//! The vifs dom0 serves: their store handshake, mapped rings, event
//! channels and the copying between guests and the switch.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8};

use abi::control::{parse_domain_name, DomainInfo};
use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::{GnttabCopy, GNTST_GENERAL_ERROR, GNTST_OKAY};
use abi::xen::netif::{
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETIF_RSP_ERROR,
    NETIF_RSP_OKAY,
};
use abi::xen::ring::{BackRing, RingError, RingIdx};
use guest_pv_shim::page_bytes::{read_bytes, write_bytes};
use guest_pv_shim::{println, CopySide, Events, ForeignMapping, Grants, SharedFrame};
use vswitch::{PortConfig, PortId, PortKind, VlanMode};
use xenstore::DomId;

use super::boot::parse_boot_vifs;
use super::limits::{parse_rate, Credit, LogLimit};
use super::tx::{TxAssembler, TxDrop, TxPacket, TxStep, TX_FRAME_MAX, TX_SLOTS_MAX};
use super::xenbus::{self, FrontendRings};
use super::{NetError, VifCounters, VifInfo, VifSpec, MAX_VIFS, MAX_VIFS_PER_DOMAIN, TX_BUDGET};
use crate::store::tree::Node;
use crate::store::StoreService;
use crate::switch::Vswitch;

/// Where a tx packet is assembled (dom0 is single-threaded).
static TX_BOUNCE: SharedFrame = SharedFrame::new();
/// Where a frame for a guest waits for its copy.
static RX_BOUNCE: SharedFrame = SharedFrame::new();

type TxRing<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;
type RxRing<'a> = BackRing<'a, NetifRxRequest, NetifRxResponse>;

/// A connected vif's rings and channel.
struct Conn {
    tx_map: ForeignMapping,
    rx_map: ForeignMapping,
    port: EvtchnPort,
    tx_idx: (RingIdx, RingIdx),
    rx_idx: (RingIdx, RingIdx),
    asm: TxAssembler,
    /// A packet taken but waiting for credit, and when to try again.
    parked: Option<(TxPacket, u64)>,
    /// Tx requests were left for the next pass (budget spent).
    tx_more: bool,
}

// One per vif; the connection's state is kept inline, not boxed.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Waiting for the frontend to connect.
    InitWait,
    Connected(Conn),
    /// Disconnected (frontend closed, or it broke the ring); waits for
    /// the frontend to start over (Initialising).
    Closed,
}

struct Vif {
    domid: DomId,
    devid: u32,
    spec: VifSpec,
    port: PortId,
    name: String,
    be: String,
    fe: String,
    fe_state: String,
    /// The backend's `rate` node.
    rate_path: String,
    state: State,
    counters: VifCounters,
    credit: Credit,
    log: LogLimit,
}

/// dom0's vifs. See the module's documentation.
#[derive(Default)]
pub struct NetBackends {
    vifs: Vec<Vif>,
    /// Where the next pass starts (round robin).
    next: usize,
    /// `boot-vifs=` from dom0's command line, until attached.
    boot_vifs: String,
}

impl NetBackends {
    /// No vifs yet; `boot_vifs` (`boot-vifs=`'s value) names the
    /// boot-time domUs to give one ([`Self::attach_boot_vifs`]).
    pub fn with_boot_vifs(boot_vifs: String) -> Self {
        NetBackends {
            boot_vifs,
            ..Self::default()
        }
    }

    /// Attaches the vifs `boot-vifs=` asked for to the running domains
    /// of those names (once; said on COM1 either way).
    pub fn attach_boot_vifs(
        &mut self,
        store: &mut StoreService,
        switch: &mut Vswitch,
        domains: &[DomainInfo],
    ) {
        let (wanted, bad) = parse_boot_vifs(&core::mem::take(&mut self.boot_vifs));
        for entry in bad {
            println!("dom0: netback: boot-vifs: ignored {entry:?} (NAME:VLAN)");
        }
        for vif in wanted {
            let Some(info) = domains
                .iter()
                .find(|d| parse_domain_name(&d.name) == Some(vif.name.as_str()))
            else {
                println!("dom0: netback: boot-vifs: no domain {}", vif.name);
                continue;
            };
            let spec = VifSpec {
                mac: vswitch::default_mac(&vif.name, 0),
                vlan: VlanMode::Access(vif.vlan),
            };
            if let Err(e) = self.attach(store, switch, info.domid, spec) {
                println!("dom0: netback: boot-vifs: {}: {e}", vif.name);
            }
        }
    }

    /// The devid the next [`Self::attach`] to `domid` gets, if any is free.
    pub fn next_devid(&self, domid: DomId) -> Option<u32> {
        (0..MAX_VIFS_PER_DOMAIN)
            .find(|d| !self.vifs.iter().any(|v| v.domid == domid && v.devid == *d))
            .filter(|_| self.vifs.len() < MAX_VIFS)
    }

    /// Attaches a vif to `domid`: a switch port, the store's backend and
    /// frontend directories (backend in InitWait); the frontend connects
    /// when it is ready. Returns its devid (the lowest free).
    pub fn attach(
        &mut self,
        store: &mut StoreService,
        switch: &mut Vswitch,
        domid: DomId,
        spec: VifSpec,
    ) -> Result<u32, NetError> {
        let devid = self.next_devid(domid).ok_or(NetError::TooManyVifs)?;
        let name = format!("vif{domid}.{devid}");
        let port = switch
            .add_port(PortConfig {
                name: name.clone(),
                kind: PortKind::Vif {
                    domid,
                    devid,
                    mac: spec.mac,
                },
                vlan: spec.vlan.clone(),
            })
            .map_err(NetError::Switch)?;
        if let Err(e) = store.write_nodes(&xenbus::attach_nodes(domid, devid, &spec.mac)) {
            let _ = switch.remove_port(port);
            store.remove(&xenbus::backend_path(domid, devid));
            return Err(NetError::Store(e));
        }
        let fe = xenbus::frontend_path(domid, devid);
        println!(
            "dom0: netback: {name}: attached, mac {}, {}, switch port {port}",
            xenbus::mac_text(&spec.mac),
            spec.vlan
        );
        self.vifs.push(Vif {
            domid,
            devid,
            spec,
            port,
            name,
            be: xenbus::backend_path(domid, devid),
            fe_state: format!("{fe}/state"),
            rate_path: format!("{}/rate", xenbus::backend_path(domid, devid)),
            fe,
            state: State::InitWait,
            counters: VifCounters::default(),
            credit: Credit::default(),
            log: LogLimit::default(),
        });
        Ok(devid)
    }

    /// Detaches vif `devid` of `domid`: disconnects it, removes its
    /// switch port and both store directories.
    pub fn detach(
        &mut self,
        env: &mut NetEnv,
        switch: &mut Vswitch,
        domid: DomId,
        devid: u32,
    ) -> Result<(), NetError> {
        let i = self
            .vifs
            .iter()
            .position(|v| v.domid == domid && v.devid == devid)
            .ok_or(NetError::NoSuchVif { domid, devid })?;
        let mut vif = self.vifs.remove(i);
        vif.disconnect(env, "detached");
        let _ = switch.remove_port(vif.port);
        env.store.remove(&vif.be);
        env.store.remove(&vif.fe);
        println!("dom0: netback: {}: detached; {}", vif.name, vif.counters);
        Ok(())
    }

    /// Forgets every vif of a destroyed domain (its grants and ports
    /// are gone with it; its store tree is removed by the toolstack).
    pub fn domain_destroyed(&mut self, env: &mut NetEnv, switch: &mut Vswitch, domid: DomId) {
        let devids: Vec<u32> = self
            .vifs
            .iter()
            .filter(|v| v.domid == domid)
            .map(|v| v.devid)
            .collect();
        for devid in devids {
            let _ = self.detach(env, switch, domid, devid);
        }
    }

    /// Every vif, with its state and counters.
    pub fn list(&self) -> Vec<VifInfo> {
        self.vifs
            .iter()
            .map(|v| VifInfo {
                domid: v.domid,
                devid: v.devid,
                mac: v.spec.mac,
                vlan: v.spec.vlan.clone(),
                port: v.port,
                state: match v.state {
                    State::InitWait => xenbus::STATE_INIT_WAIT,
                    State::Connected(_) => xenbus::STATE_CONNECTED,
                    State::Closed => xenbus::STATE_CLOSED,
                },
                counters: v.counters,
            })
            .collect()
    }

    /// One pass: follows the frontends' handshakes, then serves every
    /// connected vif whose port fired or that has work left, round
    /// robin: tx (each packet through the switch), then rx (frames the
    /// switch queued for it, into its posted buffers). Never sleeps;
    /// returns when it wants the next pass if no event comes first.
    pub fn serve(&mut self, env: &mut NetEnv, switch: &mut Vswitch) -> Option<u64> {
        for vif in &mut self.vifs {
            vif.follow_frontend(env);
        }
        let fired = self.take_fired(env.events);
        let n = self.vifs.len();
        let start = if n == 0 { 0 } else { self.next % n };
        self.next = self.next.wrapping_add(1);
        let mut frames = Vec::new();
        for k in 0..n {
            let vif = &mut self.vifs[(start + k) % n];
            if fired.contains(&((start + k) % n)) || vif.has_tx_work(env.now) {
                vif.serve_tx(env, &mut frames);
            }
            for (src, frame) in frames.drain(..) {
                switch.forward(src, &frame);
            }
        }
        for vif in &mut self.vifs {
            vif.serve_rx(env, switch);
        }
        self.vifs.iter().filter_map(|v| v.next_pass(env.now)).min()
    }

    fn take_fired(&self, events: &Events) -> Vec<usize> {
        let ports: Vec<EvtchnPort> = self
            .vifs
            .iter()
            .filter_map(|v| match &v.state {
                State::Connected(c) => Some(c.port),
                _ => None,
            })
            .collect();
        let mut fired = Vec::new();
        while let Some(port) = events.take(&ports) {
            if let Some(i) = self
                .vifs
                .iter()
                .position(|v| matches!(&v.state, State::Connected(c) if c.port == port))
            {
                if !fired.contains(&i) {
                    fired.push(i);
                }
            }
            if fired.len() == ports.len() {
                break;
            }
        }
        fired
    }
}

/// What a pass needs from dom0.
pub struct NetEnv<'a> {
    /// The event-channel client.
    pub events: &'a Events,
    /// The grant-table client.
    pub grants: Grants,
    /// The store.
    pub store: &'a mut StoreService,
    /// System time, ns.
    pub now: u64,
}

impl Vif {
    fn set_state(&self, store: &mut StoreService, state: u32) {
        let node = Node {
            path: format!("{}/state", self.be),
            value: format!("{state}"),
            perms: None,
        };
        if let Err(e) = store.write_nodes(&[node]) {
            println!("dom0: netback: {}: writing state {state}: {e}", self.name);
        }
    }

    /// Moves with the frontend's state (Linux netback's `frontend_changed`).
    fn follow_frontend(&mut self, env: &mut NetEnv) {
        let fe_state = xenbus::parse_state(env.store.read(&self.fe_state));
        match &self.state {
            State::InitWait
                if fe_state == xenbus::STATE_CONNECTED || fe_state == xenbus::STATE_INITIALISED =>
            {
                self.connect(env)
            }
            State::Connected(_) if fe_state != xenbus::STATE_CONNECTED => {
                self.disconnect(env, "frontend closing");
                self.set_state(env.store, xenbus::STATE_CLOSED);
            }
            State::Closed if fe_state == xenbus::STATE_INITIALISING => {
                self.state = State::InitWait;
                self.set_state(env.store, xenbus::STATE_INIT_WAIT);
            }
            _ => {}
        }
    }

    fn connect(&mut self, env: &mut NetEnv) {
        let fe = self.fe.clone();
        let keys = xenbus::read_frontend(|key| env.store.read(&format!("{fe}/{key}")));
        let result = keys
            .map_err(|e| format!("{e}"))
            .and_then(|rings| self.map_rings(env, rings));
        match result {
            Ok(conn) => {
                println!(
                    "dom0: netback: {}: connected (tx/rx rings mapped, port {})",
                    self.name, conn.port
                );
                self.state = State::Connected(conn);
                self.set_state(env.store, xenbus::STATE_CONNECTED);
            }
            Err(e) => {
                println!("dom0: netback: {}: cannot connect: {e}", self.name);
                let error = Node {
                    path: format!("{}/error", self.be),
                    value: e,
                    perms: None,
                };
                let _ = env.store.write_nodes(&[error]);
                self.state = State::Closed;
                self.set_state(env.store, xenbus::STATE_CLOSING);
            }
        }
    }

    fn map_rings(&self, env: &NetEnv, rings: FrontendRings) -> Result<Conn, String> {
        let grants = env.grants;
        let map = |gref| {
            grants
                .map(self.domid, gref, false)
                .map_err(|e| format!("mapping ring grant {gref}: {e}"))
        };
        let tx_map = map(rings.tx_ring_ref)?;
        let rx_map = match map(rings.rx_ring_ref) {
            Ok(m) => m,
            Err(e) => {
                let _ = grants.unmap(tx_map);
                return Err(e);
            }
        };
        let bound = env
            .events
            .xen()
            .evtchn_bind_interdomain(self.domid, rings.event_channel);
        let port = match bound {
            Ok(port) => port,
            Err(e) => {
                let _ = grants.unmap(tx_map);
                let _ = grants.unmap(rx_map);
                return Err(format!("binding port {}: {e}", rings.event_channel));
            }
        };
        Ok(Conn {
            tx_map,
            rx_map,
            port,
            tx_idx: (0, 0),
            rx_idx: (0, 0),
            asm: TxAssembler::default(),
            parked: None,
            tx_more: false,
        })
    }

    fn disconnect(&mut self, env: &mut NetEnv, why: &str) {
        let State::Connected(conn) = core::mem::replace(&mut self.state, State::Closed) else {
            return;
        };
        let _ = env.events.xen().evtchn_close(conn.port);
        for mapping in [conn.tx_map, conn.rx_map] {
            if let Err((_, e)) = env.grants.unmap(mapping) {
                println!("dom0: netback: {}: unmap failed: {e}", self.name);
            }
        }
        println!("dom0: netback: {}: disconnected: {why}", self.name);
    }

    /// The frontend broke its ring: this vif alone is disconnected.
    fn ring_error(&mut self, env: &mut NetEnv, which: &str, e: RingError) {
        self.counters.ring_errors += 1;
        let why = format!("{which} ring indices ran ahead ({e:?})");
        self.disconnect(env, &why);
        println!("dom0: netback: {}: counters: {}", self.name, self.counters);
        self.set_state(env.store, xenbus::STATE_CLOSING);
    }

    fn has_tx_work(&self, now: u64) -> bool {
        match &self.state {
            State::Connected(c) => c.tx_more || c.parked.as_ref().is_some_and(|p| now >= p.1),
            _ => false,
        }
    }

    fn next_pass(&self, now: u64) -> Option<u64> {
        match &self.state {
            State::Connected(c) if c.tx_more => Some(now),
            State::Connected(c) => c.parked.as_ref().map(|p| p.1),
            _ => None,
        }
    }

    fn drop_logged(&mut self, now: u64, why: TxDrop) {
        self.counters.tx_dropped[why.index()] += 1;
        if let Some(suppressed) = self.log.allow(now) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more not logged)")
            } else {
                String::new()
            };
            println!("dom0: netback: {}: dropped tx: {why}{more}", self.name);
        }
    }

    /// Takes up to [`TX_BUDGET`] tx requests; well-formed packets are
    /// copied out and put in `frames` with this vif's port.
    fn serve_tx(&mut self, env: &mut NetEnv, frames: &mut Vec<(PortId, Vec<u8>)>) {
        self.recheck_rate(env);
        let State::Connected(conn) = &mut self.state else {
            return;
        };
        let ring = TxRing::resume(conn.tx_map.view::<[AtomicU32; 1024]>(), conn.tx_idx);
        let Ok(mut ring) = ring else {
            return;
        };
        let mut pending = conn.parked.take().map(|(packet, _)| packet);
        let mut drops = Vec::new();
        let mut taken = 0;
        let mut error = None;
        loop {
            if let Some(packet) = pending.take() {
                if let Err(at) = self.credit.spend(packet.size as u64, env.now) {
                    self.counters.tx_throttled += 1;
                    conn.parked = Some((packet, at));
                    break;
                }
                match copy_packet(env, self.domid, &packet) {
                    Ok(frame) => {
                        self.counters.tx_packets += 1;
                        self.counters.tx_bytes += frame.len() as u64;
                        frames.push((self.port, frame));
                        answer(&mut ring, packet.ids(), NETIF_RSP_OKAY);
                    }
                    Err(why) => {
                        answer(&mut ring, packet.ids(), NETIF_RSP_ERROR);
                        drops.push(why);
                    }
                }
            }
            if taken >= TX_BUDGET {
                break;
            }
            match ring.take_request() {
                Ok(Some(req)) => {
                    taken += 1;
                    match conn.asm.push(&req) {
                        TxStep::More => {}
                        TxStep::Packet(packet) => pending = Some(packet),
                        TxStep::Drop { why, ids, .. } => {
                            answer(&mut ring, ids.as_slice(), NETIF_RSP_ERROR);
                            drops.push(why);
                        }
                        TxStep::Discard { id, .. } => answer(&mut ring, &[id], NETIF_RSP_ERROR),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        conn.tx_more = match error {
            Some(_) => false,
            None if conn.parked.is_some() => false,
            None if taken >= TX_BUDGET => true,
            None => ring.final_check_for_requests().unwrap_or(false),
        };
        let notify = ring.push_responses_and_check_notify();
        conn.tx_idx = ring.indices();
        let port = conn.port;
        if notify {
            let _ = env.events.xen().evtchn_send(port);
        }
        for why in drops {
            self.drop_logged(env.now, why);
        }
        if let Some(e) = error {
            self.ring_error(env, "tx", e);
        }
    }

    fn recheck_rate(&mut self, env: &mut NetEnv) {
        // Read at every tx pass (a lookup in dom0's own tree; Linux
        // watches the node): a rate the guest can see is in force.
        let rate = parse_rate(env.store.read(&self.rate_path).unwrap_or(b""));
        if rate != self.credit.rate() {
            self.credit = match rate {
                Some((bytes, usec)) => Credit::with_rate(bytes, usec, TX_FRAME_MAX as u64),
                None => Credit::default(),
            };
            match rate {
                Some((bytes, usec)) => println!(
                    "dom0: netback: {}: rate {bytes} bytes per {usec} us",
                    self.name
                ),
                None => println!("dom0: netback: {}: rate unlimited", self.name),
            }
        }
    }

    /// Copies the frames the switch queued for this vif into the
    /// guest's posted rx buffers, while it has buffers.
    fn serve_rx(&mut self, env: &mut NetEnv, switch: &mut Vswitch) {
        if !switch.has_frames(self.port) {
            return;
        }
        let State::Connected(conn) = &mut self.state else {
            return;
        };
        let Ok(mut ring) = RxRing::resume(conn.rx_map.view::<[AtomicU32; 1024]>(), conn.rx_idx)
        else {
            return;
        };
        let mut error = None;
        while switch.has_frames(self.port) {
            let req = match ring.take_request() {
                Ok(Some(req)) => req,
                // Asks for an event when the guest posts more buffers.
                Ok(None) => match ring.final_check_for_requests() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let Some(frame) = switch.pop_frame(self.port) else {
                break;
            };
            let status = copy_to_guest(env, self.domid, req.gref, &frame);
            let status = if status == GNTST_OKAY {
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += frame.len() as u64;
                i16::try_from(frame.len()).unwrap_or(NETIF_RSP_ERROR)
            } else {
                self.counters.rx_dropped += 1;
                NETIF_RSP_ERROR
            };
            let rsp = NetifRxResponse {
                id: req.id,
                offset: 0,
                flags: 0,
                status,
            };
            // Cannot fail: a request was just taken.
            let _ = ring.queue_response(&rsp);
        }
        let notify = ring.push_responses_and_check_notify();
        conn.rx_idx = ring.indices();
        if notify {
            let _ = env.events.xen().evtchn_send(conn.port);
        }
        if let Some(e) = error {
            self.ring_error(env, "rx", e);
        }
    }
}

fn answer(ring: &mut TxRing, ids: &[u16], status: i16) {
    for &id in ids {
        // Cannot fail: every id answered was taken from the ring.
        let _ = ring.queue_response(&NetifTxResponse { id, status });
    }
}

/// Copies `packet` out of `domid`'s granted buffers, all slots in one
/// `GNTTABOP_copy`, and fills its checksum if it was sent blank; why
/// not if a slot's copy failed (the first failing status) or the
/// checksum cannot be filled.
fn copy_packet(env: &NetEnv, domid: DomId, packet: &TxPacket) -> Result<Vec<u8>, TxDrop> {
    let mut ops = [GnttabCopy::default(); TX_SLOTS_MAX];
    let mut offset = 0u16;
    for (op, slot) in ops.iter_mut().zip(packet.slots()) {
        *op = CopySide::op(
            CopySide::Grant {
                dom: domid,
                gref: slot.gref,
                offset: slot.offset,
            },
            CopySide::Local {
                frame: &TX_BOUNCE,
                offset,
            },
            slot.len,
        );
        offset += slot.len;
    }
    let ops = &mut ops[..packet.slots().len()];
    if env.grants.copy_batch(ops).is_err() {
        return Err(TxDrop::BadGrant(GNTST_GENERAL_ERROR));
    }
    if let Some(bad) = ops.iter().find(|op| op.status != GNTST_OKAY) {
        return Err(TxDrop::BadGrant(bad.status));
    }
    let mut frame = alloc::vec![0u8; packet.size];
    read_bytes(TX_BOUNCE.view::<[AtomicU8; 4096]>(), 0, &mut frame);
    if packet.csum_blank {
        super::csum::fill(&mut frame).map_err(TxDrop::Checksum)?;
    }
    Ok(frame)
}

/// Copies `frame` into `domid`'s granted page `gref` at offset 0; the
/// `GNTST_*` status.
fn copy_to_guest(env: &NetEnv, domid: DomId, gref: u32, frame: &[u8]) -> i16 {
    let Ok(len) = u16::try_from(frame.len()) else {
        return GNTST_GENERAL_ERROR;
    };
    if !write_bytes(RX_BOUNCE.view::<[AtomicU8; 4096]>(), 0, frame) {
        return GNTST_GENERAL_ERROR;
    }
    let mut op = [CopySide::op(
        CopySide::Local {
            frame: &RX_BOUNCE,
            offset: 0,
        },
        CopySide::Grant {
            dom: domid,
            gref,
            offset: 0,
        },
        len,
    )];
    match env.grants.copy_batch(&mut op) {
        Ok(()) => op[0].status,
        Err(_) => GNTST_GENERAL_ERROR,
    }
}
