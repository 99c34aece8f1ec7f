//! Contract tests: the toolstack against the real hypervisor. The
//! [`Hypervisor`] here issues dom0's hypercalls through xen-core's
//! `handle_hypercall` on its simulated machine (feature `sim`, the same
//! one xen-core's host tests and fuzz targets use), so the toolstack's
//! expectations and xen-core's control semantics cannot drift apart the
//! way they could with only the hand-written fake (`src/tests/fake.rs`).
//!
//! Requests go in dom0's RAM at `BUF`, responses at `BUF2`, as dom0's
//! wrappers put them on its stack; foreign frames are mapped at
//! [`MAP_GFN`], past dom0's RAM, and written through dom0's p2m.

use abi::control::{
    self as ctl, ControlHeader, CreateRequest, CreateResponse, DomainInfo, DomainRequest,
    DomainStats, ListRequest, ListResponse, MapRequest, Physinfo, PopulateRequest,
    SetVcpuContextRequest, UnmapRequest, VcpuHvmX86_32, DOMAIN_FLAG_PAUSED, DOMAIN_NAME_MAX,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnAllocUnbound, EvtchnPort, EVTCHNOP_ALLOC_UNBOUND};
use abi::xen::hvm::{XenHvmParam, HVMOP_SET_PARAM, HVM_PARAM_CONSOLE_PFN};
use abi::xen::hypercall::{EVENT_CHANNEL_OP, HVM_OP, MEMORY_OP};
use abi::xen::memory::{E820Entry, XenForeignMemoryMap, XenMemoryMap, XENMEM_SET_MEMORY_MAP};
use abi::xen::start_info::{HvmStartInfo, HVM_START_MAGIC_VALUE};
use abi::xen::PAGE_SHIFT;
use pvh_builder::test_images::{kernel, kernel_code, KERNEL_GPA};
use toolstack::{create_domain, list_domains, CreateError, DomainSpec, Hypervisor, Op, SchedSpec};
use xen_core::domain::vcpu::VcpuRunState;
use xen_core::hypercall::sim::{continued, World, BUF, BUF2, DOM0, DOMU};
use xen_core::hypercall::HypercallOutcome;
use xen_core::mm::FramePool;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A machine with room for two 2 MiB domains besides dom0 and the domU.
const FRAMES: u64 = 2048;
/// dom0's GFN where foreign frames are mapped while building.
const MAP_GFN: u64 = 0x1000;
/// Where `set_memory_map` puts the entries in dom0's RAM.
const MAP_BUF: u64 = 0xc000;
const EM_X86_64: u16 = 62;

/// dom0's hypercalls on the simulated machine.
struct SimDom0 {
    w: World,
    /// Fail the `n`th call to this operation (counting from 0).
    fail: Option<(Op, usize)>,
    seen: Vec<Op>,
}

/// A range of foreign frames at dom0's `MAP_GFN`.
struct Mapping {
    nr_frames: u32,
}

impl SimDom0 {
    fn new() -> Self {
        Self {
            w: World::with_frames(FRAMES),
            fail: None,
            seen: Vec::new(),
        }
    }

    /// The call counts as `op` for fault injection: `Err` if it is the
    /// one to fail (before the hypervisor sees it, as a transport
    /// failure would be).
    fn enter(&mut self, op: Op) -> Result<(), Errno> {
        let nth = self.seen.iter().filter(|o| **o == op).count();
        self.seen.push(op);
        match self.fail {
            Some((f, n)) if f == op && n == nth => Err(Errno::EIO),
            _ => Ok(()),
        }
    }

    /// Hypercall `nr` from dom0 with `request` at `BUF` (continued as a
    /// guest would); the response, if any, is at `BUF2`.
    fn call<T: IntoBytes + Immutable + ?Sized>(
        &mut self,
        nr: u64,
        cmd: u32,
        request: &T,
    ) -> Result<(), Errno> {
        self.w.put(DOM0, BUF, request);
        let mut out = self.w.call64(DOM0, nr, [cmd.into(), BUF, BUF2, 0, 0]);
        loop {
            out = match out {
                HypercallOutcome::Return(0)
                | HypercallOutcome::DomainDestroyed(_)
                | HypercallOutcome::VcpuStarted { .. } => return Ok(()),
                HypercallOutcome::Return(v) => return Err(Errno::from_return(v).expect("an errno")),
                HypercallOutcome::Continue(c) => self.w.call(DOM0, continued(&c, true)),
                other => panic!("dom0's hypercall ended with {other:?}"),
            };
        }
    }

    fn control<T: IntoBytes + Immutable>(&mut self, op: u32, request: &T) -> Result<(), Errno> {
        self.call(ctl::HYPERVISOR_CONTROL_OP, op, request)
    }

    fn response<T: FromBytes + IntoBytes>(&mut self) -> T {
        self.w.get(DOM0, BUF2)
    }

    fn domain_op(&mut self, op: u32, domid: DomId) -> Result<(), Errno> {
        self.control(op, &DomainRequest::new(domid))
    }

    fn free_frames(&self) -> u64 {
        self.w.pool.free_frames()
    }
}

impl Hypervisor for SimDom0 {
    type Mapping = Mapping;

    fn physinfo(&mut self) -> Result<Physinfo, Errno> {
        self.enter(Op::Physinfo)?;
        self.control(ctl::CONTROL_OP_PHYSINFO, &ControlHeader::CURRENT)?;
        Ok(self.response())
    }

    fn domain_info(&mut self, domid: DomId) -> Result<DomainInfo, Errno> {
        self.domain_op(ctl::CONTROL_OP_GETINFO, domid)?;
        Ok(self.response())
    }

    fn domain_list(&mut self, start_domid: DomId) -> Result<ListResponse, Errno> {
        self.control(ctl::CONTROL_OP_LIST, &ListRequest::new(start_domid))?;
        Ok(self.response())
    }

    fn domain_stats(&mut self, domid: DomId) -> Result<DomainStats, Errno> {
        self.domain_op(ctl::CONTROL_OP_GET_STATS, domid)?;
        Ok(self.response())
    }

    fn vcpu_stats(&mut self, domid: DomId) -> Result<ctl::VcpuStatsResponse, Errno> {
        self.domain_op(ctl::CONTROL_OP_GET_VCPU_STATS, domid)?;
        Ok(self.response())
    }

    fn sched_credit(
        &mut self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<ctl::SchedCreditInfo, Errno> {
        let request = ctl::SchedCreditRequest::new(domid, weight, cap);
        self.control(ctl::CONTROL_OP_SCHED_CREDIT, &request)?;
        Ok(self.response())
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, Errno> {
        let request = ctl::VcpuAffinityRequest::new(domid, vcpu_id, affinity);
        self.control(ctl::CONTROL_OP_SET_VCPU_AFFINITY, &request)?;
        let r: ctl::VcpuAffinityResponse = self.response();
        Ok(r.effective)
    }

    fn create(
        &mut self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        vcpus: u32,
    ) -> Result<DomId, Errno> {
        self.enter(Op::Create)?;
        let request = CreateRequest::new(*name, max_memory_kib, vcpus);
        self.control(ctl::CONTROL_OP_CREATE, &request)?;
        Ok(self.response::<CreateResponse>().domid)
    }

    fn destroy(&mut self, domid: DomId) -> Result<(), Errno> {
        self.domain_op(ctl::CONTROL_OP_DESTROY, domid)
    }

    fn pause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.domain_op(ctl::CONTROL_OP_PAUSE, domid)
    }

    fn set_max_mem(&mut self, domid: DomId, max_memkb: u64) -> Result<(), Errno> {
        let request = ctl::SetMaxMemRequest::new(domid, max_memkb);
        self.control(ctl::CONTROL_OP_SET_MAX_MEM, &request)
    }

    fn unpause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.enter(Op::Unpause)?;
        self.domain_op(ctl::CONTROL_OP_UNPAUSE, domid)
    }

    fn populate(&mut self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<(), Errno> {
        self.enter(Op::Populate)?;
        let request = PopulateRequest::new(domid, first_gfn, nr_frames);
        self.control(ctl::CONTROL_OP_POPULATE_MEMORY, &request)
    }

    fn map_foreign(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
    ) -> Result<Mapping, Errno> {
        self.enter(Op::MapForeign)?;
        let request = MapRequest::new(domid, first_gfn, nr_frames, MAP_GFN);
        self.control(ctl::CONTROL_OP_MAP_FOREIGN, &request)?;
        Ok(Mapping { nr_frames })
    }

    fn write_foreign(&mut self, m: &Mapping, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.enter(Op::WriteForeign)?;
        let end = offset.checked_add(bytes.len() as u64);
        if end.is_none_or(|end| end > u64::from(m.nr_frames) << PAGE_SHIFT) {
            return Err(Errno::EFAULT);
        }
        let gpa = (MAP_GFN << PAGE_SHIFT) + offset;
        self.w
            .phys(DOM0)
            .write(gpa, bytes)
            .map_err(|_| Errno::EFAULT)
    }

    fn zero_foreign(&mut self, m: &Mapping, offset: u64, len: u64) -> Result<(), Errno> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > u64::from(m.nr_frames) << PAGE_SHIFT) {
            return Err(Errno::EFAULT);
        }
        let gpa = (MAP_GFN << PAGE_SHIFT) + offset;
        self.w.phys(DOM0).zero(gpa, len).map_err(|_| Errno::EFAULT)
    }

    fn unmap_foreign(&mut self, m: Mapping) -> Result<(), Errno> {
        let request = UnmapRequest::new(MAP_GFN, m.nr_frames);
        self.control(ctl::CONTROL_OP_UNMAP_FOREIGN, &request)
    }

    fn set_vcpu_context(
        &mut self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), Errno> {
        self.enter(Op::SetVcpuContext)?;
        let request = SetVcpuContextRequest::new(domid, vcpu, *regs);
        self.control(ctl::CONTROL_OP_SET_VCPU_CONTEXT, &request)
    }

    fn evtchn_alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.enter(Op::ConsoleEvtchn)?;
        let request = EvtchnAllocUnbound {
            dom: domid,
            remote_dom: remote,
            port: 0,
        };
        self.call(EVENT_CHANNEL_OP, EVTCHNOP_ALLOC_UNBOUND, &request)?;
        Ok(self.w.get::<EvtchnAllocUnbound>(DOM0, BUF).port)
    }

    fn hvm_set_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), Errno> {
        self.enter(Op::ConsoleParams)?;
        let request = XenHvmParam {
            domid,
            pad: 0,
            index,
            value,
        };
        self.call(HVM_OP, HVMOP_SET_PARAM, &request)
    }

    fn set_memory_map(&mut self, domid: DomId, map: &[E820Entry]) -> Result<(), Errno> {
        self.enter(Op::MemoryMap)?;
        self.w.put(DOM0, MAP_BUF, map);
        let request = XenForeignMemoryMap {
            domid,
            pad0: [0; 6],
            map: XenMemoryMap {
                nr_entries: u32::try_from(map.len()).expect("a few entries"),
                pad0: 0,
                buffer: MAP_BUF,
            },
        };
        self.call(MEMORY_OP, XENMEM_SET_MEMORY_MAP, &request)
    }
}

fn image() -> Vec<u8> {
    kernel(true, EM_X86_64, &KERNEL_GPA.to_le_bytes())
}

fn spec<'a>(name: &'a str, image: &'a [u8]) -> DomainSpec<'a> {
    DomainSpec {
        name,
        memory_mib: 2,
        vcpus: 2,
        cmdline: "console=hvc0",
        image,
        sched: SchedSpec::default(),
    }
}

/// Only the boot-time domains are left and every frame is back.
fn assert_nothing_left(hv: &SimDom0, free_before: u64) {
    let ids: Vec<DomId> = hv.w.t.iter().map(|d| d.domid()).collect();
    assert_eq!(ids, [DOM0, DOMU], "a domain is left");
    assert_eq!(hv.free_frames(), free_before, "frames are not back");
    assert_eq!(
        hv.w.domain(DOM0).foreign().nr_held(),
        0,
        "a mapping is left"
    );
}

#[test]
fn create_builds_a_running_pvh_domain_in_xen_core() {
    let mut hv = SimDom0::new();
    let image = image();
    let domid = create_domain(&mut hv, &spec("guest-1", &image)).unwrap();

    let d = hv.w.domain(domid);
    assert_eq!(d.name(), "guest-1");
    assert_eq!(
        d.tot_pages(),
        2 * 256 + 2,
        "RAM, the console and store rings"
    );
    let vcpu0 = d.vcpu(0).unwrap();
    assert_eq!(vcpu0.run_state(), VcpuRunState::Runnable);
    let entry = vcpu0.pending_context().expect("a state to start from");
    assert_eq!(entry.rip, KERNEL_GPA);
    assert_eq!(d.vcpu(1).unwrap().run_state(), VcpuRunState::Down);
    let start_info_gpa = entry.gprs.rbx;
    assert_eq!(
        hv.w.domain(DOM0).foreign().nr_held(),
        0,
        "nothing stays mapped"
    );

    let code = kernel_code();
    assert_eq!(hv.w.bytes(domid, KERNEL_GPA, code.len()), code);
    let si: HvmStartInfo = hv.w.get(domid, start_info_gpa);
    assert_eq!(si.magic, HVM_START_MAGIC_VALUE);
    let console_pfn = hv.w.domain(domid).xen().hvm_params[HVM_PARAM_CONSOLE_PFN as usize];
    assert_eq!(console_pfn, 2 * 256, "console ring after RAM");
    assert_eq!(hv.w.domain(domid).xen().memory_map().len(), 2);
}

#[test]
fn list_pause_unpause_and_destroy_through_xen_core() {
    let mut hv = SimDom0::new();
    let free_before = hv.free_frames();
    let image = image();
    let a = create_domain(&mut hv, &spec("a", &image)).unwrap();
    let b = create_domain(&mut hv, &spec("b", &image)).unwrap();

    let listed: Vec<DomId> = list_domains(&mut hv)
        .unwrap()
        .iter()
        .map(|d| d.domid)
        .collect();
    assert_eq!(listed, [DOM0, DOMU, a, b]);
    let physinfo = hv.physinfo().unwrap();
    assert_eq!(physinfo.free_memory_kib, hv.free_frames() * 4);

    hv.pause(a).unwrap();
    assert_ne!(hv.domain_info(a).unwrap().flags & DOMAIN_FLAG_PAUSED, 0);
    assert!(!hv.w.domain(a).vcpu_may_run(0));
    hv.unpause(a).unwrap();
    assert_eq!(hv.domain_info(a).unwrap().flags & DOMAIN_FLAG_PAUSED, 0);
    assert!(hv.w.domain(a).vcpu_may_run(0));

    hv.destroy(a).unwrap();
    hv.destroy(b).unwrap();
    assert_eq!(hv.domain_info(a), Err(Errno::ESRCH));
    assert_nothing_left(&hv, free_before);
    let listed: Vec<DomId> = list_domains(&mut hv)
        .unwrap()
        .iter()
        .map(|d| d.domid)
        .collect();
    assert_eq!(listed, [DOM0, DOMU]);
}

#[test]
fn a_name_in_use_is_eexist_from_xen_core() {
    let mut hv = SimDom0::new();
    let image = image();
    create_domain(&mut hv, &spec("twin", &image)).unwrap();
    let free = hv.free_frames();
    let again = create_domain(&mut hv, &spec("twin", &image));
    assert!(
        matches!(again, Err(CreateError::DuplicateName)),
        "{again:?}"
    );
    assert_eq!(hv.free_frames(), free);
}

#[test]
fn more_memory_than_xen_core_has_free_is_refused_up_front() {
    let mut hv = SimDom0::new();
    let free_before = hv.free_frames();
    let image = image();
    let big = DomainSpec {
        memory_mib: 16,
        ..spec("big", &image)
    };
    let err = create_domain(&mut hv, &big).unwrap_err();
    assert!(
        matches!(err, CreateError::NotEnoughMemory { free_kib, .. } if free_kib == free_before * 4),
        "{err:?}"
    );
    assert_nothing_left(&hv, free_before);
}

/// Every step of a build failing in turn: the toolstack undoes the
/// domain in xen-core, whatever it had got to (all or nothing).
#[test]
fn a_failure_at_any_step_leaves_nothing_in_xen_core() {
    let image = image();
    let steps = [
        Op::Physinfo,
        Op::Create,
        Op::Populate,
        Op::MapForeign,
        Op::WriteForeign,
        Op::ConsoleEvtchn,
        Op::ConsoleParams,
        Op::MemoryMap,
        Op::SetVcpuContext,
        Op::Unpause,
    ];
    for op in steps {
        for nth in 0..3 {
            let mut hv = SimDom0::new();
            let free_before = hv.free_frames();
            hv.fail = Some((op, nth));
            match create_domain(&mut hv, &spec("g", &image)) {
                Ok(domid) => {
                    // Fewer than `nth + 1` calls of `op`: nothing failed.
                    let calls = hv.seen.iter().filter(|o| **o == op).count();
                    assert!(calls <= nth, "{op:?} #{nth} failed, yet {domid} was built");
                    continue;
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        CreateError::Hypervisor {
                            errno: Errno::EIO,
                            ..
                        }
                    ),
                    "{op:?} #{nth}: {e:?}"
                ),
            }
            assert_nothing_left(&hv, free_before);
        }
    }
}

#[test]
fn set_max_mem_moves_the_limit_getinfo_reports() {
    let mut hv = SimDom0::new();
    let image = image();
    let domid = create_domain(&mut hv, &spec("g", &image)).unwrap();
    let held = hv.domain_info(domid).unwrap().memory_kib;
    assert_eq!(held, (2 * 256 + 2) * 4);
    // Below what it holds: allowed, nothing is taken away (xl mem-set).
    hv.set_max_mem(domid, 1024).unwrap();
    let info = hv.domain_info(domid).unwrap();
    assert_eq!((info.memory_kib, info.max_memory_kib), (held, 1024));
    hv.set_max_mem(domid, 64 << 10).unwrap();
    assert_eq!(hv.domain_info(domid).unwrap().max_memory_kib, 64 << 10);
    assert_eq!(hv.set_max_mem(999, 1024), Err(Errno::ESRCH));
    assert_eq!(hv.set_max_mem(domid, 5 << 20), Err(Errno::EINVAL));
}
