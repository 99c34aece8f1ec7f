use super::*;
use proptest::prelude::*;

fn req(id: u16, offset: u16, size: u16, more: bool) -> NetifTxRequest {
    NetifTxRequest {
        gref: 100 + u32::from(id),
        offset,
        flags: if more { NETTXF_MORE_DATA } else { 0 },
        id,
        size,
    }
}

fn packet(step: TxStep) -> TxPacket {
    match step {
        TxStep::Packet(p) => p,
        other => panic!("not a packet: {other:?}"),
    }
}

fn dropped(step: TxStep) -> (TxDrop, Vec<u16>, bool) {
    match step {
        TxStep::Drop { why, ids, last } => (why, ids.as_slice().to_vec(), last),
        other => panic!("not a drop: {other:?}"),
    }
}

#[test]
fn a_single_request_is_a_packet() {
    let mut a = TxAssembler::default();
    let p = packet(a.push(&req(1, 100, 60, false)));
    assert_eq!(p.size, 60);
    assert_eq!(p.ids(), &[1]);
    assert_eq!(
        p.slots(),
        &[TxSlot {
            gref: 101,
            offset: 100,
            len: 60
        }]
    );
}

#[test]
fn a_chain_gives_the_first_slot_what_the_others_do_not_hold() {
    let mut a = TxAssembler::default();
    assert_eq!(a.push(&req(1, 4000, 1000, true)), TxStep::More);
    let p = packet(a.push(&req(2, 0, 904, false)));
    assert_eq!(p.size, 1000);
    assert_eq!(p.ids(), &[1, 2]);
    assert_eq!(p.slots()[0].len, 96);
    assert_eq!(p.slots()[1].len, 904);
}

#[test]
fn oversize_runt_extra_info_and_page_crossing_are_dropped() {
    let mut a = TxAssembler::default();
    let (why, ids, last) = dropped(a.push(&req(1, 0, 9000, false)));
    assert_eq!(
        (why, ids, last),
        (TxDrop::Oversize { size: 9000 }, vec![1], true)
    );
    let (why, ..) = dropped(a.push(&req(2, 0, 10, false)));
    assert_eq!(why, TxDrop::Runt { size: 10 });
    let mut extra = req(3, 0, 60, false);
    extra.flags |= NETTXF_EXTRA_INFO;
    assert_eq!(dropped(a.push(&extra)).0, TxDrop::ExtraInfo);
    let (why, ..) = dropped(a.push(&req(4, 4090, 60, false)));
    assert_eq!(
        why,
        TxDrop::CrossesPage {
            offset: 4090,
            size: 60
        }
    );
    // The assembler is back at a packet's start.
    assert_eq!(packet(a.push(&req(5, 0, 60, false))).ids(), &[5]);
}

#[test]
fn a_dropped_chain_is_answered_to_its_end() {
    let mut a = TxAssembler::default();
    let (why, ids, last) = dropped(a.push(&req(1, 0, 9000, true)));
    assert_eq!(
        (why, ids, last),
        (TxDrop::Oversize { size: 9000 }, vec![1], false)
    );
    assert_eq!(
        a.push(&req(2, 0, 100, true)),
        TxStep::Discard { id: 2, last: false }
    );
    assert_eq!(
        a.push(&req(3, 0, 100, false)),
        TxStep::Discard { id: 3, last: true }
    );
    assert_eq!(packet(a.push(&req(4, 0, 60, false))).ids(), &[4]);
}

#[test]
fn later_slots_holding_more_than_announced_are_a_mismatch() {
    let mut a = TxAssembler::default();
    assert_eq!(a.push(&req(1, 0, 100, true)), TxStep::More);
    let (why, ids, last) = dropped(a.push(&req(2, 0, 200, false)));
    assert_eq!(
        why,
        TxDrop::SizeMismatch {
            announced: 100,
            rest: 200
        }
    );
    assert_eq!((ids, last), (vec![1, 2], true));
}

#[test]
fn a_first_slot_whose_share_crosses_its_page_is_dropped_at_the_end() {
    let mut a = TxAssembler::default();
    assert_eq!(a.push(&req(1, 4000, 1000, true)), TxStep::More);
    let (why, ids, _) = dropped(a.push(&req(2, 0, 10, false)));
    assert_eq!(
        why,
        TxDrop::CrossesPage {
            offset: 4000,
            size: 990
        }
    );
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn more_than_the_slot_limit_is_dropped() {
    let mut a = TxAssembler::default();
    assert_eq!(a.push(&req(0, 0, 1000, true)), TxStep::More);
    for id in (1u16..).take(TX_SLOTS_MAX - 1) {
        assert_eq!(a.push(&req(id, 0, 1, true)), TxStep::More);
    }
    let (why, ids, last) = dropped(a.push(&req(99, 0, 1, true)));
    assert_eq!(why, TxDrop::TooManySlots);
    assert_eq!(ids.len(), TX_SLOTS_MAX + 1);
    assert!(!last);
    assert_eq!(
        a.push(&req(100, 0, 1, false)),
        TxStep::Discard {
            id: 100,
            last: true
        }
    );
}

fn any_request() -> impl Strategy<Value = NetifTxRequest> {
    (
        any::<u16>(),
        prop_oneof![0u16..64, 4000u16..4200, any::<u16>()],
        prop_oneof![0u16..4, Just(NETTXF_MORE_DATA), any::<u16>()],
        prop_oneof![0u16..100, 1400u16..1600, any::<u16>()],
    )
        .prop_map(|(id, offset, flags, size)| NetifTxRequest {
            gref: 8,
            offset,
            flags,
            id,
            size,
        })
}

proptest! {
    /// Whatever a frontend queues, every request is answered exactly
    /// once, in order, and every packet let through is well-formed.
    #[test]
    fn every_request_is_answered_once_and_packets_are_well_formed(
        reqs in proptest::collection::vec(any_request(), 0..80)
    ) {
        let mut a = TxAssembler::default();
        let mut answered = Vec::new();
        let mut pending = Vec::new();
        for r in &reqs {
            pending.push(r.id);
            match a.push(r) {
                TxStep::More => {}
                TxStep::Packet(p) => {
                    prop_assert!(p.size >= ETH_HLEN && p.size <= TX_FRAME_MAX);
                    let sum: usize = p.slots().iter().map(|s| usize::from(s.len)).sum();
                    prop_assert_eq!(sum, p.size);
                    for s in p.slots() {
                        prop_assert!(usize::from(s.offset) + usize::from(s.len) <= PAGE_SIZE);
                    }
                    prop_assert!(p.slots().len() <= TX_SLOTS_MAX);
                    answered.extend_from_slice(p.ids());
                }
                TxStep::Drop { ids, .. } => answered.extend_from_slice(ids.as_slice()),
                TxStep::Discard { id, .. } => answered.push(id),
            }
            if answered.len() == pending.len() {
                prop_assert_eq!(&answered, &pending);
            }
        }
        // Only an unfinished chain is left unanswered.
        prop_assert!(answered.len() <= pending.len());
        prop_assert_eq!(&answered[..], &pending[..answered.len()]);
    }
}

#[test]
fn csum_blank_is_the_first_requests_flag() {
    let mut a = TxAssembler::default();
    let blank = NetifTxRequest {
        flags: NETTXF_CSUM_BLANK,
        ..req(1, 0, 60, false)
    };
    assert!(packet(a.push(&blank)).csum_blank);
    assert!(!packet(a.push(&req(2, 0, 60, false))).csum_blank);
    let first = NetifTxRequest {
        flags: NETTXF_CSUM_BLANK | NETTXF_MORE_DATA,
        ..req(3, 0, 1000, true)
    };
    assert_eq!(a.push(&first), TxStep::More);
    assert!(packet(a.push(&req(4, 0, 500, false))).csum_blank);
}
