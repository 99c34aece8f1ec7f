//! The store service: dom0 owns the one [`xenstore::Store`] and connects
//! it to its clients. Local (privileged, as domain 0) connections are
//! dom0's own: the toolstack's and one per management session that asks
//! (`mgmt::Request::Xenstore`); each takes raw `xsd_sockmsg` bytes and
//! gives back replies and `XS_WATCH_EVENT`s as bytes.

mod page;
#[cfg(target_os = "none")]
mod rings;
pub mod tree;

use alloc::string::String;
use alloc::vec::Vec;

use xenstore::wire::{encode_message, Header, MsgType, HEADER_SIZE};
use xenstore::{ConnError, ConnId, DomId, Store};

use tree::{dom_path, domain_tree, vm_path, NewDomain, Node};

/// Largest output one [`StoreService::take_output`] returns, bytes (the
/// rest waits for the next call): what one management message carries.
pub const TAKE_OUTPUT_MAX: usize = mgmt::MAX_XENSTORE_DATA;

/// Local connections open at once, at most (sessions come and go one at a
/// time; the toolstack holds one).
pub const LOCAL_CONNECTIONS_MAX: usize = 16;

/// The toolstack's local connection id.
const TOOLSTACK_CONN: u32 = 0;

/// dom0's store and its connections.
pub struct StoreService {
    store: Store,
    /// The toolstack's own connection (writes trees, introduces).
    toolstack: ConnId,
    /// The domains' rings.
    #[cfg(target_os = "none")]
    rings: rings::Rings,
    /// Local connection ids in use.
    locals: Vec<u32>,
    /// The next local id to hand out (ids are not reused soon, so a stale
    /// id from an ended session finds nothing).
    next_local: u32,
}

/// Why a local request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalError {
    /// [`LOCAL_CONNECTIONS_MAX`] connections are open.
    TooManyConnections,
    /// The connection broke the protocol (a header announcing more than
    /// `XENSTORE_PAYLOAD_MAX`) and was dropped, or never existed.
    Dropped(ConnError),
}

impl Default for StoreService {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreService {
    /// A store with xenstored's initial tree and no connections.
    pub fn new() -> Self {
        let mut store = Store::new();
        store.connect_local(TOOLSTACK_CONN);
        StoreService {
            store,
            toolstack: ConnId::Local(TOOLSTACK_CONN),
            #[cfg(target_os = "none")]
            rings: rings::Rings::new(),
            locals: Vec::new(),
            next_local: TOOLSTACK_CONN + 1,
        }
    }

    /// The toolstack's part at create (libxl's `libxl__domain_make` and
    /// `libxl__build_post`): writes `d`'s standard tree with its
    /// permissions, then `XS_INTRODUCE`s it (which fires
    /// `@introduceDomain`). The first refusal is returned as Xen's error
    /// string.
    pub fn domain_created(&mut self, d: &NewDomain) -> Result<(), String> {
        self.write_nodes(&domain_tree(d))?;
        let (gfn, port) = d.store;
        let introduce = alloc::format!("{}\0{gfn}\0{port}\0", d.domid);
        self.toolstack_call(MsgType::Introduce, introduce.as_bytes())
    }

    /// Domains dom0 saw shut down or dying: each introduced one fires
    /// `@releaseDomain` once (xenstored's `domain_cleanup`). Returns
    /// whether any fired (its events wait to be sent).
    pub fn note_stopped(&mut self, domids: &[DomId]) -> bool {
        domids
            .iter()
            .fold(false, |fired, d| self.store.note_shutdown(*d) | fired)
    }

    /// The toolstack's part at destroy: `XS_RELEASE` (fires
    /// `@releaseDomain`; dom0 lets go of the ring) and removes the
    /// domain's tree. A domain that was never introduced only loses its
    /// tree.
    pub fn domain_destroyed(&mut self, domid: DomId) {
        let release = alloc::format!("{domid}\0");
        let _ = self.toolstack_call(MsgType::Release, release.as_bytes());
        for path in [dom_path(domid), vm_path(domid)] {
            self.remove(&path);
        }
    }

    /// Writes `nodes` in order on the toolstack's connection (each with
    /// its permissions, if it has its own); the first refusal is returned
    /// as Xen's error string. Watches fire as for any write.
    pub fn write_nodes(&mut self, nodes: &[Node]) -> Result<(), String> {
        for node in nodes {
            let mut payload = Vec::from(node.path.as_bytes());
            payload.push(0);
            payload.extend_from_slice(node.value.as_bytes());
            self.toolstack_call(MsgType::Write, &payload)?;
            if let Some(perms) = &node.perms {
                let mut payload = Vec::from(node.path.as_bytes());
                payload.push(0);
                for perm in perms {
                    payload.extend_from_slice(perm.as_bytes());
                    payload.push(0);
                }
                self.toolstack_call(MsgType::SetPerms, &payload)?;
            }
        }
        Ok(())
    }

    /// The committed value at `path`, if the node exists.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.store.read_committed(path)
    }

    /// Removes `path` and everything under it (nothing if it is absent).
    pub fn remove(&mut self, path: &str) {
        let mut payload = Vec::from(path.as_bytes());
        payload.push(0);
        let _ = self.toolstack_call(MsgType::Rm, &payload);
    }

    /// One request on the toolstack's connection, answered at once.
    fn toolstack_call(&mut self, msg: MsgType, payload: &[u8]) -> Result<(), String> {
        let request = encode_message(msg, 0, 0, payload);
        self.store
            .feed(self.toolstack, &request)
            .map_err(|e| alloc::format!("{e:?}"))?;
        let reply = self.take_output(self.toolstack);
        let Some(header) = reply.first_chunk::<HEADER_SIZE>().map(Header::decode) else {
            return Err("no reply".into());
        };
        if header.msg_type == MsgType::Error as u32 {
            let text = &reply[HEADER_SIZE..];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Err(String::from_utf8_lossy(text).into_owned());
        }
        Ok(())
    }

    /// Opens a new privileged local connection.
    pub fn connect_local(&mut self) -> Result<ConnId, LocalError> {
        if self.locals.len() >= LOCAL_CONNECTIONS_MAX {
            return Err(LocalError::TooManyConnections);
        }
        let id = self.next_local;
        self.next_local = self.next_local.wrapping_add(1).max(1);
        self.store.connect_local(id);
        self.locals.push(id);
        Ok(ConnId::Local(id))
    }

    /// Feeds `bytes` (one or more whole or partial `xsd_sockmsg`s) to
    /// local connection `conn`. A connection that breaks the protocol is
    /// dropped (its id then answers [`ConnError::NoConnection`]). Bytes
    /// the store could not take yet (too many replies waiting) are
    /// refused with nothing lost: the caller sends them again after
    /// [`Self::take_output`]; returns how many were taken.
    pub fn request(&mut self, conn: ConnId, bytes: &[u8]) -> Result<usize, LocalError> {
        let result = self.store.feed(conn, bytes);
        if let (Err(_), ConnId::Local(id)) = (result, conn) {
            self.locals.retain(|l| *l != id);
        }
        result.map_err(LocalError::Dropped)
    }

    /// Takes up to [`TAKE_OUTPUT_MAX`] bytes of `conn`'s replies and
    /// watch events.
    pub fn take_output(&mut self, conn: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        if self.store.has_output(conn) {
            out.resize(TAKE_OUTPUT_MAX, 0);
            let n = self.store.drain_output(conn, &mut out);
            out.truncate(n);
        }
        out
    }

    /// Whether `conn` has output waiting.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.store.has_output(conn)
    }

    /// Closes local connection `conn`: its watches and open transactions
    /// go.
    pub fn disconnect_local(&mut self, conn: ConnId) {
        if let ConnId::Local(id) = conn {
            self.locals.retain(|l| *l != id);
            self.store.disconnect(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::wire::{encode_message, MsgType};

    #[test]
    fn a_local_connection_writes_reads_and_is_told_of_watches() {
        let mut service = StoreService::new();
        let a = service.connect_local().unwrap();
        let b = service.connect_local().unwrap();
        assert_ne!(a, b);
        let write = encode_message(MsgType::Write, 7, 0, b"/tool/x\0hello");
        assert_eq!(service.request(a, &write), Ok(write.len()));
        let out = service.take_output(a);
        assert!(out.ends_with(b"OK\0"), "{out:?}");
        let read = encode_message(MsgType::Read, 8, 0, b"/tool/x\0");
        service.request(b, &read).unwrap();
        assert!(service.take_output(b).ends_with(b"hello"));
        // b watches; a's write fires it; the event waits for b alone.
        let watch = encode_message(MsgType::Watch, 9, 0, b"/tool\0tok\0");
        service.request(b, &watch).unwrap();
        service.take_output(b);
        service.request(a, &write).unwrap();
        service.take_output(a);
        assert!(service.has_output(b));
        let event = service.take_output(b);
        assert!(event.ends_with(b"/tool/x\0tok\0"), "{event:?}");
        service.disconnect_local(b);
        assert!(!service.has_output(b));
        assert!(service.request(b, &read).is_err());
    }

    #[test]
    fn an_oversize_header_drops_only_that_connection() {
        let mut service = StoreService::new();
        let bad = service.connect_local().unwrap();
        let good = service.connect_local().unwrap();
        let mut header = encode_message(MsgType::Read, 1, 0, b"");
        header[12..16].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            service.request(bad, &header),
            Err(LocalError::Dropped(_))
        ));
        let read = encode_message(MsgType::Read, 2, 0, b"/\0");
        assert_eq!(service.request(good, &read), Ok(read.len()));
    }

    #[test]
    fn create_writes_the_tree_and_introduces_destroy_releases_and_removes_it() {
        let mut service = StoreService::new();
        let watcher = service.connect_local().unwrap();
        for (path, token) in [("@introduceDomain", "i"), ("@releaseDomain", "r")] {
            let watch = alloc::format!("{path}\0{token}\0");
            service
                .request(
                    watcher,
                    &encode_message(MsgType::Watch, 1, 0, watch.as_bytes()),
                )
                .unwrap();
        }
        service.take_output(watcher);
        let d = NewDomain {
            domid: 4,
            name: "g",
            max_memkb: 8200,
            target_memkb: 8200,
            vcpus: 1,
            store: (0x801, 3),
            console: Some((0x800, 2)),
        };
        service.domain_created(&d).unwrap();
        assert_eq!(
            service.store.read_committed("/local/domain/4/name"),
            Some(&b"g"[..])
        );
        assert!(service.store.is_introduced(4));
        let events = service.take_output(watcher);
        assert!(events.windows(16).any(|w| w == b"@introduceDomain"));
        // The guest owns control/shutdown; only it and dom0 may write it.
        let perms = service
            .store
            .perms_committed("/local/domain/4/control/shutdown");
        assert_eq!(perms.map(|p| p.owner()), Some(4));
        assert!(service.note_stopped(&[4, 9]), "d4 shut down");
        assert!(!service.note_stopped(&[4]), "once");
        let events = service.take_output(watcher);
        assert!(events.windows(14).any(|w| w == b"@releaseDomain"));
        service.domain_destroyed(4);
        assert!(!service.store.is_introduced(4));
        assert!(service
            .store
            .paths()
            .all(|p| !p.starts_with("/local/domain/4") && !p.starts_with("/vm/")));
        let events = service.take_output(watcher);
        assert!(events.windows(14).any(|w| w == b"@releaseDomain"));
    }

    #[test]
    fn device_nodes_are_written_with_their_perms_read_and_removed() {
        let mut service = StoreService::new();
        let nodes = [
            Node {
                path: "/local/domain/0/backend/vif/3/0".into(),
                value: String::new(),
                perms: Some(alloc::vec!["n0".into(), "r3".into()]),
            },
            Node {
                path: "/local/domain/0/backend/vif/3/0/state".into(),
                value: "2".into(),
                perms: None,
            },
        ];
        service.write_nodes(&nodes).unwrap();
        assert_eq!(
            service.read("/local/domain/0/backend/vif/3/0/state"),
            Some(&b"2"[..])
        );
        let perms = service
            .store
            .perms_committed("/local/domain/0/backend/vif/3/0/state");
        assert_eq!(perms.map(|p| p.owner()), Some(0));
        service.remove("/local/domain/0/backend/vif/3");
        assert_eq!(service.read("/local/domain/0/backend/vif/3/0/state"), None);
    }

    #[test]
    fn local_connections_are_bounded() {
        let mut service = StoreService::new();
        let conns: Vec<_> = (0..LOCAL_CONNECTIONS_MAX)
            .map(|_| service.connect_local().unwrap())
            .collect();
        assert_eq!(service.connect_local(), Err(LocalError::TooManyConnections));
        service.disconnect_local(conns[0]);
        assert!(service.connect_local().is_ok());
    }
}

#[cfg(target_os = "none")]
mod live {
    use abi::control::{parse_domain_name, DomainInfo, DOMAIN_FLAG_DYING};
    use abi::xen::hvm::{
        HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN,
        HVM_PARAM_STORE_PFN,
    };
    use guest_pv_shim::{println, Events, Grants, Xen};
    use xenstore::Effect;

    use super::*;

    impl StoreService {
        /// Introduces every domain already running (the boot-time domUs
        /// xen-core built before dom0 started), as if dom0's toolstack
        /// had created them.
        pub fn adopt_running(&mut self, xen: &Xen, domains: &[DomainInfo]) {
            // dom0 itself is not introduced; a control domU is.
            let alive = |d: &&DomainInfo| d.domid != 0 && d.flags & DOMAIN_FLAG_DYING == 0;
            for info in domains.iter().filter(alive) {
                self.introduce_new(xen, info);
            }
        }

        /// Writes `info`'s tree and introduces it, from its HVM params
        /// (said on COM1 either way). Nothing if it has no store ring.
        pub fn introduce_new(&mut self, xen: &Xen, info: &DomainInfo) {
            let domid = info.domid;
            let param = |index| xen.hvm_get_param_of(domid, index).unwrap_or(0);
            let (gfn, port) = (param(HVM_PARAM_STORE_PFN), param(HVM_PARAM_STORE_EVTCHN));
            let Ok(port) = u32::try_from(port) else {
                return;
            };
            if gfn == 0 || port == 0 {
                println!("dom0: store: d{domid} has no store ring");
                return;
            }
            let console = match (
                param(HVM_PARAM_CONSOLE_PFN),
                param(HVM_PARAM_CONSOLE_EVTCHN),
            ) {
                (0, _) | (_, 0) => None,
                (gfn, port) => u32::try_from(port).ok().map(|port| (gfn, port)),
            };
            let d = NewDomain {
                domid,
                name: parse_domain_name(&info.name).unwrap_or("?"),
                max_memkb: info.max_memory_kib,
                // As xl without `maxmem`: the target is the maximum (what
                // the domain holds now may be less: frames under its
                // shared pages); the balloon driver takes the
                // difference as its own (Linux's `target_diff`).
                target_memkb: info.max_memory_kib,
                vcpus: info.nr_vcpus,
                store: (gfn, port),
                console,
            };
            if let Err(e) = self.domain_created(&d) {
                println!("dom0: store: d{domid}: writing its tree failed: {e}");
            }
        }

        /// Serves the domains' rings: attaches and releases what the
        /// store asked for, then services every ring whose port fired
        /// or that has output waiting. Never sleeps.
        pub fn serve(&mut self, events: &Events, grants: &Grants) {
            self.apply_effects(events, grants);
            self.rings.serve(&mut self.store, events, grants);
        }

        fn apply_effects(&mut self, events: &Events, grants: &Grants) {
            for effect in self.store.take_effects() {
                match effect {
                    Effect::Introduced { domid, gfn, port } => {
                        self.rings
                            .attach(&mut self.store, events, grants, (domid, gfn, port))
                    }
                    Effect::Released { domid } => {
                        self.rings.detach(events, grants, domid, "released")
                    }
                }
            }
        }
    }
}
