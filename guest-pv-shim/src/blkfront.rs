//! The portable part of blkfront, the block frontend (`io/blkif.h`, as
//! Linux's xen-blkfront uses it): building read/write requests whose
//! data starts at the first byte of their pages, and keeping track of
//! the requests in flight so that every response is checked against one
//! (a backend is not trusted to answer only what was asked). The device
//! itself is [`crate::arch::blkfront`].

use core::fmt;

use abi::xen::blkif::{
    BlkifRequest, BlkifRequestSegment, BlkifResponse, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_RING_SIZE, BLKIF_SECTORS_PER_PAGE,
};
use abi::xen::grant_table::GrantRef;

/// Requests in flight at most: one per ring slot.
pub const QUEUE_DEPTH: usize = BLKIF_RING_SIZE as usize;
/// 512-byte sectors one request moves at most: 11 whole pages.
pub const MAX_REQUEST_SECTORS: u32 = 88;
const _: () = assert!(
    MAX_REQUEST_SECTORS as usize
        == BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SECTORS_PER_PAGE as usize
);

/// A read or write of `sectors` (1..=[`MAX_REQUEST_SECTORS`]) from
/// `sector`, the data in the pages `grefs` grants (8 sectors each, the
/// last one partly), with `id` echoed in the response.
pub fn rw_request(
    operation: u8,
    id: u64,
    handle: u16,
    sector: u64,
    sectors: u32,
    grefs: &[GrantRef],
) -> BlkifRequest {
    let per_page = u32::from(BLKIF_SECTORS_PER_PAGE);
    let sectors = sectors.clamp(1, MAX_REQUEST_SECTORS);
    // At most 11: fits a u8.
    let nr = (sectors.div_ceil(per_page) & 0xff) as u8;
    let mut req = BlkifRequest {
        operation,
        nr_segments: nr,
        handle,
        id,
        sector_number: sector,
        ..Default::default()
    };
    let mut left = sectors;
    for (seg, gref) in req.seg.iter_mut().zip(grefs).take(usize::from(nr)) {
        let here = left.min(per_page);
        left -= here;
        *seg = BlkifRequestSegment {
            gref: *gref,
            first_sect: 0,
            // 0..=7: fits a u8.
            last_sect: ((here - 1) & 0xff) as u8,
            pad: 0,
        };
    }
    req
}

/// A request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// First sector.
    pub sector: u64,
    /// Sectors.
    pub sectors: u32,
    /// The data pages' grants (the first `nr_grefs`).
    pub grefs: [GrantRef; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    /// Grants used.
    pub nr_grefs: u8,
}

/// A response that answers no request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadResponse {
    /// The response's id.
    pub id: u64,
}

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response id {:#x} answers no request in flight", self.id)
    }
}

/// Requests in flight by id (= index: 0..[`QUEUE_DEPTH`]).
pub struct Tracker {
    slots: [Option<InFlight>; QUEUE_DEPTH],
    count: usize,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// Nothing in flight.
    pub const fn new() -> Self {
        Tracker {
            slots: [None; QUEUE_DEPTH],
            count: 0,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.count
    }

    /// A free id, if fewer than [`QUEUE_DEPTH`] are in flight.
    pub fn free_id(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Records request `id` (a free id) as in flight.
    pub fn start(&mut self, id: usize, request: InFlight) {
        if let Some(slot) = self.slots.get_mut(id).filter(|s| s.is_none()) {
            *slot = Some(request);
            self.count += 1;
        }
    }

    /// The request `rsp` answers, no longer in flight.
    pub fn finish(&mut self, rsp: &BlkifResponse) -> Result<(usize, InFlight), BadResponse> {
        let bad = BadResponse { id: rsp.id };
        let id = usize::try_from(rsp.id).map_err(|_| bad)?;
        let slot = self.slots.get_mut(id).ok_or(bad)?;
        let request = slot.take().ok_or(bad)?;
        if request.operation != rsp.operation {
            *slot = Some(request);
            return Err(bad);
        }
        self.count -= 1;
        Ok((id, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::xen::blkif::{BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY};

    #[test]
    fn requests_cover_whole_pages_then_a_partial_one() {
        let grefs = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
        let req = rw_request(BLKIF_OP_WRITE, 3, 51712, 100, 19, &grefs);
        assert_eq!(req.nr_segments, 3);
        assert_eq!((req.id, req.sector_number, req.handle), (3, 100, 51712));
        let segs: Vec<_> = req.seg[..3]
            .iter()
            .map(|s| (s.gref, s.first_sect, s.last_sect))
            .collect();
        assert_eq!(segs, [(10, 0, 7), (11, 0, 7), (12, 0, 2)]);
        assert_eq!(req.seg[3], BlkifRequestSegment::default());
        let full = rw_request(BLKIF_OP_READ, 0, 0, 0, MAX_REQUEST_SECTORS, &grefs);
        assert_eq!(full.nr_segments, 11);
        assert!(full.seg.iter().all(|s| s.last_sect == 7));
        let one = rw_request(BLKIF_OP_READ, 0, 0, 0, 1, &grefs);
        assert_eq!((one.nr_segments, one.seg[0].last_sect), (1, 0));
    }

    fn in_flight(operation: u8) -> InFlight {
        InFlight {
            operation,
            sector: 0,
            sectors: 8,
            grefs: [0; 11],
            nr_grefs: 1,
        }
    }

    fn rsp(id: u64, operation: u8) -> BlkifResponse {
        BlkifResponse {
            id,
            operation,
            status: BLKIF_RSP_OKAY,
            ..Default::default()
        }
    }

    #[test]
    fn only_responses_to_requests_in_flight_are_taken() {
        let mut t = Tracker::new();
        for _ in 0..QUEUE_DEPTH {
            let id = t.free_id().unwrap();
            t.start(id, in_flight(BLKIF_OP_READ));
        }
        assert_eq!((t.in_flight(), t.free_id()), (QUEUE_DEPTH, None));
        assert_eq!(
            t.finish(&rsp(40, BLKIF_OP_READ)),
            Err(BadResponse { id: 40 })
        );
        assert_eq!(
            t.finish(&rsp(5, BLKIF_OP_WRITE)),
            Err(BadResponse { id: 5 }),
            "the operation must match"
        );
        assert_eq!(t.finish(&rsp(5, BLKIF_OP_READ)).map(|(id, _)| id), Ok(5));
        assert_eq!(
            t.finish(&rsp(5, BLKIF_OP_READ)),
            Err(BadResponse { id: 5 }),
            "answered twice"
        );
        assert_eq!((t.in_flight(), t.free_id()), (QUEUE_DEPTH - 1, Some(5)));
    }
}
