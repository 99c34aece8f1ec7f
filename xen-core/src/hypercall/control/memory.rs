//! Building a domain's memory.
//!
//! - `POPULATE_MEMORY`: `PopulateRequest` → `PopulateResponse`: fresh,
//!   zeroed frames at the target's GFNs `first_gfn..+nr_frames`. The
//!   first call checks the whole range (`-EINVAL`: 0 or more than
//!   `POPULATE_MAX_FRAMES` frames, a range that overflows or leaves the
//!   p2m's reach, a dying target; `-ENOMEM`: over the domain's limit or
//!   out of host frames; `-EEXIST`: a GFN in the range is mapped
//!   already), so a refused request changes nothing. It is then done in
//!   slices of at most [`SLICE_FRAMES`] frames through a hypercall
//!   continuation that carries the frames done in bits 31:8 of the op
//!   argument (as Xen's `memory_op` carries its extent). `nr_done` counts
//!   the frames populated from `first_gfn`: if the host runs out of frames
//!   between slices, the call fails with `-ENOMEM` and `nr_done` frames
//!   stay (Xen's `populate_physmap` reports partial progress likewise;
//!   the toolstack destroys a domain whose build fails). Any domain, the
//!   caller too.
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
//! - `SET_MAX_MEM`: `SetMaxMemRequest`: the domain's `max_pages` becomes
//!   `max_memkb / 4` (Xen's domctl `max_mem`); below what it holds, it
//!   keeps its frames and gets no more until under the limit. `-EINVAL`
//!   above `MAX_DOMAIN_PAGES`; `-ESRCH`. Any domain, the caller too.
//! - `UNMAP_FOREIGN`: `UnmapRequest`: removes the caller's foreign
//!   mappings at `caller_gfn..+nr_frames`, all or nothing. `-EINVAL`: 0 or
//!   more than `MAP_MAX_FRAMES` frames, or a GFN without a foreign
//!   mapping. The caller's `p2m_generation` moves on: the run loop
//!   flushes its TLB before it runs again.

use super::{continued, zero, ControlOp, Dom0};
use crate::domain::foreign::{self, ForeignRange};
use crate::domain::SLICE_FRAMES;
use crate::hypercall::{Ctx, HypercallEnv, HypercallOutcome};
use crate::mm::{FramePool, Gfn, PhysMem};
use abi::control::{
    MapRequest, PopulateRequest, PopulateResponse, SetMaxMemRequest, UnmapRequest,
    CONTROL_OP_POPULATE_MEMORY, MAP_MAX_FRAMES, POPULATE_MAX_FRAMES,
};
use abi::xen::errno::Errno;

pub(super) fn populate<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    op: ControlOp,
) -> Result<HypercallOutcome, Errno> {
    let req: PopulateRequest = ctx.read(op.request)?;
    req.header.check()?;
    zero(&req.pad)?;
    let done = u64::from(op.progress);
    if !(1..=POPULATE_MAX_FRAMES).contains(&req.nr_frames) || done >= req.nr_frames {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    let first = Gfn(req.first_gfn);
    if done == 0 {
        domain
            .check_populate(ctx.pool, ctx.mem, first, req.nr_frames)
            .map_err(Errno::from)?;
    }
    ctx.write(op.response, &PopulateResponse { nr_done: done })?;
    let slice = (req.nr_frames - done).min(SLICE_FRAMES);
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    // `check_populate` (or the first slice) made sure the range is in reach.
    let at = Gfn(first.0.saturating_add(done));
    domain
        .populate(ctx.pool, ctx.mem, at, slice)
        .map_err(Errno::from)?;
    let done = done + slice;
    // Written once above: cannot fault now.
    ctx.write(op.response, &PopulateResponse { nr_done: done })?;
    if done < req.nr_frames {
        // Cannot fail: done < nr_frames <= POPULATE_MAX_FRAMES.
        let progress = u32::try_from(done).map_err(|_| Errno::EINVAL)?;
        let again = continued(CONTROL_OP_POPULATE_MEMORY, progress);
        return Ok(HypercallOutcome::Continue(ctx.args.continue_with(0, again)));
    }
    Ok(HypercallOutcome::Return(0))
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
    foreign::map(ctx.domains, ctx.pool, ctx.mem, caller, &range).map_err(Errno::from)?;
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
    .map_err(Errno::from)?;
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

pub(super) fn set_max_mem<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<i64, Errno> {
    let req: SetMaxMemRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad)?;
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    domain
        .set_max_pages(req.max_memkb / super::FRAME_KIB)
        .map_err(|_| Errno::EINVAL)?;
    Ok(0)
}
