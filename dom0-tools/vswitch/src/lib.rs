//! dom0's virtual switch: an IEEE 802.1Q learning switch between the
//! guests' vifs (netback) and dom0's uplink NIC, as Linux's bridge with
//! VLAN filtering or Open vSwitch is in Xen's dom0.
//!
//! - **VLANs**: an access port carries one VLAN, untagged; a trunk port
//!   carries a list of VLANs, tagged (no native VLAN). A frame is tagged
//!   when it leaves on a trunk and untagged when it leaves on an access
//!   port; tagged frames arriving on an access port, untagged ones on a
//!   trunk and frames of VLANs a trunk does not carry are dropped.
//! - **Learning**: one table per VLAN ([`fdb`]), bounded by
//!   [`FDB_CAPACITY`], entries aged out after [`AGING_MS`]. Broadcast,
//!   multicast and unknown unicast are flooded to the VLAN's other ports,
//!   never back to the source.
//! - **Anti-spoofing**: a vif sends only from its configured MAC, and no
//!   port (the uplink included) from another vif's; violations are dropped
//!   and counted.
//! - **Counters** per port ([`PortCounters`]): rx/tx frames and bytes,
//!   drops by [`DropReason`], east-west (vif↔vif) and north-south
//!   (vif↔uplink) apart.
//!
//! ```
//! use vswitch::{PortConfig, PortKind, Switch, VlanMode, Verdict};
//!
//! let mut switch = Switch::new();
//! let mac_a = [0x00, 0x16, 0x3e, 0, 0, 1];
//! let a = switch.add_port(PortConfig {
//!     name: "vif1.0".into(),
//!     kind: PortKind::Vif { domid: 1, devid: 0, mac: mac_a },
//!     vlan: VlanMode::Access(10),
//! }).unwrap();
//! let up = switch.add_port(PortConfig {
//!     name: "uplink".into(),
//!     kind: PortKind::Uplink,
//!     vlan: VlanMode::Trunk(vec![10, 20]),
//! }).unwrap();
//! // A broadcast from vif1.0 leaves on the uplink, tagged with VLAN 10.
//! let mut frame = vec![0xff; 6];
//! frame.extend_from_slice(&mac_a);
//! frame.extend_from_slice(&[0x08, 0x06, 0, 0]);
//! let mut sent = vec![];
//! let verdict = switch.forward(a, &frame, &mut |port, bytes| sent.push((port, bytes.to_vec())));
//! assert_eq!(verdict, Verdict::Delivered(1));
//! assert_eq!(sent[0].0, up);
//! assert_eq!(sent[0].1[12..16], [0x81, 0x00, 0x00, 10]);
//! assert_eq!(switch.snapshot().totals.north_south.packets, 1);
//! ```

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod config;
mod counters;
pub mod fdb;
mod frame;
mod snapshot;
mod switch;

pub use config::{
    default_mac, is_group, is_valid_source, parse_mac, Mac, MacDisplay, PortConfig, PortId,
    PortKind, SwitchError, VlanMode, DEFAULT_VLAN, MAX_PORTS, MAX_PORT_NAME, MAX_TRUNK_VLANS,
    VLAN_MAX, VLAN_MIN, XEN_OUI,
};
pub use counters::{Direction, DropReason, Drops, PortCounters, Totals, Traffic};
pub use fdb::{AGING_MS, FDB_CAPACITY};
pub use frame::{MAX_FRAME_LEN, VLAN_TAG_LEN};
pub use snapshot::{LearnedMac, PortSnapshot, Snapshot};
pub use switch::{Switch, Verdict};
