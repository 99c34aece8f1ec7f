//! The back end of a shared ring: `BACK_RING_*` and the `RING_*` macros
//! of io/ring.h that a backend uses. The front end is not trusted.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use super::sring::{needs_notify, RingEntry, RingError, Sring};
use super::RingIdx;

/// A backend's end of a ring: takes requests, queues responses.
pub struct BackRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    /// `rsp_prod_pvt`: next response slot to fill (not yet published).
    rsp_prod_pvt: RingIdx,
    /// `req_cons`: next request to take.
    req_cons: RingIdx,
}

impl<'a, Req: RingEntry, Rsp: RingEntry> BackRing<'a, Req, Rsp> {
    /// `BACK_RING_INIT`: starts at 0 on a ring the front end initialised.
    pub fn init(words: &'a [AtomicU32]) -> Result<Self, RingError> {
        Self::attach(words, 0)
    }

    /// `BACK_RING_ATTACH`: takes over a ring at index `start`.
    pub fn attach(words: &'a [AtomicU32], start: RingIdx) -> Result<Self, RingError> {
        Ok(BackRing {
            sring: Sring::new(words)?,
            rsp_prod_pvt: start,
            req_cons: start,
        })
    }

    /// Takes the ring up again with the private indices [`Self::indices`]
    /// gave: for a backend that keeps its ends between passes while the
    /// pages' mapping is borrowed anew each time.
    pub fn resume(
        words: &'a [AtomicU32],
        (rsp_prod_pvt, req_cons): (RingIdx, RingIdx),
    ) -> Result<Self, RingError> {
        Ok(BackRing {
            sring: Sring::new(words)?,
            rsp_prod_pvt,
            req_cons,
        })
    }

    /// The private indices `(rsp_prod_pvt, req_cons)`, for [`Self::resume`].
    pub fn indices(&self) -> (RingIdx, RingIdx) {
        (self.rsp_prod_pvt, self.req_cons)
    }

    /// `RING_SIZE`: number of slots.
    pub fn size(&self) -> u32 {
        self.sring.nr_ents()
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`, after checking the front end's
    /// `req_prod` (`RING_REQUEST_PROD_OVERFLOW`): more requests than slots
    /// not yet answered, or an index that went backwards, is an error.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        // Acquire: pairs with the front end's Release push; orders the slot reads after it.
        let prod = self.sring.req_prod().load(Ordering::Acquire);
        if prod.wrapping_sub(self.rsp_prod_pvt) > self.size() {
            return Err(RingError::ProducerOverflow { prod });
        }
        let requests = prod.wrapping_sub(self.req_cons);
        let room = self.size() - self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        Ok(requests.min(room))
    }

    /// Copies out the next request, if one is published.
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        let req = self.sring.read(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Writes `rsp` into the next slot, answering the oldest unanswered
    /// request taken; published by the next push.
    pub fn queue_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NoRequestToAnswer);
        }
        self.sring.write(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES`: publishes the queued responses.
    pub fn push_responses(&mut self) {
        // xen_wmb(): the front end sees the responses before the index (Release).
        self.sring
            .rsp_prod()
            .store(self.rsp_prod_pvt, Ordering::Release);
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the queued
    /// responses; true if the front end asked to be notified of them.
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        // We are the only writer of rsp_prod.
        let old = self.sring.rsp_prod().load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        // xen_wmb(): the front end sees the responses before the index (Release).
        self.sring.rsp_prod().store(new, Ordering::Release);
        // xen_mb(): the front end sees the new index before we read rsp_event.
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.sring.rsp_event().load(Ordering::Relaxed))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before sleeping, asks to be
    /// notified of the next request; true if requests are waiting.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.sring
            .req_event()
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        // xen_mb(): the front end sees req_event before we re-read req_prod.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_requests()? > 0)
    }
}
