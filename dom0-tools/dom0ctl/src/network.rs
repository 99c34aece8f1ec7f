//! `network-attach`, `network-detach`, `network-list` and `vswitch show`:
//! guests' vifs and the vswitch (issue 13), named after xl's commands.

use std::collections::BTreeMap;
use std::io::Write;

use mgmt::network::{xenbus_state_name, MacDisplay, VswitchSnapshot};
use mgmt::{DomainRef, Reply, Request, VifInfo, VifRef};
use serde::Serialize;
use vswitch::{DropReason, Drops, LearnedMac, PortKind, PortSnapshot, Traffic};

use crate::cli::{NetworkAttachArgs, NetworkDetachArgs, NetworkListArgs};
use crate::client::{unexpected, Client};
use crate::commands::print;
use crate::config::vlan_mode;
use crate::error::CliError;
use crate::output::{json, table};

/// `network-attach DOMAIN [--mac M] [--vlan N | --trunk N,M]`.
pub fn attach(
    client: &mut Client,
    args: NetworkAttachArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let vlan = vlan_mode(args.vlan, args.trunk).map_err(usage)?;
    let spec = mgmt::VifSpec {
        mac: args.mac,
        vlan: vlan.clone(),
    };
    spec.validate().map_err(CliError::Refused)?;
    let request = Request::NetworkAttach {
        domain: DomainRef::parse(&args.domain),
        mac: args.mac,
        vlan,
    };
    match client.call(request)? {
        Reply::VifAttached(vif) => print(
            out,
            &format!(
                "Attached vif {} to domain {}: MAC {}, {}, switch port {}.\n",
                vif.devid,
                vif.domid,
                MacDisplay(&vif.mac),
                vif.vlan,
                vif.switch_port
            ),
        ),
        other => Err(unexpected(&other)),
    }
}

/// `network-detach DOMAIN DEVID|MAC`.
pub fn detach(
    client: &mut Client,
    args: NetworkDetachArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let vif = VifRef::parse(&args.vif).ok_or_else(|| {
        usage(format!(
            "'{}' is neither a devid (a number) nor a MAC (00:16:3e:12:34:56)",
            args.vif
        ))
    })?;
    let domain = DomainRef::parse(&args.domain);
    match client.call(Request::NetworkDetach {
        domain: domain.clone(),
        vif: vif.clone(),
    })? {
        Reply::Done => print(out, &format!("Detached {vif} from {domain}.\n")),
        other => Err(unexpected(&other)),
    }
}

/// `network-list [DOMAIN] [--json]`.
pub fn list(
    client: &mut Client,
    args: NetworkListArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = args.domain.as_deref().map(DomainRef::parse);
    let vifs = match client.call(Request::NetworkList { domain })? {
        Reply::Vifs(vifs) => vifs,
        other => return Err(unexpected(&other)),
    };
    let names = domain_names(client)?;
    if args.json {
        print(out, &vifs_json(&vifs, &names))
    } else {
        print(out, &vif_table(&vifs, &names))
    }
}

/// `vswitch show [--json]`.
pub fn show(client: &mut Client, as_json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let snapshot = match client.call(Request::VswitchShow)? {
        Reply::Vswitch(snapshot) => snapshot,
        other => return Err(unexpected(&other)),
    };
    if as_json {
        print(out, &vswitch_json(&snapshot))
    } else {
        print(out, &vswitch_text(&snapshot))
    }
}

/// A bad argument: refused before anything is sent, as clap's own.
fn usage(message: String) -> CliError {
    CliError::Refused(mgmt::MgmtError::InvalidConfig {
        field: "vif".into(),
        reason: message,
    })
}

fn domain_names(client: &mut Client) -> Result<BTreeMap<u16, String>, CliError> {
    match client.call(Request::List)? {
        Reply::List(domains) => Ok(domains.into_iter().map(|d| (d.domid, d.name)).collect()),
        other => Err(unexpected(&other)),
    }
}

fn name_of(names: &BTreeMap<u16, String>, domid: u16) -> String {
    names.get(&domid).cloned().unwrap_or_else(|| "-".into())
}

/// `network-list` as a table, like `xl network-list`.
fn vif_table(vifs: &[VifInfo], names: &BTreeMap<u16, String>) -> String {
    let rows = vifs.iter().map(|v| {
        vec![
            name_of(names, v.domid),
            v.domid.to_string(),
            v.devid.to_string(),
            MacDisplay(&v.mac).to_string(),
            v.vlan.to_string(),
            format!(
                "{} ({})",
                v.backend_state,
                xenbus_state_name(v.backend_state)
            ),
            v.switch_port.to_string(),
        ]
    });
    table(
        &[
            "Name",
            "Domid",
            "Idx",
            "Mac Addr.",
            "VLAN",
            "BE state",
            "Port",
        ],
        rows,
        &[1, 2, 6],
    )
}

#[derive(Serialize)]
struct VifJson {
    domid: u16,
    name: String,
    devid: u32,
    mac: String,
    vlan: VlanJson,
    backend_state: u32,
    backend_state_name: &'static str,
    switch_port: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum VlanJson {
    Access(u16),
    Trunk(Vec<u16>),
}

impl From<&vswitch::VlanMode> for VlanJson {
    fn from(mode: &vswitch::VlanMode) -> Self {
        match mode {
            vswitch::VlanMode::Access(v) => Self::Access(*v),
            vswitch::VlanMode::Trunk(l) => Self::Trunk(l.clone()),
        }
    }
}

fn vifs_json(vifs: &[VifInfo], names: &BTreeMap<u16, String>) -> String {
    let rows: Vec<VifJson> = vifs
        .iter()
        .map(|v| VifJson {
            domid: v.domid,
            name: name_of(names, v.domid),
            devid: v.devid,
            mac: MacDisplay(&v.mac).to_string(),
            vlan: (&v.vlan).into(),
            backend_state: v.backend_state,
            backend_state_name: xenbus_state_name(v.backend_state),
            switch_port: v.switch_port,
        })
        .collect();
    json(&rows)
}

/// What is behind a port, for the table.
fn kind_text(kind: &PortKind) -> String {
    match kind {
        PortKind::Vif { domid, devid, .. } => format!("vif d{domid}.{devid}"),
        PortKind::Uplink => "uplink".into(),
    }
}

/// Nonzero drop counters as `reason=n`, space-separated.
fn drop_parts(drops: &Drops) -> Vec<String> {
    drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect()
}

fn drops_by_reason(drops: &Drops) -> String {
    let parts = drop_parts(drops);
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" ")
    }
}

fn drops_text(port: &PortSnapshot) -> String {
    let c = &port.counters;
    let mut parts = drop_parts(&c.drops);
    if c.tx_dropped > 0 {
        parts.push(format!("tx_dropped={}", c.tx_dropped));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" ")
    }
}

/// `vswitch show`: the ports table, the learned MACs, the totals.
fn vswitch_text(s: &VswitchSnapshot) -> String {
    let ports = s.ports.iter().map(|p| {
        let c = &p.counters;
        let mac = match &p.config.kind {
            PortKind::Vif { mac, .. } => MacDisplay(mac).to_string(),
            PortKind::Uplink => "-".into(),
        };
        vec![
            p.id.to_string(),
            p.config.name.clone(),
            kind_text(&p.config.kind),
            mac,
            p.config.vlan.to_string(),
            c.rx.packets.to_string(),
            c.rx.bytes.to_string(),
            c.tx.packets.to_string(),
            c.tx.bytes.to_string(),
            format!("{}/{}", c.rx_east_west.packets, c.tx_east_west.packets),
            format!("{}/{}", c.rx_north_south.packets, c.tx_north_south.packets),
            drops_text(p),
        ]
    });
    let mut text = String::from("Ports (E-W, N-S: frames rx/tx east-west, north-south):\n");
    text += &table(
        &[
            "Port", "Name", "Kind", "MAC", "VLAN", "RX pkts", "RX bytes", "TX pkts", "TX bytes",
            "E-W", "N-S", "Drops",
        ],
        ports,
        &[0, 5, 6, 7, 8, 9, 10],
    );
    let port_name = |id| {
        s.ports
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.config.name.clone())
    };
    let learned = s.learned.iter().map(|l: &LearnedMac| {
        vec![
            l.vlan.to_string(),
            MacDisplay(&l.mac).to_string(),
            port_name(l.port),
            if l.is_static { "static" } else { "learned" }.into(),
            if l.is_static {
                "-".into()
            } else {
                format!("{:.1}", l.age_ms as f64 / 1000.0)
            },
        ]
    });
    let dynamic = s.learned.iter().filter(|l| !l.is_static).count();
    text += &format!(
        "\nMAC table ({dynamic} of {} learned, aged out after {} s):\n",
        s.learning_capacity,
        s.aging_ms / 1000
    );
    text += &table(&["VLAN", "MAC", "Port", "Type", "Age(s)"], learned, &[0, 4]);
    let t = &s.totals;
    text += &format!(
        "\nTotals: east-west {}; north-south {}; dropped {}; not learned (table full) {}\n",
        traffic_text(&t.east_west),
        traffic_text(&t.north_south),
        drops_by_reason(&t.drops),
        t.learning_table_full
    );
    text
}

fn traffic_text(t: &Traffic) -> String {
    format!("{} frames, {} bytes", t.packets, t.bytes)
}

#[derive(Serialize)]
struct VswitchJson {
    ports: Vec<PortJson>,
    learned: Vec<LearnedJson>,
    totals: TotalsJson,
    learning_capacity: u64,
    aging_ms: u64,
}

#[derive(Serialize)]
struct PortJson {
    id: u32,
    name: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    domid: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    devid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    vlan: VlanJson,
    rx: TrafficJson,
    tx: TrafficJson,
    rx_east_west: TrafficJson,
    rx_north_south: TrafficJson,
    tx_east_west: TrafficJson,
    tx_north_south: TrafficJson,
    drops: BTreeMap<&'static str, u64>,
    tx_dropped: u64,
}

#[derive(Serialize)]
struct TrafficJson {
    packets: u64,
    bytes: u64,
}

impl From<Traffic> for TrafficJson {
    fn from(t: Traffic) -> Self {
        Self {
            packets: t.packets,
            bytes: t.bytes,
        }
    }
}

#[derive(Serialize)]
struct LearnedJson {
    vlan: u16,
    mac: String,
    port: u32,
    #[serde(rename = "static")]
    is_static: bool,
    age_ms: u64,
}

#[derive(Serialize)]
struct TotalsJson {
    east_west: TrafficJson,
    north_south: TrafficJson,
    drops: BTreeMap<&'static str, u64>,
    learning_table_full: u64,
}

fn drops_json(drops: &Drops) -> BTreeMap<&'static str, u64> {
    drops
        .iter()
        .map(|(r, n): (DropReason, u64)| (r.name(), n))
        .collect()
}

/// `vswitch show --json`: MACs as text, drops by reason's name.
fn vswitch_json(s: &VswitchSnapshot) -> String {
    let ports = s
        .ports
        .iter()
        .map(|p| {
            let c = &p.counters;
            let (kind, domid, devid, mac) = match &p.config.kind {
                PortKind::Vif { domid, devid, mac } => (
                    "vif",
                    Some(*domid),
                    Some(*devid),
                    Some(MacDisplay(mac).to_string()),
                ),
                PortKind::Uplink => ("uplink", None, None, None),
            };
            PortJson {
                id: p.id.0,
                name: p.config.name.clone(),
                kind,
                domid,
                devid,
                mac,
                vlan: (&p.config.vlan).into(),
                rx: c.rx.into(),
                tx: c.tx.into(),
                rx_east_west: c.rx_east_west.into(),
                rx_north_south: c.rx_north_south.into(),
                tx_east_west: c.tx_east_west.into(),
                tx_north_south: c.tx_north_south.into(),
                drops: drops_json(&c.drops),
                tx_dropped: c.tx_dropped,
            }
        })
        .collect();
    let learned = s
        .learned
        .iter()
        .map(|l| LearnedJson {
            vlan: l.vlan,
            mac: MacDisplay(&l.mac).to_string(),
            port: l.port.0,
            is_static: l.is_static,
            age_ms: l.age_ms,
        })
        .collect();
    json(&VswitchJson {
        ports,
        learned,
        totals: TotalsJson {
            east_west: s.totals.east_west.into(),
            north_south: s.totals.north_south.into(),
            drops: drops_json(&s.totals.drops),
            learning_table_full: s.totals.learning_table_full,
        },
        learning_capacity: s.learning_capacity,
        aging_ms: s.aging_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch::{PortConfig, PortKind, Switch, VlanMode};

    /// A real switch after real traffic: two vifs and the uplink.
    fn snapshot() -> VswitchSnapshot {
        let mut sw = Switch::new();
        let mac_a = [0x00, 0x16, 0x3e, 0, 0, 1];
        let a = sw
            .add_port(PortConfig {
                name: "vif1.0".into(),
                kind: PortKind::Vif {
                    domid: 1,
                    devid: 0,
                    mac: mac_a,
                },
                vlan: VlanMode::Access(1),
            })
            .unwrap();
        sw.add_port(PortConfig {
            name: "vif2.0".into(),
            kind: PortKind::Vif {
                domid: 2,
                devid: 0,
                mac: [0x00, 0x16, 0x3e, 0, 0, 2],
            },
            vlan: VlanMode::Trunk(vec![1, 20]),
        })
        .unwrap();
        sw.add_port(PortConfig {
            name: "uplink".into(),
            kind: PortKind::Uplink,
            vlan: VlanMode::Access(1),
        })
        .unwrap();
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&mac_a);
        frame.extend_from_slice(&[0x08, 0x06, 0, 0]);
        sw.forward(a, &frame, &mut |_, _| {});
        // A spoofed one.
        frame[11] = 9;
        sw.forward(a, &frame, &mut |_, _| {});
        sw.snapshot()
    }

    #[test]
    fn the_text_view_shows_ports_macs_and_totals() {
        let text = vswitch_text(&snapshot());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("Port  Name"), "{text}");
        assert!(
            text.contains("0  vif1.0  vif d1.0  00:16:3e:00:00:01  access 1"),
            "{text}"
        );
        assert!(text.contains("trunk 1,20"), "{text}");
        assert!(text.contains("spoofed=1"), "{text}");
        assert!(
            text.contains("east-west 1 frames, 20 bytes; north-south 1 frames, 16 bytes"),
            "{text}"
        );
        assert!(text.contains("static"), "{text}");
    }

    #[test]
    fn the_json_view_has_exact_counters() {
        let v: serde_json::Value = serde_json::from_str(&vswitch_json(&snapshot())).unwrap();
        assert_eq!(v["ports"][0]["rx"]["packets"], 2);
        assert_eq!(v["ports"][0]["drops"]["spoofed"], 1);
        assert_eq!(v["ports"][0]["rx_east_west"]["packets"], 1);
        assert_eq!(v["ports"][0]["rx_north_south"]["packets"], 1);
        assert_eq!(v["ports"][1]["vlan"]["trunk"][1], 20);
        assert_eq!(
            v["ports"][1]["tx_east_west"]["bytes"], 20,
            "tagged on the trunk"
        );
        assert_eq!(v["ports"][2]["kind"], "uplink");
        assert_eq!(v["totals"]["north_south"]["packets"], 1);
        assert_eq!(v["totals"]["drops"]["spoofed"], 1);
        assert_eq!(v["learned"][0]["mac"], "00:16:3e:00:00:01");
    }

    #[test]
    fn network_list_reads_like_xl() {
        let vifs = [VifInfo {
            domid: 3,
            devid: 0,
            mac: [0x00, 0x16, 0x3e, 0xab, 0xcd, 0xef],
            vlan: VlanMode::Access(10),
            backend_state: 4,
            switch_port: 2,
        }];
        let names = BTreeMap::from([(3, "web".to_string())]);
        assert_eq!(
            vif_table(&vifs, &names),
            "\
Name  Domid  Idx  Mac Addr.          VLAN       BE state       Port
web       3    0  00:16:3e:ab:cd:ef  access 10  4 (Connected)     2
"
        );
        let v: serde_json::Value = serde_json::from_str(&vifs_json(&vifs, &names)).unwrap();
        assert_eq!(v[0]["vlan"]["access"], 10);
        assert_eq!(v[0]["backend_state_name"], "Connected");
    }
}
