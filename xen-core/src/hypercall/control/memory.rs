//! Building a domain's memory.
//!
//! - `POPULATE_MEMORY`: `PopulateRequest` → `PopulateResponse`: fresh,
//!   zeroed frames at the target's GFNs `first_gfn..+nr_frames`, all or
//!   nothing. `-EINVAL`: 0 or more than `POPULATE_MAX_FRAMES` frames, a
//!   range that overflows or leaves the p2m's reach, a dying target.
//!   `-ENOMEM`: over the domain's limit or out of host frames. `-EEXIST`:
//!   a GFN in the range is mapped already. Any domain, the caller too.
//! - `MAP_FOREIGN`: `MapRequest`: the target's frames at `first_gfn..` are
//!   mapped read-write at the caller's GFNs `caller_gfn..`, all or
//!   nothing, for any target that is not dying (a domain being built, or
//!   dom0's inspection of a stopped one). The caller's GFNs must be
//!   unused (its RAM is never replaced; Xen's privcmd maps over ballooned
//!   out GFNs in the same spirit). `-EINVAL`: 0 or more than
//!   `MAP_MAX_FRAMES` frames, the target is the caller, a caller GFN in
//!   use or out of reach. `-ENOENT`: a target GFN is not RAM it owns.
//!   `-ENOMEM`: more than `MAX_FOREIGN_MAPS` mappings held, or the NPT
//!   cannot grow. `-ESRCH`: no such or a dying target. While mapped, a
//!   target GFN cannot be replaced in its p2m; destroying the target
//!   removes the mappings from the caller's p2m
//!   ([`crate::domain::foreign`]).
//! - `UNMAP_FOREIGN`: `UnmapRequest`: removes the caller's foreign
//!   mappings at `caller_gfn..+nr_frames`, all or nothing. `-EINVAL`: 0 or
//!   more than `MAP_MAX_FRAMES` frames, or a GFN without a foreign
//!   mapping. The caller's `p2m_generation` moves on: the run loop
//!   flushes its TLB before it runs again.

use abi::control::{
    MapRequest, PopulateRequest, PopulateResponse, UnmapRequest, MAP_MAX_FRAMES,
    POPULATE_MAX_FRAMES,
};
use abi::xen::errno::Errno;
use zerocopy::FromZeros;

use super::{zero, Dom0};
use crate::domain::foreign::{self, ForeignError, ForeignRange};
use crate::domain::{DomainError, DomainState};
use crate::hypercall::{Ctx, HypercallEnv};
use crate::mm::{FramePool, Gfn, PhysMem};

pub(super) fn populate<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: PopulateRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad)?;
    if !(1..=POPULATE_MAX_FRAMES).contains(&req.nr_frames) {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    if domain.state() == DomainState::Dying {
        return Err(Errno::EINVAL);
    }
    ctx.write(response, &PopulateResponse::new_zeroed())?;
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    domain
        .populate(ctx.pool, ctx.mem, Gfn(req.first_gfn), req.nr_frames)
        .map_err(|e| match e {
            DomainError::OverMaxPages | DomainError::OutOfFrames => Errno::ENOMEM,
            DomainError::GfnMapped(_) => Errno::EEXIST,
            _ => Errno::EINVAL,
        })?;
    let done = PopulateResponse {
        nr_done: req.nr_frames,
    };
    // Written once above: cannot fault now.
    ctx.write(response, &done)?;
    Ok(0)
}

pub(super) fn map_foreign<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<i64, Errno> {
    let req: MapRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad.to_le_bytes())?;
    frames(req.nr_frames)?;
    let range = ForeignRange {
        owner: req.domid,
        owner_gfn: Gfn(req.first_gfn),
        mapper_gfn: Gfn(req.caller_gfn),
        count: req.nr_frames.into(),
    };
    let caller = ctx.caller.domid;
    foreign::map(ctx.domains, ctx.pool, ctx.mem, caller, &range).map_err(foreign_errno)?;
    Ok(0)
}

pub(super) fn unmap_foreign<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<i64, Errno> {
    let req: UnmapRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad.to_le_bytes())?;
    frames(req.nr_frames)?;
    let (caller, first) = (ctx.caller.domid, Gfn(req.caller_gfn));
    foreign::unmap(
        ctx.domains,
        ctx.pool,
        ctx.mem,
        caller,
        first,
        req.nr_frames.into(),
    )
    .map_err(foreign_errno)?;
    Ok(0)
}

/// A map or unmap length: 1..=`MAP_MAX_FRAMES` (`-EINVAL`).
fn frames(n: u32) -> Result<(), Errno> {
    if (1..=MAP_MAX_FRAMES).contains(&n) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn foreign_errno(e: ForeignError) -> Errno {
    match e {
        ForeignError::NoSuchDomain => Errno::ESRCH,
        ForeignError::NotOwned(_) => Errno::ENOENT,
        ForeignError::OwnMemory | ForeignError::GfnInUse(_) | ForeignError::NotMapped(_) => {
            Errno::EINVAL
        }
        ForeignError::TooMany | ForeignError::OutOfFrames => Errno::ENOMEM,
    }
}
