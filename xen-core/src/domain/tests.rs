use super::table::DomainTable;
use super::vcpu::{VcpuEntryState, VcpuRunState};
use super::*;
use crate::paging::sim::{machine, SimPhys, SimPool, DIRTY, FIRST_MFN};

fn one(max_pages: u64, frames: u64) -> (DomainTable, SimPool, SimPhys, DomId) {
    let (mut pool, mut mem) = machine(frames);
    let mut t = DomainTable::new();
    let cfg = DomainConfig {
        name: "guest",
        max_pages,
        vcpus: 2,
    };
    let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
    (t, pool, mem, id)
}

#[test]
fn populate_scrubs_and_release_scrubs() {
    let (mut t, mut pool, mut mem, id) = one(16, 64);
    let d = t.get_mut(id).unwrap();
    d.populate(&mut pool, &mut mem, Gfn(0x100), 4).unwrap();
    assert_eq!(d.tot_pages(), 4);
    let mfns: Vec<Mfn> = (0x100..0x104)
        .map(|g| d.p2m().translate(&mem, Gfn(g)).unwrap().mfn)
        .collect();
    for m in &mfns {
        assert!(mem.frame(*m).iter().all(|b| *b == 0), "handed out dirty");
        mem.frame_mut(*m).fill(0x5a); // the guest's secrets
    }
    t.kill(id).unwrap();
    t.destroy(id, &mut pool, &mut mem).unwrap();
    for m in &mfns {
        assert!(mem.frame(*m).iter().all(|b| *b == 0), "freed unscrubbed");
    }
    assert_eq!(pool.free_frames(), 64);
}

#[test]
fn populate_is_all_or_nothing() {
    let (mut t, mut pool, mut mem, id) = one(16, 64);
    let d = t.get_mut(id).unwrap();
    d.populate(&mut pool, &mut mem, Gfn(5), 1).unwrap();
    let free = pool.free_frames();
    assert_eq!(
        d.populate(&mut pool, &mut mem, Gfn(0), 8),
        Err(DomainError::GfnMapped(Gfn(5)))
    );
    assert_eq!((d.tot_pages(), pool.free_frames()), (1, free));
    assert_eq!(
        d.populate(&mut pool, &mut mem, Gfn(8), 16),
        Err(DomainError::OverMaxPages)
    );
    assert_eq!(
        d.populate(&mut pool, &mut mem, Gfn(u64::MAX - 1), 4),
        Err(DomainError::GfnOutOfRange)
    );
    assert_eq!(
        d.populate(&mut pool, &mut mem, Gfn(NPT_MAX_GFN), 2),
        Err(DomainError::GfnOutOfRange)
    );
    assert_eq!(pool.free_frames(), free);
}

#[test]
fn populate_rolls_back_when_frames_run_out() {
    let (mut t, mut pool, mut mem, id) = one(64, 20);
    let d = t.get_mut(id).unwrap();
    let free = pool.free_frames();
    assert_eq!(
        d.populate(&mut pool, &mut mem, Gfn(0), 40),
        Err(DomainError::OutOfFrames)
    );
    assert_eq!((d.tot_pages(), d.p2m().table_frames()), (0, 1));
    assert_eq!(pool.free_frames(), free);
}

#[test]
fn dom0_memory_is_one_to_one() {
    let (mut pool, mut mem) = machine(64);
    let mut t = DomainTable::new();
    let cfg = DomainConfig {
        name: "dom0",
        max_pages: 16,
        vcpus: 1,
    };
    let id = t.create_dom0(&cfg, &mut pool, &mut mem).unwrap();
    let first = FIRST_MFN + 40;
    (first..first + 16).for_each(|m| pool.take(Mfn(m)));
    let d = t.get_mut(id).unwrap();
    d.populate_identity(&mut pool, &mut mem, Mfn(first), 16)
        .unwrap();
    let e = d.p2m().translate(&mem, Gfn(first + 3)).unwrap();
    assert_eq!(e.mfn, Mfn(first + 3));
    assert_eq!(mem.frame(e.mfn)[0], 0);
    // A refused range still goes back to the pool.
    let free = pool.free_frames();
    let again = FIRST_MFN + 60;
    (again..again + 4).for_each(|m| pool.take(Mfn(m)));
    assert_eq!(
        d.populate_identity(&mut pool, &mut mem, Mfn(again), 4),
        Err(DomainError::OverMaxPages)
    );
    assert_eq!(pool.free_frames(), free);
    t.kill(id).unwrap();
    t.destroy(id, &mut pool, &mut mem).unwrap();
    assert_eq!(pool.free_frames(), 64);
}

#[test]
fn device_memory_is_dom0s_only_and_never_guest_memory() {
    use crate::guest_mem::{GuestFault, GuestPhys};
    let (mut pool, mut mem) = machine(64);
    let mut t = DomainTable::new();
    let cfg = DomainConfig {
        name: "dom0",
        max_pages: 16,
        vcpus: 1,
    };
    let domu_cfg = DomainConfig {
        name: "guest",
        ..cfg
    };
    let domu = t.create_domu(&domu_cfg, &mut pool, &mut mem).unwrap();
    let free = pool.free_frames();
    let dom0 = t.create_dom0(&cfg, &mut pool, &mut mem).unwrap();
    // A BAR frame: outside the machine's RAM.
    let bar = Mfn(0xfebd2);
    assert_eq!(
        t.get_mut(domu)
            .unwrap()
            .map_mmio(&mut pool, &mut mem, Gfn(bar.0), bar),
        Err(DomainError::NotPrivileged)
    );
    let d = t.get_mut(dom0).unwrap();
    d.map_mmio(&mut pool, &mut mem, Gfn(bar.0), bar).unwrap();
    let e = d.p2m().translate(&mem, Gfn(bar.0)).unwrap();
    assert_eq!((e.mfn, e.kind), (bar, P2mKind::Mmio));
    assert_eq!((d.tot_pages(), d.shared_pages()), (0, 0), "not counted");
    // Hypercall buffers there are refused: xen-core never reads devices.
    let mut buf = [0u8; 4];
    let npt = t.get(dom0).unwrap().p2m();
    assert_eq!(
        GuestPhys::new(npt, &mut mem).read(bar.hpa(), &mut buf),
        Err(GuestFault::NotInP2m)
    );
    t.kill(dom0).unwrap();
    t.destroy(dom0, &mut pool, &mut mem).unwrap();
    assert_eq!(
        pool.free_frames(),
        free,
        "the BAR frame never joins the pool"
    );
}

#[test]
fn shared_frame_replaces_owned_one() {
    let (mut t, mut pool, mut mem, id) = one(16, 64);
    let hv_frame = pool.alloc().unwrap();
    mem.frame_mut(hv_frame).fill(DIRTY);
    let d = t.get_mut(id).unwrap();
    d.populate(&mut pool, &mut mem, Gfn(0), 4).unwrap();
    d.map_shared(&mut pool, &mut mem, Gfn(2), hv_frame, P2mAccess::RW)
        .unwrap();
    assert_eq!((d.tot_pages(), d.shared_pages()), (3, 1));
    let e = d.p2m().translate(&mem, Gfn(2)).unwrap();
    assert_eq!((e.mfn, e.kind), (hv_frame, P2mKind::Shared));
    // Moving it elsewhere replaces the shared entry without growing the count.
    d.map_shared(&mut pool, &mut mem, Gfn(2), hv_frame, P2mAccess::R)
        .unwrap();
    assert_eq!(d.shared_pages(), 1);
    t.kill(id).unwrap();
    t.destroy(id, &mut pool, &mut mem).unwrap();
    assert_eq!(mem.frame(hv_frame)[0], DIRTY, "shared frame left alone");
    assert_eq!(pool.free_frames(), 63);
}

#[test]
fn shared_frames_are_bounded() {
    let (mut t, mut pool, mut mem, id) = one(16, 1024);
    let frame = pool.alloc().unwrap();
    let d = t.get_mut(id).unwrap();
    for g in 0..MAX_SHARED_PAGES {
        d.map_shared(&mut pool, &mut mem, Gfn(g), frame, P2mAccess::R)
            .unwrap();
    }
    assert_eq!(
        d.map_shared(
            &mut pool,
            &mut mem,
            Gfn(MAX_SHARED_PAGES),
            frame,
            P2mAccess::R
        ),
        Err(DomainError::TooManyShared)
    );
}

#[test]
fn life_cycle() {
    let (mut t, _pool, _mem, id) = one(16, 8);
    let d = t.get_mut(id).unwrap();
    assert_eq!(d.state(), DomainState::Paused);
    assert_eq!(d.vcpus().len(), 2);
    assert!(d.vcpu(2).is_none() && d.vcpu(u32::MAX).is_none());
    d.vcpu_mut(0)
        .unwrap()
        .start(VcpuEntryState::pvh(0x1000, 0x2000));
    assert!(!d.vcpu_may_run(0), "paused");
    d.unpause().unwrap();
    assert!(d.vcpu_may_run(0) && !d.vcpu_may_run(1));
    assert_eq!(
        d.unpause(),
        Err(DomainError::BadState(DomainState::Running))
    );
    d.pause().unwrap();
    d.shutdown(ShutdownReason::Poweroff);
    d.crash(CrashReason::TripleFault);
    assert_eq!(
        d.state(),
        DomainState::Shutdown(ShutdownReason::Poweroff),
        "first stop wins"
    );
    assert_eq!(d.vcpu(0).unwrap().run_state(), VcpuRunState::Down);
    assert_eq!(d.pause(), Err(DomainError::BadState(d.state())));
    d.exits_mut().record(0x81);
    d.hypercalls_mut().record(18);
    d.vcpu_mut(1).unwrap().account(7);
    assert_eq!(d.cpu_time_ns(), 7);
    t.kill(id).unwrap();
    assert_eq!(t.get(id).unwrap().state(), DomainState::Dying);
}

#[test]
fn errors_have_one_message_and_one_errno() {
    use abi::xen::errno::Errno;
    let gfn = Gfn(0x2a);
    // A frame in use is -EBUSY whatever holds it.
    assert_eq!(Errno::from(DomainError::GrantInUse(gfn)), Errno::EBUSY);
    assert_eq!(Errno::from(DomainError::ForeignInUse(gfn)), Errno::EBUSY);
    assert_eq!(Errno::from(DomainError::GfnMapped(gfn)), Errno::EEXIST);
    assert_eq!(
        DomainError::ForeignInUse(gfn).to_string(),
        "GFN 0x2a is in use by a foreign mapping (lent to one, or holding one)"
    );
    assert_eq!(
        DomainError::BadName.to_string(),
        format!("name empty or longer than {DOMAIN_NAME_MAX} bytes")
    );
    assert_eq!(
        CrashReason::NptFault { gpa: 0x1000 }.to_string(),
        "nested page fault at GPA 0x1000"
    );
}

/// A 2 MiB domain's hypervisor memory: shared info, NPT and grant-table
/// frames, its heap; the pool agrees on the frames.
#[test]
fn hypervisor_memory_is_accounted() {
    let (mut t, mut pool, mut mem, id) = one(514, 1024);
    let free = pool.free_frames();
    let d = t.get_mut(id).unwrap();
    d.populate(&mut pool, &mut mem, Gfn(0), 514).unwrap();
    d.grant_mut().grow(&mut pool, &mut mem, 1).unwrap();
    // The pool gave the NPT's new tables and one grant frame; the NPT's
    // root and the shared-info frame were taken at creation.
    let taken = free - pool.free_frames() - d.tot_pages();
    let tables = d.p2m().table_frames();
    assert_eq!(taken, tables - 1 + 1);
    let frames_bytes = (1 + tables + 1) << PAGE_SHIFT;
    let heap = d.hypervisor_bytes() - frames_bytes;
    // The domain itself and a frame's worth of active grant entries.
    assert!(heap >= (core::mem::size_of::<Domain>() + 4096) as u64);
    eprintln!(
        "2 MiB domain: {} bytes ({tables} NPT frames, {heap} heap)",
        d.hypervisor_bytes()
    );
}
