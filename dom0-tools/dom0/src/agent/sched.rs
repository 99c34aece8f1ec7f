//! Scheduling requests (protocol 2.7): `Counters` for `vcpu-list` and
//! `top` (control ops `GET_VCPU_STATS` and `GET_STATS` per domain),
//! `VcpuPin` and `SchedCredit`. Arguments are checked here first, so
//! the operator reads what is wrong and what is allowed; the hypervisor
//! checks them again.

use alloc::format;
use alloc::vec::Vec;

use abi::control::{
    DomainInfo, VcpuStats, SCHED_CAP_UNCHANGED, SCHED_PRI_BOOST, SCHED_PRI_OVER,
    SCHED_WEIGHT_UNCHANGED, VCPU_FLAG_PARKED, VCPU_STATE_BLOCKED, VCPU_STATE_PAUSED,
    VCPU_STATE_RUNNABLE, VCPU_STATE_RUNNING,
};
use abi::xen::errno::Errno;
use mgmt::sched::CreditPriority;
use mgmt::{
    CountersSnapshot, CpuSet, DomainRef, DomainSnapshot, MgmtError, Reply, SchedConfig,
    SchedCredit, VcpuCounters, VcpuState,
};
use toolstack::Hypervisor;

use super::domains::{self, find, hypervisor_error};

/// `Counters`: one domain's or every domain's.
pub fn counters(hv: &mut impl Hypervisor, domain: Option<&DomainRef>) -> Result<Reply, MgmtError> {
    let infos = match domain {
        Some(d) => alloc::vec![find(hv, d)?],
        None => domains::list(hv)?,
    };
    let nr_pcpus = hv
        .physinfo()
        .map_err(|e| hypervisor_error("physinfo", e))?
        .nr_pcpus;
    let mut system_time_ns = None;
    let mut snapshots = Vec::new();
    for info in &infos {
        // A domain destroyed since it was listed is left out.
        let Ok(v) = hv.vcpu_stats(info.domid) else {
            continue;
        };
        let Ok(stats) = hv.domain_stats(info.domid) else {
            continue;
        };
        system_time_ns.get_or_insert(v.system_time_ns);
        let nr = usize::try_from(v.nr_vcpus).unwrap_or(usize::MAX);
        let nr_codes = usize::try_from(stats.nr_exit_codes).unwrap_or(usize::MAX);
        snapshots.push(DomainSnapshot {
            vcpus: v.vcpus.iter().take(nr).map(vcpu).collect(),
            exits_by_code: stats
                .exits
                .iter()
                .take(nr_codes)
                .map(|e| (e.exit_code, e.count))
                .collect(),
            hypercalls: stats.hypercalls.iter().sum(),
            weight: v.weight,
            cap: v.cap,
            ..snapshot_of(info)
        });
    }
    Ok(Reply::Counters(CountersSnapshot {
        system_time_ns: system_time_ns.unwrap_or(0),
        nr_pcpus,
        domains: snapshots,
    }))
}

fn snapshot_of(info: &DomainInfo) -> DomainSnapshot {
    let s = domains::summary(info);
    DomainSnapshot {
        domid: s.domid,
        name: s.name,
        state: s.state,
        memory_kib: s.memory_kib,
        max_memory_kib: s.max_memory_kib,
        weight: 0,
        cap: 0,
        vcpus: Vec::new(),
        exits_by_code: Vec::new(),
        hypercalls: 0,
    }
}

/// The protocol's view of one vCPU.
fn vcpu(v: &VcpuStats) -> VcpuCounters {
    VcpuCounters {
        vcpu: v.vcpu_id,
        pcpu: (v.pcpu != abi::control::PCPU_NONE).then_some(v.pcpu),
        state: match v.state {
            VCPU_STATE_RUNNING => VcpuState::Running,
            VCPU_STATE_RUNNABLE => VcpuState::Runnable,
            VCPU_STATE_BLOCKED => VcpuState::Blocked,
            VCPU_STATE_PAUSED => VcpuState::Paused,
            _ => VcpuState::Offline,
        },
        cpu_time_ns: v.cpu_time_ns,
        affinity: CpuSet(v.affinity),
        priority: match v.priority {
            SCHED_PRI_OVER => CreditPriority::Over,
            SCHED_PRI_BOOST => CreditPriority::Boost,
            _ => CreditPriority::Under,
        },
        credit: v.credit,
        parked: v.flags & VCPU_FLAG_PARKED != 0,
        exits: v.exits,
        hypercalls: v.hypercalls,
        events: v.events,
    }
}

/// `VcpuPin`: the vCPU must exist and `cpus` name an online pCPU.
pub fn vcpu_pin(
    hv: &mut impl Hypervisor,
    domain: &DomainRef,
    vcpu: u32,
    cpus: CpuSet,
) -> Result<Reply, MgmtError> {
    let info = find(hv, domain)?;
    if vcpu >= info.nr_vcpus {
        return Err(invalid(
            "vcpu",
            format!(
                "domain {} has {} vCPU(s) (0-{}); there is no vCPU {vcpu}",
                info.domid,
                info.nr_vcpus,
                info.nr_vcpus.saturating_sub(1)
            ),
        ));
    }
    check_cpus(cpus, nr_pcpus(hv)?)?;
    let effective = hv
        .set_vcpu_affinity(info.domid, vcpu, cpus.0)
        .map_err(|e| match e {
            Errno::ESRCH => MgmtError::UnknownDomain(domain.clone()),
            e => hypervisor_error("vcpu-pin", e),
        })?;
    guest_pv_shim::println!(
        "dom0: mgmt: d{}v{vcpu} pinned to {cpus} (effective {})",
        info.domid,
        CpuSet(effective)
    );
    Ok(Reply::VcpuPinned {
        effective: CpuSet(effective),
    })
}

/// The host's pCPUs.
fn nr_pcpus(hv: &mut impl Hypervisor) -> Result<u32, MgmtError> {
    Ok(hv
        .physinfo()
        .map_err(|e| hypervisor_error("physinfo", e))?
        .nr_pcpus)
}

/// `cpus` must name an online pCPU.
fn check_cpus(cpus: CpuSet, nr_pcpus: u32) -> Result<(), MgmtError> {
    if cpus.online(nr_pcpus).0 == 0 {
        return Err(invalid(
            "cpus",
            format!(
                "{cpus} names no online pCPU (the host has {nr_pcpus}: {})",
                CpuSet::first(nr_pcpus)
            ),
        ));
    }
    Ok(())
}

/// A new domain's `cpus`, `weight` and `cap` against this host, before
/// anything is built: the same checks and messages as `vcpu-pin` and
/// `sched-credit`.
pub fn check_config(hv: &mut impl Hypervisor, sched: &SchedConfig) -> Result<(), MgmtError> {
    if *sched == SchedConfig::default() {
        return Ok(());
    }
    let nr_pcpus = nr_pcpus(hv)?;
    check_credit(sched.weight, sched.cap, nr_pcpus)?;
    sched.cpus.map_or(Ok(()), |cpus| check_cpus(cpus, nr_pcpus))
}

/// `SchedCredit`: reads (and for one domain, sets) weight and cap.
pub fn sched_credit(
    hv: &mut impl Hypervisor,
    domain: Option<&DomainRef>,
    weight: Option<u16>,
    cap: Option<u16>,
) -> Result<Reply, MgmtError> {
    check_credit(weight, cap, nr_pcpus(hv)?)?;
    let infos = match domain {
        Some(d) => alloc::vec![find(hv, d)?],
        None if weight.is_some() || cap.is_some() => {
            return Err(invalid(
                "domain",
                "setting a weight or cap needs -d DOMAIN".into(),
            ))
        }
        None => domains::list(hv)?,
    };
    let mut out = Vec::new();
    for info in &infos {
        let set = hv.sched_credit(
            info.domid,
            weight.unwrap_or(SCHED_WEIGHT_UNCHANGED),
            cap.unwrap_or(SCHED_CAP_UNCHANGED),
        );
        let now = match set {
            Ok(now) => now,
            // Gone since it was listed.
            Err(Errno::ESRCH) if domain.is_none() => continue,
            Err(Errno::ESRCH) => return Err(MgmtError::UnknownDomain(DomainRef::Id(info.domid))),
            Err(e) => return Err(hypervisor_error("sched-credit", e)),
        };
        if weight.is_some() || cap.is_some() {
            guest_pv_shim::println!(
                "dom0: mgmt: d{} credit weight {} cap {}",
                info.domid,
                now.weight,
                now.cap
            );
        }
        out.push(SchedCredit {
            domid: info.domid,
            name: domains::name_of(info).into(),
            weight: now.weight,
            cap: now.cap,
        });
    }
    Ok(Reply::SchedCredit(out))
}

/// Xen's ranges: weight 1..=65535, cap 0..=100 × pCPUs.
fn check_credit(weight: Option<u16>, cap: Option<u16>, nr_pcpus: u32) -> Result<(), MgmtError> {
    if weight == Some(0) {
        return Err(invalid("weight", "must be 1 to 65535".into()));
    }
    let max_cap = nr_pcpus.saturating_mul(100);
    if cap.is_some_and(|c| u32::from(c) > max_cap) {
        return Err(invalid(
            "cap",
            format!(
                "must be 0 (no cap) to {max_cap} (percent of one pCPU; the host has {nr_pcpus})"
            ),
        ));
    }
    Ok(())
}

fn invalid(what: &str, reason: alloc::string::String) -> MgmtError {
    MgmtError::InvalidSchedParam {
        what: what.into(),
        reason,
    }
}
