//! The block backend (`io/blkif.h`), in the role of Linux's xen-blkback
//! with libxl's device plumbing: serves the blkif rings of guests'
//! virtual block devices (vbds) from volumes on dom0's disk.
//!
//! - [`BlockBackends::attach`] writes the vbd's backend and frontend
//!   directories (libxl's keys and permissions, [`xenbus`]), publishes the
//!   backend's features and goes to InitWait.
//! - [`BlockBackends::serve`] (each pass of the agent's loop, target
//!   only) follows each frontend's `state`: on Initialised it reads
//!   `ring-ref`/`event-channel`/`protocol`, maps the ring page by grant,
//!   binds the port, publishes `sectors`/`info`/`sector-size` and goes
//!   Connected; on Closing/Closed it lets go of the ring. It then serves
//!   the rings whose port fired: at most [`REQUESTS_PER_PASS`] requests
//!   per device and pass, round robin, each through the [`engine`]
//!   (checks, `GNTTABOP_copy` of the data: dom0 never maps a guest's data
//!   page, disk I/O at the extent's offset).
//! - A ring whose `req_prod` runs ahead of what it can hold is a broken
//!   frontend: that device alone is disconnected (backend Closing).
//! - [`BlockBackends::detach`] and [`BlockBackends::domain_destroyed`]
//!   close the device's store nodes at once; the ring and port go in the
//!   next `serve`.

#[cfg(target_os = "none")]
pub mod baseline;
pub mod engine;
#[cfg(target_os = "none")]
mod live;
#[cfg(all(target_os = "none", feature = "bench-trace"))]
pub mod trace;
pub mod xenbus;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use abi::xen::blkif::{vdev_number, VdevError};
use abi::xen::domid::DomId;
use guest_pv_shim::xenbus::state::XenbusState;

use crate::store::StoreService;
use engine::Target;

/// Virtual block devices attached at once, over all domains.
pub const MAX_DEVICES: usize = 32;
#[cfg(target_os = "none")]
/// Requests one device gets served per pass of the agent's loop, so that
/// one busy (or flooding) frontend cannot starve the others.
pub const REQUESTS_PER_PASS: u32 = 32;
#[cfg(target_os = "none")]
/// Refused requests logged per device (later ones are only counted).
pub const LOGGED_REFUSALS_MAX: u64 = 16;

/// Where a volume lies on dom0's disk: `sectors` 512-byte sectors from
/// `first_lba` (a GPT partition's first LBA and length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeExtent {
    /// The volume's name (its GPT partition name).
    pub name: String,
    /// First 512-byte sector on the disk.
    pub first_lba: u64,
    /// Length in 512-byte sectors.
    pub sectors: u64,
}

/// Why an attach or detach was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The vdev is not a disk name of xen-vbd-interface(7).
    BadVdev(String, VdevError),
    /// The domain already has a device at this vdev.
    VdevInUse { domid: DomId, vdev: String },
    /// The volume is attached writable elsewhere, or attached anywhere
    /// and this attach is writable.
    VolumeInUse { volume: String, domid: DomId },
    /// No device at this vdev.
    NotAttached { domid: DomId, vdev: String },
    /// [`MAX_DEVICES`] devices are attached.
    TooMany,
    /// The store refused a write (Xen's error string).
    Store(String),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVdev(vdev, why) => write!(f, "bad virtual device {vdev:?} ({why:?})"),
            Self::VdevInUse { domid, vdev } => write!(f, "d{domid} already has {vdev}"),
            Self::VolumeInUse { volume, domid } => {
                write!(f, "volume {volume} is attached to d{domid}")
            }
            Self::NotAttached { domid, vdev } => write!(f, "d{domid} has no {vdev}"),
            Self::TooMany => write!(f, "{MAX_DEVICES} block devices are attached already"),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}

/// One attached device, as [`BlockBackends::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The guest.
    pub domid: DomId,
    /// Its name for the device, e.g. `xvda`.
    pub vdev: String,
    /// The vdev number (the device id in the store).
    pub devid: u32,
    /// The volume and where it lies.
    pub extent: VolumeExtent,
    /// Attached read-only.
    pub read_only: bool,
    /// The backend's `XenbusState` (4: connected).
    pub state: u8,
    /// Requests answered OKAY.
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// One vbd.
struct Device {
    domid: DomId,
    devid: u32,
    vdev: String,
    target: Target,
    state: XenbusState,
    requests: u64,
    errors: u64,
    /// The mapped ring and bound port while connected.
    #[cfg(target_os = "none")]
    conn: Option<live::Connection>,
}

/// Every vbd dom0 serves.
#[derive(Default)]
pub struct BlockBackends {
    devices: Vec<Device>,
    /// Rings and ports of devices gone (detached, destroyed), to release.
    #[cfg(target_os = "none")]
    released: Vec<live::Connection>,
    /// Where the next round robin starts.
    #[cfg(target_os = "none")]
    next: usize,
}

impl BlockBackends {
    /// No devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `extent` to `domid` as `vdev` (`xvda`, ...): writes the
    /// backend and frontend directories (state Initialising), then the
    /// backend's features and InitWait. Returns the vdev number (the
    /// device id: `xvda` = 51712). Call before the guest is unpaused for
    /// it to find its disks at boot; a running guest sees the new
    /// `device/vbd/<devid>` through a watch.
    pub fn attach(
        &mut self,
        store: &mut StoreService,
        domid: DomId,
        vdev: &str,
        extent: VolumeExtent,
        read_only: bool,
    ) -> Result<u32, BlockError> {
        let devid = vdev_number(vdev).map_err(|e| BlockError::BadVdev(vdev.into(), e))?;
        if self
            .devices
            .iter()
            .any(|d| d.domid == domid && d.devid == devid)
        {
            return Err(BlockError::VdevInUse {
                domid,
                vdev: vdev.into(),
            });
        }
        let clash = self
            .devices
            .iter()
            .find(|d| d.target.extent.name == extent.name && (!read_only || !d.target.read_only));
        if let Some(d) = clash {
            return Err(BlockError::VolumeInUse {
                volume: extent.name,
                domid: d.domid,
            });
        }
        if self.devices.len() >= MAX_DEVICES {
            return Err(BlockError::TooMany);
        }
        let nodes = xenbus::attach_nodes(domid, devid, vdev, &extent, read_only);
        let features = xenbus::feature_nodes(domid, devid);
        let written = store
            .write_nodes(&nodes)
            .and_then(|()| store.write_nodes(&features));
        if let Err(e) = written {
            remove_nodes(store, domid, devid);
            return Err(BlockError::Store(e));
        }
        let mut device = Device {
            domid,
            devid,
            vdev: vdev.into(),
            target: Target { extent, read_only },
            state: XenbusState::Initialising,
            requests: 0,
            errors: 0,
            #[cfg(target_os = "none")]
            conn: None,
        };
        device.switch_state(store, XenbusState::InitWait);
        self.devices.push(device);
        Ok(devid)
    }

    /// Detaches `domid`'s `vdev`: backend Closing then Closed, both
    /// directories removed (libxl's remove); the ring goes next `serve`.
    pub fn detach(
        &mut self,
        store: &mut StoreService,
        domid: DomId,
        vdev: &str,
    ) -> Result<(), BlockError> {
        let not_attached = || BlockError::NotAttached {
            domid,
            vdev: vdev.into(),
        };
        let devid = vdev_number(vdev).map_err(|_| not_attached())?;
        let at = self
            .devices
            .iter()
            .position(|d| d.domid == domid && d.devid == devid)
            .ok_or_else(not_attached)?;
        let mut device = self.devices.remove(at);
        device.switch_state(store, XenbusState::Closing);
        device.switch_state(store, XenbusState::Closed);
        remove_nodes(store, domid, devid);
        self.release(device);
        Ok(())
    }

    /// `domid` is gone: its devices go, with their backend directories.
    pub fn domain_destroyed(&mut self, store: &mut StoreService, domid: DomId) {
        let (gone, kept) = core::mem::take(&mut self.devices)
            .into_iter()
            .partition(|d| d.domid == domid);
        self.devices = kept;
        for device in gone {
            remove_nodes(store, domid, device.devid);
            self.release(device);
        }
        store.remove(&alloc::format!("/local/domain/0/backend/vbd/{domid}"));
    }

    /// Every attached device.
    pub fn list(&self) -> Vec<BlockInfo> {
        self.devices
            .iter()
            .map(|d| BlockInfo {
                domid: d.domid,
                vdev: d.vdev.clone(),
                devid: d.devid,
                extent: d.target.extent.clone(),
                read_only: d.target.read_only,
                state: d.state as u8,
                requests: d.requests,
                errors: d.errors,
            })
            .collect()
    }

    /// Whether volume `name` is attached to any domain.
    pub fn is_attached(&self, name: &str) -> bool {
        self.devices.iter().any(|d| d.target.extent.name == name)
    }

    #[cfg(target_os = "none")]
    fn release(&mut self, mut device: Device) {
        #[cfg(feature = "bench-trace")]
        trace::report(device.domid, &device.vdev);
        self.released.extend(device.conn.take());
    }

    #[cfg(not(target_os = "none"))]
    fn release(&mut self, _device: Device) {}
}

impl Device {
    /// Writes the backend's `state`.
    fn switch_state(&mut self, store: &mut StoreService, state: XenbusState) {
        self.state = state;
        let node = crate::store::tree::Node {
            path: alloc::format!("{}/state", xenbus::backend_path(self.domid, self.devid)),
            value: alloc::format!("{}", state as u32),
            perms: None,
        };
        // The directory is dom0's: only a full store refuses.
        let _ = store.write_nodes(&[node]);
    }

    /// The frontend's `state` (Unknown if absent or unreadable).
    fn frontend_state(&self, store: &StoreService) -> XenbusState {
        let path = alloc::format!("{}/state", xenbus::frontend_path(self.domid, self.devid));
        store
            .read(&path)
            .and_then(XenbusState::parse)
            .unwrap_or(XenbusState::Unknown)
    }
}

fn remove_nodes(store: &mut StoreService, domid: DomId, devid: u32) {
    store.remove(&xenbus::backend_path(domid, devid));
    store.remove(&xenbus::frontend_path(domid, devid));
}

#[cfg(test)]
mod tests;
