//! The engine against a model disk and a model grant table: every
//! request of the issue's hostile list gets its error and touches
//! nothing; random requests (good and bad) leave the disk exactly as a
//! reference model of blkif says, and never touch sectors outside the
//! device's extent.

// Test data: small constants and indices (sectors, grant refs) as bytes.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;

use abi::xen::blkif::{BlkifRequest, BlkifRequestSegment, BLKIF_OP_DISCARD};
use abi::xen::grant_table::GNTST_BAD_GNTREF;
use proptest::prelude::*;

use super::*;

const DISK_SECTORS: u64 = 64;
const EXTENT_FIRST: u64 = 16;
const EXTENT_SECTORS: u64 = 32;
const PAGE: usize = abi::xen::PAGE_SIZE;

struct ModelDisk {
    bytes: Vec<u8>,
    flushes: u32,
    /// Disk requests made (reads and writes).
    ios: u32,
    fail: bool,
}

impl ModelDisk {
    fn new() -> Self {
        // Every sector starts with its own number in each byte.
        let bytes = (0..DISK_SECTORS as usize * 512)
            .map(|i| (i / 512) as u8)
            .collect();
        ModelDisk {
            bytes,
            flushes: 0,
            ios: 0,
            fail: false,
        }
    }

    fn range(&mut self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, ()> {
        self.ios += 1;
        let start = usize::try_from(lba).map_err(|_| ())? * 512;
        if !len.is_multiple_of(512) || start + len > self.bytes.len() || self.fail {
            return Err(());
        }
        Ok(start..start + len)
    }
}

impl BlockIo for ModelDisk {
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ()> {
        let r = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), ()> {
        let r = self.range(lba, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        self.flushes += 1;
        Ok(())
    }
}

/// The frontend's granted pages; a missing reference is revoked.
#[derive(Default)]
struct ModelGrants {
    pages: BTreeMap<GrantRef, Vec<u8>>,
}

impl ModelGrants {
    fn page(&mut self, gref: GrantRef) -> Result<&mut Vec<u8>, i16> {
        self.pages.get_mut(&gref).ok_or(GNTST_BAD_GNTREF)
    }
}

/// Like a `GNTTABOP_copy` batch: every op is tried, the first failure
/// is reported.
impl GrantIo for ModelGrants {
    fn copy_in(&mut self, segs: &[SegmentCopy], buf: &mut [u8]) -> Result<(), i16> {
        let mut result = Ok(());
        for s in segs {
            let (at, len) = (usize::from(s.page_offset), usize::from(s.len));
            match self.page(s.gref) {
                Ok(page) => {
                    buf[s.buf_offset..s.buf_offset + len].copy_from_slice(&page[at..at + len])
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        result
    }

    fn copy_out(&mut self, segs: &[SegmentCopy], buf: &[u8]) -> Result<(), i16> {
        let mut result = Ok(());
        for s in segs {
            let (at, len) = (usize::from(s.page_offset), usize::from(s.len));
            match self.page(s.gref) {
                Ok(page) => {
                    page[at..at + len].copy_from_slice(&buf[s.buf_offset..s.buf_offset + len])
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        result
    }
}

fn target(read_only: bool) -> Target {
    Target {
        extent: VolumeExtent {
            name: "data".into(),
            first_lba: EXTENT_FIRST,
            sectors: EXTENT_SECTORS,
        },
        read_only,
    }
}

fn request(op: u8, sector: u64, segs: &[(GrantRef, u8, u8)]) -> BlkifRequest {
    let mut req = BlkifRequest {
        operation: op,
        nr_segments: segs.len() as u8,
        id: 0x1234,
        sector_number: sector,
        ..Default::default()
    };
    for (slot, &(gref, first_sect, last_sect)) in req.seg.iter_mut().zip(segs) {
        *slot = BlkifRequestSegment {
            gref,
            first_sect,
            last_sect,
            pad: 0,
        };
    }
    req
}

fn run(
    req: &BlkifRequest,
    t: &Target,
    disk: &mut ModelDisk,
    grants: &mut ModelGrants,
) -> Result<i16, RequestError> {
    let mut outcome = [Ok(0)];
    run_batch(core::slice::from_ref(req), t, disk, grants, &mut outcome);
    outcome[0]
}

fn run_batch(
    reqs: &[BlkifRequest],
    t: &Target,
    disk: &mut ModelDisk,
    grants: &mut ModelGrants,
    outcomes: &mut [Outcome],
) {
    let mut bounce = vec![0u8; BOUNCE_BYTES];
    let bounce: &mut [u8; BOUNCE_BYTES] = bounce.as_mut_slice().try_into().unwrap();
    execute_batch(reqs, t, disk, grants, bounce, outcomes)
}

fn grants_with(n: GrantRef, fill: u8) -> ModelGrants {
    let mut g = ModelGrants::default();
    for gref in 0..n {
        g.pages
            .insert(gref, vec![fill.wrapping_add(gref as u8); PAGE]);
    }
    g
}

#[test]
fn a_write_lands_in_the_extent_and_reads_back_through_other_pages() {
    let (mut disk, mut grants) = (ModelDisk::new(), grants_with(2, 0xa0));
    let t = target(false);
    // Page 0's sectors 1..=7 then page 1's sector 0: 8 sectors at 4.
    let write = request(BLKIF_OP_WRITE, 4, &[(0, 1, 7), (1, 0, 0)]);
    assert_eq!(run(&write, &t, &mut disk, &mut grants), Ok(BLKIF_RSP_OKAY));
    let lba = (EXTENT_FIRST + 4) as usize * 512;
    assert!(disk.bytes[lba..lba + 7 * 512].iter().all(|b| *b == 0xa0));
    assert!(disk.bytes[lba + 7 * 512..lba + 8 * 512]
        .iter()
        .all(|b| *b == 0xa1));
    assert_eq!(disk.bytes[lba + 8 * 512], (EXTENT_FIRST + 12) as u8);
    grants.pages.insert(7, vec![0; PAGE]);
    let read = request(BLKIF_OP_READ, 4, &[(7, 0, 7)]);
    assert_eq!(run(&read, &t, &mut disk, &mut grants), Ok(BLKIF_RSP_OKAY));
    assert_eq!(grants.pages[&7][..7 * 512], disk.bytes[lba..lba + 7 * 512]);
    let flush = request(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]);
    assert_eq!(run(&flush, &t, &mut disk, &mut grants), Ok(BLKIF_RSP_OKAY));
    assert_eq!(disk.flushes, 1);
}

/// Linux blkback serves a flush with segments as a write after the
/// flush (`REQ_PREFLUSH`): the data lands, as a write's would.
#[test]
fn a_flush_with_segments_writes_them_after_the_flush() {
    let (mut disk, mut grants) = (ModelDisk::new(), grants_with(1, 0xb0));
    let flush = request(BLKIF_OP_FLUSH_DISKCACHE, 8, &[(0, 0, 7)]);
    let status = run(&flush, &target(false), &mut disk, &mut grants);
    assert_eq!(status, Ok(BLKIF_RSP_OKAY));
    assert_eq!(disk.flushes, 1);
    let lba = (EXTENT_FIRST + 8) as usize * 512;
    assert!(disk.bytes[lba..lba + 8 * 512].iter().all(|b| *b == 0xb0));
    let before = disk.bytes.clone();
    let status = run(&flush, &target(true), &mut disk, &mut grants);
    assert_eq!(status, Err(RequestError::ReadOnly));
    let beyond = request(BLKIF_OP_FLUSH_DISKCACHE, EXTENT_SECTORS, &[(0, 0, 0)]);
    let status = run(&beyond, &target(false), &mut disk, &mut grants);
    assert!(matches!(status, Err(RequestError::BeyondEnd { .. })));
    assert_eq!(disk.bytes, before, "refused flushes write nothing");
}

#[test]
fn every_bad_request_of_the_issue_gets_its_error_and_changes_nothing() {
    let t = target(false);
    let ro = target(true);
    let twelve = [(0, 0, 7); 12];
    let cases: Vec<(&str, BlkifRequest, &Target, RequestError)> = vec![
        (
            "sector beyond the end",
            request(BLKIF_OP_WRITE, EXTENT_SECTORS - 7, &[(0, 0, 7)]),
            &t,
            RequestError::BeyondEnd {
                sector: EXTENT_SECTORS - 7,
                count: 8,
            },
        ),
        (
            "sector overflowing u64",
            request(BLKIF_OP_READ, u64::MAX, &[(0, 0, 0)]),
            &t,
            RequestError::BeyondEnd {
                sector: u64::MAX,
                count: 1,
            },
        ),
        (
            "last_sect past the page",
            request(BLKIF_OP_WRITE, 0, &[(0, 0, 8)]),
            &t,
            RequestError::SegmentSectors {
                index: 0,
                first: 0,
                last: 8,
            },
        ),
        (
            "first_sect after last_sect",
            request(BLKIF_OP_READ, 0, &[(0, 0, 7), (1, 5, 4)]),
            &t,
            RequestError::SegmentSectors {
                index: 1,
                first: 5,
                last: 4,
            },
        ),
        (
            "no segment",
            request(BLKIF_OP_READ, 0, &[]),
            &t,
            RequestError::SegmentCount(0),
        ),
        (
            "revoked grant",
            request(BLKIF_OP_WRITE, 0, &[(0, 0, 7), (99, 0, 7)]),
            &t,
            RequestError::Grant(GNTST_BAD_GNTREF),
        ),
        (
            "write to a read-only device",
            request(BLKIF_OP_WRITE, 0, &[(0, 0, 7)]),
            &ro,
            RequestError::ReadOnly,
        ),
        (
            "discard",
            request(BLKIF_OP_DISCARD, 0, &[]),
            &t,
            RequestError::Unsupported(BLKIF_OP_DISCARD),
        ),
    ];
    for (what, req, target, error) in cases {
        let (mut disk, mut grants) = (ModelDisk::new(), grants_with(2, 0x55));
        let before = disk.bytes.clone();
        let got = run(&req, target, &mut disk, &mut grants);
        assert_eq!(got, Err(error), "{what}");
        assert_eq!(disk.bytes, before, "{what}: the disk is untouched");
    }
    let mut more = request(BLKIF_OP_READ, 0, &twelve[..11]);
    more.nr_segments = 12;
    let (mut disk, mut grants) = (ModelDisk::new(), grants_with(1, 0));
    assert_eq!(
        run(&more, &t, &mut disk, &mut grants),
        Err(RequestError::SegmentCount(12))
    );
    assert_eq!(RequestError::SegmentCount(12).status(), BLKIF_RSP_ERROR);
    assert_eq!(
        RequestError::Unsupported(BLKIF_OP_DISCARD).status(),
        BLKIF_RSP_EOPNOTSUPP
    );
}

#[test]
fn a_read_from_a_read_only_device_works_and_a_failing_disk_is_an_error() {
    let (mut disk, mut grants) = (ModelDisk::new(), grants_with(1, 0));
    let read = request(BLKIF_OP_READ, EXTENT_SECTORS - 1, &[(0, 7, 7)]);
    assert_eq!(
        run(&read, &target(true), &mut disk, &mut grants),
        Ok(BLKIF_RSP_OKAY)
    );
    assert!(grants.pages[&0][7 * 512..]
        .iter()
        .all(|b| *b == (EXTENT_FIRST + EXTENT_SECTORS - 1) as u8));
    disk.fail = true;
    assert_eq!(
        run(&read, &target(true), &mut disk, &mut grants),
        Err(RequestError::Disk)
    );
}

fn any_segment() -> impl Strategy<Value = (GrantRef, u8, u8)> {
    // References 0..4 are granted, 4 is not; sectors up to 9 (8, 9 are bad).
    (0u32..5, 0u8..10, 0u8..10)
}

fn any_request() -> impl Strategy<Value = BlkifRequest> {
    (
        prop_oneof![
            4 => Just(BLKIF_OP_READ),
            4 => Just(BLKIF_OP_WRITE),
            1 => Just(BLKIF_OP_FLUSH_DISKCACHE),
            1 => 0u8..=255,
        ],
        0u64..EXTENT_SECTORS + 8,
        proptest::collection::vec(any_segment(), 0..13),
    )
        .prop_map(|(op, sector, segs)| {
            let mut req = request(op, sector, &segs[..segs.len().min(11)]);
            req.nr_segments = segs.len() as u8;
            req
        })
}

/// What blkif says a request does to the volume's bytes and the pages:
/// the status, computed independently of the engine.
fn reference(
    req: &BlkifRequest,
    read_only: bool,
    volume: &mut [u8],
    pages: &mut BTreeMap<GrantRef, Vec<u8>>,
) -> i16 {
    let mut op = req.operation;
    if op == BLKIF_OP_FLUSH_DISKCACHE {
        if req.nr_segments == 0 {
            return BLKIF_RSP_OKAY;
        }
        // Its segments are written after the flush.
        op = BLKIF_OP_WRITE;
    }
    if op != BLKIF_OP_READ && op != BLKIF_OP_WRITE {
        return BLKIF_RSP_EOPNOTSUPP;
    }
    let n = usize::from(req.nr_segments);
    if (op == BLKIF_OP_WRITE && read_only) || n == 0 || n > 11 {
        return BLKIF_RSP_ERROR;
    }
    let segs = &req.seg[..n];
    if segs
        .iter()
        .any(|s| s.first_sect > s.last_sect || s.last_sect > 7)
    {
        return BLKIF_RSP_ERROR;
    }
    let total: u64 = segs
        .iter()
        .map(|s| u64::from(s.last_sect - s.first_sect) + 1)
        .sum();
    if req.sector_number + total > EXTENT_SECTORS {
        return BLKIF_RSP_ERROR;
    }
    let revoked = segs.iter().any(|s| !pages.contains_key(&s.gref));
    if revoked && op == BLKIF_OP_WRITE {
        return BLKIF_RSP_ERROR;
    }
    // A read copies what it can into the pages still granted (their
    // contents are undefined to the frontend after an error).
    let mut at = req.sector_number as usize * 512;
    for s in segs {
        let from = usize::from(s.first_sect) * 512;
        let len = (usize::from(s.last_sect - s.first_sect) + 1) * 512;
        if op == BLKIF_OP_WRITE {
            volume[at..at + len].copy_from_slice(&pages[&s.gref][from..from + len]);
        } else if let Some(page) = pages.get_mut(&s.gref) {
            page[from..from + len].copy_from_slice(&volume[at..at + len]);
        }
        at += len;
    }
    if revoked {
        BLKIF_RSP_ERROR
    } else {
        BLKIF_RSP_OKAY
    }
}

#[test]
fn contiguous_requests_become_one_disk_io_and_a_bad_one_splits_a_write() {
    let t = target(false);
    let (mut disk, mut grants) = (ModelDisk::new(), grants_with(4, 0x10));
    // Two writes that follow each other (as blkfront splits a 64 KiB I/O).
    let mut outcomes = [Ok(0), Ok(0)];
    let reqs = [
        request(BLKIF_OP_WRITE, 0, &[(0, 0, 7)]),
        request(BLKIF_OP_WRITE, 8, &[(1, 0, 7)]),
    ];
    run_batch(&reqs, &t, &mut disk, &mut grants, &mut outcomes);
    assert_eq!(outcomes, [Ok(BLKIF_RSP_OKAY), Ok(BLKIF_RSP_OKAY)]);
    assert_eq!(disk.ios, 1, "one merged write");
    // A revoked grant in the middle: the others are written, in two runs.
    disk.ios = 0;
    let reqs = [
        request(BLKIF_OP_WRITE, 0, &[(2, 0, 7)]),
        request(BLKIF_OP_WRITE, 8, &[(99, 0, 7)]),
        request(BLKIF_OP_WRITE, 16, &[(3, 0, 7)]),
    ];
    let mut outcomes = [Ok(0), Ok(0), Ok(0)];
    run_batch(&reqs, &t, &mut disk, &mut grants, &mut outcomes);
    assert_eq!(
        outcomes,
        [
            Ok(BLKIF_RSP_OKAY),
            Err(RequestError::Grant(GNTST_BAD_GNTREF)),
            Ok(BLKIF_RSP_OKAY)
        ]
    );
    assert_eq!(disk.ios, 2);
    let at = |s: u64| disk.bytes[(EXTENT_FIRST + s) as usize * 512];
    assert_eq!(
        (at(0), at(8), at(16)),
        (0x12, 0x11, 0x13),
        "sector 8 kept the first batch's data"
    );
    // Reads that follow each other: one disk read, each page gets its part.
    disk.ios = 0;
    let reqs = [
        request(BLKIF_OP_READ, 0, &[(0, 0, 7)]),
        request(BLKIF_OP_READ, 8, &[(1, 0, 3)]),
        request(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]),
        request(BLKIF_OP_READ, 12, &[(1, 4, 7)]),
    ];
    let mut outcomes = [Ok(0), Ok(0), Ok(0), Ok(0)];
    run_batch(&reqs, &t, &mut disk, &mut grants, &mut outcomes);
    assert!(outcomes.iter().all(|o| *o == Ok(BLKIF_RSP_OKAY)));
    assert_eq!((disk.ios, disk.flushes), (2, 1), "the flush ends the group");
    assert_eq!(grants.pages[&0][0], 0x12);
}

fn batches() -> impl Strategy<Value = Vec<BlkifRequest>> {
    // Either random requests, or a run that follows on (merges).
    prop_oneof![
        proptest::collection::vec(any_request(), 1..24),
        (
            0u64..8,
            1usize..6,
            prop_oneof![Just(BLKIF_OP_READ), Just(BLKIF_OP_WRITE)]
        )
            .prop_map(|(start, n, op)| {
                (0..n as u64)
                    .map(|k| request(op, start + k * 4, &[(k as u32 % 5, 2, 5)]))
                    .collect()
            }),
    ]
}

proptest! {
    #[test]
    fn random_requests_do_what_blkif_says_and_stay_inside_the_extent(
        batches in proptest::collection::vec(batches(), 1..4),
        read_only in any::<bool>(),
    ) {
        let t = target(read_only);
        let (mut disk, mut grants) = (ModelDisk::new(), grants_with(4, 0x40));
        let outside_before = disk.bytes.clone();
        let first = EXTENT_FIRST as usize * 512;
        let end = first + EXTENT_SECTORS as usize * 512;
        let mut volume = disk.bytes[first..end].to_vec();
        let mut pages = grants.pages.clone();
        for reqs in &batches {
            let mut outcomes = vec![Ok(0); reqs.len()];
            run_batch(reqs, &t, &mut disk, &mut grants, &mut outcomes);
            for (req, got) in reqs.iter().zip(&outcomes) {
                let want = reference(req, read_only, &mut volume, &mut pages);
                prop_assert_eq!(got.unwrap_or_else(RequestError::status), want, "{:?}", req);
            }
            prop_assert_eq!(&disk.bytes[first..end], &volume[..]);
            prop_assert_eq!(&grants.pages, &pages);
        }
        prop_assert_eq!(&disk.bytes[..first], &outside_before[..first]);
        prop_assert_eq!(&disk.bytes[end..], &outside_before[end..]);
    }
}
