//! How replies are shown: `list`'s table and JSON, `info`'s lines and JSON.

use comfy_table::{presets, CellAlignment, Table};
use mgmt::{DomainCounters, DomainSummary, HostInfo, Mib, PROTOCOL_VERSION};
use serde::Serialize;

/// `list` as a table, like `xl list`: one row per domain; with
/// `counters` (`list -l`) two more columns, its VM exits and hypercalls
/// (`-` for a domain without counters).
pub fn domain_table(domains: &[DomainSummary], counters: Option<&[DomainCounters]>) -> String {
    let mut header = vec!["Name", "ID", "State", "Mem(MiB)", "VCPUs", "Time(s)"];
    if counters.is_some() {
        header.extend(["Exits", "Hypercalls"]);
    }
    let rows = domains.iter().map(|d| {
        let mut row = vec![
            d.name.clone(),
            d.domid.to_string(),
            d.state.to_string(),
            mib_number(d.memory_kib),
            d.vcpus.to_string(),
            format!("{:.1}", d.cpu_time_ns as f64 / 1e9),
        ];
        if let Some(counters) = counters {
            let c = counters.iter().find(|c| c.domid == d.domid);
            row.push(c.map_or("-".into(), |c| c.vm_exits.to_string()));
            row.push(c.map_or("-".into(), |c| c.hypercalls.to_string()));
        }
        row
    });
    table(&header, rows, &[1, 3, 4, 5, 6, 7])
}

/// A table in `list`'s style (xl's): no borders, no leading or trailing
/// blanks, the `numeric` columns right-aligned, a final newline.
pub fn table(
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
    numeric: &[usize],
) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for &column in numeric {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let text = table.to_string();
    // The preset pads every line with a leading space and trailing blanks.
    let mut lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect();
    lines.push("");
    lines.join("\n")
}

/// KiB as a MiB number: whole when exact, else one decimal.
fn mib_number(kib: u64) -> String {
    let shown = Mib(kib).to_string();
    shown.trim_end_matches(" MiB").to_string()
}

#[derive(Serialize)]
struct DomainJson<'a> {
    domid: u16,
    name: &'a str,
    state: String,
    memory_kib: u64,
    max_memory_kib: u64,
    vcpus: u32,
    cpu_time_ns: u64,
    /// `list -l` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_exits: Option<u64>,
    /// `list -l` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    hypercalls: Option<u64>,
}

/// `list --json`: an array of domains, memory in KiB, CPU time in ns;
/// with `counters` (`list -l --json`) also `vm_exits` and `hypercalls`.
pub fn domains_json(domains: &[DomainSummary], counters: Option<&[DomainCounters]>) -> String {
    let rows: Vec<DomainJson> = domains
        .iter()
        .map(|d| {
            let c = counters.and_then(|cs| cs.iter().find(|c| c.domid == d.domid));
            (d, c)
        })
        .map(|(d, c)| DomainJson {
            domid: d.domid,
            name: &d.name,
            state: d.state.to_string(),
            memory_kib: d.memory_kib,
            max_memory_kib: d.max_memory_kib,
            vcpus: d.vcpus,
            cpu_time_ns: d.cpu_time_ns,
            vm_exits: c.map(|c| c.vm_exits),
            hypercalls: c.map(|c| c.hypercalls),
        })
        .collect();
    json(&rows)
}

/// `info`, like `xl info`: `key : value` lines.
pub fn info_text(info: &HostInfo) -> String {
    let lines = [
        ("hypervisor", info.hypervisor_version.clone()),
        ("control_abi", info.control_abi.to_string()),
        ("mgmt_protocol", PROTOCOL_VERSION.to_string()),
        ("nr_pcpus", info.nr_pcpus.to_string()),
        ("nr_domains", info.nr_domains.to_string()),
        ("total_memory", Mib(info.total_memory_kib).to_string()),
        ("free_memory", Mib(info.free_memory_kib).to_string()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key:<14}: {value}\n"))
        .collect()
}

#[derive(Serialize)]
struct InfoJson<'a> {
    hypervisor: &'a str,
    control_abi: String,
    mgmt_protocol: String,
    nr_pcpus: u32,
    nr_domains: u32,
    total_memory_kib: u64,
    free_memory_kib: u64,
}

/// `info --json`, memory in KiB.
pub fn info_json(info: &HostInfo) -> String {
    json(&InfoJson {
        hypervisor: &info.hypervisor_version,
        control_abi: info.control_abi.to_string(),
        mgmt_protocol: PROTOCOL_VERSION.to_string(),
        nr_pcpus: info.nr_pcpus,
        nr_domains: info.nr_domains,
        total_memory_kib: info.total_memory_kib,
        free_memory_kib: info.free_memory_kib,
    })
}

pub(crate) fn json(value: &impl Serialize) -> String {
    // Plain structs of strings and integers always serialize.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgmt::{ControlAbiVersion, DomainState, ShutdownReason};

    fn domains() -> Vec<DomainSummary> {
        vec![
            DomainSummary {
                domid: 0,
                name: "dom0".into(),
                state: DomainState::Running,
                memory_kib: 16 * 1024,
                max_memory_kib: 16 * 1024,
                vcpus: 1,
                cpu_time_ns: 12_340_000_000,
            },
            DomainSummary {
                domid: 12,
                name: "hello-world".into(),
                state: DomainState::Shutdown(ShutdownReason::Poweroff),
                memory_kib: 32 * 1024 + 512,
                max_memory_kib: 64 * 1024,
                vcpus: 2,
                cpu_time_ns: 50_000_000,
            },
        ]
    }

    #[test]
    fn table_has_one_aligned_row_per_domain() {
        assert_eq!(
            domain_table(&domains(), None),
            "\
Name         ID  State                Mem(MiB)  VCPUs  Time(s)
dom0          0  running                    16      1     12.3
hello-world  12  shutdown (poweroff)      32.5      2      0.1
"
        );
    }

    #[test]
    fn json_has_exact_numbers() {
        let v: serde_json::Value = serde_json::from_str(&domains_json(&domains(), None)).unwrap();
        assert!(v[1].get("vm_exits").is_none(), "only with -l");
        assert_eq!(v[1]["name"], "hello-world");
        assert_eq!(v[1]["domid"], 12);
        assert_eq!(v[1]["state"], "shutdown (poweroff)");
        assert_eq!(v[1]["memory_kib"], 32 * 1024 + 512);
        assert_eq!(v[1]["cpu_time_ns"], 50_000_000);
    }

    fn counters() -> Vec<DomainCounters> {
        vec![DomainCounters {
            domid: 12,
            cpu_time_ns: 50_000_000,
            vm_exits: 4711,
            hypercalls: 42,
        }]
    }

    #[test]
    fn long_listing_adds_exits_and_hypercalls() {
        assert_eq!(
            domain_table(&domains(), Some(&counters())),
            "\
Name         ID  State                Mem(MiB)  VCPUs  Time(s)  Exits  Hypercalls
dom0          0  running                    16      1     12.3      -           -
hello-world  12  shutdown (poweroff)      32.5      2      0.1   4711          42
"
        );
        let v: serde_json::Value =
            serde_json::from_str(&domains_json(&domains(), Some(&counters()))).unwrap();
        assert_eq!(v[1]["vm_exits"], 4711);
        assert_eq!(v[1]["hypercalls"], 42);
        assert!(v[0].get("vm_exits").is_none());
    }

    #[test]
    fn info_reads_like_xl_info() {
        let info = HostInfo {
            hypervisor_version: "Xen 4.19.0-xen-core".into(),
            control_abi: ControlAbiVersion { major: 1, minor: 2 },
            nr_pcpus: 1,
            nr_domains: 2,
            total_memory_kib: 224 * 1024,
            free_memory_kib: 150 * 1024,
        };
        assert_eq!(
            info_text(&info),
            "\
hypervisor    : Xen 4.19.0-xen-core
control_abi   : 1.2
mgmt_protocol : 2.8
nr_pcpus      : 1
nr_domains    : 2
total_memory  : 224 MiB
free_memory   : 150 MiB
"
        );
        let v: serde_json::Value = serde_json::from_str(&info_json(&info)).unwrap();
        assert_eq!(v["free_memory_kib"], 150 * 1024);
    }
}
