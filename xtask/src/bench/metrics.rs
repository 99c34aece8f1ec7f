//! What `cargo xtask bench` measures: each metric's name, meaning, unit
//! and goals (issue 14), and how the figures are read from a run's output.

use std::collections::BTreeMap;

use anyhow::Result;
use regex::Regex;

/// A metric's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Guest TSC ticks under `-icount shift=0`: executed instructions.
    Instructions,
    /// Wall-clock seconds (shown, never gated).
    Seconds,
}

impl Unit {
    /// The unit as written in the JSON records.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Instructions => "instructions",
            Unit::Seconds => "s",
        }
    }
}

/// A goal for one metric.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// At most `max` times metric `of` of the same run.
    Ratio { of: &'static str, max: f64 },
    /// At most this many instructions.
    AtMost(f64),
    /// Below the real Xen's value on the same machine.
    BelowXen,
}

/// One metric.
pub struct Metric {
    pub name: &'static str,
    pub what: &'static str,
    pub goals: &'static [Goal],
}

/// Every instruction-count metric, in the order the report shows them.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "cpuid",
        what: "CPUID exit round trip (handled inside the exit loop)",
        goals: &[],
    },
    Metric {
        name: "null-hypercall",
        what: "null hypercall round trip (`XENVER_version`)",
        goals: &[
            Goal::Ratio {
                of: "cpuid",
                max: 1.5,
            },
            Goal::BelowXen,
        ],
    },
    Metric {
        name: "yield-alone",
        what: "`SCHEDOP_yield` with nothing else runnable",
        goals: &[],
    },
    Metric {
        name: "yield-switch",
        what: "two domUs yielding to each other (two vCPU switches, two yields)",
        goals: &[],
    },
    Metric {
        name: "evtchn-self",
        what: "event channel to self: `EVTCHNOP_send` → the guest's upcall",
        goals: &[],
    },
    Metric {
        name: "evtchn-roundtrip",
        what: "event channel round trip between two domUs (send → peer wakes from poll, sends back → upcall)",
        goals: &[Goal::Ratio {
            of: "null-hypercall",
            max: 4.0,
        }],
    },
    Metric {
        name: "evtchn-roundtrip-1pcpu",
        what: "SMP (issue 16): the same round trip under -smp 2, both domUs pinned to pCPU 1 (a vCPU switch each way)",
        goals: &[],
    },
    Metric {
        name: "evtchn-roundtrip-2pcpus",
        what: "SMP (issue 16): the same with the ends pinned to pCPUs 0 and 1 (a kick IPI and a remote wake-up each way; both pCPUs' instructions count)",
        goals: &[],
    },
    Metric {
        name: "memcpy-4k",
        what: "guest-local memcpy of 4 KiB (the yardstick of grant copy)",
        goals: &[],
    },
    Metric {
        name: "grant-copy-4k",
        what: "`GNTTABOP_copy` of 4 KiB from a page granted to self",
        goals: &[Goal::Ratio {
            of: "memcpy-4k",
            max: 1.5,
        }],
    },
    Metric {
        name: "xs-read",
        what: "XenStore `XS_READ` round trip through dom0",
        goals: &[],
    },
    Metric {
        name: "xs-watch-fire",
        what: "XenStore `XS_WRITE` until the guest's watch fires",
        goals: &[],
    },
    Metric {
        name: "net-tcp-per-KiB",
        what: "guest→guest bulk TCP per KiB (netfront, netback's grant copies, the vswitch; smoltcp both ends)",
        goals: &[],
    },
    Metric {
        name: "net-rtt-64B",
        what: "guest→guest TCP round trip of 64 bytes (echo, no Nagle, no delayed ACK)",
        goals: &[],
    },
    Metric {
        name: "net-pkt-64B",
        what: "per frame of a one-way guest→guest stream of 64-byte TCP segments (segments and ACKs each cross netback and the switch); packets/s at the nominal 1 GHz = 10⁹ / this",
        goals: &[],
    },
    Metric {
        name: "net-uplink-dom0-per-KiB",
        what: "dom0's own bulk TCP per KiB through its uplink NIC to a host sink (smoltcp, virtio-net, QEMU user networking): the yardstick of `net-host-per-KiB`",
        goals: &[],
    },
    Metric {
        name: "net-host-per-KiB",
        what: "guest→host bulk TCP per KiB, the same transfer through netfront, netback, the vswitch and the same uplink NIC; its rate as a share of dom0's = net-uplink-dom0-per-KiB / this",
        goals: &[Goal::Ratio {
            of: "net-uplink-dom0-per-KiB",
            max: 1.25,
        }],
    },
    Metric {
        name: "boot-entry",
        what: "QEMU start → xen-core's first Rust code (firmware, loading)",
        goals: &[],
    },
    Metric {
        name: "boot-memory",
        what: "QEMU start → frames and heap ready",
        goals: &[],
    },
    Metric {
        name: "boot-platform",
        what: "QEMU start → ACPI, IO-APICs, PCI enumerated",
        goals: &[],
    },
    Metric {
        name: "boot-bundle",
        what: "QEMU start → boot bundle checked (CRC over every image)",
        goals: &[],
    },
    Metric {
        name: "boot-clock",
        what: "QEMU start → TSC and APIC timer calibrated",
        goals: &[],
    },
    Metric {
        name: "boot-complete",
        what: "QEMU start → `xen-core: boot complete` (boot domains built)",
        goals: &[],
    },
    Metric {
        name: "dom0-main",
        what: "QEMU start → dom0's `main`",
        goals: &[],
    },
    Metric {
        name: "guest-main",
        what: "QEMU start → the benchmark guest's `main` (xen-core: first domU; Xen: its PVH dom0)",
        goals: &[],
    },
    Metric {
        name: "dom0-serving",
        what: "QEMU start → dom0 `mgmt: serving`",
        goals: &[Goal::AtMost(40e6)],
    },
    Metric {
        name: "create-built",
        what: "dom0 receives a create (commit) → the domain is built (toolstack), before it is introduced and runs",
        goals: &[],
    },
    Metric {
        name: "create-to-console",
        what: "dom0 receives a create (commit) → the new 2 MiB guest's first console line",
        goals: &[Goal::AtMost(2e6)],
    },
    Metric {
        name: "linux-boot-to-shell",
        what: "Debian's Linux (`linux` bench): dom0 receives the streamed create's commit → its init's first line on hvc0 (the shell starts), 2 vCPUs",
        goals: &[],
    },
];

/// Metrics that also count virtual time spent waiting on the host (QEMU's
/// user networking and the host's sink are real processes): they vary
/// from run to run with the host's load (by up to a third on a busy
/// machine), so `--check` shows them but does not gate on them.
pub const UNGATED: &[&str] = &["net-uplink-dom0-per-KiB", "net-host-per-KiB"];

/// The figures of one run's output, by metric name.
pub struct Figures {
    pub values: BTreeMap<String, u64>,
}

/// Reads the figures from `output` of benchmark `bench`: the guests'
/// `pathlen: NAME N` lines (`main-tsc` only from `solo`, as
/// `guest-main`) and, from `boot`, the `bench: NAME TSC` milestones of
/// the `bench-trace` build.
pub fn parse(bench: &str, output: &str) -> Result<Figures> {
    let pathlen = Regex::new(r"(?m)^(?:\(d\d+\) )?pathlen: (\S+) (\d+)\r?$")?;
    let milestone = Regex::new(r"(?m)^(?:\(d\d+\) )?bench: (\S+) (\d+)\r?$")?;
    let mut values = BTreeMap::new();
    for caps in pathlen.captures_iter(output) {
        let value: u64 = caps[2].parse()?;
        match &caps[1] {
            "main-tsc" if bench == "solo" => {
                values.entry("guest-main".to_string()).or_insert(value);
            }
            "main-tsc" => {}
            name => {
                values.entry(name.to_string()).or_insert(value);
            }
        }
    }
    if bench == "boot" {
        let events: Vec<(String, u64)> = milestone
            .captures_iter(output)
            .map(|c| Ok((c[1].to_string(), c[2].parse()?)))
            .collect::<Result<_>>()?;
        let named = METRICS
            .iter()
            .map(|m| m.name)
            .filter(|n| n.starts_with("boot-") || n.starts_with("dom0-"));
        for name in named {
            if let Some((_, tsc)) = events.iter().find(|(n, _)| n == name) {
                values.insert(name.to_string(), *tsc);
            }
        }
        let at = |name: &str| events.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        if let (Some(received), Some(built)) = (at("create-received"), at("create-built")) {
            values.insert("create-built".to_string(), built.saturating_sub(received));
        }
        if let Some(v) = create_to_console(&events) {
            values.insert("create-to-console".to_string(), v);
        }
    }
    if bench == "linux" {
        if let Some(v) = linux_boot_to_shell(&milestone, output) {
            values.insert("linux-boot-to-shell".to_string(), v);
        }
    }
    Ok(Figures { values })
}

/// The line Debian's Linux guest's init prints on hvc0 first
/// (`xtask/src/linux.rs`), as dom0's console backend logs it.
const LINUX_INIT_LINE: &str = "[linux] linux-guest: init on";

/// From dom0's `create-received` to the line of the Linux guest's init:
/// the `bench: console-d0` milestone xen-core logs just before each of
/// dom0's lines, the one before that line.
fn linux_boot_to_shell(milestone: &Regex, output: &str) -> Option<u64> {
    let tsc_of = |line: &str, name: &str| {
        let caps = milestone.captures(line)?;
        (&caps[1] == name)
            .then(|| caps[2].parse::<u64>().ok())
            .flatten()
    };
    let lines: Vec<&str> = output.lines().collect();
    let received_at = lines
        .iter()
        .position(|l| tsc_of(l, "create-received").is_some())?;
    let received = tsc_of(lines[received_at], "create-received")?;
    let init = received_at
        + lines[received_at..]
            .iter()
            .position(|l| l.contains(LINUX_INIT_LINE))?;
    let shell = lines[received_at..init]
        .iter()
        .rev()
        .find_map(|l| tsc_of(l, "console-d0"))?;
    shell.checked_sub(received)
}

/// From dom0's `create-received` to the next console line of a domU.
fn create_to_console(events: &[(String, u64)]) -> Option<u64> {
    let (at, created) = events
        .iter()
        .enumerate()
        .find(|(_, (n, _))| n == "create-received")?;
    events[at + 1..]
        .iter()
        .find(|(n, tsc)| n.starts_with("console-d") && n != "console-d0" && *tsc > created.1)
        .map(|(_, tsc)| tsc - created.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_milestones() {
        let out = "(d1) pathlen: main-tsc 100\r\n(d1) pathlen: cpuid 215\n\
                   bench: boot-complete 1000\n(d0) bench: dom0-serving 2000\n\
                   (d0) bench: create-received 5000\nbench: console-d0 5100\n\
                   bench: console-d3 7000\n(d3) hi\n";
        let solo = parse("solo", out).unwrap().values;
        assert_eq!(solo["guest-main"], 100);
        assert_eq!(solo["cpuid"], 215);
        assert!(!solo.contains_key("boot-complete"));
        let boot = parse("boot", out).unwrap().values;
        assert_eq!(boot["boot-complete"], 1000);
        assert_eq!(boot["dom0-serving"], 2000);
        assert_eq!(boot["create-to-console"], 2000);
        assert!(!boot.contains_key("guest-main"));
    }

    #[test]
    fn linux_boot_runs_from_the_commit_to_init_on_hvc0() {
        let out = "(d0) bench: create-received 1000\nbench: console-d0 1500\n\
                   (d0) [linux] [    0.000000] Linux version 6.1.0\n\
                   bench: console-d0 9000\n(d0) [linux] linux-guest: init on hvc0\n\
                   bench: console-d0 9500\n(d0) [linux] linux-guest# \n";
        let linux = parse("linux", out).unwrap().values;
        assert_eq!(linux["linux-boot-to-shell"], 8000);
        let no_shell = "(d0) bench: create-received 1000\nbench: console-d0 1500\n";
        assert!(parse("linux", no_shell).unwrap().values.is_empty());
    }

    #[test]
    fn every_ungated_name_is_a_metric() {
        for name in UNGATED {
            assert!(METRICS.iter().any(|m| m.name == *name), "{name}");
        }
    }

    #[test]
    fn every_ratio_goal_names_a_metric() {
        for m in METRICS {
            for g in m.goals {
                if let Goal::Ratio { of, .. } = g {
                    assert!(METRICS.iter().any(|o| o.name == *of), "{}", m.name);
                }
            }
        }
    }
}
