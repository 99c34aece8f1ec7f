//! Sector-range checks for dom0's disk: every request is validated
//! against the disk's capacity before it reaches the driver, so a bad
//! LBA or length is an error, never a driver panic or a request past the
//! end.

use core::fmt;

/// Bytes per sector: virtio-blk counts capacity in 512-byte sectors
/// whatever the medium's block size (virtio 1.2 §5.2.4).
pub const SECTOR_BYTES: usize = 512;

/// Why a disk request was refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The buffer is empty or not a multiple of [`SECTOR_BYTES`].
    BadLength { bytes: usize },
    /// The range `lba`..`lba + sectors` does not lie within the disk's
    /// `capacity` sectors.
    OutOfRange {
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
    /// The device refuses writes (VIRTIO_BLK_F_RO).
    #[allow(dead_code)] // made by `write_blocks`, used from issue 12 on
    ReadOnly,
    /// The device failed the request.
    Io,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DiskError::BadLength { bytes } => {
                write!(
                    f,
                    "{bytes} bytes is not a non-zero multiple of {SECTOR_BYTES}"
                )
            }
            DiskError::OutOfRange {
                lba,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {lba}+{sectors} lie beyond the disk's {capacity} sectors"
            ),
            DiskError::ReadOnly => f.write_str("the disk is read-only"),
            DiskError::Io => f.write_str("the device failed the request"),
        }
    }
}

/// Checks a request of `bytes` at `lba` on a disk of `capacity` sectors;
/// returns its length in sectors.
pub fn check_range(lba: u64, bytes: usize, capacity: u64) -> Result<u64, DiskError> {
    if bytes == 0 || !bytes.is_multiple_of(SECTOR_BYTES) {
        return Err(DiskError::BadLength { bytes });
    }
    let sectors = (bytes / SECTOR_BYTES) as u64;
    match lba.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(sectors),
        _ => Err(DiskError::OutOfRange {
            lba,
            sectors,
            capacity,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_must_be_whole_sectors() {
        assert_eq!(check_range(0, 0, 8), Err(DiskError::BadLength { bytes: 0 }));
        assert_eq!(
            check_range(0, 511, 8),
            Err(DiskError::BadLength { bytes: 511 })
        );
        assert_eq!(check_range(0, 1024, 8), Ok(2));
    }

    #[test]
    fn the_last_sector_is_in_range_and_the_next_is_not() {
        assert_eq!(check_range(7, 512, 8), Ok(1));
        assert_eq!(
            check_range(7, 1024, 8),
            Err(DiskError::OutOfRange {
                lba: 7,
                sectors: 2,
                capacity: 8
            })
        );
        assert!(check_range(u64::MAX, 512, u64::MAX).is_err());
    }

    proptest! {
        #[test]
        fn an_accepted_range_lies_within_the_disk(
            lba in any::<u64>(), sectors in 0usize..4096, capacity in any::<u64>()
        ) {
            if let Ok(n) = check_range(lba, sectors * SECTOR_BYTES, capacity) {
                prop_assert_eq!(n, sectors as u64);
                prop_assert!(n > 0 && lba.checked_add(n).is_some_and(|end| end <= capacity));
            }
        }
    }
}
