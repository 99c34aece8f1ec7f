//! What the protocol says about domains: how a request names one, the
//! config a new one is built from, and what list and info report.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use abi::control::{DOMAIN_NAME_MAX, MAX_VCPUS_SUPPORTED};
use serde::{Deserialize, Serialize};

use crate::network::{VifSpec, MAX_VIFS_PER_DOMAIN};
use crate::sched::SchedConfig;
use crate::{DiskSpec, MgmtError};

/// A domain id (Xen `domid_t`).
pub type DomId = u16;

/// Longest kernel command line, bytes (Xen's `MAX_GUEST_CMDLINE`, as the
/// domain builder takes it).
pub const MAX_CMDLINE: usize = pvh_builder::MAX_CMDLINE;

/// How a request names a domain: by id or by name. A name is never all
/// digits (see [`DomainConfig::validate`]), so text that parses as a
/// number is an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainRef {
    /// By domid.
    Id(DomId),
    /// By name.
    Name(String),
}

impl DomainRef {
    /// Reads an operator's argument: a number is a domid, anything else a name.
    pub fn parse(text: &str) -> Self {
        match text.parse() {
            Ok(domid) => Self::Id(domid),
            Err(_) => Self::Name(text.into()),
        }
    }

    /// Whether `domid` with `name` is the domain this refers to.
    pub fn matches(&self, domid: DomId, name: &str) -> bool {
        match self {
            Self::Id(id) => *id == domid,
            Self::Name(n) => n == name,
        }
    }
}

impl fmt::Display for DomainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(domid) => write!(f, "domain {domid}"),
            Self::Name(name) => write!(f, "domain '{name}'"),
        }
    }
}

/// What a new domain is built from (besides its kernel image).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    /// Unique name: 1..=[`DOMAIN_NAME_MAX`] bytes of ASCII letters,
    /// digits, `-`, `_` and `.`, not all digits.
    pub name: String,
    /// Memory, MiB (at least 1).
    pub memory_mib: u32,
    /// vCPUs, 1..=[`MAX_VCPUS_SUPPORTED`].
    pub vcpus: u32,
    /// Kernel command line, at most [`MAX_CMDLINE`] bytes, no NUL.
    pub cmdline: String,
    /// Volumes attached as disks before the domain first runs (at most
    /// [`crate::MAX_DISKS`]; [`crate::storage::validate_disks`]). Since
    /// 2.4.
    pub disks: Vec<DiskSpec>,
    /// Its vifs, attached in order (devids 0, 1, ...) after the domain is
    /// built and before it first runs; at most
    /// [`crate::MAX_VIFS_PER_DOMAIN`]. Since 2.5.
    pub vifs: Vec<VifSpec>,
    /// Its scheduling: affinity, weight, cap. Since 2.9.
    pub sched: SchedConfig,
}

impl DomainConfig {
    /// Checks the fields against the protocol's limits (the hypervisor may
    /// still refuse, e.g. for lack of memory). The error names the field.
    pub fn validate(&self) -> Result<(), MgmtError> {
        validate_name(&self.name).map_err(|reason| invalid("name", reason))?;
        if self.memory_mib == 0 {
            return Err(invalid("memory", "must be at least 1 MiB".into()));
        }
        if !(1..=MAX_VCPUS_SUPPORTED).contains(&self.vcpus) {
            return Err(invalid(
                "vcpus",
                alloc::format!(
                    "must be 1 to {MAX_VCPUS_SUPPORTED} (the most vCPUs xen-core gives a domain)"
                ),
            ));
        }
        if self.cmdline.len() > MAX_CMDLINE {
            return Err(invalid(
                "cmdline",
                alloc::format!("longer than {MAX_CMDLINE} bytes"),
            ));
        }
        if self.cmdline.contains('\0') {
            return Err(invalid("cmdline", "contains a NUL character".into()));
        }
        crate::storage::validate_disks(&self.disks)?;
        if self.vifs.len() > MAX_VIFS_PER_DOMAIN {
            return Err(invalid(
                "vifs",
                alloc::format!("at most {MAX_VIFS_PER_DOMAIN} vifs per domain"),
            ));
        }
        self.vifs.iter().try_for_each(VifSpec::validate)?;
        self.sched.validate()
    }
}

fn invalid(field: &str, reason: String) -> MgmtError {
    MgmtError::InvalidConfig {
        field: field.into(),
        reason,
    }
}

/// Why `name` cannot name a domain, if it cannot.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > DOMAIN_NAME_MAX {
        return Err(alloc::format!("must be 1 to {DOMAIN_NAME_MAX} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(alloc::format!(
            "'{}' is not allowed (letters, digits, '-', '_' and '.' are)",
            c.escape_default()
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must not be all digits (that reads as a domid)".into());
    }
    Ok(())
}

/// Why a domain shut down: Xen's `SHUTDOWN_*`, defined once in `abi`.
pub use abi::xen::sched::ShutdownReason;

/// A domain's state, as `list` shows it (`xl list`'s r/b/p/s/c/d flags,
/// one word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainState {
    /// A vCPU is on a pCPU now.
    Running,
    /// Ready to run, waiting for a pCPU.
    Runnable,
    /// Every vCPU waits for an event.
    Blocked,
    /// Paused by the toolstack (new domains start paused).
    Paused,
    /// Shut down (a crash is the reason [`ShutdownReason::Crash`]).
    Shutdown(ShutdownReason),
    /// Being destroyed; its memory is being scrubbed.
    Dying,
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Runnable => f.write_str("runnable"),
            Self::Blocked => f.write_str("blocked"),
            Self::Paused => f.write_str("paused"),
            Self::Shutdown(ShutdownReason::Crash) => f.write_str("crashed"),
            Self::Shutdown(reason) => write!(f, "shutdown ({reason})"),
            Self::Dying => f.write_str("dying"),
        }
    }
}

/// One domain, as `list` and `DomainInfo` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSummary {
    /// Its id.
    pub domid: DomId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: DomainState,
    /// Memory it holds now, KiB.
    pub memory_kib: u64,
    /// Memory limit set at creation, KiB.
    pub max_memory_kib: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// CPU time used by all its vCPUs, ns.
    pub cpu_time_ns: u64,
}

/// One domain's counters since it was created, as [`crate::Request::Stats`]
/// reports them (the control ABI's `GET_STATS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCounters {
    /// Its id.
    pub domid: DomId,
    /// CPU time used by all its vCPUs, ns.
    pub cpu_time_ns: u64,
    /// VM exits of all its vCPUs (every exit code the hypervisor
    /// reports: its 32 most frequent).
    pub vm_exits: u64,
    /// Hypercalls it made.
    pub hypercalls: u64,
}

/// A version of our control ABI (`abi::control`), major.minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlAbiVersion {
    /// `CONTROL_ABI_MAJOR`.
    pub major: u16,
    /// `CONTROL_ABI_MINOR`.
    pub minor: u16,
}

impl fmt::Display for ControlAbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Facts about the host and hypervisor (`info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The hypervisor's version as `xen_version` tells dom0 (e.g. "Xen 4.19.0-xen-core").
    pub hypervisor_version: String,
    /// The control ABI version the hypervisor speaks.
    pub control_abi: ControlAbiVersion,
    /// Physical CPUs.
    pub nr_pcpus: u32,
    /// Domains that exist now, dom0 included.
    pub nr_domains: u32,
    /// Memory the hypervisor manages for domains, KiB.
    pub total_memory_kib: u64,
    /// Of that, free now, KiB.
    pub free_memory_kib: u64,
}

#[cfg(test)]
impl DomainConfig {
    /// The tests' valid config: one vCPU, 8 MiB, no devices.
    pub(crate) fn fixture() -> Self {
        Self {
            name: "g".into(),
            memory_mib: 8,
            vcpus: 1,
            cmdline: "console=hvc0".into(),
            disks: Vec::new(),
            vifs: Vec::new(),
            sched: SchedConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: MgmtError) -> String {
        match e {
            MgmtError::InvalidConfig { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn domain_refs_read_numbers_as_domids() {
        assert_eq!(DomainRef::parse("7"), DomainRef::Id(7));
        assert_eq!(DomainRef::parse("web"), DomainRef::Name("web".into()));
        assert_eq!(DomainRef::parse("70000"), DomainRef::Name("70000".into()));
        assert!(DomainRef::parse("web").matches(3, "web"));
        assert!(!DomainRef::Id(2).matches(3, "web"));
    }

    #[test]
    fn configs_are_checked_field_by_field() {
        assert_eq!(DomainConfig::fixture().validate(), Ok(()));
        let bad = [
            DomainConfig {
                name: "".into(),
                ..DomainConfig::fixture()
            },
            DomainConfig {
                name: "a b".into(),
                ..DomainConfig::fixture()
            },
            DomainConfig {
                name: "123".into(),
                ..DomainConfig::fixture()
            },
            DomainConfig {
                name: "x".repeat(DOMAIN_NAME_MAX + 1),
                ..DomainConfig::fixture()
            },
        ];
        for c in bad {
            assert_eq!(field_of(c.validate().unwrap_err()), "name");
        }
        let c = DomainConfig {
            memory_mib: 0,
            ..DomainConfig::fixture()
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "memory");
        for vcpus in [0, MAX_VCPUS_SUPPORTED + 1] {
            let c = DomainConfig {
                vcpus,
                ..DomainConfig::fixture()
            };
            assert_eq!(field_of(c.validate().unwrap_err()), "vcpus");
        }
        let c = DomainConfig {
            cmdline: "x".repeat(MAX_CMDLINE + 1),
            vifs: alloc::vec::Vec::new(),
            ..DomainConfig::fixture()
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "cmdline");
    }

    #[test]
    fn states_read_like_xl() {
        assert_eq!(
            alloc::format!("{}", DomainState::Shutdown(ShutdownReason::Poweroff)),
            "shutdown (poweroff)"
        );
        assert_eq!(
            alloc::format!("{}", DomainState::Shutdown(ShutdownReason::Crash)),
            "crashed"
        );
    }
}
