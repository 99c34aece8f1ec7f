//! Domain life cycle: create, destroy, pause, unpause.
//!
//! - `CREATE`: `CreateRequest` → `CreateResponse`: a domU, paused once,
//!   with an empty p2m, no vCPU up and no memory (populate gives it
//!   some). `-EINVAL`: bad name (`parse_domain_name`), flags outside
//!   `CREATE_FLAGS_VALID`, vCPUs 0 or above this hypervisor's
//!   [`MAX_VCPUS`] (8, below the ABI's `MAX_VCPUS_PER_DOMAIN`), memory 0
//!   or not a multiple of 4 KiB. `-ENOMEM`: memory above
//!   [`MAX_DOMAIN_PAGES`] or above the free memory now (Xen leaves the
//!   latter to the toolstack), or no frame for the domain's own
//!   structures. `-EEXIST`: the name is taken. `-ENOSPC`: the domain
//!   table is full or every domid is in use or in quarantine (Xen says
//!   `-ENOMEM`). The domid is the lowest free one not destroyed within
//!   the last `DOMID_REUSE_DELAY` creations.
//! - `DESTROY`: `DomainRequest`: Xen's `domain_kill`, preemptible as
//!   Xen's is. The first call makes the domain dying (its vCPUs stop, its
//!   event channels close; `GETINFO` shows `DOMAIN_FLAG_DYING` and no
//!   new operation applies to it); each call then does one bounded slice
//!   ([`DomainTable::destroy_slice`]: grant and foreign mappings go
//!   first, then at most [`SLICE_FRAMES`] frames are scrubbed
//!   and freed) and, while work remains, returns a continuation (the
//!   caller re-executes the same call, as with Xen's `-ERESTART`); while
//!   a vCPU of it is still loaded on another pCPU, the call does nothing
//!   but return the continuation (that pCPU was told to stop it). A
//!   `DESTROY` of a dying domain, from any vCPU, carries on where the
//!   last slice stopped. The last slice frees the rest, puts the domid
//!   into quarantine, raises `VIRQ_DOM_EXC` for dom0 and returns
//!   [`HypercallOutcome::DomainDestroyed`]. So the caller sees one call
//!   that succeeds once everything is back. `-EPERM` for the hardware
//!   domain (dom0); `-EINVAL` for the caller itself (a control domU
//!   cannot destroy itself, as Xen's `XEN_DOMCTL_destroydomain`).
//!
//! [`DomainTable::destroy_slice`]: crate::domain::table::DomainTable::destroy_slice
//! - `PAUSE` / `UNPAUSE`: `DomainRequest`: Xen's controller pause count
//!   (a new domain starts paused once; it runs when the count drops to
//!   0). `-EINVAL`: pausing the caller itself (as Xen), unpausing a
//!   domain that is not paused, either for a domain that shut down,
//!   crashed or is dying. `-EOVERFLOW`: already paused
//!   [`MAX_PAUSE_COUNT`](crate::domain::MAX_PAUSE_COUNT) times.

use abi::control::{
    parse_domain_name, CreateRequest, CreateResponse, CREATE_FLAGS_VALID, MAX_VCPUS_PER_DOMAIN,
};
use abi::convert::u32_const;
use abi::xen::errno::Errno;
use abi::xen::event_channel::VIRQ_DOM_EXC;
use zerocopy::FromZeros;

use super::info::domain_request;
use super::{Dom0, FRAME_KIB};
use crate::domain::table::Destruction;
use crate::domain::{DomainConfig, DomainState, MAX_DOMAIN_PAGES, MAX_VCPUS, SLICE_FRAMES};
use crate::event::raise_global_virq;
use crate::hypercall::{Ctx, HypercallEnv, HypercallOutcome};
use crate::mm::{FramePool, PhysMem};

pub(super) fn create<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: CreateRequest = ctx.read(request)?;
    req.header.check()?;
    let name = parse_domain_name(&req.name).ok_or(Errno::EINVAL)?;
    let vcpus_ok =
        (1..=MAX_VCPUS_PER_DOMAIN.min(u32_const::<MAX_VCPUS>())).contains(&req.max_vcpus);
    let memory_ok = req.max_memory_kib != 0 && req.max_memory_kib.is_multiple_of(FRAME_KIB);
    if req.flags & !CREATE_FLAGS_VALID != 0 || !vcpus_ok || !memory_ok {
        return Err(Errno::EINVAL);
    }
    let max_pages = req.max_memory_kib / FRAME_KIB;
    if max_pages > MAX_DOMAIN_PAGES || max_pages > ctx.pool.free_frames() {
        return Err(Errno::ENOMEM);
    }
    ctx.write(response, &CreateResponse::new_zeroed())?;
    let cfg = DomainConfig {
        name,
        max_pages,
        vcpus: req.max_vcpus,
    };
    let domid = ctx
        .domains
        .create_domu(&cfg, ctx.pool, ctx.mem)
        .map_err(Errno::from)?;
    let created = CreateResponse {
        domid,
        ..CreateResponse::new_zeroed()
    };
    // Written once above: cannot fault now.
    ctx.write(response, &created)?;
    log::info!(
        "d{domid} \"{name}\" created: {max_pages} frames, {} vCPUs",
        cfg.vcpus
    );
    Ok(0)
}

pub(super) fn destroy<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<HypercallOutcome, Errno> {
    let domid = domain_request(ctx, request)?;
    let target = ctx.domains.get(domid).ok_or(Errno::ESRCH)?;
    if target.hardware().is_some() {
        return Err(Errno::EPERM);
    }
    if domid == ctx.caller.domid {
        return Err(Errno::EINVAL);
    }
    if target.state() != DomainState::Dying {
        ctx.domains.kill(domid).map_err(Errno::from)?;
        log::info!("d{domid} dying");
    }
    // A vCPU still in guest mode on another pCPU would run on freed
    // memory: its pCPU is kicked (it may no longer run) and the caller
    // comes back, as Xen's domain_kill waits for vcpu_sleep_sync.
    if target_loaded(ctx, domid) {
        return Ok(HypercallOutcome::Continue(ctx.args.again()));
    }
    let step = ctx
        .domains
        .destroy_slice(domid, ctx.pool, ctx.mem, SLICE_FRAMES)
        .map_err(Errno::from)?;
    if step == Destruction::Continues {
        return Ok(HypercallOutcome::Continue(ctx.args.again()));
    }
    raise_global_virq(ctx.domains, ctx.mem, VIRQ_DOM_EXC);
    log::info!("d{domid} destroyed");
    Ok(HypercallOutcome::DomainDestroyed(domid))
}

/// Whether a vCPU of `domid` is still loaded on a pCPU.
fn target_loaded<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &Ctx<'_, P, M, E>,
    domid: abi::xen::domid::DomId,
) -> bool {
    ctx.domains
        .get(domid)
        .is_some_and(crate::domain::Domain::any_vcpu_loaded)
}

pub(super) fn pause<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<i64, Errno> {
    let domid = domain_request(ctx, request)?;
    if domid == ctx.caller.domid {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get_mut(domid).ok_or(Errno::ESRCH)?;
    domain.pause().map_err(Errno::from)?;
    Ok(0)
}

pub(super) fn unpause<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<i64, Errno> {
    let domid = domain_request(ctx, request)?;
    let domain = ctx.domains.get_mut(domid).ok_or(Errno::ESRCH)?;
    domain.unpause().map_err(Errno::from)?;
    Ok(0)
}
