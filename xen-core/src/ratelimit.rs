//! A token bucket, as Xen's `__printk_ratelimit` (xen/drivers/char/
//! console.c): tokens accrue with time up to a cap, each message costs
//! some, and a message that finds too few is suppressed and counted; the
//! next one allowed learns how many were missed.
#![forbid(unsafe_code)]

/// Limits messages (or bytes) per unit of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Most tokens the bucket holds: the burst.
    capacity: u64,
    /// Tokens gained per millisecond.
    per_ms: u64,
    tokens: u64,
    last_ms: u64,
    missed: u64,
}

impl RateLimit {
    /// A full bucket of `capacity` tokens that gains `per_ms` a
    /// millisecond.
    pub const fn new(capacity: u64, per_ms: u64) -> Self {
        Self {
            capacity,
            per_ms,
            tokens: capacity,
            last_ms: 0,
            missed: 0,
        }
    }

    /// Xen's `printk_ratelimit`: one message per `interval_ms`, bursts of
    /// up to `burst` messages (tokens are milliseconds).
    pub const fn messages(interval_ms: u64, burst: u64) -> Self {
        Self::new(interval_ms * burst, 1)
    }

    /// Takes `cost` tokens at time `now_ms` (milliseconds; a clock that
    /// goes backwards adds nothing). `Some(missed)`: allowed, and
    /// `missed` messages were suppressed since the last one allowed;
    /// `None`: suppressed (and counted).
    pub fn take(&mut self, now_ms: u64, cost: u64) -> Option<u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(self.per_ms))
            .min(self.capacity);
        if self.tokens >= cost {
            self.tokens -= cost;
            Some(core::mem::take(&mut self.missed))
        } else {
            self.missed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printk_ratelimit_allows_a_burst_then_one_per_interval() {
        let mut limit = RateLimit::messages(5_000, 10);
        for _ in 0..10 {
            assert_eq!(limit.take(1_000, 5_000), Some(0));
        }
        assert_eq!(limit.take(1_000, 5_000), None);
        assert_eq!(limit.take(5_999, 5_000), None);
        // 5 s after the burst: one more, reporting the two suppressed.
        assert_eq!(limit.take(6_000, 5_000), Some(2));
        assert_eq!(limit.take(6_000, 5_000), None);
    }

    #[test]
    fn tokens_are_capped_at_the_burst() {
        let mut limit = RateLimit::new(100, 1);
        assert_eq!(limit.take(1_000_000, 100), Some(0));
        assert_eq!(limit.take(1_000_000, 1), None);
        assert_eq!(limit.take(1_000_050, 50), Some(1));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut limit = RateLimit::new(10, 1);
        assert_eq!(limit.take(100, 10), Some(0));
        assert_eq!(limit.take(50, 1), None);
        assert_eq!(limit.take(100, 1), None);
        assert_eq!(limit.take(101, 1), Some(2));
    }
}
