//! A control domU (Xen's control domain that is not the hardware domain,
//! e.g. a Linux guest running the toolstack): the control hypercall and
//! other domains are its to act on; I/O, pirqs and `XENFEAT_dom0` stay
//! dom0's. A plain domU gets `-EPERM` for all of it (the tests above).

use abi::control::{self as ctl, CreateRequest, CreateResponse, ListRequest};
use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::memory::XENMEM_CURRENT_RESERVATION;
use abi::xen::physdev::{
    PhysdevEoi, PhysdevMapPirq, MAP_PIRQ_TYPE_GSI, PHYSDEVOP_EOI, PHYSDEVOP_MAP_PIRQ,
};
use abi::xen::version::{XenFeatureInfo, XENFEAT_DOM0, XENVER_GET_FEATURES};

use super::{control_rc, domain_op};
use crate::hypercall::sim::{e, World, BUF, BUF2, DOM0, DOMU, RAM_PAGES, TOTAL_FRAMES};
use crate::mm::FramePool;

fn create_req(name: &str) -> CreateRequest {
    CreateRequest::new(ctl::encode_domain_name(name).unwrap(), 16, 1)
}

#[test]
fn a_control_domu_creates_lists_and_destroys_domains() {
    let mut w = World::with_control_domu(TOTAL_FRAMES);
    let frames = w.pool.free_frames();
    let list = ListRequest::new(0);
    assert_eq!(control_rc(&mut w, DOMU, ctl::CONTROL_OP_LIST, &list), 0);
    let create = create_req("child");
    assert_eq!(control_rc(&mut w, DOMU, ctl::CONTROL_OP_CREATE, &create), 0);
    let child = w.get::<CreateResponse>(DOMU, BUF2).domid;
    assert_eq!(w.t.len(), 3);
    assert_eq!(domain_op(&mut w, DOMU, ctl::CONTROL_OP_GETINFO, child), 0);
    assert_eq!(domain_op(&mut w, DOMU, ctl::CONTROL_OP_DESTROY, child), 0);
    assert_eq!((w.t.len(), w.pool.free_frames()), (2, frames));
}

#[test]
fn a_control_domu_may_not_destroy_dom0_or_itself() {
    let mut w = World::with_control_domu(TOTAL_FRAMES);
    assert_eq!(
        domain_op(&mut w, DOMU, ctl::CONTROL_OP_DESTROY, DOM0),
        e(Errno::EPERM)
    );
    assert_eq!(
        domain_op(&mut w, DOMU, ctl::CONTROL_OP_DESTROY, DOMU),
        e(Errno::EINVAL)
    );
    assert_eq!(w.t.len(), 2);
    // dom0 may destroy the control domU: it is no hardware domain.
    assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, DOMU), 0);
    assert_eq!(w.t.len(), 1);
}

#[test]
fn a_control_domu_names_other_domains() {
    let mut w = World::with_control_domu(TOTAL_FRAMES);
    w.put(DOMU, BUF, &DOM0);
    let pages = w.ret(
        DOMU,
        nr::MEMORY_OP,
        [XENMEM_CURRENT_RESERVATION.into(), BUF, 0, 0, 0],
    );
    assert_eq!(pages, i64::try_from(RAM_PAGES).unwrap());
    // A plain domU may not.
    let mut w = World::new();
    w.put(DOMU, BUF, &DOM0);
    let r = w.ret(
        DOMU,
        nr::MEMORY_OP,
        [XENMEM_CURRENT_RESERVATION.into(), BUF, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::EPERM));
}

#[test]
fn a_control_domu_has_no_hardware() {
    let mut w = World::with_control_domu(TOTAL_FRAMES);
    let map = PhysdevMapPirq {
        domid: DOMU,
        map_type: MAP_PIRQ_TYPE_GSI,
        index: 3,
        pirq: -1,
        ..PhysdevMapPirq::default()
    };
    w.put(DOMU, BUF, &map);
    let r = w.ret(
        DOMU,
        nr::PHYSDEV_OP,
        [PHYSDEVOP_MAP_PIRQ.into(), BUF, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::EPERM));
    assert_eq!(w.get::<PhysdevMapPirq>(DOMU, BUF), map, "nothing written");
    w.put(DOMU, BUF, &PhysdevEoi { irq: 3 });
    let r = w.ret(DOMU, nr::PHYSDEV_OP, [PHYSDEVOP_EOI.into(), BUF, 0, 0, 0]);
    assert_eq!(r, e(Errno::ENOSYS), "no pirqs: as a plain PVH domU");
    // XENFEAT_dom0 is the hardware domain's.
    for (caller, dom0_feature) in [(DOMU, false), (DOM0, true)] {
        w.put(caller, BUF, &XenFeatureInfo::default());
        let r = w.ret(
            caller,
            nr::XEN_VERSION,
            [XENVER_GET_FEATURES.into(), BUF, 0, 0, 0],
        );
        assert_eq!(r, 0);
        let submap = w.get::<XenFeatureInfo>(caller, BUF).submap;
        assert_eq!(submap & 1 << XENFEAT_DOM0 != 0, dom0_feature);
    }
    let domu = w.domain(DOMU);
    assert!(domu.privilege().is_some() && domu.hardware().is_none());
}
