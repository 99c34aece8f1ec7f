//! `sched_op(cmd, arg)`, `xen/include/public/sched.h`.
//!
//! - `SCHEDOP_yield`: [`HypercallOutcome::Yield`].
//! - `SCHEDOP_block`: clears `evtchn_upcall_mask` in the caller's
//!   `vcpu_info`; if an upcall is already pending it returns at once
//!   (Xen's `local_events_need_delivery`), otherwise the vCPU blocks
//!   ([`HypercallOutcome::Block`]) until its one-shot timer fires or an
//!   event wakes it.
//! - `SCHEDOP_shutdown`: reads `struct sched_shutdown`; reasons poweroff,
//!   reboot, suspend, crash, watchdog and soft_reset shut the domain down
//!   ([`HypercallOutcome::Shutdown`]); a reason above `SHUTDOWN_MAX` is
//!   `-EINVAL` (Xen truncates it to 8 bits first). Suspend and soft reset
//!   are recorded as reasons; nothing resumes or resets the domain yet.
//! - `SCHEDOP_poll` (needs event channels), `SCHEDOP_remote_shutdown`,
//!   `SCHEDOP_shutdown_code`, `SCHEDOP_watchdog` and the rest: `-ENOSYS`.

use core::mem::offset_of;

use abi::xen::errno::Errno;
use abi::xen::sched::{SchedShutdown, SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD};
use abi::xen::shared_info::VcpuInfo;

use super::args::RawArgs;
use super::shared::current_vcpu_info;
use super::table::Request;
use super::{Ctx, HypercallEnv, HypercallOutcome};
use crate::domain::ShutdownReason;
use crate::mm::{FramePool, PhysMem};

/// A `sched_op` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchedOp {
    Yield,
    Block,
    Shutdown { arg: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    Request::SchedOp(match a.u32(0) {
        SCHEDOP_YIELD => SchedOp::Yield,
        SCHEDOP_BLOCK => SchedOp::Block,
        SCHEDOP_SHUTDOWN => SchedOp::Shutdown { arg: a.arg[1] },
        _ => return Request::NoSys,
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: SchedOp,
) -> Result<HypercallOutcome, Errno> {
    match op {
        SchedOp::Yield => Ok(HypercallOutcome::Yield),
        SchedOp::Block => block(ctx),
        SchedOp::Shutdown { arg } => {
            let request: SchedShutdown = ctx.read(arg)?;
            let reason = ShutdownReason::from_xen(request.reason).ok_or(Errno::EINVAL)?;
            ctx.domain_mut()?.shutdown(reason);
            Ok(HypercallOutcome::Shutdown(reason))
        }
    }
}

fn block<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
) -> Result<HypercallOutcome, Errno> {
    let vcpu_id = ctx.caller.vcpu_id;
    let domain = ctx.domains.get(ctx.caller.domid).ok_or(Errno::ESRCH)?;
    let mut pending = [0u8];
    if let Some(info) = current_vcpu_info(domain, vcpu_id) {
        // A registered area the guest unmapped reads as nothing pending.
        let mask = info.at(offset_of!(VcpuInfo, evtchn_upcall_mask));
        let _ = mask.write(domain, ctx.mem, &[0]);
        let at = info.at(offset_of!(VcpuInfo, evtchn_upcall_pending));
        let _ = at.read(domain, ctx.mem, &mut pending);
    }
    if pending[0] != 0 {
        return Ok(HypercallOutcome::Return(0));
    }
    ctx.domain_mut()?
        .vcpu_mut(vcpu_id)
        .ok_or(Errno::ENOENT)?
        .block();
    Ok(HypercallOutcome::Block)
}
