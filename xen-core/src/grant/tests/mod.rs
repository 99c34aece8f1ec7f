//! Grant tables against simulated machine memory: domains with RAM at GFN
//! 0.. and their grant-table frames mapped at [`TABLE_GFN`]..; entries
//! are written as the granting guest writes them, through its p2m.

mod hypercalls;
mod model;
mod race;
mod units;

use abi::xen::domid::DomId;
use abi::xen::grant_table::{
    GrantEntryV1, GrantHandle, GrantRef, GNTMAP_HOST_MAP, GNTMAP_READONLY, GTF_PERMIT_ACCESS,
    GTF_READONLY,
};
use zerocopy::{FromBytes, IntoBytes};

use super::frames::map_table_frame;
use super::map::{map_grant_ref, unmap_grant_ref, MapRequest};
use super::{GrantError, GRANT_TABLE_FRAMES};
use crate::domain::table::DomainTable;
use crate::domain::DomainConfig;
use crate::guest_mem::GuestPhys;
use crate::mm::{FramePool, Gfn, Mfn, PhysMem};
use crate::paging::sim::{machine, SimPhys, SimPool};

/// RAM pages of each domain, at GFN 0.
const RAM: u64 = 16;
/// Where each domain maps its grant-table frames.
const TABLE_GFN: u64 = 0x100;
/// A free GFN range for mappings.
const MAP_GFN: u64 = 0x200;

struct World {
    t: DomainTable,
    pool: SimPool,
    mem: SimPhys,
}

/// An entry granting `frame` to `domid`.
fn grant(domid: DomId, frame: u64, readonly: bool) -> GrantEntryV1 {
    GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 },
        domid,
        frame: frame as u32,
    }
}

fn host_map(readonly: bool) -> u32 {
    GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 }
}

impl World {
    /// dom0 and `domus` domUs, each with [`RAM`] pages and a full grant
    /// table mapped at [`TABLE_GFN`].
    fn new(domus: usize, frames: u64) -> (Self, Vec<DomId>) {
        let (mut pool, mut mem) = machine(frames);
        let mut t = DomainTable::new();
        let mut ids = Vec::new();
        for i in 0..=domus {
            let name = format!("d{i}");
            let cfg = DomainConfig {
                name: &name,
                max_pages: 64,
                vcpus: 1,
            };
            let id = if i == 0 {
                t.create_dom0(&cfg, &mut pool, &mut mem)
            } else {
                t.create_domu(&cfg, &mut pool, &mut mem)
            }
            .unwrap();
            let d = t.get_mut(id).unwrap();
            d.populate(&mut pool, &mut mem, Gfn(0), RAM).unwrap();
            for f in 0..GRANT_TABLE_FRAMES as u64 {
                map_table_frame(d, &mut pool, &mut mem, f, Gfn(TABLE_GFN + f)).unwrap();
            }
            ids.push(id);
        }
        (Self { t, pool, mem }, ids)
    }

    fn phys(&mut self, domid: DomId) -> GuestPhys<'_, SimPhys> {
        GuestPhys::new(self.t.get(domid).unwrap().p2m(), &mut self.mem)
    }

    /// The granting guest writes entry `gref` (all 8 bytes).
    fn set_entry(&mut self, granter: DomId, gref: GrantRef, e: GrantEntryV1) {
        let gpa = (TABLE_GFN << 12) + 8 * u64::from(gref);
        self.phys(granter).write(gpa, e.as_bytes()).unwrap();
    }

    /// Entry `gref` as the granting guest reads it.
    fn entry(&mut self, granter: DomId, gref: GrantRef) -> GrantEntryV1 {
        let mut b = [0u8; 8];
        let gpa = (TABLE_GFN << 12) + 8 * u64::from(gref);
        self.phys(granter).read(gpa, &mut b).unwrap();
        GrantEntryV1::read_from_bytes(&b).unwrap()
    }

    fn map(
        &mut self,
        mapper: DomId,
        granter: DomId,
        gref: GrantRef,
        gfn: u64,
        readonly: bool,
    ) -> Result<GrantHandle, GrantError> {
        let req = MapRequest {
            host_addr: gfn << 12,
            flags: host_map(readonly),
            gref,
            dom: granter,
        };
        map_grant_ref(&mut self.t, &mut self.pool, &mut self.mem, mapper, &req)
    }

    fn unmap(&mut self, mapper: DomId, handle: GrantHandle, gfn: u64) -> Result<(), GrantError> {
        unmap_grant_ref(
            &mut self.t,
            &mut self.pool,
            &mut self.mem,
            mapper,
            gfn << 12,
            0,
            handle,
        )
    }

    fn destroy(&mut self, domid: DomId) {
        self.t.kill(domid).unwrap();
        self.t
            .destroy(domid, &mut self.pool, &mut self.mem)
            .unwrap();
    }

    /// The machine frame behind a domain's GFN.
    fn mfn(&self, domid: DomId, gfn: u64) -> Option<Mfn> {
        let d = self.t.get(domid)?;
        Some(d.p2m().translate(&self.mem, Gfn(gfn))?.mfn)
    }

    fn free(&self) -> u64 {
        self.pool.free_frames()
    }

    fn frame(&self, mfn: Mfn) -> &[u8; 4096] {
        self.mem.frame(mfn)
    }
}
