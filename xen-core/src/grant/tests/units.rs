//! Map, unmap, copy, pins and destruction, one behaviour per test.

use crate::mm::shared_frame::SharedFrame;

use abi::xen::domid::DOMID_SELF;
use abi::xen::grant_table::{
    GNTMAP_APPLICATION_MAP, GNTMAP_DEVICE_MAP, GTF_PCD, GTF_READING, GTF_WRITING,
};

use super::*;
use crate::domain::DomainError;
use crate::grant::copy::{copy, CopySide};
use crate::grant::pin;
use crate::paging::npt::{P2mAccess, P2mKind};

const FRAMES: u64 = 512;

#[test]
fn map_shares_the_frame_and_unmap_takes_it_away() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 10, grant(m, 5, false));
    let h = w.map(m, g, 10, MAP_GFN, false).unwrap();
    assert_eq!(h, 0);
    let e =
        w.t.get(m)
            .unwrap()
            .p2m()
            .translate(&w.mem, Gfn(MAP_GFN))
            .unwrap();
    assert_eq!(Some(e.mfn), w.mfn(g, 5));
    assert_eq!((e.kind, e.access), (P2mKind::Shared, P2mAccess::RW));
    assert_eq!(
        w.entry(g, 10).flags,
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    w.phys(m).write(MAP_GFN << 12, b"ping").unwrap();
    let mut b = [0u8; 4];
    w.phys(g).read(5 << 12, &mut b).unwrap();
    assert_eq!(&b, b"ping");
    let generation = w.t.get(m).unwrap().p2m_generation();
    w.unmap(m, h, MAP_GFN).unwrap();
    assert!(w.mfn(m, MAP_GFN).is_none());
    assert!(
        w.t.get(m).unwrap().p2m_generation() > generation,
        "no TLB flush asked"
    );
    assert_eq!(w.entry(g, 10).flags, GTF_PERMIT_ACCESS);
    assert_eq!(w.unmap(m, h, MAP_GFN), Err(GrantError::BadHandle));
}

#[test]
fn read_only_grants_map_read_only_only() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 3, grant(m, 4, true));
    assert_eq!(
        w.map(m, g, 3, MAP_GFN, false),
        Err(GrantError::GeneralError)
    );
    assert_eq!(w.entry(g, 3).flags & (GTF_READING | GTF_WRITING), 0);
    let h = w.map(m, g, 3, MAP_GFN, true).unwrap();
    let e =
        w.t.get(m)
            .unwrap()
            .p2m()
            .translate(&w.mem, Gfn(MAP_GFN))
            .unwrap();
    assert_eq!(e.access, P2mAccess::R);
    assert!(w.phys(m).write(MAP_GFN << 12, b"x").is_err());
    assert_eq!(
        w.entry(g, 3).flags & (GTF_READING | GTF_WRITING),
        GTF_READING
    );
    w.unmap(m, h, MAP_GFN).unwrap();
}

#[test]
fn only_the_named_domain_may_map() {
    let (mut w, ids) = World::new(3, FRAMES);
    let (g, m, other) = (ids[1], ids[2], ids[3]);
    w.set_entry(g, 8, grant(m, 4, false));
    assert_eq!(
        w.map(other, g, 8, MAP_GFN, true),
        Err(GrantError::GeneralError)
    );
    assert_eq!(
        w.map(ids[0], g, 8, MAP_GFN, true),
        Err(GrantError::GeneralError)
    );
    // An invalid entry, or one of another type, grants nothing.
    w.set_entry(
        g,
        9,
        GrantEntryV1 {
            flags: 0,
            ..grant(m, 4, false)
        },
    );
    assert_eq!(w.map(m, g, 9, MAP_GFN, true), Err(GrantError::GeneralError));
    w.set_entry(
        g,
        9,
        GrantEntryV1 {
            flags: 2,
            ..grant(m, 4, false)
        },
    );
    assert_eq!(w.map(m, g, 9, MAP_GFN, true), Err(GrantError::GeneralError));
    // Once m holds the pin, another grantee cannot join even if the
    // granter rewrites the entry for it.
    let h = w.map(m, g, 8, MAP_GFN, true).unwrap();
    w.set_entry(
        g,
        8,
        GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS | GTF_READING,
            ..grant(other, 4, false)
        },
    );
    assert_eq!(
        w.map(other, g, 8, MAP_GFN, true),
        Err(GrantError::GeneralError)
    );
    assert!(w.mfn(other, MAP_GFN).is_none());
    w.unmap(m, h, MAP_GFN).unwrap();
}

#[test]
fn bad_references_domains_flags_and_frames() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    let beyond = GRANT_TABLE_FRAMES as u32 * 512;
    assert_eq!(
        w.map(m, g, beyond, MAP_GFN, true),
        Err(GrantError::BadGntref)
    );
    assert_eq!(
        w.map(m, g, u32::MAX, MAP_GFN, true),
        Err(GrantError::BadGntref)
    );
    assert_eq!(w.map(m, 77, 1, MAP_GFN, true), Err(GrantError::BadDomain));
    assert_eq!(
        w.map(m, DOMID_SELF, 1, MAP_GFN, true),
        Err(GrantError::BadDomain)
    );
    let req = |flags| MapRequest {
        host_addr: MAP_GFN << 12,
        flags,
        gref: 1,
        dom: g,
    };
    let bad_flags = [
        (0, GrantError::BadGntref),
        (GNTMAP_READONLY, GrantError::BadGntref),
        (GNTMAP_DEVICE_MAP, GrantError::GeneralError),
        (
            GNTMAP_HOST_MAP | GNTMAP_APPLICATION_MAP,
            GrantError::GeneralError,
        ),
    ];
    for (flags, err) in bad_flags {
        let r = map_grant_ref(&mut w.t, &mut w.pool, &mut w.mem, m, &req(flags));
        assert_eq!(r, Err(err), "flags {flags:#x}");
    }
    // The granted GFN must be RAM the granter owns: not unpopulated, not
    // its grant-table frame, not a frame it maps from someone else.
    w.set_entry(m, 1, grant(g, 3, true));
    w.map(g, m, 1, MAP_GFN + 7, true).unwrap();
    for frame in [RAM, TABLE_GFN, MAP_GFN + 7, u32::MAX.into()] {
        w.set_entry(g, 2, grant(m, frame, false));
        assert_eq!(w.map(m, g, 2, MAP_GFN, false), Err(GrantError::BadPage));
        assert_eq!(w.entry(g, 2).flags, GTF_PERMIT_ACCESS, "flags left set");
    }
}

#[test]
fn host_addr_must_be_empty_and_maptrack_is_bounded() {
    let (mut w, ids) = World::new(2, 1024);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 1, false));
    let ram_before = w.mfn(m, 3);
    for gfn in [3, TABLE_GFN] {
        assert_eq!(w.map(m, g, 1, gfn, false), Err(GrantError::GeneralError));
    }
    assert_eq!(w.mfn(m, 3), ram_before);
    assert_eq!(w.entry(g, 1).flags, GTF_PERMIT_ACCESS);
    assert_eq!(
        w.map(m, g, 1, 1 << 40, false),
        Err(GrantError::GeneralError)
    );
    let mut handles = Vec::new();
    for i in 0..crate::grant::MAPTRACK_ENTRIES as u64 {
        let gref = (i % 100) as u32 + 100;
        w.set_entry(g, gref, grant(m, gref as u64 % RAM, true));
        handles.push(w.map(m, g, gref, MAP_GFN + i, true).unwrap());
    }
    w.set_entry(g, 99, grant(m, 2, true));
    assert_eq!(
        w.map(m, g, 99, 0x1000, true),
        Err(GrantError::NoDeviceSpace)
    );
    assert_eq!(w.entry(g, 99).flags, GTF_PERMIT_ACCESS | GTF_READONLY);
    for (i, h) in handles.into_iter().enumerate() {
        w.unmap(m, h, MAP_GFN + i as u64).unwrap();
    }
    for gref in 100..200 {
        assert_eq!(w.entry(g, gref).flags & (GTF_READING | GTF_WRITING), 0);
    }
}

#[test]
fn unmap_checks_handle_and_address() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 1, false));
    let h = w.map(m, g, 1, MAP_GFN, false).unwrap();
    assert_eq!(w.unmap(m, 5, MAP_GFN), Err(GrantError::BadHandle));
    assert_eq!(w.unmap(m, u32::MAX, MAP_GFN), Err(GrantError::BadHandle));
    assert_eq!(w.unmap(g, h, MAP_GFN), Err(GrantError::BadHandle));
    assert_eq!(w.unmap(m, h, MAP_GFN + 1), Err(GrantError::GeneralError));
    let with_bus = unmap_grant_ref(
        &mut w.t,
        &mut w.pool,
        &mut w.mem,
        m,
        MAP_GFN << 12,
        0x1000,
        h,
    );
    assert_eq!(with_bus, Err(GrantError::GeneralError));
    // host_addr 0 unmaps nothing (Xen's rule).
    assert_eq!(w.unmap(m, h, 0), Ok(()));
    assert!(w.mfn(m, MAP_GFN).is_some());
    w.unmap(m, h, MAP_GFN).unwrap();
}

#[test]
fn several_mappings_keep_the_flags_until_the_last() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 1, false));
    let r = w.map(m, g, 1, MAP_GFN, true).unwrap();
    let rw = w.map(m, g, 1, MAP_GFN + 1, false).unwrap();
    assert_eq!(w.mfn(m, MAP_GFN), w.mfn(m, MAP_GFN + 1));
    w.unmap(m, rw, MAP_GFN + 1).unwrap();
    assert_eq!(w.entry(g, 1).flags, GTF_PERMIT_ACCESS | GTF_READING);
    w.unmap(m, r, MAP_GFN).unwrap();
    assert_eq!(w.entry(g, 1).flags, GTF_PERMIT_ACCESS);
}

#[test]
fn a_mapped_frame_stays_with_its_owner() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 6, false));
    let h = w.map(m, g, 1, MAP_GFN, false).unwrap();
    // Ending access while mapped changes nothing the hypervisor holds.
    w.set_entry(g, 1, GrantEntryV1::default());
    let si = w.t.get(g).unwrap().shared_info_mfn();
    let d = w.t.get_mut(g).unwrap();
    assert_eq!(
        d.map_shared(&mut w.pool, &mut w.mem, Gfn(6), si, P2mAccess::RW),
        Err(DomainError::GrantInUse(Gfn(6)))
    );
    // Nor can the mapper cover its grant mapping.
    let d = w.t.get_mut(m).unwrap();
    assert_eq!(
        d.map_shared(&mut w.pool, &mut w.mem, Gfn(MAP_GFN), si, P2mAccess::RW),
        Err(DomainError::GrantInUse(Gfn(MAP_GFN)))
    );
    w.unmap(m, h, MAP_GFN).unwrap();
    // The granter cleared the entry: unmap leaves it cleared.
    assert_eq!(w.entry(g, 1), GrantEntryV1::default());
    let d = w.t.get_mut(g).unwrap();
    assert_eq!(
        d.map_shared(&mut w.pool, &mut w.mem, Gfn(6), si, P2mAccess::RW),
        Ok(())
    );
}

#[test]
fn destroying_the_granter_orphans_mappings_until_unmapped() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 6, false));
    w.set_entry(g, 2, grant(m, 6, true));
    let granted = w.mfn(g, 6).unwrap();
    let a = w.map(m, g, 1, MAP_GFN, false).unwrap();
    let b = w.map(m, g, 2, MAP_GFN + 1, true).unwrap();
    w.phys(m).write(MAP_GFN << 12, b"left").unwrap();
    let free = w.free();
    w.destroy(g);
    // Everything of g went back except the frame m still maps.
    let g_frames = 1 + GRANT_TABLE_FRAMES as u64 + RAM - 1;
    assert!(w.free() >= free + g_frames);
    assert_eq!(&w.frame(granted)[..4], b"left");
    assert_eq!(w.mfn(m, MAP_GFN), Some(granted));
    // The grant table's frames were scrubbed: nothing points into them.
    w.unmap(m, a, MAP_GFN).unwrap();
    let npt = |w: &World| w.t.get(m).unwrap().p2m().table_frames();
    let (free_before, npt_before) = (w.free(), npt(&w));
    w.unmap(m, b, MAP_GFN + 1).unwrap();
    let npt_freed = npt_before - npt(&w);
    assert_eq!(
        w.free(),
        free_before + npt_freed + 1,
        "orphan frame not freed"
    );
    assert!(w.frame(granted).iter().all(|x| *x == 0), "freed unscrubbed");
}

#[test]
fn destroying_the_mapper_releases_its_pins() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 1, grant(m, 6, false));
    w.map(m, g, 1, MAP_GFN, false).unwrap();
    w.map(m, g, 1, MAP_GFN + 1, true).unwrap();
    w.destroy(m);
    assert_eq!(w.entry(g, 1).flags, GTF_PERMIT_ACCESS);
    assert!(!w.t.get(g).unwrap().grant().is_pinned(w.mfn(g, 6).unwrap()));
}

#[test]
fn destruction_in_any_order_frees_everything() {
    for order in [[1, 2, 3, 0], [2, 1, 0, 3], [3, 0, 2, 1]] {
        let (mut w, ids) = World::new(3, FRAMES);
        let start = {
            let (p, _) = machine(FRAMES);
            p.free_frames()
        };
        // A ring of grants: each domain maps the next one's frame, and
        // its own (self-mapping is allowed).
        for i in 0..4 {
            let (me, next) = (ids[i], ids[(i + 1) % 4]);
            w.set_entry(next, 5, grant(me, 2, false));
            w.map(me, next, 5, MAP_GFN, false).unwrap();
            w.set_entry(me, 6, grant(me, 3, true));
            w.map(me, me, 6, MAP_GFN + 1, true).unwrap();
        }
        for i in order {
            w.destroy(ids[i]);
        }
        assert_eq!(w.free(), start);
    }
}

#[test]
fn copy_moves_bytes_within_pages_and_leaves_flags_as_they_were() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.phys(g).write((7 << 12) + 100, b"granted data").unwrap();
    w.set_entry(g, 4, grant(m, 7, true));
    w.set_entry(g, 5, grant(m, 8, false));
    let gref = |r: u64| CopySide {
        u: r,
        domid: g,
        offset: 100,
        is_gref: true,
    };
    let local = |gfn: u64, offset| CopySide {
        u: gfn,
        domid: DOMID_SELF,
        offset,
        is_gref: false,
    };
    copy(&mut w.t, &mut w.mem, m, &gref(4), &local(2, 10), 12).unwrap();
    let mut b = [0u8; 12];
    w.phys(m).read((2 << 12) + 10, &mut b).unwrap();
    assert_eq!(&b, b"granted data");
    copy(&mut w.t, &mut w.mem, m, &local(2, 10), &gref(5), 7).unwrap();
    w.phys(g).read((8 << 12) + 100, &mut b[..7]).unwrap();
    assert_eq!(&b[..7], b"granted");
    assert_eq!(w.entry(g, 4).flags, GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(w.entry(g, 5).flags, GTF_PERMIT_ACCESS);
    let cases = [
        (gref(4), local(2, 0), 4000, GrantError::BadCopyArg),
        (gref(4), local(2, 4095), 2, GrantError::BadCopyArg),
        (local(2, 0), gref(4), 1, GrantError::GeneralError),
        (gref(9), local(2, 0), 1, GrantError::GeneralError),
        (gref(9999), local(2, 0), 1, GrantError::BadGntref),
        (
            CopySide {
                domid: g,
                ..local(2, 0)
            },
            local(3, 0),
            1,
            GrantError::PermissionDenied,
        ),
        (
            CopySide {
                domid: 77,
                ..gref(4)
            },
            local(3, 0),
            1,
            GrantError::BadDomain,
        ),
        (local(RAM, 0), local(3, 0), 1, GrantError::BadPage),
        (local(TABLE_GFN, 0), local(3, 0), 1, GrantError::BadPage),
    ];
    for (src, dst, len, err) in cases {
        assert_eq!(
            copy(&mut w.t, &mut w.mem, m, &src, &dst, len),
            Err(err),
            "{src:?} -> {dst:?}"
        );
    }
    assert_eq!(w.entry(g, 4).flags, GTF_PERMIT_ACCESS | GTF_READONLY);
    // Another domain cannot copy out of m's grants.
    assert_eq!(
        copy(&mut w.t, &mut w.mem, ids[0], &gref(4), &local(2, 0), 1),
        Err(GrantError::GeneralError)
    );
}

/// Machine memory in which the granter rewrites one grant entry between
/// the hypervisor's accesses: shared access `n` to the entry's frame sees
/// version `n` (the last version once they run out, or round-robin if
/// `cycle`).
struct Racing {
    inner: SimPhys,
    frame: Mfn,
    versions: Vec<Page>,
    accesses: usize,
    cycle: bool,
}

/// A page-aligned frame, as `PhysMem` frames are.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

impl Racing {
    /// The version access `n` sees.
    fn version(&self, n: usize) -> usize {
        if self.cycle {
            n % self.versions.len()
        } else {
            n.min(self.versions.len() - 1)
        }
    }
}

impl PhysMem for Racing {
    fn frame(&self, mfn: Mfn) -> &[u8; 4096] {
        if mfn != self.frame {
            return self.inner.frame(mfn);
        }
        &self.versions[self.version(self.accesses.saturating_sub(1))].0
    }

    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; 4096] {
        if mfn != self.frame {
            return self.inner.frame_mut(mfn);
        }
        let v = self.version(self.accesses.saturating_sub(1));
        &mut self.versions[v].0
    }

    /// Each shared access to the entry's frame sees the next version.
    fn shared_frame(&mut self, mfn: Mfn) -> SharedFrame<'_> {
        if mfn != self.frame {
            return self.inner.shared_frame(mfn);
        }
        let v = self.version(self.accesses);
        self.accesses += 1;
        SharedFrame::new(&mut self.versions[v].0)
    }
}

fn racing(cycle: bool, entries: &[GrantEntryV1]) -> (Box<World>, Vec<DomId>, Racing) {
    let (w, ids) = World::new(2, FRAMES);
    let mut w = Box::new(w);
    let table = w.t.get(ids[1]).unwrap().grant().frame(0).unwrap();
    let versions = entries
        .iter()
        .map(|e| {
            let mut f = Page(*w.mem.frame(table));
            f.0[8..16].copy_from_slice(e.as_bytes());
            f
        })
        .collect();
    let inner = std::mem::replace(&mut w.mem, machine(0).1);
    let mem = Racing {
        inner,
        frame: table,
        versions,
        accesses: 0,
        cycle,
    };
    (w, ids, mem)
}

#[test]
fn an_entry_changed_during_the_update_is_read_again() {
    let m = 2;
    let first = GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS | GTF_PCD,
        ..grant(m, 6, false)
    };
    let (mut w, ids, mut mem) = racing(false, &[first, grant(m, 6, false)]);
    let g = ids[1];
    let d = w.t.get_mut(g).unwrap();
    let mfn = pin::acquire(d, &mut mem, 1, m, false).unwrap();
    assert_eq!(Some(mfn), d.p2m().translate(&mem, Gfn(6)).map(|e| e.mfn));
    let now = mem.versions[1].0;
    let flags = u16::from_le_bytes([now[8], now[9]]);
    assert_eq!(flags, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
}

#[test]
fn an_entry_given_to_another_domain_during_the_update_is_refused() {
    let m = 2;
    let (mut w, ids, mut mem) = racing(false, &[grant(m, 6, false), grant(3, 6, false)]);
    let d = w.t.get_mut(ids[1]).unwrap();
    assert_eq!(
        pin::acquire(d, &mut mem, 1, m, false),
        Err(GrantError::GeneralError)
    );
    assert!(!d.grant().active(1).is_pinned());
}

#[test]
fn an_entry_that_never_holds_still_fails() {
    let m = 2;
    let a = grant(m, 6, false);
    let b = GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS | GTF_PCD,
        ..a
    };
    let (mut w, ids, mut mem) = racing(true, &[a, b]);
    let d = w.t.get_mut(ids[1]).unwrap();
    assert_eq!(
        pin::acquire(d, &mut mem, 1, m, false),
        Err(GrantError::GeneralError)
    );
    assert!(!d.grant().active(1).is_pinned());
}

/// Xen's `_set_status_v1` reads `frame` after the status bits are set:
/// a granter that changes `frame` before then cannot make the grantee
/// map the frame it named earlier.
#[test]
fn the_frame_is_read_after_the_status_is_set() {
    let m = 2;
    let (mut w, ids, mut mem) = racing(false, &[grant(m, 6, false), grant(m, 7, false)]);
    let d = w.t.get_mut(ids[1]).unwrap();
    let mfn = pin::acquire(d, &mut mem, 1, m, false).unwrap();
    assert_eq!(Some(mfn), d.p2m().translate(&mem, Gfn(7)).map(|e| e.mfn));
    assert_ne!(Some(mfn), d.p2m().translate(&mem, Gfn(6)).map(|e| e.mfn));
}

#[test]
fn a_granted_frame_another_domain_maps_cannot_be_ballooned_out() {
    let (mut w, ids) = World::new(2, FRAMES);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, 10, grant(m, 5, false));
    let h = w.map(m, g, 10, MAP_GFN, false).unwrap();
    let free = w.free();
    let balloon = |w: &mut World, domid, gfn| {
        let d = w.t.get_mut(domid).unwrap();
        d.balloon_out(&mut w.pool, &mut w.mem, Gfn(gfn))
    };
    assert_eq!(balloon(&mut w, g, 5), Err(DomainError::GrantInUse(Gfn(5))));
    // Nor can the mapper give back the frame it maps: it is not its own.
    assert_eq!(
        balloon(&mut w, m, MAP_GFN),
        Err(DomainError::NotOwnRam(Gfn(MAP_GFN)))
    );
    // Nor a grant-table frame.
    assert_eq!(
        balloon(&mut w, g, TABLE_GFN),
        Err(DomainError::NotOwnRam(Gfn(TABLE_GFN)))
    );
    assert_eq!(w.free(), free);
    w.unmap(m, h, MAP_GFN).unwrap();
    let free = w.free();
    assert_eq!(balloon(&mut w, g, 5), Ok(()));
    assert_eq!(w.free(), free + 1);
    assert!(w.mfn(g, 5).is_none());
}
