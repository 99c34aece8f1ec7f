//! `vcpu-list`, `vcpu-pin` and `sched-credit` (issue 16), named after
//! xl's commands.

use std::io::Write;

use mgmt::{CountersSnapshot, DomainRef, MgmtError, Reply, Request, SchedCredit, VcpuState};
use serde::Serialize;

use crate::cli::{SchedCreditArgs, VcpuListArgs, VcpuPinArgs};
use crate::client::{unexpected, Client};
use crate::commands::print;
use crate::error::CliError;
use crate::output::{json, table};

/// The counters of one domain or all (`Request::Counters`).
pub fn counters(
    client: &mut Client,
    domain: Option<DomainRef>,
) -> Result<CountersSnapshot, CliError> {
    match client.call(Request::Counters { domain })? {
        Reply::Counters(snapshot) => Ok(snapshot),
        other => Err(unexpected(&other)),
    }
}

/// One row of `vcpu-list`.
#[derive(Debug, Serialize)]
struct VcpuRow<'a> {
    name: &'a str,
    domid: u16,
    vcpu: u32,
    pcpu: Option<u32>,
    state: VcpuState,
    cpu_time_ns: u64,
    affinity: String,
    credit: i32,
    parked: bool,
}

/// `vcpu-list [DOMAIN]`.
pub fn vcpu_list(
    client: &mut Client,
    args: VcpuListArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let snapshot = counters(client, args.domain.as_deref().map(DomainRef::parse))?;
    let rows: Vec<VcpuRow> = snapshot
        .domains
        .iter()
        .flat_map(|d| {
            d.vcpus.iter().map(|v| VcpuRow {
                name: &d.name,
                domid: d.domid,
                vcpu: v.vcpu,
                pcpu: v.pcpu,
                state: v.state,
                cpu_time_ns: v.cpu_time_ns,
                affinity: v.affinity.to_string(),
                credit: v.credit,
                parked: v.parked,
            })
        })
        .collect();
    if args.json {
        return print(out, &json(&rows));
    }
    print(out, &vcpu_table(&rows))
}

fn vcpu_table(rows: &[VcpuRow]) -> String {
    table(
        &[
            "Name",
            "ID",
            "VCPU",
            "CPU",
            "State",
            "Time(s)",
            "Affinity (Hard)",
        ],
        rows.iter().map(|r| {
            vec![
                r.name.to_string(),
                r.domid.to_string(),
                r.vcpu.to_string(),
                r.pcpu.map_or("-".into(), |p| p.to_string()),
                xl_state(r.state).into(),
                format!("{:.1}", r.cpu_time_ns as f64 / 1e9),
                r.affinity.clone(),
            ]
        }),
        &[1, 2, 3, 5],
    )
}

/// xl's three-letter state: running, blocked, paused.
fn xl_state(state: VcpuState) -> &'static str {
    match state {
        VcpuState::Running => "r--",
        VcpuState::Blocked => "-b-",
        VcpuState::Paused => "--p",
        VcpuState::Runnable | VcpuState::Offline => "---",
    }
}

/// `vcpu-pin DOMAIN VCPU|all CPUS`.
pub fn vcpu_pin(
    client: &mut Client,
    args: VcpuPinArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    let vcpus: Vec<u32> = if args.vcpu == "all" {
        let snapshot = counters(client, Some(domain.clone()))?;
        snapshot
            .domains
            .iter()
            .flat_map(|d| d.vcpus.iter().map(|v| v.vcpu))
            .collect()
    } else {
        vec![args.vcpu.parse().map_err(|_| {
            CliError::Refused(MgmtError::InvalidSchedParam {
                what: "vcpu".into(),
                reason: format!("'{}' is neither a vCPU id nor `all`", args.vcpu),
            })
        })?]
    };
    for vcpu in vcpus {
        match client.call(Request::VcpuPin {
            domain: domain.clone(),
            vcpu,
            cpus: args.cpus,
        })? {
            Reply::VcpuPinned { effective } => print(
                out,
                &format!(
                    "Pinned vCPU {vcpu} of {domain} to {} (in effect: {effective}).\n",
                    args.cpus
                ),
            )?,
            other => return Err(unexpected(&other)),
        }
    }
    Ok(())
}

/// `sched-credit [-d DOMAIN] [-w WEIGHT] [-c CAP]`.
pub fn sched_credit(
    client: &mut Client,
    args: SchedCreditArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let request = Request::SchedCredit {
        domain: args.domain.as_deref().map(DomainRef::parse),
        weight: args.weight,
        cap: args.cap,
    };
    let params = match client.call(request)? {
        Reply::SchedCredit(params) => params,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        return print(out, &json(&params));
    }
    print(out, &credit_table(&params))
}

fn credit_table(params: &[SchedCredit]) -> String {
    table(
        &["Name", "ID", "Weight", "Cap"],
        params.iter().map(|p| {
            vec![
                p.name.clone(),
                p.domid.to_string(),
                p.weight.to_string(),
                p.cap.to_string(),
            ]
        }),
        &[1, 2, 3],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgmt::CpuSet;

    #[test]
    fn vcpu_list_reads_like_xl() {
        let rows = [VcpuRow {
            name: "web",
            domid: 3,
            vcpu: 1,
            pcpu: Some(0),
            state: VcpuState::Blocked,
            cpu_time_ns: 2_500_000_000,
            affinity: CpuSet(0b101).to_string(),
            credit: -20,
            parked: false,
        }];
        let text = vcpu_table(&rows);
        let line = text.lines().nth(1).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, ["web", "3", "1", "0", "-b-", "2.5", "0,2"]);
    }
}
