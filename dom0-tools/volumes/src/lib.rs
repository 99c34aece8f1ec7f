//! Named volumes on dom0's disk, as GPT partitions (issue 12).
//!
//! dom0's disk carries a GUID Partition Table (UEFI 2.10 §5.3: protective
//! MBR in LBA 0, primary header in LBA 1, a 128-entry array in LBAs 2–33,
//! the backup array and header at the end), read and written with
//! `gpt_disk_io`/`gpt_disk_types`. Every volume is one partition of type
//! [`VOLUME_TYPE`] whose GPT name is the volume's name; partitions of
//! other types are left alone (their space is simply not free). `sgdisk
//! -p` or `fdisk -l` on the host reads the same disk.
//!
//! - [`Table::open`] reads the table, repairs a damaged primary or backup
//!   copy from the other, and initialises a **blank** disk (LBAs 0 and 1
//!   all zero); anything else that is not our GPT is refused untouched
//!   ([`VolumeError::Foreign`]).
//! - [`Table::create`], [`Table::delete`], [`Table::list`],
//!   [`Table::get`]: each change is written backup first, then primary,
//!   then flushed, so a crash leaves one valid copy that `open` repairs
//!   the other from.
//! - Volumes start on a 1 MiB boundary ([`ALIGN_SECTORS`]) and their size
//!   is rounded up to whole MiB; [`parse_size`] reads `64MiB`, `2GiB`.
//!
//! Portable (`no_std` + `alloc`) and host-tested on an in-memory disk.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod name;
mod size;
mod space;
mod table;

pub use gpt_disk_io::gpt_disk_types::Guid;
pub use gpt_disk_io::BlockIo;
pub use name::{check_name, NameError, MAX_NAME_LEN};
pub use size::{format_size, parse_size, SizeError};
pub use table::{Opened, Table, Volume, VolumeError};

/// The GPT partition type GUID of a xen-core volume (ours, generated
/// once; `sgdisk -p` shows it as code `FFFF`/unknown, `sgdisk -i N` in
/// full). Partitions of any other type are not volumes.
pub const VOLUME_TYPE: Guid =
    gpt_disk_io::gpt_disk_types::guid!("987e57f3-eca0-4012-a7d8-84db9c1fca9c");

/// Bytes per sector (LBA): the disk's logical block size.
pub const SECTOR_BYTES: u64 = 512;

/// Volumes start on, and are sized in, whole MiB: 2048 sectors.
pub const ALIGN_SECTORS: u64 = (1 << 20) / SECTOR_BYTES;

/// Entries in the partition entry array (the UEFI minimum of 16 KiB of
/// 128-byte entries), so at most this many partitions.
pub const MAX_ENTRIES: u32 = 128;

/// The smallest disk [`Table::open`] initialises: 4 MiB (the tables
/// and alignment take about 1 MiB at each end).
pub const MIN_DISK_SECTORS: u64 = 4 * ALIGN_SECTORS;
