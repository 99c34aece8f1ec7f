//! `volume create|list|delete` and `block-attach|block-detach|block-list`
//! (protocol 2.4): requests, and how their replies are shown.

use std::io::Write;

use mgmt::{BlockDevice, DomainRef, Reply, Request, VolumeInfo, VolumeTable};
use serde::Serialize;

use crate::cli::{BlockAttachArgs, BlockDetachArgs, BlockListArgs, VolumeCommand};
use crate::client::{unexpected, Client};
use crate::commands::print;
use crate::error::CliError;
use crate::output::table;

/// `volume ...`.
pub fn volume(
    client: &mut Client,
    command: VolumeCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        VolumeCommand::Create { name, size } => {
            match client.call(Request::VolumeCreate { name, bytes: size })? {
                Reply::Volume(v) => print(
                    out,
                    &format!("Created volume '{}' ({}).\n", v.name, size_text(v.bytes)),
                ),
                other => Err(unexpected(&other)),
            }
        }
        VolumeCommand::List { json } => match client.call(Request::VolumeList)? {
            Reply::Volumes(table) if json => print(out, &volumes_json(&table)),
            Reply::Volumes(table) => print(out, &volumes_text(&table)),
            other => Err(unexpected(&other)),
        },
        VolumeCommand::Delete { name } => {
            match client.call(Request::VolumeDelete { name: name.clone() })? {
                Reply::Done => print(out, &format!("Deleted volume '{name}'.\n")),
                other => Err(unexpected(&other)),
            }
        }
    }
}

/// `block-attach`.
pub fn attach(
    client: &mut Client,
    args: BlockAttachArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    match client.call(Request::BlockAttach {
        domain: domain.clone(),
        volume: args.volume,
        vdev: args.vdev,
        read_only: args.read_only,
    })? {
        Reply::BlockAttached(d) => print(
            out,
            &format!(
                "Attached volume '{}' to domain {} as {} ({}, devid {}).\n",
                d.volume,
                d.domid,
                d.vdev,
                mode_word(d.read_only),
                d.devid
            ),
        ),
        other => Err(unexpected(&other)),
    }
}

/// `block-detach`.
pub fn detach(
    client: &mut Client,
    args: BlockDetachArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    match client.call(Request::BlockDetach {
        domain: domain.clone(),
        vdev: args.vdev.clone(),
    })? {
        Reply::Done => print(out, &format!("Detached {} from {domain}.\n", args.vdev)),
        other => Err(unexpected(&other)),
    }
}

/// `block-list`.
pub fn list(client: &mut Client, args: BlockListArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let domain = args.domain.as_deref().map(DomainRef::parse);
    match client.call(Request::BlockList { domain })? {
        Reply::BlockDevices(devices) if args.json => print(out, &json(&devices_json(&devices))),
        Reply::BlockDevices(devices) => print(out, &devices_text(&devices)),
        other => Err(unexpected(&other)),
    }
}

fn mode_word(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "read-write"
    }
}

fn size_text(bytes: u64) -> String {
    volumes::format_size(bytes)
}

/// `volume list`: a table like `xl list`'s, then the free space.
pub fn volumes_text(volumes: &VolumeTable) -> String {
    let rows = volumes.volumes.iter().map(|v| {
        vec![
            v.name.clone(),
            size_text(v.bytes),
            v.first_lba.to_string(),
            attachments(v),
        ]
    });
    let mut text = table(&["Name", "Size", "FirstLBA", "Attached"], rows, &[1, 2]);
    text.push_str(&format!(
        "Disk {}, largest free space {}.\n",
        size_text(volumes.disk_bytes),
        size_text(volumes.largest_free_bytes)
    ));
    text
}

/// Where a volume is attached: `3:xvda(w) 4:xvdb(r)`, or `-`.
fn attachments(v: &VolumeInfo) -> String {
    if v.attached.is_empty() {
        return "-".into();
    }
    let each: Vec<String> = v
        .attached
        .iter()
        .map(|d| {
            format!(
                "{}:{}({})",
                d.domid,
                d.vdev,
                if d.read_only { "r" } else { "w" }
            )
        })
        .collect();
    each.join(" ")
}

/// `block-list`: one row per device, like `xl block-list`.
pub fn devices_text(devices: &[BlockDevice]) -> String {
    let rows = devices.iter().map(|d| {
        vec![
            d.domid.to_string(),
            d.vdev.clone(),
            d.devid.to_string(),
            d.volume.clone(),
            if d.read_only { "r" } else { "w" }.to_string(),
            d.state.clone(),
        ]
    });
    table(
        &["Domain", "Vdev", "DevId", "Volume", "Mode", "BE-state"],
        rows,
        &[0, 2],
    )
}

#[derive(Serialize)]
struct DeviceJson<'a> {
    domid: u16,
    vdev: &'a str,
    devid: u32,
    volume: &'a str,
    mode: &'static str,
    state: &'a str,
}

fn devices_json(devices: &[BlockDevice]) -> Vec<DeviceJson<'_>> {
    devices
        .iter()
        .map(|d| DeviceJson {
            domid: d.domid,
            vdev: &d.vdev,
            devid: d.devid,
            volume: &d.volume,
            mode: if d.read_only { "r" } else { "w" },
            state: &d.state,
        })
        .collect()
}

#[derive(Serialize)]
struct VolumeJson<'a> {
    name: &'a str,
    bytes: u64,
    first_lba: u64,
    guid: &'a str,
    attached: Vec<DeviceJson<'a>>,
}

#[derive(Serialize)]
struct TableJson<'a> {
    disk_bytes: u64,
    largest_free_bytes: u64,
    volumes: Vec<VolumeJson<'a>>,
}

/// `volume list --json`: the disk, its free space and the volumes, sizes
/// in bytes.
pub fn volumes_json(table: &VolumeTable) -> String {
    json(&TableJson {
        disk_bytes: table.disk_bytes,
        largest_free_bytes: table.largest_free_bytes,
        volumes: table
            .volumes
            .iter()
            .map(|v| VolumeJson {
                name: &v.name,
                bytes: v.bytes,
                first_lba: v.first_lba,
                guid: &v.guid,
                attached: devices_json(&v.attached),
            })
            .collect(),
    })
}

fn json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(domid: u16, vdev: &str, read_only: bool) -> BlockDevice {
        BlockDevice {
            domid,
            vdev: vdev.into(),
            devid: mgmt::storage::check_vdev(vdev).unwrap(),
            volume: "data".into(),
            read_only,
            state: "Connected".into(),
        }
    }

    fn table() -> VolumeTable {
        VolumeTable {
            disk_bytes: 64 << 20,
            largest_free_bytes: 46 << 20,
            volumes: vec![
                VolumeInfo {
                    name: "data".into(),
                    bytes: 16 << 20,
                    first_lba: 2048,
                    guid: "0".into(),
                    attached: vec![device(3, "xvda", true), device(4, "xvdb", true)],
                },
                VolumeInfo {
                    name: "empty".into(),
                    bytes: 1 << 30,
                    first_lba: 34816,
                    guid: "1".into(),
                    attached: vec![],
                },
            ],
        }
    }

    #[test]
    fn volumes_show_as_a_table_and_as_json() {
        let text = volumes_text(&table());
        assert_eq!(
            text,
            "Name    Size  FirstLBA  Attached\n\
             data   16MiB      2048  3:xvda(r) 4:xvdb(r)\n\
             empty   1GiB     34816  -\n\
             Disk 64MiB, largest free space 46MiB.\n"
        );
        let json: serde_json::Value = serde_json::from_str(&volumes_json(&table())).unwrap();
        assert_eq!(json["volumes"][0]["attached"][1]["vdev"], "xvdb");
        assert_eq!(json["volumes"][1]["bytes"], 1u64 << 30);
        assert_eq!(json["largest_free_bytes"], 46u64 << 20);
    }

    #[test]
    fn devices_show_as_a_table_and_as_json() {
        let devices = [device(3, "xvda", false), device(12, "xvdb", true)];
        assert_eq!(
            devices_text(&devices),
            "Domain  Vdev  DevId  Volume  Mode  BE-state\n\
             \x20    3  xvda  51712  data    w     Connected\n\
             \x20   12  xvdb  51728  data    r     Connected\n"
        );
        let json: serde_json::Value = serde_json::from_str(&json(&devices_json(&devices))).unwrap();
        assert_eq!(json[1]["mode"], "r");
        assert_eq!(json[0]["devid"], 51712);
    }
}
