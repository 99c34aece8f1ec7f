//! Per-domain statistics: VM exits by exit code, hypercalls by number.
//! Both are fixed-size, with an overflow bucket for what does not fit.
//! Per-vCPU totals of exits, hypercalls and events ([`VcpuCounters`]).
//! Each costs an increment where it happens, nothing else.

/// Distinct exit codes counted one by one; others go to the overflow.
pub const EXIT_CODE_SLOTS: usize = 32;
/// Hypercall numbers counted one by one (Xen's `NR_hypercalls`).
pub const HYPERCALL_SLOTS: usize = 64;

/// One vCPU's totals since its domain was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuCounters {
    /// VM exits.
    pub exits: u64,
    /// Hypercalls it made.
    pub hypercalls: u64,
    /// Events that became pending for it (ports it is notified for).
    pub events: u64,
}

impl VcpuCounters {
    pub(super) const fn new() -> Self {
        Self {
            exits: 0,
            hypercalls: 0,
            events: 0,
        }
    }
}

/// VM exits by SVM exit code (AMD APM vol 2 appendix C).
#[derive(Clone, Debug)]
pub struct ExitCounters {
    slots: [(u64, u64); EXIT_CODE_SLOTS],
    used: usize,
    other: u64,
}

impl ExitCounters {
    pub(super) const fn new() -> Self {
        Self {
            slots: [(0, 0); EXIT_CODE_SLOTS],
            used: 0,
            other: 0,
        }
    }

    /// Counts one exit with `code`.
    pub fn record(&mut self, code: u64) {
        let used = &mut self.slots[..self.used];
        if let Some(slot) = used.iter_mut().find(|(c, _)| *c == code) {
            slot.1 = slot.1.saturating_add(1);
        } else if let Some(slot) = self.slots.get_mut(self.used) {
            *slot = (code, 1);
            self.used += 1;
        } else {
            self.other = self.other.saturating_add(1);
        }
    }

    /// (exit code, count) in order of first occurrence.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots[..self.used].iter().copied()
    }

    /// Exits whose code found no free slot.
    pub fn other(&self) -> u64 {
        self.other
    }
}

/// Hypercalls by number.
#[derive(Clone, Debug)]
pub struct HypercallCounters {
    by_nr: [u64; HYPERCALL_SLOTS],
    other: u64,
}

impl HypercallCounters {
    pub(super) const fn new() -> Self {
        Self {
            by_nr: [0; HYPERCALL_SLOTS],
            other: 0,
        }
    }

    /// Counts one hypercall `nr` (any value the guest put in RAX).
    pub fn record(&mut self, nr: u64) {
        let slot = usize::try_from(nr).ok().and_then(|i| self.by_nr.get_mut(i));
        let count = slot.unwrap_or(&mut self.other);
        *count = count.saturating_add(1);
    }

    /// (hypercall number, count) for the numbers called at least once.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0u64..)
            .zip(self.by_nr.iter().copied())
            .filter(|(_, n)| *n != 0)
    }

    /// Calls with a number of [`HYPERCALL_SLOTS`] or more.
    pub fn other(&self) -> u64 {
        self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_overflow_into_other() {
        let mut c = ExitCounters::new();
        c.record(0x81);
        c.record(0x81);
        c.record(0x400);
        for code in 0..EXIT_CODE_SLOTS as u64 + 5 {
            c.record(0x1000 + code);
        }
        assert_eq!(c.iter().next(), Some((0x81, 2)));
        assert_eq!(c.iter().nth(1), Some((0x400, 1)));
        assert_eq!(c.iter().count(), EXIT_CODE_SLOTS);
        assert_eq!(c.other(), 7);
    }

    #[test]
    fn hypercalls_by_number() {
        let mut c = HypercallCounters::new();
        c.record(18);
        c.record(18);
        c.record(29);
        c.record(64);
        c.record(u64::MAX);
        assert_eq!(c.iter().collect::<Vec<_>>(), [(18, 2), (29, 1)]);
        assert_eq!(c.other(), 2);
    }
}
