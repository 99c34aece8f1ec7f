//! The switch against a model: a plain list of ports and a map of learned
//! MACs, checked frame by frame on random topologies and traffic.

#![allow(clippy::cast_possible_truncation)] // small test numbers

mod common;

use std::collections::HashMap;

use common::*;
use proptest::prelude::*;
use vswitch::{DropReason, Mac, PortConfig, PortId, PortKind, Switch, Verdict, VlanMode};

const VLANS: [u16; 3] = [10, 20, 30];

#[derive(Clone, Debug)]
struct FrameSpec {
    dst: u8,
    src: u8,
    vid: Option<u16>,
    len: usize,
}

#[derive(Clone, Debug)]
enum Op {
    Send { port: usize, frame: FrameSpec },
    Remove { port: usize },
}

/// MAC number n: 1..=6 are the vifs' (domid n), 7..=8 stations behind
/// uplinks, 0 broadcast, 9 a multicast group.
fn pool_mac(n: u8) -> Mac {
    match n {
        0 => BROADCAST,
        9 => [0x01, 0x00, 0x5e, 0, 0, 1],
        7 | 8 => [0x52, 0x55, 10, 0, 2, n],
        n => mac(n),
    }
}

fn vlan_mode() -> impl Strategy<Value = VlanMode> {
    prop_oneof![
        prop::sample::select(VLANS.to_vec()).prop_map(VlanMode::Access),
        prop::sample::subsequence(VLANS.to_vec(), 1..=3).prop_map(VlanMode::Trunk),
    ]
}

fn port_configs() -> impl Strategy<Value = Vec<PortConfig>> {
    prop::collection::vec((any::<bool>(), vlan_mode()), 2..=6).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (is_vif, vlan))| {
                let domid = i as u16 + 1;
                let kind = if is_vif {
                    PortKind::Vif {
                        domid,
                        devid: 0,
                        mac: mac(domid as u8),
                    }
                } else {
                    PortKind::Uplink
                };
                PortConfig {
                    name: format!("p{i}"),
                    kind,
                    vlan,
                }
            })
            .collect()
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let frame = (
        0u8..10,
        0u8..10,
        prop::option::of(prop::sample::select(vec![5u16, 10, 20, 30])),
        0usize..80,
    )
        .prop_map(|(dst, src, vid, len)| FrameSpec { dst, src, vid, len });
    let op = prop_oneof![
        20 => (0usize..6, frame).prop_map(|(port, frame)| Op::Send { port, frame }),
        1 => (0usize..6).prop_map(|port| Op::Remove { port }),
    ];
    prop::collection::vec(op, 1..120)
}

fn build(spec: &FrameSpec) -> Vec<u8> {
    let payload = vec![spec.len as u8; spec.len];
    match spec.vid {
        Some(vid) => tagged(pool_mac(spec.dst), pool_mac(spec.src), vid, &payload),
        None => frame(pool_mac(spec.dst), pool_mac(spec.src), &payload),
    }
}

/// The model: what the switch should do.
struct Model {
    ports: Vec<(PortId, PortConfig)>,
    learned: HashMap<(u16, Mac), PortId>,
}

impl Model {
    fn config(&self, id: PortId) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.0 == id).map(|p| &p.1)
    }

    fn static_owner(&self, vlan: u16, m: &Mac) -> Option<PortId> {
        self.ports.iter().find_map(|(id, c)| match c.kind {
            PortKind::Vif { mac, .. } if mac == *m && c.vlan.carries(vlan) => Some(*id),
            _ => None,
        })
    }

    fn expect(&mut self, src: PortId, spec: &FrameSpec) -> (Verdict, Vec<(PortId, Vec<u8>)>) {
        let Some(config) = self.config(src).cloned() else {
            return (Verdict::NoSuchPort, vec![]);
        };
        let vlan = match (&config.vlan, spec.vid) {
            (VlanMode::Access(v), None) => *v,
            (VlanMode::Access(_), Some(_)) => return dropped(DropReason::TaggedOnAccess),
            (VlanMode::Trunk(_), None) => return dropped(DropReason::UntaggedOnTrunk),
            (VlanMode::Trunk(l), Some(v)) if l.contains(&v) => v,
            (VlanMode::Trunk(_), Some(_)) => return dropped(DropReason::VlanNotAllowed),
        };
        let (src_mac, dst_mac) = (pool_mac(spec.src), pool_mac(spec.dst));
        if matches!(spec.src, 0 | 9) {
            return dropped(DropReason::InvalidSource);
        }
        if let PortKind::Vif { mac, .. } = config.kind {
            if mac != src_mac {
                return dropped(DropReason::Spoofed);
            }
        }
        match self.static_owner(vlan, &src_mac) {
            Some(owner) if owner != src => return dropped(DropReason::Spoofed),
            Some(_) => {}
            None => {
                self.learned.insert((vlan, src_mac), src);
            }
        }
        let known = self
            .static_owner(vlan, &dst_mac)
            .or_else(|| self.learned.get(&(vlan, dst_mac)).copied());
        let targets: Vec<PortId> = match known {
            Some(port) if !matches!(spec.dst, 0 | 9) => {
                if port == src {
                    vec![]
                } else {
                    vec![port]
                }
            }
            _ => self
                .ports
                .iter()
                .filter(|(id, c)| *id != src && c.vlan.carries(vlan))
                .map(|p| p.0)
                .collect(),
        };
        if targets.is_empty() {
            return dropped(DropReason::NoDestination);
        }
        let payload = vec![spec.len as u8; spec.len];
        let out = targets
            .iter()
            .map(|&t| {
                let bytes = match self.config(t).unwrap().vlan {
                    VlanMode::Access(_) => frame(dst_mac, src_mac, &payload),
                    VlanMode::Trunk(_) => tagged(dst_mac, src_mac, vlan, &payload),
                };
                (t, bytes)
            })
            .collect();
        (Verdict::Delivered(targets.len()), out)
    }
}

fn dropped(reason: DropReason) -> (Verdict, Vec<(PortId, Vec<u8>)>) {
    (Verdict::Dropped(reason), vec![])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Frame by frame the switch does what the model does: same verdict,
    /// same egress ports, same bytes (so never to the source, never outside
    /// the VLAN, tagged exactly on trunks); and its counters add up.
    #[test]
    fn switch_matches_the_model(configs in port_configs(), ops in ops()) {
        let mut sw = Switch::new();
        let ids: Vec<PortId> = configs.iter().map(|c| sw.add_port(c.clone()).unwrap()).collect();
        let mut model = Model {
            ports: ids.iter().copied().zip(configs.iter().cloned()).collect(),
            learned: HashMap::new(),
        };
        let mut sent: HashMap<PortId, u64> = HashMap::new();
        let mut got: HashMap<PortId, u64> = HashMap::new();
        let mut forwarded: HashMap<PortId, u64> = HashMap::new();
        let mut outputs = 0;
        for op in &ops {
            match op {
                Op::Send { port, frame: spec } => {
                    let src = ids[port % ids.len()];
                    let expected = model.expect(src, spec);
                    let actual = send(&mut sw, src, &build(spec));
                    prop_assert_eq!(&actual, &expected, "{:?} from {:?}", spec, src);
                    if actual.0 != Verdict::NoSuchPort {
                        *sent.entry(src).or_default() += 1;
                    }
                    if matches!(actual.0, Verdict::Delivered(_)) {
                        *forwarded.entry(src).or_default() += 1;
                    }
                    for (dst, _) in &actual.1 {
                        *got.entry(*dst).or_default() += 1;
                        outputs += 1;
                    }
                }
                Op::Remove { port } => {
                    let id = ids[port % ids.len()];
                    let present = model.config(id).is_some();
                    prop_assert_eq!(sw.remove_port(id).is_ok(), present);
                    model.ports.retain(|p| p.0 != id);
                    model.learned.retain(|_, p| *p != id);
                }
            }
        }
        let snap = sw.snapshot();
        for port in &snap.ports {
            let c = &port.counters;
            prop_assert_eq!(c.rx.packets, sent.get(&port.id).copied().unwrap_or(0));
            prop_assert_eq!(c.tx.packets, got.get(&port.id).copied().unwrap_or(0));
            prop_assert_eq!(c.tx.packets, c.tx_east_west.packets + c.tx_north_south.packets);
            prop_assert_eq!(c.tx.bytes, c.tx_east_west.bytes + c.tx_north_south.bytes);
            let forwarded = forwarded.get(&port.id).copied().unwrap_or(0);
            prop_assert_eq!(c.rx.packets, forwarded + c.drops.total());
            prop_assert!(c.rx_east_west.packets + c.rx_north_south.packets >= forwarded);
            prop_assert!(c.rx_east_west.packets.max(c.rx_north_south.packets) <= forwarded);
            if !port.config.kind.is_vif() {
                prop_assert_eq!(c.tx_east_west.packets + c.rx_east_west.packets, 0);
            }
        }
        prop_assert_eq!(snap.totals.east_west.packets + snap.totals.north_south.packets, outputs);
        let live_drops: u64 = snap.ports.iter().map(|p| p.counters.drops.total()).sum();
        prop_assert!(snap.totals.drops.total() >= live_drops);
    }
}
