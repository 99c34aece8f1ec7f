//! [`Scrubbed`]: a load target over memory that reads zero until written.

use crate::{GuestLoadTarget, LoadFault};

/// Most writes [`Scrubbed`] remembers; past that it zeroes all it is
/// asked to (always correct, only slower).
pub const MAX_TRACKED_WRITES: usize = 16;

/// The builder's target over a domain's memory that was scrubbed as it
/// was populated (xen-core's `Domain::populate*`, which boot domains and
/// the toolstack's `populate` both go through): bytes nothing has written
/// since are zero already, so [`GuestLoadTarget::zero`] clears only what
/// an earlier write of this build covered, not the whole `.bss` again
/// (dom0's is a 24 MiB heap; for the toolstack it also saves mapping the
/// `.bss` into dom0). The builder refuses overlapping segments, so that
/// is nothing today; the check keeps this target right on its own.
pub struct Scrubbed<T> {
    inner: T,
    /// `[start, end)` of every write so far.
    written: heapless::Vec<(u64, u64), MAX_TRACKED_WRITES>,
    /// A write could not be recorded: zero everything asked.
    untracked: bool,
}

impl<T: GuestLoadTarget> Scrubbed<T> {
    /// `inner`, whose memory reads zero wherever nothing wrote yet.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            written: heapless::Vec::new(),
            untracked: false,
        }
    }

    /// The target written through.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: GuestLoadTarget> GuestLoadTarget for Scrubbed<T> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        let end = gpa.saturating_add(bytes.len() as u64);
        if self.written.push((gpa, end)).is_err() {
            self.untracked = true;
        }
        self.inner.write(gpa, bytes)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        if self.untracked {
            return self.inner.zero(gpa, len);
        }
        let end = gpa.saturating_add(len);
        for &(start, stop) in &self.written {
            let (from, to) = (start.max(gpa), stop.min(end));
            if from < to {
                self.inner.zero(from, to - from)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Records every zeroing it is asked for.
    #[derive(Default)]
    struct Log {
        zeroed: Vec<(u64, u64)>,
    }

    impl GuestLoadTarget for Log {
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), LoadFault> {
            Ok(())
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
            self.zeroed.push((gpa, len));
            Ok(())
        }
    }

    #[test]
    fn zeroes_only_what_was_written() {
        let mut t = Scrubbed::new(Log::default());
        t.write(0x1000, &[1; 0x100]).unwrap();
        t.zero(0x1080, 0x1000).unwrap();
        t.zero(0x3000, 0x1000).unwrap();
        assert_eq!(t.inner_mut().zeroed, [(0x1080, 0x80)]);
    }

    #[test]
    fn zeroes_everything_once_writes_are_untracked() {
        let mut t = Scrubbed::new(Log::default());
        for i in 0..=MAX_TRACKED_WRITES as u64 {
            t.write(i * 0x10, &[1]).unwrap();
        }
        t.zero(0x9000, 0x10).unwrap();
        assert_eq!(t.inner_mut().zeroed, [(0x9000, 0x10)]);
    }
}
