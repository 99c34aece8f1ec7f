//! Scheduling: per-vCPU counters, the credit scheduler's weight and cap,
//! vCPU affinity. Added in 1.4.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{ControlHeader, MAX_VCPUS_SUPPORTED};

/// [`VcpuStats::state`]: not started, or stopped (`xl vcpu-list` `---`).
pub const VCPU_STATE_DOWN: u32 = 0;
/// Waiting for a pCPU.
pub const VCPU_STATE_RUNNABLE: u32 = 1;
/// Waiting for an event or its timer (`-b-`).
pub const VCPU_STATE_BLOCKED: u32 = 2;
/// On a pCPU now (`r--`): the caller's own vCPU, with one pCPU.
pub const VCPU_STATE_RUNNING: u32 = 3;
/// Up, but its domain is paused, shut down or dying (`--p`).
pub const VCPU_STATE_PAUSED: u32 = 4;

/// [`VcpuStats::priority`]: the credit scheduler's OVER (credit spent).
pub const SCHED_PRI_OVER: u32 = 0;
/// UNDER (credit left).
pub const SCHED_PRI_UNDER: u32 = 1;
/// BOOST (woke while UNDER).
pub const SCHED_PRI_BOOST: u32 = 2;

/// [`VcpuStats::flags`]: parked, its domain spent its cap.
pub const VCPU_FLAG_PARKED: u32 = 1 << 0;

/// [`VcpuStats::pcpu`] of a vCPU that never ran.
pub const PCPU_NONE: u32 = u32::MAX;

/// [`SchedCreditRequest::weight`]: leave the weight as it is.
pub const SCHED_WEIGHT_UNCHANGED: u16 = 0;
/// [`SchedCreditRequest::cap`]: leave the cap as it is (xl's
/// `LIBXL_DOMAIN_SCHED_PARAM_CAP_DEFAULT`, -1 as a `u16`).
pub const SCHED_CAP_UNCHANGED: u16 = u16::MAX;

/// One vCPU's state and counters since its domain was created, 80 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuStats {
    /// Its id in the domain.
    pub vcpu_id: u32,
    /// `VCPU_STATE_*`.
    pub state: u32,
    /// The pCPU it runs or last ran on; [`PCPU_NONE`] if it never ran.
    pub pcpu: u32,
    /// `SCHED_PRI_*`.
    pub priority: u32,
    /// Credit (10 per ms of CPU; negative when spent).
    pub credit: i32,
    /// `VCPU_FLAG_*`.
    pub flags: u32,
    /// Hard affinity: bit n for pCPU n.
    pub affinity: u64,
    /// CPU time it used, ns of hypervisor system time.
    pub cpu_time_ns: u64,
    /// Its VM exits.
    pub exits: u64,
    /// Its hypercalls.
    pub hypercalls: u64,
    /// Events that became pending for it.
    pub events: u64,
    /// Times it woke (blocked, paused or down before).
    pub wakes: u64,
    /// Times it was given a pCPU another vCPU or idle had.
    pub runs: u64,
}

/// Response of [`CONTROL_OP_GET_VCPU_STATS`](super::CONTROL_OP_GET_VCPU_STATS),
/// 656 bytes. Per-domain exits by code and hypercalls by number are
/// `GET_STATS`'s.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuStatsResponse {
    /// The hypervisor's system time when the counters were read, ns:
    /// rates are differences of counters over differences of this.
    pub system_time_ns: u64,
    /// Credit scheduler weight.
    pub weight: u16,
    /// Credit scheduler cap, percent of one pCPU; 0: none.
    pub cap: u16,
    /// Valid entries at the start of `vcpus`.
    pub nr_vcpus: u32,
    /// The vCPUs, by id.
    pub vcpus: [VcpuStats; MAX_VCPUS_SUPPORTED as usize],
}

/// Request of [`CONTROL_OP_SCHED_CREDIT`](super::CONTROL_OP_SCHED_CREDIT)
/// (Xen's `XEN_DOMCTL_SCHEDOP_putinfo`/`getinfo` for credit), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedCreditRequest {
    /// Interface version.
    pub header: ControlHeader,
    /// The domain.
    pub domid: u16,
    /// New weight, 1..=65535; [`SCHED_WEIGHT_UNCHANGED`] keeps it.
    pub weight: u16,
    /// New cap, percent of one pCPU, 0 (none) ..= 100 × pCPUs;
    /// [`SCHED_CAP_UNCHANGED`] keeps it; above: `-EINVAL`.
    pub cap: u16,
    /// Must be zero.
    pub pad: u16,
}

impl SchedCreditRequest {
    /// A request setting `domid`'s `weight` and `cap` (the
    /// `SCHED_*_UNCHANGED` values keep them).
    pub const fn new(domid: u16, weight: u16, cap: u16) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            weight,
            cap,
            pad: 0,
        }
    }
}

/// Response of `CONTROL_OP_SCHED_CREDIT`: the values now, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedCreditInfo {
    /// Weight.
    pub weight: u16,
    /// Cap, percent of one pCPU; 0: none.
    pub cap: u16,
    /// Zero.
    pub pad: u32,
}

/// Request of [`CONTROL_OP_SET_VCPU_AFFINITY`](super::CONTROL_OP_SET_VCPU_AFFINITY)
/// (Xen's `XEN_DOMCTL_setvcpuaffinity`, hard affinity), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuAffinityRequest {
    /// Interface version.
    pub header: ControlHeader,
    /// The domain.
    pub domid: u16,
    /// Must be zero.
    pub pad: u16,
    /// The vCPU: below the domain's vCPU count (`-EINVAL`).
    pub vcpu_id: u32,
    /// pCPUs it may run on, bit n for pCPU n; must name an online one
    /// (`-EINVAL`).
    pub affinity: u64,
}

impl VcpuAffinityRequest {
    /// A request pinning `domid`'s `vcpu_id` to the pCPUs in `affinity`.
    pub const fn new(domid: u16, vcpu_id: u32, affinity: u64) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: 0,
            vcpu_id,
            affinity,
        }
    }
}

/// Response of `CONTROL_OP_SET_VCPU_AFFINITY`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuAffinityResponse {
    /// The affinity in effect: the requested pCPUs that are online.
    pub effective: u64,
}
