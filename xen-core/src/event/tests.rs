//! The port state machine and 2-level delivery over simulated memory:
//! dom0 and domUs with two vCPUs each, events read back from their
//! shared-info frames as a guest would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::vec::Vec;

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnBinding, NR_VIRQS, VIRQ_CONSOLE, VIRQ_DOM_EXC, VIRQ_TIMER};
use abi::xen::hvm::{CallbackVia, HVM_PARAM_CALLBACK_IRQ};
use proptest::prelude::*;

use super::*;
use crate::domain::vcpu::{VcpuEntryState, VcpuRunState};
use crate::domain::xen_state::VcpuInfoArea;
use crate::domain::DomainConfig;
use crate::guest_mem::GuestPhys;
use crate::mm::shared_frame::{AtomicPage, SharedFrame};
use crate::mm::{FramePool, Gfn};
use crate::paging::sim::{machine, SimPhys, SimPool, StopOnDrop, WithShared};

const FRAMES: u64 = 512;
const VCPUS: u32 = 2;
const PENDING: usize = 2048;
const MASK: usize = 2560;

struct World {
    t: DomainTable,
    pool: SimPool,
    mem: SimPhys,
}

impl World {
    /// dom0 and `domus` domUs, running, vCPU 0 up.
    fn new(domus: usize) -> Self {
        let (pool, mem) = machine(FRAMES);
        let mut w = World {
            t: DomainTable::new(),
            pool,
            mem,
        };
        w.create("dom0");
        for i in 0..domus {
            w.create(&format!("u{i}"));
        }
        w
    }

    fn create(&mut self, name: &str) -> DomId {
        let cfg = DomainConfig {
            name,
            max_pages: 8,
            vcpus: VCPUS,
        };
        let id = if name == "dom0" {
            self.t.create_dom0(&cfg, &mut self.pool, &mut self.mem)
        } else {
            self.t.create_domu(&cfg, &mut self.pool, &mut self.mem)
        }
        .unwrap();
        let d = self.t.get_mut(id).unwrap();
        d.vcpu_mut(0).unwrap().start(VcpuEntryState::default());
        d.unpause().unwrap();
        id
    }

    fn destroy(&mut self, id: DomId) {
        self.t.kill(id).unwrap();
        self.t.destroy(id, &mut self.pool, &mut self.mem).unwrap();
    }

    fn d(&mut self, id: DomId) -> &mut Domain {
        self.t.get_mut(id).unwrap()
    }

    fn unmask(&mut self, id: DomId, port: u32) -> Result<(), Errno> {
        ops::unmask(self.t.get_mut(id).unwrap(), &mut self.mem, port)
    }

    fn raise(&mut self, id: DomId, virq: u32, vcpu: u32) -> bool {
        raise_virq(self.t.get_mut(id).unwrap(), &mut self.mem, virq, vcpu)
    }

    fn entry(&mut self, id: DomId, vcpu: u32) -> Option<u8> {
        upcall_for_entry(self.t.get_mut(id).unwrap(), &mut self.mem, vcpu)
    }

    fn shared(&self, id: DomId) -> &[u8; 4096] {
        self.mem.frame(self.t.get(id).unwrap().shared_info_mfn())
    }

    fn word(&self, id: DomId, at: usize) -> u64 {
        u64::from_le_bytes(self.shared(id)[at..at + 8].try_into().unwrap())
    }

    fn set_word(&mut self, id: DomId, at: usize, v: u64) {
        let mfn = self.t.get(id).unwrap().shared_info_mfn();
        self.mem.frame_mut(mfn)[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn pending(&self, id: DomId, port: u32) -> bool {
        self.word(id, PENDING + 8 * (port as usize / 64)) & (1 << (port % 64)) != 0
    }

    /// The guest masks (or unmasks, by hand) `port`.
    fn set_mask(&mut self, id: DomId, port: u32, on: bool) {
        let at = MASK + 8 * (port as usize / 64);
        let w = self.word(id, at);
        let bit = 1 << (port % 64);
        self.set_word(id, at, if on { w | bit } else { w & !bit });
    }

    /// (evtchn_upcall_pending, evtchn_pending_sel) of `vcpu` in shared info.
    fn upcall(&self, id: DomId, vcpu: u32) -> (bool, u64) {
        let at = 64 * vcpu as usize;
        (self.shared(id)[at] != 0, self.word(id, at + 8))
    }

    /// The start of the guest's upcall handler: clears upcall_pending and
    /// takes the selector, leaving the ports pending.
    fn take_upcall(&mut self, id: DomId, vcpu: u32) {
        let at = 64 * vcpu as usize;
        let mfn = self.t.get(id).unwrap().shared_info_mfn();
        self.mem.frame_mut(mfn)[at] = 0;
        self.set_word(id, at + 8, 0);
    }

    /// The guest's whole upcall handler: takes the upcall and every
    /// pending, unmasked port.
    fn ack(&mut self, id: DomId, vcpu: u32) {
        self.take_upcall(id, vcpu);
        for w in 0..16 {
            let p = self.word(id, PENDING + 8 * w);
            let m = self.word(id, MASK + 8 * w);
            self.set_word(id, PENDING + 8 * w, p & m);
        }
    }

    fn binding(&self, id: DomId, port: u32) -> Option<EvtchnBinding> {
        self.t
            .get(id)?
            .events()
            .ports()
            .get(port)
            .map(|c| c.binding)
    }

    /// An interdomain channel between `a` and `b`: (a's port, b's port).
    fn link(&mut self, a: DomId, b: DomId) -> (u32, u32) {
        let pb = ops::alloc_unbound(&mut self.t, b, a).unwrap();
        let pa = ops::bind_interdomain(&mut self.t, &mut self.mem, a, b, pb).unwrap();
        (pa, pb)
    }
}

#[test]
fn interdomain_channel_delivers_both_ways() {
    let mut w = World::new(2);
    let pb = ops::alloc_unbound(&mut w.t, 2, 1).unwrap();
    assert_eq!(pb, 1, "port 0 is reserved");
    assert_eq!(w.binding(2, pb), Some(EvtchnBinding::Unbound { dom: 1 }));
    let pa = ops::bind_interdomain(&mut w.t, &mut w.mem, 1, 2, pb).unwrap();
    assert_eq!(
        w.binding(1, pa),
        Some(EvtchnBinding::Interdomain { dom: 2, port: pb })
    );
    assert_eq!(
        w.binding(2, pb),
        Some(EvtchnBinding::Interdomain { dom: 1, port: pa })
    );
    // Xen marks the new local end pending: sends to the unbound end were lost.
    assert!(w.pending(1, pa));
    assert_eq!(w.upcall(1, 0), (true, 1));
    w.ack(1, 0);
    ops::send(&mut w.t, &mut w.mem, 1, pa).unwrap();
    assert!(w.pending(2, pb));
    assert_eq!(w.upcall(2, 0), (true, 1));
    assert!(!w.pending(1, pa));
    ops::send(&mut w.t, &mut w.mem, 2, pb).unwrap();
    assert!(w.pending(1, pa));
    let status = ops::status(&w.t, 2, pb).unwrap();
    assert_eq!(status.notify_vcpu, 0);
}

#[test]
fn bind_interdomain_checks_the_offer() {
    let mut w = World::new(3);
    let offered_to_3 = ops::alloc_unbound(&mut w.t, 2, 3).unwrap();
    let bind = |w: &mut World, local, remote, port| {
        ops::bind_interdomain(&mut w.t, &mut w.mem, local, remote, port)
    };
    assert_eq!(bind(&mut w, 1, 2, offered_to_3), Err(Errno::EINVAL));
    assert_eq!(bind(&mut w, 1, 9, offered_to_3), Err(Errno::ESRCH));
    assert_eq!(bind(&mut w, 1, 2, 0), Err(Errno::EINVAL));
    assert_eq!(bind(&mut w, 1, 2, 5), Err(Errno::EINVAL), "free port");
    assert_eq!(bind(&mut w, 1, 2, MAX_EVTCHN_PORTS), Err(Errno::EINVAL));
    assert_eq!(bind(&mut w, 1, 2, u32::MAX), Err(Errno::EINVAL));
    let p = bind(&mut w, 3, 2, offered_to_3).unwrap();
    assert_eq!(
        bind(&mut w, 3, 2, offered_to_3),
        Err(Errno::EINVAL),
        "bound already"
    );
    // Failed binds left no port behind in domain 1.
    assert!(w
        .d(1)
        .events()
        .ports()
        .iter()
        .all(|(_, c)| c.binding == EvtchnBinding::Closed));
    // A domain may connect to itself.
    let mine = ops::alloc_unbound(&mut w.t, 3, 3).unwrap();
    let other = bind(&mut w, 3, 3, mine).unwrap();
    assert_ne!(other, p);
    ops::send(&mut w.t, &mut w.mem, 3, other).unwrap();
    assert!(w.pending(3, mine));
}

#[test]
fn send_follows_the_binding() {
    let mut w = World::new(1);
    let unbound = ops::alloc_unbound(&mut w.t, 1, 0).unwrap();
    assert_eq!(ops::send(&mut w.t, &mut w.mem, 1, unbound), Ok(()));
    assert!(!w.pending(1, unbound) && !w.pending(0, unbound));
    let ipi = ops::bind_ipi(w.d(1), 1).unwrap();
    ops::send(&mut w.t, &mut w.mem, 1, ipi).unwrap();
    assert!(w.pending(1, ipi));
    assert_eq!(w.upcall(1, 1), (true, 1), "IPIs go to the bound vCPU");
    assert_eq!(w.upcall(1, 0), (false, 0));
    let virq = ops::bind_virq(w.d(1), VIRQ_TIMER, 0).unwrap();
    for bad in [virq, 0, 40, MAX_EVTCHN_PORTS, u32::MAX] {
        assert_eq!(
            ops::send(&mut w.t, &mut w.mem, 1, bad),
            Err(Errno::EINVAL),
            "port {bad}"
        );
    }
}

#[test]
fn close_leaves_the_peer_unbound_toward_the_closer() {
    let mut w = World::new(2);
    let (p1, p2) = w.link(1, 2);
    ops::close(&mut w.t, &mut w.mem, 1, p1).unwrap();
    assert_eq!(w.binding(1, p1), Some(EvtchnBinding::Closed));
    assert!(!w.pending(1, p1), "a freed port's pending bit is cleared");
    assert_eq!(w.binding(2, p2), Some(EvtchnBinding::Unbound { dom: 1 }));
    assert_eq!(ops::close(&mut w.t, &mut w.mem, 1, p1), Err(Errno::EINVAL));
    assert_eq!(ops::close(&mut w.t, &mut w.mem, 1, 0), Err(Errno::EINVAL));
    assert_eq!(
        ops::close(&mut w.t, &mut w.mem, 1, 9999),
        Err(Errno::EINVAL)
    );
    // The closer may bind again to what it left.
    let again = ops::bind_interdomain(&mut w.t, &mut w.mem, 1, 2, p2).unwrap();
    assert_eq!(again, p1, "the lowest free port");
    // Closing a VIRQ port frees the VIRQ for binding again.
    let v = ops::bind_virq(w.d(2), VIRQ_TIMER, 1).unwrap();
    ops::close(&mut w.t, &mut w.mem, 2, v).unwrap();
    assert_eq!(w.d(2).events().virq_port(VIRQ_TIMER, 1), None);
    assert!(ops::bind_virq(w.d(2), VIRQ_TIMER, 1).is_ok());
}

#[test]
fn virq_binding_rules() {
    let mut w = World::new(1);
    let d = w.d(1);
    assert_eq!(ops::bind_virq(d, NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(ops::bind_virq(d, u32::MAX, 0), Err(Errno::EINVAL));
    assert_eq!(
        ops::bind_virq(d, VIRQ_DOM_EXC, 1),
        Err(Errno::EINVAL),
        "global: vCPU 0 only"
    );
    assert_eq!(ops::bind_virq(d, VIRQ_TIMER, VCPUS), Err(Errno::ENOENT));
    assert_eq!(ops::bind_virq(d, VIRQ_TIMER, u32::MAX), Err(Errno::ENOENT));
    let t0 = ops::bind_virq(d, VIRQ_TIMER, 0).unwrap();
    let t1 = ops::bind_virq(d, VIRQ_TIMER, 1).unwrap();
    assert_ne!(t0, t1);
    assert_eq!(ops::bind_virq(d, VIRQ_TIMER, 1), Err(Errno::EEXIST));
    assert_eq!(ops::bind_ipi(d, VCPUS), Err(Errno::ENOENT));
    let status = ops::status(&w.t, 1, t1).unwrap();
    assert_eq!(
        (status.binding, status.notify_vcpu),
        (EvtchnBinding::Virq(VIRQ_TIMER), 1)
    );
    assert!(w.raise(1, VIRQ_TIMER, 1));
    assert!(w.pending(1, t1) && !w.pending(1, t0));
    assert_eq!(w.upcall(1, 1), (true, 1));
    assert!(!w.raise(1, VIRQ_CONSOLE, 0), "not bound");
}

#[test]
fn global_virqs_go_to_dom0() {
    let mut w = World::new(1);
    assert!(
        !raise_global_virq(&mut w.t, &mut w.mem, VIRQ_DOM_EXC),
        "not bound yet"
    );
    let domu_port = ops::bind_virq(w.d(1), VIRQ_DOM_EXC, 0).unwrap();
    let port = ops::bind_virq(w.d(0), VIRQ_DOM_EXC, 0).unwrap();
    assert!(raise_global_virq(&mut w.t, &mut w.mem, VIRQ_DOM_EXC));
    assert!(w.pending(0, port));
    assert!(!w.pending(1, domu_port));
    assert!(
        !raise_global_virq(&mut w.t, &mut w.mem, VIRQ_TIMER),
        "per-vCPU"
    );
}

#[test]
fn bind_vcpu_checks_in_xens_order() {
    let mut w = World::new(1);
    let d = w.d(1);
    let ipi = ops::bind_ipi(d, 0).unwrap();
    let timer = ops::bind_virq(d, VIRQ_TIMER, 0).unwrap();
    // No such vCPU comes first (Xen's `domain_vcpu`), whatever the port.
    for vcpu in [VCPUS, 31, 32, u32::MAX] {
        for port in [ipi, 1000, u32::MAX] {
            assert_eq!(ops::bind_vcpu(d, port, vcpu), Err(Errno::ENOENT));
        }
    }
    // Then the port must be valid ...
    for port in [64, MAX_EVTCHN_PORTS, u32::MAX] {
        assert_eq!(ops::bind_vcpu(d, port, 1), Err(Errno::EINVAL), "{port}");
    }
    // ... and in a state that may move: not free, reserved, an IPI or a
    // per-vCPU VIRQ.
    for port in [0, 5, 63, ipi, timer] {
        assert_eq!(ops::bind_vcpu(d, port, 1), Err(Errno::EINVAL), "{port}");
        assert_eq!(d.events().ports().get(port).unwrap().notify_vcpu, 0);
    }
    let unbound = ops::alloc_unbound(&mut w.t, 1, 0).unwrap();
    let (p0, p1) = w.link(0, 1);
    let dom_exc = ops::bind_virq(w.d(1), VIRQ_DOM_EXC, 0).unwrap();
    for port in [unbound, p1, dom_exc] {
        assert_eq!(ops::bind_vcpu(w.d(1), port, 1), Ok(()), "{port}");
        assert_eq!(ops::status(&w.t, 1, port).unwrap().notify_vcpu, 1);
        assert_eq!(ops::bind_vcpu(w.d(1), port, 1), Ok(()), "again");
    }
    assert_eq!(ops::status(&w.t, 0, p0).unwrap().notify_vcpu, 0, "peer");
    // A bound global VIRQ stays bound once, wherever its port notifies.
    assert_eq!(ops::bind_virq(w.d(1), VIRQ_DOM_EXC, 0), Err(Errno::EEXIST));
}

#[test]
fn a_rebound_port_signals_its_new_vcpu() {
    let mut w = World::new(2);
    let (p1, p2) = w.link(1, 2);
    w.ack(2, 0);
    ops::bind_vcpu(w.d(2), p2, 1).unwrap();
    w.d(2).vcpu_mut(1).unwrap().start(VcpuEntryState::default());
    w.d(2).vcpu_mut(1).unwrap().block();
    ops::send(&mut w.t, &mut w.mem, 1, p1).unwrap();
    assert_eq!(w.upcall(2, 0), (false, 0), "not the old vCPU");
    assert_eq!(w.upcall(2, 1), (true, 1 << (p2 / 64)));
    assert_eq!(
        w.d(2).vcpu(1).unwrap().run_state(),
        VcpuRunState::Runnable,
        "the new vCPU is woken"
    );
    w.ack(2, 1);
    // A global VIRQ moved to vCPU 1 is still raised, there.
    let exc = ops::bind_virq(w.d(0), VIRQ_DOM_EXC, 0).unwrap();
    ops::bind_vcpu(w.d(0), exc, 1).unwrap();
    assert!(raise_global_virq(&mut w.t, &mut w.mem, VIRQ_DOM_EXC));
    assert_eq!(w.upcall(0, 0), (false, 0));
    assert_eq!(w.upcall(0, 1), (true, 1 << (exc / 64)));
}

#[test]
fn a_pending_event_stays_where_it_was_signalled_until_unmasked() {
    let mut w = World::new(2);
    let (p1, p2) = w.link(1, 2);
    w.ack(2, 0);
    // Signalled to vCPU 0, then moved: Xen's 2-level ABI leaves it there.
    ops::send(&mut w.t, &mut w.mem, 1, p1).unwrap();
    ops::bind_vcpu(w.d(2), p2, 1).unwrap();
    assert_eq!(w.upcall(2, 0), (true, 1 << (p2 / 64)));
    assert_eq!(w.upcall(2, 1), (false, 0));
    w.take_upcall(2, 0);
    // Linux's `xen_rebind_evtchn_to_cpu`: mask, rebind, unmask; the unmask
    // of the still-pending port goes to the new vCPU.
    w.set_mask(2, p2, true);
    ops::bind_vcpu(w.d(2), p2, 1).unwrap();
    w.unmask(2, p2).unwrap();
    assert_eq!(w.upcall(2, 0), (false, 0));
    assert_eq!(w.upcall(2, 1), (true, 1 << (p2 / 64)));
}

#[test]
fn masked_ports_wait_for_unmask_and_are_delivered_once() {
    let mut w = World::new(2);
    let (p1, p2) = w.link(1, 2);
    w.set_mask(2, p2, true);
    ops::send(&mut w.t, &mut w.mem, 1, p1).unwrap();
    assert!(w.pending(2, p2));
    assert_eq!(w.upcall(2, 0), (false, 0), "masked: no upcall");
    w.unmask(2, p2).unwrap();
    assert_eq!(w.upcall(2, 0), (true, 1), "unmask redelivers");
    // The guest takes the upcall but leaves the port pending: sending
    // again changes nothing (no second delivery).
    let mfn = w.d(2).shared_info_mfn();
    w.mem.frame_mut(mfn)[0] = 0;
    w.set_word(2, 8, 0);
    ops::send(&mut w.t, &mut w.mem, 1, p1).unwrap();
    assert_eq!(w.upcall(2, 0), (false, 0));
    // Unmasking a port that is not masked does not redeliver either.
    w.unmask(2, p2).unwrap();
    assert_eq!(w.upcall(2, 0), (false, 0));
    assert_eq!(w.unmask(2, 5000), Err(Errno::EINVAL));
    assert_eq!(w.unmask(2, 7), Ok(()), "free but valid");
}

#[test]
fn an_event_wakes_a_blocked_vcpu_unless_masked() {
    let mut w = World::new(2);
    let (p1, p2) = w.link(1, 2);
    w.ack(1, 0);
    w.d(2).vcpu_mut(0).unwrap().block();
    w.set_mask(2, p2, true);
    ops::send(&mut w.t, &mut w.mem, 1, p1).unwrap();
    assert_eq!(w.d(2).vcpu(0).unwrap().run_state(), VcpuRunState::Blocked);
    w.unmask(2, p2).unwrap();
    assert_eq!(w.d(2).vcpu(0).unwrap().run_state(), VcpuRunState::Runnable);
}

#[test]
fn delivery_uses_a_registered_vcpu_info() {
    let mut w = World::new(1);
    let d = w.t.get_mut(1).unwrap();
    d.populate(&mut w.pool, &mut w.mem, Gfn(0), 2).unwrap();
    d.xen_mut().vcpu_info[0] = Some(VcpuInfoArea {
        gfn: Gfn(1),
        offset: 0x40,
    });
    let ipi = ops::bind_ipi(d, 0).unwrap();
    ops::send(&mut w.t, &mut w.mem, 1, ipi).unwrap();
    assert_eq!(w.upcall(1, 0), (false, 0), "not the legacy slot");
    let d = w.t.get(1).unwrap();
    let mut info = [0u8; 16];
    GuestPhys::new(d.p2m(), &mut w.mem)
        .read(0x1040, &mut info)
        .unwrap();
    assert_eq!(info[0], 1);
    assert_eq!(u64::from_le_bytes(info[8..].try_into().unwrap()), 1);
}

#[test]
fn upcall_vector_for_entry() {
    let mut w = World::new(1);
    let ipi = ops::bind_ipi(w.d(1), 1).unwrap();
    assert_eq!(w.entry(1, 1), None, "nothing pending");
    ops::send(&mut w.t, &mut w.mem, 1, ipi).unwrap();
    assert_eq!(w.entry(1, 1), None, "no vector");
    w.d(1).xen_mut().hvm_params[HVM_PARAM_CALLBACK_IRQ as usize] =
        CallbackVia::Vector(0xf3).encode();
    assert_eq!(w.entry(1, 1), Some(0xf3));
    assert_eq!(w.entry(1, 1), Some(0xf3), "level");
    assert_eq!(w.entry(1, 0), None, "other vCPU");
    assert_eq!(w.d(1).events_mut().set_upcall_vector(1, 0x40), Ok(()));
    let beyond = w
        .d(1)
        .events_mut()
        .set_upcall_vector(MAX_VCPUS as u32, 0x40);
    assert_eq!(beyond, Err(Errno::ENOENT));
    assert_eq!(w.entry(1, 1), Some(0x40));
    w.ack(1, 1);
    assert_eq!(w.entry(1, 1), None);
}

#[test]
fn events_need_delivery_honours_the_upcall_mask() {
    let mut w = World::new(1);
    let ipi = ops::bind_ipi(w.d(1), 0).unwrap();
    ops::send(&mut w.t, &mut w.mem, 1, ipi).unwrap();
    let d = w.t.get(1).unwrap();
    assert!(events_need_delivery(d, &mut w.mem, 0));
    assert!(!events_need_delivery(d, &mut w.mem, 1));
    let mfn = d.shared_info_mfn();
    w.mem.frame_mut(mfn)[1] = 1;
    assert!(!events_need_delivery(w.t.get(1).unwrap(), &mut w.mem, 0));
}

#[test]
fn polls_wake_on_their_port_or_timeout() {
    let mut w = World::new(1);
    let a = ops::bind_ipi(w.d(1), 0).unwrap();
    let b = ops::bind_ipi(w.d(1), 0).unwrap();
    w.set_mask(1, a, true);
    w.set_mask(1, b, true);
    let poll_on = |w: &mut World, port, deadline_ns| {
        let d = w.d(1);
        d.vcpu_mut(0).unwrap().block();
        d.events_mut()
            .start_poll(0, Poll { port, deadline_ns })
            .unwrap();
    };
    let state = |w: &mut World| w.d(1).vcpu(0).unwrap().run_state();
    poll_on(&mut w, Some(a), Some(500));
    ops::send(&mut w.t, &mut w.mem, 1, b).unwrap();
    assert_eq!(state(&mut w), VcpuRunState::Blocked, "another port");
    assert_eq!(crate::sched::next_timer_deadline(&w.t, |_| true), Some(500));
    ops::send(&mut w.t, &mut w.mem, 1, a).unwrap();
    assert_eq!(state(&mut w), VcpuRunState::Runnable, "masked, but polled");
    assert_eq!(w.d(1).events().poll(0), None);
    assert_eq!(crate::sched::next_timer_deadline(&w.t, |_| true), None);
    // Several ports: any new pending port wakes it.
    w.ack(1, 0);
    w.set_word(1, PENDING, 0);
    poll_on(&mut w, None, None);
    ops::send(&mut w.t, &mut w.mem, 1, b).unwrap();
    assert_eq!(state(&mut w), VcpuRunState::Runnable);
    // Timeout.
    poll_on(&mut w, Some(a), Some(500));
    assert_eq!(expire_polls(&mut w.t, 499), 0);
    assert_eq!(expire_polls(&mut w.t, 500), 1);
    assert_eq!(state(&mut w), VcpuRunState::Runnable);
    // Entering the vCPU ends a poll that something else woke it from.
    poll_on(&mut w, Some(a), Some(500));
    w.d(1).vcpu_mut(0).unwrap().wake();
    w.entry(1, 0);
    assert_eq!(w.d(1).events().poll(0), None);
}

#[test]
fn killing_a_domain_closes_its_ports() {
    let mut w = World::new(3);
    let (p1, p2) = w.link(1, 2);
    let (q3, q2) = w.link(3, 2);
    ops::bind_virq(w.d(2), VIRQ_TIMER, 0).unwrap();
    let offer = ops::alloc_unbound(&mut w.t, 1, 2).unwrap();
    let free_frames = w.pool.free_frames();
    w.t.kill(2).unwrap();
    assert_eq!(w.binding(1, p1), Some(EvtchnBinding::Unbound { dom: 2 }));
    assert_eq!(w.binding(3, q3), Some(EvtchnBinding::Unbound { dom: 2 }));
    // As in Xen, an offer to the dead domain stays an offer.
    assert_eq!(w.binding(1, offer), Some(EvtchnBinding::Unbound { dom: 2 }));
    assert_eq!(w.d(2).events().ports().iter().count(), 0, "table freed");
    for p in [p2, q2] {
        assert_eq!(w.binding(2, p), Some(EvtchnBinding::Closed));
    }
    // Nothing new in a dying domain.
    assert_eq!(ops::alloc_unbound(&mut w.t, 2, 1), Err(Errno::EINVAL));
    assert_eq!(ops::bind_ipi(w.d(2), 0), Err(Errno::EINVAL));
    assert_eq!(
        ops::bind_interdomain(&mut w.t, &mut w.mem, 2, 1, offer),
        Err(Errno::EINVAL)
    );
    // Sending toward it is dropped.
    assert_eq!(ops::send(&mut w.t, &mut w.mem, 1, p1), Ok(()));
    w.t.destroy(2, &mut w.pool, &mut w.mem).unwrap();
    assert_eq!(
        ops::bind_interdomain(&mut w.t, &mut w.mem, 1, 2, p2),
        Err(Errno::ESRCH)
    );
    assert!(w.pool.free_frames() > free_frames);
}

// ---- property test ----

/// What the guests of one domain should see in their 2-level bitmaps.
#[derive(Clone, Debug, Default)]
struct Expected {
    pending: BTreeSet<u32>,
    masked: BTreeSet<u32>,
    sel: [u64; VCPUS as usize],
    upcall: [bool; VCPUS as usize],
    /// The vCPU each bound port notifies: the one it was bound on, or the
    /// last `EVTCHNOP_bind_vcpu` moved it to; free ports are absent.
    notify: BTreeMap<u32, u32>,
}

impl Expected {
    fn notify(&self, port: u32) -> u32 {
        self.notify.get(&port).copied().unwrap_or(0)
    }

    /// Xen's rules, stated on sets: a port is delivered once, when it
    /// becomes pending unmasked, or when it is unmasked while pending.
    fn set_pending(&mut self, port: u32, vcpu: u32) {
        if self.pending.insert(port) && !self.masked.contains(&port) {
            self.signal(port, vcpu);
        }
    }

    fn unmask(&mut self, port: u32, vcpu: u32) {
        if self.masked.remove(&port) && self.pending.contains(&port) {
            self.signal(port, vcpu);
        }
    }

    fn signal(&mut self, port: u32, vcpu: u32) {
        let v = vcpu as usize;
        let bit = 1 << (port / 64);
        if self.sel[v] & bit == 0 {
            self.sel[v] |= bit;
            self.upcall[v] = true;
        }
    }

    fn ack(&mut self, vcpu: u32) {
        self.sel[vcpu as usize] = 0;
        self.upcall[vcpu as usize] = false;
        let masked = self.masked.clone();
        self.pending.retain(|p| masked.contains(p));
    }
}

#[derive(Clone, Debug)]
enum Op {
    AllocUnbound { d: usize, remote: usize },
    BindInterdomain { d: usize, remote: usize, port: u32 },
    BindVirq { d: usize, virq: u32, vcpu: u32 },
    BindIpi { d: usize, vcpu: u32 },
    BindVcpu { d: usize, port: u32, vcpu: u32 },
    Send { d: usize, port: u32 },
    Close { d: usize, port: u32 },
    Unmask { d: usize, port: u32 },
    Mask { d: usize, port: u32 },
    Ack { d: usize, vcpu: u32 },
    TakeUpcall { d: usize, vcpu: u32 },
    RaiseVirq { d: usize, virq: u32, vcpu: u32 },
    Destroy { d: usize },
}

const SLOTS: usize = 4;
/// Ports the test names: a few buckets' worth, and some beyond.
const PORT_RANGE: u32 = 140;

fn op() -> impl Strategy<Value = Op> {
    let d = 0..SLOTS;
    let port = 0..PORT_RANGE;
    prop_oneof![
        (d.clone(), d.clone()).prop_map(|(d, remote)| Op::AllocUnbound { d, remote }),
        (d.clone(), d.clone(), 0..8u32).prop_map(|(d, remote, port)| Op::BindInterdomain {
            d,
            remote,
            port
        }),
        (d.clone(), 0..NR_VIRQS + 1, 0..VCPUS + 1).prop_map(|(d, virq, vcpu)| Op::BindVirq {
            d,
            virq,
            vcpu
        }),
        (d.clone(), 0..VCPUS + 1).prop_map(|(d, vcpu)| Op::BindIpi { d, vcpu }),
        (d.clone(), 0..8u32, 0..VCPUS + 1).prop_map(|(d, port, vcpu)| Op::BindVcpu {
            d,
            port,
            vcpu
        }),
        (d.clone(), port.clone(), 0..VCPUS + 1).prop_map(|(d, port, vcpu)| Op::BindVcpu {
            d,
            port,
            vcpu
        }),
        (d.clone(), 0..8u32).prop_map(|(d, port)| Op::Send { d, port }),
        (d.clone(), port.clone()).prop_map(|(d, port)| Op::Send { d, port }),
        (d.clone(), 0..8u32).prop_map(|(d, port)| Op::Close { d, port }),
        (d.clone(), port.clone()).prop_map(|(d, port)| Op::Unmask { d, port }),
        (d.clone(), port).prop_map(|(d, port)| Op::Mask { d, port }),
        (d.clone(), 0..VCPUS).prop_map(|(d, vcpu)| Op::Ack { d, vcpu }),
        (d.clone(), 0..VCPUS).prop_map(|(d, vcpu)| Op::TakeUpcall { d, vcpu }),
        (d.clone(), 0..NR_VIRQS, 0..VCPUS).prop_map(|(d, virq, vcpu)| Op::RaiseVirq {
            d,
            virq,
            vcpu
        }),
        d.prop_map(|d| Op::Destroy { d }),
    ]
}

/// The checked invariants of every domain's ports.
fn check_invariants(t: &DomainTable, gone: &BTreeSet<DomId>) -> Result<(), TestCaseError> {
    for d in t.iter() {
        let events = d.events();
        prop_assert!(events.ports().iter().count() <= MAX_EVTCHN_PORTS as usize);
        if let Some(zero) = events.ports().get(0) {
            prop_assert_eq!(zero.binding, EvtchnBinding::Closed);
        }
        for (port, c) in events.ports().iter() {
            match c.binding {
                EvtchnBinding::Interdomain { dom, port: rport } => {
                    prop_assert!(
                        !gone.contains(&dom),
                        "d{} port {} -> dead d{}",
                        d.domid(),
                        port,
                        dom
                    );
                    let peer = t.get(dom).and_then(|r| r.events().ports().get(rport));
                    let back = EvtchnBinding::Interdomain {
                        dom: d.domid(),
                        port,
                    };
                    prop_assert_eq!(peer.map(|c| c.binding), Some(back), "asymmetric link");
                }
                EvtchnBinding::Virq(virq) => {
                    // A global VIRQ is bound on vCPU 0 wherever it notifies.
                    let bound_on = if virq_is_global(virq) {
                        0
                    } else {
                        c.notify_vcpu
                    };
                    prop_assert_eq!(events.virq_port(virq, bound_on), Some(port), "bound twice");
                }
                _ => {}
            }
            prop_assert!(d.vcpu(c.notify_vcpu).is_some());
        }
    }
    Ok(())
}

fn run(ops_list: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new(SLOTS - 1);
    let mut ids: Vec<DomId> = (0..SLOTS as DomId).collect();
    let mut expected: Vec<Expected> = vec![Expected::default(); SLOTS];
    let mut gone = BTreeSet::new();
    let mut created = 0;
    let slot_of = |ids: &[DomId], id: DomId| ids.iter().position(|i| *i == id);
    for op in ops_list {
        match op {
            Op::AllocUnbound { d, remote } => {
                if let Ok(port) = ops::alloc_unbound(&mut w.t, ids[d], ids[remote]) {
                    expected[d].notify.insert(port, 0);
                }
            }
            Op::BindInterdomain { d, remote, port } => {
                let offered = w.binding(ids[remote], port);
                let r = ops::bind_interdomain(&mut w.t, &mut w.mem, ids[d], ids[remote], port);
                let ok = offered == Some(EvtchnBinding::Unbound { dom: ids[d] });
                prop_assert_eq!(r.is_ok(), ok, "{:?} offered {:?}", r, offered);
                if let Ok(local) = r {
                    expected[d].notify.insert(local, 0);
                    expected[d].set_pending(local, 0);
                }
            }
            Op::BindVirq { d, virq, vcpu } => {
                if let Ok(port) = ops::bind_virq(w.d(ids[d]), virq, vcpu) {
                    expected[d].notify.insert(port, vcpu);
                }
            }
            Op::BindIpi { d, vcpu } => {
                let r = ops::bind_ipi(w.d(ids[d]), vcpu);
                prop_assert_eq!(r.is_ok(), vcpu < VCPUS);
                if let Ok(port) = r {
                    expected[d].notify.insert(port, vcpu);
                }
            }
            Op::BindVcpu { d, port, vcpu } => {
                let before = w.binding(ids[d], port);
                let r = ops::bind_vcpu(w.d(ids[d]), port, vcpu);
                let want = match before {
                    _ if vcpu >= VCPUS => Err(Errno::ENOENT),
                    Some(EvtchnBinding::Unbound { .. } | EvtchnBinding::Interdomain { .. }) => {
                        Ok(())
                    }
                    Some(EvtchnBinding::Virq(virq)) if virq_is_global(virq) => Ok(()),
                    _ => Err(Errno::EINVAL),
                };
                prop_assert_eq!(r, want, "{:?}", before);
                if r.is_ok() {
                    expected[d].notify.insert(port, vcpu);
                }
            }
            Op::Send { d, port } => {
                let before = w.binding(ids[d], port);
                let r = ops::send(&mut w.t, &mut w.mem, ids[d], port);
                match before {
                    Some(EvtchnBinding::Interdomain { dom, port: rport }) => {
                        prop_assert_eq!(r, Ok(()));
                        let s = slot_of(&ids, dom).unwrap();
                        let vcpu = expected[s].notify(rport);
                        expected[s].set_pending(rport, vcpu);
                    }
                    Some(EvtchnBinding::Ipi) => {
                        prop_assert_eq!(r, Ok(()));
                        let vcpu = expected[d].notify(port);
                        expected[d].set_pending(port, vcpu);
                    }
                    Some(EvtchnBinding::Unbound { .. }) => prop_assert_eq!(r, Ok(())),
                    _ => prop_assert_eq!(r, Err(Errno::EINVAL)),
                }
            }
            Op::Close { d, port } => {
                let before = w.binding(ids[d], port);
                let r = ops::close(&mut w.t, &mut w.mem, ids[d], port);
                let bound = !matches!(before, None | Some(EvtchnBinding::Closed));
                prop_assert_eq!(r.is_ok(), bound);
                if bound {
                    expected[d].pending.remove(&port);
                    expected[d].notify.remove(&port);
                }
            }
            Op::Unmask { d, port } => {
                let valid = w.binding(ids[d], port).is_some();
                let r = w.unmask(ids[d], port);
                prop_assert_eq!(r.is_ok(), valid);
                if valid {
                    let vcpu = expected[d].notify(port);
                    expected[d].unmask(port, vcpu);
                }
            }
            Op::Mask { d, port } => {
                w.set_mask(ids[d], port, true);
                expected[d].masked.insert(port);
            }
            Op::Ack { d, vcpu } => {
                w.ack(ids[d], vcpu);
                expected[d].ack(vcpu);
            }
            Op::TakeUpcall { d, vcpu } => {
                w.take_upcall(ids[d], vcpu);
                expected[d].sel[vcpu as usize] = 0;
                expected[d].upcall[vcpu as usize] = false;
            }
            Op::RaiseVirq { d, virq, vcpu } => {
                let row = if virq_is_global(virq) { 0 } else { vcpu };
                let bound = w.d(ids[d]).events().virq_port(virq, row);
                prop_assert_eq!(w.raise(ids[d], virq, vcpu), bound.is_some());
                if let Some(p) = bound {
                    let to = expected[d].notify(p);
                    expected[d].set_pending(p, to);
                }
            }
            Op::Destroy { d } if d > 0 => {
                w.destroy(ids[d]);
                gone.insert(ids[d]);
                created += 1;
                ids[d] = w.create(&format!("n{created}"));
                gone.remove(&ids[d]);
                expected[d] = Expected::default();
            }
            Op::Destroy { .. } => {}
        }
        check_invariants(&w.t, &gone)?;
        for (s, id) in ids.iter().enumerate() {
            let e = &expected[s];
            for (port, c) in w.t.get(*id).unwrap().events().ports().iter() {
                prop_assert_eq!(c.notify_vcpu, e.notify(port), "d{} port {}", id, port);
            }
            for port in 0..PORT_RANGE {
                prop_assert_eq!(
                    w.pending(*id, port),
                    e.pending.contains(&port),
                    "d{} port {}",
                    id,
                    port
                );
            }
            for vcpu in 0..VCPUS {
                let want = (e.upcall[vcpu as usize], e.sel[vcpu as usize]);
                prop_assert_eq!(w.upcall(*id, vcpu), want, "d{} vCPU {}", id, vcpu);
            }
        }
    }
    for id in ids {
        w.destroy(id);
    }
    prop_assert_eq!(w.pool.free_frames(), FRAMES);
    Ok(())
}

proptest! {
    #[test]
    fn random_ops_keep_links_symmetric_and_delivery_exact(
        ops_list in prop::collection::vec(op(), 1..120)
    ) {
        run(ops_list)?;
    }
}

/// Ports the racing test signals: four in each of the first four bitmap
/// words, so both sides work on the same words at once.
const RACE_PORTS: [u32; 16] = [
    1, 2, 3, 63, 64, 65, 100, 127, 128, 129, 150, 191, 192, 200, 230, 255,
];
/// Signals the hypervisor thread sends in the racing test.
const RACE_ROUNDS: usize = 200_000;

/// The guest's upcall handler on its own thread, as Linux's
/// `__xen_evtchn_do_upcall` runs it: clear `evtchn_upcall_pending`, take
/// the selector with one exchange, then clear each pending bit of the
/// named words with a locked `and` (`sync_clear_bit`). Returns how many
/// pending bits it took.
fn guest_take_events(page: &AtomicPage) -> u64 {
    let f = SharedFrame::of_atomic(page);
    let mut taken = 0;
    f.fetch_and_u16(0, 0xff00).unwrap();
    // fetch_and with 0 is the exchange with 0 (`xchg`).
    let mut sel = f.fetch_and_u64(8, 0).unwrap();
    while sel != 0 {
        let w = sel.trailing_zeros() as usize;
        sel &= sel - 1;
        let pending = f.load_u64(PENDING + 8 * w).unwrap();
        let mut bits = pending;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            bits &= bits - 1;
            let old = f.fetch_and_u64(PENDING + 8 * w, !bit).unwrap();
            taken += u64::from(old & bit != 0);
        }
    }
    taken
}

#[test]
fn hypervisor_and_guest_racing_on_shared_info_lose_no_event() {
    let mut w = World::new(1);
    let mfn = w.t.get(1).unwrap().shared_info_mfn();
    let page = AtomicPage::new(w.mem.frame(mfn));
    let World { t, mem, .. } = &mut w;
    let domain = t.get(1).unwrap();
    let mut mem = WithShared::new(mem, mfn, &page);
    let done = AtomicBool::new(false);
    let (sent, taken) = std::thread::scope(|s| {
        let guest = s.spawn(|| {
            let mut taken = 0;
            while !done.load(Ordering::Acquire) {
                taken += guest_take_events(&page);
            }
            taken + guest_take_events(&page)
        });
        let stop = StopOnDrop(&done);
        let mut sent = 0u64;
        for round in 0..RACE_ROUNDS {
            let port = RACE_PORTS[round % RACE_PORTS.len()];
            // evtchn_2l_set_pending: only news reaches the selector.
            if !two_level::test_and_set_pending(domain, &mut mem, port) {
                sent += 1;
                if !two_level::test_and_set_selector(domain, &mut mem, 0, port) {
                    two_level::test_and_set_upcall(domain, &mut mem, 0);
                }
            }
        }
        drop(stop);
        (sent, guest.join().unwrap())
    });
    // Every event the hypervisor made pending was taken once: none lost
    // to a read-modify-write that overwrote the guest's clear (it would
    // be taken twice), none left without its selector bit.
    assert_eq!(taken, sent);
    let f = SharedFrame::of_atomic(&page);
    for word in 0..4 {
        assert_eq!(f.load_u64(PENDING + 8 * word), Ok(0), "word {word}");
    }
    assert!(sent > RACE_PORTS.len() as u64);
}
