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

use super::{CREDITS_PER_TSLICE, MAX_CREDIT, MIN_CREDIT};
use crate::domain::table::DomainTable;
use crate::sched::params::{Priority, NO_CAP};

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
        let mut credit_total = CREDITS_PER_TSLICE * i64::from(nr_pcpus);
        if self.credit_balance < 0 {
            credit_total -= self.credit_balance;
        }
        let mut weight_left = weight_total;
        let mut balance = 0;
        for d in domains.iter_mut() {
            let active = active_units(d);
            if active == 0 {
                continue;
            }
            let weight = i64::from(d.sched().weight());
            weight_left -= weight * active;
            let share = self.share(
                weight,
                d.sched().cap(),
                active,
                (weight_total, &mut weight_left, &mut credit_total),
            );
            balance += give(d, &share);
        }
        self.credit_balance = balance;
    }

    /// The fair share of a domain with `weight`, `cap` and `active`
    /// vCPUs; credit it cannot use goes back to `credit_total` for the
    /// domains after it (Xen's `credit_fair`, `credit_peak`,
    /// `credit_cap`).
    fn share(
        &self,
        weight: i64,
        cap: u16,
        active: i64,
        (weight_total, weight_left, credit_total): (i64, &mut i64, &mut i64),
    ) -> Share {
        let mut peak = active * CREDITS_PER_TSLICE;
        if self.credit_balance < 0 {
            peak += (-self.credit_balance * weight * active + weight_total - 1) / weight_total;
        }
        let mut cap_per_unit = 0;
        if cap != NO_CAP {
            let cap_credit = (i64::from(cap) * CREDITS_PER_TSLICE + 99) / 100;
            peak = peak.min(cap_credit);
            cap_per_unit = (cap_credit + active - 1) / active;
        }
        let mut fair = (*credit_total * weight * active + weight_total - 1) / weight_total;
        if fair >= peak {
            if *weight_left != 0 {
                *credit_total += ((fair - peak) * weight_total + *weight_left - 1) / *weight_left;
            }
            fair = peak;
        }
        Share {
            per_unit: (fair + active - 1) / active,
            cap_per_unit,
        }
    }
}

/// vCPUs of `d` on the accounting list.
fn active_units(d: &crate::domain::Domain) -> i64 {
    (0..d.nr_vcpus())
        .filter(|id| d.sched().unit(*id).is_some_and(|u| u.active))
        .fold(0, |n, _| n + 1)
}

/// Adds `share` to each active vCPU of `d`, sets its priority, parks or
/// unparks it, and takes a vCPU with more than a slice's credit off the
/// list with half of it. Returns the sum of their credit.
fn give(d: &mut crate::domain::Domain, share: &Share) -> i64 {
    let mut sum = 0;
    for id in 0..d.nr_vcpus() {
        let Some(u) = d.sched_mut().unit_mut(id).filter(|u| u.active) else {
            continue;
        };
        let mut credit = i64::from(u.credit) + share.per_unit;
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
