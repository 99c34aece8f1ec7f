//! The management protocol over TCP (`mgmt` 2.2), as dom0 serves it on
//! its management NIC with `smoltcp`, generic over the network device so
//! the same code runs under host tests.
//!
//! Rules:
//! - [`MAX_CONNECTIONS`] sockets listen on [`mgmt::MGMT_TCP_PORT`]: that
//!   many clients are served at once, each connection its own session
//!   under the protocol's rules (its own decoder and [`mgmt::Server`]);
//!   more connection attempts are refused by TCP (reset) while all are
//!   taken, so a flood of connections costs bounded memory and work.
//! - Every connection starts with the [`mgmt::auth`] handshake. One that
//!   has not authenticated within [`AUTH_TIMEOUT_NS`] of its first SYN
//!   (silent, half-open, or slow) is reset, so a silent client holds a
//!   slot at most that long. A wrong key gets the refusal frame, then a
//!   FIN; nothing it sent afterwards is read. An authenticated
//!   connection may stay idle (keep-alive probes every [`KEEP_ALIVE_NS`]);
//!   one whose peer vanished is reset after [`OPEN_TIMEOUT_NS`].
//! - Malformed frames are answered as on COM2 (`Rejected` / `Dropped`)
//!   and the connection stays usable. A partial frame waits for its rest
//!   (no idle flush as on COM2: TCP delivers every byte, late or not).
//! - Each pass reads at most [`READ_BUDGET`] bytes per connection, and
//!   none from a connection whose replies wait to be sent beyond
//!   [`OUT_HIGH_WATER`] bytes: a client that does not read cannot make
//!   the agent buffer without bound. A pass that left input unread asks
//!   for the next at once (no frame or timer would bring it).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod conn;

/// The TCP/IP stack, for the device adapters of its users.
pub use smoltcp;
#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use mgmt::auth::{Key, NonceSource};
use mgmt::{MgmtError, Reply, Request, ServerMessage, SessionId, MAX_FRAME};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use conn::{Conn, Flow};

/// dom0's address on QEMU's user network (its default guest address).
pub const GUEST_ADDRESS: [u8; 4] = [10, 0, 2, 15];
/// The prefix length of [`GUEST_ADDRESS`]'s network.
pub const PREFIX_LEN: u8 = 24;
/// QEMU's user network gateway (its built-in router).
pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];
/// Connections served at once (listening sockets).
pub const MAX_CONNECTIONS: usize = mgmt::MGMT_TCP_MAX_CONNECTIONS;
/// A connection must have authenticated this long after it opened, ns.
pub const AUTH_TIMEOUT_NS: u64 = 5_000_000_000;
/// An authenticated connection is probed (TCP keep-alive) after this
/// long without traffic, ns.
pub const KEEP_ALIVE_NS: u64 = 10_000_000_000;
/// An authenticated connection whose peer sent nothing, not even a
/// keep-alive answer, for this long is reset (a half-open connection:
/// the client vanished without FIN or RST), ns.
pub const OPEN_TIMEOUT_NS: u64 = 60_000_000_000;
/// A refused or timed-out connection is reset if its close has not
/// completed this long after it began, ns.
pub const CLOSE_LINGER_NS: u64 = 1_000_000_000;
/// smoltcp's own timeout on a connection that has not authenticated,
/// ns: after [`AUTH_TIMEOUT_NS`], so the server's reset (and its log
/// line) always comes first.
const SOCKET_TIMEOUT_BEFORE_AUTH_NS: u64 = 2 * AUTH_TIMEOUT_NS;
/// Receive buffer of each socket, bytes (the TCP window: room for a few
/// upload chunks in flight).
pub const RX_BUFFER: usize = 64 * 1024;
/// Send buffer of each socket, bytes.
pub const TX_BUFFER: usize = 32 * 1024;
/// Most bytes read from one connection per pass.
pub const READ_BUDGET: usize = 16 * 1024;
/// No more requests are read from a connection while more than this many
/// bytes of its replies wait for the socket.
pub const OUT_HIGH_WATER: usize = MAX_FRAME;

/// What the agent does with an authenticated connection's requests.
pub trait Service {
    /// What one session holds.
    type Session: Default;

    /// Serves `request` of `session`.
    fn handle(&mut self, session: &mut Self::Session, request: Request)
        -> Result<Reply, MgmtError>;

    /// Sends what `session` subscribed to (console output) with `send`.
    fn events(
        &mut self,
        id: SessionId,
        session: &mut Self::Session,
        send: &mut dyn FnMut(&ServerMessage),
    );

    /// `session` ended (a new `Hello`, or its connection closed).
    fn ended(&mut self, id: SessionId, session: Self::Session);

    /// A seed for a new connection's session ids (distinct ones make logs
    /// readable; the protocol does not need them to differ).
    fn next_session_seed(&mut self) -> u32;

    /// Something worth a line in the log.
    fn log(&mut self, line: fmt::Arguments<'_>);
}

/// Where the server listens.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// The NIC's MAC address.
    pub mac: [u8; 6],
    /// dom0's IPv4 address.
    pub address: [u8; 4],
    /// Its network's prefix length.
    pub prefix_len: u8,
    /// The default gateway.
    pub gateway: [u8; 4],
    /// The TCP port.
    pub port: u16,
}

impl NetConfig {
    /// QEMU's user network ([`GUEST_ADDRESS`], [`GATEWAY`]) on
    /// [`mgmt::MGMT_TCP_PORT`].
    pub fn qemu_user(mac: [u8; 6]) -> Self {
        Self {
            mac,
            address: GUEST_ADDRESS,
            prefix_len: PREFIX_LEN,
            gateway: GATEWAY,
            port: mgmt::MGMT_TCP_PORT,
        }
    }
}

/// One listening socket and the connection it holds, if any.
struct Slot<S> {
    handle: SocketHandle,
    conn: Option<Conn<S>>,
    /// When the connection started closing, ns.
    closing_since: Option<u64>,
    /// Whether the socket has the timers of an authenticated connection.
    open_timers: bool,
}

/// The TCP management server.
pub struct MgmtNet<S> {
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot<S>>,
    nonces: NonceSource,
    port: u16,
    /// No slot listened at the end of the last pass (said once, in the
    /// log, each time it becomes so).
    full: bool,
}

fn micros(ns: u64) -> Duration {
    Duration::from_micros(ns / 1000)
}

fn instant(now_ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(now_ns / 1000).unwrap_or(i64::MAX))
}

impl<S: Default> MgmtNet<S> {
    /// A server on `device` with `config`, accepting clients that hold
    /// `key`. `seed` varies TCP's initial sequence numbers between boots.
    pub fn new(
        config: &NetConfig,
        key: Key,
        device: &mut impl Device,
        now_ns: u64,
        seed: u64,
    ) -> Self {
        let hardware = HardwareAddress::Ethernet(EthernetAddress(config.mac));
        let mut iface_config = Config::new(hardware);
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, device, instant(now_ns));
        let [a, b, c, d] = config.address;
        iface.update_ip_addrs(|addrs| {
            // One address in an empty list: cannot be full.
            let _ = addrs.push(IpCidr::new(
                Ipv4Address::new(a, b, c, d).into(),
                config.prefix_len,
            ));
        });
        let [a, b, c, d] = config.gateway;
        // The route table has room for more than one route.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        let mut sockets = SocketSet::new(Vec::new());
        let slots = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
                );
                listen(&mut socket, config.port);
                Slot {
                    handle: sockets.add(socket),
                    conn: None,
                    closing_since: None,
                    open_timers: false,
                }
            })
            .collect();
        Self {
            iface,
            sockets,
            slots,
            nonces: NonceSource::new(key),
            port: config.port,
            full: false,
        }
    }

    /// Connections open now (authenticated or not).
    pub fn connections(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_some()).count()
    }

    /// Connections that have authenticated.
    pub fn authenticated(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.conn.as_ref().is_some_and(Conn::authenticated))
            .count()
    }

    /// One pass at `now_ns`: takes what `device` received, serves every
    /// connection, sends what is ready. `entropy` goes into the next
    /// challenge nonce. Returns how long the caller may sleep before the
    /// next pass is due (ns; `None`: until the device has something).
    pub fn poll<V: Service<Session = S>>(
        &mut self,
        now_ns: u64,
        device: &mut impl Device,
        service: &mut V,
        entropy: u64,
    ) -> Option<u64> {
        let now = instant(now_ns);
        self.iface.poll(now, device, &mut self.sockets);
        let mut unread = false;
        for i in 0..self.slots.len() {
            unread |= self.serve_slot(i, now_ns, service, entropy);
        }
        self.iface.poll(now, device, &mut self.sockets);
        // A close that completed in this last poll (the peer's final ACK)
        // listens again now: left to the next pass, the slot would still
        // be closed when that pass's first poll takes a new SYN, which
        // TCP then resets while every other slot is taken.
        self.reclaim_closed(service);
        self.note_full(service);
        // Input left by the read budget is read next pass, at once: no
        // frame or timer would come for it while the client waits for
        // its reply.
        if unread {
            return Some(0);
        }
        let net = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| d.total_micros().saturating_mul(1000));
        let own = self
            .slots
            .iter()
            .flat_map(|s| {
                let linger = s.closing_since.map(|at| at + CLOSE_LINGER_NS);
                [s.conn.as_ref().and_then(Conn::deadline_ns), linger]
            })
            .flatten()
            .map(|at| at.saturating_sub(now_ns))
            .min();
        match (net, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the session of every slot whose connection is over and makes
    /// its socket listen again. Called after each poll of the interface,
    /// the only place sockets change state, so no SYN ever meets a slot
    /// that is closed but not yet listening.
    fn reclaim_closed<V: Service<Session = S>>(&mut self, service: &mut V) {
        for slot in &mut self.slots {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if socket.is_active() {
                continue;
            }
            if let Some(conn) = slot.conn.take() {
                service.log(format_args!("connection closed"));
                conn.end(service);
            }
            slot.closing_since = None;
            if !socket.is_open() {
                listen(socket, self.port);
                slot.open_timers = false;
            }
        }
    }

    /// Says in the log when every slot has become taken: TCP resets new
    /// connections until one closes, and the operator's client sees them
    /// closed before the challenge.
    fn note_full<V: Service<Session = S>>(&mut self, service: &mut V) {
        let full = self
            .slots
            .iter()
            .all(|slot| self.sockets.get::<tcp::Socket>(slot.handle).state() != tcp::State::Listen);
        if full && !self.full {
            service.log(format_args!(
                "all {MAX_CONNECTIONS} connections in use: new ones are refused until one closes"
            ));
        }
        self.full = full;
    }

    /// Serves slot `i`; whether its connection left input unread that
    /// it may read now (the pass stopped at [`READ_BUDGET`]).
    fn serve_slot<V: Service<Session = S>>(
        &mut self,
        i: usize,
        now_ns: u64,
        service: &mut V,
        entropy: u64,
    ) -> bool {
        let slot = &mut self.slots[i];
        let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        if !socket.is_active() {
            return false;
        }
        let conn = slot
            .conn
            .get_or_insert_with(|| Conn::accept(&mut self.nonces, entropy, now_ns));
        let mut flow = if conn.reading() {
            Flow::Keep
        } else {
            Flow::Close
        };
        if flow == Flow::Keep {
            flow = read(socket, conn, self.nonces.key(), service);
        }
        // Only after reading: an answer that came in time but found the
        // agent busy (its pass late) still counts.
        if conn.timed_out(now_ns) {
            service.log(format_args!(
                "a client did not authenticate within {} s: reset",
                AUTH_TIMEOUT_NS / 1_000_000_000
            ));
            socket.abort();
            return false;
        }
        if conn.authenticated() && !slot.open_timers {
            // An idle session (an attached console) is fine; a vanished
            // peer is found by keep-alive probes.
            socket.set_keep_alive(Some(micros(KEEP_ALIVE_NS)));
            socket.set_timeout(Some(micros(OPEN_TIMEOUT_NS)));
            slot.open_timers = true;
        }
        if flow == Flow::Keep && conn.authenticated() && conn.out.len() < OUT_HIGH_WATER {
            conn.events(service);
        }
        if socket.may_send() && !conn.out.is_empty() {
            let sent = socket.send_slice(&conn.out).unwrap_or(0);
            conn.out.drain(..sent);
        }
        let peer_done = peer_done(socket);
        if (flow == Flow::Close || peer_done) && conn.out.is_empty() {
            socket.close();
        }
        if flow == Flow::Close || peer_done {
            let since = *slot.closing_since.get_or_insert(now_ns);
            if now_ns.saturating_sub(since) >= CLOSE_LINGER_NS {
                socket.abort();
            }
        }
        flow == Flow::Keep && socket.can_recv() && conn.out.len() < OUT_HIGH_WATER
    }
}

/// Makes a closed socket listen on `port`, with the timers of a
/// connection that has not authenticated.
fn listen(socket: &mut tcp::Socket<'_>, port: u16) {
    socket.abort();
    // A closed socket may listen; the port is valid.
    let _ = socket.listen(port);
    // smoltcp resets a connection whose peer is silent this long. Ours,
    // the authentication timeout, must come first: with both at
    // AUTH_TIMEOUT_NS, whichever fired first depended on timing, and a
    // silent client was sometimes dropped unannounced.
    socket.set_keep_alive(None);
    socket.set_timeout(Some(micros(SOCKET_TIMEOUT_BEFORE_AUTH_NS)));
}

/// Whether the peer has closed its half and everything it sent was read.
/// Not while the handshake is still under way (`SynReceived`): nothing
/// may be received then either, but the peer is not done. Taking that
/// for a close started the close linger at the SYN, and the linger's
/// deadline, long past, then kept the agent from ever sleeping (and would
/// have reset the connection at the peer's eventual FIN, or a handshake
/// slower than [`CLOSE_LINGER_NS`]).
fn peer_done(socket: &tcp::Socket<'_>) -> bool {
    socket.state() != tcp::State::SynReceived && !socket.may_recv()
}

/// Reads what the connection may take this pass and answers it.
fn read<S: Default, V: Service<Session = S>>(
    socket: &mut tcp::Socket<'_>,
    conn: &mut Conn<S>,
    key: &Key,
    service: &mut V,
) -> Flow {
    let mut buf = [0u8; 2048];
    let mut budget = READ_BUDGET;
    let mut flow = Flow::Keep;
    while flow == Flow::Keep && budget > 0 && conn.out.len() < OUT_HIGH_WATER {
        let want = buf.len().min(budget);
        let n = match socket.recv_slice(&mut buf[..want]) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        budget -= n;
        flow = conn.receive(&buf[..n], key, service);
    }
    flow
}
