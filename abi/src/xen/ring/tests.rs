//! Ring tests: layout against io/ring.h, two threads over one page, and
//! property tests of random interleavings and hostile producer indices.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Req {
    seq: u64,
    arg: u32,
    pad: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rsp {
    seq: u32,
    status: u32,
}

/// A test's sequence number as the 32-bit field it travels in (the tests
/// stay far below 2^32 messages).
fn low32(seq: u64) -> u32 {
    u32::try_from(seq).expect("test sequence numbers fit in 32 bits")
}

fn page() -> Vec<AtomicU32> {
    (0..1024).map(|_| AtomicU32::new(0xdead_beef)).collect()
}

#[test]
fn sizes_match_ring_h() {
    // DEFINE_RING_TYPES with an 8-byte union in one page: 256 slots,
    // the first at byte 64 (checked against gcc on Xen's header).
    assert_eq!(ring_size(4096, 8), 256);
    // blkif: 112-byte union, 32 slots per page.
    assert_eq!(ring_size(4096, 112), 32);
    assert_eq!(ring_size(4096, 0), 0);
    assert_eq!(ring_size(64, 8), 0);
    assert_eq!(round_down_pow2(0x8000_0001), 0x8000_0000);
}

#[test]
fn entries_sit_where_ring_h_puts_them() {
    let words = page();
    let mut front = FrontRing::<Req, Rsp>::init(&words).unwrap();
    // 16-byte union: (4096 - 64) / 16 = 252, rounded down to 128 slots.
    assert_eq!(front.size(), 128);
    let header: Vec<u32> = words[..16]
        .iter()
        .map(|w| w.load(Ordering::Relaxed))
        .collect();
    assert_eq!(header, [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    front
        .queue_request(&Req {
            seq: 0x1_0000_0002,
            arg: 3,
            pad: 0,
        })
        .unwrap();
    front
        .queue_request(&Req {
            seq: 4,
            arg: 5,
            pad: 0,
        })
        .unwrap();
    front.push_requests();
    let word = |byte: usize| words[byte / 4].load(Ordering::Relaxed);
    assert_eq!(word(SRING_REQ_PROD_OFFSET), 2);
    assert_eq!([word(64), word(68), word(72)], [2, 1, 3]);
    assert_eq!([word(80), word(84), word(88)], [4, 0, 5]);
    let mut back = BackRing::<Req, Rsp>::init(&words).unwrap();
    assert_eq!(
        back.take_request().unwrap().map(|r| r.seq),
        Some(0x1_0000_0002)
    );
    back.queue_response(&Rsp { seq: 7, status: 8 }).unwrap();
    back.push_responses();
    // The response overwrites the request's slot (a C union).
    assert_eq!([word(SRING_RSP_PROD_OFFSET), word(64), word(68)], [1, 7, 8]);
}

#[test]
fn layouts_that_cannot_work_are_refused() {
    let words = page();
    #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
    #[repr(C)]
    struct Odd([u8; 6]);
    assert_eq!(
        FrontRing::<Odd, Rsp>::init(&words).err(),
        Some(RingError::BadLayout)
    );
    assert_eq!(
        BackRing::<Req, ()>::init(&words).err(),
        Some(RingError::BadLayout)
    );
    assert_eq!(
        BackRing::<Req, Rsp>::init(&words[..16]).err(),
        Some(RingError::BadLayout)
    );
}

#[test]
fn hostile_request_index_is_an_error() {
    let words = page();
    let mut front = FrontRing::<Req, Rsp>::init(&words).unwrap();
    let mut back = BackRing::<Req, Rsp>::init(&words).unwrap();
    words[0].store(front.size() + 1, Ordering::Relaxed);
    assert_eq!(
        back.take_request(),
        Err(RingError::ProducerOverflow { prod: 129 })
    );
    words[0].store(u32::MAX, Ordering::Relaxed); // "went backwards"
    assert!(back.unconsumed_requests().is_err());
    words[0].store(front.size(), Ordering::Relaxed);
    assert_eq!(back.unconsumed_requests(), Ok(128));
    // The back end answers only what it took.
    assert_eq!(
        back.queue_response(&Rsp { seq: 0, status: 0 }),
        Err(RingError::NoRequestToAnswer)
    );
    // A back end answering requests never sent is caught by the front end.
    words[2].store(1, Ordering::Relaxed);
    assert_eq!(
        front.take_response(),
        Err(RingError::ProducerOverflow { prod: 1 })
    );
}

#[test]
fn a_resumed_back_end_goes_on_where_it_stopped() {
    let words = page();
    let mut front = FrontRing::<Req, Rsp>::init(&words).unwrap();
    for seq in 0..3 {
        front
            .queue_request(&Req {
                seq,
                arg: 0,
                pad: 0,
            })
            .unwrap();
    }
    front.push_requests();
    let indices = {
        let mut back = BackRing::<Req, Rsp>::init(&words).unwrap();
        assert_eq!(back.take_request().unwrap().map(|r| r.seq), Some(0));
        assert_eq!(back.take_request().unwrap().map(|r| r.seq), Some(1));
        back.queue_response(&Rsp { seq: 0, status: 0 }).unwrap();
        back.indices()
    };
    assert_eq!(indices, (1, 2));
    let mut back = BackRing::<Req, Rsp>::resume(&words, indices).unwrap();
    assert_eq!(back.take_request().unwrap().map(|r| r.seq), Some(2));
    back.queue_response(&Rsp { seq: 1, status: 0 }).unwrap();
    back.queue_response(&Rsp { seq: 2, status: 0 }).unwrap();
    assert_eq!(
        back.queue_response(&Rsp { seq: 3, status: 0 }),
        Err(RingError::NoRequestToAnswer)
    );
}

/// An event channel between the two threads: set by a notifying push,
/// waited on (with a deadline, so a lost wakeup fails instead of hanging).
struct Event(AtomicBool);

impl Event {
    fn notify(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn wait(&self, deadline: Instant, words: &[AtomicU32]) {
        while !self.0.swap(false, Ordering::Acquire) {
            let header: Vec<u32> = words[..4]
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect();
            assert!(
                Instant::now() < deadline,
                "lost wakeup; req_prod, req_event, rsp_prod, rsp_event = {header:?}"
            );
            std::thread::yield_now();
        }
    }
}

#[test]
fn two_threads_exchange_many_requests_in_order() {
    const N: u64 = 200_000;
    let words = page();
    let (to_back, to_front) = (Event(AtomicBool::new(false)), Event(AtomicBool::new(false)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut front = FrontRing::<Req, Rsp>::init(&words).unwrap();
    let mut back = BackRing::<Req, Rsp>::init(&words).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut answered = 0u64;
            while answered < N {
                while let Some(req) = back.take_request().unwrap() {
                    assert_eq!(req.seq, answered, "requests arrive in order, none lost");
                    assert_eq!(req.arg, !low32(req.seq));
                    back.queue_response(&Rsp {
                        seq: low32(req.seq),
                        status: req.arg,
                    })
                    .unwrap();
                    answered += 1;
                }
                if back.push_responses_and_check_notify() {
                    to_front.notify();
                }
                if answered < N && !back.final_check_for_requests().unwrap() {
                    to_back.wait(deadline, &words);
                }
            }
        });
        let (mut sent, mut received) = (0u64, 0u64);
        while received < N {
            while sent < N && !front.is_full() {
                front
                    .queue_request(&Req {
                        seq: sent,
                        arg: !low32(sent),
                        pad: 0,
                    })
                    .unwrap();
                sent += 1;
            }
            if front.push_requests_and_check_notify() {
                to_back.notify();
            }
            while let Some(rsp) = front.take_response().unwrap() {
                assert_eq!(
                    u64::from(rsp.seq),
                    received,
                    "responses arrive in order, none lost"
                );
                assert_eq!(rsp.status, !rsp.seq);
                received += 1;
            }
            if received < sent && !front.final_check_for_responses().unwrap() {
                to_front.wait(deadline, &words);
            }
        }
        assert_eq!(front.free_requests(), front.size());
    });
}

#[derive(Clone, Debug)]
enum Op {
    Queue(u8),
    PushRequests,
    BackTake(u8),
    BackRespond(u8),
    PushResponses,
    FrontTake(u8),
    BackFinalCheck,
    FrontFinalCheck,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..40u8).prop_map(Op::Queue),
        Just(Op::PushRequests),
        (0..40u8).prop_map(Op::BackTake),
        (0..40u8).prop_map(Op::BackRespond),
        Just(Op::PushResponses),
        (0..40u8).prop_map(Op::FrontTake),
        Just(Op::BackFinalCheck),
        Just(Op::FrontFinalCheck),
    ]
}

proptest! {
    /// Any interleaving of both ends' operations, starting anywhere in the
    /// index space (so indices wrap), keeps io/ring.h's guarantees.
    #[test]
    fn interleavings_keep_the_ring_invariants(start in any::<u32>(), ops in prop::collection::vec(op(), 1..200)) {
        let words = page();
        FrontRing::<Req, Rsp>::init(&words).unwrap();
        for w in [0, 2] {
            words[w].store(start, Ordering::Relaxed);
        }
        let mut front = FrontRing::<Req, Rsp>::attach(&words, start).unwrap();
        let mut back = BackRing::<Req, Rsp>::attach(&words, start).unwrap();
        let size = u64::from(front.size());
        let (mut queued, mut pushed, mut taken, mut answered, mut rsp_pushed, mut received) = (0u64, 0, 0, 0, 0, 0);
        let (mut back_asleep, mut front_asleep) = (false, false);
        let mut unanswered = VecDeque::new();
        for op in ops {
            match op {
                Op::Queue(n) => for _ in 0..n {
                    let r = front.queue_request(&Req { seq: queued, arg: 0, pad: 0 });
                    prop_assert_eq!(r.is_ok(), queued - received < size, "full exactly at size outstanding");
                    if r.is_ok() { queued += 1; }
                },
                Op::PushRequests => {
                    let notify = front.push_requests_and_check_notify();
                    if back_asleep && queued > pushed {
                        prop_assert!(notify, "a sleeping back end is notified of new requests");
                        back_asleep = false;
                    }
                    pushed = queued;
                }
                Op::BackTake(n) => for _ in 0..n {
                    match back.take_request().unwrap() {
                        Some(req) => {
                            prop_assert_eq!(req.seq, taken);
                            unanswered.push_back(req.seq);
                            taken += 1;
                        }
                        None => prop_assert_eq!(taken, pushed, "every pushed request is taken"),
                    }
                },
                Op::BackRespond(n) => for _ in 0..n {
                    let r = back.queue_response(&Rsp { seq: low32(answered), status: 1 });
                    prop_assert_eq!(r.is_ok(), unanswered.pop_front().is_some());
                    if r.is_ok() { answered += 1; }
                },
                Op::PushResponses => {
                    let notify = back.push_responses_and_check_notify();
                    if front_asleep && answered > rsp_pushed {
                        prop_assert!(notify, "a sleeping front end is notified of new responses");
                        front_asleep = false;
                    }
                    rsp_pushed = answered;
                }
                Op::FrontTake(n) => for _ in 0..n {
                    match front.take_response().unwrap() {
                        Some(rsp) => {
                            prop_assert_eq!(u64::from(rsp.seq), received & 0xffff_ffff);
                            received += 1;
                        }
                        None => prop_assert_eq!(received, rsp_pushed, "every pushed response is taken"),
                    }
                },
                Op::BackFinalCheck => {
                    let work = back.final_check_for_requests().unwrap();
                    prop_assert_eq!(work, pushed > taken);
                    back_asleep = !work;
                }
                Op::FrontFinalCheck => {
                    let work = front.final_check_for_responses().unwrap();
                    prop_assert_eq!(work, rsp_pushed > received);
                    front_asleep = !work;
                }
            }
            prop_assert_eq!(u64::from(front.free_requests()), size - (queued - received));
        }
    }

    /// Whatever a hostile front end writes as req_prod, the back end never
    /// panics and never takes more than the ring holds.
    #[test]
    fn hostile_producer_index_is_bounded(start in any::<u32>(), prod in any::<u32>(), slots in any::<[u32; 8]>()) {
        let words = page();
        for (w, v) in words[16..].iter().zip(slots.iter().cycle()) {
            w.store(*v, Ordering::Relaxed);
        }
        words[0].store(prod, Ordering::Relaxed);
        let mut back = BackRing::<Req, Rsp>::attach(&words, start).unwrap();
        let claimed = prod.wrapping_sub(start);
        match back.unconsumed_requests() {
            Ok(n) => {
                prop_assert!(claimed <= back.size());
                prop_assert_eq!(n, claimed);
                let mut got = 0;
                while back.take_request().unwrap().is_some() {
                    got += 1;
                }
                prop_assert_eq!(got, claimed);
            }
            Err(e) => {
                prop_assert!(claimed > back.size());
                prop_assert_eq!(e, RingError::ProducerOverflow { prod });
            }
        }
    }
}
