//! The volume and block-device requests (protocol 2.4) and a new
//! domain's disks: [`Volumes`] for the table, [`BlockBackends`] for the
//! attachments, with the rules between them: a volume attached anywhere
//! cannot be deleted; a volume is writable in one domain at a time, and
//! read-only in any number while none writes it (the backend enforces
//! that; the error names the attachment in the way).

use alloc::string::ToString;
use alloc::vec::Vec;

use abi::xen::domid::DomId;
use guest_pv_shim::println;
use guest_pv_shim::xenbus::state::XenbusState;
use mgmt::storage::check_vdev;
use mgmt::{
    BlockDevice, BlockFailure, DiskSpec, DomainOperation, DomainRef, MgmtError, Reply,
    VolumeFailure, VolumeInfo, VolumeTable,
};
use toolstack::Hypervisor;

use super::domains::{check_operable, find, is_dom0};
use super::session::Ctx;
use crate::blkback::{BlockBackends, BlockError, BlockInfo};

/// `VolumeCreate`.
pub fn create(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    name: &str,
    bytes: u64,
) -> Result<Reply, MgmtError> {
    let v = ctx.volumes.create(name, bytes).map_err(MgmtError::Volume)?;
    Ok(Reply::Volume(volume_info(ctx.blk, &v)))
}

/// `VolumeList`.
pub fn list(ctx: &mut Ctx<'_, impl Hypervisor>) -> Result<Reply, MgmtError> {
    let volumes = ctx.volumes.list().map_err(MgmtError::Volume)?;
    let (disk_bytes, largest_free_bytes) = ctx.volumes.space().map_err(MgmtError::Volume)?;
    Ok(Reply::Volumes(VolumeTable {
        disk_bytes,
        largest_free_bytes,
        volumes: volumes.iter().map(|v| volume_info(ctx.blk, v)).collect(),
    }))
}

/// `VolumeDelete`: refused while the volume is attached anywhere.
pub fn delete(ctx: &mut Ctx<'_, impl Hypervisor>, name: &str) -> Result<Reply, MgmtError> {
    ctx.volumes.get(name).map_err(MgmtError::Volume)?;
    if ctx.blk.is_attached(name) {
        let holder = ctx.blk.list().into_iter().find(|d| d.extent.name == name);
        return Err(MgmtError::Volume(VolumeFailure::Attached {
            name: name.into(),
            domid: holder.as_ref().map_or(0, |d| d.domid),
            vdev: holder.map_or_else(|| "?".into(), |d| d.vdev),
        }));
    }
    ctx.volumes.delete(name).map_err(MgmtError::Volume)?;
    Ok(Reply::Done)
}

/// `BlockAttach` to a running (or paused) domain.
pub fn attach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    volume: &str,
    vdev: &str,
    read_only: bool,
) -> Result<Reply, MgmtError> {
    let info = find(ctx.hv, domain)?;
    if is_dom0(&info) {
        return Err(MgmtError::Block(BlockFailure::Dom0));
    }
    check_operable(&info, DomainOperation::AttachDisk)?;
    let device = attach_one(ctx, info.domid, volume, vdev, read_only)?;
    Ok(Reply::BlockAttached(device))
}

/// Attaches `volume` to `domid` as `vdev` and lets the store send the
/// new nodes' watch events.
fn attach_one(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domid: DomId,
    volume: &str,
    vdev: &str,
    read_only: bool,
) -> Result<BlockDevice, MgmtError> {
    check_vdev(vdev).map_err(MgmtError::Block)?;
    let extent = ctx
        .volumes
        .extent(volume)
        .ok_or_else(|| MgmtError::Volume(VolumeFailure::NotFound(volume.into())))?;
    let devid = ctx
        .blk
        .attach(ctx.store, domid, vdev, extent, read_only)
        .map_err(|e| block_failure(ctx.blk, e))?;
    ctx.store.serve(ctx.backend.events(), &ctx.backend.grants());
    println!(
        "dom0: block: attached {volume} to d{domid} as {vdev} ({}, devid {devid})",
        if read_only { "r" } else { "w" }
    );
    let attached = ctx
        .blk
        .list()
        .into_iter()
        .find(|d| d.domid == domid && d.devid == devid);
    attached
        .map(|d| device(&d))
        .ok_or_else(|| MgmtError::Block(BlockFailure::Backend("the device vanished".into())))
}

/// `BlockDetach`.
pub fn detach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    vdev: &str,
) -> Result<Reply, MgmtError> {
    let info = find(ctx.hv, domain)?;
    ctx.blk
        .detach(ctx.store, info.domid, vdev)
        .map_err(|e| block_failure(ctx.blk, e))?;
    ctx.store.serve(ctx.backend.events(), &ctx.backend.grants());
    println!("dom0: block: detached {vdev} from d{}", info.domid);
    Ok(Reply::Done)
}

/// `BlockList`, of one domain or all.
pub fn block_list(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: Option<&DomainRef>,
) -> Result<Reply, MgmtError> {
    let only = match domain {
        Some(d) => Some(find(ctx.hv, d)?.domid),
        None => None,
    };
    let mut devices: Vec<BlockDevice> = ctx
        .blk
        .list()
        .iter()
        .filter(|d| only.is_none_or(|domid| d.domid == domid))
        .map(device)
        .collect();
    devices.sort_by_key(|d| (d.domid, d.devid));
    Ok(Reply::BlockDevices(devices))
}

/// A new domain's disks, attached while it is still paused; on a
/// failure the ones attached are detached again and the error names the
/// disk.
pub fn attach_disks(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domid: DomId,
    disks: &[DiskSpec],
) -> Result<(), MgmtError> {
    for (i, disk) in disks.iter().enumerate() {
        let read_only = disk.mode.read_only();
        if let Err(e) = attach_one(ctx, domid, &disk.volume, &disk.vdev, read_only) {
            for done in &disks[..i] {
                let _ = ctx.blk.detach(ctx.store, domid, &done.vdev);
            }
            return Err(MgmtError::InvalidConfig {
                field: "disks".into(),
                reason: alloc::format!("{} as {}: {e}", disk.volume, disk.vdev),
            });
        }
    }
    Ok(())
}

/// The protocol's words for a backend refusal, naming the attachment in
/// the way.
fn block_failure(blk: &BlockBackends, e: BlockError) -> MgmtError {
    MgmtError::Block(match e {
        BlockError::BadVdev(vdev, _) => match check_vdev(&vdev) {
            Err(f) => f,
            Ok(_) => BlockFailure::Backend(alloc::format!("bad vdev {vdev}")),
        },
        BlockError::VdevInUse { domid, vdev } => BlockFailure::VdevInUse { domid, vdev },
        BlockError::NotAttached { domid, vdev } => BlockFailure::NotAttached { domid, vdev },
        BlockError::VolumeInUse { volume, domid } => {
            let holder = blk
                .list()
                .into_iter()
                .find(|d| d.domid == domid && d.extent.name == volume);
            BlockFailure::VolumeInUse {
                volume,
                domid,
                vdev: holder
                    .as_ref()
                    .map_or_else(|| "?".into(), |d| d.vdev.clone()),
                writable: holder.is_some_and(|d| !d.read_only),
            }
        }
        other => BlockFailure::Backend(other.to_string()),
    })
}

fn volume_info(blk: &BlockBackends, v: &::volumes::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name.clone(),
        bytes: v.bytes(),
        first_lba: v.first_lba,
        guid: v.guid.to_string(),
        attached: blk
            .list()
            .iter()
            .filter(|d| d.extent.name == v.name)
            .map(device)
            .collect(),
    }
}

fn device(d: &BlockInfo) -> BlockDevice {
    BlockDevice {
        domid: d.domid,
        vdev: d.vdev.clone(),
        devid: d.devid,
        volume: d.extent.name.clone(),
        read_only: d.read_only,
        // `BlockInfo::state` is the `XenbusState` number (io/xenbus.h).
        state: XenbusState::parse(d.state.to_string().as_bytes())
            .map_or_else(|| d.state.to_string(), |s| s.to_string()),
    }
}
