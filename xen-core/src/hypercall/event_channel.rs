//! `event_channel_op(cmd, arg)`, `xen/include/public/event_channel.h`:
//! `arg` points at the sub-op's structure (the same layout for 32- and
//! 64-bit callers). Each handler copies it in once (`-EFAULT`), acts
//! through [`crate::event::ops`], and copies OUT fields back (`-EFAULT`
//! then, with the operation done, as in Xen).
//!
//! - `EVTCHNOP_alloc_unbound`: `dom` is `DOMID_SELF`, the caller, or —
//!   for dom0 only — another domain (`-ESRCH` if none, `-EPERM` without
//!   the privilege); `remote_dom` may be `DOMID_SELF` (the caller).
//! - `EVTCHNOP_bind_interdomain`: `remote_dom` (`DOMID_SELF` allowed)
//!   must exist (`-ESRCH`) and `remote_port` be unbound and offered to
//!   the caller (`-EINVAL`).
//! - `EVTCHNOP_bind_pirq`: a pirq the caller mapped (`physdev_op`);
//!   errors in [`crate::event::ops::bind_pirq`]. Closing the port
//!   unbinds the pirq.
//! - `EVTCHNOP_bind_virq`, `EVTCHNOP_bind_ipi`, `EVTCHNOP_bind_vcpu`,
//!   `EVTCHNOP_send`, `EVTCHNOP_close`, `EVTCHNOP_unmask`: on the caller's
//!   own ports; errors in [`crate::event::ops`].
//! - `EVTCHNOP_status`: `dom` as for alloc_unbound; writes `status`, `vcpu`
//!   and the union.
//! - Every port number beyond the table is `-EINVAL`; the table holds at
//!   most [`crate::event::MAX_EVTCHN_PORTS`] ports (`-ENOSPC` after).
//! - `EVTCHNOP_init_control` (FIFO ABI): the arguments are checked as
//!   Xen's `evtchn_fifo_init_control` checks them (offset past the last
//!   place a control block fits, or not 8-aligned: `-EINVAL`; no such
//!   vCPU: `-ENOENT`; a frame that is not the caller's writable RAM:
//!   `-EINVAL`); a valid request gets `-EOPNOTSUPP`: xen-core offers only
//!   the 2-level ABI, and guests (Linux's `xen_evtchn_fifo_init`) fall
//!   back to it on any error.
//! - `EVTCHNOP_expand_array` (FIFO): reads its 8 bytes (`-EFAULT`), then
//!   `-EOPNOTSUPP`, Xen's answer while the FIFO ABI is not initialised.
//! - `EVTCHNOP_set_priority`: reads port and priority (`-EFAULT`); a port
//!   beyond the table is `-EINVAL`; then `-ENOSYS`, Xen's answer under the
//!   2-level ABI (it has no priorities).
//! - Not implemented (`-ENOSYS`): reset.

use abi::xen::domid::DOMID_SELF;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{
    self as ec, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnClose, EvtchnInitControl, EvtchnSend, EvtchnStatus,
    EvtchnUnmask, EVTCHN_FIFO_CONTROL_BLOCK_SIZE,
};

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::event::ops;
use crate::mm::{FramePool, Gfn, PhysMem};

/// An `event_channel_op` sub-op; `arg` is the guest address of its struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EvtchnOp {
    AllocUnbound { arg: u64 },
    BindInterdomain { arg: u64 },
    BindVirq { arg: u64 },
    BindPirq { arg: u64 },
    BindIpi { arg: u64 },
    BindVcpu { arg: u64 },
    Close { arg: u64 },
    Send { arg: u64 },
    Status { arg: u64 },
    Unmask { arg: u64 },
    InitControl { arg: u64 },
    ExpandArray { arg: u64 },
    SetPriority { arg: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[1];
    Request::EventChannelOp(match a.u32(0) {
        ec::EVTCHNOP_ALLOC_UNBOUND => EvtchnOp::AllocUnbound { arg },
        ec::EVTCHNOP_BIND_INTERDOMAIN => EvtchnOp::BindInterdomain { arg },
        ec::EVTCHNOP_BIND_VIRQ => EvtchnOp::BindVirq { arg },
        ec::EVTCHNOP_BIND_PIRQ => EvtchnOp::BindPirq { arg },
        ec::EVTCHNOP_BIND_IPI => EvtchnOp::BindIpi { arg },
        ec::EVTCHNOP_BIND_VCPU => EvtchnOp::BindVcpu { arg },
        ec::EVTCHNOP_CLOSE => EvtchnOp::Close { arg },
        ec::EVTCHNOP_SEND => EvtchnOp::Send { arg },
        ec::EVTCHNOP_STATUS => EvtchnOp::Status { arg },
        ec::EVTCHNOP_UNMASK => EvtchnOp::Unmask { arg },
        ec::EVTCHNOP_INIT_CONTROL => EvtchnOp::InitControl { arg },
        ec::EVTCHNOP_EXPAND_ARRAY => EvtchnOp::ExpandArray { arg },
        ec::EVTCHNOP_SET_PRIORITY => EvtchnOp::SetPriority { arg },
        _ => return Request::NoSys,
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: EvtchnOp,
) -> Result<i64, Errno> {
    let me = ctx.caller.domid;
    let self_or = |dom| if dom == DOMID_SELF { me } else { dom };
    match op {
        EvtchnOp::AllocUnbound { arg } => {
            let mut req: EvtchnAllocUnbound = ctx.read(arg)?;
            let dom = ctx.target(req.dom)?;
            req.port = ops::alloc_unbound(ctx.domains, dom, self_or(req.remote_dom))?;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::BindInterdomain { arg } => {
            let mut req: EvtchnBindInterdomain = ctx.read(arg)?;
            let remote = self_or(req.remote_dom);
            req.local_port =
                ops::bind_interdomain(ctx.domains, ctx.mem, me, remote, req.remote_port)?;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::BindVirq { arg } => {
            let mut req: EvtchnBindVirq = ctx.read(arg)?;
            req.port = ops::bind_virq(ctx.domain_mut()?, req.virq, req.vcpu)?;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::BindPirq { arg } => {
            let mut req: EvtchnBindPirq = ctx.read(arg)?;
            req.port = ops::bind_pirq(ctx.domains, me, req.pirq)?;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::BindIpi { arg } => {
            let mut req: EvtchnBindIpi = ctx.read(arg)?;
            req.port = ops::bind_ipi(ctx.domain_mut()?, req.vcpu)?;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::BindVcpu { arg } => {
            let req: EvtchnBindVcpu = ctx.read(arg)?;
            ops::bind_vcpu(ctx.domain_mut()?, req.port, req.vcpu)?;
        }
        EvtchnOp::Close { arg } => {
            let req: EvtchnClose = ctx.read(arg)?;
            ops::close(ctx.domains, ctx.mem, me, req.port)?;
        }
        EvtchnOp::Send { arg } => {
            let req: EvtchnSend = ctx.read(arg)?;
            ops::send(ctx.domains, ctx.mem, me, req.port)?;
        }
        EvtchnOp::Status { arg } => {
            let mut req: EvtchnStatus = ctx.read(arg)?;
            let dom = ctx.target(req.dom)?;
            let channel = ops::status(ctx.domains, dom, req.port)?;
            req.set_binding(channel.binding);
            req.vcpu = channel.notify_vcpu;
            ctx.write(arg, &req)?;
        }
        EvtchnOp::Unmask { arg } => {
            let req: EvtchnUnmask = ctx.read(arg)?;
            let domain = ctx.domains.get_mut(me).ok_or(Errno::ESRCH)?;
            ops::unmask(domain, ctx.mem, req.port)?;
        }
        EvtchnOp::InitControl { arg } => {
            let req: EvtchnInitControl = ctx.read(arg)?;
            return Err(init_control(ctx, &req));
        }
        EvtchnOp::ExpandArray { arg } => {
            // `evtchn_expand_array`: array_gfn u64.
            let _: u64 = ctx.read(arg)?;
            return Err(Errno::EOPNOTSUPP);
        }
        EvtchnOp::SetPriority { arg } => {
            // `evtchn_set_priority`: port u32, priority u32.
            let [port, _priority]: [u32; 2] = ctx.read(arg)?;
            ops::status(ctx.domains, me, port)?;
            return Err(Errno::ENOSYS);
        }
    }
    Ok(0)
}

/// Why `EVTCHNOP_init_control` fails: Xen's answer for a bad argument,
/// `-EOPNOTSUPP` for a good one (no FIFO ABI here).
fn init_control<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    req: &EvtchnInitControl,
) -> Errno {
    let last_offset = (1u32 << abi::xen::PAGE_SHIFT) - EVTCHN_FIFO_CONTROL_BLOCK_SIZE;
    if req.offset > last_offset || !req.offset.is_multiple_of(8) {
        return Errno::EINVAL;
    }
    let Some(domain) = ctx.domains.get(ctx.caller.domid) else {
        return Errno::ESRCH;
    };
    if domain.vcpu(req.vcpu).is_none() {
        return Errno::ENOENT;
    }
    if domain.owns_writable(&*ctx.mem, Gfn(req.control_gfn)) {
        Errno::EOPNOTSUPP
    } else {
        Errno::EINVAL
    }
}
