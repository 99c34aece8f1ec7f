//! A hypervisor in memory with xen-core's control semantics (the parts
//! the toolstack relies on): domains with frames, one foreign mapping at
//! a time, ports, HVM params. It records every call and can fail any one.

use std::collections::BTreeMap;

use abi::control::{
    parse_domain_name, DomainInfo, DomainStats, ListResponse, Physinfo, VcpuHvmX86_32,
    DOMAIN_FLAG_PAUSED, DOMAIN_NAME_MAX, LIST_BATCH_MAX, MAP_MAX_FRAMES, POPULATE_MAX_FRAMES,
};
use abi::xen::domid::{DomId, DOMID_INVALID};
use abi::xen::errno::Errno;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::memory::E820Entry;
use abi::xen::PAGE_SIZE;
use zerocopy::FromZeros;

use crate::Hypervisor;

/// Operations, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Physinfo,
    DomainInfo,
    DomainList,
    DomainStats,
    Create,
    Destroy,
    Pause,
    Unpause,
    Populate,
    MapForeign,
    WriteForeign,
    ZeroForeign,
    UnmapForeign,
    SetVcpuContext,
    AllocUnbound,
    SetParam,
    SetMemoryMap,
    SetMaxMem,
    VcpuStats,
    SchedCredit,
    VcpuAffinity,
}

pub struct FakeDomain {
    pub name: String,
    pub max_kib: u64,
    pub vcpus: u32,
    pub frames: BTreeMap<u64, Vec<u8>>,
    pub pause_count: u32,
    pub vcpu0: Option<VcpuHvmX86_32>,
    pub params: BTreeMap<u32, u64>,
    pub memory_map: Vec<E820Entry>,
    /// Port i (from 1) is unbound for `ports[i - 1]`.
    pub ports: Vec<DomId>,
    /// Credit weight and cap.
    pub sched: (u16, u16),
    /// vCPU id -> hard affinity, for the pinned ones.
    pub affinity: BTreeMap<u32, u64>,
}

/// A live mapping: the owner's GFNs `first_gfn..+nr_frames`.
#[derive(Debug)]
pub struct FakeMapping {
    id: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct MappedRange {
    pub domid: DomId,
    pub first_gfn: u64,
    pub nr_frames: u32,
}

pub struct Fake {
    pub domains: BTreeMap<DomId, FakeDomain>,
    pub mappings: BTreeMap<u32, MappedRange>,
    pub free_kib: u64,
    pub max_domains: usize,
    pub calls: Vec<Call>,
    /// Fail the calls with these indices in `calls` with these errnos.
    pub fail_at: Vec<(usize, Errno)>,
    next_mapping: u32,
}

impl Fake {
    pub fn new(free_kib: u64) -> Self {
        Self {
            domains: BTreeMap::new(),
            mappings: BTreeMap::new(),
            free_kib,
            max_domains: 8,
            calls: Vec::new(),
            fail_at: Vec::new(),
            next_mapping: 0,
        }
    }

    /// Records `call`; the injected failure if it is the chosen one.
    fn enter(&mut self, call: Call) -> Result<(), Errno> {
        self.calls.push(call);
        let index = self.calls.len() - 1;
        match self.fail_at.iter().find(|(at, _)| *at == index) {
            Some((_, errno)) => Err(*errno),
            None => Ok(()),
        }
    }

    fn domain(&mut self, domid: DomId) -> Result<&mut FakeDomain, Errno> {
        self.domains.get_mut(&domid).ok_or(Errno::ESRCH)
    }

    /// Reads `len` bytes of `domid`'s memory at `gpa` (unpopulated: None).
    pub fn read(&self, domid: DomId, gpa: u64, len: usize) -> Option<Vec<u8>> {
        let d = self.domains.get(&domid)?;
        (gpa..gpa + len as u64)
            .map(|a| {
                let frame = d.frames.get(&(a / PAGE_SIZE as u64))?;
                Some(frame[(a % PAGE_SIZE as u64) as usize])
            })
            .collect()
    }

    fn info(domid: DomId, d: &FakeDomain) -> DomainInfo {
        let mut name = [0; DOMAIN_NAME_MAX];
        name[..d.name.len()].copy_from_slice(d.name.as_bytes());
        DomainInfo {
            domid,
            flags: if d.pause_count > 0 {
                DOMAIN_FLAG_PAUSED
            } else {
                0
            },
            nr_vcpus: d.vcpus,
            memory_kib: d.frames.len() as u64 * 4,
            max_memory_kib: d.max_kib,
            name,
            ..DomainInfo::default()
        }
    }

    /// The mapping's range and the byte range `offset..+len` inside it.
    fn mapped(&self, m: &FakeMapping, offset: u64, len: u64) -> Result<MappedRange, Errno> {
        let r = *self.mappings.get(&m.id).ok_or(Errno::EINVAL)?;
        let size = u64::from(r.nr_frames) * PAGE_SIZE as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(r),
            _ => Err(Errno::EFAULT),
        }
    }

    fn store(&mut self, m: &FakeMapping, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let r = self.mapped(m, offset, bytes.len() as u64)?;
        let d = self.domain(r.domid)?;
        let base = r.first_gfn * PAGE_SIZE as u64 + offset;
        for (i, b) in bytes.iter().enumerate() {
            let a = base + i as u64;
            let frame = d
                .frames
                .get_mut(&(a / PAGE_SIZE as u64))
                .ok_or(Errno::EFAULT)?;
            frame[(a % PAGE_SIZE as u64) as usize] = *b;
        }
        Ok(())
    }
}

impl Hypervisor for Fake {
    type Mapping = FakeMapping;

    fn physinfo(&mut self) -> Result<Physinfo, Errno> {
        self.enter(Call::Physinfo)?;
        Ok(Physinfo {
            nr_pcpus: 1,
            nr_domains: self.domains.len() as u32 + 1,
            total_memory_kib: 256 << 10,
            free_memory_kib: self.free_kib,
            tsc_khz: 1_000_000,
        })
    }

    fn domain_info(&mut self, domid: DomId) -> Result<DomainInfo, Errno> {
        self.enter(Call::DomainInfo)?;
        let d = self.domains.get(&domid).ok_or(Errno::ESRCH)?;
        Ok(Self::info(domid, d))
    }

    fn domain_list(&mut self, start_domid: DomId) -> Result<ListResponse, Errno> {
        self.enter(Call::DomainList)?;
        let mut r = ListResponse::new_zeroed();
        let mut later = self.domains.range(start_domid..);
        for (slot, (domid, d)) in r.domains.iter_mut().zip(later.by_ref()) {
            *slot = Self::info(*domid, d);
            r.nr_entries += 1;
        }
        r.next_domid = later.next().map_or(DOMID_INVALID, |(id, _)| *id);
        debug_assert!(r.nr_entries as usize <= LIST_BATCH_MAX);
        Ok(r)
    }

    fn domain_stats(&mut self, domid: DomId) -> Result<DomainStats, Errno> {
        self.enter(Call::DomainStats)?;
        let d = self.domains.get(&domid).ok_or(Errno::ESRCH)?;
        let mut s = DomainStats::new_zeroed();
        s.nr_vcpus = d.vcpus;
        Ok(s)
    }

    fn vcpu_stats(&mut self, domid: DomId) -> Result<abi::control::VcpuStatsResponse, Errno> {
        self.enter(Call::VcpuStats)?;
        let d = self.domains.get(&domid).ok_or(Errno::ESRCH)?;
        let mut r = abi::control::VcpuStatsResponse::new_zeroed();
        (r.weight, r.cap, r.nr_vcpus) = (d.sched.0, d.sched.1, d.vcpus);
        for (id, v) in (0u32..).zip(r.vcpus.iter_mut()).take(d.vcpus as usize) {
            v.vcpu_id = id;
            v.affinity = d.affinity.get(&id).copied().unwrap_or(u64::MAX);
        }
        Ok(r)
    }

    fn sched_credit(
        &mut self,
        domid: DomId,
        weight: u16,
        cap: u16,
    ) -> Result<abi::control::SchedCreditInfo, Errno> {
        self.enter(Call::SchedCredit)?;
        let d = self.domains.get_mut(&domid).ok_or(Errno::ESRCH)?;
        if cap != u16::MAX && cap > 100 {
            return Err(Errno::EINVAL);
        }
        if weight != 0 {
            d.sched.0 = weight;
        }
        if cap != u16::MAX {
            d.sched.1 = cap;
        }
        Ok(abi::control::SchedCreditInfo {
            weight: d.sched.0,
            cap: d.sched.1,
            pad: 0,
        })
    }

    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu_id: u32,
        affinity: u64,
    ) -> Result<u64, Errno> {
        self.enter(Call::VcpuAffinity)?;
        let d = self.domains.get_mut(&domid).ok_or(Errno::ESRCH)?;
        if vcpu_id >= d.vcpus || affinity & 1 == 0 {
            return Err(Errno::EINVAL);
        }
        d.affinity.insert(vcpu_id, affinity);
        Ok(1)
    }

    fn create(
        &mut self,
        name: &[u8; DOMAIN_NAME_MAX],
        max_memory_kib: u64,
        vcpus: u32,
    ) -> Result<DomId, Errno> {
        self.enter(Call::Create)?;
        let name = parse_domain_name(name).ok_or(Errno::EINVAL)?;
        if self.domains.values().any(|d| d.name == name) {
            return Err(Errno::EEXIST);
        }
        if max_memory_kib > self.free_kib {
            return Err(Errno::ENOMEM);
        }
        if self.domains.len() >= self.max_domains {
            return Err(Errno::ENOSPC);
        }
        let domid = (1..).find(|id| !self.domains.contains_key(id)).unwrap();
        let d = FakeDomain {
            name: name.into(),
            max_kib: max_memory_kib,
            vcpus,
            frames: BTreeMap::new(),
            pause_count: 1,
            vcpu0: None,
            params: BTreeMap::new(),
            memory_map: Vec::new(),
            ports: Vec::new(),
            sched: (256, 0),
            affinity: BTreeMap::new(),
        };
        self.domains.insert(domid, d);
        Ok(domid)
    }

    fn destroy(&mut self, domid: DomId) -> Result<(), Errno> {
        self.enter(Call::Destroy)?;
        let d = self.domains.remove(&domid).ok_or(Errno::ESRCH)?;
        self.free_kib += d.frames.len() as u64 * 4;
        // As xen-core: the owner's frames leave every mapper's p2m.
        self.mappings.retain(|_, r| r.domid != domid);
        Ok(())
    }

    fn pause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.enter(Call::Pause)?;
        self.domain(domid)?.pause_count += 1;
        Ok(())
    }

    fn set_max_mem(&mut self, domid: DomId, max_memory_kib: u64) -> Result<(), Errno> {
        self.enter(Call::SetMaxMem)?;
        self.domain(domid)?.max_kib = max_memory_kib;
        Ok(())
    }

    fn unpause(&mut self, domid: DomId) -> Result<(), Errno> {
        self.enter(Call::Unpause)?;
        let d = self.domain(domid)?;
        d.pause_count = d.pause_count.checked_sub(1).ok_or(Errno::EINVAL)?;
        Ok(())
    }

    fn populate(&mut self, domid: DomId, first_gfn: u64, nr_frames: u64) -> Result<(), Errno> {
        self.enter(Call::Populate)?;
        if !(1..=POPULATE_MAX_FRAMES).contains(&nr_frames) {
            return Err(Errno::EINVAL);
        }
        let free = self.free_kib;
        let d = self.domain(domid)?;
        let gfns = first_gfn..first_gfn + nr_frames;
        if gfns.clone().any(|g| d.frames.contains_key(&g)) {
            return Err(Errno::EEXIST);
        }
        let kib = nr_frames * 4;
        if (d.frames.len() as u64) * 4 + kib > d.max_kib || kib > free {
            return Err(Errno::ENOMEM);
        }
        gfns.for_each(|g| {
            d.frames.insert(g, vec![0; PAGE_SIZE]);
        });
        self.free_kib -= kib;
        Ok(())
    }

    fn map_foreign(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        nr_frames: u32,
    ) -> Result<FakeMapping, Errno> {
        self.enter(Call::MapForeign)?;
        // One window, as dom0's implementation: a second map finds it in use.
        if !(1..=MAP_MAX_FRAMES).contains(&nr_frames) || !self.mappings.is_empty() {
            return Err(Errno::EINVAL);
        }
        let d = self.domain(domid)?;
        let gfns = first_gfn..first_gfn + u64::from(nr_frames);
        if !gfns.clone().all(|g| d.frames.contains_key(&g)) {
            return Err(Errno::ENOENT);
        }
        let id = self.next_mapping;
        self.next_mapping += 1;
        let range = MappedRange {
            domid,
            first_gfn,
            nr_frames,
        };
        self.mappings.insert(id, range);
        Ok(FakeMapping { id })
    }

    fn write_foreign(&mut self, m: &FakeMapping, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.enter(Call::WriteForeign)?;
        self.store(m, offset, bytes)
    }

    fn zero_foreign(&mut self, m: &FakeMapping, offset: u64, len: u64) -> Result<(), Errno> {
        self.enter(Call::ZeroForeign)?;
        self.mapped(m, offset, len)?;
        self.store(m, offset, &vec![0; len as usize])
    }

    fn unmap_foreign(&mut self, m: FakeMapping) -> Result<(), Errno> {
        self.enter(Call::UnmapForeign)?;
        self.mappings.remove(&m.id).map(|_| ()).ok_or(Errno::EINVAL)
    }

    fn set_vcpu_context(
        &mut self,
        domid: DomId,
        vcpu: u32,
        regs: &VcpuHvmX86_32,
    ) -> Result<(), Errno> {
        self.enter(Call::SetVcpuContext)?;
        let d = self.domain(domid)?;
        if vcpu >= d.vcpus {
            return Err(Errno::ENOENT);
        }
        if d.pause_count == 0 || d.vcpu0.is_some() {
            return Err(Errno::EBUSY);
        }
        d.vcpu0 = Some(*regs);
        Ok(())
    }

    fn evtchn_alloc_unbound(&mut self, domid: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.enter(Call::AllocUnbound)?;
        let d = self.domain(domid)?;
        d.ports.push(remote);
        Ok(d.ports.len() as EvtchnPort)
    }

    fn hvm_set_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), Errno> {
        self.enter(Call::SetParam)?;
        self.domain(domid)?.params.insert(index, value);
        Ok(())
    }

    fn set_memory_map(&mut self, domid: DomId, map: &[E820Entry]) -> Result<(), Errno> {
        self.enter(Call::SetMemoryMap)?;
        self.domain(domid)?.memory_map = map.to_vec();
        Ok(())
    }
}
