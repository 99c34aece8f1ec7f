//! Scheduling control ops (added in 1.4).
//!
//! - `GET_VCPU_STATS`: `DomainRequest` → `VcpuStatsResponse`: each vCPU's
//!   state, pCPU, affinity, credit and counters, the domain's weight and
//!   cap, and the system time they were read at. Read-only: what the
//!   hot path already counted, nothing more.
//! - `SCHED_CREDIT`: `SchedCreditRequest` → `SchedCreditInfo`: sets the
//!   weight (1..=65535; 0 keeps it) and the cap (0..=100 × pCPUs;
//!   `SCHED_CAP_UNCHANGED` keeps it; `-EINVAL` otherwise, nothing set),
//!   answers with the values now.
//! - `SET_VCPU_AFFINITY`: `VcpuAffinityRequest` → `VcpuAffinityResponse`:
//!   pins a vCPU (`-EINVAL` for a vCPU id past the domain's count or a
//!   mask with no online pCPU, as Xen's `vcpu_set_hard_affinity`).
//!
//! State-changing ops write their response once before changing
//! anything, so an unwritable response (`-EFAULT`) changes nothing.

use abi::control::{
    DomainRequest, SchedCreditInfo, SchedCreditRequest, VcpuAffinityRequest, VcpuAffinityResponse,
    VcpuStats, VcpuStatsResponse, PCPU_NONE, SCHED_CAP_UNCHANGED, SCHED_PRI_BOOST, SCHED_PRI_OVER,
    SCHED_PRI_UNDER, SCHED_WEIGHT_UNCHANGED, VCPU_FLAG_PARKED, VCPU_STATE_BLOCKED, VCPU_STATE_DOWN,
    VCPU_STATE_PAUSED, VCPU_STATE_RUNNABLE, VCPU_STATE_RUNNING,
};
use abi::xen::errno::Errno;
use zerocopy::FromZeros;

use super::{zero, Dom0};
use crate::domain::vcpu::VcpuRunState;
use crate::domain::{Domain, DomainState};
use crate::hypercall::{Caller, Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};
use crate::sched::params::{CpuMask, Priority};

pub(super) fn get_vcpu_stats<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: DomainRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad)?;
    let now = ctx.now_ns();
    let domain = ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    let stats = vcpu_stats(domain, ctx.caller, now);
    ctx.write(response, &stats)?;
    Ok(0)
}

pub(super) fn sched_credit<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: SchedCreditRequest = ctx.read(request)?;
    req.header.check()?;
    if req.pad != 0 {
        return Err(Errno::EINVAL);
    }
    ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    ctx.write(response, &SchedCreditInfo::new_zeroed())?;
    let nr_pcpus = ctx.env.host().nr_pcpus;
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    let weight = (req.weight != SCHED_WEIGHT_UNCHANGED).then_some(req.weight);
    let cap = (req.cap != SCHED_CAP_UNCHANGED).then_some(req.cap);
    domain.sched_mut().set(weight, cap, nr_pcpus)?;
    let info = SchedCreditInfo {
        weight: domain.sched().weight(),
        cap: domain.sched().cap(),
        pad: 0,
    };
    if weight.is_some() || cap.is_some() {
        log::info!(
            "d{}: credit weight {} cap {}",
            req.domid,
            info.weight,
            info.cap
        );
    }
    ctx.write(response, &info)?;
    Ok(0)
}

pub(super) fn set_vcpu_affinity<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: VcpuAffinityRequest = ctx.read(request)?;
    req.header.check()?;
    if req.pad != 0 {
        return Err(Errno::EINVAL);
    }
    ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    ctx.write(response, &VcpuAffinityResponse::new_zeroed())?;
    let online = CpuMask::first(ctx.env.host().nr_pcpus);
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    let nr_vcpus = domain.nr_vcpus();
    let effective =
        domain
            .sched_mut()
            .set_affinity(req.vcpu_id, nr_vcpus, CpuMask(req.affinity), online)?;
    log::info!(
        "d{}v{}: hard affinity {:#x}",
        req.domid,
        req.vcpu_id,
        req.affinity
    );
    ctx.write(
        response,
        &VcpuAffinityResponse {
            effective: effective.0,
        },
    )?;
    Ok(0)
}

/// The ABI's view of `d`'s vCPUs at system time `now_ns`.
fn vcpu_stats(d: &Domain, caller: &Caller, now_ns: u64) -> VcpuStatsResponse {
    let mut r = VcpuStatsResponse::new_zeroed();
    r.system_time_ns = now_ns;
    r.weight = d.sched().weight();
    r.cap = d.sched().cap();
    for (slot, v) in r.vcpus.iter_mut().zip(d.vcpus()) {
        let id = v.id();
        let unit = d.sched().unit(id);
        let counters = d.vcpu_counters(id).copied().unwrap_or_default();
        // The caller runs on its pCPU even where no scheduler picked it.
        let running =
            unit.is_some_and(|u| u.running) || (d.domid() == caller.domid && id == caller.vcpu_id);
        *slot = VcpuStats {
            vcpu_id: id,
            state: state(d.state(), v.run_state(), running),
            pcpu: unit.and_then(|u| u.pcpu).unwrap_or(PCPU_NONE),
            priority: match unit.map(|u| u.priority) {
                Some(Priority::Over) => SCHED_PRI_OVER,
                Some(Priority::Boost) => SCHED_PRI_BOOST,
                _ => SCHED_PRI_UNDER,
            },
            credit: unit.map_or(0, |u| u.credit),
            flags: if unit.is_some_and(|u| u.parked) {
                VCPU_FLAG_PARKED
            } else {
                0
            },
            affinity: unit.map_or(u64::MAX, |u| u.affinity.0),
            cpu_time_ns: v.cpu_time_ns(),
            exits: counters.exits,
            hypercalls: counters.hypercalls,
            events: counters.events,
            wakes: unit.map_or(0, |u| u.wakes),
            runs: unit.map_or(0, |u| u.runs),
        };
        r.nr_vcpus += 1;
    }
    r
}

/// `VCPU_STATE_*` of a vCPU in `run` state of a domain in `domain`
/// state; `running`: it is some pCPU's current vCPU.
fn state(domain: DomainState, run: VcpuRunState, running: bool) -> u32 {
    match (run, domain) {
        (VcpuRunState::Down, _) => VCPU_STATE_DOWN,
        (_, DomainState::Paused | DomainState::Shutdown(_) | DomainState::Crashed(_))
        | (_, DomainState::Dying) => VCPU_STATE_PAUSED,
        (VcpuRunState::Blocked, DomainState::Running) => VCPU_STATE_BLOCKED,
        (VcpuRunState::Runnable, DomainState::Running) if running => VCPU_STATE_RUNNING,
        (VcpuRunState::Runnable, DomainState::Running) => VCPU_STATE_RUNNABLE,
    }
}
