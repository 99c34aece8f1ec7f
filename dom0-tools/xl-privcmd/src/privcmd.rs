//! The toolstack's [`Hypervisor`] over Linux's `/dev/xen/privcmd` in a
//! control domain (`include/uapi/xen/privcmd.h`, `drivers/xen/privcmd.c`):
//!
//! - every hypercall is `IOCTL_PRIVCMD_HYPERCALL` (`struct
//!   privcmd_hypercall`: op and five arguments). Linux calls its
//!   hypercall page's entry `op` (128 entries: our control hypercall 55
//!   is one) with the arguments as given, so pointers are this
//!   process's addresses, which xen-core translates through the
//!   process's page tables. The buffers are written before each call
//!   (present and writable, never a shared zero page);
//! - a foreign mapping is an `mmap` of the device and
//!   `IOCTL_PRIVCMD_MMAPBATCH_V2`, which Linux turns into
//!   `XENMEM_add_to_physmap_batch` (`XENMAPSPACE_gmfn_foreign`) at GFNs
//!   of its own; `munmap` gives them back (`XENMEM_remove_from_physmap`).
//!
//! Errors are the hypercall's errno, as the ioctl reports it.

use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use abi::control::{
    ControlHeader, CreateRequest, CreateResponse, DomainInfo, DomainRequest, DomainStats,
    ListRequest, ListResponse, Physinfo, PopulateRequest, PopulateResponse, SchedCreditInfo,
    SchedCreditRequest, SetMaxMemRequest, SetVcpuContextRequest, VcpuAffinityRequest,
    VcpuAffinityResponse, VcpuHvmX86_32, VcpuStatsResponse, CONTROL_OP_CREATE, CONTROL_OP_DESTROY,
    CONTROL_OP_GETINFO, CONTROL_OP_GET_STATS, CONTROL_OP_GET_VCPU_STATS, CONTROL_OP_LIST,
    CONTROL_OP_PAUSE, CONTROL_OP_PHYSINFO, CONTROL_OP_POPULATE_MEMORY, CONTROL_OP_SCHED_CREDIT,
    CONTROL_OP_SET_MAX_MEM, CONTROL_OP_SET_VCPU_AFFINITY, CONTROL_OP_SET_VCPU_CONTEXT,
    CONTROL_OP_UNPAUSE, DOMAIN_NAME_MAX, HYPERVISOR_CONTROL_OP, MAP_MAX_FRAMES,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnAllocUnbound, EvtchnPort, EVTCHNOP_ALLOC_UNBOUND};
use abi::xen::hvm::{XenHvmParam, HVMOP_SET_PARAM};
use abi::xen::hypercall::{EVENT_CHANNEL_OP, HVM_OP, MEMORY_OP};
use abi::xen::memory::{E820Entry, XenForeignMemoryMap, XenMemoryMap, XENMEM_SET_MEMORY_MAP};
use abi::xen::PAGE_SIZE;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use toolstack::Hypervisor;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The privcmd device.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";

/// `struct privcmd_hypercall`, 48 bytes.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `struct privcmd_mmapbatch_v2`, 32 bytes.
#[repr(C)]
struct PrivcmdMmapBatchV2 {
    /// Number of frames.
    num: u32,
    /// The domain they belong to.
    dom: DomId,
    /// The mapping's address in this process (from `mmap` of the device).
    addr: u64,
    /// `num` GFNs of `dom`.
    arr: *const u64,
    /// OUT: `num` per-frame errors (0 or a negative errno).
    err: *mut i32,
}

/// `_IOC(_IOC_NONE, 'P', nr, size)`.
const fn ioc_none(nr: u64, size: usize) -> u64 {
    (size as u64) << 16 | (b'P' as u64) << 8 | nr
}

/// `IOCTL_PRIVCMD_HYPERCALL`.
const IOCTL_PRIVCMD_HYPERCALL: u64 = ioc_none(0, size_of::<PrivcmdHypercall>());
/// `IOCTL_PRIVCMD_MMAPBATCH_V2`.
const IOCTL_PRIVCMD_MMAPBATCH_V2: u64 = ioc_none(4, size_of::<PrivcmdMmapBatchV2>());
const _: () = assert!(IOCTL_PRIVCMD_HYPERCALL == 0x0030_5000);
const _: () = assert!(IOCTL_PRIVCMD_MMAPBATCH_V2 == 0x0020_5004);

nix::ioctl_write_ptr_bad!(privcmd_hypercall, IOCTL_PRIVCMD_HYPERCALL, PrivcmdHypercall);
nix::ioctl_write_ptr_bad!(
    privcmd_mmapbatch_v2,
    IOCTL_PRIVCMD_MMAPBATCH_V2,
    PrivcmdMmapBatchV2
);

/// The errno of a failed ioctl, as Xen's (`-EIO` for one Xen has not).
fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_return(-i64::from(e as i32)).unwrap_or(Errno::EIO)
}

/// Another domain's frames, mapped into this process.
#[derive(Debug)]
pub struct ForeignMapping {
    addr: NonNull<core::ffi::c_void>,
    len: usize,
}

impl ForeignMapping {
    /// The mapped bytes `offset..offset + len`; `-EFAULT` outside.
    fn range(&self, offset: u64, len: u64) -> Result<(*mut u8, usize), Errno> {
        let offset = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
        let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Errno::EFAULT);
        }
        // In bounds: checked above.
        Ok((self.addr.as_ptr().cast::<u8>().wrapping_add(offset), len))
    }
}

/// `/dev/xen/privcmd`, open.
pub struct Privcmd {
    device: File,
}

impl Privcmd {
    /// Opens [`PRIVCMD_PATH`].
    pub fn open() -> std::io::Result<Self> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(PRIVCMD_PATH)?;
        Ok(Self { device })
    }

    /// Hypercall `op` with `arg`: its non-negative value, or its errno.
    fn hypercall(&self, op: u64, arg: [u64; 5]) -> Result<i64, Errno> {
        let call = PrivcmdHypercall { op, arg };
        // SAFETY: the ioctl reads one `PrivcmdHypercall` from `call`, a
        // live local; what its arguments point to is each caller's.
        let value = unsafe { privcmd_hypercall(self.device.as_raw_fd(), &call) };
        value.map(i64::from).map_err(errno)
    }

    /// `CONTROL_OP_*` `op` with `request` and no response.
    fn control<Q: IntoBytes + Immutable>(&self, op: u32, request: &Q) -> Result<(), Errno> {
        let args = [op.into(), request.as_bytes().as_ptr() as u64, 0, 0, 0];
        self.hypercall(HYPERVISOR_CONTROL_OP, args).map(|_| ())
    }

    /// `CONTROL_OP_*` `op` with `request`, returning its response `R`.
    fn control_with<Q, R>(&self, op: u32, request: &Q) -> Result<R, Errno>
    where
        Q: IntoBytes + Immutable,
        R: IntoBytes + FromBytes,
    {
        let mut response = R::new_zeroed();
        let out = response.as_mut_bytes();
        // Present and writable before the hypervisor writes it.
        out.fill(0);
        let args = [
            op.into(),
            request.as_bytes().as_ptr() as u64,
            out.as_mut_ptr() as u64,
            0,
            0,
        ];
        self.hypercall(HYPERVISOR_CONTROL_OP, args)?;
        Ok(response)
    }
}

impl Hypervisor for Privcmd {
    type Mapping = ForeignMapping;

    fn physinfo(&mut self) -> Result<Physinfo, Errno> {
        self.control_with(CONTROL_OP_PHYSINFO, &ControlHeader::CURRENT)
    }

    fn domain_info(&mut self, domid: DomId) -> Result<DomainInfo, Errno> {
        self.control_with(CONTROL_OP_GETINFO, &DomainRequest::new(domid))
    }

    fn domain_list(&mut self, start_domid: DomId) -> Result<ListResponse, Errno> {
        self.control_with(CONTROL_OP_LIST, &ListRequest::new(start_domid))
    }

    fn domain_stats(&mut self, domid: DomId) -> Result<DomainStats, Errno> {
        self.control_with(CONTROL_OP_GET_STATS, &DomainRequest::new(domid))
    }

    fn vcpu_stats(&mut self, domid: DomId) -> Result<VcpuStatsResponse, Errno> {
        self.control_with(CONTROL_OP_GET_VCPU_STATS, &DomainRequest::new(domid))
    }

    fn sched_credit(
        &mut self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<SchedCreditInfo, Errno> {
        let request = SchedCreditRequest::new(domid, weight, cap);
        self.control_with(CONTROL_OP_SCHED_CREDIT, &request)
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, Errno> {
        let request = VcpuAffinityRequest::new(domid, vcpu_id, affinity);
        let reply: VcpuAffinityResponse =
            self.control_with(CONTROL_OP_SET_VCPU_AFFINITY, &request)?;
        Ok(reply.effective)
    }

    fn create(
        &mut self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        vcpus: u32,
    ) -> Result<DomId, Errno> {
        let request = CreateRequest::new(*name, max_memory_kib, vcpus);
        let created: CreateResponse = self.control_with(CONTROL_OP_CREATE, &request)?;
        Ok(created.domid)
    }

    fn destroy(&mut self, domid: DomId) -> Result<(), Errno> {
        self.control(CONTROL_OP_DESTROY, &DomainRequest::new(domid))
    }

    fn pause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.control(CONTROL_OP_PAUSE, &DomainRequest::new(domid))
    }

    fn unpause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.control(CONTROL_OP_UNPAUSE, &DomainRequest::new(domid))
    }

    fn set_max_mem(&mut self, domid: DomId, max_memory_kib: u64) -> Result<(), Errno> {
        let request = SetMaxMemRequest::new(domid, max_memory_kib);
        self.control(CONTROL_OP_SET_MAX_MEM, &request)
    }

    fn populate(&mut self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<(), Errno> {
        let request = PopulateRequest::new(domid, first_gfn, nr_frames);
        let done: PopulateResponse = self.control_with(CONTROL_OP_POPULATE_MEMORY, &request)?;
        // Populate is all or nothing: a short count breaks the ABI.
        if done.nr_done == nr_frames {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }

    fn map_foreign(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
    ) -> Result<ForeignMapping, Errno> {
        if nr_frames == 0 || nr_frames > MAP_MAX_FRAMES {
            return Err(Errno::EINVAL);
        }
        let len = nr_frames as usize * PAGE_SIZE;
        let gfns: Vec<u64> = (first_gfn..first_gfn + u64::from(nr_frames)).collect();
        let mut errs = vec![0i32; gfns.len()];
        let length = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a new shared mapping of the device that nothing else
        // refers to; privcmd fills it with the foreign frames.
        let addr = unsafe { mmap(None, length, prot, MapFlags::MAP_SHARED, &self.device, 0) }
            .map_err(errno)?;
        let mapping = ForeignMapping { addr, len };
        let batch = PrivcmdMmapBatchV2 {
            num: nr_frames,
            dom: domid,
            addr: addr.as_ptr() as u64,
            arr: gfns.as_ptr(),
            err: errs.as_mut_ptr(),
        };
        // SAFETY: the ioctl reads `batch` and `gfns` and writes `errs`,
        // live locals of the sizes `num` says.
        let done = unsafe { privcmd_mmapbatch_v2(self.device.as_raw_fd(), &batch) };
        let first_err = errs.iter().find(|&&e| e != 0).copied();
        match (done, first_err) {
            (Ok(_), None) => Ok(mapping),
            (Err(e), _) => {
                let _ = self.unmap_foreign(mapping);
                Err(errno(e))
            }
            (Ok(_), Some(e)) => {
                let _ = self.unmap_foreign(mapping);
                Err(Errno::from_return(e.into()).unwrap_or(Errno::EIO))
            }
        }
    }

    fn write_foreign(
        &mut self,
        mapping: &ForeignMapping,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), Errno> {
        let (dst, len) = mapping.range(offset, bytes.len() as u64)?;
        // SAFETY: `dst..dst + len` lies inside the live mapping
        // (`range`), which no Rust reference aliases.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, len) };
        Ok(())
    }

    fn zero_foreign(
        &mut self,
        mapping: &ForeignMapping,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let (dst, len) = mapping.range(offset, len)?;
        // SAFETY: as in `write_foreign`.
        unsafe { core::ptr::write_bytes(dst, 0, len) };
        Ok(())
    }

    fn unmap_foreign(&mut self, mapping: ForeignMapping) -> Result<(), Errno> {
        // SAFETY: the mapping `map_foreign` made, unmapped once (it is
        // consumed); nothing refers to it any more.
        unsafe { munmap(mapping.addr, mapping.len) }.map_err(errno)
    }

    fn set_vcpu_context(
        &mut self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), Errno> {
        let request = SetVcpuContextRequest::new(domid, vcpu, *regs);
        self.control(CONTROL_OP_SET_VCPU_CONTEXT, &request)
    }

    fn evtchn_alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        let mut arg = EvtchnAllocUnbound {
            dom: domid,
            remote_dom: remote,
            port: 0,
        };
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        self.hypercall(
            EVENT_CHANNEL_OP,
            [EVTCHNOP_ALLOC_UNBOUND.into(), argp, 0, 0, 0],
        )?;
        Ok(arg.port)
    }

    fn hvm_set_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), Errno> {
        let arg = XenHvmParam {
            domid,
            pad: 0,
            index,
            value,
        };
        let argp = arg.as_bytes().as_ptr() as u64;
        self.hypercall(HVM_OP, [HVMOP_SET_PARAM.into(), argp, 0, 0, 0])
            .map(|_| ())
    }

    fn set_memory_map(&mut self, domid: DomId, map: &[E820Entry]) -> Result<(), Errno> {
        let arg = XenForeignMemoryMap {
            domid,
            pad0: [0; 6],
            map: XenMemoryMap {
                nr_entries: u32::try_from(map.len()).map_err(|_| Errno::EINVAL)?,
                pad0: 0,
                buffer: map.as_ptr() as u64,
            },
        };
        let argp = arg.as_bytes().as_ptr() as u64;
        self.hypercall(MEMORY_OP, [XENMEM_SET_MEMORY_MAP.into(), argp, 0, 0, 0])
            .map(|_| ())
    }
}
