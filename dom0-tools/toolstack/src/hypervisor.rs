//! What the toolstack needs from the hypervisor: our control ABI
//! ([`abi::control`], dom0 only) plus the Xen operations dom0 performs on
//! another domain (`EVTCHNOP_alloc_unbound` and `HVMOP_set_param` with a
//! foreign `dom`). A trait, so that the toolstack runs in dom0 over
//! hypercalls (`dom0-tools/dom0/src/hv.rs`), under host tests over a fake,
//! and later behind a privcmd-style transport in a Linux dom0.
//!
//! Every error is the hypervisor's Xen errno; see each operation's
//! `CONTROL_OP_*` documentation in [`abi::control`] for which it returns.

use abi::control::{
    DomainInfo, DomainStats, ListResponse, Physinfo, SchedCreditInfo, VcpuHvmX86_32,
    VcpuStatsResponse, DOMAIN_NAME_MAX,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::memory::E820Entry;

/// The control operations, foreign mapping, and the Xen operations dom0
/// performs on other domains.
pub trait Hypervisor {
    /// A range of another domain's frames mapped into the caller by
    /// [`Hypervisor::map_foreign`]; given back to
    /// [`Hypervisor::unmap_foreign`].
    type Mapping;

    /// `CONTROL_OP_PHYSINFO`: host facts, free memory among them.
    fn physinfo(&mut self) -> Result<Physinfo, Errno>;

    /// `CONTROL_OP_GETINFO` of `domid`.
    fn domain_info(&mut self, domid: DomId) -> Result<DomainInfo, Errno>;

    /// `CONTROL_OP_LIST`: up to `LIST_BATCH_MAX` domains with id >=
    /// `start_domid`, and the cursor for the next batch.
    fn domain_list(&mut self, start_domid: DomId) -> Result<ListResponse, Errno>;

    /// `CONTROL_OP_GET_STATS` of `domid`.
    fn domain_stats(&mut self, domid: DomId) -> Result<DomainStats, Errno>;

    /// `CONTROL_OP_GET_VCPU_STATS` of `domid`: per-vCPU state and
    /// counters, weight and cap, and the system time they were read at.
    fn vcpu_stats(&mut self, domid: DomId) -> Result<VcpuStatsResponse, Errno>;

    /// `CONTROL_OP_SCHED_CREDIT`: sets `domid`'s weight and cap
    /// (`SCHED_WEIGHT_UNCHANGED`/`SCHED_CAP_UNCHANGED` keep them);
    /// returns the values now. `-EINVAL`: out of range, nothing set.
    fn sched_credit(
        &mut self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<SchedCreditInfo, Errno>;

    /// `CONTROL_OP_SET_VCPU_AFFINITY`: pins `domid`'s vCPU `vcpu_id` to
    /// the pCPUs in `affinity`; returns the effective (online) ones.
    /// `-EINVAL`: no such vCPU, or no online pCPU in `affinity`.
    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, Errno>;

    /// `CONTROL_OP_CREATE`: a new domain, paused, without memory (limit
    /// `max_memory_kib`) and with `vcpus` vCPUs, none up. `-EEXIST`: the
    /// name is taken; `-ENOSPC`: no free domid or table slot.
    fn create(
        &mut self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        vcpus: u32,
    ) -> Result<DomId, Errno>;

    /// `CONTROL_OP_DESTROY`: stops the domain and frees everything it holds.
    /// One call: the hypervisor does the work in slices through hypercall
    /// continuations, which the caller's VMMCALL re-executes unseen.
    fn destroy(&mut self, domid: DomId) -> Result<(), Errno>;

    /// `CONTROL_OP_PAUSE`.
    fn pause(&mut self, domid: DomId) -> Result<(), Errno>;

    /// `CONTROL_OP_UNPAUSE`.
    fn unpause(&mut self, domid: DomId) -> Result<(), Errno>;

    /// `CONTROL_OP_SET_MAX_MEM`: the most memory `domid` may own from
    /// now on, KiB (Xen's `xc_domain_setmaxmem`); it may be below what
    /// it holds. `-EINVAL`: above the hypervisor's per-domain limit.
    fn set_max_mem(&mut self, domid: DomId, max_memory_kib: u64) -> Result<(), Errno>;

    /// `CONTROL_OP_POPULATE_MEMORY`: zeroed frames at GFNs
    /// `first_gfn..first_gfn + nr_frames`; `1..=POPULATE_MAX_FRAMES`
    /// frames. A refused request changes nothing; only a host that runs
    /// out of frames between the hypervisor's slices leaves part of the
    /// range populated (`-ENOMEM`): the builder then destroys the domain.
    fn populate(&mut self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<(), Errno>;

    /// `CONTROL_OP_MAP_FOREIGN`: maps `domid`'s GFNs `first_gfn..+nr_frames`
    /// (`1..=MAP_MAX_FRAMES`) writable into the caller, at GFNs the
    /// implementation chooses. An implementation may hold only one
    /// mapping at a time (the builder never holds more).
    fn map_foreign(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
    ) -> Result<Self::Mapping, Errno>;

    /// Copies `bytes` into `mapping` at byte `offset` (`-EFAULT` if the
    /// range leaves it).
    fn write_foreign(
        &mut self,
        mapping: &Self::Mapping,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), Errno>;

    /// Zeroes `len` bytes of `mapping` from byte `offset` (`-EFAULT` if
    /// the range leaves it).
    fn zero_foreign(&mut self, mapping: &Self::Mapping, offset: u64, len: u64)
        -> Result<(), Errno>;

    /// `CONTROL_OP_UNMAP_FOREIGN` of `mapping`. On failure the mapping is
    /// gone from the caller's view anyway; destroying its owner removes it
    /// from the caller's p2m.
    fn unmap_foreign(&mut self, mapping: Self::Mapping) -> Result<(), Errno>;

    /// `CONTROL_OP_SET_VCPU_CONTEXT`: `vcpu` of paused `domid` starts from
    /// `regs` at the next unpause.
    fn set_vcpu_context(
        &mut self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), Errno>;

    /// `EVTCHNOP_alloc_unbound` with `dom` = `domid` (privileged): a new
    /// port of `domid` that `remote` may bind.
    fn evtchn_alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<EvtchnPort, Errno>;

    /// `HVMOP_set_param` of another domain (privileged).
    fn hvm_set_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), Errno>;

    /// `XENMEM_set_memory_map`: the E820 map the domain's
    /// `XENMEM_memory_map` returns (privileged).
    fn set_memory_map(&mut self, domid: DomId, map: &[E820Entry]) -> Result<(), Errno>;
}
