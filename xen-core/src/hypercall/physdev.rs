//! `physdev_op(cmd, arg)`, `xen/include/public/physdev.h`: the pirq
//! sub-ops (`xen/arch/x86/physdev.c`). `arg` points at the sub-op's
//! structure (the same layout for 32- and 64-bit callers), copied in once
//! (`-EFAULT`); the logic is [`crate::irq::Routing`]'s.
//!
//! - `PHYSDEVOP_map_pirq` and `PHYSDEVOP_unmap_pirq`: the hardware domain
//!   only (`-EPERM` for any other caller, as Xen's XSM default), and only
//!   for itself (`DOMID_SELF` or its domid; another existing domain is
//!   `-EPERM`: no device passthrough to domUs yet, a difference from
//!   Xen), `-ESRCH` for a domid with no domain. Only
//!   `MAP_PIRQ_TYPE_GSI` (`-EINVAL` for MSI and the rest: xen-core does
//!   not program MSI yet). The struct is written back (`pirq`) whatever
//!   the result, as Xen does. A control domU is no hardware domain:
//!   `-EPERM`.
//! - `PHYSDEVOP_eoi`, `PHYSDEVOP_irq_status_query`: the hardware domain,
//!   on its own pirqs (`-EINVAL` for one it does not have). A domU (a
//!   control domU too) has no
//!   pirqs (it cannot map one): `-ENOSYS`, Xen's `hvm_physdev_op` answer
//!   to a domain without `has_pirq` (every PVH domU), before the argument
//!   is read.
//! - Other sub-ops: `-ENOSYS`.

use abi::xen::domid::DOMID_SELF;
use abi::xen::errno::Errno;
use abi::xen::physdev::{
    PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevUnmapPirq, MAP_PIRQ_TYPE_GSI,
    PHYSDEVOP_EOI, PHYSDEVOP_IRQ_STATUS_QUERY, PHYSDEVOP_MAP_PIRQ, PHYSDEVOP_UNMAP_PIRQ,
};

use super::args::RawArgs;
use super::table::{HardwareDomain, Request};
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// A `physdev_op` sub-op any domain may call; `arg` is the guest address
/// of its struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhysdevOp {
    Eoi { arg: u64 },
    IrqStatusQuery { arg: u64 },
}

/// A `physdev_op` sub-op only the hardware domain may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhysdevDom0Op {
    MapPirq { arg: u64 },
    UnmapPirq { arg: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[1];
    match a.u32(0) {
        PHYSDEVOP_EOI => Request::PhysdevOp(PhysdevOp::Eoi { arg }),
        PHYSDEVOP_IRQ_STATUS_QUERY => Request::PhysdevOp(PhysdevOp::IrqStatusQuery { arg }),
        PHYSDEVOP_MAP_PIRQ => Request::HardwareOnly(PhysdevDom0Op::MapPirq { arg }),
        PHYSDEVOP_UNMAP_PIRQ => Request::HardwareOnly(PhysdevDom0Op::UnmapPirq { arg }),
        _ => Request::NoSys,
    }
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: PhysdevOp,
) -> Result<i64, Errno> {
    let me = ctx.caller.domid;
    if ctx.domain()?.hardware().is_none() {
        return Err(Errno::ENOSYS);
    }
    match op {
        PhysdevOp::Eoi { arg } => {
            let req: PhysdevEoi = ctx.read(arg)?;
            ctx.domains.irqs_mut().eoi(me, req.irq)?;
        }
        PhysdevOp::IrqStatusQuery { arg } => {
            let mut req: PhysdevIrqStatusQuery = ctx.read(arg)?;
            req.flags = ctx.domains.irqs().status_query(me, req.irq)?;
            ctx.write(arg, &req)?;
        }
    }
    Ok(0)
}

pub(crate) fn handle_dom0<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: HardwareDomain,
    op: PhysdevDom0Op,
) -> Result<i64, Errno> {
    match op {
        PhysdevDom0Op::MapPirq { arg } => {
            let mut req: PhysdevMapPirq = ctx.read(arg)?;
            let dom = own_domain(ctx, req.domid)?;
            let result = if req.map_type == MAP_PIRQ_TYPE_GSI {
                ctx.domains.irqs_mut().map_gsi(dom, req.index, req.pirq)
            } else {
                Err(Errno::EINVAL)
            };
            if let Ok(pirq) = result {
                req.pirq = i32::try_from(pirq).map_err(|_| Errno::EINVAL)?;
                log::info!("d{dom}: GSI {} mapped to pirq {pirq}", req.index);
            }
            ctx.write(arg, &req)?;
            result.map(|_| 0)
        }
        PhysdevDom0Op::UnmapPirq { arg } => {
            let req: PhysdevUnmapPirq = ctx.read(arg)?;
            let dom = own_domain(ctx, req.domid)?;
            ctx.domains.irqs_mut().unmap(dom, req.pirq)?;
            Ok(0)
        }
    }
}

/// The caller, named by `DOMID_SELF` or its domid: `-ESRCH` for a domid
/// with no domain, `-EPERM` for another domain.
fn own_domain<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &Ctx<'_, P, M, E>,
    domid: u16,
) -> Result<u16, Errno> {
    let me = ctx.caller.domid;
    if domid == DOMID_SELF || domid == me {
        return Ok(me);
    }
    match ctx.domains.get(domid) {
        None => Err(Errno::ESRCH),
        Some(_) => Err(Errno::EPERM),
    }
}
