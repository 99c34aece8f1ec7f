//! The backend's request engine, portable and host-tested: checks each
//! `blkif_request` of a batch against the device it came for, moves its
//! data between the frontend's granted pages and the disk, and gives the
//! `BLKIF_RSP_*` status. Linux's xen-blkback (`dispatch_rw_block_io`,
//! `xen_vbd_translate`) refuses the same requests.
//!
//! Reads or writes of a batch that follow each other on the disk are
//! merged into one disk I/O of up to [`BOUNCE_BYTES`] (as Linux's block
//! layer merges blkback's bios): a sequential 64 KiB I/O, which blkif
//! carries as two requests (44 + 20 KiB), costs dom0 one disk request,
//! as it would cost dom0 itself. Requests are still served in ring order
//! (a group runs before anything that does not join it, and before a
//! flush), so the outcome is that of serving them one by one.
//!
//! The two sides are traits: [`BlockIo`] (the disk, in 512-byte sectors)
//! and [`GrantIo`] (grant copies between the frontend's pages and a
//! bounce buffer of dom0's), so that the engine never maps a guest page
//! and runs against model disks and grant tables in the tests.

use abi::xen::blkif::{
    BlkifRequest, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ,
    BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SECTORS_PER_PAGE,
    BLKIF_SECTOR_BYTES,
};
use abi::xen::grant_table::GrantRef;

use super::VolumeExtent;

/// Bytes of the bounce buffer: the largest merged disk I/O (256 KiB,
/// over five full requests of 11 pages).
pub const BOUNCE_BYTES: usize = 64 * abi::xen::PAGE_SIZE;
/// [`BLKIF_SECTOR_BYTES`] as the `u16` of segment offsets and lengths.
const SECTOR_BYTES: u16 = 512;
const _: () = assert!(SECTOR_BYTES as usize == BLKIF_SECTOR_BYTES);

/// Requests one batch holds at most (a ring's worth).
pub const BATCH_MAX: usize = abi::xen::blkif::BLKIF_RING_SIZE as usize;

/// The disk, in 512-byte sectors; lengths are whole sectors.
pub trait BlockIo {
    /// Reads `buf.len() / 512` sectors from `lba`.
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ()>;
    /// Writes `buf.len() / 512` sectors at `lba`.
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), ()>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> Result<(), ()>;
}

/// One segment's bytes: `len` bytes at byte `page_offset` of the page
/// `gref` grants, and at byte `buf_offset` of the bounce buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCopy {
    /// The frontend's grant reference.
    pub gref: GrantRef,
    /// Offset in the granted page (`first_sect * 512`).
    pub page_offset: u16,
    /// Offset in the bounce buffer.
    pub buf_offset: usize,
    /// Bytes (a multiple of 512, at most a page).
    pub len: u16,
}

/// Grant copies of the frontend's pages (`GNTTABOP_copy`). An error is
/// the first failing copy's `GNTST_*` status.
pub trait GrantIo {
    /// Copies each segment from the frontend's page into `buf`.
    fn copy_in(&mut self, segs: &[SegmentCopy], buf: &mut [u8]) -> Result<(), i16>;
    /// Copies each segment from `buf` into the frontend's page.
    fn copy_out(&mut self, segs: &[SegmentCopy], buf: &[u8]) -> Result<(), i16>;
}

/// Why a request was refused or failed (the status it gets is
/// [`RequestError::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// An operation the backend does not serve.
    Unsupported(u8),
    /// `nr_segments` is 0 or more than 11.
    SegmentCount(u8),
    /// Segment `index` has `first_sect > last_sect` or `last_sect > 7`.
    SegmentSectors { index: u8, first: u8, last: u8 },
    /// Sectors `sector..sector + count` are not all inside the device.
    BeyondEnd { sector: u64, count: u64 },
    /// A write to a read-only attachment.
    ReadOnly,
    /// A grant copy failed with this `GNTST_*` status.
    Grant(i16),
    /// The disk failed.
    Disk,
}

impl RequestError {
    /// The `BLKIF_RSP_*` the frontend gets.
    pub fn status(self) -> i16 {
        match self {
            Self::Unsupported(_) => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Unsupported(op) => write!(f, "operation {op} not supported"),
            Self::SegmentCount(n) => write!(f, "{n} segments (1..=11)"),
            Self::SegmentSectors { index, first, last } => {
                write!(f, "segment {index}: sectors {first}..={last} (0..=7)")
            }
            Self::BeyondEnd { sector, count } => {
                write!(f, "sectors {sector}+{count} beyond the end")
            }
            Self::ReadOnly => write!(f, "write to a read-only device"),
            Self::Grant(status) => write!(f, "grant copy failed (GNTST {status})"),
            Self::Disk => write!(f, "disk I/O error"),
        }
    }
}

/// A device as the engine sees it: the extent and the access mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where the volume lies on the disk.
    pub extent: VolumeExtent,
    /// Writes are refused.
    pub read_only: bool,
}

/// A checked read or write: the segments and where they go on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Transfer {
    write: bool,
    /// Absolute sector on the disk.
    lba: u64,
    segs: [SegmentCopy; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    nr_segs: usize,
    bytes: usize,
}

/// What a request got: the `BLKIF_RSP_*` status, or the error (whose
/// status is the response's).
pub type Outcome = Result<i16, RequestError>;

/// Serves `reqs` (at most [`BATCH_MAX`]) on `target` in ring order;
/// `outcomes[i]` is what `reqs[i]` got.
pub fn execute_batch(
    reqs: &[BlkifRequest],
    target: &Target,
    disk: &mut impl BlockIo,
    grants: &mut impl GrantIo,
    bounce: &mut [u8; BOUNCE_BYTES],
    outcomes: &mut [Outcome],
) {
    let mut group = Group::default();
    let mut io = Io {
        disk,
        grants,
        bounce,
    };
    for (index, req) in reqs.iter().enumerate().take(outcomes.len()) {
        match req.operation {
            BLKIF_OP_READ | BLKIF_OP_WRITE => match check_transfer(req, target) {
                Ok(t) => {
                    if !group.fits(&t) {
                        group.run(&mut io, outcomes);
                    }
                    group.push(index, t);
                }
                Err(e) => outcomes[index] = Err(e),
            },
            // A flush with segments is a write after the flush (Linux
            // blkback: `REQ_PREFLUSH` on the write).
            BLKIF_OP_FLUSH_DISKCACHE => {
                let write = (req.nr_segments > 0).then(|| check_transfer(req, target));
                if let Some(Err(e)) = write {
                    outcomes[index] = Err(e);
                    continue;
                }
                group.run(&mut io, outcomes);
                outcomes[index] = io
                    .disk
                    .flush()
                    .map(|()| BLKIF_RSP_OKAY)
                    .map_err(|()| RequestError::Disk);
                if let (Some(Ok(t)), Ok(_)) = (write, outcomes[index]) {
                    group.push(index, t);
                }
            }
            op => outcomes[index] = Err(RequestError::Unsupported(op)),
        }
    }
    group.run(&mut io, outcomes);
}

/// The disk, the grants and the bounce buffer a group runs on.
struct Io<'a, D, G> {
    disk: &'a mut D,
    grants: &'a mut G,
    bounce: &'a mut [u8; BOUNCE_BYTES],
}

/// Reads or writes that follow each other on the disk, to serve as one
/// disk I/O: member `k` is bytes `at..at + bytes` of the bounce buffer.
#[derive(Default)]
struct Group {
    members: [Option<(usize, Transfer)>; BATCH_MAX],
    len: usize,
    bytes: usize,
}

impl Group {
    fn first(&self) -> Option<&Transfer> {
        self.members[0].as_ref().map(|(_, t)| t)
    }

    /// Whether `t` continues the group (same direction, next sector, room).
    fn fits(&self, t: &Transfer) -> bool {
        let Some(first) = self.first() else {
            return true;
        };
        let next = first.lba + (self.bytes / BLKIF_SECTOR_BYTES) as u64;
        first.write == t.write
            && t.lba == next
            && self.bytes + t.bytes <= BOUNCE_BYTES
            && self.len < BATCH_MAX
    }

    fn push(&mut self, index: usize, t: Transfer) {
        self.bytes += t.bytes;
        self.members[self.len] = Some((index, t));
        self.len += 1;
    }

    /// Serves the group (outcomes by request index) and empties it.
    fn run<D: BlockIo, G: GrantIo>(&mut self, io: &mut Io<'_, D, G>, outcomes: &mut [Outcome]) {
        let Some(first) = self.first() else {
            return;
        };
        let (write, lba) = (first.write, first.lba);
        let members = &self.members[..self.len];
        if write {
            write_group(io, members, lba, outcomes);
        } else {
            read_group(io, members, lba, self.bytes, outcomes);
        }
        *self = Group::default();
    }
}

/// The members' segments, their bytes in the bounce buffer.
fn placed(
    members: &[Option<(usize, Transfer)>],
) -> impl Iterator<Item = (usize, &Transfer, usize)> {
    members.iter().flatten().scan(0, |at, (index, t)| {
        let here = *at;
        *at += t.bytes;
        Some((*index, t, here))
    })
}

/// Copies every member in; writes each run of members whose copy worked.
fn write_group<D: BlockIo, G: GrantIo>(
    io: &mut Io<'_, D, G>,
    members: &[Option<(usize, Transfer)>],
    lba: u64,
    outcomes: &mut [Outcome],
) {
    let mut entries = [(0, 0, 0); BATCH_MAX]; // (request index, offset, bytes)
    let mut m = 0;
    for (index, t, at) in placed(members) {
        let buf = &mut io.bounce[at..at + t.bytes];
        outcomes[index] = match io.grants.copy_in(&t.segs[..t.nr_segs], buf) {
            Ok(()) => Ok(BLKIF_RSP_OKAY),
            Err(status) => Err(RequestError::Grant(status)),
        };
        entries[m] = (index, at, t.bytes);
        m += 1;
    }
    // Each run of members whose copy worked is one disk write.
    let mut k = 0;
    while k < m {
        if outcomes[entries[k].0].is_err() {
            k += 1;
            continue;
        }
        let mut end = k;
        while end + 1 < m && outcomes[entries[end + 1].0].is_ok() {
            end += 1;
        }
        let (start, stop) = (entries[k].1, entries[end].1 + entries[end].2);
        let sector = lba + (start / BLKIF_SECTOR_BYTES) as u64;
        if io
            .disk
            .write_blocks(sector, &io.bounce[start..stop])
            .is_err()
        {
            for (index, _, _) in &entries[k..=end] {
                outcomes[*index] = Err(RequestError::Disk);
            }
        }
        k = end + 1;
    }
}

/// Reads the whole group, then copies every member out.
fn read_group<D: BlockIo, G: GrantIo>(
    io: &mut Io<'_, D, G>,
    members: &[Option<(usize, Transfer)>],
    lba: u64,
    bytes: usize,
    outcomes: &mut [Outcome],
) {
    let read = io.disk.read_blocks(lba, &mut io.bounce[..bytes]);
    for (index, t, at) in placed(members) {
        outcomes[index] = match read {
            Err(()) => Err(RequestError::Disk),
            Ok(()) => match io
                .grants
                .copy_out(&t.segs[..t.nr_segs], &io.bounce[at..at + t.bytes])
            {
                Ok(()) => Ok(BLKIF_RSP_OKAY),
                Err(status) => Err(RequestError::Grant(status)),
            },
        };
    }
}

/// Checks a read or write (or a flush's write) against the ring's
/// limits and the device (`nr_segments`, each segment's sectors, the
/// device's end, its mode).
fn check_transfer(req: &BlkifRequest, target: &Target) -> Result<Transfer, RequestError> {
    let write = req.operation != BLKIF_OP_READ;
    if write && target.read_only {
        return Err(RequestError::ReadOnly);
    }
    let n = usize::from(req.nr_segments);
    if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
        return Err(RequestError::SegmentCount(req.nr_segments));
    }
    let mut segs = [SegmentCopy {
        gref: 0,
        page_offset: 0,
        buf_offset: 0,
        len: 0,
    }; BLKIF_MAX_SEGMENTS_PER_REQUEST];
    let mut bytes = 0;
    for (index, (seg, out)) in (0u8..).zip(req.seg[..n].iter().zip(&mut segs)) {
        let (first, last) = (seg.first_sect, seg.last_sect);
        if first > last || last >= BLKIF_SECTORS_PER_PAGE {
            return Err(RequestError::SegmentSectors { index, first, last });
        }
        // At most 8 sectors of 512 bytes: 4096 fits a u16.
        let len = (u16::from(last - first) + 1) * SECTOR_BYTES;
        *out = SegmentCopy {
            gref: seg.gref,
            page_offset: u16::from(first) * SECTOR_BYTES,
            buf_offset: bytes,
            len,
        };
        bytes += usize::from(len);
    }
    let count = (bytes / BLKIF_SECTOR_BYTES) as u64;
    let sector = req.sector_number;
    let inside = sector
        .checked_add(count)
        .is_some_and(|end| end <= target.extent.sectors);
    let lba = target.extent.first_lba.checked_add(sector);
    let Some(lba) = lba.filter(|_| inside) else {
        return Err(RequestError::BeyondEnd { sector, count });
    };
    Ok(Transfer {
        write,
        lba,
        segs,
        nr_segs: n,
        bytes,
    })
}

#[cfg(test)]
mod tests;
