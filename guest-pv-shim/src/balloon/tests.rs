use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// The hypervisor's side, as `xen-core/src/hypercall/memory.rs` serves
/// it: a decrease stops at the first GFN that is not populated; a
/// populate stops at the first GFN populated already or past `max`.
struct Model {
    populated: BTreeSet<u64>,
    max: u64,
    calls: u32,
}

impl Model {
    fn new(pages: u64, max: u64) -> Self {
        Self {
            populated: (0..pages).collect(),
            max,
            calls: 0,
        }
    }
}

impl Reservation for Model {
    fn current_pages(&mut self) -> Result<u64, XenError> {
        Ok(self.populated.len() as u64)
    }

    fn decrease(&mut self, gfns: &[u64]) -> Result<u64, XenError> {
        self.calls += 1;
        assert!(gfns.len() <= BALLOON_BATCH);
        let done = gfns.iter().take_while(|g| self.populated.remove(g)).count();
        Ok(done as u64)
    }

    fn populate(&mut self, gfns: &[u64]) -> Result<u64, XenError> {
        self.calls += 1;
        assert!(gfns.len() <= BALLOON_BATCH);
        let mut done = 0;
        for g in gfns {
            if self.populated.len() as u64 >= self.max || !self.populated.insert(*g) {
                break;
            }
            done += 1;
        }
        Ok(done)
    }
}

/// Steps until the balloon says it is done (or stuck), at most `limit`.
fn settle(b: &mut Balloon, m: &mut Model, limit: u32) -> Step {
    for _ in 0..limit {
        match b.step(m).unwrap() {
            Step::Decreased(_) | Step::Increased(_) => {}
            other => return other,
        }
    }
    panic!("no end after {limit} steps");
}

const PAGES: u64 = 4096;
/// The region lent to the balloon: GFNs 512..4096.
const REGION: Range<u64> = 512..PAGES;

#[test]
fn no_target_no_work() {
    let mut m = Model::new(PAGES, PAGES);
    let mut b = Balloon::new(REGION, PAGES);
    assert_eq!(b.step(&mut m), Ok(Step::AtTarget));
    assert_eq!(m.calls, 0);
}

#[test]
fn balloons_down_and_up_in_bounded_steps() {
    let mut m = Model::new(PAGES, PAGES);
    let mut b = Balloon::new(REGION, PAGES);
    // 16 MiB -> 12 MiB: 1024 frames, two batches of 512.
    b.set_target_kib(12 << 10, Some(16 << 10));
    assert_eq!(b.step(&mut m), Ok(Step::Decreased(512)));
    assert_eq!(b.step(&mut m), Ok(Step::Decreased(512)));
    assert_eq!(b.step(&mut m), Ok(Step::AtTarget));
    assert_eq!(m.populated.len(), 3072);
    assert_eq!((b.current_pages(), b.ballooned_out()), (3072, 1024));
    // The top of the region went, nothing below it.
    assert!(!m.populated.contains(&(PAGES - 1)));
    assert!(m.populated.contains(&(PAGES - 1025)));
    b.set_target_kib(16 << 10, None);
    assert_eq!(settle(&mut b, &mut m, 10), Step::AtTarget);
    assert_eq!(m.populated.len() as u64, PAGES);
    assert_eq!(b.ballooned_out(), 0);
}

#[test]
fn the_target_is_relative_to_static_max_as_in_linux() {
    // The toolstack counts 2 frames the guest does not (rings): static
    // max 4098 frames, the domain holds 4096.
    let mut m = Model::new(PAGES, PAGES + 2);
    let mut b = Balloon::new(REGION, PAGES);
    b.set_target_kib((PAGES + 2 - 100) * 4, Some((PAGES + 2) * 4));
    assert_eq!(settle(&mut b, &mut m, 10), Step::AtTarget);
    assert_eq!(b.current_pages(), PAGES - 100);
    // Later targets use the same difference; static-max is not re-read.
    b.set_target_kib((PAGES + 2) * 4, Some(1));
    assert_eq!(settle(&mut b, &mut m, 10), Step::AtTarget);
    assert_eq!(b.current_pages(), PAGES);
}

#[test]
fn never_gives_more_than_its_region() {
    let mut m = Model::new(PAGES, PAGES);
    let mut b = Balloon::new(REGION, PAGES);
    b.set_target_kib(1024, Some(PAGES * 4));
    assert_eq!(settle(&mut b, &mut m, 20), Step::Full);
    assert_eq!(b.ballooned_out(), REGION.end - REGION.start);
    assert!((0..REGION.start).all(|g| m.populated.contains(&g)));
}

#[test]
fn a_populate_cut_short_is_retried() {
    let mut m = Model::new(PAGES, PAGES);
    let mut b = Balloon::new(REGION, PAGES);
    b.set_target_kib(8 << 10, Some(16 << 10));
    settle(&mut b, &mut m, 20);
    // The toolstack lowered the maximum below the new target.
    m.max = 2500;
    b.set_target_kib(16 << 10, None);
    assert_eq!(b.step(&mut m), Ok(Step::Retry(452)));
    assert_eq!(b.step(&mut m), Ok(Step::Retry(0)));
    m.max = PAGES;
    assert_eq!(settle(&mut b, &mut m, 20), Step::AtTarget);
    assert_eq!(m.populated.len() as u64, PAGES);
}

#[test]
fn above_what_it_started_with_is_empty() {
    let mut m = Model::new(PAGES, 2 * PAGES);
    let mut b = Balloon::new(REGION, PAGES);
    b.set_target_kib(32 << 10, Some(16 << 10));
    assert_eq!(b.step(&mut m), Ok(Step::Empty));
    assert_eq!(m.calls, 0);
}

#[test]
fn a_refused_decrease_is_an_error_with_the_gfn() {
    let mut m = Model::new(PAGES, PAGES);
    // Someone took GFN 4000 away behind the balloon's back.
    m.populated.remove(&4000);
    let mut b = Balloon::new(REGION, PAGES);
    b.set_target_kib(8 << 10, Some(16 << 10));
    assert_eq!(b.step(&mut m), Err(BalloonError::Refused(4000)));
    assert_eq!(b.ballooned_out(), 95);
}

#[test]
fn store_values_are_decimal_kib() {
    assert_eq!(parse_kib(b"16392"), Some(16392));
    assert_eq!(parse_kib(b""), None);
    assert_eq!(parse_kib(b"+5"), None);
    assert_eq!(parse_kib(b"12m"), None);
    assert_eq!(parse_kib(b"99999999999999999999999"), None);
}

proptest! {
    /// Whatever the targets, the balloon stays in its region, its count
    /// matches the hypervisor's, and it reaches every reachable target.
    #[test]
    fn follows_any_target_sequence(targets in proptest::collection::vec(0u64..=20_000, 1..8)) {
        let mut m = Model::new(PAGES, PAGES);
        let mut b = Balloon::new(REGION, PAGES);
        for t in targets {
            b.set_target_kib(t, Some(PAGES * 4));
            let end = settle(&mut b, &mut m, 100);
            prop_assert_eq!(b.current_pages(), m.populated.len() as u64);
            prop_assert!((0..REGION.start).all(|g| m.populated.contains(&g)));
            let want = (t / 4).clamp(REGION.start, PAGES);
            prop_assert_eq!(b.current_pages(), want);
            prop_assert!(matches!(end, Step::AtTarget | Step::Full | Step::Empty));
        }
    }
}
