//! The APIC timer's schedule (Xen's `vlapic_update_timer`,
//! `vlapic_get_tmcct` and `vlapic_tdt_msr_set` over its periodic-time
//! machinery): when it next fires, how often, and since when it counts.
//! The run loop fires it through [`super::Vlapic::expire_timer`] next to
//! the vCPU's one-shot Xen timer.

use super::Now;

/// The shortest period a periodic timer gets (Xen's
/// `create_periodic_time` raises shorter ones to 100 µs): bounds the
/// interrupts a guest can make the host emulate.
pub const MIN_PERIOD_NS: u64 = 100_000;

const NS_PER_SEC: u128 = 1_000_000_000;

/// The timer's schedule; all times in ns of system time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Timer {
    /// When it next fires.
    deadline: Option<u64>,
    /// Re-arm interval; 0 for one-shot and TSC-deadline.
    period: u64,
    /// When the current count started (Xen's `timer_last_update`);
    /// `None` once stopped, so TMCCT reads 0.
    since: Option<u64>,
    /// IA32_TSC_DEADLINE's armed value; 0 when disarmed or fired.
    pub tdt: u64,
}

impl Timer {
    pub fn deadline_ns(&self) -> Option<u64> {
        self.deadline
    }

    pub fn stop(&mut self) {
        *self = Self::default();
    }

    /// A TMICT write: counts `period_ns` from now (0 stops it).
    pub fn start(&mut self, period_ns: u64, periodic: bool, now_ns: u64) {
        self.arm(period_ns, period_ns, periodic, now_ns);
    }

    /// Fires after `delta` and then every `period` if `periodic`.
    fn arm(&mut self, delta: u64, period: u64, periodic: bool, now_ns: u64) {
        if delta == 0 {
            self.stop();
            return;
        }
        let period = if periodic {
            period.max(MIN_PERIOD_NS)
        } else {
            0
        };
        self.deadline = Some(now_ns.saturating_add(delta));
        self.period = period;
        // Where the count stands: `delta` before its end.
        self.since = Some(
            now_ns
                .saturating_add(delta)
                .saturating_sub(period.max(delta)),
        );
        self.tdt = 0;
    }

    /// The time left in the current count, or `None` if it is not
    /// counting (Xen: `delta` in `vlapic_update_timer`).
    fn remaining(&self, now_ns: u64) -> Option<u64> {
        self.deadline.map(|d| d.saturating_sub(now_ns))
    }

    /// LVTT's mode changed to `mode` with the same count of `period_ns`:
    /// the count goes on in the new mode (Xen's `vlapic_update_timer`
    /// with `tmict_updated` false); TSC-deadline mode stops it.
    pub fn mode_changed(&mut self, mode: u32, period_ns: u64, now_ns: u64) {
        use super::regs::{TIMER_ONESHOT, TIMER_PERIODIC};
        match (self.remaining(now_ns), mode) {
            (Some(left), TIMER_ONESHOT | TIMER_PERIODIC) if self.tdt == 0 => {
                self.arm(left.max(1), period_ns, mode == TIMER_PERIODIC, now_ns)
            }
            (_, TIMER_ONESHOT | TIMER_PERIODIC) => self.stop(),
            // Entering or staying in TSC-deadline mode keeps an armed TDT.
            _ if self.tdt != 0 => {}
            _ => self.stop(),
        }
    }

    /// TDCR changed the divisor from `old` to `new`: the rest of the
    /// count scales with it (Xen's `vlapic_update_timer`).
    pub fn rescale(&mut self, old: u32, new: u32, now_ns: u64) {
        let Some(left) = self.remaining(now_ns) else {
            return;
        };
        let scale = |ns: u64| {
            let scaled = u128::from(ns) * u128::from(new) / u128::from(old.max(1));
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        let periodic = self.period != 0;
        self.arm(scale(left).max(1), scale(self.period), periodic, now_ns);
    }

    /// TMCCT: the count left of `tmict`, at `divisor` ns per count (Xen's
    /// `vlapic_get_tmcct`).
    pub fn current_count(&self, tmict: u32, divisor: u32, now_ns: u64) -> u32 {
        let Some(since) = self.since else {
            return 0;
        };
        let mut passed = now_ns.saturating_sub(since) / u64::from(divisor.max(1));
        if self.period != 0 && tmict != 0 {
            passed %= u64::from(tmict);
        }
        // passed < tmict here or the result is 0: it fits.
        u32::try_from(u64::from(tmict).saturating_sub(passed)).unwrap_or(0)
    }

    /// An IA32_TSC_DEADLINE write (Xen's `vlapic_tdt_msr_set`): a future
    /// TSC arms it; a past one fires at once; 0 disarms.
    pub fn set_tsc_deadline(&mut self, value: u64, now: Now) {
        if value > now.guest_tsc {
            let ticks = u128::from(value - now.guest_tsc);
            let ns = ticks * NS_PER_SEC / u128::from(now.tsc_hz.max(1));
            let ns = u64::try_from(ns).unwrap_or(u64::MAX);
            *self = Self {
                deadline: Some(now.ns.saturating_add(ns.max(1))),
                period: 0,
                since: None,
                tdt: value,
            };
        } else if value > 0 {
            *self = Self {
                deadline: Some(now.ns),
                ..Self::default()
            };
        } else {
            self.stop();
        }
    }

    /// Whether the timer is due at `now_ns`; if so, a periodic one
    /// re-arms at its next period after `now_ns` (ticks missed while the
    /// vCPU did not run are dropped, one interrupt stands for them),
    /// the others stop.
    pub fn expire(&mut self, now_ns: u64) -> bool {
        match self.deadline {
            Some(d) if d <= now_ns => {
                if let Some(missed) = (now_ns - d).checked_div(self.period) {
                    let missed = missed + 1;
                    let next = d.saturating_add(missed.saturating_mul(self.period));
                    self.deadline = Some(next);
                    self.since = Some(next - self.period);
                } else {
                    self.deadline = None;
                    self.tdt = 0;
                }
                true
            }
            _ => false,
        }
    }
}
