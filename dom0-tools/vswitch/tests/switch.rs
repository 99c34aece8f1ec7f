//! The switch's behaviour, case by case.

#![allow(clippy::cast_possible_truncation)] // small test numbers

mod common;

use common::*;
use vswitch::{
    DropReason, PortConfig, PortKind, Switch, SwitchError, Verdict, VlanMode, AGING_MS,
    FDB_CAPACITY, MAX_PORTS,
};

#[test]
fn floods_within_the_vlan_then_learns() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let b = vif(&mut sw, 2, VlanMode::Access(10));
    let _c = vif(&mut sw, 3, VlanMode::Access(20));
    let up = uplink(&mut sw, VlanMode::Access(10));
    // b's MAC is static: known from the start, so a's unicast goes to b only.
    let (v, out) = send(&mut sw, a, &frame(mac(2), mac(1), b"hi"));
    assert_eq!(v, Verdict::Delivered(1));
    assert_eq!(out, vec![(b, frame(mac(2), mac(1), b"hi"))]);
    // A broadcast reaches every other port of VLAN 10, not VLAN 20's.
    let (v, out) = send(&mut sw, a, &frame(BROADCAST, mac(1), b"arp"));
    assert_eq!(v, Verdict::Delivered(2));
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [b, up]);
    // An unknown MAC behind the uplink is flooded, then learned.
    let host = [0x52, 0x55, 10, 0, 2, 2];
    let (_, out) = send(&mut sw, a, &frame(host, mac(1), b"?"));
    assert_eq!(out.len(), 2);
    send(&mut sw, up, &frame(mac(1), host, b"!"));
    let (_, out) = send(&mut sw, a, &frame(host, mac(1), b"?"));
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [up]);
}

#[test]
fn trunks_tag_and_access_ports_untag() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let t = vif(&mut sw, 2, VlanMode::Trunk(vec![10, 30]));
    let (_, out) = send(&mut sw, a, &frame(BROADCAST, mac(1), b"x"));
    assert_eq!(out, vec![(t, tagged(BROADCAST, mac(1), 10, b"x"))]);
    let (_, out) = send(&mut sw, t, &tagged(mac(1), mac(2), 10, b"y"));
    assert_eq!(out, vec![(a, frame(mac(1), mac(2), b"y"))]);
    // VLAN 30 has no other member.
    let (v, _) = send(&mut sw, t, &tagged(BROADCAST, mac(2), 30, b"z"));
    assert_eq!(v, Verdict::Dropped(DropReason::NoDestination));
}

#[test]
fn ports_refuse_frames_outside_their_vlans() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let t = vif(&mut sw, 2, VlanMode::Trunk(vec![10]));
    let cases = [
        (
            a,
            tagged(BROADCAST, mac(1), 10, b""),
            DropReason::TaggedOnAccess,
        ),
        (
            t,
            frame(BROADCAST, mac(2), b""),
            DropReason::UntaggedOnTrunk,
        ),
        (
            t,
            tagged(BROADCAST, mac(2), 20, b""),
            DropReason::VlanNotAllowed,
        ),
        (a, vec![0; 10], DropReason::Malformed),
        (
            a,
            frame(BROADCAST, mac(1), &[0; 1501]),
            DropReason::Oversize,
        ),
        (
            a,
            frame(BROADCAST, BROADCAST, b""),
            DropReason::InvalidSource,
        ),
    ];
    for (port, f, reason) in cases {
        assert_eq!(
            send(&mut sw, port, &f).0,
            Verdict::Dropped(reason),
            "{reason}"
        );
    }
    let ca = sw.counters(a).unwrap();
    assert_eq!((ca.rx.packets, ca.drops.total(), ca.tx.packets), (4, 4, 0));
    assert_eq!(sw.counters(t).unwrap().drops.total(), 2);
}

#[test]
fn spoofed_frames_are_dropped_and_counted() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let b = vif(&mut sw, 2, VlanMode::Access(10));
    let up = uplink(&mut sw, VlanMode::Access(10));
    // A vif sending from a made-up MAC, or from its neighbour's.
    for src in [[0x02, 0, 0, 0, 0, 9], mac(2)] {
        let (v, out) = send(&mut sw, a, &frame(BROADCAST, src, b"evil"));
        assert_eq!(v, Verdict::Dropped(DropReason::Spoofed));
        assert!(out.is_empty());
    }
    // The uplink claiming a vif's MAC cannot steal its traffic.
    let (v, _) = send(&mut sw, up, &frame(BROADCAST, mac(2), b"evil"));
    assert_eq!(v, Verdict::Dropped(DropReason::Spoofed));
    let (_, out) = send(&mut sw, a, &frame(mac(2), mac(1), b"ok"));
    assert_eq!(out[0].0, b);
    assert_eq!(sw.counters(a).unwrap().drops.get(DropReason::Spoofed), 2);
    assert_eq!(sw.counters(up).unwrap().drops.get(DropReason::Spoofed), 1);
    // The switch's totals keep a removed port's drops.
    sw.remove_port(a).unwrap();
    assert_eq!(sw.snapshot().totals.drops.get(DropReason::Spoofed), 3);
}

#[test]
fn east_west_and_north_south_are_counted_apart() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let b = vif(&mut sw, 2, VlanMode::Access(10));
    let up = uplink(&mut sw, VlanMode::Trunk(vec![10]));
    let host = [0x52, 0x55, 10, 0, 2, 2];
    send(&mut sw, up, &tagged(BROADCAST, host, 10, b"hello")); // to a and b
    for _ in 0..3 {
        send(&mut sw, a, &frame(mac(2), mac(1), &[0; 100])); // a -> b
    }
    send(&mut sw, b, &frame(host, mac(2), &[0; 50])); // b -> uplink
    let snap = sw.snapshot();
    assert_eq!(snap.totals.east_west.packets, 3);
    assert_eq!(snap.totals.east_west.bytes, 3 * 114);
    assert_eq!(snap.totals.north_south.packets, 3);
    let cb = sw.counters(b).unwrap();
    assert_eq!((cb.tx_east_west.packets, cb.tx_north_south.packets), (3, 1));
    assert_eq!((cb.rx_east_west.packets, cb.rx_north_south.packets), (0, 1));
    let cu = sw.counters(up).unwrap();
    assert_eq!((cu.rx.packets, cu.rx_north_south.packets), (1, 1));
    assert_eq!(cu.tx_north_south.bytes, 64 + 4);
    assert_eq!(sw.counters(a).unwrap().rx_east_west.bytes, 3 * 114);
}

#[test]
fn learned_entries_age_and_leave_with_their_port() {
    let mut sw = Switch::new();
    let a = vif(&mut sw, 1, VlanMode::Access(10));
    let b = vif(&mut sw, 2, VlanMode::Access(10));
    let up = uplink(&mut sw, VlanMode::Access(10));
    let host = [0x52, 0x55, 10, 0, 2, 2];
    send(&mut sw, up, &frame(BROADCAST, host, b""));
    assert_eq!(send(&mut sw, a, &frame(host, mac(1), b"")).1.len(), 1);
    sw.tick(AGING_MS);
    assert_eq!(send(&mut sw, a, &frame(host, mac(1), b"")).1.len(), 2);
    assert!(sw.snapshot().learned.iter().all(|l| l.is_static));
    sw.remove_port(b).unwrap();
    assert_eq!(sw.snapshot().learned.len(), 1);
    assert_eq!(sw.remove_port(b), Err(SwitchError::NoSuchPort(b)));
    assert_eq!(
        send(&mut sw, b, &frame(host, mac(2), b"")).0,
        Verdict::NoSuchPort
    );
}

#[test]
fn the_learning_table_is_bounded() {
    let mut sw = Switch::new();
    let _a = vif(&mut sw, 1, VlanMode::Access(10));
    let up = uplink(&mut sw, VlanMode::Access(10));
    for n in 0..FDB_CAPACITY as u32 + 10 {
        let b = n.to_be_bytes();
        send(
            &mut sw,
            up,
            &frame(BROADCAST, [0x02, 0, b[0], b[1], b[2], b[3]], b""),
        );
    }
    let snap = sw.snapshot();
    assert_eq!(snap.learned.len(), FDB_CAPACITY + 1);
    assert_eq!(snap.totals.learning_table_full, 10);
}

#[test]
fn bad_ports_are_refused() {
    let mut sw = Switch::new();
    vif(&mut sw, 1, VlanMode::Access(10));
    let again = PortConfig {
        name: "vif9.0".into(),
        kind: PortKind::Vif {
            domid: 9,
            devid: 0,
            mac: mac(1),
        },
        vlan: VlanMode::Trunk(vec![20, 10]),
    };
    assert_eq!(
        sw.add_port(again.clone()),
        Err(SwitchError::MacInUse {
            mac: mac(1),
            vlan: 10
        })
    );
    // The same MAC in another VLAN is a different station.
    assert!(sw
        .add_port(PortConfig {
            vlan: VlanMode::Access(20),
            ..again.clone()
        })
        .is_ok());
    let group = PortConfig {
        kind: PortKind::Vif {
            domid: 9,
            devid: 1,
            mac: BROADCAST,
        },
        ..again.clone()
    };
    assert_eq!(sw.add_port(group), Err(SwitchError::InvalidMac(BROADCAST)));
    let nameless = PortConfig {
        name: String::new(),
        ..again.clone()
    };
    assert_eq!(sw.add_port(nameless), Err(SwitchError::InvalidName));
    for n in 2..MAX_PORTS {
        uplink(&mut sw, VlanMode::Access(n as u16));
    }
    assert_eq!(
        sw.add_port(PortConfig {
            vlan: VlanMode::Access(99),
            ..again
        }),
        Err(SwitchError::TooManyPorts)
    );
}
