//! The xenbus client: how a guest talks to XenStore over the shared ring
//! (`io/xs_wire.h`), as Linux's `drivers/xen/xenbus/` does for its
//! drivers. The guest finds the ring page and its event channel through
//! `HVM_PARAM_STORE_PFN` / `HVM_PARAM_STORE_EVTCHN` (see
//! `arch::xenbus_front`), sends one request at a time and sleeps on the
//! event channel until the reply is there.
//!
//! No allocation: values come back borrowed from the client's one reply
//! buffer (valid until the next call). Watch events that arrive while a
//! request waits for its reply are queued (at most
//! [`MAX_QUEUED_EVENTS`]) and their callbacks run later, from
//! [`Client::dispatch_events`] or [`Client::wait_for_events`], never in
//! the middle of a request, so a callback may make requests itself (what
//! Linux's `xenwatch` thread allows).
//!
//! Paths are absolute (`/local/domain/3/name`) or relative to the
//! domain's home (`name`), which the store resolves. Portable: the ring
//! and the wait are behind [`Transport`], so the host tests run this
//! code against dom0's real `xenstore::Store`.

pub mod control;
pub mod path;
pub mod ring;
pub mod state;
pub use abi::xen::xs_wire as wire;

use core::fmt;

use ring::{RingCorrupt, XenstoreInterface};
use wire::{Header, MsgType, XsError, HEADER_SIZE, XENSTORE_PAYLOAD_MAX};

/// Most watches one client holds at once.
pub const MAX_WATCHES: usize = 16;
/// Longest watched path the client keeps for `UNWATCH`, bytes.
pub const WATCH_PATH_MAX: usize = 256;
/// Watch events queued while a request waits for its reply; later ones
/// are counted in [`Client::events_dropped`] and lost.
pub const MAX_QUEUED_EVENTS: usize = 4;
/// Longest watch event payload kept (path, token, NULs), bytes.
pub const EVENT_PAYLOAD_MAX: usize = 1024;
/// Most permission entries [`Client::set_perms`] sends (xenstored's
/// `node-permissions` quota is 5).
pub const MAX_PERMS: usize = 8;
/// Times [`Client::transaction`] runs its closure before giving up with
/// the last `EAGAIN` (Linux retries without bound).
pub const MAX_TRANSACTION_ATTEMPTS: usize = 16;

/// How the client reaches the store: the ring page and its event channel.
pub trait Transport {
    /// The shared ring page.
    fn page(&self) -> &XenstoreInterface;
    /// Signals the store (`EVTCHNOP_send` on the store port).
    fn notify(&mut self);
    /// Sleeps until the store signals (or returns an error: the store is
    /// gone, a deadline passed). Spurious returns are fine.
    fn wait(&mut self) -> Result<(), XenbusError>;
}

/// Why a xenbus call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// The store answered `XS_ERROR` with this error.
    Store(XsError),
    /// The store left impossible ring indices.
    Ring(RingCorrupt),
    /// The store reported `error` (`XENSTORE_ERROR_*`) in the page: it
    /// dropped this domain's connection.
    ConnectionDropped(u32),
    /// The store sent something that is not a valid message.
    Protocol,
    /// The request's payload would exceed `XENSTORE_PAYLOAD_MAX`.
    TooLong,
    /// All [`MAX_WATCHES`] slots are in use, or the path is longer than
    /// [`WATCH_PATH_MAX`].
    WatchTableFull,
    /// No reply in time ([`Transport::wait`] gave up).
    Timeout,
}

impl From<RingCorrupt> for XenbusError {
    fn from(e: RingCorrupt) -> Self {
        Self::Ring(e)
    }
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Ring(c) => write!(f, "ring corrupt: prod={:#x} cons={:#x}", c.prod, c.cons),
            Self::ConnectionDropped(code) => {
                write!(f, "connection dropped by the store (error {code})")
            }
            Self::Protocol => f.write_str("protocol error"),
            Self::TooLong => f.write_str("request too long"),
            Self::WatchTableFull => f.write_str("watch table full"),
            Self::Timeout => f.write_str("timed out"),
        }
    }
}

/// A transaction id (`tx_id`); [`Tx::NONE`] (Linux's `XBT_NIL`) for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx(pub u32);

impl Tx {
    /// Outside any transaction.
    pub const NONE: Tx = Tx(0);
}

/// A watch event: the path that changed (or the watched path itself, on
/// registration) and the watch's token.
#[derive(Clone, Copy, Debug)]
pub struct WatchEvent<'a> {
    /// The node that changed.
    pub path: &'a str,
    /// The token given at `XS_WATCH`.
    pub token: &'a str,
}

/// A watch callback; it may make requests through the client.
pub type WatchCallback<T> = fn(&mut Client<T>, &WatchEvent<'_>);

/// A registered watch (returned by [`Client::watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchId(u32);

struct Watch<T> {
    id: u32,
    path: [u8; WATCH_PATH_MAX],
    path_len: usize,
    callback: WatchCallback<T>,
}

#[derive(Clone, Copy)]
struct QueuedEvent {
    payload: [u8; EVENT_PAYLOAD_MAX],
    len: usize,
}

/// The xenbus client over one [`Transport`].
pub struct Client<T> {
    transport: T,
    next_req_id: u32,
    next_watch_id: u32,
    reply: [u8; XENSTORE_PAYLOAD_MAX],
    watches: [Option<Watch<T>>; MAX_WATCHES],
    events: [QueuedEvent; MAX_QUEUED_EVENTS],
    queued: usize,
    dropped: u64,
    /// `dropped` when [`Client::wait_for_events`] last returned.
    dropped_seen: u64,
    eagains: u64,
}

/// A message taken off the response ring: its header; the payload is in
/// `Client::reply` (cut to [`XENSTORE_PAYLOAD_MAX`]).
struct Message {
    header: Header,
    len: usize,
}

impl<T: Transport> Client<T> {
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            next_req_id: 1,
            next_watch_id: 1,
            reply: [0; XENSTORE_PAYLOAD_MAX],
            watches: [const { None }; MAX_WATCHES],
            events: [QueuedEvent {
                payload: [0; EVENT_PAYLOAD_MAX],
                len: 0,
            }; MAX_QUEUED_EVENTS],
            queued: 0,
            dropped: 0,
            dropped_seen: 0,
            eagains: 0,
        }
    }

    /// The transport (e.g. for its event-channel port).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Watch events lost because [`MAX_QUEUED_EVENTS`] were queued.
    pub fn events_dropped(&self) -> u64 {
        self.dropped
    }

    /// Commits [`Client::transaction`] saw fail with `EAGAIN` (each one
    /// re-ran its closure).
    pub fn transaction_eagains(&self) -> u64 {
        self.eagains
    }

    /// Sleeps until `done` holds for the value of `path` (`None`: no such
    /// node, or not readable), watching it; returns whether it exists.
    pub fn wait_until(
        &mut self,
        path: &str,
        done: impl Fn(Option<&[u8]>) -> bool,
    ) -> Result<(), XenbusError> {
        let watch = self.watch(path, ignore_event)?;
        let result = loop {
            let value = match self.read(Tx::NONE, path) {
                Ok(v) => Some(v),
                Err(XenbusError::Store(XsError::Enoent | XsError::Eacces)) => None,
                Err(e) => break Err(e),
            };
            if done(value) {
                break Ok(());
            }
            if let Err(e) = self.wait_for_events() {
                break Err(e);
            }
        };
        let _ = self.unwatch(watch);
        result
    }

    /// `XS_READ`: the value of `path`, borrowed until the next call.
    pub fn read(&mut self, tx: Tx, path: &str) -> Result<&[u8], XenbusError> {
        self.request(MsgType::Read, tx, &[path.as_bytes(), b"\0"])
    }

    /// `XS_READ` of a UTF-8 value (`Protocol` if it is not UTF-8).
    pub fn read_str(&mut self, tx: Tx, path: &str) -> Result<&str, XenbusError> {
        let value = self.read(tx, path)?;
        core::str::from_utf8(value).map_err(|_| XenbusError::Protocol)
    }

    /// `XS_WRITE`: sets `path` to `value`, creating it and missing parents.
    pub fn write(&mut self, tx: Tx, path: &str, value: &[u8]) -> Result<(), XenbusError> {
        self.request(MsgType::Write, tx, &[path.as_bytes(), b"\0", value])
            .map(|_| ())
    }

    /// `XS_MKDIR`: creates `path` (empty) if missing.
    pub fn mkdir(&mut self, tx: Tx, path: &str) -> Result<(), XenbusError> {
        self.request(MsgType::Mkdir, tx, &[path.as_bytes(), b"\0"])
            .map(|_| ())
    }

    /// `XS_RM`: removes `path` and its subtree.
    pub fn rm(&mut self, tx: Tx, path: &str) -> Result<(), XenbusError> {
        self.request(MsgType::Rm, tx, &[path.as_bytes(), b"\0"])
            .map(|_| ())
    }

    /// `XS_SET_PERMS`: `perms` as Xen writes them: the owner first
    /// ("n3": domain 3 owns, others have no access), then one entry per
    /// domain ("r5" read, "w5" write, "b5" both, "n5" none).
    pub fn set_perms(&mut self, tx: Tx, path: &str, perms: &[&str]) -> Result<(), XenbusError> {
        let mut parts: [&[u8]; 2 + 2 * MAX_PERMS] = [b""; 2 + 2 * MAX_PERMS];
        if perms.is_empty() || perms.len() > MAX_PERMS {
            return Err(XenbusError::Store(XsError::Einval));
        }
        parts[0] = path.as_bytes();
        parts[1] = b"\0";
        for (i, perm) in perms.iter().enumerate() {
            parts[2 + 2 * i] = perm.as_bytes();
            parts[3 + 2 * i] = b"\0";
        }
        self.request(MsgType::SetPerms, tx, &parts[..2 + 2 * perms.len()])
            .map(|_| ())
    }

    /// `XS_DIRECTORY`: the names of `path`'s children.
    pub fn directory(&mut self, tx: Tx, path: &str) -> Result<Directory<'_>, XenbusError> {
        let names = self.request(MsgType::Directory, tx, &[path.as_bytes(), b"\0"])?;
        Ok(Directory { names })
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: u16) -> Result<&str, XenbusError> {
        let mut digits = [0u8; 5];
        let reply = self.request(
            MsgType::GetDomainPath,
            Tx::NONE,
            &[decimal(domid.into(), &mut digits), b"\0"],
        )?;
        let path = reply.strip_suffix(&[0]).unwrap_or(reply);
        core::str::from_utf8(path).map_err(|_| XenbusError::Protocol)
    }

    /// `XS_WATCH`: calls `callback` for changes at or under `path`. The
    /// store fires it once at registration, as Xen's does.
    pub fn watch(
        &mut self,
        path: &str,
        callback: WatchCallback<T>,
    ) -> Result<WatchId, XenbusError> {
        let slot = self.watches.iter().position(Option::is_none);
        let (Some(slot), true) = (slot, path.len() <= WATCH_PATH_MAX) else {
            return Err(XenbusError::WatchTableFull);
        };
        let id = self.next_watch_id;
        self.next_watch_id = self.next_watch_id.wrapping_add(1).max(1);
        let mut saved = [0u8; WATCH_PATH_MAX];
        saved[..path.len()].copy_from_slice(path.as_bytes());
        // Registered before the request: the first event may come before
        // the reply (it is queued either way).
        self.watches[slot] = Some(Watch {
            id,
            path: saved,
            path_len: path.len(),
            callback,
        });
        let mut digits = [0u8; 10];
        let token = decimal(id, &mut digits);
        let result = self.request(
            MsgType::Watch,
            Tx::NONE,
            &[path.as_bytes(), b"\0", token, b"\0"],
        );
        match result {
            Ok(_) => Ok(WatchId(id)),
            Err(e) => {
                self.watches[slot] = None;
                Err(e)
            }
        }
    }

    /// `XS_UNWATCH`: removes a watch; queued events for it are dropped.
    pub fn unwatch(&mut self, watch: WatchId) -> Result<(), XenbusError> {
        let Some(slot) = self.watch_slot(watch.0) else {
            return Err(XenbusError::Store(XsError::Enoent));
        };
        let Some(w) = self.watches[slot].take() else {
            return Err(XenbusError::Store(XsError::Enoent));
        };
        let mut digits = [0u8; 10];
        let token = decimal(w.id, &mut digits);
        self.request(
            MsgType::Unwatch,
            Tx::NONE,
            &[&w.path[..w.path_len], b"\0", token, b"\0"],
        )
        .map(|_| ())
    }

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start(&mut self) -> Result<Tx, XenbusError> {
        let reply = self.request(MsgType::TransactionStart, Tx::NONE, &[b"\0"])?;
        let digits = reply.strip_suffix(&[0]).unwrap_or(reply);
        core::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&id| id != 0)
            .map(Tx)
            .ok_or(XenbusError::Protocol)
    }

    /// `XS_TRANSACTION_END`: commits (`commit`) or aborts `tx`. A commit
    /// fails with `Store(Eagain)` if another change conflicted.
    pub fn transaction_end(&mut self, tx: Tx, commit: bool) -> Result<(), XenbusError> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, tx, &[arg])
            .map(|_| ())
    }

    /// Runs `body` in a transaction and commits it; on `EAGAIN` runs it
    /// again in a new one (up to [`MAX_TRANSACTION_ATTEMPTS`] times). An
    /// error from `body` aborts the transaction and is returned.
    pub fn transaction<R>(
        &mut self,
        mut body: impl FnMut(&mut Self, Tx) -> Result<R, XenbusError>,
    ) -> Result<R, XenbusError> {
        let mut last = XenbusError::Store(XsError::Eagain);
        for _ in 0..MAX_TRANSACTION_ATTEMPTS {
            let tx = self.transaction_start()?;
            let value = match body(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(value),
                Err(e @ XenbusError::Store(XsError::Eagain)) => {
                    self.eagains += 1;
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Sends a request as given (header fields raw, `len` may lie) and
    /// returns the reply's type and payload: for tests of the store's
    /// defences, not drivers.
    pub fn raw_request(
        &mut self,
        header: Header,
        payload: &[u8],
    ) -> Result<(u32, &[u8]), XenbusError> {
        self.raw_send(header, payload)?;
        self.raw_receive(header.req_id)
    }

    /// Puts a raw request on the ring and notifies the store, without
    /// waiting for its reply (see [`Client::raw_request`]).
    pub fn raw_send(&mut self, header: Header, payload: &[u8]) -> Result<(), XenbusError> {
        self.send_bytes(&header.encode())?;
        self.send_bytes(payload)?;
        self.transport.notify();
        Ok(())
    }

    /// Waits for the reply to `req_id` (queueing watch events); its type
    /// and payload.
    pub fn raw_receive(&mut self, req_id: u32) -> Result<(u32, &[u8]), XenbusError> {
        let msg = self.receive(req_id)?;
        Ok((msg.header.msg_type, &self.reply[..msg.len]))
    }

    /// A fresh request id.
    pub fn next_req_id(&mut self) -> u32 {
        let id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1);
        id
    }

    /// Runs the callbacks of queued watch events and of events already in
    /// the ring, without sleeping; how many ran.
    pub fn dispatch_events(&mut self) -> Result<usize, XenbusError> {
        while self.transport.page().response_available()? >= HEADER_SIZE {
            // Replies cannot be here: one request at a time, each waited for.
            self.receive(0)?;
        }
        let mut ran = 0;
        while self.queued > 0 {
            let event = self.events[0];
            self.events.copy_within(1..self.queued, 0);
            self.queued -= 1;
            if self.run_callback(&event.payload[..event.len]) {
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Sleeps until at least one watch callback ran, or events were lost
    /// to a full queue since the last call (then 0: the caller re-reads
    /// whatever it waits for); how many callbacks ran.
    pub fn wait_for_events(&mut self) -> Result<usize, XenbusError> {
        loop {
            let ran = self.dispatch_events()?;
            let lost = self.dropped != self.dropped_seen;
            self.dropped_seen = self.dropped;
            if ran > 0 || lost {
                return Ok(ran);
            }
            self.check_connection()?;
            self.transport.wait()?;
        }
    }

    fn run_callback(&mut self, payload: &[u8]) -> bool {
        let mut parts = payload.split(|&b| b == 0);
        let (Some(path), Some(token)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(path), Ok(token)) = (core::str::from_utf8(path), core::str::from_utf8(token))
        else {
            return false;
        };
        let Some(slot) = token.parse().ok().and_then(|id| self.watch_slot(id)) else {
            return false;
        };
        let Some(callback) = self.watches[slot].as_ref().map(|w| w.callback) else {
            return false;
        };
        callback(self, &WatchEvent { path, token });
        true
    }

    fn watch_slot(&self, id: u32) -> Option<usize> {
        self.watches
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| w.id == id))
    }

    /// Sends one request and waits for its reply; an `XS_ERROR` reply
    /// becomes `Err(Store(..))`.
    fn request(&mut self, op: MsgType, tx: Tx, parts: &[&[u8]]) -> Result<&[u8], XenbusError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(XenbusError::TooLong);
        }
        let req_id = self.next_req_id();
        let header = Header {
            msg_type: op as u32,
            req_id,
            tx_id: tx.0,
            len: u32::try_from(len).map_err(|_| XenbusError::TooLong)?,
        };
        self.send_bytes(&header.encode())?;
        for part in parts {
            self.send_bytes(part)?;
        }
        self.transport.notify();
        let msg = self.receive(req_id)?;
        let payload = &self.reply[..msg.len];
        if msg.header.msg_type == MsgType::Error as u32 {
            return Err(XenbusError::Store(
                XsError::from_payload(payload).ok_or(XenbusError::Protocol)?,
            ));
        }
        if msg.header.msg_type != op as u32 {
            return Err(XenbusError::Protocol);
        }
        Ok(payload)
    }

    /// Puts all of `bytes` on the request ring, sleeping while it is full.
    fn send_bytes(&mut self, mut bytes: &[u8]) -> Result<(), XenbusError> {
        while !bytes.is_empty() {
            let n = self.transport.page().write_request(bytes)?;
            bytes = &bytes[n..];
            if n == 0 {
                self.transport.notify();
                self.check_connection()?;
                self.transport.wait()?;
            }
        }
        Ok(())
    }

    /// Takes messages off the response ring until the reply to `req_id`
    /// (queueing watch events); with `req_id` 0, takes one message.
    fn receive(&mut self, req_id: u32) -> Result<Message, XenbusError> {
        loop {
            let mut raw = [0u8; HEADER_SIZE];
            read_exact(&mut self.transport, &mut raw)?;
            let header = Header::decode(&raw);
            let len = usize::try_from(header.len).unwrap_or(usize::MAX);
            if len > XENSTORE_PAYLOAD_MAX {
                return Err(XenbusError::Protocol);
            }
            read_exact(&mut self.transport, &mut self.reply[..len])?;
            let msg = Message { header, len };
            if header.msg_type == MsgType::WatchEvent as u32 {
                self.queue_event(len);
                if req_id == 0 {
                    return Ok(msg);
                }
            } else if req_id == 0 || header.req_id == req_id {
                return Ok(msg);
            }
            // Else a stale reply to a request given up on: skip it.
        }
    }

    fn queue_event(&mut self, len: usize) {
        if self.queued == MAX_QUEUED_EVENTS || len > EVENT_PAYLOAD_MAX {
            self.dropped += 1;
            return;
        }
        let slot = &mut self.events[self.queued];
        slot.payload[..len].copy_from_slice(&self.reply[..len]);
        slot.len = len;
        self.queued += 1;
    }

    fn check_connection(&self) -> Result<(), XenbusError> {
        check_connection(&self.transport)
    }
}

/// Fills `buf` from the response ring, sleeping until bytes come.
fn read_exact<T: Transport>(transport: &mut T, buf: &mut [u8]) -> Result<(), XenbusError> {
    let mut done = 0;
    while done < buf.len() {
        let n = transport.page().read_response(&mut buf[done..])?;
        done += n;
        if n > 0 {
            // The store may be waiting for room to write more.
            transport.notify();
        } else {
            check_connection(transport)?;
            transport.wait()?;
        }
    }
    Ok(())
}

/// `Err(ConnectionDropped)` once the store reported an error in the page.
fn check_connection<T: Transport>(transport: &T) -> Result<(), XenbusError> {
    match transport.page().store_error() {
        Some(code) => Err(XenbusError::ConnectionDropped(code)),
        None => Ok(()),
    }
}

/// The children names of an `XS_DIRECTORY` reply.
#[derive(Clone, Copy, Debug)]
pub struct Directory<'a> {
    names: &'a [u8],
}

impl<'a> Directory<'a> {
    /// The names, in the store's order (non-UTF-8 names are skipped).
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        self.names
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .filter_map(|n| core::str::from_utf8(n).ok())
    }
}

/// A watch callback that does nothing: for waits that re-read the node.
fn ignore_event<T>(_: &mut Client<T>, _: &WatchEvent<'_>) {}

/// `value` in decimal, written into `buf`.
fn decimal(mut value: u32, buf: &mut [u8]) -> &[u8] {
    let mut end = buf.len();
    loop {
        end -= 1;
        buf[end] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 || end == 0 {
            break;
        }
    }
    &buf[end..]
}

#[cfg(test)]
mod tests;
