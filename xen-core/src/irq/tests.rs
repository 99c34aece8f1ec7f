use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::platform::{IoApic, Platform};

const D0: DomId = 0;
const D1: DomId = 1;

/// 24 GSIs as QEMU's q35 has them: ISA defaults, IRQ 0 moved to GSI 2
/// by an override (GSI 0 then absent), 16..24 PCI.
fn routing() -> Routing {
    let mut configs: Vec<Option<GsiConfig>> =
        (0..24).map(|g| Some(GsiConfig::default_for(g))).collect();
    configs[0] = None;
    let mut r = Routing::new();
    r.set_platform(&configs);
    r
}

fn unmasked(r: &Routing) -> BTreeSet<u32> {
    (0..r.nr_gsis())
        .filter(|&g| r.pin(g).is_some_and(|p| !p.masked))
        .collect()
}

#[test]
fn platform_overrides_set_the_signalling() {
    let mut p = Platform::new();
    p.add_io_apic(IoApic {
        id: 0,
        address: 0xfec0_0000,
        gsi_base: 0,
    })
    .unwrap();
    let o = |isa_irq, gsi, trigger, polarity| crate::platform::IsaOverride {
        isa_irq,
        gsi,
        trigger,
        polarity,
    };
    p.add_isa_override(o(0, 2, Trigger::Edge, Polarity::ActiveHigh))
        .unwrap();
    p.add_isa_override(o(9, 9, Trigger::Level, Polarity::ActiveHigh))
        .unwrap();
    let pci = |gsi| (gsi == 17).then_some((Trigger::Level, Polarity::ActiveHigh));
    let gsis = platform_gsis(&p, |_| 24, pci);
    assert_eq!(gsis.len(), 24);
    assert_eq!(
        gsis[17],
        Some(GsiConfig {
            trigger: Trigger::Level,
            polarity: Polarity::ActiveHigh
        }),
        "from _PRT"
    );
    assert_eq!(gsis[18], Some(GsiConfig::default_for(18)));
    assert_eq!(
        gsis[9],
        Some(GsiConfig {
            trigger: Trigger::Level,
            polarity: Polarity::ActiveHigh
        })
    );
    assert_eq!(gsis[3], Some(GsiConfig::default_for(3)));
    assert_eq!(gsis[3].unwrap().trigger, Trigger::Edge);
    assert_eq!(
        gsis[23].unwrap(),
        GsiConfig {
            trigger: Trigger::Level,
            polarity: Polarity::ActiveLow
        }
    );
    let mut two = p.clone();
    two.add_io_apic(IoApic {
        id: 1,
        address: 0xfec0_1000,
        gsi_base: 40,
    })
    .unwrap();
    let gsis = platform_gsis(&two, |_| 24, |_| None);
    assert_eq!(gsis.len(), MAX_GSIS as usize, "capped");
    assert_eq!(gsis[30], None, "between the IO-APICs");
    assert!(gsis[40].is_some());
    assert!(platform_gsis(&Platform::new(), |_| 24, |_| None).is_empty());
}

#[test]
fn first_programming_masks_every_pin() {
    let mut r = routing();
    let pins: Vec<PinState> = r.take_changed().collect();
    assert_eq!(pins.len(), 23);
    assert!(pins.iter().all(|p| p.masked));
    assert_eq!(r.take_changed().count(), 0);
    assert_eq!(r.pin(3).unwrap().config.trigger, Trigger::Edge);
    assert_eq!(r.pin(19).unwrap().config, GsiConfig::default_for(19));
    assert_eq!(r.pin(19).unwrap().config.polarity, Polarity::ActiveLow);
}

#[test]
fn a_change_after_a_pass_with_none_is_still_taken() {
    let mut r = routing();
    r.take_changed().count();
    assert_eq!(r.take_changed().count(), 0, "nothing written since");
    let pirq = r.map_gsi(D0, 19, -1).unwrap();
    r.bind(D0, pirq, 5).unwrap();
    let pins: Vec<PinState> = r.take_changed().collect();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].gsi, 19);
    assert!(!pins[0].masked);
    assert_eq!(r.take_changed().count(), 0);
}

#[test]
fn map_bind_interrupt_eoi_close() {
    let mut r = routing();
    r.take_changed().count();
    let pirq = r.map_gsi(D0, 19, -1).unwrap();
    assert_eq!(pirq, 16, "Xen's get_free_pirq starts at NR_ISA_IRQS");
    assert_eq!(
        r.map_gsi(D0, 19, -1),
        Ok(16),
        "mapping again gives the same pirq"
    );
    assert_eq!(r.map_gsi(D0, 19, 20), Err(Errno::EEXIST));
    assert!(r.pin(19).unwrap().masked, "mapped, not bound: masked");
    assert_eq!(r.status_query(D0, 16), Ok(XENIRQSTAT_NEEDS_EOI));
    r.bind(D0, 16, 5).unwrap();
    assert_eq!(r.bind(D0, 16, 6), Err(Errno::EEXIST));
    assert_eq!(r.take_changed().collect::<Vec<_>>().len(), 1);
    assert!(!r.pin(19).unwrap().masked);
    assert_eq!(r.interrupt(19), Some((D0, 5)));
    assert!(r.pin(19).unwrap().masked, "level: masked until the EOI");
    r.eoi(D0, 16).unwrap();
    assert!(!r.pin(19).unwrap().masked);
    assert_eq!(r.interrupt(19), Some((D0, 5)));
    r.unbind(D0, 16);
    assert!(r.pin(19).unwrap().masked, "nobody bound: masked");
    r.bind(D0, 16, 7).unwrap();
    assert!(!r.pin(19).unwrap().masked, "no EOI owed after a close");
}

#[test]
fn edge_gsis_are_never_masked_by_an_interrupt() {
    let mut r = routing();
    let pirq = r.map_gsi(D0, 3, 3).unwrap();
    assert_eq!(pirq, 3);
    assert_eq!(r.status_query(D0, 3), Ok(0), "edge: no EOI needed");
    r.bind(D0, 3, 1).unwrap();
    assert_eq!(r.interrupt(3), Some((D0, 1)));
    assert!(!r.pin(3).unwrap().masked);
    r.eoi(D0, 3).unwrap();
    assert!(!r.pin(3).unwrap().masked);
}

#[test]
fn errors_follow_xen() {
    let mut r = routing();
    assert_eq!(r.map_gsi(D0, 0, -1), Err(Errno::EINVAL), "no such GSI");
    assert_eq!(r.map_gsi(D0, 24, -1), Err(Errno::EINVAL));
    assert_eq!(r.map_gsi(D0, -1, -1), Err(Errno::EINVAL));
    assert_eq!(r.map_gsi(D0, 4, MAX_PIRQS as i32), Err(Errno::EINVAL));
    assert_eq!(r.bind(D0, 4, 1), Err(Errno::EINVAL), "not mapped");
    assert_eq!(r.bind(D0, MAX_PIRQS, 1), Err(Errno::EINVAL));
    assert_eq!(r.eoi(D0, 4), Err(Errno::EINVAL));
    assert_eq!(r.eoi(D0, u32::MAX), Err(Errno::EINVAL));
    assert_eq!(r.status_query(D0, 4), Err(Errno::EINVAL));
    assert_eq!(r.unmap(D0, 4), Err(Errno::EINVAL));
    assert_eq!(r.unmap(D0, -1), Err(Errno::EINVAL));
    r.map_gsi(D0, 4, 4).unwrap();
    assert_eq!(
        r.map_gsi(D1, 4, -1),
        Err(Errno::EBUSY),
        "another domain's GSI"
    );
    assert_eq!(r.eoi(D1, 4), Err(Errno::EINVAL), "another domain's pirq");
    assert_eq!(
        r.map_gsi(D0, 5, 4),
        Ok(4),
        "Xen: a pirq mapped elsewhere is left alone"
    );
    assert_eq!(r.pirq_gsi(D0, 4), Some(4));
    assert!(r.pin(5).unwrap().masked);
}

#[test]
fn unmap_of_a_bound_pirq_forces_the_unbind() {
    let mut r = routing();
    r.map_gsi(D0, 20, 20).unwrap();
    r.bind(D0, 20, 9).unwrap();
    assert_eq!(r.interrupt(20), Some((D0, 9)));
    r.unmap(D0, 20).unwrap();
    assert!(r.pin(20).unwrap().masked);
    assert_eq!(r.interrupt(20), None);
    assert_eq!(
        r.pirq_port(D0, 20),
        Some(9),
        "the port stays bound to the pirq"
    );
    r.unbind(D0, 20);
    assert_eq!(r.pirqs_of(D0).count(), 0);
    assert_eq!(r.map_gsi(D0, 20, -1), Ok(16));
}

#[test]
fn allocated_pirqs_stay_in_range() {
    let mut r = Routing::new();
    let configs: Vec<Option<GsiConfig>> = (0..MAX_GSIS)
        .map(|g| Some(GsiConfig::default_for(g)))
        .collect();
    r.set_platform(&configs);
    // Every GSI mapped with -1: pirqs from 16 up to the GSI count, then
    // from the top down; all within range.
    for g in 0..MAX_GSIS {
        r.map_gsi(D0, g as i32, -1).unwrap();
    }
    assert_eq!(r.pirqs_of(D0).count(), MAX_GSIS as usize);
    assert!(r.pirqs_of(D0).all(|p| p < MAX_PIRQS));
    assert_eq!(r.pirqs_of(D0).max(), Some(MAX_PIRQS - 1));
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Map { dom: DomId, gsi: i32, pirq: i32 },
    Unmap { dom: DomId, pirq: i32 },
    Bind { dom: DomId, pirq: u32 },
    Close { dom: DomId, pirq: u32 },
    Eoi { dom: DomId, pirq: u32 },
    Interrupt { gsi: u32 },
    Release { dom: DomId },
}

fn op() -> impl Strategy<Value = Op> {
    let dom = 0u16..2;
    let pirq = prop_oneof![Just(-1i32), 0i32..30, 250i32..260];
    prop_oneof![
        (dom.clone(), -1i32..26, pirq.clone()).prop_map(|(dom, gsi, pirq)| Op::Map {
            dom,
            gsi,
            pirq
        }),
        (dom.clone(), pirq).prop_map(|(dom, pirq)| Op::Unmap { dom, pirq }),
        (dom.clone(), 0u32..30).prop_map(|(dom, pirq)| Op::Bind { dom, pirq }),
        (dom.clone(), 0u32..30).prop_map(|(dom, pirq)| Op::Close { dom, pirq }),
        (dom.clone(), 0u32..30).prop_map(|(dom, pirq)| Op::Eoi { dom, pirq }),
        (0u32..26).prop_map(|gsi| Op::Interrupt { gsi }),
        dom.prop_map(|dom| Op::Release { dom }),
    ]
}

/// The simple model: which pirq maps which GSI, which pirqs are bound,
/// which GSIs wait for an EOI.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    mapped: BTreeMap<(DomId, u32), u32>,
    bound: BTreeMap<(DomId, u32), EvtchnPort>,
    in_flight: BTreeSet<u32>,
}

impl Model {
    fn owner(&self, gsi: u32) -> Option<(DomId, u32)> {
        self.mapped
            .iter()
            .find(|(_, g)| **g == gsi)
            .map(|(k, _)| *k)
    }

    fn pin_unmasked(&self, gsi: u32) -> bool {
        self.owner(gsi).is_some_and(|k| self.bound.contains_key(&k))
            && !self.in_flight.contains(&gsi)
    }

    /// The state of `dom`'s pirqs and of the GSIs they map.
    fn of(&self, dom: DomId) -> DomainView {
        let mapped: Vec<(u32, u32)> = self
            .mapped
            .iter()
            .filter(|(k, _)| k.0 == dom)
            .map(|(k, g)| (k.1, *g))
            .collect();
        let bound = self
            .bound
            .iter()
            .filter(|(k, _)| k.0 == dom)
            .map(|(k, p)| (k.1, *p))
            .collect();
        let flying = mapped
            .iter()
            .map(|m| m.1)
            .filter(|g| self.in_flight.contains(g))
            .collect();
        (mapped, bound, flying)
    }
}

/// A domain's pirqs in the model: (pirq, GSI) mapped, (pirq, port)
/// bound, GSIs in flight.
type DomainView = (Vec<(u32, u32)>, Vec<(u32, EvtchnPort)>, Vec<u32>);
/// A domain's pirqs in the routing: (pirq, GSI, port).
type RoutingView = Vec<(u32, Option<u32>, Option<u32>)>;

/// Every pirq of `dom` in `r`.
fn routing_view(r: &Routing, dom: DomId) -> RoutingView {
    r.pirqs_of(dom)
        .map(|p| (p, r.pirq_gsi(dom, p), r.pirq_port(dom, p)))
        .collect()
}

const LEVEL_FROM: u32 = NR_ISA_IRQS;

fn apply(r: &mut Routing, m: &mut Model, op: Op, next_port: &mut EvtchnPort) {
    match op {
        Op::Map { dom, gsi, pirq } => {
            if let Ok(p) = r.map_gsi(dom, gsi, pirq) {
                let gsi = gsi as u32;
                if !m.mapped.contains_key(&(dom, p)) {
                    assert!(m.owner(gsi).is_none(), "{gsi} given twice");
                    m.mapped.insert((dom, p), gsi);
                    m.in_flight.remove(&gsi);
                }
            }
        }
        Op::Unmap { dom, pirq } => {
            let res = r.unmap(dom, pirq);
            let key = (dom, pirq as u32);
            assert_eq!(res.is_ok(), pirq >= 0 && m.mapped.contains_key(&key));
            if let Some(g) = m.mapped.remove(&key) {
                m.in_flight.remove(&g);
            }
        }
        Op::Bind { dom, pirq } => {
            *next_port += 1;
            let res = r.bind(dom, pirq, *next_port);
            let key = (dom, pirq);
            let want = if m.bound.contains_key(&key) {
                Err(Errno::EEXIST)
            } else if !m.mapped.contains_key(&key) {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            };
            assert_eq!(res, want);
            if res.is_ok() {
                m.bound.insert(key, *next_port);
                m.in_flight.remove(&m.mapped[&key]);
            }
        }
        Op::Close { dom, pirq } => {
            if m.bound.remove(&(dom, pirq)).is_some() {
                r.unbind(dom, pirq);
                if let Some(g) = m.mapped.get(&(dom, pirq)) {
                    m.in_flight.remove(g);
                }
            }
        }
        Op::Eoi { dom, pirq } => {
            let exists = m.mapped.contains_key(&(dom, pirq)) || m.bound.contains_key(&(dom, pirq));
            assert_eq!(r.eoi(dom, pirq).is_ok(), exists);
            if let Some(g) = m.mapped.get(&(dom, pirq)) {
                m.in_flight.remove(g);
            }
        }
        Op::Interrupt { gsi } => {
            let got = r.interrupt(gsi);
            let want = m.owner(gsi).and_then(|k| Some((k.0, *m.bound.get(&k)?)));
            assert_eq!(got, want);
            if want.is_some() && gsi >= LEVEL_FROM {
                m.in_flight.insert(gsi);
            }
        }
        Op::Release { dom } => {
            r.release_domain(dom);
            let gone: Vec<u32> = m
                .mapped
                .iter()
                .filter(|(k, _)| k.0 == dom)
                .map(|(_, g)| *g)
                .collect();
            for g in gone {
                m.in_flight.remove(&g);
            }
            m.mapped.retain(|k, _| k.0 != dom);
            m.bound.retain(|k, _| k.0 != dom);
        }
    }
}

fn op_dom(op: Op) -> Option<DomId> {
    match op {
        Op::Map { dom, .. }
        | Op::Unmap { dom, .. }
        | Op::Bind { dom, .. }
        | Op::Close { dom, .. }
        | Op::Eoi { dom, .. }
        | Op::Release { dom } => Some(dom),
        Op::Interrupt { .. } => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sequence of operations: the routing agrees with the model,
    /// every pin is unmasked exactly while its GSI is mapped, bound and
    /// owes no EOI (so none is left masked by a close or an unmap), and
    /// an operation of one domain changes nothing of the other's.
    #[test]
    fn routing_follows_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut r = routing();
        let mut m = Model::default();
        let mut port = 0;
        for op in ops {
            let other = op_dom(op).map(|d| 1 - d);
            let before = other.map(|d| m.of(d));
            let before_real = other.map(|d| routing_view(&r, d));
            apply(&mut r, &mut m, op, &mut port);
            if let Some(d) = other {
                prop_assert_eq!(before, Some(m.of(d)));
                let after = routing_view(&r, d);
                prop_assert_eq!(before_real, Some(after));
            }
            for gsi in 0..r.nr_gsis() {
                if let Some(pin) = r.pin(gsi) {
                    prop_assert_eq!(!pin.masked, m.pin_unmasked(gsi), "GSI {}", gsi);
                }
            }
            for (&(d, p), &g) in &m.mapped {
                prop_assert_eq!(r.pirq_gsi(d, p), Some(g));
            }
            for (&(d, p), &port) in &m.bound {
                prop_assert_eq!(r.pirq_port(d, p), Some(port));
            }
            let _ = r.take_changed().count();
        }
        for dom in [D0, D1] {
            r.release_domain(dom);
        }
        prop_assert!(unmasked(&r).is_empty());
        prop_assert_eq!(r.pirqs_of(D0).count() + r.pirqs_of(D1).count(), 0);
    }
}
