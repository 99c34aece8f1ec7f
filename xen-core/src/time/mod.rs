//! Time: system time (ns since boot) from the TSC, the pvclock every vCPU
//! reads (`vcpu_time_info`) and the wall clock in shared info.
//!
//! Xen's convention (`xen/include/public/xen.h`, `struct vcpu_time_info`):
//! ns = `((tsc_delta << shift) * mul) >> 32` (a negative shift shifts
//! right), with `mul` and `shift` from [`TimeScale::from_tsc_hz`] (Xen's
//! `set_time_scale`). [`Clock`] computes that in 128 bits, so no TSC delta
//! overflows; guests compute it in 64 bits from a recent `tsc_timestamp`,
//! which is why the run loop republishes the pvclock whenever a vCPU is
//! scheduled in ([`pvclock::update_vcpu_time`]).
//!
//! All TSC values here are the TSC the guest reads: xen-core runs guests
//! with a VMCB TSC offset of 0, so it equals the host's.

#![forbid(unsafe_code)]

pub mod pvclock;

use abi::xen::shared_info::{TimeScale, VcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT};

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// A wall-clock time: seconds and nanoseconds since 1970-01-01 00:00 UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Whole seconds.
    pub sec: u64,
    /// Nanoseconds, below [`NS_PER_SEC`].
    pub nsec: u32,
}

/// Converts a TSC delta to ns with `scale`, by Xen's formula but in 128
/// bits: exact for any 64-bit delta; saturates at `u64::MAX` ns (584
/// years).
pub fn scale_delta(delta: u64, scale: TimeScale) -> u64 {
    let shift = u32::from(scale.shift.unsigned_abs());
    let shifted = if scale.shift >= 0 {
        u128::from(delta) << shift
    } else {
        u128::from(delta) >> shift
    };
    // shifted < 2^95 (shift <= 31), mul < 2^32: the product fits in u128.
    let ns = (shifted * u128::from(scale.mul_frac)) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The hypervisor's clock: TSC rate, the TSC at boot (system time 0) and
/// the wall-clock time then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    scale: TimeScale,
    tsc_hz: u64,
    boot_tsc: u64,
    boot_wallclock: WallClock,
}

impl Clock {
    /// A clock for a TSC of `tsc_hz` ticks per second that read `boot_tsc`
    /// at system time 0, when the wall clock read `boot_wallclock`.
    /// `None` if `tsc_hz` is 0 or the nanoseconds are not below 1 s.
    pub fn new(tsc_hz: u64, boot_tsc: u64, boot_wallclock: WallClock) -> Option<Self> {
        if u64::from(boot_wallclock.nsec) >= NS_PER_SEC {
            return None;
        }
        Some(Self {
            scale: TimeScale::from_tsc_hz(tsc_hz)?,
            tsc_hz,
            boot_tsc,
            boot_wallclock,
        })
    }

    /// The TSC-to-ns scale every `vcpu_time_info` carries.
    pub fn scale(&self) -> TimeScale {
        self.scale
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// System time in ns since boot at TSC value `tsc` (0 before boot).
    pub fn system_time_ns(&self, tsc: u64) -> u64 {
        scale_delta(tsc.saturating_sub(self.boot_tsc), self.scale)
    }

    /// Wall-clock time at system time 0, what shared info's `wc_*` hold.
    pub fn boot_wallclock(&self) -> WallClock {
        self.boot_wallclock
    }

    /// The pvclock at `tsc` (its `version` left 0: the publisher sets it).
    pub fn vcpu_time_info(&self, tsc: u64) -> VcpuTimeInfo {
        VcpuTimeInfo {
            tsc_timestamp: tsc,
            system_time: self.system_time_ns(tsc),
            tsc_to_system_mul: self.scale.mul_frac,
            tsc_shift: self.scale.shift,
            // One TSC, invariant, never offset differently per vCPU.
            flags: XEN_PVCLOCK_TSC_STABLE_BIT,
            ..VcpuTimeInfo::default()
        }
    }
}

/// The median of `samples` (sorted in place; the upper one of the two
/// middle values for an even count), `None` if there are none. A rate
/// measured several times keeps its median: a delay that stretched one
/// window (a busy host, an SMI) moves a minimum or a mean, not the median.
pub fn median(samples: &mut [u64]) -> Option<u64> {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn median_ignores_one_stretched_window() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [7]), Some(7));
        assert_eq!(median(&mut [1_000, 400, 1_001]), Some(1_000));
        assert_eq!(median(&mut [5, 1, 9, 3]), Some(5));
    }

    /// ns for `delta` ticks at `hz`, exactly (rounded down), saturated
    /// as [`scale_delta`] saturates.
    fn exact_ns(delta: u64, hz: u64) -> u128 {
        (u128::from(delta) * u128::from(NS_PER_SEC) / u128::from(hz)).min(u64::MAX.into())
    }

    /// Within 2 ns per second (2 ppb) plus 2 ns of rounding.
    fn close(got: u64, want: u128) -> bool {
        u128::from(got).abs_diff(want) <= want / 500_000_000 + 2
    }

    #[test]
    fn clock_counts_from_boot() {
        let wc = WallClock {
            sec: 1_700_000_000,
            nsec: 5,
        };
        let c = Clock::new(2_000_000_000, 1_000, wc).unwrap();
        assert_eq!(c.system_time_ns(1_000), 0);
        assert_eq!(c.system_time_ns(500), 0, "before boot is 0");
        assert_eq!(c.system_time_ns(1_000 + 2_000_000_000), NS_PER_SEC);
        assert_eq!(c.boot_wallclock(), wc);
        let info = c.vcpu_time_info(1_000 + 4_000);
        assert_eq!((info.tsc_timestamp, info.system_time), (5_000, 2_000));
        assert_eq!(info.flags, XEN_PVCLOCK_TSC_STABLE_BIT);
        // A guest reading the pvclock later gets the hypervisor's time.
        let later = 1_000 + 3 * 2_000_000_000;
        assert_eq!(info.system_time_at(later), c.system_time_ns(later));
        assert_eq!(Clock::new(0, 0, wc), None);
        let bad = WallClock {
            sec: 0,
            nsec: u32::try_from(NS_PER_SEC).unwrap(),
        };
        assert_eq!(Clock::new(1, 0, bad), None);
    }

    #[test]
    fn huge_deltas_saturate_instead_of_wrapping() {
        let slow = TimeScale::from_tsc_hz(1).unwrap();
        assert_eq!(scale_delta(u64::MAX, slow), u64::MAX);
        let fast = TimeScale::from_tsc_hz(10_000_000_000).unwrap();
        assert!(close(
            scale_delta(u64::MAX, fast),
            exact_ns(u64::MAX, 10_000_000_000)
        ));
    }

    proptest! {
        /// Accurate for any TSC rate from 100 MHz to 10 GHz and any delta
        /// up to 2^64 - 1 (584 years at 1 GHz): no overflow anywhere.
        #[test]
        fn scale_is_accurate(
            hz in 100_000_000u64..=10_000_000_000,
            delta in prop_oneof![0u64..1 << 40, any::<u64>()],
        ) {
            let scale = TimeScale::from_tsc_hz(hz).unwrap();
            let got = scale_delta(delta, scale);
            let want = exact_ns(delta, hz);
            prop_assert!(close(got, want), "{} Hz, {} ticks: {} ns, want {}", hz, delta, got, want);
        }

        /// The guest's 64-bit formula agrees with ours for deltas a
        /// republished pvclock sees (up to ten seconds).
        #[test]
        fn guest_formula_agrees(hz in 100_000_000u64..=10_000_000_000, secs in 0u64..10, frac in 0u64..1_000_000_000) {
            let c = Clock::new(hz, 77, WallClock::default()).unwrap();
            let info = c.vcpu_time_info(1_000_000);
            let delta = secs * hz + frac % hz;
            let tsc = 1_000_000 + delta;
            prop_assert!(info.system_time_at(tsc).abs_diff(c.system_time_ns(tsc)) <= 2);
        }
    }
}
