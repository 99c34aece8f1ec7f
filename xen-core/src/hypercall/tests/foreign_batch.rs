//! `XENMEM_add_to_physmap_batch` (`XENMAPSPACE_gmfn_foreign`) and
//! `XENMEM_remove_from_physmap`, as Linux's privcmd uses them from a PVH
//! control domain: per-entry `errs[]`, hostile arguments, limits,
//! continuations, release on destroy.

use abi::control::{self as ctl, CreateRequest, CreateResponse, PopulateRequest};
use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::memory::{
    XenAddToPhysmapBatch, XenRemoveFromPhysmap, XENMAPSPACE_GMFN_FOREIGN, XENMAPSPACE_GMFN_RANGE,
    XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP_BATCH, XENMEM_REMOVE_FROM_PHYSMAP,
};

use super::{control_rc, domain_op};
use crate::domain::foreign::MAX_FOREIGN_MAPS;
use crate::hypercall::sim::{e, World, BUF, BUF2, DOM0, DOMU, UNMAPPED};
use crate::hypercall::HypercallOutcome;
use crate::mm::{FramePool, Gfn};
use crate::paging::npt::{P2mKind, NPT_MAX_GFN};

/// Where the caller keeps `idxs`, `gpfns` and `errs` (in its RAM).
const IDXS: u64 = 0x9000;
const GPFNS: u64 = 0xc000;
const ERRS: u64 = 0xf000;
/// Where the control domU maps foreign frames: beyond its RAM.
const MAP_AT: u64 = 0x1000;
/// Frames of the domain built by the control domU.
const CHILD_PAGES: u64 = 8;

/// A world whose domU is a control domain, and a domain it created and
/// populated with [`CHILD_PAGES`] frames, each holding its GFN.
fn world_with_child() -> (World, DomId) {
    let mut w = World::with_control_domu(1024);
    let name = ctl::encode_domain_name("child").unwrap();
    let create = CreateRequest::new(name, CHILD_PAGES * 4, 1);
    assert_eq!(control_rc(&mut w, DOMU, ctl::CONTROL_OP_CREATE, &create), 0);
    let child = w.get::<CreateResponse>(DOMU, BUF2).domid;
    let populate = PopulateRequest::new(child, 0, CHILD_PAGES);
    let populate_op = ctl::CONTROL_OP_POPULATE_MEMORY;
    assert_eq!(control_rc(&mut w, DOMU, populate_op, &populate), 0);
    for gfn in 0..CHILD_PAGES {
        w.put(child, gfn << 12, &gfn);
    }
    (w, child)
}

/// A batch from `caller` of (idx, gpfn) pairs; the call's value and the
/// `errs[]` it wrote (pre-set to a marker).
fn batch(
    w: &mut World,
    caller: DomId,
    mapper: DomId,
    foreign: DomId,
    entries: &[(u64, u64)],
) -> (i64, Vec<i32>) {
    let request = XenAddToPhysmapBatch {
        domid: mapper,
        space: XENMAPSPACE_GMFN_FOREIGN as u16,
        size: u16::try_from(entries.len()).unwrap(),
        foreign_domid: foreign,
        idxs: IDXS,
        gpfns: GPFNS,
        errs: ERRS,
    };
    let idxs: Vec<u64> = entries.iter().map(|e| e.0).collect();
    let gpfns: Vec<u64> = entries.iter().map(|e| e.1).collect();
    w.put(caller, IDXS, idxs.as_slice());
    w.put(caller, GPFNS, gpfns.as_slice());
    w.put(caller, ERRS, vec![0x5a5a_i32; entries.len()].as_slice());
    let rc = call_batch(w, caller, &request, 0);
    let errs = (0..entries.len() as u64)
        .map(|i| w.get::<i32>(caller, ERRS + 4 * i))
        .collect();
    (rc, errs)
}

/// `XENMEM_add_to_physmap_batch` of `request` from extent `start`,
/// followed through its continuations.
fn call_batch(w: &mut World, caller: DomId, request: &XenAddToPhysmapBatch, start: u64) -> i64 {
    w.put(caller, BUF, request);
    let cmd = u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH) | start << 6;
    let out = w.call64(caller, nr::MEMORY_OP, [cmd, BUF, 0, 0, 0]);
    w.finish(caller, out, true)
}

fn remove(w: &mut World, caller: DomId, domid: DomId, gpfn: u64) -> i64 {
    let request = XenRemoveFromPhysmap {
        domid,
        pad0: [0; 6],
        gpfn,
    };
    w.put(caller, BUF, &request);
    let cmd = XENMEM_REMOVE_FROM_PHYSMAP.into();
    w.ret(caller, nr::MEMORY_OP, [cmd, BUF, 0, 0, 0])
}

fn errno(err: Errno) -> i32 {
    -err.value()
}

#[test]
fn a_control_domu_maps_a_domains_frames_with_an_error_per_entry() {
    let (mut w, child) = world_with_child();
    let ram_before = w.domain(DOMU).tot_pages();
    let entries = [
        (0, MAP_AT),
        (3, MAP_AT + 1),
        (CHILD_PAGES, 6),             // not the child's RAM: GFN 6 stays
        (1, NPT_MAX_GFN + 1),         // beyond the p2m
        (2, 5),                       // over the caller's own RAM: freed first
        (UNMAPPED >> 12, MAP_AT + 3), // nothing there in the child
    ];
    let (rc, errs) = batch(&mut w, DOMU, DOMID_SELF, child, &entries);
    assert_eq!(rc, 0);
    let einval = errno(Errno::EINVAL);
    assert_eq!(errs, [0, 0, einval, einval, 0, einval]);
    // The caller sees the child's frames: each holds its GFN.
    assert_eq!(w.get::<u64>(DOMU, MAP_AT << 12), 0);
    assert_eq!(w.get::<u64>(DOMU, (MAP_AT + 1) << 12), 3);
    assert_eq!(w.get::<u64>(DOMU, 5 << 12), 2);
    // Read-write: the child sees the caller's write.
    w.put(DOMU, (MAP_AT + 1) << 12, &0xfeed_u64);
    assert_eq!(w.get::<u64>(child, 3 << 12), 0xfeed);
    assert_eq!(w.domain(DOMU).tot_pages(), ram_before - 1);
    assert!(w.domain(DOMU).owns_writable(&w.mem, Gfn(6)));
    assert_eq!(w.domain(DOMU).foreign().nr_held(), 3);
    assert_eq!(w.domain(child).foreign().lent_count(Gfn(3)), 1);
    let p2m = |w: &World, gfn| w.t.get(DOMU).unwrap().p2m().translate(&w.mem, Gfn(gfn));
    assert_eq!(p2m(&w, MAP_AT).unwrap().kind, P2mKind::Shared);

    // Unmapping, as Linux's xen_xlate_unmap_gfn_range does.
    assert_eq!(remove(&mut w, DOMU, DOMID_SELF, MAP_AT), 0);
    assert_eq!(remove(&mut w, DOMU, DOMID_SELF, MAP_AT), e(Errno::ENOENT));
    assert!(p2m(&w, MAP_AT).is_none());
    assert_eq!(w.domain(child).foreign().lent_count(Gfn(0)), 0);

    // Destroying the child takes its frames out of the caller's p2m.
    let frames = w.pool.free_frames();
    assert_eq!(domain_op(&mut w, DOMU, ctl::CONTROL_OP_DESTROY, child), 0);
    assert!(p2m(&w, MAP_AT + 1).is_none() && p2m(&w, 5).is_none());
    assert_eq!(w.domain(DOMU).foreign().nr_held(), 0);
    assert!(w.pool.free_frames() >= frames + CHILD_PAGES);
}

#[test]
fn foreign_domain_errors_are_per_entry_as_in_xen() {
    let (mut w, child) = world_with_child();
    let cases = [
        // The caller's own memory through its domid: Xen's
        // rcu_lock_remote_domain_by_id.
        (DOMID_SELF, DOMU, Errno::EPERM),
        // DOMID_SELF names no domain as the foreign one.
        (DOMID_SELF, DOMID_SELF, Errno::ESRCH),
        (DOMID_SELF, 77, Errno::ESRCH),
        // The mapper is the foreign domain.
        (child, child, Errno::EINVAL),
        // A mapper without the control privilege.
        (child, DOM0, Errno::EPERM),
    ];
    for (mapper, foreign, want) in cases {
        let (rc, errs) = batch(&mut w, DOMU, mapper, foreign, &[(0, MAP_AT)]);
        assert_eq!((rc, errs[0]), (0, errno(want)), "{mapper} {foreign}");
    }
    assert_eq!(w.domain(DOMU).foreign().nr_held(), 0);
    assert_eq!(w.domain(child).foreign().nr_held(), 0);
}

#[test]
fn an_unprivileged_caller_gets_eperm() {
    let mut w = World::new();
    let dom0_ram = w.ram(DOM0);
    let (rc, errs) = batch(
        &mut w,
        DOMU,
        DOMID_SELF,
        DOM0,
        &[(0, MAP_AT), (1, MAP_AT + 1)],
    );
    assert_eq!(rc, 0);
    assert_eq!(errs, [errno(Errno::EPERM); 2]);
    // Another domain as the mapper: refused whole.
    let (rc, errs) = batch(&mut w, DOMU, DOM0, DOM0, &[(0, MAP_AT)]);
    assert_eq!((rc, errs[0]), (e(Errno::EPERM), 0x5a5a));
    assert_eq!(remove(&mut w, DOMU, DOM0, 0), e(Errno::EPERM));
    assert_eq!(w.domain(DOMU).foreign().nr_held(), 0);
    assert_eq!(w.ram(DOM0), dom0_ram);
}

#[test]
fn malformed_batches_are_refused_as_in_xen() {
    let (mut w, child) = world_with_child();
    let good = XenAddToPhysmapBatch {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GMFN_FOREIGN as u16,
        size: 2,
        foreign_domid: child,
        idxs: IDXS,
        gpfns: GPFNS,
        errs: ERRS,
    };
    w.put(DOMU, IDXS, [0u64, 1].as_slice());
    w.put(DOMU, GPFNS, [MAP_AT, MAP_AT + 1].as_slice());
    let range = XenAddToPhysmapBatch {
        space: XENMAPSPACE_GMFN_RANGE as u16,
        ..good
    };
    assert_eq!(call_batch(&mut w, DOMU, &range, 0), e(Errno::EOPNOTSUPP));
    assert_eq!(call_batch(&mut w, DOMU, &good, 1 << 16), e(Errno::EDOM));
    assert_eq!(call_batch(&mut w, DOMU, &good, 3), e(Errno::EILSEQ));
    assert_eq!(call_batch(&mut w, DOMU, &good, 2), e(Errno::EILSEQ));
    let empty = XenAddToPhysmapBatch { size: 0, ..good };
    assert_eq!(call_batch(&mut w, DOMU, &empty, 0), 0);
    let missing = XenAddToPhysmapBatch { domid: 77, ..good };
    assert_eq!(call_batch(&mut w, DOMU, &missing, 0), e(Errno::ESRCH));
    for bad in [
        XenAddToPhysmapBatch {
            errs: UNMAPPED,
            ..good
        },
        XenAddToPhysmapBatch {
            idxs: u64::MAX - 4,
            ..good
        },
    ] {
        assert_eq!(call_batch(&mut w, DOMU, &bad, 0), e(Errno::EFAULT));
    }
    w.put(DOMU, BUF, &good);
    let out = w.call64(
        DOMU,
        nr::MEMORY_OP,
        [XENMEM_ADD_TO_PHYSMAP_BATCH.into(), UNMAPPED, 0, 0, 0],
    );
    assert_eq!(w.finish(DOMU, out, true), e(Errno::EFAULT));
    // An unwritable errs[] fails after the entry was mapped (as Xen): the
    // mapping stands. Undo it.
    assert_eq!(remove(&mut w, DOMU, DOMID_SELF, MAP_AT), 0);
    // INVALID_GFN ends the call; the entries before it stay done.
    w.put(DOMU, GPFNS, [MAP_AT, u64::MAX].as_slice());
    assert_eq!(call_batch(&mut w, DOMU, &good, 0), e(Errno::EINVAL));
    assert_eq!(w.get::<i32>(DOMU, ERRS), 0);
    assert_eq!(w.domain(DOMU).foreign().nr_held(), 1);
    // Another space: ENOSYS per entry.
    w.put(DOMU, GPFNS, [MAP_AT + 4, MAP_AT + 5].as_slice());
    let shared = XenAddToPhysmapBatch {
        space: XENMAPSPACE_SHARED_INFO as u16,
        ..good
    };
    assert_eq!(call_batch(&mut w, DOMU, &shared, 0), 0);
    assert_eq!(w.get::<i32>(DOMU, ERRS + 4), errno(Errno::ENOSYS));
    // 32-bit callers: not served.
    let r = w.ret32(
        DOMU,
        nr::MEMORY_OP as u32,
        [XENMEM_ADD_TO_PHYSMAP_BATCH, BUF as u32, 0, 0, 0],
    );
    assert_eq!(r, e(Errno::ENOSYS));
    // remove_from_physmap: no continuation, a grant-free own page, a hole.
    let cmd = u64::from(XENMEM_REMOVE_FROM_PHYSMAP) | 1 << 6;
    assert_eq!(
        w.ret(DOMU, nr::MEMORY_OP, [cmd, BUF, 0, 0, 0]),
        e(Errno::EINVAL)
    );
    assert_eq!(remove(&mut w, DOMU, DOMID_SELF, 0x1f), 0, "own RAM freed");
    assert_eq!(remove(&mut w, DOMU, DOMID_SELF, 0x1f), e(Errno::ENOENT));
}

#[test]
fn a_long_batch_continues_and_stops_at_the_mapping_limit() {
    let (mut w, child) = world_with_child();
    let n = MAX_FOREIGN_MAPS + 1;
    // The same frame many times over (each mapping counted).
    let entries: Vec<(u64, u64)> = (0..n as u64).map(|i| (i % 2, MAP_AT + i)).collect();
    let idxs: Vec<u64> = entries.iter().map(|e| e.0).collect();
    let gpfns: Vec<u64> = entries.iter().map(|e| e.1).collect();
    let (idxs_at, gpfns_at, errs_at) = (IDXS, GPFNS, 0x10000);
    w.put(DOMU, idxs_at, idxs.as_slice());
    w.put(DOMU, gpfns_at, gpfns.as_slice());
    let request = XenAddToPhysmapBatch {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GMFN_FOREIGN as u16,
        size: n as u16,
        foreign_domid: child,
        idxs: idxs_at,
        gpfns: gpfns_at,
        errs: errs_at,
    };
    w.put(DOMU, BUF, &request);
    let cmd = XENMEM_ADD_TO_PHYSMAP_BATCH.into();
    let out = w.call64(DOMU, nr::MEMORY_OP, [cmd, BUF, 0, 0, 0]);
    let (out, calls) = w.follow(DOMU, out, true);
    assert_eq!(out, HypercallOutcome::Return(0));
    assert_eq!(
        calls as u64,
        (n as u64).div_ceil(crate::hypercall::memory::BATCH_SLICE)
    );
    let errs: Vec<i32> = (0..n as u64)
        .map(|i| w.get::<i32>(DOMU, errs_at + 4 * i))
        .collect();
    assert!(errs[..MAX_FOREIGN_MAPS].iter().all(|&r| r == 0));
    assert_eq!(errs[MAX_FOREIGN_MAPS], errno(Errno::ENOMEM));
    assert_eq!(w.domain(DOMU).foreign().nr_held(), MAX_FOREIGN_MAPS);
    assert_eq!(
        w.domain(child).foreign().lent_count(Gfn(1)) as usize,
        MAX_FOREIGN_MAPS / 2
    );
    // dom0 destroys the control domU: the child's lent counts go back.
    assert_eq!(domain_op(&mut w, DOM0, ctl::CONTROL_OP_DESTROY, DOMU), 0);
    assert_eq!(w.domain(child).foreign().nr_lent(), 0);
}
