//! The store: nodes, connections and the request loop. dom0 owns one
//! [`Store`], feeds it each connection's request bytes ([`Store::feed`]),
//! takes the replies and watch events back ([`Store::drain_output`]) and
//! acts on [`Effect`]s (map or unmap a domain's ring).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::db::{Db, Transaction, View};
use crate::ops::{self, Caller};
use crate::path::{canonicalize, domain_path, parse_domid, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::perms::Perms;
use crate::quota::{
    PENDING_WATCH_EVENTS_MAX, QUOTA_OUTSTANDING, QUOTA_TRANSACTIONS, QUOTA_WATCHES,
};
use crate::watch::{self, Fired, Match, Watch};
use crate::wire::{
    encode_message, one_arg, split_strings, Header, MsgType, XsError, HEADER_SIZE,
    XENSTORE_PAYLOAD_MAX,
};
use crate::DomId;

/// A connection to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnId {
    /// A domain's ring, created by `XS_INTRODUCE` ([`Store::introduce`]).
    Domain(DomId),
    /// One of dom0's own clients (its toolstack, an operator's session
    /// over the management channel): privileged, as domain 0.
    Local(u32),
}

/// Something dom0 must do for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Map `domid`'s ring page at `gfn` (by grant `GNTTAB_RESERVED_XENSTORE`
    /// or foreign mapping), bind `port`, then service
    /// `ConnId::Domain(domid)`. Sent again when a domain is re-introduced.
    Introduced {
        /// The domain.
        domid: DomId,
        /// Guest frame of its `xenstore_domain_interface` page.
        gfn: u64,
        /// Its end of the store event channel.
        port: u32,
    },
    /// Unmap `domid`'s ring and close its event channel.
    Released {
        /// The domain.
        domid: DomId,
    },
}

/// The connection broke the protocol; xenstored drops ("ignores") it.
/// Other connections are unaffected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// No such connection (never made, released, or dropped).
    NoConnection,
    /// A header announced more than `XENSTORE_PAYLOAD_MAX` bytes
    /// (`XENSTORE_ERROR_PROTO`).
    PayloadTooLong,
    /// The shared ring's indices are impossible (`XENSTORE_ERROR_RINGIDX`).
    RingIndex,
}

#[derive(Debug)]
struct Out {
    bytes: Vec<u8>,
    sent: usize,
    reply: bool,
}

#[derive(Debug)]
struct Conn {
    caller: Caller,
    /// The message being received: header, then payload.
    input: Vec<u8>,
    watches: Vec<Watch>,
    transactions: BTreeMap<u32, Transaction>,
    next_tx_id: u32,
    out: VecDeque<Out>,
}

impl Conn {
    fn new(caller: Caller) -> Self {
        Self {
            caller,
            input: Vec::new(),
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_tx_id: 1,
            out: VecDeque::new(),
        }
    }

    fn pending(&self, reply: bool) -> usize {
        self.out.iter().filter(|o| o.reply == reply).count()
    }

    /// Queues a watch event unless an identical one is pending (not for
    /// special paths) or the queue is full (xenstored's `send_event`).
    fn push_event(&mut self, payload: Vec<u8>) {
        let msg = encode_message(MsgType::WatchEvent, 0, 0, &payload);
        let duplicate =
            payload.first() != Some(&b'@') && self.out.iter().any(|o| !o.reply && o.bytes == msg);
        if payload.len() <= XENSTORE_PAYLOAD_MAX
            && !duplicate
            && self.pending(false) < PENDING_WATCH_EVENTS_MAX
        {
            self.out.push_back(Out {
                bytes: msg,
                sent: 0,
                reply: false,
            });
        }
    }
}

/// What a request produced.
struct Done {
    reply: Vec<u8>,
    fired: Vec<Fired>,
}

impl Done {
    fn ok() -> Self {
        Self {
            reply: Vec::from(&b"OK\0"[..]),
            fired: Vec::new(),
        }
    }

    fn reply(reply: Vec<u8>) -> Self {
        Self {
            reply,
            fired: Vec::new(),
        }
    }
}

/// The store: the node tree, connections, introduced domains.
#[derive(Debug, Default)]
pub struct Store {
    db: Db,
    conns: BTreeMap<ConnId, Conn>,
    /// Introduced domains.
    domains: BTreeSet<DomId>,
    /// Introduced domains seen shut down (`@releaseDomain` fired once).
    shut_down: BTreeSet<DomId>,
    effects: Vec<Effect>,
}

impl Store {
    /// A store with xenstored's initial tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens dom0-local connection `id` (privileged, as domain 0). An
    /// existing connection of that id is reset.
    pub fn connect_local(&mut self, id: u32) {
        self.conns.insert(
            ConnId::Local(id),
            Conn::new(Caller {
                domid: 0,
                privileged: true,
            }),
        );
    }

    /// Closes a connection: its watches and open transactions go.
    pub fn disconnect(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    /// Whether `id` is open.
    pub fn is_connected(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// `XS_INTRODUCE`: makes `domid`'s connection (unprivileged), fires
    /// `@introduceDomain` the first time, and asks dom0 to map the ring
    /// ([`Effect::Introduced`]). Re-introducing resets the connection.
    /// `EINVAL` for domain 0 (dom0 is the store's own domain and uses
    /// local connections) and for port 0.
    pub fn introduce(&mut self, domid: DomId, gfn: u64, port: u32) -> Result<(), XsError> {
        if domid == 0 || port == 0 {
            return Err(XsError::Einval);
        }
        let first = self.domains.insert(domid);
        self.conns.insert(
            ConnId::Domain(domid),
            Conn::new(Caller {
                domid,
                privileged: false,
            }),
        );
        self.effects.push(Effect::Introduced { domid, gfn, port });
        if first {
            self.fire_special(INTRODUCE_DOMAIN);
        }
        Ok(())
    }

    /// `XS_RELEASE`: drops `domid`'s connection (its watches and
    /// transactions), removes its name from every permission (its nodes
    /// pass to dom0) so a later domain with the same id inherits nothing,
    /// fires `@releaseDomain` and asks dom0 to unmap the ring. The tree
    /// under its home stays until the toolstack removes it. `ENOENT` if
    /// not introduced.
    pub fn release(&mut self, domid: DomId) -> Result<(), XsError> {
        if domid == 0 {
            return Err(XsError::Einval);
        }
        if !self.domains.remove(&domid) {
            return Err(XsError::Enoent);
        }
        self.shut_down.remove(&domid);
        self.conns.remove(&ConnId::Domain(domid));
        let stale: Vec<String> = self
            .db
            .iter()
            .filter(|(_, n)| n.perms.forget(domid, 0) != n.perms)
            .map(|(p, _)| p.clone())
            .collect();
        for path in stale {
            if let Some(mut node) = self.db.get(&path).cloned() {
                node.perms = node.perms.forget(domid, 0);
                self.db.set(&path, Some(node));
            }
        }
        self.effects.push(Effect::Released { domid });
        self.fire_special(RELEASE_DOMAIN);
        Ok(())
    }

    /// dom0 saw introduced domain `domid` shut down (or dying): fires
    /// `@releaseDomain` the first time, as xenstored's `domain_cleanup`
    /// does on `VIRQ_DOM_EXC`, so watchers (xl's `shutdown -w`) learn of
    /// it before the domain is destroyed. Returns whether it fired.
    pub fn note_shutdown(&mut self, domid: DomId) -> bool {
        if !self.domains.contains(&domid) || !self.shut_down.insert(domid) {
            return false;
        }
        self.fire_special(RELEASE_DOMAIN);
        true
    }

    /// Whether `domid` has been introduced and not released.
    pub fn is_introduced(&self, domid: DomId) -> bool {
        self.domains.contains(&domid)
    }

    /// The effects produced since the last call, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        core::mem::take(&mut self.effects)
    }

    /// Takes request bytes from connection `id` and serves every complete
    /// message. Returns how many bytes it took: it stops early while
    /// [`QUOTA_OUTSTANDING`] replies wait in the output, and the caller
    /// leaves the rest where it was (in the ring) for later.
    /// [`ConnError::PayloadTooLong`] drops the connection.
    pub fn feed(&mut self, id: ConnId, bytes: &[u8]) -> Result<usize, ConnError> {
        let mut taken = 0;
        while taken < bytes.len() {
            let conn = self.conns.get_mut(&id).ok_or(ConnError::NoConnection)?;
            if conn.pending(true) >= QUOTA_OUTSTANDING {
                break;
            }
            let want = match conn.input.len() {
                n if n < HEADER_SIZE => HEADER_SIZE - n,
                n => HEADER_SIZE + header_of(&conn.input).len as usize - n,
            };
            let chunk = &bytes[taken..bytes.len().min(taken + want)];
            conn.input.extend_from_slice(chunk);
            taken += chunk.len();
            if conn.input.len() < HEADER_SIZE {
                continue;
            }
            let header = header_of(&conn.input);
            if header.len as usize > XENSTORE_PAYLOAD_MAX {
                self.conns.remove(&id);
                return Err(ConnError::PayloadTooLong);
            }
            if conn.input.len() == HEADER_SIZE + header.len as usize {
                let payload = conn.input.split_off(HEADER_SIZE);
                conn.input.clear();
                self.process(id, header, &payload);
            }
        }
        Ok(taken)
    }

    /// Copies up to `buf.len()` bytes of `id`'s pending replies and events
    /// into `buf` (for its response ring) and returns how many.
    pub fn drain_output(&mut self, id: ConnId, buf: &mut [u8]) -> usize {
        let Some(conn) = self.conns.get_mut(&id) else {
            return 0;
        };
        let mut n = 0;
        while let Some(front) = conn.out.front_mut() {
            let rest = &front.bytes[front.sent..];
            let k = rest.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&rest[..k]);
            n += k;
            front.sent += k;
            if front.sent < front.bytes.len() {
                break;
            }
            conn.out.pop_front();
        }
        n
    }

    /// Whether `id` has replies or events waiting.
    pub fn has_output(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.out.is_empty())
    }

    /// Serves one message and queues its events, then its reply (the
    /// order xenstored sends them in).
    fn process(&mut self, id: ConnId, header: Header, payload: &[u8]) {
        let result = self.dispatch(id, header, payload);
        let (msg_type, body) = match result {
            Ok((t, done)) => {
                for f in &done.fired {
                    self.fire(f);
                }
                if done.reply.len() > XENSTORE_PAYLOAD_MAX {
                    (MsgType::Error, crate::wire::error_payload(XsError::E2big))
                } else {
                    (t, done.reply)
                }
            }
            Err(e) => (MsgType::Error, crate::wire::error_payload(e)),
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            let bytes = encode_message(msg_type, header.req_id, header.tx_id, &body);
            conn.out.push_back(Out {
                bytes,
                sent: 0,
                reply: true,
            });
        }
    }

    fn dispatch(
        &mut self,
        id: ConnId,
        header: Header,
        payload: &[u8],
    ) -> Result<(MsgType, Done), XsError> {
        let msg_type = MsgType::from_raw(header.msg_type).ok_or(XsError::Enosys)?;
        let caller = self.conns.get(&id).ok_or(XsError::Eio)?.caller;
        let privileged_only = matches!(
            msg_type,
            MsgType::Introduce | MsgType::Release | MsgType::IsDomainIntroduced
        );
        if privileged_only && !caller.privileged {
            return Err(XsError::Eacces);
        }
        let done = match msg_type {
            MsgType::Introduce => self.do_introduce(payload)?,
            MsgType::Release => {
                self.release(domid_arg(payload)?)?;
                Done::ok()
            }
            MsgType::IsDomainIntroduced => {
                let domid = parse_domid(one_arg(payload)?)?;
                let yes = u16::try_from(domid).is_ok_and(|d| d == 0 || self.is_introduced(d));
                Done::reply(Vec::from(if yes { &b"T\0"[..] } else { &b"F\0"[..] }))
            }
            MsgType::GetDomainPath => {
                let mut path = Vec::from(domain_path(domid_arg(payload)?).as_bytes());
                path.push(0);
                Done::reply(path)
            }
            _ => self.with_conn(id, |db, conn| {
                conn_request(db, conn, msg_type, header.tx_id, payload)
            })?,
        };
        Ok((msg_type, done))
    }

    /// Runs `f` with the connection taken out of the table, so it can
    /// change both the connection and the nodes.
    fn with_conn<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Db, &mut Conn) -> Result<R, XsError>,
    ) -> Result<R, XsError> {
        let mut conn = self.conns.remove(&id).ok_or(XsError::Eio)?;
        let r = f(&mut self.db, &mut conn);
        self.conns.insert(id, conn);
        r
    }

    fn do_introduce(&mut self, payload: &[u8]) -> Result<Done, XsError> {
        let (args, _) = split_strings(payload);
        let [domid, gfn, port] = args
            .get(..3)
            .and_then(|a| <[&[u8]; 3]>::try_from(a).ok())
            .ok_or(XsError::Einval)?;
        let domid = DomId::try_from(parse_domid(domid)?).map_err(|_| XsError::Einval)?;
        let gfn = parse_u64(gfn)?;
        let port = u32::try_from(parse_u64(port)?).map_err(|_| XsError::Einval)?;
        self.introduce(domid, gfn, port)?;
        Ok(Done::ok())
    }

    /// Sends `fired` to every watch it matches whose connection may see it.
    fn fire(&mut self, fired: &Fired) {
        for conn in self.conns.values_mut() {
            if !fired.permitted(conn.caller.domid, conn.caller.privileged) {
                continue;
            }
            let events: Vec<Vec<u8>> = conn
                .watches
                .iter()
                .filter(|w| fired.matches(w))
                .map(|w| w.event_payload(&fired.path))
                .collect();
            for e in events {
                conn.push_event(e);
            }
        }
    }

    fn fire_special(&mut self, path: &str) {
        let readers = self
            .db
            .get(path)
            .map(|n| alloc::vec![n.perms.clone()])
            .unwrap_or_default();
        self.fire(&Fired {
            path: String::from(path),
            kind: Match::Exact,
            readers,
        });
    }

    /// The committed value at `path` (for dom0's own use and tests).
    pub fn read_committed(&self, path: &str) -> Option<&[u8]> {
        self.db.get(path).map(|n| n.value.as_slice())
    }

    /// Committed paths in order (for dom0's own use and tests).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.db.iter().map(|(p, _)| p.as_str())
    }

    /// The committed permissions at `path`.
    pub fn perms_committed(&self, path: &str) -> Option<&Perms> {
        self.db.get(path).map(|n| &n.perms)
    }
}

fn header_of(input: &[u8]) -> Header {
    let mut h = [0u8; HEADER_SIZE];
    h.copy_from_slice(&input[..HEADER_SIZE]);
    Header::decode(&h)
}

fn parse_u64(raw: &[u8]) -> Result<u64, XsError> {
    core::str::from_utf8(raw)
        .ok()
        .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(XsError::Einval)
}

fn domid_arg(payload: &[u8]) -> Result<DomId, XsError> {
    DomId::try_from(parse_domid(one_arg(payload)?)?).map_err(|_| XsError::Einval)
}

/// Requests that touch only the caller's connection and the nodes.
fn conn_request(
    db: &mut Db,
    conn: &mut Conn,
    msg_type: MsgType,
    tx_id: u32,
    payload: &[u8],
) -> Result<Done, XsError> {
    match msg_type {
        MsgType::Watch => return watch_op(conn, payload),
        MsgType::Unwatch => return unwatch_op(conn, payload),
        MsgType::ResetWatches => {
            conn.watches.clear();
            conn.transactions.clear();
            return Ok(Done::ok());
        }
        MsgType::TransactionStart => return transaction_start(conn, tx_id),
        MsgType::TransactionEnd => return transaction_end(db, conn, tx_id, payload),
        _ => {}
    }
    let caller = conn.caller;
    let tx = match tx_id {
        0 => None,
        id => Some(conn.transactions.get_mut(&id).ok_or(XsError::Enoent)?),
    };
    let queued = tx.is_some();
    let mut view = View {
        db,
        tx,
        privileged: caller.privileged,
    };
    let mut done = node_request(&mut view, caller, msg_type, payload)?;
    if queued {
        // In a transaction, events wait for the commit.
        if let Some(tx) = view.tx {
            for f in done.fired.drain(..) {
                watch::queue(&mut tx.events, f);
            }
        }
    }
    Ok(done)
}

fn node_request(
    view: &mut View,
    caller: Caller,
    msg_type: MsgType,
    payload: &[u8],
) -> Result<Done, XsError> {
    let path =
        |raw: &[u8], special: bool| canonicalize(raw, caller.domid, caller.privileged, special);
    match msg_type {
        MsgType::Read => Ok(Done::reply(ops::read(
            view,
            caller,
            &path(one_arg(payload)?, false)?,
        )?)),
        MsgType::Directory => Ok(Done::reply(ops::directory(
            view,
            caller,
            &path(one_arg(payload)?, false)?,
        )?)),
        MsgType::GetPerms => Ok(Done::reply(ops::get_perms(
            view,
            caller,
            &path(one_arg(payload)?, true)?,
        )?)),
        MsgType::DirectoryPart => {
            let (args, _) = split_strings(payload);
            let [name, offset] =
                <[&[u8]; 2]>::try_from(args.as_slice()).map_err(|_| XsError::Einval)?;
            let offset = usize::try_from(parse_u64(offset)?).map_err(|_| XsError::Einval)?;
            Ok(Done::reply(ops::directory_part(
                view,
                caller,
                &path(name, false)?,
                offset,
            )?))
        }
        MsgType::Write => {
            let nul = payload
                .iter()
                .position(|b| *b == 0)
                .ok_or(XsError::Einval)?;
            let fired = ops::write(
                view,
                caller,
                &path(&payload[..nul], false)?,
                &payload[nul + 1..],
            )?;
            Ok(Done {
                fired: alloc::vec![fired],
                ..Done::ok()
            })
        }
        MsgType::Mkdir => {
            let fired = ops::mkdir(view, caller, &path(one_arg(payload)?, false)?)?;
            Ok(Done {
                fired: fired.into_iter().collect(),
                ..Done::ok()
            })
        }
        MsgType::Rm => {
            let fired = ops::rm(view, caller, &path(one_arg(payload)?, false)?)?;
            Ok(Done {
                fired,
                ..Done::ok()
            })
        }
        MsgType::SetPerms => {
            let (args, _) = split_strings(payload);
            let (name, perms) = args.split_first().ok_or(XsError::Einval)?;
            let perms = Perms::parse(perms)?;
            let fired = ops::set_perms(view, caller, &path(name, true)?, perms)?;
            Ok(Done {
                fired: alloc::vec![fired],
                ..Done::ok()
            })
        }
        // Served elsewhere, replies only, or not served (CONTROL, RESUME,
        // SET_TARGET, features, quotas).
        _ => Err(XsError::Enosys),
    }
}

/// `XS_WATCH`: path, token. Duplicates give `EEXIST`; past
/// `QUOTA_WATCHES`, `ENOSPC`. The watch fires once at once.
fn watch_op(conn: &mut Conn, payload: &[u8]) -> Result<Done, XsError> {
    let (args, _) = split_strings(payload);
    let [raw, token] = <[&[u8]; 2]>::try_from(args.as_slice()).map_err(|_| XsError::Einval)?;
    let caller = conn.caller;
    let path = canonicalize(raw, caller.domid, caller.privileged, true)?;
    if conn
        .watches
        .iter()
        .any(|w| w.path == path && w.token == token)
    {
        return Err(XsError::Eexist);
    }
    if !caller.privileged && conn.watches.len() >= QUOTA_WATCHES {
        return Err(XsError::Enospc);
    }
    let relative = !matches!(raw.first(), Some(b'/' | b'@'));
    let prefix_len = if relative {
        domain_path(caller.domid).len() + 1
    } else {
        0
    };
    let watch = Watch {
        path,
        token: Vec::from(token),
        prefix_len,
    };
    let first = watch.event_payload(&watch.path);
    conn.watches.push(watch);
    // xenstored queues the first event before the reply; so do we.
    conn.push_event(first);
    Ok(Done::ok())
}

/// `XS_UNWATCH`: path, token; `ENOENT` if no such watch.
fn unwatch_op(conn: &mut Conn, payload: &[u8]) -> Result<Done, XsError> {
    let (args, _) = split_strings(payload);
    let [raw, token] = <[&[u8]; 2]>::try_from(args.as_slice()).map_err(|_| XsError::Einval)?;
    let path = canonicalize(raw, conn.caller.domid, conn.caller.privileged, true)?;
    let i = conn
        .watches
        .iter()
        .position(|w| w.path == path && w.token == token)
        .ok_or(XsError::Enoent)?;
    conn.watches.remove(i);
    Ok(Done::ok())
}

/// `XS_TRANSACTION_START`: replies with the new id in decimal. `EBUSY`
/// inside a transaction (no nesting), `ENOSPC` past `QUOTA_TRANSACTIONS`.
fn transaction_start(conn: &mut Conn, tx_id: u32) -> Result<Done, XsError> {
    if tx_id != 0 {
        return Err(if conn.transactions.contains_key(&tx_id) {
            XsError::Ebusy
        } else {
            XsError::Enoent
        });
    }
    if !conn.caller.privileged && conn.transactions.len() >= QUOTA_TRANSACTIONS {
        return Err(XsError::Enospc);
    }
    // Ids are never 0 and skip ids still open (the open set is bounded).
    let mut id = conn.next_tx_id;
    while id == 0 || conn.transactions.contains_key(&id) {
        id = id.wrapping_add(1);
    }
    conn.next_tx_id = id.wrapping_add(1);
    conn.transactions.insert(id, Transaction::default());
    let mut reply = Vec::from(alloc::format!("{id}").as_bytes());
    reply.push(0);
    Ok(Done::reply(reply))
}

/// `XS_TRANSACTION_END`: "T" commits (`EAGAIN` on a conflict, with no
/// effect), "F" aborts. The transaction ends either way.
fn transaction_end(
    db: &mut Db,
    conn: &mut Conn,
    tx_id: u32,
    payload: &[u8],
) -> Result<Done, XsError> {
    let commit = match one_arg(payload)? {
        b"T" => true,
        b"F" => false,
        _ => return Err(XsError::Einval),
    };
    let tx = conn.transactions.remove(&tx_id).ok_or(XsError::Enoent)?;
    let fired = if commit {
        let quota_domid = (!conn.caller.privileged).then_some(conn.caller.domid);
        tx.commit(db, quota_domid)?
    } else {
        Vec::new()
    };
    Ok(Done {
        fired,
        ..Done::ok()
    })
}
