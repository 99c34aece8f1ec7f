//! What dom0 asks the hypervisor about other domains: our control ABI
//! ([`abi::control`], dom0 only: `-EPERM` for others) and the Xen
//! operations a privileged domain performs on another one
//! (`EVTCHNOP_alloc_unbound` and `HVMOP_{get,set}_param` with a foreign
//! domid).
//!
//! Foreign mappings: `CONTROL_OP_MAP_FOREIGN` puts another domain's frames
//! at GFNs of ours that hold nothing; [`ForeignFrames`] is such a range,
//! written through the boot identity map. The range must lie inside the
//! identity map and outside the grant-mapping hole
//! ([`super::gnttab::FOREIGN_MAP_GPA`]); the hypervisor refuses GFNs that
//! hold RAM or another mapping, so no Rust object lives there.

use abi::control::{
    ControlHeader, CreateRequest, CreateResponse, DomainInfo, DomainRequest, DomainStats,
    ListRequest, ListResponse, MapRequest, Physinfo, PopulateRequest, PopulateResponse,
    ReadConsoleRequest, ReadConsoleResponse, SetMaxMemRequest, SetVcpuContextRequest, UnmapRequest,
    VcpuHvmX86_32, CONTROL_OP_CREATE, CONTROL_OP_DESTROY, CONTROL_OP_GETINFO, CONTROL_OP_GET_STATS,
    CONTROL_OP_LIST, CONTROL_OP_MAP_FOREIGN, CONTROL_OP_PAUSE, CONTROL_OP_PHYSINFO,
    CONTROL_OP_POPULATE_MEMORY, CONTROL_OP_READCONSOLE, CONTROL_OP_SET_MAX_MEM,
    CONTROL_OP_SET_VCPU_CONTEXT, CONTROL_OP_UNMAP_FOREIGN, CONTROL_OP_UNPAUSE, DOMAIN_NAME_MAX,
    HYPERVISOR_CONTROL_OP, MAP_MAX_FRAMES,
};
use abi::convert::usize_from_u64;
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnAllocUnbound, EvtchnPort, EVTCHNOP_ALLOC_UNBOUND};
use abi::xen::hvm;
use abi::xen::{PAGE_SHIFT, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::gnttab::window::GRANT_HOLE_END;
use super::gnttab::FOREIGN_MAP_GPA;
use super::hypercall::{addr_of_struct, call, Xen};
use super::phys::IdentityMap;
use crate::error::{check, XenError};

/// Another domain's frames mapped at our GFNs `caller_gfn..+nr_frames`
/// by [`Xen::map_foreign`]; [`Xen::unmap_foreign`] takes it back. Not
/// `Clone`: one value per mapped range.
#[derive(Debug)]
pub struct ForeignFrames {
    caller_gfn: u64,
    nr_frames: u32,
}

/// A write outside a [`ForeignFrames`] range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideMapping;

impl ForeignFrames {
    /// Length in bytes.
    fn size(&self) -> u64 {
        u64::from(self.nr_frames) << PAGE_SHIFT
    }

    /// Our GPA of byte `offset..offset + len`, if it is inside the range.
    fn gpa(&self, offset: u64, len: u64) -> Result<u64, OutsideMapping> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok((self.caller_gfn << PAGE_SHIFT) + offset),
            _ => Err(OutsideMapping),
        }
    }

    /// Copies `bytes` to byte `offset` of the mapped frames. Callers map a
    /// domain being built (paused, so nothing else touches the frames).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), OutsideMapping> {
        let gpa = self.gpa(offset, bytes.len() as u64)?;
        // SAFETY: `gpa..+len` is inside this mapping (checked above), so
        // inside the identity map and backed by the foreign frames while
        // `self` lives (only `unmap_foreign`, consuming it, or destroying
        // the owner removes them; the toolstack unmaps first). No Rust
        // object lives at those GFNs (they held nothing when mapped), so
        // the write aliases no reference.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), gpa as *mut u8, bytes.len()) };
        Ok(())
    }

    /// Zeroes `len` bytes from byte `offset` of the mapped frames.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), OutsideMapping> {
        let gpa = self.gpa(offset, len)?;
        // SAFETY: as in `write`; `len` fits the range, so it fits a usize.
        unsafe { core::ptr::write_bytes(gpa as *mut u8, 0, usize_from_u64(len)) };
        Ok(())
    }
}

/// Whether our GFNs `gfn..+nr` may take a foreign mapping: inside the
/// identity map, clear of the grant-mapping hole.
fn window_usable(gfn: u64, nr: u32) -> bool {
    let (Some(start), len) = (
        gfn.checked_mul(PAGE_SIZE as u64),
        u64::from(nr) << PAGE_SHIFT,
    ) else {
        return false;
    };
    let clear_of_hole = start.saturating_add(len) <= FOREIGN_MAP_GPA || start >= GRANT_HOLE_END;
    IdentityMap::covers(start, len) && clear_of_hole
}

impl Xen {
    /// `CONTROL_OP_*` `op` with `request` and no response.
    fn control<Q: IntoBytes + Immutable>(&self, op: u32, request: &Q) -> Result<(), XenError> {
        let args = [op.into(), addr_of_struct(request), 0, 0, 0];
        // SAFETY: Xen reads `request`, a live value of its type's size.
        check(unsafe { call(HYPERVISOR_CONTROL_OP, args) }).map(|_| ())
    }

    /// `CONTROL_OP_*` `op` with `request`, returning its response `R`.
    fn control_with<Q, R>(&self, op: u32, request: &Q) -> Result<R, XenError>
    where
        Q: IntoBytes + Immutable,
        R: IntoBytes + FromBytes,
    {
        let mut response = R::new_zeroed();
        let out = response.as_mut_bytes().as_mut_ptr() as u64;
        let args = [op.into(), addr_of_struct(request), out, 0, 0];
        // SAFETY: Xen reads `request` and writes one `R` to `response`,
        // both live locals of their types' sizes.
        check(unsafe { call(HYPERVISOR_CONTROL_OP, args) })?;
        Ok(response)
    }

    /// `CONTROL_OP_PHYSINFO`.
    pub fn physinfo(&self) -> Result<Physinfo, XenError> {
        self.control_with(CONTROL_OP_PHYSINFO, &ControlHeader::CURRENT)
    }

    /// `CONTROL_OP_READCONSOLE`: copies the hypervisor's log ring from
    /// byte `offset` into `buf` (at most `READCONSOLE_MAX` bytes); returns
    /// the bytes copied and the bytes the ring holds.
    pub fn read_console(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, u64), XenError> {
        let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let request = ReadConsoleRequest::new(buf.as_mut_ptr() as u64, size, offset);
        let reply: ReadConsoleResponse = self.control_with(CONTROL_OP_READCONSOLE, &request)?;
        Ok((reply.count as usize, reply.total))
    }

    /// `CONTROL_OP_GET_STATS` of `domid`.
    pub fn domain_stats(&self, domid: DomId) -> Result<DomainStats, XenError> {
        self.control_with(CONTROL_OP_GET_STATS, &DomainRequest::new(domid))
    }

    /// `CONTROL_OP_GET_VCPU_STATS` of `domid` (control ABI 1.4).
    pub fn vcpu_stats(&self, domid: DomId) -> Result<abi::control::VcpuStatsResponse, XenError> {
        self.control_with(
            abi::control::CONTROL_OP_GET_VCPU_STATS,
            &DomainRequest::new(domid),
        )
    }

    /// `CONTROL_OP_SCHED_CREDIT` of `domid`: sets the weight and cap
    /// (`SCHED_*_UNCHANGED` keep them) and returns the values now.
    pub fn sched_credit(
        &self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<abi::control::SchedCreditInfo, XenError> {
        let request = abi::control::SchedCreditRequest::new(domid, weight, cap);
        self.control_with(abi::control::CONTROL_OP_SCHED_CREDIT, &request)
    }

    /// `CONTROL_OP_SET_VCPU_AFFINITY`: pins `domid`'s `vcpu_id` to the
    /// pCPUs in `affinity`; returns the effective (online) ones.
    pub fn set_vcpu_affinity(
        &self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, XenError> {
        let request = abi::control::VcpuAffinityRequest::new(domid, vcpu_id, affinity);
        let r: abi::control::VcpuAffinityResponse =
            self.control_with(abi::control::CONTROL_OP_SET_VCPU_AFFINITY, &request)?;
        Ok(r.effective)
    }

    /// `CONTROL_OP_CREATE`: a paused domain without memory; its domid.
    pub fn domain_create(
        &self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        max_vcpus: u32,
    ) -> Result<DomId, XenError> {
        let request = CreateRequest::new(*name, max_memory_kib, max_vcpus);
        let created: CreateResponse = self.control_with(CONTROL_OP_CREATE, &request)?;
        Ok(created.domid)
    }

    /// `CONTROL_OP_DESTROY` of `domid`.
    pub fn domain_destroy(&self, domid: DomId) -> Result<(), XenError> {
        self.control(CONTROL_OP_DESTROY, &DomainRequest::new(domid))
    }

    /// `CONTROL_OP_PAUSE` of `domid`.
    pub fn domain_pause(&self, domid: DomId) -> Result<(), XenError> {
        self.control(CONTROL_OP_PAUSE, &DomainRequest::new(domid))
    }

    /// `CONTROL_OP_UNPAUSE` of `domid`.
    pub fn domain_unpause(&self, domid: DomId) -> Result<(), XenError> {
        self.control(CONTROL_OP_UNPAUSE, &DomainRequest::new(domid))
    }

    /// `CONTROL_OP_SET_MAX_MEM` (dom0): the most memory `domid` may own,
    /// KiB (Xen's `XEN_DOMCTL_max_mem`).
    pub fn set_max_mem(&self, domid: DomId, max_memkb: u64) -> Result<(), XenError> {
        let request = SetMaxMemRequest::new(domid, max_memkb);
        self.control(CONTROL_OP_SET_MAX_MEM, &request)
    }

    /// `CONTROL_OP_POPULATE_MEMORY`: `nr_frames` zeroed frames for
    /// `domid` from `first_gfn`; the number populated.
    pub fn populate(&self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<u64, XenError> {
        let request = PopulateRequest::new(domid, first_gfn, nr_frames);
        let done: PopulateResponse = self.control_with(CONTROL_OP_POPULATE_MEMORY, &request)?;
        Ok(done.nr_done)
    }

    /// `CONTROL_OP_MAP_FOREIGN`: `domid`'s GFNs `first_gfn..+nr_frames`
    /// at our GFNs from `caller_gfn`. `-EINVAL` without a hypercall if
    /// that range leaves the identity map, touches the grant-mapping hole
    /// or is longer than `MAP_MAX_FRAMES`.
    pub fn map_foreign(
        &self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
        caller_gfn: u64,
    ) -> Result<ForeignFrames, XenError> {
        if nr_frames > MAP_MAX_FRAMES || !window_usable(caller_gfn, nr_frames) {
            return Err(XenError(Errno::EINVAL.to_return()));
        }
        let request = MapRequest::new(domid, first_gfn, nr_frames, caller_gfn);
        self.control(CONTROL_OP_MAP_FOREIGN, &request)?;
        Ok(ForeignFrames {
            caller_gfn,
            nr_frames,
        })
    }

    /// `CONTROL_OP_UNMAP_FOREIGN` of `frames`; on failure they are handed
    /// back (still mapped).
    pub fn unmap_foreign(&self, frames: ForeignFrames) -> Result<(), (ForeignFrames, XenError)> {
        let request = UnmapRequest::new(frames.caller_gfn, frames.nr_frames);
        self.control(CONTROL_OP_UNMAP_FOREIGN, &request)
            .map_err(|e| (frames, e))
    }

    /// `CONTROL_OP_SET_VCPU_CONTEXT`: `vcpu` of paused `domid` starts from `regs`.
    pub fn set_vcpu_context(
        &self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), XenError> {
        let request = SetVcpuContextRequest::new(domid, vcpu, *regs);
        self.control(CONTROL_OP_SET_VCPU_CONTEXT, &request)
    }

    /// `EVTCHNOP_alloc_unbound` in domain `dom` (dom0 only for another
    /// domain): a new port of `dom` that `remote` may bind.
    pub fn evtchn_alloc_unbound_in(
        &self,
        dom: DomId,
        remote: DomId,
    ) -> Result<EvtchnPort, XenError> {
        let mut arg = EvtchnAllocUnbound {
            dom,
            remote_dom: remote,
            port: 0,
        };
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        let args = [EVTCHNOP_ALLOC_UNBOUND.into(), argp, 0, 0, 0];
        // SAFETY: Xen reads and updates `arg`, a live local of the right size.
        check(unsafe { call(abi::xen::hypercall::EVENT_CHANNEL_OP, args) })?;
        Ok(arg.port)
    }

    /// `HVMOP_set_param` of domain `domid` (dom0 may set any domain's).
    pub fn hvm_set_param_of(&self, domid: DomId, index: u32, value: u64) -> Result<(), XenError> {
        let arg = hvm::XenHvmParam {
            domid,
            pad: 0,
            index,
            value,
        };
        let args = [hvm::HVMOP_SET_PARAM.into(), addr_of_struct(&arg), 0, 0, 0];
        // SAFETY: Xen reads `arg`, a live local.
        check(unsafe { call(abi::xen::hypercall::HVM_OP, args) }).map(|_| ())
    }

    /// `CONTROL_OP_GETINFO` of `domid`.
    pub fn domain_info(&self, domid: DomId) -> Result<DomainInfo, XenError> {
        self.control_with(CONTROL_OP_GETINFO, &DomainRequest::new(domid))
    }

    /// `CONTROL_OP_LIST` from `start_domid`: up to `LIST_BATCH_MAX`
    /// domains and the cursor for the next batch (`DOMID_INVALID`: done).
    pub fn domain_list(&self, start_domid: DomId) -> Result<ListResponse, XenError> {
        self.control_with(CONTROL_OP_LIST, &ListRequest::new(start_domid))
    }

    /// `HVMOP_get_param` of domain `domid` (dom0 may read any domain's).
    pub fn hvm_get_param_of(&self, domid: DomId, index: u32) -> Result<u64, XenError> {
        let mut arg = hvm::XenHvmParam {
            domid,
            pad: 0,
            index,
            value: 0,
        };
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: Xen reads and updates `arg`, a live local of the right size.
        check(unsafe {
            call(
                abi::xen::hypercall::HVM_OP,
                [hvm::HVMOP_GET_PARAM.into(), argp, 0, 0, 0],
            )
        })?;
        Ok(arg.value)
    }
}
