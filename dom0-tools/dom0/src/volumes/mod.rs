//! The volumes on dom0's disk (issue 12): named GPT partitions, kept
//! with the `volumes` crate's [`Table`] on the [`Disk`].
//!
//! [`Volumes::open`] reads (or, on a blank disk, initialises) the table
//! once at the agent's start and logs what it found:
//! `dom0: volumes: blank disk: GPT initialised; 0 volumes, 62MiB free` or
//! `dom0: volumes: GPT found; 2 volumes, ...`. A disk dom0 cannot use
//! (none, a foreign partition table, too small) leaves the agent
//! running without volumes; every volume request then says why.
//! [`Volumes`] owns the disk: the block backend borrows it
//! ([`Volumes::disk_mut`]) to serve its rings.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ::volumes::{BlockIo, Table, Volume, VolumeError, MAX_ENTRIES};
use gpt_disk_io::gpt_disk_types::{BlockSize, Lba};
use guest_pv_shim::println;
use mgmt::VolumeFailure;

use crate::blkback::VolumeExtent;
use crate::devices::sectors::{DiskError, SECTOR_BYTES};
use crate::devices::Disk;

/// dom0's disk and the volumes on it.
pub struct Volumes {
    disk: Option<Disk>,
    /// The table, or why there is none.
    table: Result<Table, String>,
}

impl Volumes {
    /// Opens the volume table on `disk` (initialising a blank disk).
    /// `entropy` seeds new GUIDs (the boot's clock will do).
    pub fn open(mut disk: Option<Disk>, entropy: u64) -> Self {
        let table = match disk.as_mut() {
            None => Err(String::from("dom0 has no disk")),
            Some(d) => Table::open(DiskIo(d), entropy)
                .map(|(table, opened)| {
                    let count = table.list().len();
                    println!(
                        "dom0: volumes: {opened}; {count} volumes, largest free space {}",
                        ::volumes::format_size(table.largest_free_bytes())
                    );
                    table
                })
                .map_err(|e| e.to_string()),
        };
        if let Err(why) = &table {
            println!("dom0: volumes: none: {why}");
        }
        Volumes { disk, table }
    }

    /// The disk, for the block backend.
    pub fn disk_mut(&mut self) -> Option<&mut Disk> {
        self.disk.as_mut()
    }

    fn parts(&mut self) -> Result<(&mut Table, &mut Disk), VolumeFailure> {
        match (&mut self.table, self.disk.as_mut()) {
            (Ok(table), Some(disk)) => Ok((table, disk)),
            (Err(why), _) => Err(VolumeFailure::NoDisk {
                reason: why.clone(),
            }),
            (Ok(_), None) => Err(VolumeFailure::NoDisk {
                reason: "dom0 has no disk".into(),
            }),
        }
    }

    fn table(&self) -> Result<&Table, VolumeFailure> {
        self.table.as_ref().map_err(|why| VolumeFailure::NoDisk {
            reason: why.clone(),
        })
    }

    /// Creates a volume of `bytes` (rounded up to whole MiB), zeroed.
    pub fn create(&mut self, name: &str, bytes: u64) -> Result<Volume, VolumeFailure> {
        let (table, disk) = self.parts()?;
        let volume = table
            .create(DiskIo(disk), name, bytes)
            .map_err(|e| failure(e, name))?;
        println!(
            "dom0: volumes: created {name} ({}) at sector {}",
            ::volumes::format_size(volume.bytes()),
            volume.first_lba
        );
        Ok(volume)
    }

    /// Deletes volume `name` (the caller checked it is not attached).
    pub fn delete(&mut self, name: &str) -> Result<(), VolumeFailure> {
        let (table, disk) = self.parts()?;
        table
            .delete(DiskIo(disk), name)
            .map_err(|e| failure(e, name))?;
        println!("dom0: volumes: deleted {name}");
        Ok(())
    }

    /// The volumes, in disk order.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeFailure> {
        Ok(self.table()?.list())
    }

    /// The volume `name`, if any.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeFailure> {
        self.table()?
            .get(name)
            .ok_or_else(|| VolumeFailure::NotFound(name.into()))
    }

    /// Where volume `name` lies, for the block backend.
    pub fn extent(&self, name: &str) -> Option<VolumeExtent> {
        let v = self.table.as_ref().ok()?.get(name)?;
        Some(VolumeExtent {
            name: v.name,
            first_lba: v.first_lba,
            sectors: v.sectors,
        })
    }

    /// The disk's size and the largest volume that fits now, bytes.
    pub fn space(&self) -> Result<(u64, u64), VolumeFailure> {
        let table = self.table()?;
        Ok((
            table.disk_sectors() * SECTOR_BYTES as u64,
            table.largest_free_bytes(),
        ))
    }
}

/// The protocol's word for a table error about volume `name`.
fn failure(e: VolumeError<DiskError>, name: &str) -> VolumeFailure {
    match e {
        VolumeError::BadName(e) => VolumeFailure::InvalidName {
            name: name.into(),
            reason: e.to_string(),
        },
        VolumeError::BadSize => VolumeFailure::EmptySize,
        VolumeError::NameTaken { name } => VolumeFailure::NameTaken(name),
        VolumeError::NotFound { name } => VolumeFailure::NotFound(name),
        VolumeError::TooLarge { requested, max } => VolumeFailure::TooLarge { requested, max },
        VolumeError::DiskFull {
            requested,
            largest_free,
        } => VolumeFailure::DiskFull {
            requested,
            largest_free,
        },
        VolumeError::TooManyVolumes => VolumeFailure::TooManyVolumes { max: MAX_ENTRIES },
        other => VolumeFailure::Io(other.to_string()),
    }
}

/// dom0's disk as `gpt_disk_io` reads and writes it.
struct DiskIo<'a>(&'a mut Disk);

impl BlockIo for DiskIo<'_> {
    type Error = DiskError;

    fn block_size(&self) -> BlockSize {
        BlockSize::BS_512
    }

    fn num_blocks(&mut self) -> Result<u64, DiskError> {
        Ok(self.0.sectors())
    }

    fn read_blocks(&mut self, start_lba: Lba, dst: &mut [u8]) -> Result<(), DiskError> {
        self.0.read_blocks(start_lba.0, dst)
    }

    fn write_blocks(&mut self, start_lba: Lba, src: &[u8]) -> Result<(), DiskError> {
        self.0.write_blocks(start_lba.0, src)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.0.flush()
    }
}
