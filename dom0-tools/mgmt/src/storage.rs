//! Volumes and block devices (protocol 2.4, issue 12): what the volume
//! and `block-*` requests carry, a domain config's `disks`, and why such
//! a request fails ([`VolumeFailure`], [`BlockFailure`]).
//!
//! Names are xl's: a disk is a volume attached to a domain under a
//! virtual-device name (`vdev`, Xen's `docs/misc/vbd-interface.txt`:
//! `xvda`, `xvdb3`, `sda`, `hdc`, `d0p1`, or the number), read-write or
//! read-only (`mode = "w"`/`"r"`). A volume is attached writable to at
//! most one domain at a time, and read-only to any number only while no
//! domain has it writable.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use abi::xen::blkif::{vdev_number, VdevError};
use serde::{Deserialize, Serialize};

use crate::error::MgmtError;
use crate::DomId;

/// The most disks one domain config names.
pub const MAX_DISKS: usize = 16;

/// How a disk is attached (xl's disk `access`/`mode`: `r` or `w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskMode {
    /// `r`: the guest may only read (writes get `BLKIF_RSP_ERROR`).
    ReadOnly,
    /// `w`: read and write.
    ReadWrite,
}

impl DiskMode {
    /// Reads xl's letter: `r` (or `ro`) and `w` (or `rw`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "r" | "ro" => Some(Self::ReadOnly),
            "w" | "rw" => Some(Self::ReadWrite),
            _ => None,
        }
    }

    /// Whether it is [`DiskMode::ReadOnly`].
    pub fn read_only(self) -> bool {
        self == Self::ReadOnly
    }
}

impl fmt::Display for DiskMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.read_only() { "r" } else { "w" })
    }
}

/// One disk of a new domain: `{ volume = "data", vdev = "xvda", mode =
/// "w" }`. Attached after the domain is built and before it first runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// The volume's name.
    pub volume: String,
    /// The virtual-device name the guest sees.
    pub vdev: String,
    /// Read-only or read-write.
    pub mode: DiskMode,
}

/// Checks a config's disks: at most [`MAX_DISKS`], valid volume names and
/// vdevs, no vdev twice (by number: `xvda` and `d0` are the same disk),
/// and no volume twice unless every use is read-only.
pub fn validate_disks(disks: &[DiskSpec]) -> Result<(), MgmtError> {
    let invalid = |reason: String| MgmtError::InvalidConfig {
        field: "disks".into(),
        reason,
    };
    if disks.len() > MAX_DISKS {
        return Err(invalid(alloc::format!(
            "{} disks; a domain has at most {MAX_DISKS}",
            disks.len()
        )));
    }
    let mut seen: Vec<(u32, &DiskSpec)> = Vec::with_capacity(disks.len());
    for disk in disks {
        volumes::check_name(&disk.volume)
            .map_err(|e| invalid(alloc::format!("volume {:?}: {e}", disk.volume)))?;
        let number = check_vdev(&disk.vdev).map_err(|f| invalid(f.to_string_lossy()))?;
        if let Some((_, other)) = seen.iter().find(|(n, _)| *n == number) {
            return Err(invalid(alloc::format!(
                "vdev {:?} is the same device as {:?}",
                disk.vdev,
                other.vdev
            )));
        }
        let shared_writable = seen.iter().any(|(_, other)| {
            other.volume == disk.volume && !(other.mode.read_only() && disk.mode.read_only())
        });
        if shared_writable {
            return Err(invalid(alloc::format!(
                "volume {:?} is named twice; only read-only disks may share a volume",
                disk.volume
            )));
        }
        seen.push((number, disk));
    }
    Ok(())
}

/// The xenstore `virtual-device` number of `vdev`, or why it has none.
pub fn check_vdev(vdev: &str) -> Result<u32, BlockFailure> {
    vdev_number(vdev).map_err(|e| BlockFailure::InvalidVdev {
        vdev: vdev.into(),
        reason: match e {
            VdevError::Unknown => {
                "not a Xen disk name (xvda, xvdb1, sda, hdc, d0p1, or the number)".into()
            }
            VdevError::OutOfRange => "the disk or partition number is too large".into(),
        },
    })
}

/// One volume, as `volume list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Its name (the GPT partition name).
    pub name: String,
    /// Size, bytes (whole MiB).
    pub bytes: u64,
    /// First 512-byte sector on dom0's disk.
    pub first_lba: u64,
    /// The GPT partition's unique GUID, as text.
    pub guid: String,
    /// Where it is attached now.
    pub attached: Vec<BlockDevice>,
}

/// The volumes on dom0's disk (`Reply::Volumes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeTable {
    /// dom0's disk size, bytes.
    pub disk_bytes: u64,
    /// The largest volume that could be created now, bytes.
    pub largest_free_bytes: u64,
    /// The volumes, in disk order.
    pub volumes: Vec<VolumeInfo>,
}

/// One attached virtual block device, as `block-list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// The guest.
    pub domid: DomId,
    /// The name it was attached as (`xvda`).
    pub vdev: String,
    /// Its xenstore `virtual-device` number (the `devid` of
    /// `device/vbd/<devid>`).
    pub devid: u32,
    /// The volume behind it.
    pub volume: String,
    /// Attached read-only.
    pub read_only: bool,
    /// The backend's `XenbusState` (`Initialising`, `InitWait`,
    /// `Connected`, `Closing`, `Closed`).
    pub state: String,
}

/// Why a volume request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VolumeFailure {
    /// dom0 has no usable disk for volumes.
    #[error("dom0 has no volumes: {reason}")]
    NoDisk {
        /// Why (no disk, or a disk dom0 will not touch).
        reason: String,
    },
    /// The name is not a volume name.
    #[error("invalid volume name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Size 0.
    #[error("a volume cannot be empty (size 0)")]
    EmptySize,
    /// The name is in use.
    #[error("a volume named '{0}' already exists")]
    NameTaken(String),
    /// No such volume.
    #[error("no volume named '{0}' (see `dom0ctl volume list`)")]
    NotFound(String),
    /// Larger than the disk could ever hold.
    #[error("{} is too large: dom0's disk holds at most {} of volumes", Size(*.requested), Size(*.max))]
    TooLarge {
        /// Bytes asked for.
        requested: u64,
        /// The most the disk holds, bytes.
        max: u64,
    },
    /// No free space that large now.
    #[error("dom0's disk is full: no free space for {}; the largest free space is {}", Size(*.requested), Size(*.largest_free))]
    DiskFull {
        /// Bytes asked for.
        requested: u64,
        /// The largest volume that fits now, bytes.
        largest_free: u64,
    },
    /// Every partition entry is in use.
    #[error("dom0's disk holds {max} volumes (partitions) already; delete one first")]
    TooManyVolumes {
        /// The partition entries of the table.
        max: u32,
    },
    /// `VolumeDelete` of an attached volume.
    #[error("volume '{name}' is attached to domain {domid} as {vdev}; detach it first (dom0ctl block-detach {domid} {vdev})")]
    Attached {
        /// The volume.
        name: String,
        /// One domain it is attached to.
        domid: DomId,
        /// As which device.
        vdev: String,
    },
    /// The disk failed.
    #[error("dom0's disk failed: {0}")]
    Io(String),
}

/// Why a `block-*` request (or a config's disk) failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BlockFailure {
    /// Not a Xen virtual-device name.
    #[error("invalid vdev {vdev:?}: {reason}")]
    InvalidVdev {
        /// The name given.
        vdev: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The domain has a device of that number already.
    #[error("domain {domid} already has a disk {vdev}")]
    VdevInUse {
        /// The domain.
        domid: DomId,
        /// The device.
        vdev: String,
    },
    /// `BlockDetach` of a device the domain does not have.
    #[error("domain {domid} has no disk {vdev} (see `dom0ctl block-list {domid}`)")]
    NotAttached {
        /// The domain.
        domid: DomId,
        /// The device.
        vdev: String,
    },
    /// The attach would break the one-writer rule.
    #[error("volume '{volume}' is attached {} to domain {domid} as {vdev}: a volume is writable in one domain at a time, and read-only only while no domain writes it", if *.writable { "writable" } else { "read-only" })]
    VolumeInUse {
        /// The volume.
        volume: String,
        /// The domain that has it.
        domid: DomId,
        /// As which device.
        vdev: String,
        /// Whether that attachment is writable.
        writable: bool,
    },
    /// dom0 itself cannot be given a disk this way.
    #[error("dom0 reads its disk directly; disks are for other domains")]
    Dom0,
    /// The block backend refused (xenstore, limits).
    #[error("the block backend refused: {0}")]
    Backend(String),
}

impl BlockFailure {
    fn to_string_lossy(&self) -> String {
        alloc::format!("{self}")
    }
}

/// Bytes shown as GiB or MiB when exact, else as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&volumes::format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn disk(volume: &str, vdev: &str, mode: DiskMode) -> DiskSpec {
        DiskSpec {
            volume: volume.into(),
            vdev: vdev.into(),
            mode,
        }
    }

    #[test]
    fn disks_are_checked() {
        use DiskMode::*;
        assert_eq!(validate_disks(&[disk("data", "xvda", ReadWrite)]), Ok(()));
        assert_eq!(
            validate_disks(&[disk("iso", "xvda", ReadOnly), disk("iso", "xvdb", ReadOnly)]),
            Ok(())
        );
        let err = |d: &[DiskSpec]| validate_disks(d).unwrap_err().to_string();
        assert_eq!(
            err(&[disk("a", "xvda", ReadWrite), disk("b", "d0", ReadWrite)]),
            "invalid domain config: disks: vdev \"d0\" is the same device as \"xvda\""
        );
        assert_eq!(
            err(&[disk("a", "xvda", ReadWrite), disk("a", "xvdb", ReadOnly)]),
            "invalid domain config: disks: volume \"a\" is named twice; only read-only disks may share a volume"
        );
        assert!(err(&[disk("a", "vda", ReadWrite)]).contains("not a Xen disk name"));
        assert!(err(&[disk("a b", "xvda", ReadWrite)]).contains("volume \"a b\""));
        let many: Vec<DiskSpec> = (0..17)
            .map(|i| {
                disk(
                    "v",
                    &alloc::format!("xvd{}", char::from(b'a' + i)),
                    ReadOnly,
                )
            })
            .collect();
        assert!(err(&many).contains("at most 16"));
    }

    #[test]
    fn modes_read_as_xl_writes_them() {
        assert_eq!(DiskMode::parse("w"), Some(DiskMode::ReadWrite));
        assert_eq!(DiskMode::parse("ro"), Some(DiskMode::ReadOnly));
        assert_eq!(DiskMode::parse("x"), None);
        assert_eq!(DiskMode::ReadOnly.to_string(), "r");
    }

    #[test]
    fn failures_read_well() {
        assert_eq!(
            VolumeFailure::DiskFull {
                requested: 64 << 20,
                largest_free: 10 << 20
            }
            .to_string(),
            "dom0's disk is full: no free space for 64MiB; the largest free space is 10MiB"
        );
        assert_eq!(
            BlockFailure::VolumeInUse {
                volume: "data".into(),
                domid: 3,
                vdev: "xvda".into(),
                writable: true
            }
            .to_string(),
            "volume 'data' is attached writable to domain 3 as xvda: a volume is writable in one domain at a time, and read-only only while no domain writes it"
        );
        assert_eq!(check_vdev("xvdb").unwrap(), 51728);
    }
}
