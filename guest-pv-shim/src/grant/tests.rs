use super::*;
use core::mem::{offset_of, size_of};
use std::collections::HashMap;

use abi::xen::grant_table::GrantEntryV1;
use proptest::prelude::*;

fn entries() -> Vec<GrantEntryCell> {
    (0..MAX_GRANT_REFS)
        .map(|_| GrantEntryCell {
            flags: AtomicU16::new(0),
            domid: AtomicU16::new(0),
            frame: AtomicU32::new(0),
        })
        .collect()
}

fn entry(cells: &[GrantEntryCell], r: GrantRef) -> GrantEntryV1 {
    let e = &cells[r as usize];
    GrantEntryV1 {
        flags: e.flags.load(Ordering::SeqCst),
        domid: e.domid.load(Ordering::SeqCst),
        frame: e.frame.load(Ordering::SeqCst),
    }
}

#[test]
fn layout_matches_grant_entry_v1() {
    assert_eq!(size_of::<GrantEntryCell>(), size_of::<GrantEntryV1>());
    assert_eq!(
        offset_of!(GrantEntryCell, domid),
        offset_of!(GrantEntryV1, domid)
    );
    assert_eq!(
        offset_of!(GrantEntryCell, frame),
        offset_of!(GrantEntryV1, frame)
    );
}

#[test]
fn grants_encode_v1_entries_after_the_reserved_ones() {
    let cells = entries();
    cells[0].flags.store(GTF_PERMIT_ACCESS, Ordering::SeqCst); // the toolstack's console grant
    let t = GrantTable::new(&cells);
    assert_eq!(t.grant_access(3, 0x1234, false), Ok(FIRST_FREE_REF));
    assert_eq!(t.grant_access(4, 0x99, true), Ok(FIRST_FREE_REF + 1));
    assert_eq!(
        entry(&cells, FIRST_FREE_REF),
        GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 3,
            frame: 0x1234
        }
    );
    assert_eq!(
        entry(&cells, FIRST_FREE_REF + 1),
        GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY,
            domid: 4,
            frame: 0x99
        }
    );
    assert_eq!(
        entry(&cells, 0).flags,
        GTF_PERMIT_ACCESS,
        "reserved entry untouched"
    );
    assert_eq!(
        t.grant_access(1, 1 << 32, false),
        Err(GrantError::FrameTooBig(1 << 32))
    );
}

#[test]
fn end_access_fails_while_mapped_and_frees_the_reference() {
    let cells = entries();
    let t = GrantTable::new(&cells);
    let r = t.grant_access(1, 10, false).unwrap();
    // The hypervisor marks the entry while the peer maps it.
    cells[r as usize]
        .flags
        .fetch_or(GTF_READING | GTF_WRITING, Ordering::SeqCst);
    assert_eq!(t.end_access(r), Err(GrantError::InUse(r)));
    assert_eq!(
        t.flags(r),
        Some(GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING)
    );
    cells[r as usize]
        .flags
        .fetch_and(!(GTF_READING | GTF_WRITING), Ordering::SeqCst);
    assert_eq!(t.end_access(r), Ok(()));
    assert_eq!(t.flags(r), Some(0));
    assert_eq!(t.end_access(r), Err(GrantError::NotGranted(r)));
    assert_eq!(t.end_access(0), Err(GrantError::NotGranted(0)), "reserved");
    assert_eq!(t.end_access(100_000), Err(GrantError::NotGranted(100_000)));
    assert_eq!(t.grant_access(2, 11, true), Ok(r), "reference reused");
}

#[test]
fn table_is_bounded() {
    let cells = entries();
    let t = GrantTable::new(&cells);
    for _ in FIRST_FREE_REF as usize..MAX_GRANT_REFS {
        t.grant_access(1, 1, false).unwrap();
    }
    assert_eq!(t.grant_access(1, 1, false), Err(GrantError::TableFull));
}

#[test]
fn rewrite_only_handed_out_entries() {
    let cells = entries();
    let t = GrantTable::new(&cells);
    let r = t.grant_access(1, 10, true).unwrap();
    t.rewrite(r, 2, 20, GTF_PERMIT_ACCESS).unwrap();
    assert_eq!(
        entry(&cells, r),
        GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 2,
            frame: 20
        }
    );
    assert_eq!(t.rewrite(0, 2, 20, 1), Err(GrantError::NotGranted(0)));
}

#[test]
fn status_names() {
    assert_eq!(GrantStatus::check(0), Ok(()));
    assert_eq!(GrantStatus(-3).to_string(), "GNTST_bad_gntref");
    assert_eq!(GrantStatus(-8).to_string(), "GNTST_permission_denied");
    assert_eq!(GrantStatus(-13).to_string(), "GNTST_no_space");
    assert_eq!(GrantStatus(-14).to_string(), "GNTST(-14)");
    assert_eq!(GrantStatus(5).to_string(), "GNTST(5)");
}

#[derive(Clone, Debug)]
enum Op {
    Grant(u16, bool),
    End(usize),
    PeerMaps(usize),
    PeerUnmaps(usize),
}

proptest! {
    /// Against a model: a reference is handed out to one grant at a time,
    /// its entry says what was granted, and access ends only when the
    /// peer no longer uses it.
    #[test]
    fn matches_model(ops in proptest::collection::vec(prop_oneof![
        (1u16..5, any::<bool>()).prop_map(|(d, ro)| Op::Grant(d, ro)),
        (0usize..16).prop_map(Op::End),
        (0usize..16).prop_map(Op::PeerMaps),
        (0usize..16).prop_map(Op::PeerUnmaps),
    ], 0..300)) {
        let cells = entries();
        let t = GrantTable::new(&cells);
        let mut live: HashMap<GrantRef, (u16, bool, bool)> = HashMap::new(); // domid, ro, mapped
        let mut order: Vec<GrantRef> = Vec::new();
        for op in ops {
            match op {
                Op::Grant(d, ro) => {
                    let r = t.grant_access(d, u64::from(d) * 7, ro).unwrap();
                    prop_assert!(r >= FIRST_FREE_REF && !live.contains_key(&r));
                    live.insert(r, (d, ro, false));
                    order.push(r);
                }
                Op::End(i) | Op::PeerMaps(i) | Op::PeerUnmaps(i) if order.is_empty() => { let _ = i; }
                Op::End(i) => {
                    let r = order[i % order.len()];
                    let got = t.end_access(r);
                    match live.get(&r) {
                        None => prop_assert_eq!(got, Err(GrantError::NotGranted(r))),
                        Some(&(_, _, true)) => prop_assert_eq!(got, Err(GrantError::InUse(r))),
                        Some(_) => { prop_assert_eq!(got, Ok(())); live.remove(&r); }
                    }
                }
                Op::PeerMaps(i) | Op::PeerUnmaps(i) => {
                    let r = order[i % order.len()];
                    let map = matches!(op, Op::PeerMaps(_));
                    if let Some(e) = live.get_mut(&r) {
                        e.2 = map;
                        let bits = GTF_READING | if e.1 { 0 } else { GTF_WRITING };
                        if map {
                            cells[r as usize].flags.fetch_or(bits, Ordering::SeqCst);
                        } else {
                            cells[r as usize].flags.fetch_and(!bits, Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        for (&r, &(d, ro, _)) in &live {
            let e = entry(&cells, r);
            prop_assert_eq!((e.domid, e.frame), (d, u32::from(d) * 7));
            prop_assert!(e.flags & GTF_PERMIT_ACCESS != 0);
            prop_assert_eq!(e.flags & GTF_READONLY != 0, ro);
        }
    }
}
