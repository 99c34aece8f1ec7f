//! The vif's store handshake, as libxl (`libxl__device_nic_add`,
//! `libxl__device_generic_add`) and Linux's netback (`netback_probe`,
//! `connect_data_rings`) do it: the toolstack writes the backend
//! directory `/local/domain/0/backend/vif/<domid>/<devid>` and the
//! frontend directory `/local/domain/<domid>/device/vif/<devid>`, the
//! backend adds its `feature-*` keys and goes to InitWait; the frontend
//! writes `tx-ring-ref`, `rx-ring-ref`, `event-channel`,
//! `request-rx-copy` and goes Connected; the backend maps the rings,
//! binds the channel and goes Connected. Portable: paths, nodes and the
//! parsing of what the frontend wrote.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::GrantRef;
use xenstore::DomId;

use crate::store::tree::Node;

/// `XenbusStateInitialising`.
pub const STATE_INITIALISING: u32 = 1;
/// `XenbusStateInitWait`.
pub const STATE_INIT_WAIT: u32 = 2;
/// `XenbusStateInitialised`.
pub const STATE_INITIALISED: u32 = 3;
/// `XenbusStateConnected`.
pub const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
pub const STATE_CLOSING: u32 = 5;
/// `XenbusStateClosed`.
pub const STATE_CLOSED: u32 = 6;

/// `/local/domain/0/backend/vif/<domid>/<devid>`.
pub fn backend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/{devid}")
}

/// `/local/domain/<domid>/device/vif/<devid>`.
pub fn frontend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vif/{devid}")
}

/// `aa:bb:cc:dd:ee:ff`, as libxl writes `mac`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let m = mac;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn node(path: String, value: impl ToString, perms: Option<Vec<String>>) -> Node {
    Node {
        path,
        value: value.to_string(),
        perms,
    }
}

/// The nodes the toolstack and the backend write when a vif is
/// attached, parents first: both directories in state Initialising, the
/// backend's features, then the backend's state InitWait. The backend
/// directory is dom0's, readable by the domain; the frontend directory
/// the domain's, readable by dom0 (libxl's permissions).
pub fn attach_nodes(domid: DomId, devid: u32, mac: &[u8; 6]) -> Vec<Node> {
    let (be, fe) = (backend_path(domid, devid), frontend_path(domid, devid));
    let mac = mac_text(mac);
    let mut nodes = vec![
        node(be.clone(), "", Some(vec!["n0".into(), format!("r{domid}")])),
        node(format!("{be}/frontend"), &fe, None),
        node(format!("{be}/frontend-id"), domid, None),
        node(format!("{be}/online"), 1, None),
        node(format!("{be}/state"), STATE_INITIALISING, None),
        node(format!("{be}/handle"), devid, None),
        node(format!("{be}/mac"), &mac, None),
        node(format!("{be}/type"), "vif", None),
        node(fe.clone(), "", Some(vec![format!("n{domid}"), "r0".into()])),
        node(format!("{fe}/backend"), &be, None),
        node(format!("{fe}/backend-id"), 0, None),
        node(format!("{fe}/state"), STATE_INITIALISING, None),
        node(format!("{fe}/handle"), devid, None),
        node(format!("{fe}/mac"), &mac, None),
    ];
    // netback_probe's keys: what this backend offers (and does not).
    // No `feature-no-csum-offload`: that key is the frontend's; a
    // frontend's blank checksums are filled (`super::csum`).
    for (key, value) in [
        ("feature-sg", 0),
        ("feature-gso-tcpv4", 0),
        ("feature-gso-tcpv6", 0),
        ("feature-ipv6-csum-offload", 0),
        ("feature-rx-copy", 1),
        ("feature-rx-flip", 0),
        ("feature-multicast-control", 0),
        ("feature-split-event-channels", 0),
        ("feature-ctrl-ring", 0),
    ] {
        nodes.push(node(format!("{be}/{key}"), value, None));
    }
    nodes.push(node(format!("{be}/state"), STATE_INIT_WAIT, None));
    nodes
}

/// A `state` node's value (a decimal `XenbusState`); 0 (Unknown) if
/// absent or not a number.
pub fn parse_state(value: Option<&[u8]>) -> u32 {
    value
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// What the frontend published for the backend to connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendRings {
    /// Grant of the tx ring page.
    pub tx_ring_ref: GrantRef,
    /// Grant of the rx ring page.
    pub rx_ring_ref: GrantRef,
    /// The frontend's unbound port for dom0.
    pub event_channel: EvtchnPort,
}

/// Why the frontend's keys cannot be used (the backend goes Closing
/// with this as its `error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// A key is missing or not a number.
    BadKey(&'static str),
    /// `request-rx-copy` is not 1: only copying receive is served (rx
    /// flipping is gone from Xen).
    NoRxCopy,
    /// Several queues or split event channels asked for: not offered.
    Unsupported(&'static str),
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadKey(key) => write!(f, "reading {key}"),
            Self::NoRxCopy => write!(f, "frontend does not support rx-copy"),
            Self::Unsupported(key) => write!(f, "{key} is not offered"),
        }
    }
}

/// Reads the frontend's keys under its directory through `read` (the
/// value of a key relative to it); values are parsed once, here.
pub fn read_frontend<'a>(
    read: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<FrontendRings, HandshakeError> {
    let number = |key: &'static str| -> Result<u32, HandshakeError> {
        read(key)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
            .ok_or(HandshakeError::BadKey(key))
    };
    if read("multi-queue-num-queues").is_some_and(|v| v != b"1") {
        return Err(HandshakeError::Unsupported("multi-queue-num-queues"));
    }
    if read("event-channel-tx").is_some() {
        return Err(HandshakeError::Unsupported("event-channel-tx"));
    }
    if number("request-rx-copy") != Ok(1) {
        return Err(HandshakeError::NoRxCopy);
    }
    Ok(FrontendRings {
        tx_ring_ref: number("tx-ring-ref")?,
        rx_ring_ref: number("rx-ring-ref")?,
        event_channel: number("event-channel")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[test]
    fn attach_writes_both_directories_as_libxl_then_init_wait() {
        let nodes = attach_nodes(3, 0, &[0, 0x16, 0x3e, 1, 2, 3]);
        let be = "/local/domain/0/backend/vif/3/0";
        let fe = "/local/domain/3/device/vif/0";
        assert_eq!(nodes[0].path, be);
        assert_eq!(nodes[0].perms, Some(vec!["n0".into(), "r3".into()]));
        let find = |p: &str| nodes.iter().find(|n| n.path == p).map(|n| n.value.as_str());
        assert_eq!(find(&format!("{be}/frontend")), Some(fe));
        assert_eq!(find(&format!("{be}/frontend-id")), Some("3"));
        assert_eq!(find(&format!("{be}/feature-rx-copy")), Some("1"));
        assert_eq!(find(&format!("{be}/feature-rx-flip")), Some("0"));
        assert_eq!(find(&format!("{fe}/backend")), Some(be));
        assert_eq!(find(&format!("{fe}/backend-id")), Some("0"));
        assert_eq!(find(&format!("{fe}/mac")), Some("00:16:3e:01:02:03"));
        assert_eq!(find(&format!("{fe}/handle")), Some("0"));
        let fe_dir = nodes.iter().find(|n| n.path == fe).unwrap();
        assert_eq!(fe_dir.perms, Some(vec!["n3".into(), "r0".into()]));
        // The last word is the backend's InitWait.
        let last = nodes.last().unwrap();
        assert_eq!(
            (last.path.as_str(), last.value.as_str()),
            (&*format!("{be}/state"), "2")
        );
    }

    #[test]
    fn frontend_keys_are_parsed_and_checked() {
        let mut keys: BTreeMap<&str, &[u8]> = BTreeMap::new();
        keys.insert("tx-ring-ref", b"8");
        keys.insert("rx-ring-ref", b"9");
        keys.insert("event-channel", b"5");
        assert_eq!(
            read_frontend(|k| keys.get(k).copied()),
            Err(HandshakeError::NoRxCopy)
        );
        keys.insert("request-rx-copy", b"1");
        assert_eq!(
            read_frontend(|k| keys.get(k).copied()),
            Ok(FrontendRings {
                tx_ring_ref: 8,
                rx_ring_ref: 9,
                event_channel: 5
            })
        );
        keys.insert("tx-ring-ref", b"-1");
        assert_eq!(
            read_frontend(|k| keys.get(k).copied()),
            Err(HandshakeError::BadKey("tx-ring-ref"))
        );
        keys.insert("tx-ring-ref", b"8");
        keys.insert("multi-queue-num-queues", b"2");
        assert_eq!(
            read_frontend(|k| keys.get(k).copied()),
            Err(HandshakeError::Unsupported("multi-queue-num-queues"))
        );
    }

    #[test]
    fn states_parse_with_unknown_for_garbage() {
        assert_eq!(parse_state(Some(b"4")), STATE_CONNECTED);
        assert_eq!(parse_state(Some(b"x")), 0);
        assert_eq!(parse_state(None), 0);
    }
}
