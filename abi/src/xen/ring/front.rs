//! The front end of a shared ring: `FRONT_RING_*` and the `RING_*`
//! macros of io/ring.h that a frontend uses.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use super::sring::{needs_notify, RingEntry, RingError, Sring};
use super::RingIdx;

/// A frontend's end of a ring: queues requests, takes responses.
pub struct FrontRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    /// `req_prod_pvt`: next request slot to fill (not yet published).
    req_prod_pvt: RingIdx,
    /// `rsp_cons`: next response to take.
    rsp_cons: RingIdx,
}

impl<'a, Req: RingEntry, Rsp: RingEntry> FrontRing<'a, Req, Rsp> {
    /// `XEN_FRONT_RING_INIT`: initialises the shared header and starts at 0.
    pub fn init(words: &'a [AtomicU32]) -> Result<Self, RingError> {
        let ring = Self::attach(words, 0)?;
        ring.sring.init();
        Ok(ring)
    }

    /// `FRONT_RING_ATTACH`: takes over an initialised ring at index `start`.
    pub fn attach(words: &'a [AtomicU32], start: RingIdx) -> Result<Self, RingError> {
        Ok(FrontRing {
            sring: Sring::new(words)?,
            req_prod_pvt: start,
            rsp_cons: start,
        })
    }

    /// `RING_SIZE`: number of slots.
    pub fn size(&self) -> u32 {
        self.sring.nr_ents()
    }

    /// `RING_FREE_REQUESTS`.
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// `RING_FULL`.
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes `req` into the next slot; published by the next push.
    pub fn queue_request(&mut self, req: &Req) -> Result<(), RingError> {
        if self.is_full() {
            return Err(RingError::Full);
        }
        self.sring.write(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS`: publishes the queued requests.
    pub fn push_requests(&mut self) {
        // xen_wmb(): the back end sees the requests before the index (Release).
        self.sring
            .req_prod()
            .store(self.req_prod_pvt, Ordering::Release);
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the queued
    /// requests; true if the back end asked to be notified of them.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        // We are the only writer of req_prod.
        let old = self.sring.req_prod().load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        // xen_wmb(): the back end sees the requests before the index (Release).
        self.sring.req_prod().store(new, Ordering::Release);
        // xen_mb(): the back end sees the new index before we read req_event.
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.sring.req_event().load(Ordering::Relaxed))
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`, after checking the back end's
    /// `rsp_prod` (`RING_RESPONSE_PROD_OVERFLOW`, tightened): it may not
    /// answer more requests than we queued.
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        // Acquire: pairs with the back end's Release push; orders the slot reads after it.
        let prod = self.sring.rsp_prod().load(Ordering::Acquire);
        let unconsumed = prod.wrapping_sub(self.rsp_cons);
        if unconsumed > self.req_prod_pvt.wrapping_sub(self.rsp_cons) {
            return Err(RingError::ProducerOverflow { prod });
        }
        Ok(unconsumed)
    }

    /// Copies out the next response, if one is published.
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let rsp = self.sring.read(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: before sleeping, asks to be
    /// notified of the next response; true if responses are waiting.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.sring
            .rsp_event()
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        // xen_mb(): the back end sees rsp_event before we re-read rsp_prod.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? > 0)
    }
}
