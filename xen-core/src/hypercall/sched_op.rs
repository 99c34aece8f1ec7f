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
//!   ([`HypercallOutcome::Shutdown`]) and dom0 gets `VIRQ_DOM_EXC`; a
//!   reason above `SHUTDOWN_MAX` is `-EINVAL` (Xen truncates it to 8 bits
//!   first). Suspend and soft reset
//!   are recorded as reasons; nothing resumes or resets the domain yet.
//! - `SCHEDOP_poll` (Xen's `do_poll`): reads `struct sched_poll` and its
//!   array of ports (`-EFAULT`); more than [`MAX_POLL_PORTS`] ports, or a
//!   port at or above [`MAX_EVTCHN_PORTS`], is `-EINVAL`. Returns 0 at
//!   once if the vCPU has events to take
//!   ([`crate::event::events_need_delivery`]) or a listed port is
//!   pending (checked in order: a bad port after a pending one is not
//!   seen, as in Xen); otherwise the vCPU blocks
//!   ([`HypercallOutcome::Block`], RAX 0) until a listed port (with
//!   several ports: any port of the domain) becomes pending, an upcall
//!   wakes it, or the absolute `timeout` (system time in ns, 0 = none)
//!   passes ([`crate::event::expire_polls`]).
//! - `SCHEDOP_remote_shutdown` (dom0 only, `-EPERM`): reads `struct
//!   sched_remote_shutdown` and shuts the named domain down with the
//!   reason, as Xen's `domain_shutdown` does (`-ESRCH` for no such
//!   domain, `-EINVAL` for a bad reason); dom0 gets `VIRQ_DOM_EXC`. The
//!   guest is not asked (there is no xenstore `control/shutdown` yet).
//!   Naming the caller itself is its own `SCHEDOP_shutdown`.
//! - `SCHEDOP_pin_override`: `-EPERM` for a domU (Xen: hardware domain
//!   only, checked first); dom0: `-ENOSYS` (vCPUs are not pinned here).
//! - `SCHEDOP_shutdown_code`, `SCHEDOP_watchdog` and the rest: `-ENOSYS`.

use core::mem::offset_of;

use abi::xen::errno::Errno;
use abi::xen::event_channel::VIRQ_DOM_EXC;
use abi::xen::sched::{
    SchedPoll, SchedRemoteShutdown, SchedShutdown, SCHEDOP_BLOCK, SCHEDOP_PIN_OVERRIDE,
    SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD,
};
use abi::xen::shared_info::VcpuInfo;
use zerocopy::IntoBytes;

use super::args::RawArgs;
use super::compat::CompatSchedPoll;
use super::table::{Dom0, Dom0Request, Request};
use super::{fault, Ctx, HypercallEnv, HypercallOutcome};
use crate::domain::shared::current_vcpu_info;
use crate::domain::ShutdownReason;
use crate::event::{self, Poll, MAX_EVTCHN_PORTS, MAX_POLL_PORTS};
use crate::mm::{FramePool, PhysMem};

/// A `sched_op` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchedOp {
    Yield,
    Block,
    Shutdown { arg: u64 },
    Poll { arg: u64 },
    PinOverride,
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    Request::SchedOp(match a.u32(0) {
        SCHEDOP_YIELD => SchedOp::Yield,
        SCHEDOP_BLOCK => SchedOp::Block,
        SCHEDOP_SHUTDOWN => SchedOp::Shutdown { arg: a.arg[1] },
        SCHEDOP_POLL => SchedOp::Poll { arg: a.arg[1] },
        SCHEDOP_PIN_OVERRIDE => SchedOp::PinOverride,
        SCHEDOP_REMOTE_SHUTDOWN => {
            return Request::Dom0Only(Dom0Request::RemoteShutdown { arg: a.arg[1] })
        }
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
            let reason = ShutdownReason::from_code(request.reason).ok_or(Errno::EINVAL)?;
            ctx.domain_mut()?.shutdown(reason);
            // Xen's domain_shutdown tells dom0's toolstack.
            event::raise_global_virq(ctx.domains, ctx.mem, VIRQ_DOM_EXC);
            Ok(HypercallOutcome::Shutdown(reason))
        }
        SchedOp::Poll { arg } => poll(ctx, arg),
        SchedOp::PinOverride if ctx.domain()?.hardware().is_some() => Err(Errno::ENOSYS),
        SchedOp::PinOverride => Err(Errno::EPERM),
    }
}

pub(crate) fn remote_shutdown<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    arg: u64,
) -> Result<HypercallOutcome, Errno> {
    let request: SchedRemoteShutdown = ctx.read(arg)?;
    let reason = ShutdownReason::from_code(request.reason).ok_or(Errno::EINVAL)?;
    let target = ctx.domains.get_mut(request.domain_id).ok_or(Errno::ESRCH)?;
    target.shutdown(reason);
    event::raise_global_virq(ctx.domains, ctx.mem, VIRQ_DOM_EXC);
    if request.domain_id == ctx.caller.domid {
        return Ok(HypercallOutcome::Shutdown(reason));
    }
    Ok(HypercallOutcome::Return(0))
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
        // Xen's smp_mb() between enabling delivery and checking for
        // events: the store must be visible before the load.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
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

fn poll<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
) -> Result<HypercallOutcome, Errno> {
    let request: SchedPoll = ctx.read_abi::<_, CompatSchedPoll>(arg)?;
    if request.nr_ports > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u32; MAX_POLL_PORTS as usize];
    let ports = buf
        .get_mut(..request.nr_ports as usize)
        .ok_or(Errno::EINVAL)?;
    ctx.guest(|g| g.copy_from_guest(request.ports, ports.as_mut_bytes()))?
        .map_err(fault)?;
    let vcpu_id = ctx.caller.vcpu_id;
    let domain = ctx.domains.get(ctx.caller.domid).ok_or(Errno::ESRCH)?;
    if event::events_need_delivery(domain, ctx.mem, vcpu_id) {
        return Ok(HypercallOutcome::Return(0));
    }
    for &port in ports.iter() {
        if port >= MAX_EVTCHN_PORTS {
            return Err(Errno::EINVAL);
        }
        if event::is_pending(domain, ctx.mem, port) {
            return Ok(HypercallOutcome::Return(0));
        }
    }
    let poll = Poll {
        port: match ports {
            [one] => Some(*one),
            _ => None,
        },
        deadline_ns: (request.timeout != 0).then_some(request.timeout),
    };
    let domain = ctx.domain_mut()?;
    domain.events_mut().start_poll(vcpu_id, poll)?;
    domain.vcpu_mut(vcpu_id).ok_or(Errno::ENOENT)?.block();
    Ok(HypercallOutcome::Block)
}
