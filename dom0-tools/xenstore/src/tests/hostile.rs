//! Hostile clients: each gets an error reply or loses its own
//! connection, and other connections carry on.

use alloc::vec;
use alloc::vec::Vec;

use super::{args, parse_stream, with_domains, Client};
use crate::quota::{QUOTA_NODES, QUOTA_OUTSTANDING, QUOTA_TRANSACTIONS, QUOTA_WATCHES};
use crate::ring::{
    self, SharedPage, ERROR, REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
};
use crate::wire::{encode_message, Header, MsgType, XENSTORE_PAYLOAD_MAX};
use crate::{ConnError, ConnId, Store};

#[test]
fn payload_longer_than_max_drops_only_that_connection() {
    let (mut s, _dom0, mut d) = with_domains(&[1, 2]);
    let h = Header {
        msg_type: MsgType::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: u32::try_from(XENSTORE_PAYLOAD_MAX).unwrap() + 1,
    };
    assert_eq!(
        s.feed(ConnId::Domain(1), &h.encode()),
        Err(ConnError::PayloadTooLong)
    );
    assert!(!s.is_connected(ConnId::Domain(1)));
    assert_eq!(
        s.feed(ConnId::Domain(1), &h.encode()),
        Err(ConnError::NoConnection)
    );
    d[1].write(&mut s, 0, "still", "works").unwrap();
}

#[test]
fn path_without_nul_is_einval() {
    let (mut s, _dom0, mut d) = with_domains(&[1]);
    assert_eq!(
        d[0].raw(&mut s, MsgType::Read as u32, 0, b"/local/domain/1"),
        Err("EINVAL".into())
    );
    assert_eq!(
        d[0].raw(&mut s, MsgType::Write as u32, 0, b"novalue"),
        Err("EINVAL".into())
    );
    assert_eq!(
        d[0].raw(&mut s, MsgType::Read as u32, 0, b"a\0b\0"),
        Err("EINVAL".into()),
        "two args"
    );
    assert_eq!(
        d[0].raw(&mut s, MsgType::Read as u32, 0, b""),
        Err("EINVAL".into())
    );
}

#[test]
fn bad_and_long_paths_are_einval() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    let c = &mut d[0];
    for bad in [
        "../2/x",
        "data/../../2",
        "/local/domain/1/./x",
        "/a//b",
        "/a/",
        "a b",
        "@releaseDomain",
    ] {
        assert_eq!(c.read(&mut s, 0, bad), Err("EINVAL".into()), "{bad}");
        assert_eq!(c.write(&mut s, 0, bad, "v"), Err("EINVAL".into()), "{bad}");
    }
    let rel = "x".repeat(crate::wire::XENSTORE_REL_PATH_MAX);
    assert_eq!(c.write(&mut s, 0, &rel, "v"), Err("EINVAL".into()));
    c.write(&mut s, 0, &rel[1..], "v")
        .unwrap_or_else(|e| assert_eq!(e, "ENOSPC", "only the node size may refuse it"));
    let abs = alloc::format!("/{}", "y".repeat(crate::wire::XENSTORE_ABS_PATH_MAX));
    assert_eq!(
        dom0.write(&mut s, 0, &abs, "v"),
        Err("EINVAL".into()),
        "even for dom0"
    );
}

#[test]
fn unknown_and_server_only_types_are_enosys() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    for t in [
        20,
        27,
        999,
        0xffff,
        MsgType::WatchEvent as u32,
        MsgType::Error as u32,
        MsgType::Control as u32,
    ] {
        assert_eq!(
            d[0].raw(&mut s, t, 0, b"x\0"),
            Err("ENOSYS".into()),
            "type {t}"
        );
        assert_eq!(
            dom0.raw(&mut s, t, 0, b"x\0"),
            Err("ENOSYS".into()),
            "type {t}"
        );
    }
}

#[test]
fn watch_quota() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    for i in 0..QUOTA_WATCHES {
        d[0].watch(&mut s, "data", &alloc::format!("t{i}")).unwrap();
    }
    assert_eq!(d[0].watch(&mut s, "data", "one-more"), Err("ENOSPC".into()));
    for i in 0..QUOTA_WATCHES + 1 {
        dom0.watch(&mut s, "/x", &alloc::format!("t{i}")).unwrap();
    }
}

#[test]
fn transaction_quota() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    for _ in 0..QUOTA_TRANSACTIONS {
        d[0].start(&mut s).unwrap();
    }
    assert_eq!(d[0].start(&mut s), Err("ENOSPC".into()));
    for _ in 0..QUOTA_TRANSACTIONS + 1 {
        dom0.start(&mut s).unwrap();
    }
}

#[test]
fn node_quota_and_node_size() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    let c = &mut d[0];
    let mut made = 1; // its home
    'outer: for i in 0..100 {
        for j in 0..30 {
            match c.write(&mut s, 0, &alloc::format!("a{i}/b{j}"), "") {
                Ok(()) => made += if j == 0 { 2 } else { 1 },
                Err(e) => {
                    assert_eq!(e, "ENOSPC");
                    break 'outer;
                }
            }
        }
    }
    assert!((QUOTA_NODES - 1..=QUOTA_NODES).contains(&made), "{made}");
    assert_eq!(c.mkdir(&mut s, 0, "more/nodes"), Err("ENOSPC".into()));
    let big = "v".repeat(2100);
    assert_eq!(
        c.write(&mut s, 0, "a0", &big),
        Err("ENOSPC".into()),
        "node size"
    );
    dom0.write(&mut s, 0, "/local/domain/1/a0", &big).unwrap();
}

#[test]
fn request_flood_is_throttled_not_buffered() {
    let (mut s, _dom0, mut d) = with_domains(&[1, 2]);
    let one: Vec<u8> = encode_message(MsgType::Read, 7, 0, &args(&["data"]));
    let flood: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    let taken = s.feed(ConnId::Domain(1), &flood).unwrap();
    assert_eq!(
        taken,
        one.len() * QUOTA_OUTSTANDING,
        "stops at the outstanding quota"
    );
    let replies = d[0].drain(&mut s);
    assert_eq!(replies.len(), QUOTA_OUTSTANDING);
    assert!(
        s.feed(ConnId::Domain(1), &flood[taken..]).unwrap() > 0,
        "resumes once replies are taken"
    );
    d[1].write(&mut s, 0, "x", "y").unwrap();
}

#[test]
fn split_messages_are_reassembled() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    let mut msg = encode_message(MsgType::Write, 3, 0, b"/k\0bin\0ary");
    msg.extend(encode_message(MsgType::Read, 4, 0, b"/k\0"));
    for b in &msg {
        assert_eq!(s.feed(c.id, core::slice::from_ref(b)), Ok(1));
    }
    let replies = c.drain(&mut s);
    assert_eq!(replies[1].payload, b"bin\0ary", "values are binary");
}

fn page() -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    ring::init_page(&mut p[..]);
    p
}

/// The guest side: puts `bytes` in the request ring.
fn guest_send(p: &mut [u8], bytes: &[u8]) {
    let prod = p.load_u32(REQ_PROD);
    for (i, b) in bytes.iter().enumerate() {
        p[(prod as usize + i) & 1023] = *b;
    }
    p.store_u32(
        REQ_PROD,
        prod.wrapping_add(u32::try_from(bytes.len()).unwrap()),
    );
}

/// The guest side: takes everything in the response ring.
fn guest_recv(p: &mut [u8]) -> Vec<u8> {
    let (cons, prod) = (p.load_u32(RSP_CONS), p.load_u32(RSP_PROD));
    let out = (0..prod.wrapping_sub(cons))
        .map(|i| p[1024 + (cons.wrapping_add(i) as usize & 1023)])
        .collect();
    p.store_u32(RSP_CONS, prod);
    out
}

#[test]
fn ring_round_trip_across_index_wrap() {
    let (mut s, _dom0, _d) = with_domains(&[1]);
    let mut p = page();
    for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
        p.store_u32(off, 0xFFFF_FF00);
    }
    let mut got = Vec::new();
    for i in 0..40 {
        guest_send(
            &mut p,
            &encode_message(MsgType::Write, i, 0, &args(&["data/key", "value"])[..14]),
        );
        assert_eq!(ring::service(&mut s, 1, &mut p[..]), Ok(true));
        got.extend(guest_recv(&mut p));
    }
    let replies = parse_stream(&got);
    assert_eq!(replies.len(), 40);
    assert!(replies.iter().all(|r| r.payload == b"OK\0"));
    assert_eq!(
        s.read_committed("/local/domain/1/data/key"),
        Some(&b"value"[..])
    );
    assert_eq!(
        ring::service(&mut s, 1, &mut p[..]),
        Ok(false),
        "nothing to do"
    );
}

#[test]
fn full_response_ring_waits_for_the_guest() {
    let (mut s, _dom0, _d) = with_domains(&[1]);
    let mut p = page();
    let req = encode_message(MsgType::GetDomainPath, 1, 0, b"1\0");
    for _ in 0..40 {
        guest_send(&mut p, &req);
    }
    ring::service(&mut s, 1, &mut p[..]).unwrap();
    let mut all = guest_recv(&mut p);
    assert_eq!(all.len(), 1024, "ring filled, not overrun");
    for _ in 0..10 {
        ring::service(&mut s, 1, &mut p[..]).unwrap();
        all.extend(guest_recv(&mut p));
    }
    assert_eq!(parse_stream(&all).len(), 40);
}

#[test]
fn corrupted_ring_indices_fail_only_that_domain() {
    let (mut s, _dom0, _d) = with_domains(&[1, 2]);
    let mut bad = page();
    bad.store_u32(REQ_PROD, 5000);
    assert_eq!(
        ring::service(&mut s, 1, &mut bad[..]),
        Err(ConnError::RingIndex)
    );
    assert_eq!(bad.load_u32(ERROR), XENSTORE_ERROR_RINGIDX);
    assert!(!s.is_connected(ConnId::Domain(1)));

    let mut good = page();
    guest_send(&mut good, &encode_message(MsgType::Write, 1, 0, b"data\0x"));
    assert_eq!(ring::service(&mut s, 2, &mut good[..]), Ok(true));
    assert_eq!(parse_stream(&guest_recv(&mut good))[0].payload, b"OK\0");

    let mut rsp_bad = page();
    rsp_bad.store_u32(RSP_CONS, 7);
    rsp_bad.store_u32(RSP_PROD, 3);
    assert_eq!(
        ring::service(&mut s, 2, &mut rsp_bad[..]),
        Err(ConnError::RingIndex)
    );
}

#[test]
fn oversized_header_in_ring_sets_proto_error() {
    let (mut s, _dom0, _d) = with_domains(&[1]);
    let mut p = page();
    let h = Header {
        msg_type: 2,
        req_id: 0,
        tx_id: 0,
        len: 5000,
    };
    guest_send(&mut p, &h.encode());
    assert_eq!(
        ring::service(&mut s, 1, &mut p[..]),
        Err(ConnError::PayloadTooLong)
    );
    assert_eq!(p.load_u32(ERROR), XENSTORE_ERROR_PROTO);
}

#[test]
fn deepest_tree_is_created_and_removed_without_recursion() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    let deep = "/a".repeat(crate::wire::XENSTORE_ABS_PATH_MAX / 2);
    c.write(&mut s, 0, &deep, "bottom").unwrap();
    assert_eq!(c.read(&mut s, 0, &deep).unwrap(), "bottom");
    c.watch(&mut s, &deep, "w").unwrap();
    c.take_events();
    c.rm(&mut s, 0, "/a").unwrap();
    assert_eq!(
        c.take_events().len(),
        1,
        "the exact watch on the bottom node"
    );
    assert!(s.paths().all(|p| !p.starts_with("/a")));
}

/// A hostile guest's message: any type and transaction id, a payload of
/// plausible and garbage pieces.
fn hostile_message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"/local/domain/2".to_vec()),
        Just(b"../2".to_vec()),
        Just(b"@releaseDomain".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"T".to_vec()),
        Just(b"r2".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    let ty = prop_oneof![0u32..28, any::<u32>()];
    (ty, 0u32..4, prop::collection::vec(piece, 0..6)).prop_map(|(ty, tx, pieces)| {
        let payload = pieces.concat();
        let header = Header {
            msg_type: ty,
            req_id: 9,
            tx_id: tx,
            len: u32::try_from(payload.len()).unwrap(),
        };
        let mut m = header.encode().to_vec();
        m.extend(payload);
        m
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Whatever a guest sends, in whatever pieces, the store answers
    /// each message once, keeps its queues bounded, never lets it see
    /// another home, and serves the other guest.
    #[test]
    fn hostile_streams_stay_contained(
        msgs in proptest::collection::vec(hostile_message(), 0..30),
        cut in 1usize..64,
    ) {
        let (mut s, mut dom0, mut d) = with_domains(&[1, 2]);
        dom0.write(&mut s, 0, "/local/domain/2/secret", "s").unwrap();
        let stream = msgs.concat();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        for chunk in stream.chunks(cut) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let Ok(n) = s.feed(ConnId::Domain(1), rest) else { break };
                rest = &rest[n..];
                loop {
                    let k = s.drain_output(ConnId::Domain(1), &mut buf);
                    if k == 0 { break; }
                    out.extend_from_slice(&buf[..k]);
                }
            }
        }
        let replies = parse_stream(&out);
        let answered = replies.iter().filter(|m| m.header.req_id == 9).count();
        // Payloads here stay far below the maximum: nothing drops the
        // connection, so every message gets exactly one reply.
        proptest::prop_assert_eq!(answered, msgs.len());
        proptest::prop_assert!(replies.iter().all(|m| m.payload != b"s"), "another home leaked");
        d[1].write(&mut s, 0, "alive", "yes").unwrap();
        proptest::prop_assert_eq!(d[1].read(&mut s, 0, "alive").unwrap(), "yes");
    }
}
