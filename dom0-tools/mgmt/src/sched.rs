//! Scheduling and counters (protocol 2.7): what `vcpu-list`, `top`,
//! `vcpu-pin` and `sched-credit` send and get. The counters are the
//! hypervisor's (control ABI 1.4 `GET_VCPU_STATS` and `GET_STATS`), with
//! the hypervisor's system time they were read at: a rate is a counter's
//! difference over that time's difference, never the client's clock.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::{DomId, DomainState, MgmtError};

/// Most pCPUs a [`CpuSet`] names.
pub const MAX_PCPUS: u32 = 64;

/// A set of pCPUs, bit n for pCPU n (a vCPU's hard affinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSet(pub u64);

impl CpuSet {
    /// Every pCPU.
    pub const ALL: CpuSet = CpuSet(u64::MAX);

    /// Reads xl's syntax: `all`, or a comma-separated list of pCPUs and
    /// ranges (`0`, `0-3`, `1,3,5-7`). `None` for anything else or a pCPU
    /// of [`MAX_PCPUS`] or more.
    pub fn parse(text: &str) -> Option<CpuSet> {
        if text == "all" {
            return Some(CpuSet::ALL);
        }
        let mut mask = 0u64;
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?),
                None => {
                    let cpu = part.parse::<u32>().ok()?;
                    (cpu, cpu)
                }
            };
            if lo > hi || hi >= MAX_PCPUS {
                return None;
            }
            for cpu in lo..=hi {
                mask |= 1 << cpu;
            }
        }
        Some(CpuSet(mask))
    }

    /// Whether pCPU `cpu` is in the set.
    pub fn contains(self, cpu: u32) -> bool {
        cpu < MAX_PCPUS && self.0 & (1 << cpu) != 0
    }

    /// The pCPUs of the set below `nr_pcpus`.
    pub fn online(self, nr_pcpus: u32) -> CpuSet {
        CpuSet(self.0 & CpuSet::first(nr_pcpus).0)
    }

    /// pCPUs `0..n`.
    pub fn first(n: u32) -> CpuSet {
        if n >= MAX_PCPUS {
            CpuSet::ALL
        } else {
            CpuSet((1u64 << n) - 1)
        }
    }
}

/// xl's notation: `all`, or ranges such as `0-3,5`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == CpuSet::ALL {
            return f.write_str("all");
        }
        let mut first = true;
        let mut cpu = 0;
        while cpu < MAX_PCPUS {
            if !self.contains(cpu) {
                cpu += 1;
                continue;
            }
            let start = cpu;
            while cpu + 1 < MAX_PCPUS && self.contains(cpu + 1) {
                cpu += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == cpu {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{cpu}")?;
            }
            cpu += 1;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Largest credit weight (the `uint16_t` of Xen's `xen_domctl_sched_credit`).
pub const MAX_WEIGHT: u16 = u16::MAX;

/// How a new domain is scheduled: xl.cfg(5)'s `cpus` (the hard affinity
/// of every vCPU), `weight` and `cap` (percent of one pCPU; 0: none).
/// `None` leaves the hypervisor's default (every pCPU, weight 256, no
/// cap). The toolstack sets them after the domain is built, before it
/// first runs. Since 2.9.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedConfig {
    /// Hard affinity of all its vCPUs.
    pub cpus: Option<CpuSet>,
    /// Credit weight, 1..=[`MAX_WEIGHT`].
    pub weight: Option<u16>,
    /// Cap, percent of one pCPU, 0..=100 × [`MAX_PCPUS`].
    pub cap: Option<u16>,
}

impl SchedConfig {
    /// Checks what every host refuses (weight 0, an empty `cpus`, a cap
    /// above 100 × [`MAX_PCPUS`]); the host's own limits (online pCPUs,
    /// a cap of 100 × its pCPUs) are dom0's to check. The error names the
    /// field.
    pub fn validate(&self) -> Result<(), MgmtError> {
        let invalid = |field: &str, reason: String| MgmtError::InvalidConfig {
            field: field.into(),
            reason,
        };
        if self.weight == Some(0) {
            return Err(invalid(
                "weight",
                alloc::format!("must be 1 to {MAX_WEIGHT}"),
            ));
        }
        let max_cap = 100 * MAX_PCPUS;
        if self.cap.is_some_and(|c| u32::from(c) > max_cap) {
            return Err(invalid(
                "cap",
                alloc::format!("must be 0 (no cap) to {max_cap} (percent of one pCPU)"),
            ));
        }
        if self.cpus == Some(CpuSet(0)) {
            return Err(invalid("cpus", "names no pCPU".into()));
        }
        Ok(())
    }
}

/// A vCPU's state, as `xl vcpu-list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VcpuState {
    /// On a pCPU now (`r`).
    Running,
    /// Waiting for a pCPU.
    Runnable,
    /// Waiting for an event (`b`).
    Blocked,
    /// Its domain is paused, shut down or dying (`p`).
    Paused,
    /// Not started or stopped (`-`).
    Offline,
}

impl fmt::Display for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Runnable => "runnable",
            Self::Blocked => "blocked",
            Self::Paused => "paused",
            Self::Offline => "offline",
        })
    }
}

/// The credit scheduler's priority of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditPriority {
    /// Credit spent.
    Over,
    /// Credit left.
    Under,
    /// Woke while UNDER.
    Boost,
}

/// One vCPU's state and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuCounters {
    /// Its id.
    pub vcpu: u32,
    /// The pCPU it runs or last ran on; `None` if it never ran.
    pub pcpu: Option<u32>,
    /// Its state.
    pub state: VcpuState,
    /// CPU time it used, ns.
    pub cpu_time_ns: u64,
    /// Its hard affinity.
    pub affinity: CpuSet,
    /// Credit scheduler priority.
    pub priority: CreditPriority,
    /// Credit (10 per ms of CPU).
    pub credit: i32,
    /// Parked: its domain spent its cap.
    pub parked: bool,
    /// VM exits.
    pub exits: u64,
    /// Hypercalls.
    pub hypercalls: u64,
    /// Events that became pending for it.
    pub events: u64,
}

/// One domain's counters and scheduling parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSnapshot {
    /// Its id.
    pub domid: DomId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: DomainState,
    /// Memory it holds, KiB.
    pub memory_kib: u64,
    /// Its memory limit, KiB.
    pub max_memory_kib: u64,
    /// Credit scheduler weight.
    pub weight: u16,
    /// Cap, percent of one pCPU; 0: none.
    pub cap: u16,
    /// Its vCPUs, by id.
    pub vcpus: Vec<VcpuCounters>,
    /// VM exits by SVM exit code, most frequent first (the hypervisor's
    /// 32 most frequent codes).
    pub exits_by_code: Vec<(u64, u64)>,
    /// Hypercalls it made.
    pub hypercalls: u64,
}

impl DomainSnapshot {
    /// CPU time of all its vCPUs, ns.
    pub fn cpu_time_ns(&self) -> u64 {
        self.vcpus.iter().map(|v| v.cpu_time_ns).sum()
    }

    /// Events that became pending for its vCPUs.
    pub fn events(&self) -> u64 {
        self.vcpus.iter().map(|v| v.events).sum()
    }

    /// VM exits of all its vCPUs.
    pub fn exits(&self) -> u64 {
        self.exits_by_code.iter().map(|(_, n)| n).sum()
    }
}

/// The answer to [`crate::Request::Counters`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    /// The hypervisor's system time when the first domain was read, ns.
    pub system_time_ns: u64,
    /// pCPUs.
    pub nr_pcpus: u32,
    /// The domains asked for, by domid.
    pub domains: Vec<DomainSnapshot>,
}

/// A domain's credit scheduler parameters (`sched-credit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedCredit {
    /// Its id.
    pub domid: DomId,
    /// Its name.
    pub name: String,
    /// Weight, 1..=65535.
    pub weight: u16,
    /// Cap, percent of one pCPU; 0: none.
    pub cap: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sched_configs_refuse_what_no_host_takes() {
        let ok = SchedConfig {
            cpus: CpuSet::parse("0-3,5"),
            weight: Some(512),
            cap: Some(6400),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(SchedConfig::default().validate(), Ok(()));
        let field = |c: SchedConfig| match c.validate() {
            Err(MgmtError::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(SchedConfig {
                weight: Some(0),
                ..ok
            }),
            "weight"
        );
        assert_eq!(
            field(SchedConfig {
                cap: Some(6401),
                ..ok
            }),
            "cap"
        );
        assert_eq!(
            field(SchedConfig {
                cpus: Some(CpuSet(0)),
                ..ok
            }),
            "cpus"
        );
    }

    #[test]
    fn cpu_sets_read_and_print_like_xl() {
        assert_eq!(CpuSet::parse("all"), Some(CpuSet::ALL));
        assert_eq!(CpuSet::parse("0"), Some(CpuSet(1)));
        assert_eq!(CpuSet::parse("1,3,5-7"), Some(CpuSet(0b1110_1010)));
        for bad in ["", "x", "3-1", "64", "0-64", "1,,2", "-1"] {
            assert_eq!(CpuSet::parse(bad), None, "{bad}");
        }
        assert_eq!(CpuSet(0b1110_1010).to_string(), "1,3,5-7");
        assert_eq!(CpuSet::ALL.to_string(), "all");
        assert_eq!(CpuSet(0).to_string(), "none");
        assert_eq!(CpuSet::ALL.online(1), CpuSet(1));
    }
}
