//! The hypervisor pinning a grant on one thread while the granter, on
//! another, revokes and re-grants it (Linux's
//! `gnttab_end_foreign_access_ref`: a `cmpxchg` of the flags to 0 that
//! fails while `GTF_reading`/`GTF_writing` are set): the status update
//! must be a real compare-and-exchange, or the granter takes back a frame
//! the hypervisor goes on to map.

use std::sync::atomic::{AtomicBool, Ordering};

use abi::xen::grant_table::{GTF_READING, GTF_WRITING};

use super::*;
use crate::grant::pin;
use crate::mm::shared_frame::{AtomicPage, SharedFrame};
use crate::paging::sim::{StopOnDrop, WithShared};

/// Pins (and unpins) the hypervisor thread tries.
const ROUNDS: usize = 50_000;
/// The most rounds the race runs while no pin got through.
const MAX_ROUNDS: usize = 20 * ROUNDS;
/// How long the granter watches an entry it revoked (nobody may set a
/// status bit in it), and leaves it granted.
const WATCH_SPINS: usize = 64;
/// The entry raced on (offset 8 of the first table frame).
const GREF: GrantRef = 1;
/// The granted frame.
const GFN: u64 = 6;

/// The granter's thread until `done`: revoke the entry when no pin holds
/// it, watch it stay revoked, grant it again. Returns (revocations,
/// status bits seen in a revoked entry).
fn granter(page: &AtomicPage, grantee: DomId, done: &AtomicBool) -> (u64, u64) {
    let f = SharedFrame::of_atomic(page);
    let granted = u32::from(GTF_PERMIT_ACCESS) | u32::from(grantee) << 16;
    let (mut revoked, mut violations) = (0, 0);
    while !done.load(Ordering::Acquire) {
        let flags = f.load_u32(8).unwrap();
        if flags & u32::from(GTF_READING | GTF_WRITING) != 0 {
            continue;
        }
        if f.compare_exchange_u32(8, flags, 0).unwrap().is_err() {
            continue;
        }
        revoked += 1;
        for _ in 0..WATCH_SPINS {
            violations += u64::from(f.load_u32(8).unwrap() != 0);
        }
        f.store_u32(8, granted).unwrap();
        // Leave it granted a while for the hypervisor to pin.
        for _ in 0..WATCH_SPINS {
            core::hint::spin_loop();
        }
    }
    (revoked, violations)
}

#[test]
fn a_grant_revoked_during_the_pin_is_never_mapped() {
    let (mut w, ids) = World::new(2, FRAMES_FOR_RACE);
    let (g, m) = (ids[1], ids[2]);
    w.set_entry(g, GREF, grant(m, GFN, false));
    let table = w.t.get(g).unwrap().grant().frame(0).unwrap();
    let frame = w.mfn(g, GFN).unwrap();
    let page = AtomicPage::new(w.frame(table));
    let World { t, mem, .. } = &mut w;
    let granter_domain = t.get_mut(g).unwrap();
    let mut mem = WithShared::new(mem, table, &page);
    let done = AtomicBool::new(false);
    let (pinned, refused, rounds, (revoked, violations)) = std::thread::scope(|s| {
        let other = s.spawn(|| granter(&page, m, &done));
        let stop = StopOnDrop(&done);
        let (mut pinned, mut refused) = (0u64, 0u64);
        let f = SharedFrame::of_atomic(&page);
        // At least ROUNDS, and on until one pin got through: on a loaded
        // host the granter's thread may hold the entry revoked for a
        // whole time slice (bounded, so a broken pin still fails).
        let mut rounds = 0;
        while rounds < ROUNDS || (pinned == 0 && rounds < MAX_ROUNDS) {
            rounds += 1;
            match pin::acquire(granter_domain, &mut mem, GREF, m, false) {
                Ok(mfn) => {
                    assert_eq!(mfn, frame);
                    // The granter cannot revoke it while the bits are set.
                    let flags = f.load_u32(8).unwrap() as u16;
                    assert_eq!(flags, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
                    pin::release(granter_domain, &mut mem, GREF, false);
                    pinned += 1;
                }
                Err(e) => {
                    assert_eq!(e, GrantError::GeneralError);
                    refused += 1;
                }
            }
        }
        drop(stop);
        (pinned, refused, rounds, other.join().unwrap())
    });
    assert_eq!(violations, 0, "status bits set in a revoked entry");
    assert_eq!(pinned + refused, rounds as u64);
    assert!(
        pinned > 0,
        "no pin in {rounds} rounds ({revoked} revocations)"
    );
    assert!(!granter_domain_pinned(&mut w, g));
}

/// Whether `g`'s raced entry is still pinned (it must not be once every
/// pin was released).
fn granter_domain_pinned(w: &mut World, g: DomId) -> bool {
    w.t.get(g).unwrap().grant().active(GREF).is_pinned()
}

/// Frames of the racing machine: three small domains.
const FRAMES_FOR_RACE: u64 = 512;
