//! `event_channel_op`, `SCHEDOP_poll` and `HVMOP_set_evtchn_upcall_vector`
//! through the door, with the World of the parent module.

use abi::xen::event_channel::{
    self as ec, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnBinding, EvtchnSend, EvtchnStatus, EvtchnUnmask,
    VIRQ_DOM_EXC, VIRQ_TIMER,
};
use abi::xen::hvm::XenHvmEvtchnUpcallVector;
use abi::xen::sched::{SchedPoll, SCHEDOP_POLL};

use abi::xen::physdev as pd;

use super::*;
use crate::event::{self, MAX_EVTCHN_PORTS, MAX_POLL_PORTS};
use crate::irq::GsiConfig;

fn evtchn<T: IntoBytes + Immutable>(w: &mut World, domid: DomId, cmd: u32, arg: &T) -> i64 {
    w.put(domid, BUF, arg);
    w.ret(domid, nr::EVENT_CHANNEL_OP, [cmd.into(), BUF, 0, 0, 0])
}

fn alloc_unbound(w: &mut World, caller: DomId, dom: DomId, remote_dom: DomId) -> (i64, u32) {
    let req = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    let r = evtchn(w, caller, ec::EVTCHNOP_ALLOC_UNBOUND, &req);
    (r, w.get::<EvtchnAllocUnbound>(caller, BUF).port)
}

fn bind_interdomain(w: &mut World, caller: DomId, remote_dom: DomId, port: u32) -> (i64, u32) {
    let req = EvtchnBindInterdomain {
        remote_dom,
        remote_port: port,
        ..Default::default()
    };
    let r = evtchn(w, caller, ec::EVTCHNOP_BIND_INTERDOMAIN, &req);
    (r, w.get::<EvtchnBindInterdomain>(caller, BUF).local_port)
}

fn port_op(w: &mut World, caller: DomId, cmd: u32, port: u32) -> i64 {
    evtchn(w, caller, cmd, &EvtchnSend { port })
}

fn status(w: &mut World, caller: DomId, dom: DomId, port: u32) -> (i64, EvtchnStatus) {
    let req = EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    let r = evtchn(w, caller, ec::EVTCHNOP_STATUS, &req);
    (r, w.get(caller, BUF))
}

fn pending(w: &mut World, domid: DomId, port: u32) -> bool {
    event::is_pending(w.t.get(domid).unwrap(), &mut w.mem, port)
}

/// A channel dom0 ↔ domU made through the door: (dom0's port, domU's).
fn connect(w: &mut World) -> (u32, u32) {
    let (r, domu_port) = alloc_unbound(w, DOMU, DOMID_SELF, DOM0);
    assert_eq!(r, 0);
    let (r, dom0_port) = bind_interdomain(w, DOM0, DOMU, domu_port);
    assert_eq!(r, 0);
    (dom0_port, domu_port)
}

#[test]
fn a_channel_between_two_domains() {
    let mut w = World::new();
    let (p0, pu) = connect(&mut w);
    assert_eq!((p0, pu), (1, 1));
    assert!(pending(&mut w, DOM0, p0), "the new end starts pending");
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_SEND, p0), 0);
    assert!(pending(&mut w, DOMU, pu));
    let (r, s) = status(&mut w, DOMU, DOMID_SELF, pu);
    assert_eq!(r, 0);
    assert_eq!(
        s.binding(),
        Some(EvtchnBinding::Interdomain {
            dom: DOM0,
            port: p0
        })
    );
    assert_eq!(s.vcpu, 0);
    // 32-bit callers use the same structures.
    w.put(DOMU, BUF, &EvtchnSend { port: pu });
    let r = w.ret32(DOMU, 32, [ec::EVTCHNOP_SEND, BUF as u32, 0, 0, 0]);
    assert_eq!(r, 0);
    // Closing one end leaves the other unbound, offered to the closer.
    assert_eq!(port_op(&mut w, DOMU, ec::EVTCHNOP_CLOSE, pu), 0);
    let (_, s) = status(&mut w, DOM0, DOMID_SELF, p0);
    assert_eq!(s.binding(), Some(EvtchnBinding::Unbound { dom: DOMU }));
    let (_, s) = status(&mut w, DOMU, DOMID_SELF, pu);
    assert_eq!(s.binding(), Some(EvtchnBinding::Closed));
    assert_eq!(
        port_op(&mut w, DOMU, ec::EVTCHNOP_SEND, pu),
        e(Errno::EINVAL)
    );
    assert_eq!(
        port_op(&mut w, DOM0, ec::EVTCHNOP_SEND, p0),
        0,
        "unbound: dropped"
    );
}

#[test]
fn acting_for_another_domain_needs_privilege() {
    let mut w = World::new();
    assert_eq!(alloc_unbound(&mut w, DOMU, DOM0, DOMU).0, e(Errno::EPERM));
    assert_eq!(alloc_unbound(&mut w, DOMU, 77, DOMU).0, e(Errno::ESRCH));
    assert_eq!(alloc_unbound(&mut w, DOM0, 77, DOMU).0, e(Errno::ESRCH));
    assert_eq!(status(&mut w, DOMU, DOM0, 0).0, e(Errno::EPERM));
    // dom0 allocates a port in the domU for itself (as a toolstack does).
    let (r, port) = alloc_unbound(&mut w, DOM0, DOMU, DOMID_SELF);
    assert_eq!(r, 0);
    let (r, s) = status(&mut w, DOM0, DOMU, port);
    assert_eq!(r, 0);
    assert_eq!(s.binding(), Some(EvtchnBinding::Unbound { dom: DOM0 }));
    assert_eq!(bind_interdomain(&mut w, DOM0, DOMU, port).0, 0);
    // A domU cannot bind a port not offered to it.
    let (_, other) = alloc_unbound(&mut w, DOM0, DOM0, DOM0);
    assert_eq!(
        bind_interdomain(&mut w, DOMU, DOM0, other).0,
        e(Errno::EINVAL)
    );
    assert_eq!(bind_interdomain(&mut w, DOMU, 77, other).0, e(Errno::ESRCH));
}

#[test]
fn bad_ports_and_pointers() {
    let mut w = World::new();
    let ram = w.ram(DOMU);
    for cmd in [
        ec::EVTCHNOP_ALLOC_UNBOUND,
        ec::EVTCHNOP_BIND_INTERDOMAIN,
        ec::EVTCHNOP_BIND_VIRQ,
        ec::EVTCHNOP_BIND_IPI,
        ec::EVTCHNOP_BIND_VCPU,
        ec::EVTCHNOP_CLOSE,
        ec::EVTCHNOP_SEND,
        ec::EVTCHNOP_STATUS,
        ec::EVTCHNOP_UNMASK,
    ] {
        let r = w.ret(DOMU, nr::EVENT_CHANNEL_OP, [cmd.into(), UNMAPPED, 0, 0, 0]);
        assert_eq!(r, e(Errno::EFAULT), "cmd {cmd}");
        let r = w.ret(
            DOMU,
            nr::EVENT_CHANNEL_OP,
            [cmd.into(), UNMAPPED - 2, 0, 0, 0],
        );
        assert_eq!(r, e(Errno::EFAULT), "cmd {cmd} across the end of RAM");
    }
    assert!(w.ram(DOMU) == ram);
    assert!(w.domain(DOMU).events().ports().iter().next().is_none());
    for port in [64, MAX_EVTCHN_PORTS, u32::MAX] {
        for cmd in [ec::EVTCHNOP_SEND, ec::EVTCHNOP_CLOSE, ec::EVTCHNOP_UNMASK] {
            let r = port_op(&mut w, DOMU, cmd, port);
            assert_eq!(r, e(Errno::EINVAL), "cmd {cmd} port {port}");
        }
        assert_eq!(status(&mut w, DOMU, DOMID_SELF, port).0, e(Errno::EINVAL));
    }
    // The first bucket's ports are valid (port 0 is reserved): closed.
    for port in [0, 1, 63] {
        for cmd in [ec::EVTCHNOP_SEND, ec::EVTCHNOP_CLOSE] {
            let r = port_op(&mut w, DOMU, cmd, port);
            assert_eq!(r, e(Errno::EINVAL), "cmd {cmd} port {port}");
        }
        assert_eq!(port_op(&mut w, DOMU, ec::EVTCHNOP_UNMASK, port), 0);
        let (r, s) = status(&mut w, DOMU, DOMID_SELF, port);
        assert_eq!((r, s.binding()), (0, Some(EvtchnBinding::Closed)));
    }
    let r = w.ret(
        DOMU,
        nr::EVENT_CHANNEL_OP,
        [ec::EVTCHNOP_RESET.into(), BUF, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::ENOSYS));
}

fn bind_vcpu(w: &mut World, caller: DomId, port: u32, vcpu: u32) -> i64 {
    evtchn(
        w,
        caller,
        ec::EVTCHNOP_BIND_VCPU,
        &EvtchnBindVcpu { port, vcpu },
    )
}

/// `EVTCHNOP_bind_vcpu` through the door, with Xen's errors in Xen's
/// order; a moved port's events reach the new vCPU's `vcpu_info`.
#[test]
fn bind_vcpu_moves_a_port() {
    let mut w = World::new();
    let (p0, pu) = connect(&mut w);
    assert_eq!(bind_vcpu(&mut w, DOMU, pu, 2), e(Errno::ENOENT));
    assert_eq!(
        bind_vcpu(&mut w, DOMU, u32::MAX, u32::MAX),
        e(Errno::ENOENT)
    );
    for port in [0, 63, 64, MAX_EVTCHN_PORTS, u32::MAX] {
        assert_eq!(bind_vcpu(&mut w, DOMU, port, 1), e(Errno::EINVAL), "{port}");
    }
    let r = evtchn(
        &mut w,
        DOMU,
        ec::EVTCHNOP_BIND_IPI,
        &EvtchnBindIpi { vcpu: 0, port: 0 },
    );
    assert_eq!(r, 0);
    let ipi = w.get::<EvtchnBindIpi>(DOMU, BUF).port;
    assert_eq!(bind_vcpu(&mut w, DOMU, ipi, 1), e(Errno::EINVAL), "IPI");
    let timer = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    assert_eq!(evtchn(&mut w, DOMU, ec::EVTCHNOP_BIND_VIRQ, &timer), 0);
    let timer = w.get::<EvtchnBindVirq>(DOMU, BUF).port;
    assert_eq!(
        bind_vcpu(&mut w, DOMU, timer, 1),
        e(Errno::EINVAL),
        "per-vCPU VIRQ"
    );
    assert_eq!(bind_vcpu(&mut w, DOMU, pu, 1), 0);
    let (r, s) = status(&mut w, DOMU, DOMID_SELF, pu);
    assert_eq!((r, s.vcpu), (0, 1));
    assert_eq!(status(&mut w, DOM0, DOMU, pu).1.vcpu, 1);
    assert_eq!(
        status(&mut w, DOM0, DOMID_SELF, p0).1.vcpu,
        0,
        "the peer stays"
    );
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[0] = 0;
    w.mem.frame_mut(si)[8] = 0;
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_SEND, p0), 0);
    assert_eq!(w.mem.frame(si)[0], 0, "not vCPU 0");
    assert_eq!(w.mem.frame(si)[64], 1, "vCPU 1's evtchn_upcall_pending");
    assert_eq!(w.mem.frame(si)[64 + 8], 1, "vCPU 1's selector, word 0");
}

fn physdev<T: IntoBytes + Immutable>(w: &mut World, domid: DomId, cmd: u32, arg: &T) -> i64 {
    w.put(domid, BUF, arg);
    w.ret(domid, nr::PHYSDEV_OP, [cmd.into(), BUF, 0, 0, 0])
}

fn map_gsi(w: &mut World, caller: DomId, domid: DomId, gsi: i32, pirq: i32) -> (i64, i32) {
    let req = pd::PhysdevMapPirq {
        domid,
        map_type: pd::MAP_PIRQ_TYPE_GSI,
        index: gsi,
        pirq,
        ..Default::default()
    };
    let r = physdev(w, caller, pd::PHYSDEVOP_MAP_PIRQ, &req);
    (r, w.get::<pd::PhysdevMapPirq>(caller, BUF).pirq)
}

fn bind_pirq(w: &mut World, caller: DomId, pirq: u32) -> (i64, u32) {
    let req = EvtchnBindPirq {
        pirq,
        ..Default::default()
    };
    let r = evtchn(w, caller, ec::EVTCHNOP_BIND_PIRQ, &req);
    (r, w.get::<EvtchnBindPirq>(caller, BUF).port)
}

/// dom0 maps GSI 19, binds it, takes an interrupt, EOIs and closes,
/// through the door; a domU can do none of it and sees nothing.
#[test]
fn pirqs_through_the_door() {
    let mut w = World::new();
    let configs: Vec<_> = (0..24).map(|g| Some(GsiConfig::default_for(g))).collect();
    w.t.irqs_mut().set_platform(&configs);
    assert_eq!(map_gsi(&mut w, DOMU, DOMID_SELF, 19, -1).0, e(Errno::EPERM));
    assert_eq!(map_gsi(&mut w, DOM0, DOMU, 19, -1).0, e(Errno::EPERM));
    assert_eq!(map_gsi(&mut w, DOM0, 77, 19, -1).0, e(Errno::ESRCH));
    assert_eq!(
        map_gsi(&mut w, DOM0, DOMID_SELF, 24, -1).0,
        e(Errno::EINVAL)
    );
    let mut msi = pd::PhysdevMapPirq {
        domid: DOMID_SELF,
        map_type: pd::MAP_PIRQ_TYPE_MSI,
        pirq: -1,
        ..Default::default()
    };
    assert_eq!(
        physdev(&mut w, DOM0, pd::PHYSDEVOP_MAP_PIRQ, &msi),
        e(Errno::EINVAL)
    );
    msi.map_type = pd::MAP_PIRQ_TYPE_GSI;
    msi.index = 3;
    assert_eq!(physdev(&mut w, DOM0, pd::PHYSDEVOP_MAP_PIRQ, &msi), 0);
    assert_eq!(w.get::<pd::PhysdevMapPirq>(DOM0, BUF).pirq, 16);
    let (r, pirq) = map_gsi(&mut w, DOM0, DOM0, 19, -1);
    assert_eq!((r, pirq), (0, 17));
    assert_eq!(
        bind_pirq(&mut w, DOMU, 17).0,
        e(Errno::EINVAL),
        "not the domU's"
    );
    let (r, port) = bind_pirq(&mut w, DOM0, 17);
    assert_eq!(r, 0);
    assert_eq!(bind_pirq(&mut w, DOM0, 17).0, e(Errno::EEXIST));
    let (r, s) = status(&mut w, DOM0, DOMID_SELF, port);
    assert_eq!((r, s.binding()), (0, Some(EvtchnBinding::Pirq(17))));
    // Moved to vCPU 1: the interrupt is signalled there.
    assert_eq!(bind_vcpu(&mut w, DOM0, port, 1), 0);
    assert_eq!(status(&mut w, DOM0, DOMID_SELF, port).1.vcpu, 1);
    let query = pd::PhysdevIrqStatusQuery { irq: 17, flags: 0 };
    assert_eq!(
        physdev(&mut w, DOM0, pd::PHYSDEVOP_IRQ_STATUS_QUERY, &query),
        0
    );
    assert_eq!(
        w.get::<pd::PhysdevIrqStatusQuery>(DOM0, BUF).flags,
        pd::XENIRQSTAT_NEEDS_EOI
    );
    // A domU has no pirqs: Xen's hvm_physdev_op answers -ENOSYS.
    assert_eq!(
        physdev(&mut w, DOMU, pd::PHYSDEVOP_IRQ_STATUS_QUERY, &query),
        e(Errno::ENOSYS)
    );

    assert!(event::raise_pirq(&mut w.t, &mut w.mem, 19));
    assert!(pending(&mut w, DOM0, port));
    let si = w.domain(DOM0).shared_info_mfn();
    assert_eq!(w.mem.frame(si)[64], 1, "vCPU 1's evtchn_upcall_pending");
    assert!(
        w.t.irqs().pin(19).unwrap().masked,
        "level GSI masked until the EOI"
    );
    let eoi = pd::PhysdevEoi { irq: 17 };
    assert_eq!(
        physdev(&mut w, DOMU, pd::PHYSDEVOP_EOI, &eoi),
        e(Errno::ENOSYS)
    );
    assert!(
        w.t.irqs().pin(19).unwrap().masked,
        "a domU's EOI changes nothing"
    );
    assert_eq!(physdev(&mut w, DOM0, pd::PHYSDEVOP_EOI, &eoi), 0);
    assert!(!w.t.irqs().pin(19).unwrap().masked);

    assert!(event::raise_pirq(&mut w.t, &mut w.mem, 19));
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_CLOSE, port), 0);
    assert!(
        w.t.irqs().pin(19).unwrap().masked,
        "closed: nobody takes it"
    );
    assert!(!event::raise_pirq(&mut w.t, &mut w.mem, 19));
    let (r, port) = bind_pirq(&mut w, DOM0, 17);
    assert_eq!(r, 0);
    assert!(!w.t.irqs().pin(19).unwrap().masked, "rebound: no EOI owed");
    let unmap = pd::PhysdevUnmapPirq {
        domid: DOMID_SELF,
        pad0: 0,
        pirq: 17,
    };
    assert_eq!(
        physdev(&mut w, DOMU, pd::PHYSDEVOP_UNMAP_PIRQ, &unmap),
        e(Errno::EPERM)
    );
    assert_eq!(physdev(&mut w, DOM0, pd::PHYSDEVOP_UNMAP_PIRQ, &unmap), 0);
    assert_eq!(
        physdev(&mut w, DOM0, pd::PHYSDEVOP_UNMAP_PIRQ, &unmap),
        e(Errno::EINVAL)
    );
    assert!(w.t.irqs().pin(19).unwrap().masked);
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_CLOSE, port), 0);
    assert_eq!(w.t.irqs().pirqs_of(DOM0).collect::<Vec<_>>(), [16]);
}

#[test]
fn virqs_and_ipis() {
    let mut w = World::new();
    let bind = |w: &mut World, virq, vcpu| {
        let r = evtchn(
            w,
            DOMU,
            ec::EVTCHNOP_BIND_VIRQ,
            &EvtchnBindVirq {
                virq,
                vcpu,
                port: 0,
            },
        );
        (r, w.get::<EvtchnBindVirq>(DOMU, BUF).port)
    };
    assert_eq!(bind(&mut w, ec::NR_VIRQS, 0).0, e(Errno::EINVAL));
    assert_eq!(bind(&mut w, VIRQ_DOM_EXC, 1).0, e(Errno::EINVAL));
    assert_eq!(bind(&mut w, VIRQ_TIMER, 2).0, e(Errno::ENOENT));
    let (r, timer) = bind(&mut w, VIRQ_TIMER, 1);
    assert_eq!((r, timer), (0, 1));
    assert_eq!(bind(&mut w, VIRQ_TIMER, 1).0, e(Errno::EEXIST));
    assert_eq!(
        port_op(&mut w, DOMU, ec::EVTCHNOP_SEND, timer),
        e(Errno::EINVAL)
    );
    let (r, s) = status(&mut w, DOMU, DOMID_SELF, timer);
    assert_eq!(
        (r, s.binding(), s.vcpu),
        (0, Some(EvtchnBinding::Virq(VIRQ_TIMER)), 1)
    );
    let r = evtchn(
        &mut w,
        DOMU,
        ec::EVTCHNOP_BIND_IPI,
        &EvtchnBindIpi { vcpu: 9, port: 0 },
    );
    assert_eq!(r, e(Errno::ENOENT));
    let r = evtchn(
        &mut w,
        DOMU,
        ec::EVTCHNOP_BIND_IPI,
        &EvtchnBindIpi { vcpu: 1, port: 0 },
    );
    assert_eq!(r, 0);
    let ipi = w.get::<EvtchnBindIpi>(DOMU, BUF).port;
    assert_eq!(port_op(&mut w, DOMU, ec::EVTCHNOP_SEND, ipi), 0);
    assert!(pending(&mut w, DOMU, ipi));
}

#[test]
fn unmask_redelivers_a_masked_pending_port() {
    let mut w = World::new();
    let (p0, pu) = connect(&mut w);
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[2560] = 1 << pu; // the guest masks the port
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_SEND, p0), 0);
    assert_eq!(w.mem.frame(si)[0], 0, "masked: no upcall");
    assert_eq!(
        evtchn(
            &mut w,
            DOMU,
            ec::EVTCHNOP_UNMASK,
            &EvtchnUnmask { port: pu }
        ),
        0
    );
    assert_eq!(w.mem.frame(si)[0], 1);
    assert_eq!(w.mem.frame(si)[8], 1, "selector word 0");
}

fn poll(w: &mut World, ports: &[u32], timeout: u64) -> HypercallOutcome {
    for (i, p) in ports.iter().enumerate() {
        w.put(DOMU, BUF2 + 4 * i as u64, p);
    }
    let req = SchedPoll {
        ports: BUF2,
        nr_ports: ports.len() as u32,
        pad0: 0,
        timeout,
    };
    w.put(DOMU, BUF, &req);
    w.call64(DOMU, nr::SCHED_OP, [SCHEDOP_POLL.into(), BUF, 0, 0, 0])
}

fn vcpu0(w: &World) -> VcpuRunState {
    w.domain(DOMU).vcpu(0).unwrap().run_state()
}

#[test]
fn poll_returns_at_once_or_blocks() {
    let mut w = World::new();
    let (p0, pu) = connect(&mut w);
    let (_, quiet) = alloc_unbound(&mut w, DOMU, DOMID_SELF, DOM0);
    assert_eq!(poll(&mut w, &[quiet], 0), HypercallOutcome::Block);
    assert_eq!(vcpu0(&w), VcpuRunState::Blocked);
    let polled = w.domain(DOMU).events().poll(0).unwrap();
    assert_eq!((polled.port, polled.deadline_ns), (Some(quiet), None));
    // An event on another port does not end a one-port poll... (masked,
    // so no upcall wakes the vCPU either)
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[2560] = 1 << pu;
    assert_eq!(port_op(&mut w, DOM0, ec::EVTCHNOP_SEND, p0), 0);
    assert_eq!(vcpu0(&w), VcpuRunState::Blocked);
    // ...and a pending port listed makes the next poll return at once.
    w.d_wake();
    assert_eq!(
        poll(&mut w, &[quiet, pu], NOW + 5),
        HypercallOutcome::Return(0)
    );
    assert_eq!(vcpu0(&w), VcpuRunState::Runnable);
    // Several quiet ports with a timeout: blocks until it passes.
    let (_, quiet2) = alloc_unbound(&mut w, DOMU, DOMID_SELF, DOM0);
    assert_eq!(
        poll(&mut w, &[quiet, quiet2], NOW + 5),
        HypercallOutcome::Block
    );
    assert_eq!(
        crate::sched::next_timer_deadline(&w.t, |_| true),
        Some(NOW + 5)
    );
    assert_eq!(event::expire_polls(&mut w.t, NOW + 5), 1);
    assert_eq!(vcpu0(&w), VcpuRunState::Runnable);
    // An upcall already pending (and not masked) returns at once.
    w.mem.frame_mut(si)[0] = 1;
    assert_eq!(poll(&mut w, &[quiet], 0), HypercallOutcome::Return(0));
}

#[test]
fn poll_checks_its_arguments() {
    let mut w = World::new();
    let over = vec![1u32; MAX_POLL_PORTS as usize + 1];
    assert_eq!(
        poll(&mut w, &over, 0),
        HypercallOutcome::Return(e(Errno::EINVAL))
    );
    let bad = [MAX_EVTCHN_PORTS];
    assert_eq!(
        poll(&mut w, &bad, 0),
        HypercallOutcome::Return(e(Errno::EINVAL))
    );
    let r = w.ret(DOMU, nr::SCHED_OP, [SCHEDOP_POLL.into(), UNMAPPED, 0, 0, 0]);
    assert_eq!(r, e(Errno::EFAULT));
    let req = SchedPoll {
        ports: UNMAPPED - 4,
        nr_ports: 2,
        pad0: 0,
        timeout: 0,
    };
    w.put(DOMU, BUF, &req);
    let r = w.ret(DOMU, nr::SCHED_OP, [SCHEDOP_POLL.into(), BUF, 0, 0, 0]);
    assert_eq!(r, e(Errno::EFAULT));
    assert_eq!(vcpu0(&w), VcpuRunState::Runnable);
    // 32-bit layout: 4-byte handle, nr_ports, 8-byte timeout at offset 8.
    w.put(DOMU, BUF2, &7u32);
    let compat: [u32; 4] = [BUF2 as u32, 1, 0x10, 0];
    w.put(DOMU, BUF, &compat);
    let r = w.call32(DOMU, 29, [SCHEDOP_POLL, BUF as u32, 0, 0, 0]);
    assert_eq!(r, HypercallOutcome::Block);
    let polled = w.domain(DOMU).events().poll(0).unwrap();
    assert_eq!((polled.port, polled.deadline_ns), (Some(7), Some(0x10)));
}

#[test]
fn per_vcpu_upcall_vector() {
    let mut w = World::new();
    let set = |w: &mut World, vcpu, vector| {
        let req = XenHvmEvtchnUpcallVector {
            vcpu,
            vector,
            pad0: [0; 3],
        };
        w.put(DOMU, BUF, &req);
        let op = h::HVMOP_SET_EVTCHN_UPCALL_VECTOR.into();
        w.ret(DOMU, nr::HVM_OP, [op, BUF, 0, 0, 0])
    };
    assert_eq!(set(&mut w, 0, 0x0f), e(Errno::EINVAL));
    assert_eq!(set(&mut w, 2, 0x40), e(Errno::ENOENT));
    let r = w.ret(
        DOMU,
        nr::HVM_OP,
        [h::HVMOP_SET_EVTCHN_UPCALL_VECTOR.into(), UNMAPPED, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::EFAULT));
    assert_eq!(set(&mut w, 1, 0x40), 0);
    assert_eq!(w.domain(DOMU).events().upcall_vector(1), Some(0x40));
    assert_eq!(w.domain(DOMU).events().upcall_vector(0), None);
    let r = evtchn(
        &mut w,
        DOMU,
        ec::EVTCHNOP_BIND_IPI,
        &EvtchnBindIpi { vcpu: 1, port: 0 },
    );
    assert_eq!(r, 0);
    let ipi = w.get::<EvtchnBindIpi>(DOMU, BUF).port;
    assert_eq!(port_op(&mut w, DOMU, ec::EVTCHNOP_SEND, ipi), 0);
    let d = w.t.get_mut(DOMU).unwrap();
    assert_eq!(event::upcall_for_entry(d, &mut w.mem, 1), Some(0x40));
    assert_eq!(event::upcall_for_entry(d, &mut w.mem, 0), None);
}

impl World {
    /// Wakes the domU's vCPU 0, as the run loop does before entering it.
    fn d_wake(&mut self) {
        let d = self.t.get_mut(DOMU).unwrap();
        d.vcpu_mut(0).unwrap().wake();
        event::upcall_for_entry(d, &mut self.mem, 0);
    }
}

#[test]
fn init_control_checks_its_arguments_as_xen_then_declines_the_fifo_abi() {
    let mut w = World::new();
    let init = |gfn: u64, offset: u32, vcpu: u32| ec::EvtchnInitControl {
        control_gfn: gfn,
        offset,
        vcpu,
        ..Default::default()
    };
    let last = abi::xen::PAGE_SIZE as u32 - ec::EVTCHN_FIFO_CONTROL_BLOCK_SIZE;
    let vcpus = w.domain(DOMU).nr_vcpus();
    let cases = [
        // XTF's xsa-188: a GFN that is nobody's.
        (init(u64::MAX - 1, 0, 0), Errno::EINVAL),
        (init(RAM_PAGES + 100, 0, 0), Errno::EINVAL),
        (init(1, last + 8, 0), Errno::EINVAL),
        (init(1, 4, 0), Errno::EINVAL),
        (init(1, 0, vcpus), Errno::ENOENT),
        (init(1, 0, u32::MAX), Errno::ENOENT),
        (init(1, last, 0), Errno::EOPNOTSUPP),
        (init(1, 0, vcpus - 1), Errno::EOPNOTSUPP),
    ];
    let ram = w.ram(DOMU);
    for (req, errno) in cases {
        let r = evtchn(&mut w, DOMU, ec::EVTCHNOP_INIT_CONTROL, &req);
        assert_eq!(r, e(errno), "{req:?}");
    }
    // Nothing changed but the request buffer the test wrote.
    let after = w.ram(DOMU);
    let buf = usize::try_from(BUF).unwrap();
    let size = size_of::<ec::EvtchnInitControl>();
    assert!(ram[..buf] == after[..buf] && ram[buf + size..] == after[buf + size..]);
    let r = w.ret(
        DOMU,
        nr::EVENT_CHANNEL_OP,
        [ec::EVTCHNOP_INIT_CONTROL.into(), UNMAPPED, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::EFAULT));
}
