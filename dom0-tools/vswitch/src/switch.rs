//! The switch: ports, the learning table and the forwarding decision.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::config::{
    is_valid_source, PortConfig, PortId, PortKind, SwitchError, VlanMode, MAX_PORTS, MAX_PORT_NAME,
};
use crate::counters::{Direction, DropReason, PortCounters, Totals};
use crate::fdb::{Fdb, Learned, AGING_MS, FDB_CAPACITY};
use crate::frame::{parse, Ingress};
use crate::snapshot::{LearnedMac, PortSnapshot, Snapshot};

/// How often [`Switch::tick`] sweeps aged entries out, milliseconds.
const AGING_SWEEP_MS: u64 = 1_000;

/// What became of a frame given to [`Switch::forward`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent out on this many ports (at least one).
    Delivered(usize),
    /// Dropped and counted on the source port.
    Dropped(DropReason),
    /// The source port does not exist (nothing counted).
    NoSuchPort,
}

#[derive(Debug)]
struct Port {
    config: PortConfig,
    counters: PortCounters,
}

/// An 802.1Q learning switch. See the crate's documentation.
#[derive(Debug, Default)]
pub struct Switch {
    ports: BTreeMap<PortId, Port>,
    next_id: u32,
    fdb: Fdb,
    totals: Totals,
    now_ms: u64,
    last_sweep_ms: u64,
    /// Reused per frame: the egress ports, and the frame untagged/tagged.
    targets: Vec<PortId>,
    untagged: Vec<u8>,
    tagged: Vec<u8>,
}

impl Switch {
    /// An empty switch, its clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a port. A vif's MAC becomes a static entry in each of its
    /// VLANs: no other port may send from it.
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, SwitchError> {
        config.vlan.validate()?;
        if config.name.is_empty() || config.name.len() > MAX_PORT_NAME {
            return Err(SwitchError::InvalidName);
        }
        if self.ports.len() >= MAX_PORTS {
            return Err(SwitchError::TooManyPorts);
        }
        if let PortKind::Vif { mac, .. } = config.kind {
            if !is_valid_source(&mac) {
                return Err(SwitchError::InvalidMac(mac));
            }
            if let Some(&vlan) = config
                .vlan
                .vlans()
                .iter()
                .find(|v| self.fdb.has_static(**v, &mac))
            {
                return Err(SwitchError::MacInUse { mac, vlan });
            }
        }
        let id = PortId(self.next_id);
        self.next_id += 1;
        if let PortKind::Vif { mac, .. } = config.kind {
            for &vlan in config.vlan.vlans() {
                self.fdb.add_static(vlan, mac, id, self.now_ms);
            }
        }
        let counters = PortCounters::default();
        self.ports.insert(id, Port { config, counters });
        Ok(id)
    }

    /// Removes a port and everything learned on it.
    pub fn remove_port(&mut self, id: PortId) -> Result<PortConfig, SwitchError> {
        let port = self.ports.remove(&id).ok_or(SwitchError::NoSuchPort(id))?;
        self.fdb.remove_port(id);
        Ok(port.config)
    }

    /// A port's configuration.
    pub fn port(&self, id: PortId) -> Option<&PortConfig> {
        self.ports.get(&id).map(|p| &p.config)
    }

    /// A port's counters.
    pub fn counters(&self, id: PortId) -> Option<&PortCounters> {
        self.ports.get(&id).map(|p| &p.counters)
    }

    /// Counts a frame [`Switch::forward`] gave to `port` that its backend
    /// could not take (`tx_dropped`).
    pub fn count_tx_dropped(&mut self, port: PortId) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.tx_dropped += 1;
        }
    }

    /// Sets the switch's clock (milliseconds, monotonic) and, at most once
    /// a second, forgets learned entries older than [`AGING_MS`].
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.now_ms - self.last_sweep_ms >= AGING_SWEEP_MS {
            self.last_sweep_ms = self.now_ms;
            self.fdb.age(self.now_ms);
        }
    }

    /// Switches `frame`, which arrived on port `src`: checks it against
    /// the port (VLAN membership, anti-spoofing), learns its source and
    /// calls `out` with each port it leaves on and its bytes there
    /// (tagged on a trunk, untagged on an access port). Never back to
    /// `src`; never to a port outside the frame's VLAN.
    pub fn forward(
        &mut self,
        src: PortId,
        frame: &[u8],
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Verdict {
        let Some(port) = self.ports.get_mut(&src) else {
            return Verdict::NoSuchPort;
        };
        port.counters.received(frame.len());
        let checked = parse(frame).and_then(|ingress| {
            let vlan = ingress_vlan(&port.config, &ingress)?;
            Ok((ingress, vlan))
        });
        let (ingress, vlan) = match checked {
            Ok(ok) => ok,
            Err(reason) => return self.drop(src, reason),
        };
        if let Err(reason) = self.learn(src, &ingress, vlan) {
            return self.drop(src, reason);
        }
        self.choose_targets(src, &ingress, vlan);
        if self.targets.is_empty() {
            return self.drop(src, DropReason::NoDestination);
        }
        self.deliver(src, frame.len(), &ingress, vlan, out)
    }

    /// A view of everything for `vswitch show`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ports: self
                .ports
                .iter()
                .map(|(&id, p)| PortSnapshot {
                    id,
                    config: p.config.clone(),
                    counters: p.counters,
                })
                .collect(),
            learned: self
                .fdb
                .entries()
                .map(|(vlan, mac, e)| LearnedMac {
                    vlan,
                    mac,
                    port: e.port,
                    is_static: e.is_static,
                    age_ms: self.now_ms.saturating_sub(e.last_seen_ms),
                })
                .filter(|l| l.is_static || l.age_ms < AGING_MS)
                .collect(),
            totals: self.totals,
            learning_capacity: FDB_CAPACITY as u64,
            aging_ms: AGING_MS,
        }
    }

    fn drop(&mut self, src: PortId, reason: DropReason) -> Verdict {
        if let Some(port) = self.ports.get_mut(&src) {
            port.counters.dropped(reason);
        }
        self.totals.dropped(reason);
        Verdict::Dropped(reason)
    }

    /// Anti-spoofing, then learning.
    fn learn(&mut self, src: PortId, ingress: &Ingress<'_>, vlan: u16) -> Result<(), DropReason> {
        if !is_valid_source(&ingress.src) {
            return Err(DropReason::InvalidSource);
        }
        if let Some(Port {
            config:
                PortConfig {
                    kind: PortKind::Vif { mac, .. },
                    ..
                },
            ..
        }) = self.ports.get(&src)
        {
            if *mac != ingress.src {
                return Err(DropReason::Spoofed);
            }
        }
        match self.fdb.learn(vlan, ingress.src, src, self.now_ms) {
            Learned::Ok => Ok(()),
            Learned::StaticElsewhere => Err(DropReason::Spoofed),
            Learned::Full => {
                self.totals.learning_table_full += 1;
                Ok(())
            }
        }
    }

    /// Fills `targets`: the learned port of a known unicast destination,
    /// else every other port in the VLAN.
    fn choose_targets(&mut self, src: PortId, ingress: &Ingress<'_>, vlan: u16) {
        self.targets.clear();
        if is_valid_source(&ingress.dst) {
            if let Some(entry) = self.fdb.lookup(vlan, &ingress.dst, self.now_ms) {
                if entry.port != src && self.ports.contains_key(&entry.port) {
                    self.targets.push(entry.port);
                }
                return;
            }
        }
        let members = self
            .ports
            .iter()
            .filter(|(id, p)| **id != src && p.config.vlan.carries(vlan))
            .map(|(id, _)| *id);
        self.targets.extend(members);
    }

    fn deliver(
        &mut self,
        src: PortId,
        rx_len: usize,
        ingress: &Ingress<'_>,
        vlan: u16,
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Verdict {
        let from_vif = self.ports.get(&src).is_some_and(|p| p.config.kind.is_vif());
        let (mut untagged, mut tagged) = (
            core::mem::take(&mut self.untagged),
            core::mem::take(&mut self.tagged),
        );
        untagged.clear();
        tagged.clear();
        let (mut east_west, mut north_south) = (false, false);
        for &dst in &self.targets {
            let Some(port) = self.ports.get_mut(&dst) else {
                continue;
            };
            let bytes = match port.config.vlan {
                VlanMode::Access(_) => {
                    if untagged.is_empty() {
                        ingress.write_untagged(&mut untagged);
                    }
                    &untagged
                }
                VlanMode::Trunk(_) => {
                    if tagged.is_empty() {
                        ingress.write_tagged(vlan, &mut tagged);
                    }
                    &tagged
                }
            };
            let direction = Direction::between(from_vif, port.config.kind.is_vif());
            port.counters.sent(bytes.len(), direction);
            self.totals.delivered(bytes.len(), direction);
            east_west |= direction == Direction::EastWest;
            north_south |= direction == Direction::NorthSouth;
            out(dst, bytes);
        }
        if let Some(port) = self.ports.get_mut(&src) {
            port.counters.delivered(rx_len, east_west, north_south);
        }
        self.untagged = untagged;
        self.tagged = tagged;
        Verdict::Delivered(self.targets.len())
    }
}

/// The VLAN a frame arriving on a port belongs to, or why the port does
/// not take it.
fn ingress_vlan(config: &PortConfig, ingress: &Ingress<'_>) -> Result<u16, DropReason> {
    match (&config.vlan, ingress.vid()) {
        (VlanMode::Access(vlan), None) => Ok(*vlan),
        (VlanMode::Access(_), Some(_)) => Err(DropReason::TaggedOnAccess),
        (VlanMode::Trunk(_), None) => Err(DropReason::UntaggedOnTrunk),
        (VlanMode::Trunk(list), Some(vid)) if list.contains(&vid) => Ok(vid),
        (VlanMode::Trunk(_), Some(_)) => Err(DropReason::VlanNotAllowed),
    }
}
