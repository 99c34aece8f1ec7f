//! Per-vif limits: the transmit credit (Linux netback's `rate` key,
//! `credit_bytes` per `credit_usec`) and the rate of log lines about one
//! vif's bad requests. Portable; time is the caller's system time in ns.

/// Default credit: unlimited, as Linux's (`rate` absent).
pub const UNLIMITED: u64 = u64::MAX;

/// The transmit credit of one vif: at most `bytes` per `period_ns`. A
/// packet larger than what is left waits for the next period (it is not
/// dropped), as in Linux's `tx_credit_exceeded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    bytes: u64,
    period_ns: u64,
    remaining: u64,
    next_refill: u64,
}

impl Default for Credit {
    fn default() -> Self {
        Self::new(UNLIMITED, 0)
    }
}

impl Credit {
    /// `bytes` per `period_us` microseconds; `bytes` below one frame
    /// would starve the vif, so it is raised to `min_bytes`.
    pub fn with_rate(bytes: u64, period_us: u64, min_bytes: u64) -> Self {
        Self::new(bytes.max(min_bytes), period_us.saturating_mul(1000))
    }

    fn new(bytes: u64, period_ns: u64) -> Self {
        Credit {
            bytes,
            period_ns,
            remaining: bytes,
            next_refill: 0,
        }
    }

    /// The limit, as `(bytes, period in µs)`; `None` if unlimited.
    pub fn rate(&self) -> Option<(u64, u64)> {
        (self.bytes != UNLIMITED).then_some((self.bytes, self.period_ns / 1000))
    }

    /// Spends `size` bytes at `now`; `Err(when)` if the credit is short:
    /// try again at `when`.
    pub fn spend(&mut self, size: u64, now: u64) -> Result<(), u64> {
        if self.bytes == UNLIMITED {
            return Ok(());
        }
        if now >= self.next_refill {
            self.remaining = self.bytes;
            self.next_refill = now.saturating_add(self.period_ns);
        }
        if size > self.remaining {
            return Err(self.next_refill);
        }
        self.remaining -= size;
        Ok(())
    }
}

/// Parses the backend's `rate` node as Linux's `xen_net_read_rate`:
/// `"<bytes>,<usec>"`; `None` (unlimited) for anything else or a zero.
pub fn parse_rate(value: &[u8]) -> Option<(u64, u64)> {
    let text = core::str::from_utf8(value).ok()?;
    let (bytes, usec) = text.trim().split_once(',')?;
    let (bytes, usec) = (bytes.parse().ok()?, usec.parse().ok()?);
    (bytes > 0 && usec > 0).then_some((bytes, usec))
}

/// Log lines per vif per window, at most.
pub const LOG_BURST: u32 = 5;
/// The log window, ns.
pub const LOG_WINDOW_NS: u64 = 5_000_000_000;

/// Limits the log lines about one vif: [`LOG_BURST`] per
/// [`LOG_WINDOW_NS`]; the rest are counted and reported with the next
/// line let through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogLimit {
    window_end: u64,
    printed: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether a line may be printed at `now`; if so, how many were
    /// suppressed since the last one printed.
    pub fn allow(&mut self, now: u64) -> Option<u64> {
        if now >= self.window_end {
            self.window_end = now.saturating_add(LOG_WINDOW_NS);
            self.printed = 0;
        }
        if self.printed >= LOG_BURST {
            self.suppressed += 1;
            return None;
        }
        self.printed += 1;
        Some(core::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let mut c = Credit::default();
        assert_eq!(c.rate(), None);
        for _ in 0..1000 {
            assert_eq!(c.spend(65535, 0), Ok(()));
        }
    }

    #[test]
    fn a_short_credit_waits_for_the_next_period() {
        let mut c = Credit::with_rate(3000, 1000, 1518);
        assert_eq!(c.rate(), Some((3000, 1000)));
        assert_eq!(c.spend(1500, 10), Ok(()));
        assert_eq!(c.spend(1500, 20), Ok(()));
        assert_eq!(c.spend(1, 30), Err(1_000_010));
        assert_eq!(c.spend(1, 1_000_009), Err(1_000_010));
        assert_eq!(c.spend(1500, 1_000_010), Ok(()));
    }

    #[test]
    fn a_credit_below_one_frame_is_raised() {
        let mut c = Credit::with_rate(10, 1000, 1518);
        assert_eq!(c.spend(1518, 0), Ok(()));
    }

    #[test]
    fn rate_parses_as_linux_reads_it() {
        assert_eq!(parse_rate(b"10000,20000"), Some((10000, 20000)));
        assert_eq!(parse_rate(b" 5,1\n"), Some((5, 1)));
        assert_eq!(parse_rate(b"0,100"), None);
        assert_eq!(parse_rate(b"100"), None);
        assert_eq!(parse_rate(b"x,1"), None);
    }

    #[test]
    fn log_lines_are_limited_per_window_and_the_rest_counted() {
        let mut l = LogLimit::default();
        for _ in 0..LOG_BURST {
            assert_eq!(l.allow(1), Some(0));
        }
        assert_eq!(l.allow(2), None);
        assert_eq!(l.allow(3), None);
        assert_eq!(l.allow(1 + LOG_WINDOW_NS), Some(2));
    }
}
