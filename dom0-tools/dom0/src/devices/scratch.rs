//! The disk's boot check: a read-after-write of one scratch sector that
//! leaves the sector as it found it.
//!
//! The scratch sector is the disk's last one ([`scratch_sector`]). Storage
//! built on this disk later (the block backend's images) starts at sector
//! 0 and must stop before it, so the check never touches data: the last
//! sector is the one place a layout growing from the start reaches last,
//! and a disk too small to spare it is refused.

use core::fmt;

/// Bytes per sector: virtio-blk counts capacity in 512-byte sectors
/// whatever the medium's block size (virtio 1.2 §5.2.4).
pub const SECTOR_BYTES: usize = 512;

/// Sector-granular access to a disk.
pub trait SectorIo {
    type Error: fmt::Display;
    /// Reads sector `sector` into `buf`.
    fn read_sector(&mut self, sector: u64, buf: &mut [u8; SECTOR_BYTES])
        -> Result<(), Self::Error>;
    /// Writes `buf` to sector `sector`.
    fn write_sector(&mut self, sector: u64, buf: &[u8; SECTOR_BYTES]) -> Result<(), Self::Error>;
}

/// Why the check failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ScratchError<E> {
    /// The disk has no sector to spare (capacity 0 or 1).
    TooSmall { sectors: u64 },
    /// A request failed.
    Io { step: Step, error: E },
    /// What was read back differs from what was written, first at
    /// `offset`.
    Mismatch { step: Step, offset: usize },
}

/// The steps of the check, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ReadOriginal,
    WritePattern,
    ReadPattern,
    Restore,
    ReadRestored,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Step::ReadOriginal => "reading the original",
            Step::WritePattern => "writing the pattern",
            Step::ReadPattern => "reading the pattern back",
            Step::Restore => "restoring the original",
            Step::ReadRestored => "reading the restored original back",
        })
    }
}

impl<E: fmt::Display> fmt::Display for ScratchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ScratchError::TooSmall { sectors } => {
                write!(f, "{sectors} sectors: no sector to spare for the check")
            }
            ScratchError::Io { step, error } => write!(f, "{step}: {error}"),
            ScratchError::Mismatch { step, offset } => {
                write!(f, "{step}: differs at byte {offset}")
            }
        }
    }
}

/// The scratch sector of a disk of `sectors` sectors: the last one, if the
/// disk has a sector before it for data.
pub fn scratch_sector(sectors: u64) -> Option<u64> {
    (sectors >= 2).then(|| sectors - 1)
}

/// Reads the scratch sector, writes a pattern that differs from it in
/// every byte, reads the pattern back, writes the original back and reads
/// that back. Returns the sector checked.
pub fn read_after_write<D: SectorIo>(
    disk: &mut D,
    sectors: u64,
) -> Result<u64, ScratchError<D::Error>> {
    let sector = scratch_sector(sectors).ok_or(ScratchError::TooSmall { sectors })?;
    let mut original = [0u8; SECTOR_BYTES];
    io(Step::ReadOriginal, disk.read_sector(sector, &mut original))?;
    let pattern = pattern_unlike(&original, sector);
    io(Step::WritePattern, disk.write_sector(sector, &pattern))?;
    expect(disk, sector, &pattern, Step::ReadPattern)?;
    io(Step::Restore, disk.write_sector(sector, &original))?;
    expect(disk, sector, &original, Step::ReadRestored)?;
    Ok(sector)
}

fn io<E>(step: Step, result: Result<(), E>) -> Result<(), ScratchError<E>> {
    result.map_err(|error| ScratchError::Io { step, error })
}

fn expect<D: SectorIo>(
    disk: &mut D,
    sector: u64,
    want: &[u8; SECTOR_BYTES],
    step: Step,
) -> Result<(), ScratchError<D::Error>> {
    let mut got = [0u8; SECTOR_BYTES];
    io(step, disk.read_sector(sector, &mut got))?;
    match got.iter().zip(want).position(|(g, w)| g != w) {
        Some(offset) => Err(ScratchError::Mismatch { step, offset }),
        None => Ok(()),
    }
}

/// A pattern that varies along the sector (a stuck or shifted byte shows)
/// and differs from `original` in every byte (so a dropped write shows).
fn pattern_unlike(original: &[u8; SECTOR_BYTES], sector: u64) -> [u8; SECTOR_BYTES] {
    let seed = sector.to_le_bytes()[0];
    let mut pattern = [0u8; SECTOR_BYTES];
    for (i, (p, o)) in pattern.iter_mut().zip(original).enumerate() {
        let candidate = (i.to_le_bytes()[0] ^ seed).wrapping_mul(31).wrapping_add(7);
        *p = if candidate == *o {
            !candidate
        } else {
            candidate
        };
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A disk in memory, with faults to inject.
    struct Disk {
        sectors: Vec<[u8; SECTOR_BYTES]>,
        drop_writes: bool,
        flip_on_read: Option<usize>,
        fail_write: Option<usize>,
        writes: usize,
    }

    impl Disk {
        fn new(count: usize, fill: u8) -> Self {
            Disk {
                sectors: vec![[fill; SECTOR_BYTES]; count],
                drop_writes: false,
                flip_on_read: None,
                fail_write: None,
                writes: 0,
            }
        }
    }

    impl SectorIo for Disk {
        type Error = &'static str;
        fn read_sector(
            &mut self,
            s: u64,
            buf: &mut [u8; SECTOR_BYTES],
        ) -> Result<(), &'static str> {
            *buf = self.sectors[usize::try_from(s).unwrap()];
            if let Some(offset) = self.flip_on_read {
                buf[offset] ^= 1;
            }
            Ok(())
        }
        fn write_sector(&mut self, s: u64, buf: &[u8; SECTOR_BYTES]) -> Result<(), &'static str> {
            self.writes += 1;
            if self.fail_write == Some(self.writes) {
                return Err("I/O error");
            }
            if !self.drop_writes {
                self.sectors[usize::try_from(s).unwrap()] = *buf;
            }
            Ok(())
        }
    }

    #[test]
    fn a_good_disk_passes_on_its_last_sector_and_keeps_its_content() {
        let mut disk = Disk::new(8, 0);
        disk.sectors[7][3] = 0x5a;
        let before = disk.sectors.clone();
        assert_eq!(read_after_write(&mut disk, 8), Ok(7));
        assert_eq!(disk.sectors, before);
        assert_eq!(disk.writes, 2);
    }

    #[test]
    fn a_disk_that_drops_writes_fails() {
        let mut disk = Disk::new(4, 0);
        disk.drop_writes = true;
        let error = read_after_write(&mut disk, 4).unwrap_err();
        assert_eq!(
            error,
            ScratchError::Mismatch {
                step: Step::ReadPattern,
                offset: 0
            }
        );
        assert_eq!(
            error.to_string(),
            "reading the pattern back: differs at byte 0"
        );
    }

    #[test]
    fn a_corrupting_disk_fails_at_the_byte() {
        let mut disk = Disk::new(4, 0xff);
        disk.flip_on_read = Some(100);
        // The flip also hits the original read; the check still sees it
        // when the pattern comes back.
        assert_eq!(
            read_after_write(&mut disk, 4),
            Err(ScratchError::Mismatch {
                step: Step::ReadPattern,
                offset: 100
            })
        );
    }

    #[test]
    fn a_failed_restore_is_reported() {
        let mut disk = Disk::new(4, 0);
        disk.fail_write = Some(2);
        assert_eq!(
            read_after_write(&mut disk, 4),
            Err(ScratchError::Io {
                step: Step::Restore,
                error: "I/O error"
            })
        );
    }

    #[test]
    fn a_disk_without_a_spare_sector_is_refused() {
        let mut disk = Disk::new(1, 0);
        assert_eq!(
            read_after_write(&mut disk, 1),
            Err(ScratchError::TooSmall { sectors: 1 })
        );
        assert_eq!(disk.writes, 0);
        assert_eq!(scratch_sector(0), None);
        assert_eq!(scratch_sector(131_072), Some(131_071));
    }

    proptest! {
        #[test]
        fn the_pattern_differs_from_any_original_in_every_byte(
            original in proptest::collection::vec(any::<u8>(), SECTOR_BYTES),
            sector in any::<u64>(),
        ) {
            let original: [u8; SECTOR_BYTES] = original.try_into().unwrap();
            let pattern = pattern_unlike(&original, sector);
            prop_assert!(pattern.iter().zip(&original).all(|(p, o)| p != o));
        }
    }
}
