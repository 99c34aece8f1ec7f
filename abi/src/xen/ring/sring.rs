//! The shared ring pages seen as 32-bit atomic words.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{ring_size, RingIdx, SRING_HEADER_SIZE};

/// A request or response type: plain bytes, a whole number of 32-bit words.
pub trait RingEntry: FromBytes + IntoBytes + Immutable + Copy {}
impl<T: FromBytes + IntoBytes + Immutable + Copy> RingEntry for T {}

/// What a ring operation can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The pages hold no slot, or an entry's size is 0 or not a multiple of 4 bytes.
    BadLayout,
    /// The front end has as many requests outstanding as the ring has slots.
    Full,
    /// The other end published a producer index that claims more entries
    /// than it can have produced: it is misbehaving.
    ProducerOverflow {
        /// The producer index it published.
        prod: RingIdx,
    },
    /// The back end queued a response with no taken request left to answer.
    NoRequestToAnswer,
}

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 1;
const RSP_PROD: usize = 2;
const RSP_EVENT: usize = 3;
const HEADER_WORDS: usize = SRING_HEADER_SIZE / 4;

/// The shared pages of one ring, typed by its request and response.
pub(super) struct Sring<'a, Req, Rsp> {
    words: &'a [AtomicU32],
    nr_ents: u32,
    slot_words: usize,
    _entries: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: RingEntry, Rsp: RingEntry> Sring<'a, Req, Rsp> {
    /// Lays a ring over `words` (the pages from their first byte).
    pub(super) fn new(words: &'a [AtomicU32]) -> Result<Self, RingError> {
        let (req, rsp) = (size_of::<Req>(), size_of::<Rsp>());
        if req == 0 || rsp == 0 || req % 4 != 0 || rsp % 4 != 0 {
            return Err(RingError::BadLayout);
        }
        // A slot is the C union of both: the larger size, rounded up to the larger alignment.
        let slot = req
            .max(rsp)
            .next_multiple_of(align_of::<Req>().max(align_of::<Rsp>()));
        let nr_ents = ring_size(words.len().saturating_mul(4), slot);
        if nr_ents == 0 {
            return Err(RingError::BadLayout);
        }
        Ok(Sring {
            words,
            nr_ents,
            slot_words: slot / 4,
            _entries: PhantomData,
        })
    }

    /// `SHARED_RING_INIT`: indices 0, event thresholds 1, private bytes 0.
    /// Only the front end does this, before it shares the pages.
    pub(super) fn init(&self) {
        for (i, word) in self.words[..HEADER_WORDS].iter().enumerate() {
            let value = if i == REQ_EVENT || i == RSP_EVENT {
                1
            } else {
                0
            };
            word.store(value, Ordering::Relaxed);
        }
    }

    pub(super) fn nr_ents(&self) -> u32 {
        self.nr_ents
    }

    pub(super) fn req_prod(&self) -> &AtomicU32 {
        &self.words[REQ_PROD]
    }

    pub(super) fn req_event(&self) -> &AtomicU32 {
        &self.words[REQ_EVENT]
    }

    pub(super) fn rsp_prod(&self) -> &AtomicU32 {
        &self.words[RSP_PROD]
    }

    pub(super) fn rsp_event(&self) -> &AtomicU32 {
        &self.words[RSP_EVENT]
    }

    /// The words of slot `idx & (nr_ents - 1)`; in bounds because `new`
    /// sized `nr_ents` slots to fit after the header.
    fn slot(&self, idx: RingIdx) -> &[AtomicU32] {
        let first = HEADER_WORDS + (idx & (self.nr_ents - 1)) as usize * self.slot_words;
        &self.words[first..first + self.slot_words]
    }

    /// Copies entry `idx` out (`RING_COPY_REQUEST`/`RESPONSE`). Relaxed
    /// loads: the Acquire load of the producer index that made the entry
    /// visible orders them.
    pub(super) fn read<T: RingEntry>(&self, idx: RingIdx) -> T {
        let mut entry = T::new_zeroed();
        for (bytes, word) in entry.as_mut_bytes().chunks_exact_mut(4).zip(self.slot(idx)) {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        entry
    }

    /// Writes entry `idx`. Relaxed stores: the Release store of the
    /// producer index publishes them.
    pub(super) fn write<T: RingEntry>(&self, idx: RingIdx, entry: &T) {
        for (bytes, word) in entry.as_bytes().chunks_exact(4).zip(self.slot(idx)) {
            word.store(
                u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                Ordering::Relaxed,
            );
        }
    }
}

/// The `_AND_CHECK_NOTIFY` test: does the consumer's event threshold lie
/// in the newly published range `(old, new]`?
pub(super) fn needs_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}
