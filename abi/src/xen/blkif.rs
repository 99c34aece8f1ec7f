//! The block split driver's wire format, `xen/include/public/io/blkif.h`
//! (x86_64 native layout, the frontend's `protocol` = `x86_64-abi`), and
//! the virtual-device numbers of Xen's `docs/man/xen-vbd-interface.7`.
//!
//! One ring page holds [`BLKIF_RING_SIZE`] slots of the union of
//! [`BlkifRequest`] (112 bytes) and [`BlkifResponse`] (16 bytes). A read
//! or write request names up to [`BLKIF_MAX_SEGMENTS_PER_REQUEST`]
//! granted pages; each segment transfers sectors `first_sect..=last_sect`
//! (512-byte units, at most 7: a 4 KiB page) of its page, and the
//! segments follow each other on the disk from `sector_number`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::grant_table::GrantRef;

/// `blkif_vdev_t`: the device's handle in requests.
pub type BlkifVdev = u16;
/// `blkif_sector_t`: a 512-byte sector number.
pub type BlkifSector = u64;

/// `BLKIF_OP_READ`: read sectors into the segments' pages.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`: write the segments' pages to sectors.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER` (`feature-barrier`; not served).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE`: make completed writes durable
/// (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_RESERVED_1` (SLES).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// `BLKIF_OP_DISCARD` (`feature-discard`; not served).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT` (`feature-max-indirect-segments`; not served).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in one direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;

/// Bytes of the unit `sector_number`, `first_sect` and `last_sect` count
/// in, whatever `sector-size` says.
pub const BLKIF_SECTOR_BYTES: usize = 512;
/// Sectors in one segment's page (`last_sect` is at most this minus 1).
pub const BLKIF_SECTORS_PER_PAGE: u8 = 8;
const _: () = assert!(BLKIF_SECTORS_PER_PAGE as usize * BLKIF_SECTOR_BYTES == super::PAGE_SIZE);

/// `BLKIF_RSP_EOPNOTSUPP`: the operation is not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// `BLKIF_RSP_ERROR`: the request failed (bad request or I/O error).
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_OKAY`: the request completed.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `VDISK_CDROM` bit of the backend's `info` node.
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE` bit of `info`.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY` bit of `info`.
pub const VDISK_READONLY: u32 = 0x4;

/// `XEN_IO_PROTO_ABI_X86_64` (`io/protocols.h`): the frontend's
/// `protocol` value for this layout (also the default when absent).
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";

/// `struct blkif_request_segment`, 8 bytes (2 of tail padding).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestSegment {
    /// Grant reference of the I/O page.
    pub gref: GrantRef,
    /// First sector of the page to transfer (inclusive, 0..=7).
    pub first_sect: u8,
    /// Last sector of the page to transfer (inclusive, `first_sect..=7`).
    pub last_sect: u8,
    /// Implicit C tail padding.
    pub pad: u16,
}

/// `struct blkif_request`, 112 bytes on x86_64.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Segments used (read/write: 1..=11).
    pub nr_segments: u8,
    /// The device's handle (read/write only).
    pub handle: BlkifVdev,
    /// Implicit C padding before the 8-byte aligned `id`.
    pub pad: u32,
    /// The guest's own value, echoed in the response.
    pub id: u64,
    /// First 512-byte sector on the device (read/write only).
    pub sector_number: BlkifSector,
    /// The I/O pages.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_discard`, 32 bytes: the request slot seen
/// through this when `operation` is `BLKIF_OP_DISCARD`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    /// The device's handle.
    pub handle: BlkifVdev,
    /// Implicit C padding.
    pub pad: u32,
    /// The guest's own value, echoed in the response.
    pub id: u64,
    /// First sector to discard.
    pub sector_number: BlkifSector,
    /// Sectors to discard.
    pub nr_sectors: u64,
}

/// `struct blkif_response`, 16 bytes on x86_64.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// Implicit C padding before `status`.
    pub pad0: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub pad1: u32,
}

/// Slots of a one-page blkif ring: `__CONST_RING_SIZE(blkif, 4096)` =
/// (4096 − 64) / 112 = 36, rounded down to a power of two.
pub const BLKIF_RING_SIZE: u32 = 32;

/// Why a virtual-device name has no number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdevError {
    /// Not `xvd*`, `sd*`, `hd*`, `dNpM` or a number.
    Unknown,
    /// The disk or partition is past what its encoding holds.
    OutOfRange,
}

/// The xenstore `virtual-device` number of a disk name, per
/// `xen-vbd-interface.7` ("Concrete encoding"): `xvda` → 51712
/// (202 << 8), `xvdb2` → 51730, `xvdq` (disk 16) → 1 << 28 | 16 << 8,
/// `sdb3` → 2067, `hda` → 768, `hdc` → 5632, `d1p2` like `xvdb2`; a
/// plain decimal number is taken as it is (the legacy form).
pub fn vdev_number(name: &str) -> Result<u32, VdevError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().map_err(|_| VdevError::OutOfRange);
    }
    let (kind, disk, part) = parse_vdev(name)?;
    encode_vdev(kind, disk, part)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum VdevKind {
    Xvd,
    Sd,
    Hd,
}

/// Splits `xvdb2`/`sdb3`/`hdc2`/`d1p2` into kind, disk and partition.
fn parse_vdev(name: &str) -> Result<(VdevKind, u32, u32), VdevError> {
    if let Some(rest) = name.strip_prefix('d') {
        let (disk, part) = rest.split_once('p').unwrap_or((rest, "0"));
        return Ok((VdevKind::Xvd, decimal(disk)?, decimal(part)?));
    }
    let (kind, rest) = if let Some(rest) = name.strip_prefix("xvd") {
        (VdevKind::Xvd, rest)
    } else if let Some(rest) = name.strip_prefix("sd") {
        (VdevKind::Sd, rest)
    } else if let Some(rest) = name.strip_prefix("hd") {
        (VdevKind::Hd, rest)
    } else {
        return Err(VdevError::Unknown);
    };
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let (letters, digits) = rest.split_at(letters);
    let disk = disk_from_letters(letters)?;
    let part = if digits.is_empty() {
        0
    } else {
        decimal(digits)?
    };
    Ok((kind, disk, part))
}

/// A decimal without sign or leading `+` (and without a leading 0 unless 0).
fn decimal(s: &str) -> Result<u32, VdevError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(VdevError::Unknown);
    }
    s.parse().map_err(|_| VdevError::OutOfRange)
}

/// Bijective base 26: `a` = 0, `z` = 25, `aa` = 26, `tq` = 536.
fn disk_from_letters(letters: &str) -> Result<u32, VdevError> {
    if letters.is_empty() {
        return Err(VdevError::Unknown);
    }
    let mut n: u32 = 0;
    for b in letters.bytes() {
        n = n
            .checked_mul(26)
            .and_then(|n| n.checked_add(u32::from(b - b'a') + 1))
            .ok_or(VdevError::OutOfRange)?;
    }
    Ok(n - 1)
}

fn encode_vdev(kind: VdevKind, disk: u32, part: u32) -> Result<u32, VdevError> {
    match kind {
        VdevKind::Xvd if disk < 16 && part < 16 => Ok(202 << 8 | disk << 4 | part),
        VdevKind::Xvd if disk < 1 << 20 && part < 256 => Ok(1 << 28 | disk << 8 | part),
        VdevKind::Sd if disk < 16 && part < 16 => Ok(8 << 8 | disk << 4 | part),
        VdevKind::Hd if disk < 2 && part < 64 => Ok(3 << 8 | disk << 6 | part),
        VdevKind::Hd if disk < 4 && part < 64 => Ok(22 << 8 | (disk - 2) << 6 | part),
        _ => Err(VdevError::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::ring::ring_size;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_blkif_h_on_x86_64() {
        assert_eq!(size_of::<BlkifRequestSegment>(), 8);
        assert_eq!(offset_of!(BlkifRequestSegment, first_sect), 4);
        assert_eq!(offset_of!(BlkifRequestSegment, last_sect), 5);
        assert_eq!(size_of::<BlkifRequest>(), 112);
        assert_eq!(offset_of!(BlkifRequest, nr_segments), 1);
        assert_eq!(offset_of!(BlkifRequest, handle), 2);
        assert_eq!(offset_of!(BlkifRequest, id), 8);
        assert_eq!(offset_of!(BlkifRequest, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequest, seg), 24);
        assert_eq!(size_of::<BlkifRequestDiscard>(), 32);
        assert_eq!(offset_of!(BlkifRequestDiscard, nr_sectors), 24);
        assert_eq!(size_of::<BlkifResponse>(), 16);
        assert_eq!(offset_of!(BlkifResponse, operation), 8);
        assert_eq!(offset_of!(BlkifResponse, status), 10);
        assert_eq!(ring_size(crate::xen::PAGE_SIZE, 112), BLKIF_RING_SIZE);
        assert_eq!(BLKIF_SECTORS_PER_PAGE, 8);
    }

    #[test]
    fn vdev_numbers_follow_the_vbd_interface_doc() {
        let cases = [
            ("xvda", 51712),
            ("xvdb", 51728),
            ("xvdb2", 51730),
            ("xvdp15", 202 << 8 | 15 << 4 | 15),
            ("xvdq", 1 << 28 | 16 << 8),
            ("xvdb16", 1 << 28 | 1 << 8 | 16),
            ("xvdtq37", 1 << 28 | 536 << 8 | 37),
            ("d536p37", 1 << 28 | 536 << 8 | 37),
            ("d0", 51712),
            ("d0p0", 51712),
            ("d1p2", 51730),
            ("sda", 2048),
            ("sdb3", 2067),
            ("hda", 768),
            ("hdb1", 833),
            ("hdc2", 5634),
            ("hdd", 5696),
            ("51712", 51712),
        ];
        for (name, number) in cases {
            assert_eq!(vdev_number(name), Ok(number), "{name}");
        }
    }

    #[test]
    fn bad_vdev_names_are_refused() {
        for name in [
            "", "xvd", "xvdA", "vda", "xvda-1", "xvda01", "dp1", "d1p", "xvd1",
        ] {
            assert_eq!(vdev_number(name), Err(VdevError::Unknown), "{name}");
        }
        for name in ["sdq", "sda16", "hde", "hda64", "xvda256", "99999999999"] {
            assert_eq!(vdev_number(name), Err(VdevError::OutOfRange), "{name}");
        }
    }
}
