//! What `vswitch show` reports: the ports with their counters, the
//! learning table and the switch's totals.

use alloc::vec::Vec;

use crate::config::{Mac, PortConfig, PortId};
use crate::counters::{PortCounters, Totals};

/// The switch at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// Every port, by id.
    pub ports: Vec<PortSnapshot>,
    /// The live learning-table entries, by (VLAN, MAC).
    pub learned: Vec<LearnedMac>,
    /// Delivered frames, east-west and north-south apart.
    pub totals: Totals,
    /// [`crate::FDB_CAPACITY`]: most learned (non-static) entries.
    pub learning_capacity: u64,
    /// [`crate::AGING_MS`]: a learned entry's life without frames, ms.
    pub aging_ms: u64,
}

/// One port.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortSnapshot {
    /// Its id.
    pub id: PortId,
    /// Its configuration.
    pub config: PortConfig,
    /// Its counters.
    pub counters: PortCounters,
}

/// One learning-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LearnedMac {
    /// The VLAN.
    pub vlan: u16,
    /// The MAC.
    pub mac: Mac,
    /// The port it is behind.
    pub port: PortId,
    /// A vif's own MAC (configured, not learned).
    pub is_static: bool,
    /// Since its last frame (a static entry: since it was added), ms.
    pub age_ms: u64,
}
