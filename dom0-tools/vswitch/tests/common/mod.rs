//! Helpers shared by the tests: frames and ports.

#![allow(dead_code)]
#![allow(clippy::cast_possible_truncation)] // small test numbers

use vswitch::{Mac, PortConfig, PortId, PortKind, Switch, Verdict, VlanMode};

pub const BROADCAST: Mac = [0xff; 6];

pub fn mac(n: u8) -> Mac {
    [0x00, 0x16, 0x3e, 0, 0, n]
}

/// An untagged frame from `src` to `dst` with `payload` (EtherType IPv4).
pub fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// The same frame with an 802.1Q tag for `vid`.
pub fn tagged(dst: Mac, src: Mac, vid: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

pub fn vif(switch: &mut Switch, domid: u16, vlan: VlanMode) -> PortId {
    switch
        .add_port(PortConfig {
            name: format!("vif{domid}.0"),
            kind: PortKind::Vif {
                domid,
                devid: 0,
                mac: mac(domid as u8),
            },
            vlan,
        })
        .unwrap()
}

pub fn uplink(switch: &mut Switch, vlan: VlanMode) -> PortId {
    switch
        .add_port(PortConfig {
            name: "uplink".into(),
            kind: PortKind::Uplink,
            vlan,
        })
        .unwrap()
}

/// Forwards and collects what leaves.
pub fn send(switch: &mut Switch, src: PortId, frame: &[u8]) -> (Verdict, Vec<(PortId, Vec<u8>)>) {
    let mut out = Vec::new();
    let verdict = switch.forward(src, frame, &mut |p, b| out.push((p, b.to_vec())));
    (verdict, out)
}
