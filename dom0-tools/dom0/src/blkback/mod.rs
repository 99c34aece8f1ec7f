//! The block backend (`io/blkif.h`): serves the blkif rings of guests'
//! virtual block devices from volumes on dom0's disk.

pub mod engine;

use alloc::string::String;

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
