//! Property test: random grant, end-access, map, unmap, copy, create and
//! destroy operations from several domains. After every step: each
//! mapping is in its holder's p2m and counted by its granter's pins (or
//! is an orphan of a destroyed granter), no mapping was made without a
//! grant to the mapper, and every frame is accounted for; after
//! destroying everything the pool is whole again.

use std::collections::{BTreeMap, BTreeSet};

use abi::xen::domid::DOMID_SELF;
use proptest::prelude::*;

use super::*;
use crate::grant::copy::{copy, CopySide};
use crate::grant::maptrack::Source;
use crate::paging::npt::P2mKind;

const FRAMES: u64 = 768;
const REFS: u32 = 12;
const SLOTS: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Grant {
        granter: usize,
        gref: u32,
        grantee: usize,
        frame: u64,
        readonly: bool,
    },
    EndAccess {
        granter: usize,
        gref: u32,
    },
    Map {
        mapper: usize,
        granter: usize,
        gref: u32,
        slot: u64,
        readonly: bool,
    },
    /// The grantee of an existing entry maps it (or copies with it).
    UseGrant {
        pick: usize,
        slot: u64,
        readonly: bool,
        copy: bool,
    },
    Unmap {
        mapper: usize,
        pick: usize,
    },
    Copy {
        caller: usize,
        granter: usize,
        gref: u32,
        into_grant: bool,
    },
    Destroy {
        victim: usize,
    },
    Create,
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0usize..8;
    prop_oneof![
        4 => (d.clone(), 0..REFS, d.clone(), 0..RAM + 2, any::<bool>()).prop_map(
            |(granter, gref, grantee, frame, readonly)| Op::Grant { granter, gref, grantee, frame, readonly }
        ),
        1 => (d.clone(), 0..REFS).prop_map(|(granter, gref)| Op::EndAccess { granter, gref }),
        5 => (d.clone(), d.clone(), 0..REFS + 1, 0..SLOTS, any::<bool>()).prop_map(
            |(mapper, granter, gref, slot, readonly)| Op::Map { mapper, granter, gref, slot, readonly }
        ),
        6 => (any::<usize>(), 0..SLOTS, any::<bool>(), any::<bool>()).prop_map(
            |(pick, slot, readonly, copy)| Op::UseGrant { pick, slot, readonly, copy }
        ),
        4 => (d.clone(), any::<usize>()).prop_map(|(mapper, pick)| Op::Unmap { mapper, pick }),
        2 => (d.clone(), d.clone(), 0..REFS, any::<bool>()).prop_map(
            |(caller, granter, gref, into_grant)| Op::Copy { caller, granter, gref, into_grant }
        ),
        1 => d.clone().prop_map(|victim| Op::Destroy { victim }),
        1 => Just(Op::Create),
    ]
}

struct Model {
    w: World,
    live: Vec<DomId>,
    /// What each granter last wrote in each entry.
    entries: BTreeMap<(DomId, GrantRef), GrantEntryV1>,
    created: usize,
}

impl Model {
    fn pick(&self, i: usize) -> DomId {
        self.live[i % self.live.len()]
    }

    /// Whether `holder` maps (`granter`, `gref`) now (writable if `rw`).
    fn holds(&self, holder: DomId, granter: DomId, gref: GrantRef, rw: bool) -> bool {
        self.w.t.get(holder).is_some_and(|d| {
            d.grant().maptrack().iter().any(|(_, m)| {
                m.source
                    == Source::Grant {
                        domid: granter,
                        gref,
                    }
                    && (!rw || !m.readonly)
            })
        })
    }

    /// Whether the entry as written grants `to` (writable if `rw`).
    fn grants(&self, granter: DomId, gref: GrantRef, to: DomId, rw: bool) -> bool {
        self.entries.get(&(granter, gref)).is_some_and(|e| {
            e.flags & 3 == GTF_PERMIT_ACCESS
                && e.domid == to
                && (!rw || e.flags & GTF_READONLY == 0)
        })
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Grant {
                granter,
                gref,
                grantee,
                frame,
                readonly,
            } => {
                let (g, to) = (self.pick(granter), self.pick(grantee));
                let e = grant(to, frame, readonly);
                self.w.set_entry(g, gref, e);
                self.entries.insert((g, gref), e);
            }
            Op::EndAccess { granter, gref } => {
                let g = self.pick(granter);
                self.w.set_entry(g, gref, GrantEntryV1::default());
                self.entries.remove(&(g, gref));
            }
            Op::UseGrant {
                pick,
                slot,
                readonly,
                copy,
            } if !self.entries.is_empty() => {
                let (&(g, gref), e) = self.entries.iter().nth(pick % self.entries.len()).unwrap();
                let mapper = self.live.iter().position(|d| *d == e.domid).unwrap_or(pick);
                let granter = self.live.iter().position(|d| *d == g).unwrap();
                let op = if copy {
                    Op::Copy {
                        caller: mapper,
                        granter,
                        gref,
                        into_grant: !readonly,
                    }
                } else {
                    Op::Map {
                        mapper,
                        granter,
                        gref,
                        slot,
                        readonly,
                    }
                };
                return self.step(op);
            }
            Op::Map {
                mapper,
                granter,
                gref,
                slot,
                readonly,
            } => {
                let (m, g) = (self.pick(mapper), self.pick(granter));
                let held = self.holds(m, g, gref, false);
                let granted = self.grants(g, gref, m, !readonly);
                if let Ok(_h) = self.w.map(m, g, gref, MAP_GFN + slot, readonly) {
                    prop_assert!(
                        granted || held,
                        "d{m} mapped d{g} ref {gref} without a grant"
                    );
                }
            }
            Op::Unmap { mapper, pick } => {
                let m = self.pick(mapper);
                let maps: Vec<_> = self
                    .w
                    .t
                    .get(m)
                    .unwrap()
                    .grant()
                    .maptrack()
                    .iter()
                    .map(|(h, x)| (h, *x))
                    .collect();
                if let Some((h, x)) = maps.get(pick % maps.len().max(1)) {
                    prop_assert_eq!(self.w.unmap(m, *h, x.gfn.0), Ok(()));
                } else {
                    prop_assert_eq!(
                        self.w.unmap(m, pick as u32, MAP_GFN),
                        Err(GrantError::BadHandle)
                    );
                }
            }
            Op::Copy {
                caller,
                granter,
                gref,
                into_grant,
            } => {
                let (c, g) = (self.pick(caller), self.pick(granter));
                let remote = CopySide {
                    u: gref.into(),
                    domid: g,
                    offset: 0,
                    is_gref: true,
                };
                let local = CopySide {
                    u: 1,
                    domid: DOMID_SELF,
                    offset: 0,
                    is_gref: false,
                };
                let (src, dst) = if into_grant {
                    (local, remote)
                } else {
                    (remote, local)
                };
                let allowed = self.grants(g, gref, c, into_grant) || self.holds(c, g, gref, false);
                if copy(&mut self.w.t, &mut self.w.mem, c, &src, &dst, 64).is_ok() {
                    prop_assert!(allowed, "d{c} copied with d{g} ref {gref} without a grant");
                }
            }
            Op::Destroy { victim } if self.live.len() > 1 => {
                let v = self.pick(victim);
                self.w.destroy(v);
                self.live.retain(|d| *d != v);
                self.entries.retain(|(g, _), _| *g != v);
            }
            Op::Create if self.live.len() < 5 => {
                self.created += 1;
                let name = format!("new{}", self.created);
                let cfg = DomainConfig {
                    name: &name,
                    max_pages: 64,
                    vcpus: 1,
                };
                let id = self
                    .w
                    .t
                    .create_domu(&cfg, &mut self.w.pool, &mut self.w.mem)
                    .unwrap();
                let d = self.w.t.get_mut(id).unwrap();
                d.populate(&mut self.w.pool, &mut self.w.mem, Gfn(0), RAM)
                    .unwrap();
                for f in 0..GRANT_TABLE_FRAMES as u64 {
                    map_table_frame(d, &mut self.w.pool, &mut self.w.mem, f, Gfn(TABLE_GFN + f))
                        .unwrap();
                }
                self.live.push(id);
            }
            _ => {}
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let t = &self.w.t;
        let mut orphans = BTreeSet::new();
        for d in t.iter() {
            for (_, m) in d.grant().maptrack().iter() {
                let e = d.p2m().translate(&self.w.mem, m.gfn);
                prop_assert!(
                    e.is_some_and(|e| e.kind == P2mKind::Shared && e.mfn == m.mfn),
                    "mapping not in the p2m"
                );
                match m.source {
                    Source::Grant { domid, gref } => {
                        let g = t.get(domid);
                        prop_assert!(g.is_some(), "mapping of a destroyed domain's grant");
                        let a = g.unwrap().grant().active(gref);
                        prop_assert!(a.is_pinned() && a.domid == d.domid() && a.mfn() == m.mfn);
                    }
                    Source::Orphan => {
                        orphans.insert(m.mfn);
                    }
                }
            }
            // Pins equal the mappings that hold them.
            for gref in 0..REFS + 1 {
                let a = d.grant().active(gref);
                let count = |rw: bool| {
                    t.iter()
                        .flat_map(|h| h.grant().maptrack().iter().map(|(_, m)| *m))
                        .filter(|m| {
                            m.source
                                == Source::Grant {
                                    domid: d.domid(),
                                    gref,
                                }
                                && m.readonly != rw
                        })
                        .count()
                };
                prop_assert_eq!(
                    (usize::from(a.readers), usize::from(a.writers)),
                    (count(false), count(true))
                );
            }
        }
        // Every frame is free, or owned, or a table/shared-info/NPT frame
        // of a live domain, or held by orphan mappings.
        let used: u64 = t
            .iter()
            .map(|d| d.tot_pages() + d.p2m().table_frames() + 1 + u64::from(d.grant().nr_frames()))
            .sum();
        prop_assert_eq!(FRAMES - self.w.free(), used + orphans.len() as u64);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn grants_never_leak_or_reach_ungranted_memory(ops in prop::collection::vec(op(), 1..120)) {
        let (w, live) = World::new(3, FRAMES);
        let mut model = Model { w, live, entries: BTreeMap::new(), created: 0 };
        for op in ops {
            model.step(op)?;
        }
        for id in model.live.clone() {
            model.w.destroy(id);
            model.check()?;
        }
        prop_assert_eq!(model.w.free(), FRAMES);
    }
}
