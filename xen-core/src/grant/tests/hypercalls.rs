//! `grant_table_op` and `XENMAPSPACE_grant_table` through the hypercall
//! door, with Xen's `GNTST_*` codes. Callers run with paging off, so a
//! pointer is a GPA in their RAM.

use abi::xen::domid::DOMID_SELF;
use abi::xen::errno::Errno;
use abi::xen::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GNTCOPY_SOURCE_GREF, GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN,
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_GENERAL_ERROR, GNTST_OKAY, GNTST_PERMISSION_DENIED,
    GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE,
    GNTTABOP_TRANSFER, GNTTABOP_UNMAP_GRANT_REF,
};
use abi::xen::hypercall::{GRANT_TABLE_OP, MEMORY_OP};
use abi::xen::memory::{
    XenAddToPhysmap, XenMemoryReservation, XENMAPIDX_GRANT_TABLE_STATUS, XENMAPSPACE_GRANT_TABLE,
    XENMEM_ADD_TO_PHYSMAP, XENMEM_DECREASE_RESERVATION,
};
use zerocopy::Immutable;

use super::*;
use crate::hypercall::{
    handle_hypercall, Caller, HostFacts, HypercallEnv, HypercallOutcome, HypercallRegs,
};
use crate::paging::guest_walk::GuestPaging;
use crate::time::{Clock, WallClock};

const FRAMES: u64 = 512;
/// Where callers put hypercall arguments (in their RAM).
const ARGS: u64 = 0x4000;
const LIST: u64 = 0x6000;

struct Env(Clock);

impl HypercallEnv for Env {
    fn clock(&self) -> &Clock {
        &self.0
    }
    fn tsc(&self) -> u64 {
        0
    }
    fn console_write(&mut self, _: DomId, _: &str, _: &[u8]) {}
    fn console_read(&mut self, _: &mut [u8]) -> usize {
        0
    }
    fn host(&self) -> HostFacts {
        HostFacts {
            nr_pcpus: 1,
            total_frames: FRAMES,
            guest_cr4_valid: crate::hypercall::sim::GUEST_CR4_VALID,
        }
    }
    fn read_log(&self, _: u64, _: &mut [u8]) -> (usize, u64) {
        (0, 0)
    }
}

impl World {
    fn call(&mut self, domid: DomId, nr: u64, a: [u64; 3]) -> HypercallOutcome {
        let mut env = Env(Clock::new(1_000_000_000, 0, WallClock { sec: 0, nsec: 0 }).unwrap());
        let caller = Caller {
            domid,
            vcpu_id: 0,
            paging: GuestPaging::default(),
        };
        let regs = HypercallRegs {
            rax: nr,
            rdi: a[0],
            rsi: a[1],
            rdx: a[2],
            long_mode: true,
            ..HypercallRegs::default()
        };
        handle_hypercall(
            &mut self.t,
            &mut self.pool,
            &mut self.mem,
            &mut env,
            &caller,
            &regs,
        )
    }

    fn ret(&mut self, domid: DomId, nr: u64, a: [u64; 3]) -> i64 {
        match self.call(domid, nr, a) {
            HypercallOutcome::Return(v) => v,
            other => panic!("expected a return, got {other:?}"),
        }
    }

    fn put<T: IntoBytes + Immutable>(&mut self, domid: DomId, gpa: u64, v: &T) {
        self.phys(domid).write(gpa, v.as_bytes()).unwrap();
    }

    fn get<T: FromBytes + IntoBytes>(&mut self, domid: DomId, gpa: u64) -> T {
        let mut v = T::new_zeroed();
        self.phys(domid).read(gpa, v.as_mut_bytes()).unwrap();
        v
    }

    /// One `GNTTABOP_map_grant_ref` by `mapper`; the structure after.
    fn map_op(
        &mut self,
        mapper: DomId,
        dom: DomId,
        gref: GrantRef,
        gfn: u64,
        flags: u32,
    ) -> GnttabMapGrantRef {
        let op = GnttabMapGrantRef {
            host_addr: gfn << 12,
            flags,
            r#ref: gref,
            dom,
            ..Default::default()
        };
        self.put(mapper, ARGS, &op);
        let r = self.ret(
            mapper,
            GRANT_TABLE_OP,
            [GNTTABOP_MAP_GRANT_REF.into(), ARGS, 1],
        );
        assert_eq!(r, 0);
        self.get(mapper, ARGS)
    }

    fn unmap_op(&mut self, mapper: DomId, handle: u32, gfn: u64) -> i16 {
        let op = GnttabUnmapGrantRef {
            host_addr: gfn << 12,
            handle,
            ..Default::default()
        };
        self.put(mapper, ARGS, &op);
        let r = self.ret(
            mapper,
            GRANT_TABLE_OP,
            [GNTTABOP_UNMAP_GRANT_REF.into(), ARGS, 1],
        );
        assert_eq!(r, 0);
        self.get::<GnttabUnmapGrantRef>(mapper, ARGS).status
    }

    fn add_to_physmap(&mut self, domid: DomId, idx: u64, gpfn: u64) -> i64 {
        let xatp = XenAddToPhysmap {
            domid: DOMID_SELF,
            space: XENMAPSPACE_GRANT_TABLE,
            idx,
            gpfn,
            ..Default::default()
        };
        self.put(domid, ARGS, &xatp);
        self.ret(domid, MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP.into(), ARGS, 0])
    }
}

/// `XENMEM_decrease_reservation` of one GFN by `domid` for itself: the
/// extents done.
fn decrease(w: &mut World, domid: DomId, gfn: u64) -> i64 {
    w.put(domid, LIST, &gfn);
    let r = XenMemoryReservation {
        extent_start: LIST,
        nr_extents: 1,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w.put(domid, ARGS, &r);
    w.ret(
        domid,
        MEMORY_OP,
        [XENMEM_DECREASE_RESERVATION.into(), ARGS, 0],
    )
}

/// Issue 15's hostile ballooning, through the door: a grant mapping, a
/// granted frame another domain maps, a grant-table frame. Xen stops at
/// each (0 extents; for the granted frame xen-core is stricter: see
/// `Domain::balloon_out`), nothing is freed, every mapping stays, and the
/// granter's frame goes once the mapping is gone.
#[test]
fn decrease_reservation_of_grant_frames_gives_nothing_back() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 8, grant(m, 5, false));
    let ok = w.map_op(m, g, 8, MAP_GFN, host_map(false));
    assert_eq!(ok.status, GNTST_OKAY);
    let free = w.free();
    assert_eq!(decrease(&mut w, m, MAP_GFN), 0, "a grant mapping");
    assert_eq!(decrease(&mut w, g, 5), 0, "a frame another domain maps");
    assert_eq!(decrease(&mut w, g, TABLE_GFN), 0, "a grant-table frame");
    assert_eq!(w.free(), free);
    assert_eq!(w.mfn(m, MAP_GFN), w.mfn(g, 5));
    assert!(w.mfn(g, TABLE_GFN).is_some());
    assert_eq!(w.unmap_op(m, ok.handle, MAP_GFN), GNTST_OKAY);
    let free = w.free();
    assert_eq!(decrease(&mut w, g, 5), 1);
    assert_eq!(w.free(), free + 1);
    assert!(w.mfn(g, 5).is_none());
}

#[test]
fn hostile_maps_get_xens_status_codes() {
    let (mut w, ids) = World::new(3, FRAMES);
    let (g, m, other) = (ids[1], ids[2], ids[3]);
    w.set_entry(g, 8, grant(m, 5, true));
    let hm = host_map(false);
    // Beyond the table, unknown domain, not granted to the caller, RO
    // grant mapped RW (Xen's _set_status_v1 answers general_error for the
    // last two).
    assert_eq!(
        w.map_op(m, g, 4 * 512, MAP_GFN, hm).status,
        GNTST_BAD_GNTREF
    );
    assert_eq!(w.map_op(m, 99, 8, MAP_GFN, hm).status, GNTST_BAD_DOMAIN);
    assert_eq!(
        w.map_op(other, g, 8, MAP_GFN, host_map(true)).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(w.map_op(m, g, 8, MAP_GFN, hm).status, GNTST_GENERAL_ERROR);
    assert!(w.mfn(m, MAP_GFN).is_none() && w.mfn(other, MAP_GFN).is_none());
    let ok = w.map_op(m, g, 8, MAP_GFN, host_map(true));
    assert_eq!((ok.status, ok.handle, ok.dev_bus_addr), (GNTST_OKAY, 0, 0));
    assert_eq!(w.mfn(m, MAP_GFN), w.mfn(g, 5));
    assert_eq!(w.unmap_op(m, 7, MAP_GFN), GNTST_BAD_HANDLE);
    assert_eq!(w.unmap_op(m, 0, MAP_GFN), GNTST_OKAY);
    assert!(w.mfn(m, MAP_GFN).is_none());
}

#[test]
fn whole_call_errors() {
    let (mut w, ids) = World::new(1, FRAMES);
    let d = ids[1];
    let ret =
        |w: &mut World, cmd: u32, uop, count| w.ret(d, GRANT_TABLE_OP, [cmd.into(), uop, count]);
    assert_eq!(
        ret(&mut w, GNTTABOP_TRANSFER, ARGS, 1),
        Errno::ENOSYS.to_return()
    );
    assert_eq!(
        ret(&mut w, GNTTABOP_MAP_GRANT_REF, ARGS, 0x8000_0000),
        Errno::EINVAL.to_return()
    );
    assert_eq!(
        ret(&mut w, GNTTABOP_QUERY_SIZE, ARGS, 2),
        Errno::EINVAL.to_return()
    );
    assert_eq!(
        ret(&mut w, GNTTABOP_MAP_GRANT_REF, 1 << 40, 1),
        Errno::EFAULT.to_return()
    );
    assert_eq!(ret(&mut w, GNTTABOP_MAP_GRANT_REF, ARGS, 0), 0);
}

#[test]
fn table_frames_query_and_setup() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (d, other) = (ids[1], ids[2]);
    let q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    w.put(d, ARGS, &q);
    assert_eq!(
        w.ret(d, GRANT_TABLE_OP, [GNTTABOP_QUERY_SIZE.into(), ARGS, 1]),
        0
    );
    let q: GnttabQuerySize = w.get(d, ARGS);
    assert_eq!((q.status, q.nr_frames, q.max_nr_frames), (GNTST_OKAY, 4, 4));
    // Moving frame 1 leaves its old GFN empty.
    assert_eq!(w.add_to_physmap(d, 1, 0x300), 0);
    assert!(w.mfn(d, TABLE_GFN + 1).is_none());
    assert_eq!(w.add_to_physmap(d, 4, 0x301), Errno::EINVAL.to_return());
    assert_eq!(
        w.add_to_physmap(d, XENMAPIDX_GRANT_TABLE_STATUS, 0x301),
        Errno::EINVAL.to_return()
    );
    let setup = |w: &mut World, caller, dom, nr_frames| {
        let op = GnttabSetupTable {
            dom,
            nr_frames,
            frame_list: LIST,
            ..Default::default()
        };
        w.put(caller, ARGS, &op);
        assert_eq!(
            w.ret(
                caller,
                GRANT_TABLE_OP,
                [GNTTABOP_SETUP_TABLE.into(), ARGS, 1]
            ),
            0
        );
        w.get::<GnttabSetupTable>(caller, ARGS).status
    };
    assert_eq!(setup(&mut w, d, DOMID_SELF, 3), GNTST_OKAY);
    let list: [u64; 3] = w.get(d, LIST);
    assert_eq!(list, [TABLE_GFN, 0x300, TABLE_GFN + 2]);
    assert_eq!(setup(&mut w, d, DOMID_SELF, 5), GNTST_GENERAL_ERROR);
    assert_eq!(setup(&mut w, d, other, 1), GNTST_PERMISSION_DENIED);
    assert_eq!(setup(&mut w, d, 99, 1), GNTST_BAD_DOMAIN);
    // dom0 may set up another domain's table.
    assert_eq!(setup(&mut w, ids[0], d, 1), GNTST_OKAY);
}

#[test]
fn a_fresh_domain_grows_its_table_on_demand() {
    let (mut w, ids) = World::new(1, FRAMES);
    let cfg = DomainConfig {
        name: "fresh",
        max_pages: 64,
        vcpus: 1,
    };
    let d = w.t.create_domu(&cfg, &mut w.pool, &mut w.mem).unwrap();
    w.t.get_mut(d)
        .unwrap()
        .populate(&mut w.pool, &mut w.mem, Gfn(0), RAM)
        .unwrap();
    assert_eq!(w.t.get(d).unwrap().grant().nr_frames(), 0);
    // With no table, every reference is beyond it.
    assert_eq!(
        w.map_op(ids[1], d, 0, MAP_GFN, host_map(true)).status,
        GNTST_BAD_GNTREF
    );
    let free = w.free();
    assert_eq!(w.add_to_physmap(d, 2, 0x300), 0);
    assert_eq!(w.t.get(d).unwrap().grant().nr_frames(), 3);
    // Three table frames and the NPT tables for the new GFN.
    assert!(free - w.free() >= 3);
    let table = w.mfn(d, 0x300).unwrap();
    assert!(
        w.frame(table).iter().all(|b| *b == 0),
        "table frame not scrubbed"
    );
}

#[test]
fn copy_and_batches() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.phys(g).write(5 << 12, b"hello").unwrap();
    w.set_entry(g, 3, grant(m, 5, true));
    let op = |offset, len| GnttabCopy {
        source: GnttabCopyPtr {
            u: 3,
            domid: g,
            offset,
            pad0: 0,
        },
        dest: GnttabCopyPtr {
            u: 2,
            domid: DOMID_SELF,
            offset: 0,
            pad0: 0,
        },
        len,
        flags: GNTCOPY_SOURCE_GREF,
        ..Default::default()
    };
    w.put(m, ARGS, &[op(0, 5), op(4093, 5)]);
    assert_eq!(w.ret(m, GRANT_TABLE_OP, [GNTTABOP_COPY.into(), ARGS, 2]), 0);
    let done: [GnttabCopy; 2] = w.get(m, ARGS);
    assert_eq!(
        (done[0].status, done[1].status),
        (GNTST_OKAY, GNTST_BAD_COPY_ARG)
    );
    let mut b = [0u8; 5];
    w.phys(m).read(2 << 12, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    // 40 maps: 32 now, then a continuation for the other 8.
    let one = GnttabMapGrantRef {
        host_addr: MAP_GFN << 12,
        flags: host_map(true),
        r#ref: 9999,
        dom: g,
        ..Default::default()
    };
    w.put(m, ARGS, &[one; 40]);
    match w.call(m, GRANT_TABLE_OP, [GNTTABOP_MAP_GRANT_REF.into(), ARGS, 40]) {
        HypercallOutcome::Continue(c) => {
            let regs = c.registers();
            assert_eq!(regs[2].1, ARGS + 32 * 32, "uop not advanced");
            assert_eq!(regs[3].1, 8, "count not reduced");
        }
        other => panic!("expected a continuation, got {other:?}"),
    }
    let statuses: [GnttabMapGrantRef; 33] = w.get(m, ARGS);
    assert!(statuses[..32].iter().all(|s| s.status == GNTST_BAD_GNTREF));
    assert_eq!(statuses[32].status, 0, "entry 33 served too early");
}
