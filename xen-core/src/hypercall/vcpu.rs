//! `set_timer_op(timeout)` and `vcpu_op(cmd, vcpuid, arg)`,
//! `xen/include/public/vcpu.h`.
//!
//! `set_timer_op`: the caller's one-shot timer at absolute system time
//! `timeout` ns (64 bits; a 32-bit caller passes it in EBX (low) and ECX
//! (high)); 0 stops it. A negative timeout, or one [`SET_TIMER_MAX_AHEAD_NS`]
//! or more ahead, fires at once (Xen's workaround for wrapped Linux
//! jiffies). Returns 0.
//!
//! `vcpu_op`: `vcpuid` must be one of the caller's vCPUs (`-ENOENT`,
//! checked before the sub-op, as Xen does); a domain can only name its
//! own vCPUs. Any of its vCPUs may act on any other (Xen's
//! `common_vcpu_op`):
//! - `VCPUOP_initialise`: reads a `vcpu_hvm_context` (`-EFAULT`), then
//!   `-EEXIST` if the vCPU is initialised already, `-EINVAL` for a bad
//!   context ([`crate::domain::hvm_context`]); the vCPU stays down.
//! - `VCPUOP_up`: `-EINVAL` if not initialised; starts it (0 if it is
//!   up already).
//! - `VCPUOP_down`: stops it, registers kept (up resumes it); when no
//!   other vCPU is up, the domain shuts down (poweroff) instead.
//! - `VCPUOP_is_up`: 1 if the vCPU is up, else 0.
//! - `VCPUOP_set_singleshot_timer` (caller's own vCPU only, `-EINVAL`):
//!   reads `vcpu_set_singleshot_timer`; with `VCPU_SSHOTTMR_future` a
//!   timeout already past fails `-ETIME` (Xen 4.19 ignores that flag; we
//!   keep the documented behaviour), otherwise the timer is set (a past
//!   one fires at the next scheduling point).
//! - `VCPUOP_stop_singleshot_timer` (own vCPU only): stops it.
//! - `VCPUOP_register_vcpu_info` (own vCPU, or one that is down): reads
//!   `vcpu_register_vcpu_info`; as Xen 4.19's `map_guest_area`: `-EINVAL`
//!   if `rsvd` is not 0, the offset leaves the page or the GFN is not the
//!   domain's own writable RAM; `-ENXIO` if the 64-byte `vcpu_info` would
//!   cross the page or is not 8-byte aligned; `-EBUSY` if one is
//!   registered already. The current contents are
//!   copied there and the pvclock published; from then on that vCPU's
//!   `vcpu_info` is read there. Unlike Xen, no event is marked pending to
//!   force a rescan: nothing delivers upcalls yet.
//! - `VCPUOP_get_physid`: `-EINVAL`, Xen's answer for every vCPU but a
//!   hardware domain's pinned with `dom0_vcpus_pin` (none here).
//! - `VCPUOP_get_runstate_info`: writes the vCPU's `vcpu_runstate_info`
//!   (`-EFAULT`) with its times up to now (Xen's `vcpu_runstate_get`,
//!   [`crate::domain::runstate`]).
//! - `VCPUOP_register_runstate_memory_area`: reads the area's address
//!   (`-EFAULT`), keeps it, and writes the runstate there (the caller's
//!   as last changed, another vCPU's up to now, as Xen), ignoring a
//!   failed write as Xen does. The run loop writes it again at every
//!   switch of that vCPU ([`super::runstate_area::update_runstate_area`]).
//!   With `VMASST_TYPE_runstate_update_flag` on ([`super::vm_assist`])
//!   each write is bracketed by `XEN_RUNSTATE_UPDATE` in
//!   `state_entry_time` ([`super::runstate_area`]), as Xen brackets its
//!   updates at each context switch (Xen's registration-time copy is
//!   plain; this one ends with the same bytes).
//! - `VCPUOP_stop_periodic_timer`: 0 (there is no periodic timer, as in
//!   Xen for HVM guests until one is set).
//! - `VCPUOP_send_nmi` (any vCPU of the caller's domain): `-EINVAL`
//!   unless `arg` is NULL; latches an NMI on it and wakes it if blocked
//!   (Xen 4.17's `arch_do_vcpu_op`, which HVM/PVH guests reach through
//!   `do_vcpu_op`: `test_and_set_bool(v->arch.nmi_pending)`, then
//!   `vcpu_kick`); injected at its next entry as one from its local
//!   APIC is (`vlapic::deliver`).
//! - Other sub-ops: `-ENOSYS`.
//!
//! A timer firing wakes a blocked vCPU (the scheduler does it, see
//! [`crate::sched`]); VIRQ_TIMER follows with event channels.

use core::mem::size_of;

use abi::convert::u32_const;
use abi::xen::errno::Errno;
use abi::xen::event_channel::VIRQ_DOM_EXC;
use abi::xen::shared_info::VcpuInfo;
use abi::xen::vcpu::{
    VcpuHvmContext, VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuRunstateInfo,
    VcpuSetSingleshotTimer, RUNSTATE_RUNNING, VCPUOP_DOWN, VCPUOP_GET_PHYSID,
    VCPUOP_GET_RUNSTATE_INFO, VCPUOP_INITIALISE, VCPUOP_IS_UP,
    VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, VCPUOP_REGISTER_VCPU_INFO, VCPUOP_SEND_NMI,
    VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
    VCPUOP_UP, VCPU_SSHOTTMR_FUTURE,
};
use abi::xen::vm_assist::VMASST_TYPE_RUNSTATE_UPDATE_FLAG;

use super::args::RawArgs;
use super::compat::CompatSetSingleshotTimer;
use super::runstate_area;
use super::table::Request;
use super::{fault, Ctx, HypercallEnv, HypercallOutcome};
use crate::domain::shared::{current_vcpu_info, vcpu_info_fits, Place};
use crate::domain::vcpu::VcpuRunState;
use crate::domain::vcpu_ops::VcpuDown;
use crate::domain::xen_state::VcpuInfoArea;
use crate::domain::ShutdownReason;
use crate::event;
use crate::mm::{FramePool, Gfn, PhysMem, PAGE_SIZE};
use crate::time::pvclock::update_vcpu_time;

/// A `set_timer_op` this far ahead or more fires at once (Xen: 2^50 ns,
/// about 13 days).
pub const SET_TIMER_MAX_AHEAD_NS: u64 = 1 << 50;

/// A `vcpu_op` sub-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VcpuOp {
    Initialise {
        arg: u64,
    },
    Up,
    Down,
    IsUp,
    SetSingleshotTimer {
        arg: u64,
    },
    StopSingleshotTimer,
    RegisterVcpuInfo {
        arg: u64,
    },
    GetPhysid,
    GetRunstateInfo {
        arg: u64,
    },
    RegisterRunstateMemoryArea {
        arg: u64,
    },
    StopPeriodicTimer,
    SendNmi {
        arg: u64,
    },
    /// Answered `-ENOSYS` once the vCPU id is found valid.
    Unknown,
}

pub(crate) fn decode_set_timer_op(a: &RawArgs) -> Request {
    let timeout = if a.compat {
        (a.arg[1] << 32 | a.arg[0]).cast_signed()
    } else {
        a.arg[0].cast_signed()
    };
    Request::SetTimerOp { timeout }
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[2];
    let op = match a.u32(0) {
        VCPUOP_INITIALISE => VcpuOp::Initialise { arg },
        VCPUOP_UP => VcpuOp::Up,
        VCPUOP_DOWN => VcpuOp::Down,
        VCPUOP_IS_UP => VcpuOp::IsUp,
        VCPUOP_SET_SINGLESHOT_TIMER => VcpuOp::SetSingleshotTimer { arg },
        VCPUOP_STOP_SINGLESHOT_TIMER => VcpuOp::StopSingleshotTimer,
        VCPUOP_REGISTER_VCPU_INFO => VcpuOp::RegisterVcpuInfo { arg },
        VCPUOP_GET_PHYSID => VcpuOp::GetPhysid,
        VCPUOP_GET_RUNSTATE_INFO => VcpuOp::GetRunstateInfo { arg },
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => VcpuOp::RegisterRunstateMemoryArea { arg },
        VCPUOP_STOP_PERIODIC_TIMER => VcpuOp::StopPeriodicTimer,
        VCPUOP_SEND_NMI => VcpuOp::SendNmi { arg },
        _ => VcpuOp::Unknown,
    };
    Request::VcpuOp {
        op,
        vcpu_id: a.u32(1),
    }
}

pub(crate) fn set_timer_op<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    timeout: i64,
) -> Result<i64, Errno> {
    let now = ctx.now_ns();
    let id = ctx.caller.vcpu_id;
    let vcpu = ctx.domain_mut()?.vcpu_mut(id).ok_or(Errno::ESRCH)?;
    match u64::try_from(timeout) {
        Ok(0) => vcpu.stop_timer(),
        Ok(at) if at.saturating_sub(now) < SET_TIMER_MAX_AHEAD_NS => vcpu.set_timer(at),
        _ => vcpu.set_timer(now),
    }
    Ok(0)
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: VcpuOp,
    vcpu_id: u32,
) -> Result<HypercallOutcome, Errno> {
    ctx.domain()?.vcpu(vcpu_id).ok_or(Errno::ENOENT)?;
    match op {
        VcpuOp::Initialise { arg } => {
            let hvm: VcpuHvmContext = ctx.read(arg)?;
            let cr4_valid = ctx.env.host().guest_cr4_valid;
            ctx.domain_mut()?
                .vcpu_initialise(vcpu_id, &hvm, cr4_valid)?;
        }
        VcpuOp::Up => ctx.domain_mut()?.vcpu_up(vcpu_id)?,
        VcpuOp::Down => {
            if ctx.domain_mut()?.vcpu_down(vcpu_id)? == VcpuDown::DomainPoweredOff {
                // Xen's domain_shutdown tells dom0's toolstack.
                event::raise_global_virq(ctx.domains, ctx.mem, VIRQ_DOM_EXC);
                return Ok(HypercallOutcome::Shutdown(ShutdownReason::Poweroff));
            }
        }
        _ => return value_op(ctx, op, vcpu_id).map(HypercallOutcome::Return),
    }
    Ok(HypercallOutcome::Return(0))
}

/// The sub-ops that only return a value (`handle` serves the others).
fn value_op<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: VcpuOp,
    vcpu_id: u32,
) -> Result<i64, Errno> {
    let state = ctx
        .domain()?
        .vcpu(vcpu_id)
        .ok_or(Errno::ENOENT)?
        .run_state();
    let own = vcpu_id == ctx.caller.vcpu_id;
    match op {
        VcpuOp::Unknown => Err(Errno::ENOSYS),
        // Served by `handle`.
        VcpuOp::Initialise { .. } | VcpuOp::Up | VcpuOp::Down => Err(Errno::ENOSYS),
        VcpuOp::IsUp => Ok(i64::from(state != VcpuRunState::Down)),
        VcpuOp::GetPhysid => Err(Errno::EINVAL),
        VcpuOp::SetSingleshotTimer { .. } | VcpuOp::StopSingleshotTimer if !own => {
            Err(Errno::EINVAL)
        }
        VcpuOp::SetSingleshotTimer { arg } => {
            let t: VcpuSetSingleshotTimer = ctx.read_abi::<_, CompatSetSingleshotTimer>(arg)?;
            if t.timeout_abs_ns < ctx.now_ns() && t.flags & VCPU_SSHOTTMR_FUTURE != 0 {
                return Err(Errno::ETIME);
            }
            vcpu_mut(ctx, vcpu_id)?.set_timer(t.timeout_abs_ns);
            Ok(0)
        }
        VcpuOp::StopSingleshotTimer => {
            vcpu_mut(ctx, vcpu_id)?.stop_timer();
            Ok(0)
        }
        VcpuOp::RegisterVcpuInfo { .. } if !own && state != VcpuRunState::Down => {
            Err(Errno::EINVAL)
        }
        VcpuOp::RegisterVcpuInfo { arg } => register_vcpu_info(ctx, vcpu_id, arg),
        VcpuOp::GetRunstateInfo { arg } => {
            let info = runstate(ctx, vcpu_id, true)?;
            // A one-off copy, not the registered area: never flagged.
            write_runstate(ctx, arg, &info, false)?;
            Ok(0)
        }
        VcpuOp::RegisterRunstateMemoryArea { arg } => {
            let area: VcpuRegisterRunstateMemoryArea = ctx.read(arg)?;
            let compat = ctx.compat;
            vcpu_mut(ctx, vcpu_id)?
                .runstate_mut()
                .set_area(area.addr, compat);
            // Xen copies `v->runstate` for the caller, the times brought
            // up to now for another vCPU.
            let info = runstate(ctx, vcpu_id, !own)?;
            let update_flag = ctx
                .domain()?
                .xen()
                .vm_assist(VMASST_TYPE_RUNSTATE_UPDATE_FLAG);
            // Xen ignores a failed copy here: the area may be mapped later.
            let _ = write_runstate(ctx, area.addr, &info, update_flag);
            Ok(0)
        }
        // There is no periodic timer (Xen's HVM default is none too):
        // stopping it succeeds, which tells Linux the singleshot timer is
        // there (`xen_time_init`).
        VcpuOp::StopPeriodicTimer => Ok(0),
        VcpuOp::SendNmi { arg } if arg != 0 => Err(Errno::EINVAL),
        VcpuOp::SendNmi { .. } => {
            let vcpu = vcpu_mut(ctx, vcpu_id)?;
            if vcpu.raise_nmi() {
                vcpu.wake();
            }
            Ok(0)
        }
    }
}

/// `vcpu_id`'s `vcpu_runstate_info`: with `now`, the times brought up
/// to now (Xen's `vcpu_runstate_get`), else as the scheduler last changed
/// it (`v->runstate`). The caller is running; a vCPU no pCPU runs has its
/// state brought up to date first (a wake the scheduler has not seen).
fn runstate<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    vcpu_id: u32,
    now: bool,
) -> Result<VcpuRunstateInfo, Errno> {
    let now_ns = ctx.now_ns();
    let own = vcpu_id == ctx.caller.vcpu_id;
    let domain = ctx.domain_mut()?;
    if own {
        domain
            .vcpu_mut(vcpu_id)
            .ok_or(Errno::ENOENT)?
            .runstate_mut()
            .sync(RUNSTATE_RUNNING, now_ns);
    } else {
        domain.sync_runstate(vcpu_id, now_ns);
    }
    let runstate = domain.vcpu(vcpu_id).ok_or(Errno::ENOENT)?.runstate();
    Ok(if now {
        runstate.get(now_ns)
    } else {
        *runstate.info()
    })
}

/// Writes `info` at `gva` in the caller's layout
/// ([`runstate_area::write`]).
fn write_runstate<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    gva: u64,
    info: &VcpuRunstateInfo,
    update_flag: bool,
) -> Result<(), Errno> {
    let compat = ctx.compat;
    ctx.guest(|g| runstate_area::write(g, gva, info, compat, update_flag))?
        .map_err(fault)
}

fn vcpu_mut<'c, P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &'c mut Ctx<'_, P, M, E>,
    id: u32,
) -> Result<&'c mut crate::domain::vcpu::Vcpu, Errno> {
    ctx.domain_mut()?.vcpu_mut(id).ok_or(Errno::ENOENT)
}

fn register_vcpu_info<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    id: u32,
    arg: u64,
) -> Result<i64, Errno> {
    let request: VcpuRegisterVcpuInfo = ctx.read(arg)?;
    if request.rsvd != 0 || request.offset >= u32_const::<PAGE_SIZE>() {
        return Err(Errno::EINVAL);
    }
    if !vcpu_info_fits(request.offset.into()) {
        return Err(Errno::ENXIO);
    }
    let slot = usize::try_from(id).map_err(|_| Errno::ENOENT)?;
    let area = VcpuInfoArea {
        gfn: Gfn(request.mfn),
        // Below PAGE_SIZE: checked by vcpu_info_fits.
        offset: u16::try_from(request.offset).map_err(|_| Errno::EINVAL)?,
    };
    let domain = ctx.domains.get(ctx.caller.domid).ok_or(Errno::ESRCH)?;
    if domain
        .xen()
        .vcpu_info
        .get(slot)
        .copied()
        .flatten()
        .is_some()
    {
        return Err(Errno::EBUSY);
    }
    if !domain.owns_writable(&*ctx.mem, area.gfn) {
        return Err(Errno::EINVAL);
    }
    let mut contents = [0u8; size_of::<VcpuInfo>()];
    if let Some(old) = current_vcpu_info(domain, id) {
        old.read(domain, ctx.mem, &mut contents).map_err(fault)?;
    }
    Place::Guest(area.gpa())
        .write(domain, ctx.mem, &contents)
        .map_err(fault)?;
    *ctx.domain_mut()?
        .xen_mut()
        .vcpu_info
        .get_mut(slot)
        .ok_or(Errno::ENOENT)? = Some(area);
    let domain = ctx.domains.get(ctx.caller.domid).ok_or(Errno::ESRCH)?;
    let tsc = ctx.env.tsc();
    // Owned, writable and just written: publishing there cannot fault.
    let _ = update_vcpu_time(domain, ctx.mem, id, ctx.env.clock(), tsc);
    Ok(0)
}
