//! The client against dom0's real `xenstore::Store`, through an in-memory
//! ring page serviced by `xenstore::ring::service`, as dom0 services a
//! guest's page on each event.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

use core::sync::atomic::Ordering;

use abi::xen::sched::ShutdownReason;
use xenstore::ring::{self as srv, SharedPage};
use xenstore::wire::encode_message;
use xenstore::{ConnId, Store};

use super::ring::{XenstoreInterface, XENSTORE_RING_SIZE};
use super::state::XenbusState;
use super::wire::{Header, MsgType, XsError, XENSTORE_PAYLOAD_MAX};
use super::*;

/// The page as the store sees it: `xenstore::ring::SharedPage` over our
/// atomics, byte by byte at the structure's offsets.
struct StoreView<'a>(&'a XenstoreInterface);

impl SharedPage for StoreView<'_> {
    fn load(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i;
            *b = match at {
                _ if at < XENSTORE_RING_SIZE => self.0.req[at].load(Ordering::SeqCst),
                _ if at < 2 * XENSTORE_RING_SIZE => {
                    self.0.rsp[at - XENSTORE_RING_SIZE].load(Ordering::SeqCst)
                }
                _ => self
                    .0
                    .field_at(at & !3)
                    .unwrap()
                    .load(Ordering::SeqCst)
                    .to_le_bytes()[at & 3],
            };
        }
    }

    fn store(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i;
            match at {
                _ if at < XENSTORE_RING_SIZE => self.0.req[at].store(b, Ordering::SeqCst),
                _ if at < 2 * XENSTORE_RING_SIZE => {
                    self.0.rsp[at - XENSTORE_RING_SIZE].store(b, Ordering::SeqCst)
                }
                _ => {
                    let field = self.0.field_at(at & !3).unwrap();
                    let mut bytes = field.load(Ordering::SeqCst).to_le_bytes();
                    bytes[at & 3] = b;
                    field.store(u32::from_le_bytes(bytes), Ordering::SeqCst);
                }
            }
        }
    }
}

/// dom0's side for the tests: the store, with its toolstack connection.
#[derive(Clone)]
struct Dom0(Rc<RefCell<Store>>);

const TOOLSTACK: ConnId = ConnId::Local(0);

impl Dom0 {
    fn new() -> Self {
        let mut store = Store::new();
        store.connect_local(0);
        Self(Rc::new(RefCell::new(store)))
    }

    /// A privileged request from the toolstack; the reply's payload.
    /// Each argument is NUL-terminated but `XS_WRITE`'s value.
    fn toolstack(&self, op: MsgType, args: &[&[u8]]) -> Vec<u8> {
        let mut payload: Vec<u8> = args
            .iter()
            .flat_map(|a| a.iter().copied().chain([0]))
            .collect();
        if op == MsgType::Write {
            payload.pop();
        }
        let mut store = self.0.borrow_mut();
        store
            .feed(TOOLSTACK, &encode_message(op, 1, 0, &payload))
            .unwrap();
        let mut out = vec![0u8; 8192];
        let n = store.drain_output(TOOLSTACK, &mut out);
        let reply = Header::decode(out[..16].try_into().unwrap());
        assert_ne!(
            reply.msg_type,
            MsgType::Error as u32,
            "{op:?}: {:?}",
            &out[16..n]
        );
        out[16..n].to_vec()
    }

    /// Builds `domid` as the toolstack does (home owned by it) and
    /// connects a client to its ring.
    fn domain(&self, domid: u16) -> Client<Ring> {
        let home = format!("/local/domain/{domid}");
        let owner = format!("n{domid}");
        self.toolstack(MsgType::Mkdir, &[home.as_bytes()]);
        self.toolstack(MsgType::SetPerms, &[home.as_bytes(), owner.as_bytes()]);
        self.0.borrow_mut().introduce(domid, 0x1000, 5).unwrap();
        let page = Rc::new(XenstoreInterface::default());
        srv::init_page(&mut StoreView(&page));
        Client::new(Ring {
            dom0: self.clone(),
            domid,
            page,
            waits: Rc::new(Cell::new(0)),
        })
    }
}

/// A domain's ring: "waiting" lets dom0 service it, as its event would.
struct Ring {
    dom0: Dom0,
    domid: u16,
    page: Rc<XenstoreInterface>,
    waits: Rc<Cell<u32>>,
}

impl Transport for Ring {
    fn page(&self) -> &XenstoreInterface {
        &self.page
    }

    fn notify(&mut self) {}

    fn wait(&mut self) -> Result<(), XenbusError> {
        self.waits.set(self.waits.get() + 1);
        let mut store = self.dom0.0.borrow_mut();
        match srv::service(&mut store, self.domid, &mut StoreView(&self.page)) {
            Ok(true) | Err(_) => Ok(()),
            // Nothing moved and nothing will: the test would hang.
            Ok(false) => Err(XenbusError::Timeout),
        }
    }
}

#[test]
fn read_write_mkdir_rm_directory() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    c.write(Tx::NONE, "data/greeting", b"hello").unwrap();
    assert_eq!(c.read(Tx::NONE, "data/greeting").unwrap(), b"hello");
    assert_eq!(
        c.read(Tx::NONE, "/local/domain/1/data/greeting").unwrap(),
        b"hello"
    );
    c.mkdir(Tx::NONE, "data/empty").unwrap();
    let mut names: Vec<String> = c
        .directory(Tx::NONE, "data")
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "greeting"]);
    c.rm(Tx::NONE, "data/greeting").unwrap();
    assert_eq!(
        c.read(Tx::NONE, "data/greeting"),
        Err(XenbusError::Store(XsError::Enoent))
    );
    assert_eq!(c.get_domain_path(1).unwrap(), "/local/domain/1");
    assert_eq!(
        dom0.0.borrow().read_committed("/local/domain/1/data/empty"),
        Some(&b""[..])
    );
}

#[test]
fn values_larger_than_the_ring_cross_it_both_ways() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    let big: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for round in 0..5 {
        let key = format!("data/big{round}");
        c.write(Tx::NONE, &key, &big).unwrap();
        assert_eq!(c.read(Tx::NONE, &key).unwrap(), &big[..]);
    }
}

#[test]
fn errors_are_mapped() {
    let dom0 = Dom0::new();
    let mut one = dom0.domain(1);
    let mut two = dom0.domain(2);
    two.write(Tx::NONE, "data/secret", b"2").unwrap();
    assert_eq!(
        one.read(Tx::NONE, "/local/domain/2/data/secret"),
        Err(XenbusError::Store(XsError::Eacces))
    );
    assert_eq!(
        one.write(Tx::NONE, "/local/domain/2/data/x", b"1"),
        Err(XenbusError::Store(XsError::Eacces))
    );
    assert_eq!(
        one.read(Tx::NONE, "data/none"),
        Err(XenbusError::Store(XsError::Enoent))
    );
    assert_eq!(
        one.read(Tx::NONE, "bad//path"),
        Err(XenbusError::Store(XsError::Einval))
    );
    assert_eq!(
        one.transaction_end(Tx(77), true),
        Err(XenbusError::Store(XsError::Enoent))
    );
    let huge = vec![b'x'; XENSTORE_PAYLOAD_MAX];
    assert_eq!(
        one.write(Tx::NONE, "data/h", &huge),
        Err(XenbusError::TooLong)
    );
    // An owner may grant another domain read access.
    two.set_perms(Tx::NONE, "data/secret", &["n2", "r1"])
        .unwrap();
    assert_eq!(
        one.read(Tx::NONE, "/local/domain/2/data/secret").unwrap(),
        b"2"
    );
    assert_eq!(
        one.set_perms(Tx::NONE, "/local/domain/2/data/secret", &["n1"]),
        Err(XenbusError::Store(XsError::Eacces))
    );
    // The other domain's traffic is unaffected.
    assert_eq!(two.read(Tx::NONE, "data/secret").unwrap(), b"2");
}

thread_local! {
    static SEEN: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

fn record(_: &mut Client<Ring>, event: &WatchEvent<'_>) {
    SEEN.with(|s| s.borrow_mut().push((event.path.into(), event.token.into())));
}

fn seen() -> Vec<String> {
    SEEN.with(|s| s.borrow_mut().drain(..).map(|(p, _)| p).collect())
}

#[test]
fn a_watch_fires_on_register_and_on_changes_until_unwatched() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    let id = c.watch("data", record).unwrap();
    assert_eq!(c.wait_for_events().unwrap(), 1);
    assert_eq!(seen(), ["data"]);
    // dom0 (the operator's `xenstore write`) changes a key under it.
    dom0.toolstack(MsgType::Write, &[b"/local/domain/1/data/k", b"v"]);
    assert_eq!(c.wait_for_events().unwrap(), 1);
    // Relative watch, relative event path (as xenstored).
    assert_eq!(seen(), ["data/k"]);
    c.unwatch(id).unwrap();
    dom0.toolstack(MsgType::Write, &[b"/local/domain/1/data/k", b"w"]);
    assert_eq!(c.dispatch_events().unwrap(), 0);
    assert_eq!(c.wait_for_events(), Err(XenbusError::Timeout));
    assert!(seen().is_empty());
}

#[test]
fn events_arriving_during_a_request_are_queued_then_dispatched() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    c.watch("data", record).unwrap();
    // The registration event is taken off the ring by the next request.
    c.write(Tx::NONE, "data/a", b"1").unwrap();
    assert!(seen().is_empty(), "callbacks never run inside a request");
    assert_eq!(c.dispatch_events().unwrap(), 2);
    assert_eq!(seen(), ["data", "data/a"]);
}

#[test]
fn events_beyond_the_queue_are_counted_and_wake_the_waiter() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    c.watch("data", record).unwrap();
    for key in ["a", "b", "c", "d", "e", "f"] {
        let path = format!("/local/domain/1/data/{key}");
        dom0.toolstack(MsgType::Write, &[path.as_bytes(), b"1"]);
    }
    // The reply comes after the seven events: four are queued.
    c.mkdir(Tx::NONE, "data").unwrap();
    assert_eq!(c.events_dropped(), 3);
    assert_eq!(c.wait_for_events().unwrap(), MAX_QUEUED_EVENTS);
    assert_eq!(seen().len(), MAX_QUEUED_EVENTS);
    // Nothing queued now: the next wait sleeps (here: nothing will come).
    assert_eq!(c.wait_for_events(), Err(XenbusError::Timeout));
    // Events lost with none queued still wake the waiter, once.
    let mut d = dom0.domain(2);
    d.watch("data", record).unwrap();
    for key in ["a", "b", "c", "d", "e"] {
        let path = format!("/local/domain/2/data/{key}");
        dom0.toolstack(MsgType::Write, &[path.as_bytes(), b"1"]);
    }
    d.mkdir(Tx::NONE, "data").unwrap();
    assert_eq!(d.dispatch_events().unwrap(), MAX_QUEUED_EVENTS);
    assert_eq!(d.events_dropped(), 2);
    assert_eq!(d.wait_for_events().unwrap(), 0);
    assert_eq!(d.wait_for_events(), Err(XenbusError::Timeout));
    seen();
}

#[test]
fn a_conflicting_transaction_gets_one_eagain_then_its_retry_commits() {
    let dom0 = Dom0::new();
    let mut a = dom0.domain(1);
    let mut b = dom0.domain(2);
    dom0.toolstack(MsgType::Write, &[b"/shared", b"0"]);
    dom0.toolstack(MsgType::SetPerms, &[b"/shared", b"n0", b"b1", b"b2"]);
    let tx_b = b.transaction_start().unwrap();
    assert_eq!(b.read(tx_b, "/shared").unwrap(), b"0");
    // A reads and commits first.
    a.transaction(|c, tx| {
        let v = c.read(tx, "/shared")?.to_vec();
        c.write(tx, "/shared", &[v[0] + 1])
    })
    .unwrap();
    b.write(tx_b, "/shared", b"9").unwrap();
    assert_eq!(
        b.transaction_end(tx_b, true),
        Err(XenbusError::Store(XsError::Eagain))
    );
    // The retrying helper: first attempt conflicts (A commits in between),
    // the second commits.
    let mut attempts = 0;
    b.transaction(|c, tx| {
        attempts += 1;
        let v = c.read(tx, "/shared")?.to_vec();
        if attempts == 1 {
            a.write(Tx::NONE, "/shared", b"5").unwrap();
        }
        c.write(tx, "/shared", &[v[0] + 1])
    })
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(b.transaction_eagains(), 1);
    assert_eq!(dom0.0.borrow().read_committed("/shared"), Some(&b"6"[..]));
}

#[test]
fn states_switch_and_are_waited_for() {
    let dom0 = Dom0::new();
    let mut front = dom0.domain(1);
    // The toolstack creates the device's nodes before the guest runs.
    dom0.toolstack(
        MsgType::Write,
        &[b"/local/domain/1/device/vif/0/state", b"1"],
    );
    dom0.toolstack(
        MsgType::Write,
        &[
            b"/local/domain/1/device/vif/0/backend",
            b"/local/domain/1/be",
        ],
    );
    dom0.toolstack(MsgType::SetPerms, &[b"/local/domain/1/device/vif/0", b"n1"]);
    dom0.toolstack(
        MsgType::SetPerms,
        &[b"/local/domain/1/device/vif/0/state", b"n1"],
    );
    dom0.toolstack(
        MsgType::SetPerms,
        &[b"/local/domain/1/device/vif/0/backend", b"n1"],
    );
    front
        .switch_state("device/vif/0", XenbusState::Initialised)
        .unwrap();
    assert_eq!(
        front.read_state("device/vif/0").unwrap(),
        XenbusState::Initialised
    );
    front
        .switch_state("device/vif/0", XenbusState::Initialising)
        .unwrap();
    // A removed device is not re-created.
    assert_eq!(
        front.switch_state("device/vif/7", XenbusState::Connected),
        Err(XenbusError::Store(XsError::Enoent))
    );
    let be = front.other_end("device/vif/0").unwrap();
    assert_eq!(be.as_str(), "/local/domain/1/be");
    assert_eq!(
        front.read_state("device/vif/0").unwrap(),
        XenbusState::Initialising
    );
    assert_eq!(
        front.read_state("device/vif/9").unwrap(),
        XenbusState::Unknown
    );
    // The backend (dom0 here) is already connected: no sleep needed.
    dom0.toolstack(MsgType::Write, &[b"/local/domain/1/be/state", b"4"]);
    let state = front
        .wait_for_state("be", |s| s == XenbusState::Connected)
        .unwrap();
    assert_eq!(state, XenbusState::Connected);
    assert_eq!(XenbusState::parse(b"7"), Some(XenbusState::Reconfiguring));
    assert_eq!(XenbusState::parse(b"9"), None);
    assert_eq!(XenbusState::Closed.as_value(), b"6");
}

#[test]
fn shutdown_requests_are_taken_and_acknowledged() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    dom0.toolstack(MsgType::Mkdir, &[b"/local/domain/1/control"]);
    dom0.toolstack(
        MsgType::SetPerms,
        &[b"/local/domain/1/control", b"n0", b"b1"],
    );
    c.watch_shutdown(record).unwrap();
    c.wait_for_events().unwrap();
    seen();
    assert_eq!(c.take_shutdown_request().unwrap(), None);
    assert_eq!(
        dom0.0
            .borrow()
            .read_committed("/local/domain/1/control/feature-reboot"),
        Some(&b"1"[..])
    );
    dom0.toolstack(
        MsgType::Write,
        &[b"/local/domain/1/control/shutdown", b"reboot"],
    );
    c.wait_for_events().unwrap();
    assert_eq!(seen(), ["control/shutdown"]);
    assert_eq!(
        c.take_shutdown_request().unwrap(),
        Some(ShutdownReason::Reboot)
    );
    assert_eq!(
        dom0.0
            .borrow()
            .read_committed("/local/domain/1/control/shutdown"),
        Some(&b""[..])
    );
    dom0.toolstack(
        MsgType::Write,
        &[b"/local/domain/1/control/shutdown", b"sysrq"],
    );
    assert_eq!(c.take_shutdown_request().unwrap(), None);
    assert_eq!(
        control::parse_shutdown(b"halt"),
        Some(ShutdownReason::Poweroff)
    );
    assert_eq!(
        control::parse_shutdown(b"suspend"),
        Some(ShutdownReason::Suspend)
    );
}

#[test]
fn a_dropped_connection_is_reported_and_other_domains_go_on() {
    let dom0 = Dom0::new();
    let mut bad = dom0.domain(1);
    let mut good = dom0.domain(2);
    // A header announcing more than XENSTORE_PAYLOAD_MAX.
    let header = Header {
        msg_type: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 5000,
    };
    let err = bad.raw_request(header, b"data/x\0").unwrap_err();
    assert_eq!(err, XenbusError::ConnectionDropped(3));
    good.write(Tx::NONE, "data/ok", b"1").unwrap();
    assert_eq!(good.read(Tx::NONE, "data/ok").unwrap(), b"1");
}

#[test]
fn corrupt_indices_drop_only_that_connection() {
    let dom0 = Dom0::new();
    let mut bad = dom0.domain(1);
    let mut good = dom0.domain(2);
    bad.transport()
        .page
        .req_prod
        .store(0x8000_0000, Ordering::SeqCst);
    assert_eq!(
        bad.read(Tx::NONE, "data"),
        Err(XenbusError::Ring(super::ring::RingCorrupt {
            prod: 0x8000_0000,
            cons: 0
        }))
    );
    let waits = bad.transport().waits.clone();
    let _ = bad.transport().wait();
    assert!(waits.get() > 0);
    assert_eq!(bad.transport().page.store_error(), Some(2));
    good.mkdir(Tx::NONE, "data/ok").unwrap();
}

#[test]
fn an_unknown_type_gets_enosys() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    let header = Header {
        msg_type: 99,
        req_id: 7,
        tx_id: 0,
        len: 0,
    };
    let (ty, payload) = c.raw_request(header, b"").unwrap();
    assert_eq!(ty, MsgType::Error as u32);
    assert_eq!(XsError::from_payload(payload), Some(XsError::Enosys));
    c.write(Tx::NONE, "data/after", b"1").unwrap();
}

#[test]
fn ring_constants_match_the_store_crate() {
    assert_eq!(XENSTORE_RING_SIZE, srv::XENSTORE_RING_SIZE);
    assert_eq!(
        core::mem::size_of::<XenstoreInterface>(),
        srv::INTERFACE_SIZE
    );
}

/// The case proptest found: the model had `rm` of a missing node fail,
/// where xenstored (and the store) succeed if the parent exists.
#[test]
fn rm_of_a_missing_child_succeeds_and_of_a_missing_parent_fails() {
    let dom0 = Dom0::new();
    let mut c = dom0.domain(1);
    assert_eq!(
        c.rm(Tx::NONE, "data/k0"),
        Err(XenbusError::Store(XsError::Enoent))
    );
    c.write(Tx::NONE, "data/k2", b"x").unwrap();
    assert_eq!(c.rm(Tx::NONE, "data/k0"), Ok(()));
}

mod props {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A write (Some) or rm (None) of one of four keys.
    fn op() -> impl Strategy<Value = (usize, Option<Vec<u8>>)> {
        (
            0..4usize,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..1900)),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any sequence of writes and removals, of values up to nearly
        /// twice the ring, reads back as a map would: messages cross the
        /// ring's wrap-around at every offset.
        #[test]
        fn reads_follow_writes_and_removals(ops in proptest::collection::vec(op(), 1..24)) {
            let dom0 = Dom0::new();
            let mut c = dom0.domain(1);
            let mut model = BTreeMap::new();
            let mut data_exists = false;
            for (key, value) in ops {
                let path = format!("data/k{key}");
                match value {
                    Some(v) => {
                        c.write(Tx::NONE, &path, &v).unwrap();
                        model.insert(key, v);
                        data_exists = true;
                    }
                    None => {
                        let got = c.rm(Tx::NONE, &path);
                        // xenstored: removing a missing node whose parent
                        // exists succeeds.
                        model.remove(&key);
                        let expected = if data_exists {
                            Ok(())
                        } else {
                            Err(XenbusError::Store(XsError::Enoent))
                        };
                        prop_assert_eq!(got, expected);
                    }
                }
                for k in 0..4 {
                    let got = c.read(Tx::NONE, &format!("data/k{k}")).map(<[u8]>::to_vec);
                    let expected = model
                        .get(&k)
                        .cloned()
                        .ok_or(XenbusError::Store(XsError::Enoent));
                    prop_assert_eq!(got, expected);
                }
            }
        }
    }
}
