//! Foreign mappings: another domain's RAM frames mapped into a privileged
//! domain's p2m, so that dom0's domain builder can write a new domain's
//! memory (our `CONTROL_OP_MAP_FOREIGN`, in the role of Xen's privcmd
//! foreign mappings, `XENMAPSPACE_gmfn_foreign`).
//!
//! Each domain holds a [`ForeignMaps`] with two sides:
//! - as a mapper, its mappings by its own GFN: whose frame, at which of
//!   the owner's GFNs, which MFN (at most [`MAX_FOREIGN_MAPS`]);
//! - as an owner, how many foreign mappings each of its GFNs has ("lent").
//!
//! Frame lifetime: a mapping never owns its frame, so nothing here frees
//! a frame and no frame can be freed twice.
//! - While lent, a GFN cannot be replaced in its owner's p2m
//!   ([`super::DomainError::ForeignInUse`]), nor can a mapper's GFN
//!   holding a foreign mapping be replaced by anything but an unmap.
//! - Destroying an owner first removes every mapping of its frames from
//!   the mappers' p2ms ([`release_domain`]): unlike Xen, whose foreign
//!   mappings keep the dying domain's pages, the mapper loses them (its
//!   `p2m_generation` moves on, so its vCPUs flush their TLBs).
//! - Destroying a mapper (a control domU) removes its mappings and
//!   returns the lent counts to the owners.
//!
//! So no domain keeps a mapping of a frame that went back to the pool.

use alloc::collections::BTreeMap;

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use displaydoc::Display;

use super::table::DomainTable;
use super::{Domain, DomainState};
use crate::mm::{FramePool, Gfn, Mfn, PhysMem};
use crate::paging::npt::{P2mAccess, P2mEntry, P2mKind, NPT_MAX_GFN};

/// Foreign mappings one domain may hold at once: two map requests of
/// `abi::control::MAP_MAX_FRAMES` (a builder's window), so the records
/// (on the hypervisor heap) stay small.
pub const MAX_FOREIGN_MAPS: usize = 1024;

/// One foreign mapping, as its mapper records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignMapping {
    /// The domain that owns the frame.
    pub owner: DomId,
    /// The frame's GFN in the owner's p2m.
    pub owner_gfn: Gfn,
    /// The frame.
    pub mfn: Mfn,
}

/// A domain's foreign mappings, as mapper and as owner.
#[derive(Debug, Default)]
pub struct ForeignMaps {
    /// Mappings this domain holds, by its own GFN.
    held: BTreeMap<u64, ForeignMapping>,
    /// Mappings others hold of this domain's GFNs: GFN → count.
    lent: BTreeMap<u64, u32>,
}

impl ForeignMaps {
    /// No mappings (const, for a domain in a `static` table).
    pub const fn new() -> Self {
        Self {
            held: BTreeMap::new(),
            lent: BTreeMap::new(),
        }
    }

    /// Mappings held, by the holder's GFN.
    pub fn held(&self) -> impl Iterator<Item = (Gfn, &ForeignMapping)> {
        self.held.iter().map(|(g, m)| (Gfn(*g), m))
    }

    /// The mapping held at `gfn`, if any.
    pub fn held_at(&self, gfn: Gfn) -> Option<&ForeignMapping> {
        self.held.get(&gfn.0)
    }

    /// Number of mappings held.
    pub fn nr_held(&self) -> usize {
        self.held.len()
    }

    /// Foreign mappings of this domain's `gfn`.
    pub fn lent_count(&self, gfn: Gfn) -> u32 {
        self.lent.get(&gfn.0).copied().unwrap_or(0)
    }

    /// Number of this domain's GFNs that others map.
    pub fn nr_lent(&self) -> usize {
        self.lent.len()
    }

    /// Whether `gfn` must not be replaced or removed by anything but an
    /// unmap: lent out, or holding a mapping.
    pub fn in_use(&self, gfn: Gfn) -> bool {
        self.lent.contains_key(&gfn.0) || self.held.contains_key(&gfn.0)
    }

    fn lend(&mut self, gfn: Gfn) {
        *self.lent.entry(gfn.0).or_insert(0) += 1;
    }

    fn unlend(&mut self, gfn: Gfn) {
        if let Some(n) = self.lent.get_mut(&gfn.0) {
            *n -= 1;
            if *n == 0 {
                self.lent.remove(&gfn.0);
            }
        }
    }
}

/// Why a foreign map or unmap failed. Each variant's doc comment is its
/// message; [`Errno::from`] is its one Xen errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Display)]
pub enum ForeignError {
    /// no such owner domain, or it is dying
    NoSuchDomain,
    /// a domain cannot map its own memory as foreign
    OwnMemory,
    /// owner GFN {0} is not RAM the owner has
    NotOwned(Gfn),
    /// mapper GFN {0} is in use or beyond the p2m's reach
    GfnInUse(Gfn),
    /// mapper GFN {0} holds no foreign mapping
    NotMapped(Gfn),
    /// more than {MAX_FOREIGN_MAPS} foreign mappings
    TooMany,
    /// out of machine frames for the mapper's NPT
    OutOfFrames,
}

impl From<ForeignError> for Errno {
    /// As Xen's privcmd foreign mappings: `-ESRCH`, `-ENOENT` for a
    /// missing frame, `-ENOMEM`, `-EINVAL` for a bad request.
    fn from(e: ForeignError) -> Self {
        match e {
            ForeignError::NoSuchDomain => Errno::ESRCH,
            ForeignError::NotOwned(_) => Errno::ENOENT,
            ForeignError::OwnMemory | ForeignError::GfnInUse(_) | ForeignError::NotMapped(_) => {
                Errno::EINVAL
            }
            ForeignError::TooMany | ForeignError::OutOfFrames => Errno::ENOMEM,
        }
    }
}

/// A range of an owner's frames to map into a mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignRange {
    /// The domain whose frames are mapped.
    pub owner: DomId,
    /// First GFN in the owner.
    pub owner_gfn: Gfn,
    /// First GFN in the mapper.
    pub mapper_gfn: Gfn,
    /// Number of frames.
    pub count: u64,
}

/// Maps `range` into `mapper`'s p2m, read-write. All or nothing: every
/// GFN is checked before the first is mapped, and an NPT that cannot
/// grow undoes the mappings made.
pub fn map(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    range: &ForeignRange,
) -> Result<(), ForeignError> {
    let ForeignRange {
        owner,
        owner_gfn,
        mapper_gfn,
        count,
    } = *range;
    if mapper == owner {
        return Err(ForeignError::OwnMemory);
    }
    let src = domains
        .get(owner)
        .filter(|d| d.state() != DomainState::Dying)
        .ok_or(ForeignError::NoSuchDomain)?;
    let dst = domains.get(mapper).ok_or(ForeignError::NoSuchDomain)?;
    let room = MAX_FOREIGN_MAPS - dst.foreign.nr_held();
    if count > room as u64 {
        return Err(ForeignError::TooMany);
    }
    for i in 0..count {
        let (from, to) = (offset(owner_gfn, i)?, offset(mapper_gfn, i)?);
        match src.p2m.translate(mem, from) {
            Some(e) if e.kind == P2mKind::Owned => {}
            _ => return Err(ForeignError::NotOwned(from)),
        }
        if to.0 > NPT_MAX_GFN || dst.p2m.translate(mem, to).is_some() {
            return Err(ForeignError::GfnInUse(to));
        }
    }
    for i in 0..count {
        let (from, to) = (Gfn(owner_gfn.0 + i), Gfn(mapper_gfn.0 + i));
        if let Err(e) = map_one(domains, pool, mem, mapper, owner, from, to) {
            for j in 0..i {
                unmap_one(domains, pool, mem, mapper, Gfn(mapper_gfn.0 + j));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Removes the mapper's `count` foreign mappings from `mapper_gfn`. All or
/// nothing: every GFN must hold one.
pub fn unmap(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    mapper_gfn: Gfn,
    count: u64,
) -> Result<(), ForeignError> {
    let d = domains.get(mapper).ok_or(ForeignError::NoSuchDomain)?;
    for i in 0..count {
        let gfn = offset(mapper_gfn, i)?;
        if d.foreign.held_at(gfn).is_none() {
            return Err(ForeignError::NotMapped(gfn));
        }
    }
    for i in 0..count {
        unmap_one(domains, pool, mem, mapper, Gfn(mapper_gfn.0 + i));
    }
    Ok(())
}

/// What destroying `d` (already out of `others`) means for foreign
/// mappings: other domains' mappings of its frames leave their p2ms, and
/// its own mappings give their lent counts back.
pub fn release_domain(
    d: &mut Domain,
    others: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
) {
    let owner = d.domid();
    for mapper in others.iter_mut() {
        let gone: alloc::vec::Vec<Gfn> = mapper
            .foreign
            .held()
            .filter(|(_, m)| m.owner == owner)
            .map(|(g, _)| g)
            .collect();
        for gfn in gone {
            mapper.drop_foreign(pool, mem, gfn);
        }
    }
    // Out of its p2m too: the relinquish that follows counts every
    // shared entry it finds as a shared page (a control domU destroyed
    // while it maps frames).
    let held: alloc::vec::Vec<Gfn> = d.foreign.held().map(|(g, _)| g).collect();
    for gfn in held {
        if let Some(m) = d.drop_foreign(pool, mem, gfn) {
            if let Some(o) = others.get_mut(m.owner) {
                o.foreign.unlend(m.owner_gfn);
            }
        }
    }
    d.foreign.lent.clear();
}

fn offset(first: Gfn, i: u64) -> Result<Gfn, ForeignError> {
    first
        .0
        .checked_add(i)
        .map(Gfn)
        .ok_or(ForeignError::GfnInUse(first))
}

/// Maps one checked frame: the owner lends it, the mapper records it.
fn map_one(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    owner: DomId,
    owner_gfn: Gfn,
    mapper_gfn: Gfn,
) -> Result<(), ForeignError> {
    let src = domains.get_mut(owner).ok_or(ForeignError::NoSuchDomain)?;
    let mfn = src
        .p2m
        .translate(mem, owner_gfn)
        .ok_or(ForeignError::NotOwned(owner_gfn))?
        .mfn;
    let dst = domains.get_mut(mapper).ok_or(ForeignError::NoSuchDomain)?;
    let entry = P2mEntry {
        mfn,
        access: P2mAccess::RW,
        kind: P2mKind::Shared,
    };
    dst.p2m
        .map(pool, mem, mapper_gfn, entry)
        .map_err(|_| ForeignError::OutOfFrames)?;
    let record = ForeignMapping {
        owner,
        owner_gfn,
        mfn,
    };
    dst.foreign.held.insert(mapper_gfn.0, record);
    if let Some(src) = domains.get_mut(owner) {
        src.foreign.lend(owner_gfn);
    }
    Ok(())
}

/// Removes the mapper's mapping at `gfn` and the owner's lent count.
fn unmap_one(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    gfn: Gfn,
) {
    let Some(d) = domains.get_mut(mapper) else {
        return;
    };
    if let Some(m) = d.drop_foreign(pool, mem, gfn) {
        if let Some(o) = domains.get_mut(m.owner) {
            o.foreign.unlend(m.owner_gfn);
        }
    }
}

impl Domain {
    /// Its foreign mappings, as mapper and owner.
    pub fn foreign(&self) -> &ForeignMaps {
        &self.foreign
    }

    /// Removes the foreign mapping at `gfn` from the p2m and the records;
    /// the frame stays its owner's.
    fn drop_foreign(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
    ) -> Option<ForeignMapping> {
        let m = self.foreign.held.remove(&gfn.0)?;
        self.p2m_unmap(pool, mem, gfn);
        Some(m)
    }
}
