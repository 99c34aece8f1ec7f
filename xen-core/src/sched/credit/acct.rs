//! Credit accounting, once per time slice (Xen's `csched_acct`): the
//! pCPUs' credit for the next slice is shared among the domains with
//! active vCPUs in proportion to their weights, each domain's share
//! split evenly among its active vCPUs; a domain's cap bounds its share;
//! priorities follow the sign of the credit; vCPUs of a domain over its
//! cap are parked, and unparked when their credit is positive again.
//!
//! The formulas are Xen's (rounding included). Domains are visited in
//! the table's order; Xen moves a domain that could use more credit to
//! the head of its list so later rounds give it spare credit first — a
//! refinement we leave out (see `docs/architecture.md`).
//!
//! One addition for several pCPUs: vCPUs pinned to one pCPU cannot use
//! more than that pCPU. Where the shares of those pinned to one pCPU add
//! up to more than a slice of it, that slice is shared among them by
//! weight instead (no one getting more than its share), so weights hold
//! among them; in Xen's credit1 they would all stay UNDER and share the
//! pCPU evenly (see `docs/architecture.md`).

use super::{CREDITS_PER_TSLICE, MAX_CREDIT, MAX_SCHED_PCPUS, MIN_CREDIT, NR_SLOTS};
use crate::domain::table::DomainTable;
use crate::domain::Domain;
use crate::sched::params::{CpuMask, Priority, Unit, NO_CAP};

/// Per-vCPU weight is the domain's weight over its active vCPUs, times
/// this (integer arithmetic that keeps ratios up to `MAX_VCPUS`).
const WEIGHT_SCALE: i64 = 1 << 12;

/// State carried from one accounting to the next (Xen's
/// `csched_private`'s `credit_balance`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Accounting {
    /// Sum of the active vCPUs' credit after the last accounting: when
    /// negative, the next one hands out that much more.
    credit_balance: i64,
}

/// One domain's share in one accounting.
struct Share {
    /// Credit per active vCPU.
    per_unit: i64,
    /// A vCPU below minus this is parked (0: no cap).
    cap_per_unit: i64,
    /// Each active vCPU's weight, [`WEIGHT_SCALE`]d.
    unit_weight: i64,
}

/// One accounting's walk over the domains, in order (Xen's loop over
/// `active_sdom`): credit not used by one domain goes to those after it.
struct Round {
    credit_balance: i64,
    weight_total: i64,
    weight_left: i64,
    credit_total: i64,
}

/// The vCPUs pinned to each pCPU: what their shares and weights add up
/// to.
#[derive(Clone, Copy, Debug, Default)]
struct PinnedLoad {
    credit: i64,
    weight: i64,
}

impl Accounting {
    /// Before the first accounting.
    pub(super) const fn new() -> Self {
        Self { credit_balance: 0 }
    }

    /// Shares `nr_pcpus` slices' credit among the active vCPUs.
    pub(super) fn run(&mut self, domains: &mut DomainTable, nr_pcpus: u32) {
        let weight_total: i64 = domains
            .iter()
            .map(|d| i64::from(d.sched().weight()) * active_units(d))
            .sum();
        if weight_total == 0 {
            self.credit_balance = 0;
            return;
        }
        let online = CpuMask::first(nr_pcpus.min(MAX_SCHED_PCPUS));
        // With one pCPU every vCPU is pinned to it and Xen's shares
        // already add up to its slice.
        let pinned = if nr_pcpus > 1 {
            self.pinned_load(domains, weight_total, nr_pcpus, online)
        } else {
            [PinnedLoad::default(); NR_SLOTS]
        };
        let mut round = self.round(weight_total, nr_pcpus);
        let mut balance = 0;
        for d in domains.iter_mut() {
            if let Some(share) = round.share(d) {
                balance += give(d, &share, |u| {
                    pinned_to(u, online)
                        .and_then(|p| pinned.get(p))
                        .filter(|load| load.credit > CREDITS_PER_TSLICE && load.weight > 0)
                        .map(|load| CREDITS_PER_TSLICE * share.unit_weight / load.weight)
                });
            }
        }
        self.credit_balance = balance;
    }

    /// A fresh walk over the domains.
    fn round(&self, weight_total: i64, nr_pcpus: u32) -> Round {
        let mut credit_total = CREDITS_PER_TSLICE * i64::from(nr_pcpus);
        if self.credit_balance < 0 {
            credit_total -= self.credit_balance;
        }
        Round {
            credit_balance: self.credit_balance,
            weight_total,
            weight_left: weight_total,
            credit_total,
        }
    }

    /// What the shares of the active vCPUs pinned to each pCPU add up to
    /// (a walk like [`Self::run`]'s, giving nothing).
    fn pinned_load(
        &self,
        domains: &DomainTable,
        weight_total: i64,
        nr_pcpus: u32,
        online: CpuMask,
    ) -> [PinnedLoad; NR_SLOTS] {
        let mut load = [PinnedLoad::default(); NR_SLOTS];
        let mut round = self.round(weight_total, nr_pcpus);
        for d in domains.iter() {
            let Some(share) = round.share(d) else {
                continue;
            };
            for u in (0..d.nr_vcpus()).filter_map(|id| d.sched().unit(id)) {
                if let Some(l) = pinned_to(u, online).and_then(|p| load.get_mut(p)) {
                    l.credit += share.per_unit;
                    l.weight += share.unit_weight;
                }
            }
        }
        load
    }
}

impl Round {
    /// The share of domain `d`, the next in the walk; `None` if it has
    /// no active vCPU.
    fn share(&mut self, d: &Domain) -> Option<Share> {
        let active = active_units(d);
        if active == 0 {
            return None;
        }
        let weight = i64::from(d.sched().weight());
        self.weight_left -= weight * active;
        Some(self.fair_share(weight, d.sched().cap(), active))
    }

    /// The fair share of a domain with `weight`, `cap` and `active`
    /// vCPUs; credit it cannot use goes back to `credit_total` for the
    /// domains after it (Xen's `credit_fair`, `credit_peak`,
    /// `credit_cap`).
    fn fair_share(&mut self, weight: i64, cap: u16, active: i64) -> Share {
        let mut peak = active * CREDITS_PER_TSLICE;
        if self.credit_balance < 0 {
            peak += (-self.credit_balance * weight * active + self.weight_total - 1)
                / self.weight_total;
        }
        let mut cap_per_unit = 0;
        if cap != NO_CAP {
            let cap_credit = (i64::from(cap) * CREDITS_PER_TSLICE + 99) / 100;
            peak = peak.min(cap_credit);
            cap_per_unit = (cap_credit + active - 1) / active;
        }
        let mut fair =
            (self.credit_total * weight * active + self.weight_total - 1) / self.weight_total;
        if fair >= peak {
            if self.weight_left != 0 {
                self.credit_total +=
                    ((fair - peak) * self.weight_total + self.weight_left - 1) / self.weight_left;
            }
            fair = peak;
        }
        Share {
            per_unit: (fair + active - 1) / active,
            cap_per_unit,
            unit_weight: weight * WEIGHT_SCALE / active,
        }
    }
}

/// The pCPU an active vCPU is pinned to alone, as an index, if any.
fn pinned_to(u: &Unit, online: CpuMask) -> Option<usize> {
    let mask = u.affinity.and(online);
    (u.active && mask.0.is_power_of_two()).then(|| mask.0.trailing_zeros() as usize)
}

/// vCPUs of `d` on the accounting list.
fn active_units(d: &Domain) -> i64 {
    (0..d.nr_vcpus())
        .filter(|id| d.sched().unit(*id).is_some_and(|u| u.active))
        .fold(0, |n, _| n + 1)
}

/// Adds `share` to each active vCPU of `d` (or less, what `pinned_share`
/// gives a vCPU pinned to a pCPU with too much), sets its priority, parks
/// or unparks it, and takes a vCPU with more than a slice's credit off
/// the list with half of it. Returns the sum of their credit.
fn give(d: &mut Domain, share: &Share, pinned_share: impl Fn(&Unit) -> Option<i64>) -> i64 {
    let mut sum = 0;
    for id in 0..d.nr_vcpus() {
        let Some(u) = d.sched_mut().unit_mut(id).filter(|u| u.active) else {
            continue;
        };
        let per_unit = pinned_share(u).map_or(share.per_unit, |p| p.min(share.per_unit));
        let mut credit = i64::from(u.credit) + per_unit;
        if credit < 0 {
            u.priority = Priority::Over;
            if share.cap_per_unit != 0 && credit < -share.cap_per_unit {
                u.parked = true;
            }
            credit = credit.max(MIN_CREDIT);
        } else {
            u.priority = Priority::Under;
            u.parked = false;
            if credit > MAX_CREDIT {
                u.active = false;
                credit /= 2;
            }
        }
        // Within MIN_CREDIT..=2 * MAX_CREDIT + a share: fits.
        u.credit = i32::try_from(credit).unwrap_or(i32::MAX);
        sum += credit;
    }
    sum
}
