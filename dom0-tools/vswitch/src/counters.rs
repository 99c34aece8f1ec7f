//! Per-port counters: what came in, what went out (east-west and
//! north-south apart) and what was dropped, by reason.

use core::fmt;

/// Frames and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Traffic {
    /// Frames.
    pub packets: u64,
    /// Their bytes (as they were on this port: with a tag on a trunk).
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
    }
}

/// Which way a delivered frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Guest to guest: both ports are vifs.
    EastWest,
    /// Between a guest and the world: one port is the uplink.
    NorthSouth,
}

impl Direction {
    /// The direction of a frame between ports of these kinds.
    pub fn between(from_vif: bool, to_vif: bool) -> Self {
        if from_vif && to_vif {
            Self::EastWest
        } else {
            Self::NorthSouth
        }
    }
}

/// Why the switch dropped a frame that arrived on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DropReason {
    /// Shorter than its Ethernet (and 802.1Q) header.
    Malformed,
    /// Longer than [`crate::MAX_FRAME_LEN`] (plus a tag).
    Oversize,
    /// A tagged frame on an access port.
    TaggedOnAccess,
    /// An untagged frame on a trunk port.
    UntaggedOnTrunk,
    /// A tagged frame of a VLAN the trunk does not carry.
    VlanNotAllowed,
    /// From a vif, a source MAC that is not the vif's; from any port, the
    /// source MAC of another port's vif.
    Spoofed,
    /// A group (multicast, broadcast) or zero source MAC.
    InvalidSource,
    /// Nowhere to go: its destination is behind the port it came from,
    /// or no other port is in its VLAN.
    NoDestination,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 8] = [
        Self::Malformed,
        Self::Oversize,
        Self::TaggedOnAccess,
        Self::UntaggedOnTrunk,
        Self::VlanNotAllowed,
        Self::Spoofed,
        Self::InvalidSource,
        Self::NoDestination,
    ];

    /// The counter's name in `vswitch show`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Oversize => "oversize",
            Self::TaggedOnAccess => "tagged_on_access",
            Self::UntaggedOnTrunk => "untagged_on_trunk",
            Self::VlanNotAllowed => "vlan_not_allowed",
            Self::Spoofed => "spoofed",
            Self::InvalidSource => "invalid_source",
            Self::NoDestination => "no_destination",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dropped frames of a port, by [`DropReason`] (in [`DropReason::ALL`]'s
/// order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Drops(pub [u64; 8]);

impl Drops {
    /// Frames dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[Self::index(reason)]
    }

    /// Every dropped frame.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for each reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().zip(self.0.iter().copied())
    }

    fn bump(&mut self, reason: DropReason) {
        self.0[Self::index(reason)] += 1;
    }

    fn index(reason: DropReason) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default()
    }
}

/// One port's counters.
///
/// Every frame that arrives is in `rx` and then either delivered (to at
/// least one port) or counted in `drops` under one reason. A delivery is
/// east-west when both ports are vifs and north-south when one is the
/// uplink ([`Direction`]): `tx` splits into `tx_east_west` and
/// `tx_north_south`; a received frame counts once in `rx_east_west` and/or
/// `rx_north_south` for the directions it was delivered in (a flooded
/// frame may count in both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortCounters {
    /// Frames received from what is behind the port.
    pub rx: Traffic,
    /// Frames sent to what is behind the port.
    pub tx: Traffic,
    /// Received frames delivered east-west (from this vif to a vif).
    pub rx_east_west: Traffic,
    /// Received frames delivered north-south (to or from the uplink).
    pub rx_north_south: Traffic,
    /// Sent frames that came east-west (from a vif to this vif).
    pub tx_east_west: Traffic,
    /// Sent frames that came north-south (to or from the uplink).
    pub tx_north_south: Traffic,
    /// Received frames dropped, by reason.
    pub drops: Drops,
    /// Frames switched to this port that what is behind it could not
    /// take (its queue was full, its device refused): counted in `tx`
    /// too, as the switch sent them.
    pub tx_dropped: u64,
}

impl PortCounters {
    pub(crate) fn received(&mut self, len: usize) {
        self.rx.add(len);
    }

    pub(crate) fn dropped(&mut self, reason: DropReason) {
        self.drops.bump(reason);
    }

    pub(crate) fn sent(&mut self, len: usize, direction: Direction) {
        self.tx.add(len);
        match direction {
            Direction::EastWest => self.tx_east_west.add(len),
            Direction::NorthSouth => self.tx_north_south.add(len),
        }
    }

    pub(crate) fn delivered(&mut self, len: usize, east_west: bool, north_south: bool) {
        if east_west {
            self.rx_east_west.add(len);
        }
        if north_south {
            self.rx_north_south.add(len);
        }
    }
}

/// The switch's totals of delivered frames (one per frame and egress
/// port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Totals {
    /// Guest to guest.
    pub east_west: Traffic,
    /// Between a guest and the uplink.
    pub north_south: Traffic,
    /// Source MACs not learned because the table was full.
    pub learning_table_full: u64,
    /// Frames dropped on arrival, by reason, over every port the switch
    /// has had (a removed port's stay counted here).
    pub drops: Drops,
}

impl Totals {
    pub(crate) fn dropped(&mut self, reason: DropReason) {
        self.drops.bump(reason);
    }

    pub(crate) fn delivered(&mut self, len: usize, direction: Direction) {
        match direction {
            Direction::EastWest => self.east_west.add(len),
            Direction::NorthSouth => self.north_south.add(len),
        }
    }
}
