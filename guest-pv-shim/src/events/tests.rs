use super::*;
use core::mem::{offset_of, size_of};
use std::sync::atomic::AtomicUsize;

use abi::xen::shared_info::{SharedInfo, VcpuInfo};
use proptest::prelude::*;

/// A simulated shared-info event area and vCPU 0's vcpu_info.
struct Sim {
    bitmaps: EventBitmaps,
    vcpu: VcpuEvents,
}

impl Sim {
    fn new() -> Self {
        Sim {
            bitmaps: EventBitmaps {
                pending: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
                mask: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            },
            vcpu: VcpuEvents {
                upcall_pending: AtomicU8::new(0),
                upcall_mask: AtomicU8::new(0),
                _pad: [0; 6],
                pending_sel: AtomicU64::new(0),
            },
        }
    }

    /// Xen's `evtchn_2l_set_pending`: true if the port became pending
    /// (false: it already was, and the event merges with that one).
    fn set_pending(&self, port: u32) -> bool {
        let (word, bit) = port_bit(port).unwrap();
        if self.bitmaps.pending[word].fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return false;
        }
        if self.bitmaps.mask[word].load(Ordering::SeqCst) & bit == 0 {
            self.raise(word);
        }
        true
    }

    /// Xen's `evtchn_2l_unmask`: clear the mask, re-raise if pending.
    fn unmask(&self, port: u32) {
        let (word, bit) = port_bit(port).unwrap();
        self.bitmaps.mask[word].fetch_and(!bit, Ordering::SeqCst);
        if self.bitmaps.pending[word].load(Ordering::SeqCst) & bit != 0 {
            self.raise(word);
        }
    }

    fn raise(&self, word: usize) {
        if self.vcpu.pending_sel.fetch_or(1 << word, Ordering::SeqCst) & (1 << word) == 0 {
            self.vcpu.upcall_pending.store(1, Ordering::SeqCst);
        }
    }

    fn upcall(&self) -> Vec<u32> {
        let mut got = Vec::new();
        scan(&self.bitmaps, &self.vcpu, |p| got.push(p));
        got
    }
}

#[test]
fn layouts_match_xen_fields() {
    assert_eq!(size_of::<EventBitmaps>(), 1024);
    assert_eq!(
        offset_of!(EventBitmaps, mask),
        offset_of!(SharedInfo, evtchn_mask) - offset_of!(SharedInfo, evtchn_pending)
    );
    assert_eq!(size_of::<VcpuEvents>(), 16);
    assert_eq!(
        offset_of!(VcpuEvents, upcall_pending),
        offset_of!(VcpuInfo, evtchn_upcall_pending)
    );
    assert_eq!(
        offset_of!(VcpuEvents, upcall_mask),
        offset_of!(VcpuInfo, evtchn_upcall_mask)
    );
    assert_eq!(
        offset_of!(VcpuEvents, pending_sel),
        offset_of!(VcpuInfo, evtchn_pending_sel)
    );
}

#[test]
fn port_bits() {
    assert_eq!(port_bit(0), Ok((0, 1)));
    assert_eq!(port_bit(65), Ok((1, 2)));
    assert_eq!(port_bit(4095), Ok((63, 1 << 63)));
    assert_eq!(port_bit(4096), Err(BadPort(4096)));
}

#[test]
fn scan_handles_each_unmasked_pending_port_once_in_order() {
    let sim = Sim::new();
    for p in [3, 200, 64, 4095] {
        assert!(sim.set_pending(p));
    }
    assert!(!sim.set_pending(3), "already pending merges");
    assert_eq!(sim.upcall(), vec![3, 64, 200, 4095]);
    assert_eq!(sim.vcpu.upcall_pending.load(Ordering::SeqCst), 0);
    assert_eq!(sim.vcpu.pending_sel.load(Ordering::SeqCst), 0);
    assert!(sim.upcall().is_empty(), "nothing twice");
}

#[test]
fn masked_ports_stay_pending_until_unmasked() {
    let sim = Sim::new();
    sim.bitmaps.mask(7).unwrap();
    sim.set_pending(7);
    sim.set_pending(8);
    assert_eq!(sim.upcall(), vec![8]);
    assert!(sim.bitmaps.is_pending(7).unwrap());
    sim.unmask(7);
    assert_eq!(sim.upcall(), vec![7]);
}

#[test]
fn events_raised_by_a_handler_are_seen_in_the_same_upcall() {
    let sim = Sim::new();
    sim.set_pending(1);
    let mut got = Vec::new();
    scan(&sim.bitmaps, &sim.vcpu, |p| {
        got.push(p);
        if p == 1 && got.len() == 1 {
            sim.set_pending(1000);
            sim.set_pending(1); // again: cleared before the handler ran
        }
        if p == 1000 {
            sim.set_pending(2);
        }
    });
    // 1, then 1 again (same word, rescanned), then 1000's word, then 2 on
    // a second pass (its selector bit was set after the exchange).
    assert_eq!(got[..2], [1, 1]);
    assert!(got.contains(&1000) && got.contains(&2));
}

#[test]
fn scan_without_upcall_pending_does_nothing() {
    let sim = Sim::new();
    sim.bitmaps.pending[0].store(1 << 5, Ordering::SeqCst);
    assert!(sim.upcall().is_empty());
}

static CALLS: AtomicUsize = AtomicUsize::new(0);
fn count(_: u32) {
    CALLS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn dispatcher_calls_handlers_and_records_fired_ports() {
    let d = Dispatcher::new();
    d.set_handler(9, Some(count)).unwrap();
    d.dispatch(9);
    d.dispatch(10);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(d.take_fired(&[1, 10, 9]), Some(10));
    assert_eq!(d.take_fired(&[1, 10, 9]), Some(9));
    assert_eq!(d.take_fired(&[1, 10, 9]), None);
    d.set_handler(9, None).unwrap();
    d.dispatch(9);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    d.dispatch(5000); // outside the ABI: ignored
}

#[test]
fn dispatcher_table_is_bounded() {
    let d = Dispatcher::new();
    for p in 0..abi::convert::u32_const::<MAX_PORT_HANDLERS>() {
        d.set_handler(p, Some(count)).unwrap();
    }
    assert_eq!(d.set_handler(999, Some(count)), Err(TableFull));
    d.set_handler(3, Some(count)).unwrap(); // replacing is fine
    d.set_handler(3, None).unwrap();
    d.set_handler(999, Some(count)).unwrap(); // the freed slot
}

#[derive(Clone, Debug)]
enum Op {
    Signal(u32),
    Mask(u32),
    Unmask(u32),
    Upcall,
}

fn op() -> impl Strategy<Value = Op> {
    // Few ports in a few words, so that collisions happen.
    let port = prop_oneof![0u32..8, 60u32..70, 4090u32..4096];
    prop_oneof![
        4 => port.clone().prop_map(Op::Signal),
        1 => port.clone().prop_map(Op::Mask),
        1 => port.prop_map(Op::Unmask),
        3 => Just(Op::Upcall),
    ]
}

proptest! {
    /// Whatever the interleaving of signals, masks and upcalls: a port is
    /// handled only while unmasked, never more often than it became
    /// pending, and after unmasking everything and one last upcall every
    /// event has been handled (none lost).
    #[test]
    fn no_event_lost_or_duplicated(ops in proptest::collection::vec(op(), 0..200)) {
        let sim = Sim::new();
        let mut raised = std::collections::HashMap::<u32, usize>::new();
        let mut handled = std::collections::HashMap::<u32, usize>::new();
        let mut check = |got: Vec<u32>, sim: &Sim| {
            for p in got {
                *handled.entry(p).or_default() += 1;
                prop_assert!(!sim.bitmaps.is_masked(p).unwrap());
            }
            Ok(())
        };
        for op in ops {
            match op {
                Op::Signal(p) => {
                    if sim.set_pending(p) {
                        *raised.entry(p).or_default() += 1;
                    }
                }
                Op::Mask(p) => sim.bitmaps.mask(p).unwrap(),
                Op::Unmask(p) => sim.unmask(p),
                Op::Upcall => check(sim.upcall(), &sim)?,
            }
        }
        for p in 0..EVTCHN_2L_NR_CHANNELS {
            if sim.bitmaps.is_masked(p).unwrap() {
                sim.unmask(p);
            }
        }
        check(sim.upcall(), &sim)?;
        prop_assert_eq!(raised, handled);
    }
}

#[test]
fn take_any_reports_a_dispatch_once() {
    let d = Dispatcher::new();
    assert!(!d.take_any());
    d.dispatch(5);
    assert!(d.take_any());
    assert!(!d.take_any(), "taken");
    assert_eq!(d.take_fired(&[5]), Some(5), "the port's own mark stays");
}
