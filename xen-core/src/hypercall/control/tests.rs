//! The control ops through the door, on the hypercall tests' `World`
//! (dom0 and a domU "guest" with 32 pages of RAM each, paging off).

use abi::control::{
    self as ctl, ControlHeader, CreateRequest, CreateResponse, DomainRequest, DomainStats,
    MapRequest, Physinfo, PopulateRequest, PopulateResponse, SetVcpuContextRequest, UnmapRequest,
    VcpuHvmX86_32,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::VIRQ_DOM_EXC;
use abi::xen::memory::{XenAddToPhysmap, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP};
use proptest::prelude::*;
use zerocopy::{Immutable, IntoBytes};

use crate::domain::table::{DOMID_REUSE_DELAY, MAX_DOMAINS};
use crate::domain::vcpu::{VcpuEntryState, VcpuRunState};
use crate::domain::{DomainState, ShutdownReason, MAX_PAUSE_COUNT, SLICE_FRAMES};
use crate::hypercall::tests::{
    control_call, control_rc, domain_op, e, World, BUF, BUF2, DOM0, DOMU, RAM_PAGES, TOTAL_FRAMES,
    UNMAPPED,
};
use crate::hypercall::HypercallOutcome;
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::P2mKind;

/// Where dom0 maps foreign frames: beyond its RAM.
const MAP_AT: u64 = 0x1000;

fn create_req(name: &str, kib: u64, vcpus: u32) -> CreateRequest {
    CreateRequest::new(ctl::encode_domain_name(name).unwrap(), kib, vcpus)
}

/// Creates a domU from dom0; its domid.
fn create(w: &mut World, name: &str, pages: u64) -> DomId {
    assert_eq!(
        control_rc(
            w,
            DOM0,
            ctl::CONTROL_OP_CREATE,
            &create_req(name, pages * 4, 1)
        ),
        0
    );
    w.get::<CreateResponse>(DOM0, BUF2).domid
}

/// `VcpuEntryState::pvh(entry, start_info)` in Xen's layout.
fn pvh_regs(entry: u32, start_info: u32) -> VcpuHvmX86_32 {
    VcpuHvmX86_32::pvh_entry(entry, start_info)
}

fn mapped(w: &World, domid: DomId, gfn: u64) -> Option<crate::paging::npt::P2mEntry> {
    w.t.get(domid)?.p2m().translate(&w.mem, Gfn(gfn))
}

// ---- create ----

#[test]
fn create_makes_a_paused_empty_domain() {
    let mut w = World::new();
    let free = w.pool.free_frames();
    let r = control_call(
        &mut w,
        DOM0,
        ctl::CONTROL_OP_CREATE,
        &create_req("web", 512, 2),
    );
    assert_eq!(r, HypercallOutcome::Return(0));
    let id = w.get::<CreateResponse>(DOM0, BUF2).domid;
    assert_eq!(id, 2);
    let d = w.domain(id);
    assert_eq!(
        (d.name(), d.state(), d.tot_pages()),
        ("web", DomainState::Paused, 0)
    );
    assert_eq!(
        (d.max_pages(), d.vcpus().len(), d.pause_count()),
        (128, 2, 1)
    );
    assert!(d.privilege().is_none());
    assert!(d
        .vcpus()
        .iter()
        .all(|v| v.run_state() == VcpuRunState::Down));
    assert_eq!(d.p2m().mapped(), 0);
    // Its shared-info frame and NPT root.
    assert_eq!(free - w.pool.free_frames(), 2);
}

#[test]
fn create_validates_every_field() {
    let mut w = World::new();
    let free = w.pool.free_frames();
    let ok = create_req("x", 64, 1);
    let mut gap = ok;
    gap.name[5] = b'y';
    let bad: [(CreateRequest, Errno); 12] = [
        (
            CreateRequest {
                name: [0; 32],
                ..ok
            },
            Errno::EINVAL,
        ),
        (gap, Errno::EINVAL),
        (CreateRequest { flags: 1, ..ok }, Errno::EINVAL),
        (CreateRequest { max_vcpus: 0, ..ok }, Errno::EINVAL),
        (CreateRequest { max_vcpus: 9, ..ok }, Errno::EINVAL),
        (
            CreateRequest {
                max_vcpus: 33,
                ..ok
            },
            Errno::EINVAL,
        ),
        (
            CreateRequest {
                max_memory_kib: 0,
                ..ok
            },
            Errno::EINVAL,
        ),
        (
            CreateRequest {
                max_memory_kib: 6,
                ..ok
            },
            Errno::EINVAL,
        ),
        (
            CreateRequest {
                max_memory_kib: (free + 1) * 4,
                ..ok
            },
            Errno::ENOMEM,
        ),
        (
            CreateRequest {
                max_memory_kib: u64::MAX - 3,
                ..ok
            },
            Errno::ENOMEM,
        ),
        (create_req("guest", 64, 1), Errno::EEXIST),
        (
            CreateRequest {
                header: ControlHeader {
                    interface_version: 2 << 16,
                    pad: 0,
                },
                ..ok
            },
            Errno::EACCES,
        ),
    ];
    for (request, errno) in bad {
        assert_eq!(
            control_rc(&mut w, DOM0, ctl::CONTROL_OP_CREATE, &request),
            e(errno),
            "{request:?}"
        );
    }
    // An unwritable response: nothing is created.
    w.put(DOM0, BUF, &ok);
    let r = w.ret(DOM0, ctl::HYPERVISOR_CONTROL_OP, [3, BUF, UNMAPPED, 0, 0]);
    assert_eq!(r, e(Errno::EFAULT));
    assert_eq!(w.t.len(), 2);
    assert_eq!(w.pool.free_frames(), free);
}

/// The table grows until the machine's frames run out: then `-ENOMEM`,
/// and the table holds exactly the domains created (a full table's
/// `-ENOSPC` is `domain::table`'s test).
#[test]
fn create_runs_out_of_memory() {
    let mut w = World::new();
    let before = w.t.len();
    let mut made = 0;
    let r = loop {
        let r = control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_CREATE,
            &create_req(&format!("d{made}"), 4, 1),
        );
        if r != 0 {
            break r;
        }
        made += 1;
        assert!(made < MAX_DOMAINS, "the machine has fewer frames than that");
    };
    assert_eq!(r, e(Errno::ENOMEM));
    assert!(made > 2);
    assert_eq!(w.t.len(), before + made);
}

// ---- destroy ----

#[test]
fn destroy_frees_everything_and_tells_dom0() {
    let mut w = World::new();
    let port = crate::event::ops::bind_virq(w.t.get_mut(DOM0).unwrap(), VIRQ_DOM_EXC, 0).unwrap();
    let free = w.pool.free_frames();
    let id = create(&mut w, "doomed", 16);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 16)
        ),
        0
    );
    assert!(!crate::event::is_pending(
        w.t.get(DOM0).unwrap(),
        &mut w.mem,
        port
    ));
    let out = control_call(
        &mut w,
        DOM0,
        ctl::CONTROL_OP_DESTROY,
        &DomainRequest::new(id),
    );
    assert_eq!(out, HypercallOutcome::DomainDestroyed(id));
    assert_eq!(out.rax(), 0);
    assert!(w.t.get(id).is_none());
    assert_eq!(w.pool.free_frames(), free);
    assert!(crate::event::is_pending(
        w.t.get(DOM0).unwrap(),
        &mut w.mem,
        port
    ));
    // The domid rests: the next domain gets another one.
    assert_ne!(create(&mut w, "next", 1), id);
}

#[test]
fn a_big_domain_is_populated_and_destroyed_in_slices() {
    let pages = 4 * SLICE_FRAMES + 7;
    let mut w = World::with_frames(pages + 256);
    let port = crate::event::ops::bind_virq(w.t.get_mut(DOM0).unwrap(), VIRQ_DOM_EXC, 0).unwrap();
    let free = w.pool.free_frames();
    let id = create(&mut w, "big", pages);
    // POPULATE: one call for the toolstack, five slices for the hypervisor.
    w.put(DOM0, BUF, &PopulateRequest::new(id, 0, pages));
    let first = w.call64(
        DOM0,
        ctl::HYPERVISOR_CONTROL_OP,
        [ctl::CONTROL_OP_POPULATE_MEMORY.into(), BUF, BUF2, 0, 0],
    );
    assert!(matches!(first, HypercallOutcome::Continue(_)));
    assert_eq!(w.domain(id).tot_pages(), SLICE_FRAMES, "one slice per call");
    assert_eq!(
        w.follow(DOM0, first, true),
        (HypercallOutcome::Return(0), 5)
    );
    assert_eq!(w.get::<PopulateResponse>(DOM0, BUF2).nr_done, pages);
    assert_eq!(w.domain(id).tot_pages(), pages);
    // DESTROY: the first slice leaves the domain dying, visible as such.
    let out = call_once(&mut w, ctl::CONTROL_OP_DESTROY, &DomainRequest::new(id));
    assert!(matches!(out, HypercallOutcome::Continue(_)));
    assert_eq!(w.domain(id).state(), DomainState::Dying);
    assert_eq!(w.domain(id).tot_pages(), pages - SLICE_FRAMES);
    assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_GETINFO, id), 0);
    let info: ctl::DomainInfo = w.get(DOM0, BUF2);
    assert_eq!(info.flags & ctl::DOMAIN_FLAG_DYING, ctl::DOMAIN_FLAG_DYING);
    // No new operation applies to it.
    let refused = [
        (
            ctl::CONTROL_OP_PAUSE,
            DomainRequest::new(id).as_bytes().to_vec(),
            Errno::EINVAL,
        ),
        (
            ctl::CONTROL_OP_UNPAUSE,
            DomainRequest::new(id).as_bytes().to_vec(),
            Errno::EINVAL,
        ),
        (
            ctl::CONTROL_OP_POPULATE_MEMORY,
            PopulateRequest::new(id, pages, 1).as_bytes().to_vec(),
            Errno::EINVAL,
        ),
        (
            ctl::CONTROL_OP_MAP_FOREIGN,
            MapRequest::new(id, 0, 1, MAP_AT).as_bytes().to_vec(),
            Errno::ESRCH,
        ),
    ];
    for (op, request, errno) in refused {
        assert_eq!(
            control_rc(&mut w, DOM0, op, request.as_slice()),
            e(errno),
            "op {op}"
        );
    }
    assert!(!crate::event::is_pending(
        w.t.get(DOM0).unwrap(),
        &mut w.mem,
        port
    ));
    // A new DESTROY (a retry, or another vCPU) carries on where it was.
    let again = call_once(&mut w, ctl::CONTROL_OP_DESTROY, &DomainRequest::new(id));
    assert_eq!(w.domain(id).tot_pages(), pages - 2 * SLICE_FRAMES);
    assert_eq!(
        w.follow(DOM0, again, true),
        (HypercallOutcome::DomainDestroyed(id), 4)
    );
    assert!(w.t.get(id).is_none());
    assert_eq!(w.pool.free_frames(), free);
    assert!(crate::event::is_pending(
        w.t.get(DOM0).unwrap(),
        &mut w.mem,
        port
    ));
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, id),
        e(Errno::ESRCH)
    );
}

/// A vCPU still loaded on another pCPU keeps its domain's memory: DESTROY
/// makes the domain dying (so that pCPU stops it) and comes back without
/// freeing anything until the vCPU is put down.
#[test]
fn destroy_waits_while_a_vcpu_is_loaded_on_another_pcpu() {
    let mut w = World::new();
    let free = w.pool.free_frames();
    let id = create(&mut w, "running", 16);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 16)
        ),
        0
    );
    w.t.get_mut(id)
        .unwrap()
        .vcpu_mut(0)
        .unwrap()
        .set_loaded_on(Some(2));
    for _ in 0..3 {
        let out = call_once(&mut w, ctl::CONTROL_OP_DESTROY, &DomainRequest::new(id));
        assert!(matches!(out, HypercallOutcome::Continue(_)));
        assert_eq!(w.domain(id).state(), DomainState::Dying);
        assert_eq!(w.domain(id).tot_pages(), 16, "nothing freed while loaded");
        assert!(!w.domain(id).vcpu_may_run(0), "its pCPU is told to stop it");
    }
    w.t.get_mut(id)
        .unwrap()
        .vcpu_mut(0)
        .unwrap()
        .set_loaded_on(None);
    let out = control_call(
        &mut w,
        DOM0,
        ctl::CONTROL_OP_DESTROY,
        &DomainRequest::new(id),
    );
    assert_eq!(out, HypercallOutcome::DomainDestroyed(id));
    assert_eq!(w.pool.free_frames(), free);
}

/// A populate whose host runs out of frames between slices fails with
/// `-ENOMEM` and reports the frames it did.
#[test]
fn a_populate_cut_short_reports_its_progress() {
    let pages = 2 * SLICE_FRAMES;
    let mut w = World::with_frames(pages + 256);
    let id = create(&mut w, "short", pages);
    let first = call_once(
        &mut w,
        ctl::CONTROL_OP_POPULATE_MEMORY,
        &PopulateRequest::new(id, 0, pages),
    );
    // Someone else takes the host's frames meanwhile.
    let taken: Vec<_> = std::iter::from_fn(|| w.pool.alloc()).collect();
    let (out, _) = w.follow(DOM0, first, true);
    assert_eq!(out, HypercallOutcome::Return(e(Errno::ENOMEM)));
    assert_eq!(w.get::<PopulateResponse>(DOM0, BUF2).nr_done, SLICE_FRAMES);
    assert_eq!(w.domain(id).tot_pages(), SLICE_FRAMES);
    taken.into_iter().for_each(|m| w.pool.free(m));
}

#[test]
fn a_forged_progress_is_refused() {
    let mut w = World::new();
    let id = create(&mut w, "p", 8);
    w.put(DOM0, BUF, &PopulateRequest::new(id, 0, 4));
    for progress in [4u64, 5, 0xff_ffff] {
        let op = u64::from(ctl::CONTROL_OP_POPULATE_MEMORY) | progress << 8;
        let r = w.ret(DOM0, ctl::HYPERVISOR_CONTROL_OP, [op, BUF, BUF2, 0, 0]);
        assert_eq!(r, e(Errno::EINVAL), "progress {progress}");
    }
    // Only a populate continues: other ops with progress bits are unknown.
    w.put(DOM0, BUF, &DomainRequest::new(id));
    let op = u64::from(ctl::CONTROL_OP_GETINFO) | 1 << 8;
    let r = w.ret(DOM0, ctl::HYPERVISOR_CONTROL_OP, [op, BUF, BUF2, 0, 0]);
    assert_eq!(r, e(Errno::ENOSYS));
    assert_eq!(w.domain(id).tot_pages(), 0);
}

/// One call of control op `op` from dom0, not followed if it continues.
fn call_once<T: IntoBytes + Immutable>(w: &mut World, op: u32, request: &T) -> HypercallOutcome {
    w.put(DOM0, BUF, request);
    w.call64(
        DOM0,
        ctl::HYPERVISOR_CONTROL_OP,
        [op.into(), BUF, BUF2, 0, 0],
    )
}

#[test]
fn a_domu_shutting_down_tells_dom0() {
    let mut w = World::new();
    let port = crate::event::ops::bind_virq(w.t.get_mut(DOM0).unwrap(), VIRQ_DOM_EXC, 0).unwrap();
    w.put(DOMU, BUF, &abi::xen::sched::SchedShutdown { reason: 0 });
    let sched_op = abi::xen::hypercall::SCHED_OP;
    let out = w.call64(
        DOMU,
        sched_op,
        [abi::xen::sched::SCHEDOP_SHUTDOWN.into(), BUF, 0, 0, 0],
    );
    assert_eq!(out, HypercallOutcome::Shutdown(ShutdownReason::Poweroff));
    assert!(crate::event::is_pending(
        w.t.get(DOM0).unwrap(),
        &mut w.mem,
        port
    ));
}

#[test]
fn destroy_errors() {
    let mut w = World::new();
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, DOM0),
        e(Errno::EPERM)
    );
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, 77),
        e(Errno::ESRCH)
    );
    let padded = DomainRequest {
        pad: [0, 0, 0, 0, 0, 1],
        ..DomainRequest::new(DOMU)
    };
    assert_eq!(
        control_rc(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, &padded),
        e(Errno::EINVAL)
    );
    assert_eq!(w.t.len(), 2);
}

// ---- pause / unpause ----

#[test]
fn pauses_are_counted_as_in_xen() {
    let mut w = World::new();
    let pause = |w: &mut World, id| domain_op(w, DOM0, ctl::CONTROL_OP_PAUSE, id);
    let unpause = |w: &mut World, id| domain_op(w, DOM0, ctl::CONTROL_OP_UNPAUSE, id);
    assert_eq!(pause(&mut w, DOMU), 0);
    assert_eq!(pause(&mut w, DOMU), 0);
    assert_eq!(w.domain(DOMU).pause_count(), 2);
    assert_eq!(unpause(&mut w, DOMU), 0);
    assert_eq!(w.domain(DOMU).state(), DomainState::Paused);
    assert_eq!(unpause(&mut w, DOMU), 0);
    assert_eq!(w.domain(DOMU).state(), DomainState::Running);
    assert_eq!(unpause(&mut w, DOMU), e(Errno::EINVAL), "not paused");
    assert_eq!(pause(&mut w, DOM0), e(Errno::EINVAL), "not itself");
    assert_eq!(pause(&mut w, 77), e(Errno::ESRCH));
    for _ in 0..MAX_PAUSE_COUNT {
        assert_eq!(pause(&mut w, DOMU), 0);
    }
    assert_eq!(pause(&mut w, DOMU), e(Errno::EOVERFLOW));
    let id = create(&mut w, "new", 1);
    assert_eq!(unpause(&mut w, id), 0, "a new domain is paused once");
    assert_eq!(w.domain(id).state(), DomainState::Running);
    w.t.get_mut(id).unwrap().shutdown(ShutdownReason::Poweroff);
    assert_eq!(pause(&mut w, id), e(Errno::EINVAL));
    assert_eq!(unpause(&mut w, id), e(Errno::EINVAL));
}

// ---- populate ----

#[test]
fn populate_gives_zeroed_frames_all_or_nothing() {
    let mut w = World::new();
    let id = create(&mut w, "p", 8);
    w.put(DOM0, BUF2, &PopulateResponse { nr_done: 99 });
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0x10, 4)
        ),
        0
    );
    assert_eq!(w.get::<PopulateResponse>(DOM0, BUF2).nr_done, 4);
    assert_eq!(w.domain(id).tot_pages(), 4);
    for g in 0x10..0x14 {
        let entry = mapped(&w, id, g).unwrap();
        assert_eq!(entry.kind, P2mKind::Owned);
        assert!(w.mem.frame(entry.mfn).iter().all(|b| *b == 0));
    }
    let free = w.pool.free_frames();
    let bad = [
        (PopulateRequest::new(id, 0, 0), Errno::EINVAL),
        (
            PopulateRequest::new(id, 0, ctl::POPULATE_MAX_FRAMES + 1),
            Errno::EINVAL,
        ),
        (PopulateRequest::new(id, u64::MAX, 2), Errno::EINVAL),
        (PopulateRequest::new(id, 0x0e, 4), Errno::EEXIST),
        (PopulateRequest::new(id, 0x20, 5), Errno::ENOMEM),
        (PopulateRequest::new(77, 0, 1), Errno::ESRCH),
        (
            PopulateRequest {
                pad: [1, 0, 0, 0, 0, 0],
                ..PopulateRequest::new(id, 0, 1)
            },
            Errno::EINVAL,
        ),
    ];
    for (request, errno) in bad {
        let r = control_rc(&mut w, DOM0, ctl::CONTROL_OP_POPULATE_MEMORY, &request);
        assert_eq!(r, e(errno), "{request:?}");
        assert_eq!(w.domain(id).tot_pages(), 4);
        assert_eq!(w.pool.free_frames(), free);
    }
    assert!(mapped(&w, id, 0x0e).is_none(), "undone");
    w.put(DOM0, BUF, &PopulateRequest::new(id, 0, 1));
    let r = w.ret(DOM0, ctl::HYPERVISOR_CONTROL_OP, [7, BUF, UNMAPPED, 0, 0]);
    assert_eq!((r, w.domain(id).tot_pages()), (e(Errno::EFAULT), 4));
}

// ---- foreign mappings ----

#[test]
fn map_foreign_shares_the_frames_read_write() {
    let mut w = World::new();
    let id = create(&mut w, "built", 8);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 8)
        ),
        0
    );
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_MAP_FOREIGN,
            &MapRequest::new(id, 2, 4, MAP_AT)
        ),
        0
    );
    for i in 0..4 {
        let there = mapped(&w, DOM0, MAP_AT + i).unwrap();
        let own = mapped(&w, id, 2 + i).unwrap();
        assert_eq!(
            (there.mfn, there.kind, there.access.write),
            (own.mfn, P2mKind::Shared, true)
        );
    }
    // The builder writes through its mapping; the new domain sees it.
    w.put(DOM0, (MAP_AT + 1) << 12, &0x1234_5678u32);
    assert_eq!(w.get::<u32>(id, 3 << 12), 0x1234_5678);
    assert_eq!(w.domain(DOM0).foreign().nr_held(), 4);
    assert_eq!(w.domain(id).foreign().lent_count(Gfn(2)), 1);
    // A lent frame cannot be replaced under the mapping.
    let xatp = XenAddToPhysmap {
        domid: id,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: 3,
    };
    w.put(DOM0, BUF, &xatp);
    let r = w.ret(
        DOM0,
        abi::xen::hypercall::MEMORY_OP,
        [XENMEM_ADD_TO_PHYSMAP.into(), BUF, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::EBUSY), "in use, as under a grant mapping");
    assert_eq!(mapped(&w, id, 3).unwrap().kind, P2mKind::Owned);
    let generation = w.domain(DOM0).p2m_generation();
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_UNMAP_FOREIGN,
            &UnmapRequest::new(MAP_AT, 4)
        ),
        0
    );
    assert!(
        w.domain(DOM0).p2m_generation() > generation,
        "the run loop must flush"
    );
    assert!((0..4).all(|i| mapped(&w, DOM0, MAP_AT + i).is_none()));
    assert_eq!(w.domain(id).foreign().nr_lent(), 0);
    assert_eq!(
        w.get::<u32>(id, 3 << 12),
        0x1234_5678,
        "the frame stays its owner's"
    );
}

#[test]
fn map_foreign_errors_change_nothing() {
    let mut w = World::new();
    let id = create(&mut w, "built", 8);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 4)
        ),
        0
    );
    let free = w.pool.free_frames();
    let mut padded = MapRequest::new(id, 0, 1, MAP_AT);
    padded.pad = 1;
    let bad = [
        (MapRequest::new(id, 0, 0, MAP_AT), Errno::EINVAL),
        (
            MapRequest::new(id, 0, ctl::MAP_MAX_FRAMES + 1, MAP_AT),
            Errno::EINVAL,
        ),
        (MapRequest::new(DOM0, 0, 1, MAP_AT), Errno::EINVAL),
        (MapRequest::new(id, 0, 2, RAM_PAGES - 1), Errno::EINVAL),
        (MapRequest::new(id, 0, 2, u64::MAX), Errno::EINVAL),
        (MapRequest::new(id, 2, 4, MAP_AT), Errno::ENOENT),
        (MapRequest::new(id, u64::MAX, 2, MAP_AT), Errno::ENOENT),
        (MapRequest::new(77, 0, 1, MAP_AT), Errno::ESRCH),
        (padded, Errno::EINVAL),
    ];
    for (request, errno) in bad {
        let r = control_rc(&mut w, DOM0, ctl::CONTROL_OP_MAP_FOREIGN, &request);
        assert_eq!(r, e(errno), "{request:?}");
        assert_eq!(w.domain(DOM0).foreign().nr_held(), 0);
        assert_eq!(w.domain(id).foreign().nr_lent(), 0);
        assert_eq!(w.pool.free_frames(), free);
        assert!(mapped(&w, DOM0, MAP_AT).is_none());
    }
    // The guest's own shared info is not RAM it owns.
    let xatp = XenAddToPhysmap {
        domid: id,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: 8,
    };
    w.put(DOM0, BUF, &xatp);
    let r = w.ret(
        DOM0,
        abi::xen::hypercall::MEMORY_OP,
        [XENMEM_ADD_TO_PHYSMAP.into(), BUF, 0, 0, 0],
    );
    assert_eq!(r, 0);
    let r = control_rc(
        &mut w,
        DOM0,
        ctl::CONTROL_OP_MAP_FOREIGN,
        &MapRequest::new(id, 8, 1, MAP_AT),
    );
    assert_eq!(r, e(Errno::ENOENT));
}

#[test]
fn unmap_foreign_is_all_or_nothing() {
    let mut w = World::new();
    let id = create(&mut w, "built", 4);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 4)
        ),
        0
    );
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_MAP_FOREIGN,
            &MapRequest::new(id, 0, 2, MAP_AT)
        ),
        0
    );
    let bad = [
        (UnmapRequest::new(MAP_AT, 3), Errno::EINVAL),
        (UnmapRequest::new(MAP_AT, 0), Errno::EINVAL),
        (
            UnmapRequest::new(MAP_AT, ctl::MAP_MAX_FRAMES + 1),
            Errno::EINVAL,
        ),
        (UnmapRequest::new(0, 1), Errno::EINVAL),
        (UnmapRequest::new(u64::MAX, 2), Errno::EINVAL),
        (
            UnmapRequest {
                pad: 1,
                ..UnmapRequest::new(MAP_AT, 1)
            },
            Errno::EINVAL,
        ),
    ];
    for (request, errno) in bad {
        let r = control_rc(&mut w, DOM0, ctl::CONTROL_OP_UNMAP_FOREIGN, &request);
        assert_eq!(r, e(errno), "{request:?}");
        assert_eq!(w.domain(DOM0).foreign().nr_held(), 2);
    }
    assert_eq!(
        mapped(&w, DOM0, 0).unwrap().kind,
        P2mKind::Owned,
        "its RAM stays"
    );
}

#[test]
fn create_populate_map_unmap_destroy_returns_every_frame() {
    for unmap_first in [true, false] {
        let mut w = World::new();
        let free = w.pool.free_frames();
        let id = create(&mut w, "round", 64);
        assert_eq!(
            control_rc(
                &mut w,
                DOM0,
                ctl::CONTROL_OP_POPULATE_MEMORY,
                &PopulateRequest::new(id, 0, 40)
            ),
            0
        );
        assert_eq!(
            control_rc(
                &mut w,
                DOM0,
                ctl::CONTROL_OP_MAP_FOREIGN,
                &MapRequest::new(id, 4, 32, MAP_AT)
            ),
            0
        );
        if unmap_first {
            assert_eq!(
                control_rc(
                    &mut w,
                    DOM0,
                    ctl::CONTROL_OP_UNMAP_FOREIGN,
                    &UnmapRequest::new(MAP_AT, 32)
                ),
                0
            );
        }
        let generation = w.domain(DOM0).p2m_generation();
        assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, id), 0);
        assert_eq!(w.pool.free_frames(), free, "unmap first: {unmap_first}");
        assert!((0..32).all(|i| mapped(&w, DOM0, MAP_AT + i).is_none()));
        assert_eq!(w.domain(DOM0).foreign().nr_held(), 0);
        assert_eq!(w.domain(DOM0).p2m_generation() > generation, !unmap_first);
    }
}

// ---- vCPU context ----

#[test]
fn set_vcpu_context_starts_a_pvh_vcpu() {
    let mut w = World::new();
    let id = create(&mut w, "v", 4);
    let r = control_call(
        &mut w,
        DOM0,
        ctl::CONTROL_OP_SET_VCPU_CONTEXT,
        &SetVcpuContextRequest::new(id, 0, pvh_regs(0x10_0000, 0x8000)),
    );
    assert_eq!(
        r,
        HypercallOutcome::VcpuStarted {
            domid: id,
            vcpu_id: 0
        }
    );
    let v = w.domain(id).vcpu(0).unwrap();
    assert_eq!(v.run_state(), VcpuRunState::Runnable);
    assert_eq!(
        v.pending_context(),
        Some(&VcpuEntryState::pvh(0x10_0000, 0x8000))
    );
    // Accessed and busy bits come from Xen's rules; NXE and CR4 bits pass.
    let mut regs = pvh_regs(0x2000, 0);
    regs.cs_ar = 0xc9a;
    regs.tr_ar = 0x89;
    regs.efer = 1 << 11;
    regs.cr4 = 1 << 5;
    regs.eflags = 0x200;
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_SET_VCPU_CONTEXT,
            &SetVcpuContextRequest::new(id, 0, regs)
        ),
        e(Errno::EBUSY),
        "set once"
    );
    let id2 = create(&mut w, "w", 4);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_SET_VCPU_CONTEXT,
            &SetVcpuContextRequest::new(id2, 0, regs)
        ),
        0
    );
    let entry = *w.domain(id2).vcpu(0).unwrap().pending_context().unwrap();
    assert_eq!((entry.cs.attrib, entry.tr.attrib), (0xc9b, 0x8b));
    assert_eq!(
        (entry.efer, entry.cr4, entry.rflags),
        (1 << 11, 1 << 5, 0x202)
    );
}

#[test]
fn set_vcpu_context_refuses_what_is_not_a_pvh_entry() {
    let mut w = World::new();
    let id = create(&mut w, "v", 4);
    let ok = pvh_regs(0x10_0000, 0x8000);
    let bad: [(&str, VcpuHvmX86_32); 26] = [
        ("PE clear", VcpuHvmX86_32 { cr0: 0x10, ..ok }),
        (
            "PG set",
            VcpuHvmX86_32 {
                cr0: 0x8000_0011,
                ..ok
            },
        ),
        (
            "NW without CD",
            VcpuHvmX86_32 {
                cr0: 0x2000_0011,
                ..ok
            },
        ),
        (
            "reserved CR0",
            VcpuHvmX86_32 {
                cr0: 0x11 | (1 << 8),
                ..ok
            },
        ),
        ("CR3", VcpuHvmX86_32 { cr3: 0x1000, ..ok }),
        ("CR4", VcpuHvmX86_32 { cr4: 1 << 13, ..ok }),
        (
            "EFER.LMA",
            VcpuHvmX86_32 {
                efer: (1 << 10) | (1 << 8),
                ..ok
            },
        ),
        ("EFER.SCE", VcpuHvmX86_32 { efer: 1, ..ok }),
        (
            "EFLAGS reserved",
            VcpuHvmX86_32 {
                eflags: 0x2 | (1 << 3),
                ..ok
            },
        ),
        (
            "EFLAGS.VM",
            VcpuHvmX86_32 {
                eflags: 0x2 | (1 << 17),
                ..ok
            },
        ),
        ("EAX", VcpuHvmX86_32 { eax: 1, ..ok }),
        ("ESP", VcpuHvmX86_32 { esp: 0x9000, ..ok }),
        ("pad1", VcpuHvmX86_32 { pad1: 1, ..ok }),
        (
            "pad2",
            VcpuHvmX86_32 {
                pad2: [0, 0, 1],
                ..ok
            },
        ),
        ("CS data", VcpuHvmX86_32 { cs_ar: 0xc93, ..ok }),
        ("CS 16-bit", VcpuHvmX86_32 { cs_ar: 0x89b, ..ok }),
        ("CS long", VcpuHvmX86_32 { cs_ar: 0xe9b, ..ok }),
        ("CS DPL 3", VcpuHvmX86_32 { cs_ar: 0xcfb, ..ok }),
        ("CS not present", VcpuHvmX86_32 { cs_ar: 0xc1b, ..ok }),
        (
            "CS base",
            VcpuHvmX86_32 {
                cs_base: 0x1000,
                ..ok
            },
        ),
        (
            "CS attribute bit 12",
            VcpuHvmX86_32 {
                cs_ar: 0x1c9b,
                ..ok
            },
        ),
        (
            "SS read-only",
            VcpuHvmX86_32 {
                ss_ar: 0xc91,
                ds_ar: 0xc91,
                es_ar: 0xc91,
                ..ok
            },
        ),
        ("DS differs", VcpuHvmX86_32 { ds_ar: 0x493, ..ok }),
        ("ES null", VcpuHvmX86_32 { es_ar: 0, ..ok }),
        ("TR code", VcpuHvmX86_32 { tr_ar: 0x9b, ..ok }),
        ("TR 16-bit TSS", VcpuHvmX86_32 { tr_ar: 0x83, ..ok }),
    ];
    for (what, regs) in bad {
        let r = control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_SET_VCPU_CONTEXT,
            &SetVcpuContextRequest::new(id, 0, regs),
        );
        assert_eq!(r, e(Errno::EINVAL), "{what}");
        assert_eq!(
            w.domain(id).vcpu(0).unwrap().run_state(),
            VcpuRunState::Down,
            "{what}"
        );
    }
    let set =
        |w: &mut World, request| control_rc(w, DOM0, ctl::CONTROL_OP_SET_VCPU_CONTEXT, &request);
    assert_eq!(
        set(&mut w, SetVcpuContextRequest::new(id, 1, ok)),
        e(Errno::ENOENT)
    );
    assert_eq!(
        set(&mut w, SetVcpuContextRequest::new(77, 0, ok)),
        e(Errno::ESRCH)
    );
    assert_eq!(
        set(&mut w, SetVcpuContextRequest::new(DOMU, 1, ok)),
        e(Errno::EBUSY),
        "running"
    );
    let padded = SetVcpuContextRequest {
        pad: 1,
        ..SetVcpuContextRequest::new(id, 0, ok)
    };
    assert_eq!(set(&mut w, padded), e(Errno::EINVAL));
}

// ---- statistics and host facts ----

#[test]
fn get_stats_reports_counters() {
    let mut w = World::new();
    let d = w.t.get_mut(DOMU).unwrap();
    for code in [0x81, 0x400, 0x400, 0x72, 0x400, 0x72] {
        d.exits_mut().record(code);
    }
    d.hypercalls_mut().record(18);
    d.vcpu_mut(1).unwrap().account(500);
    assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_GET_STATS, DOMU), 0);
    let s: DomainStats = w.get(DOM0, BUF2);
    assert_eq!((s.cpu_time_ns, s.nr_vcpus, s.nr_exit_codes), (500, 2, 3));
    let exits: Vec<(u64, u64)> = s.exits[..3]
        .iter()
        .map(|x| (x.exit_code, x.count))
        .collect();
    assert_eq!(exits, [(0x400, 3), (0x72, 2), (0x81, 1)]);
    assert_eq!(s.exits[3], ctl::ExitCounter::default());
    assert_eq!(s.hypercalls[18], 1);
    assert_eq!(s.hypercalls.iter().sum::<u64>(), 1);
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_GET_STATS, 77),
        e(Errno::ESRCH)
    );
}

#[test]
fn physinfo_reports_the_host() {
    let mut w = World::new();
    let id = create(&mut w, "x", 1);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_PHYSINFO,
            &ControlHeader::CURRENT
        ),
        0
    );
    let p: Physinfo = w.get(DOM0, BUF2);
    assert_eq!((p.nr_pcpus, p.nr_domains, p.tsc_khz), (4, 3, 1_000_000));
    assert_eq!(p.total_memory_kib, TOTAL_FRAMES * 4);
    assert_eq!(p.free_memory_kib, w.pool.free_frames() * 4);
    assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, id), 0);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_PHYSINFO,
            &ControlHeader::CURRENT
        ),
        0
    );
    assert_eq!(w.get::<Physinfo>(DOM0, BUF2).nr_domains, 2);
    let old = ControlHeader {
        interface_version: 0,
        pad: 0,
    };
    assert_eq!(
        control_rc(&mut w, DOM0, ctl::CONTROL_OP_PHYSINFO, &old),
        e(Errno::EACCES)
    );
}

// ---- privilege ----

#[test]
fn a_domu_gets_eperm_for_every_op_and_nothing_changes() {
    let mut w = World::new();
    let id = create(&mut w, "target", 4);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(id, 0, 2)
        ),
        0
    );
    let before = (w.pool.free_frames(), w.t.len(), w.ram(DOMU), w.ram(DOM0));
    let ops: [(u32, Vec<u8>); 14] = [
        (
            ctl::CONTROL_OP_GETINFO,
            DomainRequest::new(id).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_LIST,
            ctl::ListRequest::default().as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_CREATE,
            create_req("evil", 4, 1).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_DESTROY,
            DomainRequest::new(id).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_PAUSE,
            DomainRequest::new(DOM0).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_UNPAUSE,
            DomainRequest::new(id).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_POPULATE_MEMORY,
            PopulateRequest::new(id, 8, 1).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_MAP_FOREIGN,
            MapRequest::new(id, 0, 1, MAP_AT).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_UNMAP_FOREIGN,
            UnmapRequest::new(MAP_AT, 1).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_SET_VCPU_CONTEXT,
            SetVcpuContextRequest::new(id, 0, pvh_regs(1, 2))
                .as_bytes()
                .to_vec(),
        ),
        (
            ctl::CONTROL_OP_GET_STATS,
            DomainRequest::new(DOM0).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_PHYSINFO,
            ControlHeader::CURRENT.as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_SCHED_CREDIT,
            ctl::SchedCreditRequest::new(id, 1, 100).as_bytes().to_vec(),
        ),
        (
            ctl::CONTROL_OP_SET_VCPU_AFFINITY,
            ctl::VcpuAffinityRequest::new(id, 0, 1).as_bytes().to_vec(),
        ),
    ];
    let mut domu_ram = before.2.clone();
    for (op, request) in ops {
        let mut buf = [0u8; 256];
        buf[..request.len()].copy_from_slice(&request);
        w.put(DOMU, BUF, &buf);
        domu_ram[BUF as usize..BUF as usize + buf.len()].copy_from_slice(&buf);
        let r = w.ret(
            DOMU,
            ctl::HYPERVISOR_CONTROL_OP,
            [op.into(), BUF, BUF2, 0, 0],
        );
        assert_eq!(r, e(Errno::EPERM), "op {op}");
        assert_eq!(
            (w.pool.free_frames(), w.t.len()),
            (before.0, before.1),
            "op {op}"
        );
        assert_eq!(w.ram(DOMU), domu_ram, "op {op}: no response written");
        assert_eq!(w.ram(DOM0), before.3, "op {op}");
    }
    let d = w.domain(id);
    assert_eq!(
        (d.state(), d.tot_pages(), d.pause_count()),
        (DomainState::Paused, 2, 1)
    );
    assert_eq!(d.vcpu(0).unwrap().run_state(), VcpuRunState::Down);
    assert_eq!(w.domain(DOM0).state(), DomainState::Running);
}

// ---- random sequences ----

#[derive(Clone, Debug)]
enum Op {
    Create(u64),
    Populate(usize, u64, u64),
    Map(usize, u64, u64, u32),
    Unmap(u64, u32),
    Pause(usize),
    Unpause(usize),
    Destroy(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..24).prop_map(Op::Create),
        (any::<usize>(), 0u64..24, 1u64..12).prop_map(|(i, g, n)| Op::Populate(i, g, n)),
        (any::<usize>(), 0u64..24, 0u64..24, 1u32..8).prop_map(|(i, g, c, n)| Op::Map(i, g, c, n)),
        (0u64..24, 1u32..8).prop_map(|(c, n)| Op::Unmap(c, n)),
        any::<usize>().prop_map(Op::Pause),
        any::<usize>().prop_map(Op::Unpause),
        any::<usize>().prop_map(Op::Destroy),
    ]
}

proptest! {
    /// dom0 drives random control ops: frames are never leaked or freed
    /// twice (the simulated pool panics on a double free), dom0 never
    /// maps a frame that is not its target's, and domids rest.
    #[test]
    fn random_control_sequences(ops in prop::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        let start = w.pool.free_frames();
        let base = usage(&w);
        let mut live: Vec<DomId> = Vec::new();
        let mut destroyed_at: std::collections::BTreeMap<DomId, u64> = Default::default();
        let mut created = 0u64;
        for (n, op) in ops.into_iter().enumerate() {
            let pick = |i: usize| live.get(i % live.len().max(1)).copied();
            match op {
                Op::Create(pages) => {
                    let r = control_rc(&mut w, DOM0, ctl::CONTROL_OP_CREATE, &create_req(&format!("d{n}"), pages * 4, 1));
                    if r == 0 {
                        let id = w.get::<CreateResponse>(DOM0, BUF2).domid;
                        if let Some(at) = destroyed_at.remove(&id) {
                            prop_assert!(created - at >= DOMID_REUSE_DELAY, "domid {} reused early", id);
                        }
                        live.push(id);
                        created += 1;
                    }
                }
                Op::Populate(i, g, count) => if let Some(id) = pick(i) {
                    let before = w.domain(id).tot_pages();
                    let r = control_rc(&mut w, DOM0, ctl::CONTROL_OP_POPULATE_MEMORY, &PopulateRequest::new(id, g, count));
                    prop_assert_eq!(w.domain(id).tot_pages(), before + if r == 0 { count } else { 0 });
                },
                Op::Map(i, g, c, count) => if let Some(id) = pick(i) {
                    let _ = control_rc(&mut w, DOM0, ctl::CONTROL_OP_MAP_FOREIGN, &MapRequest::new(id, g, count, MAP_AT + c));
                },
                Op::Unmap(c, count) => {
                    let _ = control_rc(&mut w, DOM0, ctl::CONTROL_OP_UNMAP_FOREIGN, &UnmapRequest::new(MAP_AT + c, count));
                }
                Op::Pause(i) => if let Some(id) = pick(i) {
                    prop_assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_PAUSE, id), 0);
                },
                Op::Unpause(i) => if let Some(id) = pick(i) {
                    let paused = w.domain(id).state() == DomainState::Paused;
                    let r = domain_op(&mut w, DOM0, ctl::CONTROL_OP_UNPAUSE, id);
                    prop_assert_eq!(r == 0, paused);
                },
                Op::Destroy(i) => if let Some(id) = pick(i) {
                    live.retain(|d| *d != id);
                    prop_assert_eq!(control_call(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, &DomainRequest::new(id)), HypercallOutcome::DomainDestroyed(id));
                    destroyed_at.insert(id, created);
                },
            }
            // Every foreign mapping in dom0 is a live domain's own frame.
            let dom0 = w.domain(DOM0);
            for (gfn, m) in dom0.foreign().held() {
                let owner = w.t.get(m.owner);
                prop_assert!(owner.is_some(), "mapping of destroyed d{}", m.owner);
                let own = owner.unwrap().p2m().translate(&w.mem, m.owner_gfn);
                prop_assert_eq!(own.map(|e| (e.mfn, e.kind)), Some((m.mfn, P2mKind::Owned)));
                prop_assert_eq!(dom0.p2m().translate(&w.mem, gfn).map(|e| e.mfn), Some(m.mfn));
            }
            let shared_in_dom0 = (0..32u64)
                .filter(|c| mapped(&w, DOM0, MAP_AT + c).is_some())
                .count();
            prop_assert_eq!(shared_in_dom0, dom0.foreign().nr_held());
            let lent: usize = w.t.iter().map(|d| d.foreign().nr_lent()).sum();
            prop_assert!(lent <= dom0.foreign().nr_held());
            prop_assert_eq!(start - w.pool.free_frames(), usage(&w) - base);
        }
        for id in live {
            prop_assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, id), 0);
        }
        prop_assert_eq!(w.pool.free_frames(), start);
        prop_assert_eq!(w.domain(DOM0).foreign().nr_held(), 0);
    }
}

/// Frames all domains hold: owned, NPT and shared info.
fn usage(w: &World) -> u64 {
    w.t.iter()
        .map(|d| d.tot_pages() + d.p2m().table_frames() + 1)
        .sum()
}

#[test]
fn readconsole_copies_the_log_for_dom0_only() {
    use abi::control::{
        ReadConsoleRequest, ReadConsoleResponse, CONTROL_OP_READCONSOLE, HYPERVISOR_CONTROL_OP,
    };
    let mut w = World::new();
    let req = ReadConsoleRequest::new(BUF2, 8, 4);
    w.put(DOM0, BUF, &req);
    let op = [CONTROL_OP_READCONSOLE.into(), BUF, BUF + 0x100, 0, 0];
    assert_eq!(w.ret(DOM0, HYPERVISOR_CONTROL_OP, op), 0);
    assert_eq!(w.bytes(DOM0, BUF2, 8), b"core: te");
    let reply: ReadConsoleResponse = w.get(DOM0, BUF + 0x100);
    assert_eq!((reply.count, reply.total), (8, 19));
    w.put(DOMU, BUF, &req);
    assert_eq!(w.ret(DOMU, HYPERVISOR_CONTROL_OP, op), e(Errno::EPERM));
}

/// A 32-bit caller's registers hold the continuation too: the progress
/// sits in bits 31:8 of the op argument.
#[test]
fn a_32_bit_caller_populates_in_slices_too() {
    let pages = 2 * SLICE_FRAMES + 1;
    let mut w = World::with_frames(pages + 256);
    let id = create(&mut w, "compat", pages);
    w.put(DOM0, BUF, &PopulateRequest::new(id, 0, pages));
    let op = ctl::CONTROL_OP_POPULATE_MEMORY;
    let nr = ctl::HYPERVISOR_CONTROL_OP as u32;
    assert_eq!(w.ret32(DOM0, nr, [op, BUF as u32, BUF2 as u32, 0, 0]), 0);
    assert_eq!(w.get::<PopulateResponse>(DOM0, BUF2).nr_done, pages);
    assert_eq!(w.domain(id).tot_pages(), pages);
}

#[test]
fn set_max_mem_limits_populate_and_may_go_below_what_is_held() {
    let mut w = World::new();
    let set = |w: &mut World, domid: DomId, max_memkb: u64| {
        let req = ctl::SetMaxMemRequest::new(domid, max_memkb);
        control_rc(w, DOM0, ctl::CONTROL_OP_SET_MAX_MEM, &req)
    };
    let held = w.domain(DOMU).tot_pages();
    // 4 KiB frames, rounded down.
    assert_eq!(set(&mut w, DOMU, (held + 1) * 4 + 3), 0);
    assert_eq!(w.domain(DOMU).max_pages(), held + 1);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(DOMU, 100, 2)
        ),
        e(Errno::ENOMEM)
    );
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(DOMU, 100, 1)
        ),
        0
    );
    // Below what it holds: nothing is taken, nothing more is given.
    assert_eq!(set(&mut w, DOMU, 4), 0);
    assert_eq!(w.domain(DOMU).tot_pages(), held + 1);
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            ctl::CONTROL_OP_POPULATE_MEMORY,
            &PopulateRequest::new(DOMU, 101, 1)
        ),
        e(Errno::ENOMEM)
    );
    // Above the per-domain limit, no such domain, reserved bytes, a domU.
    let too_much = (crate::domain::MAX_DOMAIN_PAGES + 1) * 4;
    assert_eq!(set(&mut w, DOMU, too_much), e(Errno::EINVAL));
    assert_eq!(w.domain(DOMU).max_pages(), 1);
    assert_eq!(set(&mut w, 77, 4096), e(Errno::ESRCH));
    let req = ctl::SetMaxMemRequest {
        pad: [1, 0, 0, 0, 0, 0],
        ..ctl::SetMaxMemRequest::new(DOMU, 4096)
    };
    assert_eq!(
        control_rc(&mut w, DOM0, ctl::CONTROL_OP_SET_MAX_MEM, &req),
        e(Errno::EINVAL)
    );
    assert_eq!(
        control_rc(&mut w, DOMU, ctl::CONTROL_OP_SET_MAX_MEM, &req),
        e(Errno::EPERM)
    );
}

// ---- scheduling (1.4) ----

#[test]
fn vcpu_stats_report_state_counters_and_sched_params() {
    let mut w = World::new();
    let d = w.t.get_mut(DOMU).unwrap();
    d.record_exit(1, 0x7b);
    d.record_exit(1, 0x7b);
    d.record_hypercall(0, 29);
    d.record_event(1);
    d.vcpu_mut(1).unwrap().account(700);
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_GET_VCPU_STATS, DOMU),
        0
    );
    let s: ctl::VcpuStatsResponse = w.get(DOM0, BUF2);
    assert_eq!((s.nr_vcpus, s.weight, s.cap), (2, 256, 0));
    let v1 = s.vcpus[1];
    assert_eq!(
        (
            v1.vcpu_id,
            v1.cpu_time_ns,
            v1.exits,
            v1.events,
            v1.hypercalls
        ),
        (1, 700, 2, 1, 0)
    );
    assert_eq!(
        (s.vcpus[0].hypercalls, v1.pcpu, v1.affinity),
        (1, ctl::PCPU_NONE, u64::MAX)
    );
    // The caller's own vCPU is the one running.
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_GET_VCPU_STATS, DOM0),
        0
    );
    let s: ctl::VcpuStatsResponse = w.get(DOM0, BUF2);
    assert_eq!(s.vcpus[0].state, ctl::VCPU_STATE_RUNNING);
    assert_eq!(
        domain_op(&mut w, DOM0, ctl::CONTROL_OP_GET_VCPU_STATS, 77),
        e(Errno::ESRCH)
    );
}

#[test]
fn sched_credit_sets_weight_and_cap_all_or_nothing() {
    let mut w = World::new();
    let op = ctl::CONTROL_OP_SCHED_CREDIT;
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            op,
            &ctl::SchedCreditRequest::new(DOMU, 512, 25)
        ),
        0
    );
    let info: ctl::SchedCreditInfo = w.get(DOM0, BUF2);
    assert_eq!((info.weight, info.cap), (512, 25));
    // Unchanged fields stay.
    let keep =
        ctl::SchedCreditRequest::new(DOMU, ctl::SCHED_WEIGHT_UNCHANGED, ctl::SCHED_CAP_UNCHANGED);
    assert_eq!(control_rc(&mut w, DOM0, op, &keep), 0);
    let info: ctl::SchedCreditInfo = w.get(DOM0, BUF2);
    assert_eq!((info.weight, info.cap), (512, 25));
    // A cap above 100 per pCPU (the simulated host has one): nothing
    // changes.
    assert_eq!(
        control_rc(
            &mut w,
            DOM0,
            op,
            &ctl::SchedCreditRequest::new(DOMU, 128, 101)
        ),
        e(Errno::EINVAL)
    );
    let s = w.t.get(DOMU).unwrap().sched();
    assert_eq!((s.weight(), s.cap()), (512, 25));
    assert_eq!(
        control_rc(&mut w, DOM0, op, &ctl::SchedCreditRequest::new(77, 1, 0)),
        e(Errno::ESRCH)
    );
    let padded = ctl::SchedCreditRequest {
        pad: 1,
        ..ctl::SchedCreditRequest::new(DOMU, 1, 0)
    };
    assert_eq!(control_rc(&mut w, DOM0, op, &padded), e(Errno::EINVAL));
    // An unwritable response: -EFAULT and nothing set.
    w.put(DOM0, BUF, &ctl::SchedCreditRequest::new(DOMU, 1, 0));
    let out = w.call64(
        DOM0,
        ctl::HYPERVISOR_CONTROL_OP,
        [op.into(), BUF, UNMAPPED, 0, 0],
    );
    assert_eq!(out, HypercallOutcome::Return(e(Errno::EFAULT)));
    assert_eq!(w.t.get(DOMU).unwrap().sched().weight(), 512);
}

#[test]
fn vcpu_affinity_must_name_a_vcpu_and_an_online_pcpu() {
    let mut w = World::new();
    let op = ctl::CONTROL_OP_SET_VCPU_AFFINITY;
    let pin = ctl::VcpuAffinityRequest::new;
    assert_eq!(control_rc(&mut w, DOM0, op, &pin(DOMU, 1, 0b11)), 0);
    let r: ctl::VcpuAffinityResponse = w.get(DOM0, BUF2);
    // One pCPU online in the simulated host.
    assert_eq!(r.effective, 0b01);
    let unit = |w: &World| w.t.get(DOMU).unwrap().sched().unit(1).unwrap().affinity.0;
    assert_eq!(unit(&w), 0b11);
    let offline = 1u64 << 63;
    for (bad, want) in [
        (pin(DOMU, 2, 1), Errno::EINVAL),
        (pin(DOMU, u32::MAX, 1), Errno::EINVAL),
        (pin(DOMU, 1, 0), Errno::EINVAL),
        (pin(DOMU, 1, offline), Errno::EINVAL),
        (pin(77, 0, 1), Errno::ESRCH),
    ] {
        assert_eq!(control_rc(&mut w, DOM0, op, &bad), e(want), "{bad:?}");
    }
    assert_eq!(unit(&w), 0b11);
}
