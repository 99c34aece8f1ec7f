//! The toolstack's [`Hypervisor`] in dom0: each operation is the shim's
//! hypercall wrapper (`guest_pv_shim::arch::control`).
//!
//! Foreign mappings go to one window of `MAP_MAX_FRAMES` GFNs at
//! [`BUILD_WINDOW_GPA`] (3 GiB): past dom0's RAM, clear of the shim's
//! grant-mapping hole at 2 GiB, inside the 4 GiB identity map, so the
//! mapped frames are written at their GPA. One mapping at a time: a
//! second `map_foreign` finds the window in use (`-EINVAL`).

use abi::control::{
    DomainInfo, DomainStats, ListResponse, Physinfo, SchedCreditInfo, VcpuHvmX86_32,
    VcpuStatsResponse, DOMAIN_NAME_MAX,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::memory::E820Entry;
use abi::xen::PAGE_SHIFT;
use guest_pv_shim::arch::control::ForeignFrames;
use guest_pv_shim::{Xen, XenError};
use toolstack::Hypervisor;

/// Where dom0 maps a domain's frames while building it.
pub const BUILD_WINDOW_GPA: u64 = 0xc000_0000;

/// dom0's hypercalls as the toolstack's [`Hypervisor`].
pub struct XenHypervisor {
    xen: Xen,
}

impl XenHypervisor {
    pub fn new(xen: Xen) -> Self {
        Self { xen }
    }
}

/// The errno of a failed hypercall; `-EIO` for a value that is none.
fn errno(e: XenError) -> Errno {
    e.errno().unwrap_or(Errno::EIO)
}

impl Hypervisor for XenHypervisor {
    type Mapping = ForeignFrames;

    fn physinfo(&mut self) -> Result<Physinfo, Errno> {
        self.xen.physinfo().map_err(errno)
    }

    fn domain_info(&mut self, domid: DomId) -> Result<DomainInfo, Errno> {
        self.xen.domain_info(domid).map_err(errno)
    }

    fn domain_list(&mut self, start_domid: DomId) -> Result<ListResponse, Errno> {
        self.xen.domain_list(start_domid).map_err(errno)
    }

    fn domain_stats(&mut self, domid: DomId) -> Result<DomainStats, Errno> {
        self.xen.domain_stats(domid).map_err(errno)
    }

    fn vcpu_stats(&mut self, domid: DomId) -> Result<VcpuStatsResponse, Errno> {
        self.xen.vcpu_stats(domid).map_err(errno)
    }

    fn sched_credit(
        &mut self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<SchedCreditInfo, Errno> {
        self.xen.sched_credit(domid, weight, cap).map_err(errno)
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, Errno> {
        self.xen
            .set_vcpu_affinity(domid, vcpu_id, affinity)
            .map_err(errno)
    }

    fn create(
        &mut self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        vcpus: u32,
    ) -> Result<DomId, Errno> {
        self.xen
            .domain_create(name, max_memory_kib, vcpus)
            .map_err(errno)
    }

    fn destroy(&mut self, domid: DomId) -> Result<(), Errno> {
        self.xen.domain_destroy(domid).map_err(errno)
    }

    fn pause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.xen.domain_pause(domid).map_err(errno)
    }

    fn set_max_mem(&mut self, domid: DomId, max_memory_kib: u64) -> Result<(), Errno> {
        self.xen.set_max_mem(domid, max_memory_kib).map_err(errno)
    }

    fn unpause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.xen.domain_unpause(domid).map_err(errno)
    }

    fn populate(&mut self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<(), Errno> {
        match self.xen.populate(domid, first_gfn, nr_frames) {
            Ok(done) if done == nr_frames => Ok(()),
            // Populate is all or nothing: a short count breaks the ABI.
            Ok(_) => Err(Errno::EIO),
            Err(e) => Err(errno(e)),
        }
    }

    fn map_foreign(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
    ) -> Result<ForeignFrames, Errno> {
        let window_gfn = BUILD_WINDOW_GPA >> PAGE_SHIFT;
        self.xen
            .map_foreign(domid, first_gfn, nr_frames, window_gfn)
            .map_err(errno)
    }

    fn write_foreign(
        &mut self,
        mapping: &ForeignFrames,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), Errno> {
        mapping.write(offset, bytes).map_err(|_| Errno::EFAULT)
    }

    fn zero_foreign(
        &mut self,
        mapping: &ForeignFrames,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        mapping.zero(offset, len).map_err(|_| Errno::EFAULT)
    }

    fn unmap_foreign(&mut self, mapping: ForeignFrames) -> Result<(), Errno> {
        self.xen.unmap_foreign(mapping).map_err(|(_, e)| errno(e))
    }

    fn set_vcpu_context(
        &mut self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), Errno> {
        self.xen.set_vcpu_context(domid, vcpu, regs).map_err(errno)
    }

    fn evtchn_alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.xen
            .evtchn_alloc_unbound_in(domid, remote)
            .map_err(errno)
    }

    fn hvm_set_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), Errno> {
        self.xen
            .hvm_set_param_of(domid, index, value)
            .map_err(errno)
    }

    fn set_memory_map(&mut self, domid: DomId, map: &[E820Entry]) -> Result<(), Errno> {
        self.xen.set_memory_map_of(domid, map).map_err(errno)
    }
}
