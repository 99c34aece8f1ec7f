//! What the scheduler keeps with each domain and vCPU (Xen's `csched_dom`
//! and `csched_unit`): the operator's weight and cap, each vCPU's hard
//! affinity, and the credit state the [`super::Credit`] scheduler keeps.
//! Held by the [`Domain`](crate::domain::Domain), so it lives and dies
//! with it and the control ops read and set it without the run loop.

use abi::xen::errno::Errno;

use crate::domain::MAX_VCPUS;

/// Most pCPUs a [`CpuMask`] names (and the hypervisor would drive).
pub const MAX_PCPUS: u32 = 64;
/// A domain's weight unless the operator set one (Xen's
/// `CSCHED_DEFAULT_WEIGHT`).
pub const DEFAULT_WEIGHT: u16 = 256;
/// Smallest weight (Xen: `1..=65535`; `xl sched-credit -w`).
pub const MIN_WEIGHT: u16 = 1;
/// Cap percent meaning "no cap" (Xen's `cap == 0`).
pub const NO_CAP: u16 = 0;

/// A set of pCPUs, bit `n` for pCPU `n` (Xen's `cpumask_t`, here at
/// most [`MAX_PCPUS`] wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuMask(pub u64);

impl CpuMask {
    /// Every pCPU (a vCPU's affinity until it is pinned).
    pub const ALL: CpuMask = CpuMask(u64::MAX);

    /// The pCPUs `0..n` (the online ones, when `n` is the pCPU count).
    pub fn first(n: u32) -> CpuMask {
        match n {
            0 => CpuMask(0),
            n if n >= MAX_PCPUS => CpuMask::ALL,
            n => CpuMask((1u64 << n) - 1),
        }
    }

    /// Whether pCPU `cpu` is in the set.
    pub fn contains(self, cpu: u32) -> bool {
        cpu < MAX_PCPUS && self.0 & (1 << cpu) != 0
    }

    /// The pCPUs in both sets.
    pub fn and(self, other: CpuMask) -> CpuMask {
        CpuMask(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with pCPU `cpu` added (unchanged past [`MAX_PCPUS`]).
    #[must_use]
    pub fn with(self, cpu: u32) -> CpuMask {
        CpuMask(self.0 | 1u64.checked_shl(cpu).unwrap_or(0))
    }

    /// The set without pCPU `cpu`.
    #[must_use]
    pub fn without(self, cpu: u32) -> CpuMask {
        CpuMask(self.0 & !1u64.checked_shl(cpu).unwrap_or(0))
    }

    /// The pCPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..MAX_PCPUS).filter(move |cpu| self.contains(*cpu))
    }
}

/// Credit1's priorities, lowest first (Xen's `CSCHED_PRI_TS_*`): the run
/// queue is ordered by them, first in first out within one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Has spent its credit (credit < 0).
    Over,
    /// Has credit left.
    Under,
    /// Woke from a block while UNDER: runs before the others until its
    /// next accounting tick finds it running.
    Boost,
}

/// One vCPU's scheduling state (Xen's `csched_unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Hard affinity: the pCPUs it may run on (`xl vcpu-pin`).
    pub affinity: CpuMask,
    /// Credit: 10 per ms of fair share earned, 10 per ms of CPU spent
    /// (Xen's `CSCHED_CREDITS_PER_MSEC`).
    pub credit: i32,
    /// Time charged but below one credit, in ns·credits/ms (Xen's
    /// `residual`).
    pub(super) residual: u64,
    /// Its place in the run queue's order.
    pub priority: Priority,
    /// Its domain went past its cap: it does not run until accounting
    /// gives its credit back (Xen's `CSCHED_FLAG_UNIT_PARKED`).
    pub parked: bool,
    /// On the accounting list: it earns credit (Xen's `active_unit`).
    pub(super) active: bool,
    /// Runnable when the scheduler last looked: on its run queue (or on
    /// its pCPU).
    pub(super) queued: bool,
    /// When it joined its run queue: first in, first out within a
    /// priority.
    pub(super) seq: u64,
    /// The pCPU it last ran on, if it ever ran (Xen's `processor`): the
    /// run queue it waits in.
    pub pcpu: Option<u32>,
    /// It is some pCPU's current vCPU now (on `pcpu`): what `vcpu-list`
    /// shows as running.
    pub running: bool,
    /// Times it woke from blocked, paused or down.
    pub wakes: u64,
    /// Times it was given a pCPU.
    pub runs: u64,
}

impl Unit {
    const fn new() -> Self {
        Self {
            affinity: CpuMask::ALL,
            credit: 0,
            residual: 0,
            priority: Priority::Under,
            parked: false,
            active: false,
            queued: false,
            seq: 0,
            pcpu: None,
            running: false,
            wakes: 0,
            runs: 0,
        }
    }
}

/// A domain's scheduling parameters and its vCPUs' units (Xen's
/// `csched_dom`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSched {
    weight: u16,
    cap: u16,
    units: [Unit; MAX_VCPUS],
}

impl Default for DomainSched {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainSched {
    /// Weight [`DEFAULT_WEIGHT`], no cap, every vCPU free to run anywhere.
    pub const fn new() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            cap: NO_CAP,
            units: [Unit::new(); MAX_VCPUS],
        }
    }

    /// Its share of CPU relative to other domains'.
    pub fn weight(&self) -> u16 {
        self.weight
    }

    /// Most CPU it may use, percent of one pCPU; [`NO_CAP`] for none.
    pub fn cap(&self) -> u16 {
        self.cap
    }

    /// Sets the weight (`-EINVAL` below [`MIN_WEIGHT`]) and the cap
    /// (`-EINVAL` above 100 per pCPU of `nr_pcpus`), all or nothing.
    /// `None` leaves one as it is (Xen's `xl sched-credit` defaults).
    pub fn set(
        &mut self,
        weight: Option<u16>,
        cap: Option<u16>,
        nr_pcpus: u32,
    ) -> Result<(), Errno> {
        if weight.is_some_and(|w| w < MIN_WEIGHT) {
            return Err(Errno::EINVAL);
        }
        if cap.is_some_and(|c| u32::from(c) > nr_pcpus.saturating_mul(100)) {
            return Err(Errno::EINVAL);
        }
        self.weight = weight.unwrap_or(self.weight);
        self.cap = cap.unwrap_or(self.cap);
        Ok(())
    }

    /// vCPU `id`'s unit.
    pub fn unit(&self, id: u32) -> Option<&Unit> {
        self.units.get(usize::try_from(id).ok()?)
    }

    pub(super) fn unit_mut(&mut self, id: u32) -> Option<&mut Unit> {
        self.units.get_mut(usize::try_from(id).ok()?)
    }

    /// Pins vCPU `id` to `affinity` (Xen's `vcpu_set_hard_affinity`):
    /// `-EINVAL` if it names no pCPU of `online` (it could never run) or
    /// `id` is not one of the domain's `nr_vcpus`. Returns the effective
    /// affinity: the pCPUs of `affinity` that are online.
    pub fn set_affinity(
        &mut self,
        id: u32,
        nr_vcpus: u32,
        affinity: CpuMask,
        online: CpuMask,
    ) -> Result<CpuMask, Errno> {
        if id >= nr_vcpus {
            return Err(Errno::EINVAL);
        }
        let effective = affinity.and(online);
        if effective.is_empty() {
            return Err(Errno::EINVAL);
        }
        self.unit_mut(id).ok_or(Errno::EINVAL)?.affinity = affinity;
        Ok(effective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(CpuMask::first(0), CpuMask(0));
        assert_eq!(CpuMask::first(3), CpuMask(0b111));
        assert_eq!(CpuMask::first(64), CpuMask::ALL);
        assert!(CpuMask(0b100).contains(2));
        assert!(!CpuMask::ALL.contains(64));
        assert_eq!(CpuMask(0b1).with(3).without(0), CpuMask(0b1000));
        assert_eq!(CpuMask(0).with(64), CpuMask(0));
        assert_eq!(CpuMask(0b1010).iter().collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn weight_and_cap_are_checked_all_or_nothing() {
        let mut s = DomainSched::new();
        assert_eq!(s.set(Some(0), Some(10), 1), Err(Errno::EINVAL));
        assert_eq!(s.set(Some(512), Some(101), 1), Err(Errno::EINVAL));
        assert_eq!((s.weight(), s.cap()), (DEFAULT_WEIGHT, NO_CAP));
        assert_eq!(s.set(Some(512), None, 1), Ok(()));
        assert_eq!(s.set(None, Some(200), 2), Ok(()));
        assert_eq!((s.weight(), s.cap()), (512, 200));
    }

    #[test]
    fn affinity_must_name_an_online_pcpu() {
        let mut s = DomainSched::new();
        let online = CpuMask::first(1);
        assert_eq!(
            s.set_affinity(0, 2, CpuMask(0b10), online),
            Err(Errno::EINVAL)
        );
        assert_eq!(s.set_affinity(2, 2, CpuMask(1), online), Err(Errno::EINVAL));
        assert_eq!(s.set_affinity(1, 2, CpuMask(0b11), online), Ok(CpuMask(1)));
        assert_eq!(s.unit(1).map(|u| u.affinity), Some(CpuMask(0b11)));
    }
}
