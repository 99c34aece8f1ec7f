//! The partition table: reading, repairing, initialising and changing
//! dom0's GPT (UEFI 2.10 §5.3.2 headers, §5.3.3 entries).

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use gpt_disk_io::gpt_disk_types::{
    BlockSize, Crc32, GptHeader, GptPartitionAttributes, GptPartitionEntry, GptPartitionEntryArray,
    GptPartitionEntryArrayLayout, GptPartitionEntrySize, GptPartitionName, GptPartitionType, Guid,
    Lba, LbaLe, U32Le,
};
use gpt_disk_io::{BlockIo, Disk, DiskError};

use crate::name::{check_name, NameError};
use crate::space::{first_fit, largest_free};
use crate::{ALIGN_SECTORS, MAX_ENTRIES, MIN_DISK_SECTORS, SECTOR_BYTES, VOLUME_TYPE};

/// Bytes per partition entry (the UEFI size; sgdisk and Linux use it).
const ENTRY_BYTES: u32 = 128;
/// Sectors of one copy of the entry array: 32.
const ARRAY_SECTORS: u64 = MAX_ENTRIES as u64 * ENTRY_BYTES as u64 / SECTOR_BYTES;
const ARRAY_BYTES: usize = MAX_ENTRIES as usize * ENTRY_BYTES as usize;
/// The primary array follows the primary header in LBA 1.
const PRIMARY_ARRAY_LBA: u64 = 2;
/// The first LBA a partition may use: after the primary array (34).
const FIRST_USABLE: u64 = PRIMARY_ARRAY_LBA + ARRAY_SECTORS;
/// One sector, as a buffer.
const BLOCK: usize = 512;
const _: () = assert!(BLOCK as u64 == SECTOR_BYTES);
/// Zeroes written per request when a new volume is cleared (64 KiB).
const ZERO_CHUNK_BYTES: usize = 64 * 1024;

/// One volume: its name and where it lies (512-byte sectors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub first_lba: u64,
    pub sectors: u64,
    /// The partition's unique GUID (`sgdisk -i`).
    pub guid: Guid,
}

impl Volume {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR_BYTES
    }
}

/// What [`Table::open`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Both copies of our GPT, valid and equal.
    Found,
    /// A blank disk, now carrying a protective MBR and an empty GPT.
    Initialised,
    /// The primary copy was damaged (or older) and was rewritten from the
    /// backup.
    RepairedPrimary,
    /// The backup copy was damaged (or older) and was rewritten from the
    /// primary.
    RepairedBackup,
}

impl fmt::Display for Opened {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Opened::Found => "GPT found",
            Opened::Initialised => "blank disk: GPT initialised",
            Opened::RepairedPrimary => "GPT found; primary copy repaired from the backup",
            Opened::RepairedBackup => "GPT found; backup copy repaired from the primary",
        })
    }
}

/// Why an operation failed. `E` is the disk's I/O error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeError<E> {
    /// The disk failed a request.
    Io(E),
    /// The disk's logical blocks are not 512 bytes.
    BlockSize {
        bytes: u64,
    },
    /// The disk is smaller than [`MIN_DISK_SECTORS`].
    DiskTooSmall {
        sectors: u64,
    },
    /// The disk is neither blank nor carries a GPT laid out as ours
    /// (128 entries of 128 bytes, backup at the end): left untouched.
    Foreign,
    /// Our GPT holds an entry that cannot be (overlapping, outside the
    /// usable LBAs, a duplicate or bad volume name).
    Corrupt {
        why: &'static str,
    },
    BadName(NameError),
    /// A size of 0.
    BadSize,
    NameTaken {
        name: String,
    },
    NotFound {
        name: String,
    },
    /// More than the whole disk could ever hold (`max` bytes).
    TooLarge {
        requested: u64,
        max: u64,
    },
    /// No free space that large now (`largest_free` bytes is).
    DiskFull {
        requested: u64,
        largest_free: u64,
    },
    /// All [`MAX_ENTRIES`] partition entries are in use.
    TooManyVolumes,
}

impl<E: fmt::Display> fmt::Display for VolumeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        use crate::size::format_size as s;
        match self {
            VolumeError::Io(e) => write!(f, "disk I/O failed: {e}"),
            VolumeError::BlockSize { bytes } => {
                write!(f, "the disk has {bytes}-byte blocks; volumes need 512")
            }
            VolumeError::DiskTooSmall { sectors } => write!(
                f,
                "the disk has {sectors} sectors; volumes need at least {MIN_DISK_SECTORS}"
            ),
            VolumeError::Foreign => f.write_str(
                "the disk is not blank and holds no GPT laid out as dom0's: left untouched",
            ),
            VolumeError::Corrupt { why } => write!(f, "the GPT is corrupt: {why}"),
            VolumeError::BadName(e) => write!(f, "{e}"),
            VolumeError::BadSize => f.write_str("a volume cannot be empty (size 0)"),
            VolumeError::NameTaken { name } => write!(f, "a volume named {name:?} exists"),
            VolumeError::NotFound { name } => write!(f, "no volume named {name:?}"),
            VolumeError::TooLarge { requested, max } => write!(
                f,
                "{} is too large: the disk holds at most {} of volumes",
                s(*requested),
                s(*max)
            ),
            VolumeError::DiskFull {
                requested,
                largest_free,
            } => write!(
                f,
                "the disk is full: no free space for {}; the largest free space is {}",
                s(*requested),
                s(*largest_free)
            ),
            VolumeError::TooManyVolumes => {
                write!(f, "the disk holds {MAX_ENTRIES} partitions already")
            }
        }
    }
}

impl<E> From<DiskError<E>> for VolumeError<E>
where
    E: fmt::Debug + fmt::Display,
{
    fn from(e: DiskError<E>) -> Self {
        match e {
            DiskError::Io(e) => VolumeError::Io(e),
            // Our layout is fixed and checked, so these mean a header
            // that is not ours.
            _ => VolumeError::Foreign,
        }
    }
}

type Result<T, Io> = core::result::Result<T, VolumeError<<Io as BlockIo>::Error>>;

/// dom0's partition table, as last read or written.
#[derive(Clone, Debug)]
pub struct Table {
    /// The disk's size in sectors.
    sectors: u64,
    disk_guid: Guid,
    /// The entry array, [`MAX_ENTRIES`] entries of [`ENTRY_BYTES`].
    array: Vec<u8>,
    /// State of the generator for new GUIDs.
    seed: u64,
}

impl Table {
    /// Reads the disk's GPT, repairing one damaged copy from the other;
    /// initialises a blank disk. `entropy` seeds the GUIDs of a new
    /// table and of new volumes (any value that differs between boots).
    pub fn open<Io: BlockIo>(mut io: Io, entropy: u64) -> Result<(Table, Opened), Io> {
        let bytes = io.block_size().to_u64();
        if bytes != SECTOR_BYTES {
            return Err(VolumeError::BlockSize { bytes });
        }
        let sectors = io.num_blocks().map_err(VolumeError::Io)?;
        if sectors < MIN_DISK_SECTORS {
            return Err(VolumeError::DiskTooSmall { sectors });
        }
        let mut disk = Disk::new(io)?;
        let primary = read_copy(&mut disk, sectors, true)?;
        let backup = read_copy(&mut disk, sectors, false)?;
        let mut seed = entropy;
        let (table, opened) = match (primary, backup) {
            (Some(p), Some(b)) if p == b => (Table::from_copy(sectors, p, seed), Opened::Found),
            (Some(p), _) => (Table::from_copy(sectors, p, seed), Opened::RepairedBackup),
            (None, Some(b)) => (Table::from_copy(sectors, b, seed), Opened::RepairedPrimary),
            (None, None) if is_blank(&mut disk)? => {
                let disk_guid = next_guid(&mut seed);
                let table = Table {
                    sectors,
                    disk_guid,
                    array: vec![0; ARRAY_BYTES],
                    seed,
                };
                let mut block = [0u8; BLOCK];
                disk.write_protective_mbr(&mut block)?;
                (table, Opened::Initialised)
            }
            (None, None) => return Err(VolumeError::Foreign),
        };
        table.check_entries()?;
        if opened != Opened::Found {
            table.write_copies(&mut disk)?;
        }
        Ok((table, opened))
    }

    fn from_copy(sectors: u64, (disk_guid, array): (Guid, Vec<u8>), seed: u64) -> Table {
        Table {
            sectors,
            disk_guid,
            array,
            seed,
        }
    }

    /// The disk's GUID.
    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    /// The disk's size in sectors.
    pub fn disk_sectors(&self) -> u64 {
        self.sectors
    }

    /// The volumes, in disk order.
    pub fn list(&self) -> Vec<Volume> {
        let mut volumes: Vec<Volume> = self.entries().filter_map(|(_, e)| volume(&e)).collect();
        volumes.sort_by_key(|v| v.first_lba);
        volumes
    }

    /// The volume named `name`.
    pub fn get(&self, name: &str) -> Option<Volume> {
        self.entries()
            .filter_map(|(_, e)| volume(&e))
            .find(|v| v.name == name)
    }

    /// The largest volume (bytes) that fits now.
    pub fn largest_free_bytes(&self) -> u64 {
        largest_free(&self.used(), FIRST_USABLE, self.last_usable()) * SECTOR_BYTES
    }

    /// Creates a volume of `bytes` rounded up to whole MiB, in the first
    /// free space that holds it; its sectors are zeroed first (a new
    /// volume never shows a deleted one's data), then the table is
    /// written and flushed.
    pub fn create<Io: BlockIo>(
        &mut self,
        mut io: Io,
        name: &str,
        bytes: u64,
    ) -> Result<Volume, Io> {
        check_name(name).map_err(VolumeError::BadName)?;
        if bytes == 0 {
            return Err(VolumeError::BadSize);
        }
        if self.get(name).is_some() {
            return Err(VolumeError::NameTaken {
                name: name.to_string(),
            });
        }
        let max = largest_free(&[], FIRST_USABLE, self.last_usable());
        let too_large = VolumeError::TooLarge {
            requested: bytes,
            max: max * SECTOR_BYTES,
        };
        let Some(sectors) = bytes
            .div_ceil(SECTOR_BYTES)
            .checked_next_multiple_of(ALIGN_SECTORS)
            .filter(|&s| s <= max)
        else {
            return Err(too_large);
        };
        let first_lba = first_fit(&self.used(), FIRST_USABLE, self.last_usable(), sectors).ok_or(
            VolumeError::DiskFull {
                requested: bytes,
                largest_free: self.largest_free_bytes(),
            },
        )?;
        let slot = self
            .entries()
            .find(|(_, e)| !e.is_used())
            .map(|(i, _)| i)
            .ok_or(VolumeError::TooManyVolumes)?;
        zero(&mut io, first_lba, sectors)?;
        let entry = GptPartitionEntry {
            partition_type_guid: GptPartitionType(VOLUME_TYPE),
            unique_partition_guid: next_guid(&mut self.seed),
            starting_lba: LbaLe::from_u64(first_lba),
            ending_lba: LbaLe::from_u64(first_lba + sectors - 1),
            attributes: GptPartitionAttributes::default(),
            name: name.parse::<GptPartitionName>().map_err(|_| {
                VolumeError::BadName(NameError::TooLong {
                    len: name.chars().count(),
                })
            })?,
        };
        let created = volume(&entry).ok_or(VolumeError::Corrupt { why: "new entry" })?;
        self.change(io, slot, entry)?;
        Ok(created)
    }

    /// Deletes the volume named `name` (its entry is cleared; its data
    /// stays until a new volume is created over it, which zeroes it).
    pub fn delete<Io: BlockIo>(&mut self, io: Io, name: &str) -> Result<Volume, Io> {
        let (slot, gone) = self
            .entries()
            .find_map(|(i, e)| volume(&e).filter(|v| v.name == name).map(|v| (i, v)))
            .ok_or_else(|| VolumeError::NotFound {
                name: name.to_string(),
            })?;
        self.change(io, slot, GptPartitionEntry::default())?;
        Ok(gone)
    }

    /// Puts `entry` in `slot` and writes both copies; on failure the
    /// table in memory stays as it was.
    fn change<Io: BlockIo>(
        &mut self,
        io: Io,
        slot: u32,
        entry: GptPartitionEntry,
    ) -> Result<(), Io> {
        let before = self.array.clone();
        if let Some(e) = self.view().get_partition_entry_mut(slot) {
            *e = entry;
        }
        let written = Disk::new(io)
            .map_err(VolumeError::from)
            .and_then(|mut disk| self.write_copies(&mut disk));
        if written.is_err() {
            self.array = before;
        }
        written
    }

    /// Writes the backup array and header, then the primary ones, then
    /// flushes: a crash in between leaves a valid copy for `open`.
    fn write_copies<Io: BlockIo>(&self, disk: &mut Disk<Io>) -> Result<(), Io> {
        let mut array = self.array.clone();
        let mut view = array_view(&mut array, self.backup_array_lba());
        let crc = view.calculate_crc32();
        let mut block = [0u8; BLOCK];
        disk.write_gpt_partition_entry_array(&view)?;
        disk.write_gpt_header(Lba(self.sectors - 1), &self.header(false, crc), &mut block)?;
        view.set_start_lba(Lba(PRIMARY_ARRAY_LBA));
        disk.write_gpt_partition_entry_array(&view)?;
        disk.write_gpt_header(Lba(1), &self.header(true, crc), &mut block)?;
        disk.flush()?;
        Ok(())
    }

    fn header(&self, primary: bool, array_crc: Crc32) -> GptHeader {
        let last = self.sectors - 1;
        let (my, alternate, array) = if primary {
            (1, last, PRIMARY_ARRAY_LBA)
        } else {
            (last, 1, self.backup_array_lba())
        };
        let mut header = GptHeader {
            my_lba: LbaLe::from_u64(my),
            alternate_lba: LbaLe::from_u64(alternate),
            first_usable_lba: LbaLe::from_u64(FIRST_USABLE),
            last_usable_lba: LbaLe::from_u64(self.last_usable()),
            disk_guid: self.disk_guid,
            partition_entry_lba: LbaLe::from_u64(array),
            number_of_partition_entries: U32Le::from_u32(MAX_ENTRIES),
            size_of_partition_entry: U32Le::from_u32(ENTRY_BYTES),
            partition_entry_array_crc32: array_crc,
            ..GptHeader::default()
        };
        header.update_header_crc32();
        header
    }

    fn backup_array_lba(&self) -> u64 {
        backup_array_lba(self.sectors)
    }

    fn last_usable(&self) -> u64 {
        self.backup_array_lba() - 1
    }

    fn view(&mut self) -> GptPartitionEntryArray<'_> {
        array_view(&mut self.array, PRIMARY_ARRAY_LBA)
    }

    /// Every entry with its slot.
    fn entries(&self) -> impl Iterator<Item = (u32, GptPartitionEntry)> + '_ {
        let mut array = self.array.clone();
        let view = array_view(&mut array, PRIMARY_ARRAY_LBA);
        let entries: Vec<(u32, GptPartitionEntry)> = (0..MAX_ENTRIES)
            .filter_map(|i| view.get_partition_entry(i).map(|e| (i, *e)))
            .collect();
        entries.into_iter()
    }

    /// The LBA ranges of every used entry (ours or not).
    fn used(&self) -> Vec<(u64, u64)> {
        self.entries()
            .filter(|(_, e)| e.is_used())
            .map(|(_, e)| (e.starting_lba.to_u64(), e.ending_lba.to_u64()))
            .collect()
    }

    /// Every used entry within the usable LBAs, none overlapping, our
    /// volumes' names valid and unique.
    fn check_entries<E>(&self) -> core::result::Result<(), VolumeError<E>> {
        let mut used = self.used();
        used.sort_unstable();
        let corrupt = |why| Err(VolumeError::Corrupt { why });
        if used
            .iter()
            .any(|&(s, e)| s > e || s < FIRST_USABLE || e > self.last_usable())
        {
            return corrupt("a partition lies outside the usable sectors");
        }
        if used.windows(2).any(|w| w[0].1 >= w[1].0) {
            return corrupt("two partitions overlap");
        }
        let ours: Vec<GptPartitionEntry> = self
            .entries()
            .map(|(_, e)| e)
            .filter(|e| e.is_used() && { e.partition_type_guid } == GptPartitionType(VOLUME_TYPE))
            .collect();
        let mut names: Vec<String> = Vec::with_capacity(ours.len());
        for e in &ours {
            match volume(e) {
                Some(v) if !names.contains(&v.name) => names.push(v.name),
                Some(_) => return corrupt("two volumes share a name"),
                None => return corrupt("a volume has a bad name"),
            }
        }
        Ok(())
    }
}

/// The backup array sits just before the backup header in the last LBA.
fn backup_array_lba(sectors: u64) -> u64 {
    sectors - 1 - ARRAY_SECTORS
}

fn layout(start: u64) -> GptPartitionEntryArrayLayout {
    GptPartitionEntryArrayLayout {
        start_lba: Lba(start),
        entry_size: GptPartitionEntrySize::new(ENTRY_BYTES).unwrap_or_default(),
        num_entries: MAX_ENTRIES,
    }
}

fn array_view(storage: &mut [u8], start: u64) -> GptPartitionEntryArray<'_> {
    // ARRAY_BYTES of storage always holds the fixed layout.
    GptPartitionEntryArray::new(layout(start), BlockSize::BS_512, storage)
        .expect("the array storage holds MAX_ENTRIES entries")
}

/// The volume an entry is, if it is one of ours with a valid name.
fn volume(e: &GptPartitionEntry) -> Option<Volume> {
    if !e.is_used() || { e.partition_type_guid } != GptPartitionType(VOLUME_TYPE) {
        return None;
    }
    let name: String = e.name.chars().collect();
    check_name(&name).ok()?;
    let (first, last) = (e.starting_lba.to_u64(), e.ending_lba.to_u64());
    Some(Volume {
        name,
        first_lba: first,
        sectors: last.checked_sub(first)?.checked_add(1)?,
        guid: e.unique_partition_guid,
    })
}

/// One copy of the GPT (disk GUID and entry array) if its header and
/// array are valid and laid out as ours.
fn read_copy<Io: BlockIo>(
    disk: &mut Disk<Io>,
    sectors: u64,
    primary: bool,
) -> Result<Option<(Guid, Vec<u8>)>, Io> {
    let last = sectors - 1;
    let (my, alternate, array_lba) = if primary {
        (1, last, PRIMARY_ARRAY_LBA)
    } else {
        (last, 1, backup_array_lba(sectors))
    };
    let mut block = [0u8; BLOCK];
    let h = disk.read_gpt_header(Lba(my), &mut block)?;
    let ours = h.is_signature_valid()
        && h.header_size.to_u32() == 92
        && h.header_crc32 == h.calculate_header_crc32()
        && h.my_lba.to_u64() == my
        && h.alternate_lba.to_u64() == alternate
        && h.first_usable_lba.to_u64() == FIRST_USABLE
        && h.last_usable_lba.to_u64() == backup_array_lba(sectors) - 1
        && h.partition_entry_lba.to_u64() == array_lba
        && h.number_of_partition_entries.to_u32() == MAX_ENTRIES
        && h.size_of_partition_entry.to_u32() == ENTRY_BYTES;
    if !ours {
        return Ok(None);
    }
    let mut storage = vec![0u8; ARRAY_BYTES];
    let array = disk.read_gpt_partition_entry_array(layout(array_lba), &mut storage)?;
    if array.calculate_crc32() != h.partition_entry_array_crc32 {
        return Ok(None);
    }
    Ok(Some((h.disk_guid, storage)))
}

/// A blank disk: LBAs 0 and 1 (MBR and primary header) all zero.
fn is_blank<Io: BlockIo>(disk: &mut Disk<Io>) -> Result<bool, Io> {
    let mut block = [0u8; BLOCK];
    for lba in [0, 1] {
        // A header read returns the block's bytes in `block` too.
        disk.read_gpt_header(Lba(lba), &mut block)?;
        if block.iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes zeroes over `sectors` from `first`.
fn zero<Io: BlockIo>(io: &mut Io, first: u64, sectors: u64) -> Result<(), Io> {
    let zeroes = vec![0u8; ZERO_CHUNK_BYTES];
    let chunk = ZERO_CHUNK_BYTES as u64 / SECTOR_BYTES;
    let mut lba = first;
    while lba < first + sectors {
        let n = chunk.min(first + sectors - lba);
        let len = usize::try_from(n * SECTOR_BYTES).unwrap_or(ZERO_CHUNK_BYTES);
        io.write_blocks(Lba(lba), &zeroes[..len])
            .map_err(VolumeError::Io)?;
        lba += n;
    }
    Ok(())
}

/// A random-looking (version 4) GUID from splitmix64 of the seed.
fn next_guid(seed: &mut u64) -> Guid {
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_exact_mut(8) {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Guid::from_random_bytes(bytes)
}
