//! One test per operation and rule, against xenstored's behaviour.

use alloc::vec;

use super::{with_domains, Client};
use crate::wire::{MsgType, XsError};
use crate::{ConnId, Effect, Store};

#[test]
fn write_read_directory_rm() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    c.write(&mut s, 0, "/a/b/c", "v").unwrap();
    assert_eq!(c.read(&mut s, 0, "/a/b/c").unwrap(), "v");
    assert_eq!(
        c.read(&mut s, 0, "/a/b").unwrap(),
        "",
        "intermediate nodes are created empty"
    );
    c.write(&mut s, 0, "/a/d", "").unwrap();
    assert_eq!(
        c.dir(&mut s, 0, "/a").unwrap(),
        vec!["b", "d"],
        "creation order"
    );
    c.rm(&mut s, 0, "/a/b").unwrap();
    assert_eq!(c.read(&mut s, 0, "/a/b/c"), Err("ENOENT".into()));
    assert_eq!(c.dir(&mut s, 0, "/a").unwrap(), vec!["d"]);
    c.rm(&mut s, 0, "/a/b").unwrap();
    assert_eq!(
        c.rm(&mut s, 0, "/x/y"),
        Err("ENOENT".into()),
        "parent missing"
    );
    assert_eq!(c.rm(&mut s, 0, "/"), Err("EINVAL".into()));
}

#[test]
fn mkdir_keeps_existing_value() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    c.write(&mut s, 0, "/k", "1").unwrap();
    c.mkdir(&mut s, 0, "/k").unwrap();
    assert_eq!(c.read(&mut s, 0, "/k").unwrap(), "1");
}

#[test]
fn initial_tree_is_xenstoreds() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    assert_eq!(c.dir(&mut s, 0, "/").unwrap(), vec!["tool", "local"]);
    assert_eq!(
        c.get_perms(&mut s, "@releaseDomain").unwrap(),
        vec!["n0", "r32757"]
    );
    assert_eq!(c.get_perms(&mut s, "/").unwrap(), vec!["n0"]);
}

#[test]
fn relative_paths_resolve_under_home() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    d[0].write(&mut s, 0, "data/x", "7").unwrap();
    assert_eq!(dom0.read(&mut s, 0, "/local/domain/1/data/x").unwrap(), "7");
    let path = d[0].req(&mut s, MsgType::GetDomainPath, 0, &["1"]).unwrap();
    assert_eq!(path, b"/local/domain/1\0");
}

#[test]
fn created_nodes_inherit_and_domu_owns_them() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    dom0.set_perms(&mut s, "/local/domain/1", &["n1", "r2"])
        .unwrap();
    d[0].write(&mut s, 0, "/local/domain/1/a/b", "x").unwrap();
    assert_eq!(
        dom0.get_perms(&mut s, "/local/domain/1/a/b").unwrap(),
        vec!["n1", "r2"]
    );
    dom0.write(&mut s, 0, "/local/domain/1/c", "").unwrap();
    assert_eq!(
        dom0.get_perms(&mut s, "/local/domain/1/c").unwrap(),
        vec!["n1", "r2"],
        "dom0 keeps the inherited owner"
    );
}

#[test]
fn domu_cannot_see_another_domain() {
    let (mut s, _dom0, mut d) = with_domains(&[1, 2]);
    d[1].write(&mut s, 0, "secret", "s").unwrap();
    let (one, _) = d.split_at_mut(1);
    let c = &mut one[0];
    assert_eq!(
        c.read(&mut s, 0, "/local/domain/2/secret"),
        Err("EACCES".into())
    );
    assert_eq!(
        c.read(&mut s, 0, "/local/domain/2/missing"),
        Err("EACCES".into()),
        "no ENOENT leak"
    );
    assert_eq!(c.dir(&mut s, 0, "/local/domain/2"), Err("EACCES".into()));
    assert_eq!(
        c.write(&mut s, 0, "/local/domain/2/x", "y"),
        Err("EACCES".into())
    );
    assert_eq!(
        c.rm(&mut s, 0, "/local/domain/2/secret"),
        Err("EACCES".into())
    );
    assert_eq!(c.get_perms(&mut s, "/local/domain/2"), Err("EACCES".into()));
    assert_eq!(
        c.read(&mut s, 0, "/local/domain/1/missing"),
        Err("ENOENT".into())
    );
}

#[test]
fn grants_and_owner_rules() {
    let (mut s, mut dom0, mut d) = with_domains(&[1, 2]);
    d[1].write(&mut s, 0, "backend", "b").unwrap();
    d[1].set_perms(&mut s, "backend", &["n2", "r1"]).unwrap();
    assert_eq!(
        d[0].read(&mut s, 0, "/local/domain/2/backend").unwrap(),
        "b"
    );
    assert_eq!(
        d[0].write(&mut s, 0, "/local/domain/2/backend", "x"),
        Err("EACCES".into())
    );
    assert_eq!(
        d[1].set_perms(&mut s, "backend", &["n1"]),
        Err("EPERM".into()),
        "unprivileged owner change"
    );
    assert_eq!(
        d[0].set_perms(&mut s, "/local/domain/2/backend", &["n2", "b1"]),
        Err("EACCES".into())
    );
    dom0.set_perms(&mut s, "/local/domain/2/backend", &["n1"])
        .unwrap();
    assert_eq!(
        d[0].read(&mut s, 0, "/local/domain/2/backend").unwrap(),
        "b",
        "dom0 may change owners"
    );
    assert_eq!(
        d[1].set_perms(&mut s, "backend", &["n2", "r2"]),
        Err("EACCES".into()),
        "no longer the owner"
    );
    assert_eq!(
        d[0].set_perms(
            &mut s,
            "/local/domain/2/backend",
            &["n1", "r1", "r3", "r4", "r5", "r6"]
        ),
        Err("ENOSPC".into())
    );
}

#[test]
fn watch_fires_on_register_change_and_not_after_unwatch() {
    let (mut s, mut dom0, mut d) = with_domains(&[1]);
    let c = &mut d[0];
    c.watch(&mut s, "control", "tok").unwrap();
    assert_eq!(
        c.take_events(),
        vec![("control".into(), "tok".into())],
        "relative path reported relative"
    );
    dom0.write(&mut s, 0, "/local/domain/1/control/shutdown", "poweroff")
        .unwrap();
    c.drain(&mut s);
    assert_eq!(
        c.take_events(),
        vec![("control/shutdown".into(), "tok".into())]
    );
    assert_eq!(c.watch(&mut s, "control", "tok"), Err("EEXIST".into()));
    c.unwatch(&mut s, "control", "tok").unwrap();
    dom0.write(&mut s, 0, "/local/domain/1/control/shutdown", "reboot")
        .unwrap();
    c.drain(&mut s);
    assert!(c.take_events().is_empty());
    assert_eq!(c.unwatch(&mut s, "control", "tok"), Err("ENOENT".into()));
}

#[test]
fn watch_events_respect_permissions() {
    let (mut s, mut dom0, mut d) = with_domains(&[1, 2]);
    d[0].watch(&mut s, "/local/domain/2", "spy").unwrap();
    d[0].take_events();
    dom0.write(&mut s, 0, "/local/domain/2/secret", "s")
        .unwrap();
    d[0].drain(&mut s);
    assert!(
        d[0].take_events().is_empty(),
        "no event for an unreadable node"
    );
}

#[test]
fn rm_fires_every_removed_node() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    c.write(&mut s, 0, "/a/b/c", "").unwrap();
    c.watch(&mut s, "/a/b/c", "leaf").unwrap();
    c.watch(&mut s, "/a", "top").unwrap();
    c.take_events();
    c.rm(&mut s, 0, "/a/b").unwrap();
    let mut ev = c.take_events();
    ev.sort();
    assert_eq!(
        ev,
        vec![
            ("/a/b".into(), "top".into()),
            ("/a/b/c".into(), "leaf".into())
        ]
    );
}

#[test]
fn introduce_and_release_fire_special_watches() {
    let mut s = Store::new();
    let mut dom0 = Client::local(&mut s, 0);
    dom0.watch(&mut s, "@introduceDomain", "i").unwrap();
    dom0.watch(&mut s, "@releaseDomain", "r").unwrap();
    dom0.take_events();
    dom0.req(&mut s, MsgType::Introduce, 0, &["3", "4660", "9"])
        .unwrap();
    assert_eq!(
        s.take_effects(),
        vec![Effect::Introduced {
            domid: 3,
            gfn: 4660,
            port: 9
        }]
    );
    assert_eq!(
        dom0.req(&mut s, MsgType::IsDomainIntroduced, 0, &["3"])
            .unwrap(),
        b"T\0"
    );
    let mut d3 = Client {
        id: ConnId::Domain(3),
        events: vec![],
        req_id: 0,
    };
    d3.watch(&mut s, "@releaseDomain", "gone").unwrap();
    assert_eq!(
        d3.req(&mut s, MsgType::Release, 0, &["3"]),
        Err("EACCES".into()),
        "privileged only"
    );
    assert_eq!(
        d3.req(&mut s, MsgType::Introduce, 0, &["4", "1", "1"]),
        Err("EACCES".into())
    );
    dom0.req(&mut s, MsgType::Release, 0, &["3"]).unwrap();
    assert_eq!(s.take_effects(), vec![Effect::Released { domid: 3 }]);
    assert!(!s.is_connected(ConnId::Domain(3)));
    dom0.drain(&mut s);
    assert_eq!(
        dom0.take_events(),
        vec![
            ("@introduceDomain".into(), "i".into()),
            ("@releaseDomain".into(), "r".into())
        ]
    );
    assert_eq!(
        dom0.req(&mut s, MsgType::IsDomainIntroduced, 0, &["3"])
            .unwrap(),
        b"F\0"
    );
    assert_eq!(
        dom0.req(&mut s, MsgType::Release, 0, &["3"]),
        Err("ENOENT".into())
    );
}

#[test]
fn a_shutdown_fires_release_domain_once_per_domain() {
    let mut s = Store::new();
    let mut dom0 = Client::local(&mut s, 0);
    dom0.watch(&mut s, "@releaseDomain", "r").unwrap();
    dom0.take_events();
    assert!(!s.note_shutdown(3), "not introduced: nothing to say");
    dom0.req(&mut s, MsgType::Introduce, 0, &["3", "4660", "9"])
        .unwrap();
    assert!(s.note_shutdown(3));
    assert!(!s.note_shutdown(3), "once");
    dom0.drain(&mut s);
    assert_eq!(
        dom0.take_events(),
        vec![("@releaseDomain".into(), "r".into())]
    );
    // The domain stays introduced until RELEASE, which fires again; a
    // later domain with the same id starts afresh.
    assert!(s.is_introduced(3));
    dom0.req(&mut s, MsgType::Release, 0, &["3"]).unwrap();
    dom0.req(&mut s, MsgType::Introduce, 0, &["3", "4660", "9"])
        .unwrap();
    assert!(s.note_shutdown(3));
}

#[test]
fn release_forgets_the_domid_in_permissions() {
    let (mut s, mut dom0, mut d) = with_domains(&[1, 2]);
    d[1].write(&mut s, 0, "shared", "x").unwrap();
    d[1].set_perms(&mut s, "shared", &["n2", "r1"]).unwrap();
    assert!(s.release(1).is_ok());
    assert_eq!(
        dom0.get_perms(&mut s, "/local/domain/2/shared").unwrap(),
        vec!["n2"]
    );
    assert_eq!(
        dom0.get_perms(&mut s, "/local/domain/1").unwrap(),
        vec!["n0"],
        "dom0 takes the orphans"
    );
}

#[test]
fn transaction_commit_abort_and_conflict() {
    let mut s = Store::new();
    let mut a = Client::local(&mut s, 1);
    let mut b = Client::local(&mut s, 2);
    a.write(&mut s, 0, "/k", "0").unwrap();
    let t = a.start(&mut s).unwrap();
    a.write(&mut s, t, "/k", "1").unwrap();
    assert_eq!(a.read(&mut s, t, "/k").unwrap(), "1");
    assert_eq!(
        b.read(&mut s, 0, "/k").unwrap(),
        "0",
        "isolated until commit"
    );
    a.end(&mut s, t, false).unwrap();
    assert_eq!(b.read(&mut s, 0, "/k").unwrap(), "0", "aborted");

    let t = a.start(&mut s).unwrap();
    assert_eq!(a.read(&mut s, t, "/k").unwrap(), "0");
    a.write(&mut s, t, "/j", "x").unwrap();
    b.write(&mut s, 0, "/k", "2").unwrap();
    assert_eq!(a.end(&mut s, t, true), Err("EAGAIN".into()));
    assert_eq!(
        b.read(&mut s, 0, "/j"),
        Err("ENOENT".into()),
        "no partial effect"
    );
    assert_eq!(a.end(&mut s, t, true), Err("ENOENT".into()), "ended");
}

#[test]
fn transaction_ids_are_checked() {
    let mut s = Store::new();
    let mut a = Client::local(&mut s, 1);
    assert_eq!(a.read(&mut s, 77, "/"), Err("ENOENT".into()));
    let t = a.start(&mut s).unwrap();
    assert_eq!(
        a.req(&mut s, MsgType::TransactionStart, t, &[""]),
        Err("EBUSY".into())
    );
    assert_eq!(
        a.req(&mut s, MsgType::TransactionEnd, t, &["X"]),
        Err("EINVAL".into())
    );
    a.req(&mut s, MsgType::ResetWatches, 0, &[""]).unwrap();
    assert_eq!(
        a.end(&mut s, t, true),
        Err("ENOENT".into()),
        "RESET_WATCHES ends transactions"
    );
}

#[test]
fn transaction_events_wait_for_commit() {
    let mut s = Store::new();
    let mut a = Client::local(&mut s, 1);
    let mut w = Client::local(&mut s, 2);
    w.watch(&mut s, "/t", "tok").unwrap();
    w.take_events();
    let t = a.start(&mut s).unwrap();
    a.write(&mut s, t, "/t/x", "1").unwrap();
    a.write(&mut s, t, "/t/x", "2").unwrap();
    w.drain(&mut s);
    assert!(w.take_events().is_empty());
    a.end(&mut s, t, true).unwrap();
    w.drain(&mut s);
    assert_eq!(
        w.take_events(),
        vec![("/t/x".into(), "tok".into())],
        "one event per node"
    );
}

#[test]
fn directory_part_pages_children() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    for i in 0..3 {
        c.write(&mut s, 0, &alloc::format!("/d/child{i}"), "")
            .unwrap();
    }
    let all = c
        .req(&mut s, MsgType::DirectoryPart, 0, &["/d", "0"])
        .unwrap();
    let gen_end = all.iter().position(|b| *b == 0).unwrap();
    assert_eq!(&all[gen_end + 1..], b"child0\0child1\0child2\0\0");
    let tail = c
        .req(&mut s, MsgType::DirectoryPart, 0, &["/d", "14"])
        .unwrap();
    assert_eq!(&tail[gen_end + 1..], b"child2\0\0");
    let past = c
        .req(&mut s, MsgType::DirectoryPart, 0, &["/d", "999"])
        .unwrap();
    assert_eq!(&past[gen_end + 1..], b"\0");
}

#[test]
fn oversized_directory_reply_is_e2big() {
    let mut s = Store::new();
    let mut c = Client::local(&mut s, 0);
    let name = "n".repeat(200);
    for i in 0..25 {
        c.write(&mut s, 0, &alloc::format!("/big/{name}{i}"), "")
            .unwrap();
    }
    assert_eq!(c.dir(&mut s, 0, "/big"), Err("E2BIG".into()));
    let part = c
        .req(&mut s, MsgType::DirectoryPart, 0, &["/big", "0"])
        .unwrap();
    assert!(part.len() <= crate::wire::XENSTORE_PAYLOAD_MAX && part.len() > 3000);
}

#[test]
fn error_strings_are_xsd_errors() {
    assert_eq!(crate::wire::error_payload(XsError::Eagain), b"EAGAIN\0");
    assert_eq!(XsError::E2big.as_str(), "E2BIG");
}

#[test]
fn header_round_trip_and_strings() {
    let h = crate::wire::Header {
        msg_type: 11,
        req_id: 0xdead_beef,
        tx_id: 3,
        len: 4096,
    };
    assert_eq!(crate::wire::Header::decode(&h.encode()), h);
    assert_eq!(h.encode()[4..8], [0xef, 0xbe, 0xad, 0xde], "little-endian");
    let (strings, terminated) = crate::wire::split_strings(b"a\0bc\0tail");
    assert_eq!((strings, terminated), (vec![&b"a"[..], &b"bc"[..]], false));
    assert_eq!(crate::wire::one_arg(b"x\0"), Ok(&b"x"[..]));
    assert_eq!(crate::wire::one_arg(b"x\0y\0"), Err(XsError::Einval));
}

#[test]
fn relative_paths_cannot_name_another_home() {
    use crate::path::canonicalize;
    assert_eq!(
        canonicalize(b"data", 7, false, false).unwrap(),
        "/local/domain/7/data"
    );
    assert_eq!(canonicalize(b"..", 7, false, false), Err(XsError::Einval));
    assert_eq!(
        canonicalize(b"@releaseDomain", 7, false, true).unwrap(),
        "@releaseDomain"
    );
    assert_eq!(canonicalize(b"/", 7, false, false).unwrap(), "/");
}

#[test]
fn guests_see_release_but_not_introduce() {
    let (mut s, _dom0, mut d) = with_domains(&[1, 2]);
    d[1].watch(&mut s, "@releaseDomain", "r").unwrap();
    d[1].watch(&mut s, "@introduceDomain", "i").unwrap();
    d[1].take_events();
    s.introduce(3, 1, 1).unwrap();
    s.release(1).unwrap();
    d[1].drain(&mut s);
    assert_eq!(
        d[1].take_events(),
        vec![("@releaseDomain".into(), "r".into())]
    );
}
