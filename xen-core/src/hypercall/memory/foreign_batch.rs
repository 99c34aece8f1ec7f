//! `XENMEM_add_to_physmap_batch` with `XENMAPSPACE_gmfn_foreign` and
//! `XENMEM_remove_from_physmap`: the foreign mappings of Linux's privcmd
//! in a PVH control domain (`xen_xlate_remap_gfn_array` maps another
//! domain's frames at GFNs Linux took from its balloon or unpopulated
//! pages; `xen_xlate_unmap_gfn_range` removes them). Semantics of Xen's
//! `xenmem_add_to_physmap_batch` (`xen/common/memory.c`) and
//! `p2m_add_foreign` (`xen/arch/x86/mm/p2m.c`), on the bookkeeping of
//! our control op `MAP_FOREIGN` (`crate::domain::foreign`: the limit of
//! `MAX_FOREIGN_MAPS` per mapper, lent counts, release on destroy).
//!
//! `XENMEM_add_to_physmap_batch` (`xen_add_to_physmap_batch`, 32 bytes;
//! 64-bit callers only, `-ENOSYS` from 32-bit code):
//! - the call: a start extent (`cmd >> 6`) beyond 16 bits is `-EDOM`;
//!   an unreadable struct `-EFAULT`; space `gmfn_range` `-EOPNOTSUPP`;
//!   `domid` (the mapper, `DOMID_SELF` or the caller's; another domain
//!   only for a control domain) `-ESRCH` / `-EPERM`; a start extent
//!   above `size` `-EILSEQ` (equal: `-EILSEQ`, or 0 for an empty batch);
//!   an unreadable `idxs[i]`/`gpfns[i]`, an unwritable `errs[i]`
//!   `-EFAULT`; a `gpfns[i]` of `INVALID_GFN` `-EINVAL`. Entries before
//!   the failing one stay done.
//! - per entry, `errs[i]` (the call returns 0): for space `gmfn_foreign`
//!   the frame at the foreign domain's GFN `idxs[i]` is mapped read-write
//!   at the mapper's `gpfns[i]`: `-ESRCH` for a foreign domain that does
//!   not exist or is dying (`DOMID_SELF` included), `-EPERM` for the
//!   caller's own domid (Xen's `rcu_lock_remote_domain_by_id`) or a
//!   mapper without the control privilege, `-EINVAL` for the mapper
//!   itself, a GFN that is not the foreign domain's RAM, or a `gpfns[i]`
//!   beyond the p2m's reach; `-ENOMEM` beyond `MAX_FOREIGN_MAPS` or when
//!   the NPT cannot grow. What `gpfns[i]` held goes first, as in Xen: a
//!   foreign mapping is unmapped, the mapper's own RAM freed; anything
//!   else there (shared info, grant frames or mappings, RAM another
//!   domain maps) is `-EBUSY`, where Xen would unhook it. Other spaces:
//!   `-ENOSYS` per entry (Xen serves them; xen-core serves shared info
//!   and grant frames through `XENMEM_add_to_physmap` only).
//! - at most [`BATCH_SLICE`] entries per call: then it continues itself
//!   (`cmd | next << 6`), as Xen's `hypercall_preempt_check`.
//!
//! `XENMEM_remove_from_physmap` (`xen_remove_from_physmap`): a
//! continuation `-EINVAL`, `-EFAULT`, the domain as above (`-ESRCH`,
//! `-EPERM`); a foreign mapping at `gpfn` is unmapped, the domain's own
//! RAM freed (Xen unmaps it and keeps it allocated until the domain
//! dies); nothing there `-ENOENT`; anything else `-EBUSY`.

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::memory::{
    XenAddToPhysmapBatch, XenRemoveFromPhysmap, XENMAPSPACE_GMFN_FOREIGN, XENMAPSPACE_GMFN_RANGE,
    XENMEM_ADD_TO_PHYSMAP_BATCH,
};

use super::MEMOP_EXTENT_SHIFT;
use crate::domain::foreign::{self, ForeignError, ForeignRange};
use crate::domain::{DomainError, DomainState};
use crate::hypercall::{Ctx, HypercallEnv, HypercallOutcome};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::{P2mKind, NPT_MAX_GFN};

/// Entries one call of `XENMEM_add_to_physmap_batch` maps before it
/// continues itself (Linux sends one per call on x86).
pub const BATCH_SLICE: u64 = 64;

/// Xen's `INVALID_GFN` in a `gpfns[]` entry.
const INVALID_GFN: u64 = u64::MAX;

/// `XENMEM_add_to_physmap_batch` from extent `start` (see the module doc).
pub(crate) fn add_to_physmap_batch<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
    start: u64,
) -> Result<HypercallOutcome, Errno> {
    if ctx.compat {
        return Err(Errno::ENOSYS);
    }
    if start > u64::from(u16::MAX) {
        return Err(Errno::EDOM);
    }
    let batch: XenAddToPhysmapBatch = ctx.read(arg)?;
    if u32::from(batch.space) == XENMAPSPACE_GMFN_RANGE {
        return Err(Errno::EOPNOTSUPP);
    }
    let mapper = ctx.target(batch.domid)?;
    let size = u64::from(batch.size);
    if size <= start {
        return if size == start && start == 0 {
            Ok(HypercallOutcome::Return(0))
        } else {
            Err(Errno::EILSEQ)
        };
    }
    for i in start..size {
        if i - start == BATCH_SLICE {
            let cmd = u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH) | i << MEMOP_EXTENT_SHIFT;
            return Ok(HypercallOutcome::Continue(ctx.args.continue_with(0, cmd)));
        }
        let idx: u64 = ctx.read(element(batch.idxs, i, 8)?)?;
        let gpfn: u64 = ctx.read(element(batch.gpfns, i, 8)?)?;
        if gpfn == INVALID_GFN {
            return Err(Errno::EINVAL);
        }
        let rc = if u32::from(batch.space) == XENMAPSPACE_GMFN_FOREIGN {
            map_foreign(ctx, mapper, batch.foreign_domid, Gfn(idx), Gfn(gpfn))
                .map_or_else(|e| -e.value(), |()| 0)
        } else {
            -Errno::ENOSYS.value()
        };
        ctx.write(element(batch.errs, i, 4)?, &rc)?;
    }
    Ok(HypercallOutcome::Return(0))
}

/// The address of element `i` of `size` bytes of the array at `base`.
fn element(base: u64, i: u64, size: u64) -> Result<u64, Errno> {
    i.checked_mul(size)
        .and_then(|off| base.checked_add(off))
        .ok_or(Errno::EFAULT)
}

/// One `gmfn_foreign` entry: `owner`'s frame at `idx` mapped at the
/// mapper's `gpfn`, after what `gpfn` held is gone (Xen's
/// `p2m_add_foreign`).
fn map_foreign<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    mapper: DomId,
    owner: DomId,
    idx: Gfn,
    gpfn: Gfn,
) -> Result<(), Errno> {
    let owner_ram = match ctx.domains.get(owner) {
        None => return Err(Errno::ESRCH),
        Some(d) if d.state() == DomainState::Dying => return Err(Errno::ESRCH),
        Some(_) if owner == ctx.caller.domid => return Err(Errno::EPERM),
        Some(_) if owner == mapper => return Err(Errno::EINVAL),
        Some(d) => d
            .p2m()
            .translate(&*ctx.mem, idx)
            .is_some_and(|e| e.kind == P2mKind::Owned),
    };
    let may_map = ctx
        .domains
        .get(mapper)
        .is_some_and(|d| d.privilege().is_some());
    if !may_map {
        return Err(Errno::EPERM);
    }
    // Checked before what `gpfn` holds goes, as Xen's p2m_add_foreign.
    if !owner_ram || gpfn.0 > NPT_MAX_GFN {
        return Err(Errno::EINVAL);
    }
    clear_slot(ctx, mapper, gpfn)?;
    let range = ForeignRange {
        owner,
        owner_gfn: idx,
        mapper_gfn: gpfn,
        count: 1,
    };
    foreign::map(ctx.domains, ctx.pool, ctx.mem, mapper, &range).map_err(|e| match e {
        ForeignError::NoSuchDomain => Errno::ESRCH,
        ForeignError::OwnMemory | ForeignError::NotOwned(_) | ForeignError::GfnInUse(_) => {
            Errno::EINVAL
        }
        ForeignError::NotMapped(_) => Errno::EINVAL,
        ForeignError::TooMany | ForeignError::OutOfFrames => Errno::ENOMEM,
    })
}

/// Empties the mapper's `gpfn` for a new mapping, as Xen's
/// `p2m_add_foreign` does: a foreign mapping is unmapped, the mapper's
/// own RAM freed; nothing there is fine; anything else `-EBUSY`.
fn clear_slot<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    domid: DomId,
    gfn: Gfn,
) -> Result<(), Errno> {
    match remove(ctx, domid, gfn) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `XENMEM_remove_from_physmap` (see the module doc).
pub(crate) fn remove_from_physmap<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
    start: u64,
) -> Result<i64, Errno> {
    if start != 0 {
        return Err(Errno::EINVAL);
    }
    let request: XenRemoveFromPhysmap = ctx.read(arg)?;
    let domid = ctx.target(request.domid)?;
    remove(ctx, domid, Gfn(request.gpfn))?;
    Ok(0)
}

/// Removes what `domid` has at `gfn`: a foreign mapping, or its own RAM
/// (freed); `-ENOENT` for nothing, `-EBUSY` for anything else.
fn remove<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    domid: DomId,
    gfn: Gfn,
) -> Result<(), Errno> {
    let domain = ctx.domains.get_mut(domid).ok_or(Errno::ESRCH)?;
    if domain.foreign().held_at(gfn).is_some() {
        return foreign::unmap(ctx.domains, ctx.pool, ctx.mem, domid, gfn, 1)
            .map_err(|_| Errno::EINVAL);
    }
    match domain.p2m().translate(&*ctx.mem, gfn) {
        None => Err(Errno::ENOENT),
        Some(e) if e.kind == P2mKind::Owned => {
            domain
                .balloon_out(ctx.pool, ctx.mem, gfn)
                .map_err(|e| match e {
                    DomainError::GrantInUse(_) | DomainError::ForeignInUse(_) => Errno::EBUSY,
                    other => other.into(),
                })
        }
        Some(_) => Err(Errno::EBUSY),
    }
}
