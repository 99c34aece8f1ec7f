//! Domains as the protocol shows them: the control ABI's `DomainInfo` as
//! a [`DomainSummary`], a [`DomainRef`] resolved against the list, and
//! hypervisor errors as [`MgmtError`]s.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use abi::control::{
    parse_domain_name, DomainInfo, DOMAIN_FLAG_BLOCKED, DOMAIN_FLAG_DYING, DOMAIN_FLAG_PAUSED,
    DOMAIN_FLAG_RUNNING, DOMAIN_FLAG_SHUTDOWN,
};
use abi::xen::errno::Errno;
use guest_pv_shim::XenError;
use mgmt::{
    DomId, DomainCounters, DomainOperation, DomainRef, DomainState, DomainSummary, MgmtError,
    ShutdownReason,
};
use toolstack::{list_domains, CreateError, Hypervisor};

/// The name in `info`, or `?` if the field is not a valid name.
pub fn name_of(info: &DomainInfo) -> &str {
    parse_domain_name(&info.name).unwrap_or("?")
}

/// Whether `info` is dom0 itself (domid 0, the hardware domain). A
/// control domU also carries `DOMAIN_FLAG_PRIVILEGED`, yet it is a guest
/// like any other to dom0: it has a console, a store tree and devices.
pub fn is_dom0(info: &DomainInfo) -> bool {
    info.domid == 0
}

/// `info`'s state, from its flags: dying, shut down, paused, running,
/// blocked, else runnable (the first that applies).
pub fn state_of(info: &DomainInfo) -> DomainState {
    let flag = |f: u32| info.flags & f != 0;
    if flag(DOMAIN_FLAG_DYING) {
        DomainState::Dying
    } else if flag(DOMAIN_FLAG_SHUTDOWN) {
        // xen-core reports only Xen's codes (SCHEDOP_shutdown refuses
        // others): anything else shows as a crash.
        let reason = ShutdownReason::from_code(info.shutdown_reason);
        DomainState::Shutdown(reason.unwrap_or(ShutdownReason::Crash))
    } else if flag(DOMAIN_FLAG_PAUSED) {
        DomainState::Paused
    } else if flag(DOMAIN_FLAG_RUNNING) {
        DomainState::Running
    } else if flag(DOMAIN_FLAG_BLOCKED) {
        DomainState::Blocked
    } else {
        DomainState::Runnable
    }
}

/// `info` for `list` and `DomainInfo`.
pub fn summary(info: &DomainInfo) -> DomainSummary {
    DomainSummary {
        domid: info.domid,
        name: name_of(info).into(),
        state: state_of(info),
        memory_kib: info.memory_kib,
        max_memory_kib: info.max_memory_kib,
        vcpus: info.nr_vcpus,
        cpu_time_ns: info.cpu_time_ns,
    }
}

/// `domid`'s counters (`CONTROL_OP_GET_STATS`); `None` if it went away
/// since it was listed.
pub fn counters(hv: &mut impl Hypervisor, domid: DomId) -> Option<DomainCounters> {
    let stats = hv.domain_stats(domid).ok()?;
    let exits = stats
        .exits
        .iter()
        .take(usize::try_from(stats.nr_exit_codes).unwrap_or(usize::MAX));
    Some(DomainCounters {
        domid,
        cpu_time_ns: stats.cpu_time_ns,
        vm_exits: exits.map(|e| e.count).sum(),
        hypercalls: stats.hypercalls.iter().sum(),
    })
}

/// Every domain, by domid.
pub fn list(hv: &mut impl Hypervisor) -> Result<Vec<DomainInfo>, MgmtError> {
    list_domains(hv).map_err(|e| hypervisor_error("the domain list", e))
}

/// The domain `domain` names.
pub fn find(hv: &mut impl Hypervisor, domain: &DomainRef) -> Result<DomainInfo, MgmtError> {
    let unknown = || MgmtError::UnknownDomain(domain.clone());
    match domain {
        DomainRef::Id(domid) => hv.domain_info(*domid).map_err(|e| match e {
            Errno::ESRCH => unknown(),
            e => hypervisor_error("getinfo", e),
        }),
        DomainRef::Name(name) => list(hv)?
            .into_iter()
            .find(|info| name_of(info) == name)
            .ok_or_else(unknown),
    }
}

/// Refuses `operation` on dom0, and on a domain that shut down or is
/// being destroyed.
pub fn check_operable(info: &DomainInfo, operation: DomainOperation) -> Result<(), MgmtError> {
    if is_dom0(info) {
        return Err(MgmtError::Dom0Protected(operation));
    }
    match state_of(info) {
        state @ (DomainState::Dying | DomainState::Shutdown(_)) => Err(MgmtError::InvalidState {
            domid: info.domid,
            operation,
            state,
        }),
        _ => Ok(()),
    }
}

/// A failed hypervisor operation the protocol has no better word for.
pub fn hypervisor_error(operation: &str, errno: Errno) -> MgmtError {
    MgmtError::Hypervisor {
        operation: operation.into(),
        errno: -errno.value(),
    }
}

/// A failed hypercall of the shim (a raw negative return) the protocol
/// has no better word for; a return that is no `i32` shows as `i32::MIN`.
pub fn xen_error(operation: &str, e: XenError) -> MgmtError {
    MgmtError::Hypervisor {
        operation: operation.into(),
        errno: i32::try_from(e.0).unwrap_or(i32::MIN),
    }
}

/// [`toolstack::create_domain`]'s error in the operator's terms;
/// `max_domains` is what the hypervisor holds when it has no room.
pub fn create_error(e: CreateError, name: &str, max_domains: u32) -> MgmtError {
    let invalid = |field: &str, e: &CreateError| MgmtError::InvalidConfig {
        field: field.into(),
        reason: e.to_string(),
    };
    match e {
        CreateError::BadName => invalid("name", &e),
        CreateError::BadVcpus(_) => invalid("vcpus", &e),
        CreateError::NoMemory => invalid("memory", &e),
        CreateError::Image(e) => MgmtError::BadKernelImage(e.to_string()),
        CreateError::NotEnoughMemory {
            needed_kib,
            free_kib,
        } => MgmtError::NotEnoughMemory {
            needed_kib,
            free_kib,
        },
        CreateError::TooManyDomains => MgmtError::TooManyDomains { max: max_domains },
        CreateError::DuplicateName => MgmtError::DuplicateName(name.into()),
        CreateError::Hypervisor { op, errno } => hypervisor_error(&op.to_string(), errno),
        e @ CreateError::NotCleanedUp { destroy, .. } => {
            let text: String = e.to_string();
            hypervisor_error(&text, destroy)
        }
    }
}
