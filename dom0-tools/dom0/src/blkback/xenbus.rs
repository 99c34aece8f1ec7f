//! The vbd's store nodes and handshake, as libxl (`libxl__device_disk_add`,
//! `libxl__device_generic_add`) and Linux's xen-blkback (`xenbus.c`:
//! `xen_blkbk_probe`, `frontend_changed`, `connect`, `connect_ring`)
//! write and read them. Portable and host-tested.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use abi::xen::blkif::{VDISK_READONLY, XEN_IO_PROTO_ABI_X86_64};
use abi::xen::domid::DomId;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::grant_table::GrantRef;
use guest_pv_shim::xenbus::state::XenbusState;

use super::VolumeExtent;
use crate::store::tree::Node;

/// `/local/domain/0/backend/vbd/<domid>/<devid>`.
pub fn backend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}/{devid}")
}

/// `/local/domain/<domid>/device/vbd/<devid>`.
pub fn frontend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vbd/{devid}")
}

/// What the toolstack writes at attach: the backend directory (dom0's,
/// readable by the guest: `n0 r<domid>`) and the frontend directory (the
/// guest's, readable by dom0: `n<domid> r0`), both in state
/// Initialising, as libxl does.
pub fn attach_nodes(
    domid: DomId,
    devid: u32,
    vdev: &str,
    extent: &VolumeExtent,
    read_only: bool,
) -> Vec<Node> {
    let back = backend_path(domid, devid);
    let front = frontend_path(domid, devid);
    let node = |dir: &str, key: &str, value: String| Node {
        path: format!("{dir}/{key}"),
        value,
        perms: None,
    };
    let state = format!("{}", XenbusState::Initialising as u32);
    let mut nodes = vec![Node {
        path: back.clone(),
        value: String::new(),
        perms: Some(vec![String::from("n0"), format!("r{domid}")]),
    }];
    for (key, value) in [
        ("frontend", front.clone()),
        ("frontend-id", format!("{domid}")),
        ("online", "1".into()),
        ("removable", "0".into()),
        ("bootable", "1".into()),
        ("state", state.clone()),
        ("dev", vdev.into()),
        ("type", "phy".into()),
        ("mode", if read_only { "r" } else { "w" }.into()),
        ("device-type", "disk".into()),
        ("params", extent.name.clone()),
    ] {
        nodes.push(node(&back, key, value));
    }
    nodes.push(Node {
        path: front.clone(),
        value: String::new(),
        perms: Some(vec![format!("n{domid}"), String::from("r0")]),
    });
    for (key, value) in [
        ("backend", back.clone()),
        ("backend-id", "0".into()),
        ("state", state),
        ("virtual-device", format!("{devid}")),
        ("device-type", "disk".into()),
        ("trusted", "1".into()),
    ] {
        nodes.push(node(&front, key, value));
    }
    nodes
}

/// What the backend publishes once it has opened the volume (Linux's
/// `xen_blkbk_probe` features), before it goes to InitWait, with
/// `feature-persistent` (blkif.h: the frontend may reuse its grants,
/// which the backend then keeps mapped). No `max-ring-page-order`,
/// `feature-discard` or `feature-max-indirect-segments`: one-page
/// rings, direct requests.
pub fn feature_nodes(domid: DomId, devid: u32) -> Vec<Node> {
    let back = backend_path(domid, devid);
    [
        ("feature-flush-cache", "1"),
        ("feature-barrier", "0"),
        ("feature-persistent", "1"),
    ]
    .into_iter()
    .map(|(key, value)| Node {
        path: format!("{back}/{key}"),
        value: value.into(),
        perms: None,
    })
    .collect()
}

/// What the backend publishes when it connects (Linux's `connect`):
/// the size in 512-byte sectors, `info` (`VDISK_READONLY`) and the
/// sector sizes.
pub fn connect_nodes(
    domid: DomId,
    devid: u32,
    extent: &VolumeExtent,
    read_only: bool,
) -> Vec<Node> {
    let back = backend_path(domid, devid);
    let info = if read_only { VDISK_READONLY } else { 0 };
    [
        ("sectors", format!("{}", extent.sectors)),
        ("info", format!("{info}")),
        ("sector-size", "512".into()),
        ("physical-sector-size", "512".into()),
    ]
    .into_iter()
    .map(|(key, value)| Node {
        path: format!("{back}/{key}"),
        value,
        perms: None,
    })
    .collect()
}

/// The frontend's transport parameters (`connect_ring`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingParams {
    /// Grant of the one ring page.
    pub ring_ref: GrantRef,
    /// The frontend's unbound port for us.
    pub event_channel: EvtchnPort,
    /// The frontend wrote `feature-persistent` = 1: its data grants are
    /// reused, so the backend may keep them mapped until disconnect.
    pub persistent: bool,
}

/// Why the frontend's parameters were refused (the device then closes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamsError {
    /// A key is missing or not a decimal number.
    Bad(&'static str),
    /// `protocol` names an ABI other than x86_64.
    Protocol(String),
    /// A multi-page ring (`ring-page-order` > 0) or several queues.
    Unsupported(&'static str),
}

impl core::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Bad(key) => write!(f, "missing or bad {key}"),
            Self::Protocol(p) => write!(f, "unknown protocol {p:?}"),
            Self::Unsupported(key) => write!(f, "{key} not supported"),
        }
    }
}

/// Reads the frontend's `ring-ref`, `event-channel` and `protocol`
/// through `read(key)` (the value under the frontend's directory).
pub fn ring_params<'a>(read: impl Fn(&str) -> Option<&'a [u8]>) -> Result<RingParams, ParamsError> {
    let number = |key: &'static str| -> Result<u32, ParamsError> {
        let value = read(key).ok_or(ParamsError::Bad(key))?;
        let text = core::str::from_utf8(value).map_err(|_| ParamsError::Bad(key))?;
        text.parse().map_err(|_| ParamsError::Bad(key))
    };
    if read("ring-page-order").is_some_and(|v| v != b"0") {
        return Err(ParamsError::Unsupported("ring-page-order"));
    }
    if read("multi-queue-num-queues").is_some_and(|v| v != b"1") {
        return Err(ParamsError::Unsupported("multi-queue-num-queues"));
    }
    if let Some(p) = read("protocol") {
        if p != XEN_IO_PROTO_ABI_X86_64.as_bytes() {
            return Err(ParamsError::Protocol(String::from_utf8_lossy(p).into()));
        }
    }
    Ok(RingParams {
        ring_ref: number("ring-ref")?,
        event_channel: number("event-channel")?,
        persistent: read("feature-persistent") == Some(b"1"),
    })
}

/// What the backend does when it sees the frontend's state
/// (`frontend_changed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Stay,
    /// Map the ring, bind the port, publish the device, go Connected.
    Connect,
    /// Drop the ring and port (if any), then go to this state.
    Disconnect(XenbusState),
    /// The frontend starts again after a close: back to InitWait.
    Reopen,
}

/// The backend's move for `(ours, theirs)`; `connected`: we hold the ring.
pub fn next_action(ours: XenbusState, connected: bool, theirs: XenbusState) -> Action {
    use XenbusState::*;
    match theirs {
        Initialised | Connected if ours == InitWait => Action::Connect,
        Initialising | InitWait if ours == Closed => Action::Reopen,
        Closing if ours != Closing && ours != Closed => Action::Disconnect(Closing),
        // A frontend that vanished (its node removed) counts as Closed.
        Closed | Unknown if ours != Closed && (connected || ours != InitWait) => {
            Action::Disconnect(Closed)
        }
        _ => Action::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent() -> VolumeExtent {
        VolumeExtent {
            name: "data".into(),
            first_lba: 2048,
            sectors: 8192,
        }
    }

    #[test]
    fn attach_writes_libxl_keys_with_libxl_permissions() {
        let nodes = attach_nodes(3, 51712, "xvda", &extent(), true);
        let get = |p: &str| nodes.iter().find(|n| n.path == p).unwrap();
        let back = "/local/domain/0/backend/vbd/3/51712";
        let front = "/local/domain/3/device/vbd/51712";
        assert_eq!(get(back).perms.clone().unwrap(), ["n0", "r3"]);
        assert_eq!(get(front).perms.clone().unwrap(), ["n3", "r0"]);
        assert_eq!(get(&format!("{back}/frontend")).value, front);
        assert_eq!(get(&format!("{back}/frontend-id")).value, "3");
        assert_eq!(get(&format!("{back}/mode")).value, "r");
        assert_eq!(get(&format!("{back}/state")).value, "1");
        assert_eq!(get(&format!("{front}/backend")).value, back);
        assert_eq!(get(&format!("{front}/backend-id")).value, "0");
        assert_eq!(get(&format!("{front}/virtual-device")).value, "51712");
        assert_eq!(get(&format!("{front}/state")).value, "1");
        // Directories before their keys.
        let pos = |p: &str| nodes.iter().position(|n| n.path == p).unwrap();
        assert!(pos(front) < pos(&format!("{front}/state")));
        let connect = connect_nodes(3, 51712, &extent(), true);
        assert!(connect
            .iter()
            .any(|n| n.path.ends_with("/sectors") && n.value == "8192"));
        assert!(connect
            .iter()
            .any(|n| n.path.ends_with("/info") && n.value == "4"));
        assert!(feature_nodes(3, 51712)
            .iter()
            .any(|n| n.path == format!("{back}/feature-flush-cache") && n.value == "1"));
        assert!(feature_nodes(3, 51712)
            .iter()
            .any(|n| n.path == format!("{back}/feature-persistent") && n.value == "1"));
    }

    #[test]
    fn ring_params_are_read_and_checked() {
        let keys = |pairs: &'static [(&'static str, &'static [u8])]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        assert_eq!(
            ring_params(keys(&[
                ("ring-ref", b"8"),
                ("event-channel", b"5"),
                ("protocol", b"x86_64-abi")
            ])),
            Ok(RingParams {
                ring_ref: 8,
                event_channel: 5,
                persistent: false
            })
        );
        assert_eq!(
            ring_params(keys(&[("ring-ref", b"8"), ("event-channel", b"5")])),
            Ok(RingParams {
                ring_ref: 8,
                event_channel: 5,
                persistent: false
            }),
            "protocol defaults to native"
        );
        assert_eq!(
            ring_params(keys(&[
                ("ring-ref", b"8"),
                ("event-channel", b"5"),
                ("feature-persistent", b"1")
            ])),
            Ok(RingParams {
                ring_ref: 8,
                event_channel: 5,
                persistent: true
            }),
            "the frontend reuses its grants"
        );
        assert_eq!(
            ring_params(keys(&[
                ("ring-ref", b"8"),
                ("event-channel", b"5"),
                ("feature-persistent", b"yes")
            ]))
            .map(|p| p.persistent),
            Ok(false),
            "only 1 turns it on"
        );
        assert_eq!(
            ring_params(keys(&[("event-channel", b"5")])),
            Err(ParamsError::Bad("ring-ref"))
        );
        assert_eq!(
            ring_params(keys(&[("ring-ref", b"-1"), ("event-channel", b"5")])),
            Err(ParamsError::Bad("ring-ref"))
        );
        assert_eq!(
            ring_params(keys(&[
                ("ring-ref", b"8"),
                ("event-channel", b"5"),
                ("protocol", b"x86_32-abi")
            ])),
            Err(ParamsError::Protocol("x86_32-abi".into()))
        );
        assert_eq!(
            ring_params(keys(&[
                ("ring-ref", b"8"),
                ("event-channel", b"5"),
                ("ring-page-order", b"2")
            ])),
            Err(ParamsError::Unsupported("ring-page-order"))
        );
    }

    #[test]
    fn the_state_machine_follows_linux_blkback() {
        use XenbusState::*;
        assert_eq!(next_action(InitWait, false, Initialising), Action::Stay);
        assert_eq!(next_action(InitWait, false, Initialised), Action::Connect);
        assert_eq!(next_action(InitWait, false, Connected), Action::Connect);
        assert_eq!(next_action(Connected, true, Connected), Action::Stay);
        assert_eq!(
            next_action(Connected, true, Closing),
            Action::Disconnect(Closing)
        );
        assert_eq!(
            next_action(Closing, false, Closed),
            Action::Disconnect(Closed)
        );
        assert_eq!(
            next_action(Connected, true, Unknown),
            Action::Disconnect(Closed)
        );
        assert_eq!(next_action(Closed, false, Closed), Action::Stay);
        assert_eq!(next_action(Closed, false, Initialising), Action::Reopen);
        // A halted device (bad ring) waits for the frontend to close.
        assert_eq!(next_action(Closing, false, Connected), Action::Stay);
        // Before the frontend ever wrote anything, nothing happens.
        assert_eq!(next_action(InitWait, false, Unknown), Action::Stay);
    }
}
