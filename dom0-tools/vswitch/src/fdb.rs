//! The learning table (a bridge's forwarding database): which port a MAC
//! was last seen on, per VLAN. A vif's own MAC is a static entry in each
//! of its VLANs; other entries are learned, bounded by [`FDB_CAPACITY`],
//! and forgotten after [`AGING_MS`] without a frame.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::config::{Mac, PortId};

/// Most learned (dynamic) entries, over all VLANs. A source MAC seen when
/// the table is full is not learned (frames to it are flooded) and counted
/// in [`crate::Totals::learning_table_full`].
pub const FDB_CAPACITY: usize = 256;
/// How long a learned entry lives without a frame from its MAC,
/// milliseconds (Linux's bridge and 802.1D's default: 300 s).
pub const AGING_MS: u64 = 300_000;

/// One entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the MAC is.
    pub port: PortId,
    /// The switch's clock when a frame from the MAC last arrived (for a
    /// static entry: when it was added).
    pub last_seen_ms: u64,
    /// A vif's own MAC: never aged, never moved by learning.
    pub is_static: bool,
}

/// What [`Fdb::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The entry is (now) the source port's.
    Ok,
    /// The MAC is another port's static entry: the frame is spoofed.
    StaticElsewhere,
    /// The table is full; nothing learned.
    Full,
}

/// The table.
#[derive(Debug, Default)]
pub struct Fdb {
    entries: BTreeMap<(u16, Mac), Entry>,
    dynamic: usize,
}

impl Fdb {
    /// The live entry for `mac` in `vlan`.
    pub fn lookup(&self, vlan: u16, mac: &Mac, now_ms: u64) -> Option<Entry> {
        let entry = *self.entries.get(&(vlan, *mac))?;
        (entry.is_static || !expired(&entry, now_ms)).then_some(entry)
    }

    /// Whether a static entry for `mac` exists in `vlan`.
    pub fn has_static(&self, vlan: u16, mac: &Mac) -> bool {
        self.entries.get(&(vlan, *mac)).is_some_and(|e| e.is_static)
    }

    /// Records that `mac` sent from `port` in `vlan`.
    pub fn learn(&mut self, vlan: u16, mac: Mac, port: PortId, now_ms: u64) -> Learned {
        if let Some(entry) = self.entries.get_mut(&(vlan, mac)) {
            if entry.is_static {
                return if entry.port == port {
                    Learned::Ok
                } else {
                    Learned::StaticElsewhere
                };
            }
            entry.port = port;
            entry.last_seen_ms = now_ms;
            return Learned::Ok;
        }
        if self.dynamic >= FDB_CAPACITY {
            return Learned::Full;
        }
        self.dynamic += 1;
        self.entries.insert(
            (vlan, mac),
            Entry {
                port,
                last_seen_ms: now_ms,
                is_static: false,
            },
        );
        Learned::Ok
    }

    /// Makes `mac` in `vlan` `port`'s static entry (replacing what was
    /// learned).
    pub fn add_static(&mut self, vlan: u16, mac: Mac, port: PortId, now_ms: u64) {
        let old = self.entries.insert(
            (vlan, mac),
            Entry {
                port,
                last_seen_ms: now_ms,
                is_static: true,
            },
        );
        if old.is_some_and(|e| !e.is_static) {
            self.dynamic -= 1;
        }
    }

    /// Forgets every entry of `port`.
    pub fn remove_port(&mut self, port: PortId) {
        self.retain(|e| e.port != port);
    }

    /// Forgets learned entries older than [`AGING_MS`].
    pub fn age(&mut self, now_ms: u64) {
        self.retain(|e| e.is_static || !expired(e, now_ms));
    }

    /// Every entry with its VLAN and MAC, in (VLAN, MAC) order.
    pub fn entries(&self) -> impl Iterator<Item = (u16, Mac, Entry)> + '_ {
        self.entries.iter().map(|(&(v, m), &e)| (v, m, e))
    }

    /// How many learned entries there are.
    pub fn dynamic_len(&self) -> usize {
        self.dynamic
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let gone: Vec<(u16, Mac)> = self
            .entries
            .iter()
            .filter(|(_, e)| !keep(e))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(e) = self.entries.remove(&key) {
                if !e.is_static {
                    self.dynamic -= 1;
                }
            }
        }
    }
}

fn expired(entry: &Entry, now_ms: u64) -> bool {
    now_ms.saturating_sub(entry.last_seen_ms) >= AGING_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: PortId = PortId(1);
    const P2: PortId = PortId(2);

    fn mac(n: usize) -> Mac {
        let b = n.to_be_bytes();
        [0x02, 0, b[4], b[5], b[6], b[7]]
    }

    #[test]
    fn learns_moves_and_ages() {
        let mut fdb = Fdb::default();
        assert_eq!(fdb.learn(1, mac(1), P1, 0), Learned::Ok);
        assert_eq!(fdb.lookup(1, &mac(1), 10).unwrap().port, P1);
        assert_eq!(fdb.lookup(2, &mac(1), 10), None, "per VLAN");
        assert_eq!(fdb.learn(1, mac(1), P2, 100), Learned::Ok);
        assert_eq!(fdb.lookup(1, &mac(1), 100).unwrap().port, P2);
        assert_eq!(fdb.lookup(1, &mac(1), 100 + AGING_MS), None);
        fdb.age(100 + AGING_MS);
        assert_eq!(fdb.dynamic_len(), 0);
    }

    #[test]
    fn static_entries_stay_and_are_not_moved() {
        let mut fdb = Fdb::default();
        fdb.learn(1, mac(1), P2, 0);
        fdb.add_static(1, mac(1), P1, 0);
        assert_eq!(fdb.dynamic_len(), 0);
        assert_eq!(fdb.learn(1, mac(1), P2, 5), Learned::StaticElsewhere);
        assert_eq!(fdb.learn(1, mac(1), P1, 5), Learned::Ok);
        fdb.age(10 * AGING_MS);
        assert!(fdb.has_static(1, &mac(1)));
        fdb.remove_port(P1);
        assert!(!fdb.has_static(1, &mac(1)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut fdb = Fdb::default();
        for n in 0..FDB_CAPACITY {
            assert_eq!(fdb.learn(1, mac(n), P1, 0), Learned::Ok);
        }
        assert_eq!(fdb.learn(1, mac(9999), P1, 0), Learned::Full);
        // A known MAC still refreshes and moves.
        assert_eq!(fdb.learn(1, mac(3), P2, 1), Learned::Ok);
        fdb.remove_port(P2);
        assert_eq!(fdb.learn(1, mac(9999), P1, 0), Learned::Ok);
    }
}
