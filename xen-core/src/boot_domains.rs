//! Domains built at boot from the boot bundle (dom0, and domUs listed in
//! its manifest, as Xen's dom0less does): create the domain, give it
//! memory, load its PVH kernel with `pvh_builder`, start vCPU 0. All or
//! nothing: a failed build destroys the half-built domain.
//!
//! A domU also gets its PV console as Xen's toolstack sets it up
//! (io/console.h): a ring page just past its RAM (reserved in its memory
//! map), an event channel unbound for dom0, grant entry
//! `GNTTAB_RESERVED_CONSOLE` giving dom0 the page, and both in
//! `HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN`.
//!
//! And its XenStore connection the same way (io/xs_wire.h, as libxl's
//! `libxl__build_pre`/`alloc_magic_pages` and `xc_dom_gnttab_seed` do):
//! a zeroed `struct xenstore_domain_interface` page after the console's
//! (reserved too), an event channel unbound for dom0, grant entry
//! `GNTTAB_RESERVED_XENSTORE` giving dom0 the page, and both in
//! `HVM_PARAM_STORE_PFN` / `HVM_PARAM_STORE_EVTCHN`. dom0's store finds
//! them there when it introduces the domain.
#![forbid(unsafe_code)]

use core::fmt;

use abi::xen::domid::DomId;
use pvh_builder::{BootModule, BuildConfig, BuildError, GpaRange, GuestLoadTarget, LoadFault};

use crate::domain::table::DomainTable;
use crate::domain::table::DOM0;
use crate::domain::vcpu::VcpuEntryState;
use crate::domain::{DomainConfig, DomainError, Privileges};
use crate::guest_mem::GuestPhys;
use crate::mm::{FramePool, Gfn, Mfn, PhysMem, PAGE_SHIFT, PAGE_SIZE};
use crate::{event, grant};
use abi::xen::grant_table::{
    GrantEntryV1, GrantRef, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_PERMIT_ACCESS,
};
use abi::xen::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use abi::xen::start_info::{HvmMemmapEntry, XEN_HVM_MEMMAP_TYPE_RESERVED};

/// The builder writes a domain's memory through its p2m. Every
/// [`GuestFault`](crate::guest_mem::GuestFault) becomes a [`LoadFault`]:
/// the builder only loads RAM it was told the domain has, so any fault
/// means that RAM is missing from the p2m or read-only.
impl<M: PhysMem> GuestLoadTarget for GuestPhys<'_, M> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        GuestPhys::write(self, gpa, bytes).map_err(|_| LoadFault {
            gpa,
            len: bytes.len() as u64,
        })
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        GuestPhys::zero(self, gpa, len).map_err(|_| LoadFault { gpa, len })
    }
}

/// Where a boot domain's RAM comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMemory {
    /// dom0: the machine frames `first..first + pages` (already taken from
    /// the pool by the caller), mapped 1:1 (GPA = HPA) so that dom0 can
    /// later program DMA devices without an IOMMU.
    Identity { first: Mfn },
    /// A domU: fresh frames at GFNs `0..pages`.
    Fresh,
}

/// One domain to build at boot.
#[derive(Clone, Copy, Debug)]
pub struct BootDomain<'a> {
    /// Domain name (unique).
    pub name: &'a str,
    /// The PVH kernel (ELF32 or ELF64 with XEN_ELFNOTE_PHYS32_ENTRY).
    pub image: &'a [u8],
    /// Kernel command line.
    pub cmdline: &'a str,
    /// RAM in 4 KiB pages.
    pub pages: u64,
    /// Number of vCPUs (only vCPU 0 starts; the others wait for VCPUOP_up).
    pub vcpus: u32,
    /// dom0 (hardware and control domain) with 1:1 memory, or a domU.
    pub memory: BootMemory,
    /// A domU that is a control domain (the bundle entry's
    /// `ENTRY_FLAG_CONTROL`); ignored for dom0, which always is one.
    pub control: bool,
    /// Boot modules in its start info: dom0's modules from the bundle
    /// (`abi::bundle::ImageKind::Dom0Module`); none for a domU.
    pub modules: &'a [BootModule<'a>],
}

/// Why a boot domain could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDomainError {
    /// Creating the domain or giving it memory failed.
    Domain(DomainError),
    /// Loading the kernel failed.
    Build(BuildError),
    /// The memory map does not fit the domain's table.
    MemoryMapTooLong,
    /// The PV console or the store ring could not be set up (event
    /// channel or grant table).
    Console(&'static str),
}

/// Pages a domU gets past its RAM, reserved in its memory map: the PV
/// console ring, then the XenStore ring.
pub const DOMU_SPECIAL_PAGES: u64 = 2;

/// One shared ring of a domU for dom0 (console or store): where its grant
/// and HVM params go.
struct SharedRing {
    gref: GrantRef,
    pfn_param: u32,
    evtchn_param: u32,
}

const CONSOLE_RING: SharedRing = SharedRing {
    gref: GNTTAB_RESERVED_CONSOLE,
    pfn_param: HVM_PARAM_CONSOLE_PFN,
    evtchn_param: HVM_PARAM_CONSOLE_EVTCHN,
};

const STORE_RING: SharedRing = SharedRing {
    gref: GNTTAB_RESERVED_XENSTORE,
    pfn_param: HVM_PARAM_STORE_PFN,
    evtchn_param: HVM_PARAM_STORE_EVTCHN,
};

impl fmt::Display for BootDomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(e) => write!(f, "{e}"),
            Self::Build(e) => write!(f, "kernel image: {e}"),
            Self::MemoryMapTooLong => f.write_str("memory map too long"),
            Self::Console(why) => write!(f, "PV console: {why}"),
        }
    }
}

impl From<DomainError> for BootDomainError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<BuildError> for BootDomainError {
    fn from(e: BuildError) -> Self {
        Self::Build(e)
    }
}

/// Builds `spec`; returns the new, still paused domain's id and vCPU 0's
/// entry state. On failure nothing is left behind: the domain is destroyed
/// and its frames are back in `pool` (for [`BootMemory::Identity`] too).
pub fn build_boot_domain(
    table: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    spec: &BootDomain,
) -> Result<(DomId, VcpuEntryState), BootDomainError> {
    let console_pages = match spec.memory {
        BootMemory::Identity { .. } => 0,
        BootMemory::Fresh => DOMU_SPECIAL_PAGES,
    };
    let cfg = DomainConfig {
        name: spec.name,
        max_pages: spec.pages + console_pages,
        vcpus: spec.vcpus,
    };
    let created = match spec.memory {
        BootMemory::Identity { .. } => table.create_dom0(&cfg, pool, mem),
        BootMemory::Fresh if spec.control => {
            table.create_domu_with(&cfg, Privileges::CONTROL, pool, mem)
        }
        BootMemory::Fresh => table.create_domu(&cfg, pool, mem),
    };
    let domid = match created {
        Ok(domid) => domid,
        Err(e) => {
            if let BootMemory::Identity { first } = spec.memory {
                (first.0..first.0 + spec.pages).for_each(|m| pool.free(Mfn(m)));
            }
            return Err(e.into());
        }
    };
    let built = populate_and_load(table, pool, mem, domid, spec).and_then(|entry| {
        if console_pages > 0 {
            setup_ring(table, pool, mem, domid, Gfn(spec.pages), &CONSOLE_RING)?;
            setup_ring(table, pool, mem, domid, Gfn(spec.pages + 1), &STORE_RING)?;
        }
        Ok(entry)
    });
    match built {
        Ok(entry) => Ok((domid, entry)),
        Err(e) => {
            // The domain exists (created above), so neither call can fail.
            let _ = table.kill(domid);
            let _ = table.destroy(domid, pool, mem);
            Err(e)
        }
    }
}

fn populate_and_load(
    table: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    domid: DomId,
    spec: &BootDomain,
) -> Result<VcpuEntryState, BootDomainError> {
    let domain = table
        .get_mut(domid)
        .ok_or(BootDomainError::Domain(DomainError::NoSuchDomain))?;
    let first_gfn = match spec.memory {
        BootMemory::Identity { first } => {
            domain.populate_identity(pool, mem, first, spec.pages)?;
            Gfn(first.0)
        }
        BootMemory::Fresh => {
            domain.populate(pool, mem, Gfn(0), spec.pages)?;
            Gfn(0)
        }
    };
    let ram = [GpaRange {
        start: first_gfn.gpa(),
        end: first_gfn.gpa() + (spec.pages << PAGE_SHIFT),
    }];
    // A domU's console and store rings: the pages after its RAM, reserved.
    let console = [HvmMemmapEntry {
        addr: (first_gfn.0 + spec.pages) << PAGE_SHIFT,
        size: DOMU_SPECIAL_PAGES * PAGE_SIZE as u64,
        kind: XEN_HVM_MEMMAP_TYPE_RESERVED,
        reserved: 0,
    }];
    let extra_memmap: &[HvmMemmapEntry] = match spec.memory {
        BootMemory::Identity { .. } => &[],
        BootMemory::Fresh => &console,
    };
    let cfg = BuildConfig {
        ram: &ram,
        extra_memmap,
        cmdline: spec.cmdline,
        modules: spec.modules,
        // domUs get ACPI tables (Linux finds its local APIC there); dom0's
        // own RAM does not start at 0, and the host's tables are its.
        acpi_vcpus: match spec.memory {
            BootMemory::Identity { .. } => 0,
            BootMemory::Fresh => spec.vcpus,
        },
    };
    let memmap = pvh_builder::memory_map(&cfg)?;
    domain
        .xen_mut()
        .set_memory_map(&memmap)
        .map_err(|_| BootDomainError::MemoryMapTooLong)?;
    let mut target = pvh_builder::Scrubbed::new(GuestPhys::new(domain.p2m(), mem));
    let pvh = pvh_builder::build(spec.image, &cfg, &mut target)?;
    let entry = VcpuEntryState::pvh(pvh.entry, pvh.start_info_gpa);
    if let Some(vcpu) = domain.vcpu_mut(0) {
        vcpu.start(entry);
    }
    Ok(entry)
}

/// A shared ring of domU `domid` (its PV console or its store): ring page
/// at `gfn` (scrubbed, owned by the domU), an event channel for dom0, the
/// reserved grant entry, and the HVM params that name them.
fn setup_ring(
    table: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    domid: DomId,
    gfn: Gfn,
    ring: &SharedRing,
) -> Result<(), BootDomainError> {
    let domain = table
        .get_mut(domid)
        .ok_or(BootDomainError::Domain(DomainError::NoSuchDomain))?;
    domain.populate(pool, mem, gfn, 1)?;
    domain
        .grant_mut()
        .grow(pool, mem, 1)
        .map_err(|_| BootDomainError::Console("no frame for the grant table"))?;
    let entry = domain
        .grant()
        .locate(ring.gref)
        .ok_or(BootDomainError::Console("grant table too small"))?;
    let frame =
        u32::try_from(gfn.0).map_err(|_| BootDomainError::Console("ring page above 16 TiB"))?;
    let grant = GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS,
        domid: DOM0,
        frame,
    };
    grant::entry::write(mem, entry, &grant);
    let port = event::ops::alloc_unbound(table, domid, DOM0)
        .map_err(|_| BootDomainError::Console("no event-channel port"))?;
    let domain = table
        .get_mut(domid)
        .ok_or(BootDomainError::Domain(DomainError::NoSuchDomain))?;
    let params = &mut domain.xen_mut().hvm_params;
    params[ring.pfn_param as usize] = gfn.0;
    params[ring.evtchn_param as usize] = u64::from(port);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::vcpu::VcpuRunState;
    use crate::paging::sim::{machine, SimPool, FIRST_MFN};
    use pvh_builder::test_images::{elf, kernel, load, xen_note};

    const EM_X86_64: u16 = 62;

    fn domu<'a>(name: &'a str, image: &'a [u8]) -> BootDomain<'a> {
        BootDomain {
            name,
            image,
            cmdline: "ticks=3",
            pages: 0x200,
            vcpus: 1,
            memory: BootMemory::Fresh,
            control: false,
            modules: &[],
        }
    }

    /// The builder's `.bss` zeroing is skipped on scrubbed memory: `.bss`
    /// reads zero all the same (frames start dirty in the simulated
    /// machine, populating scrubbed them).
    #[test]
    fn bss_is_zero_without_zeroing_it_twice() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let entry = 0x10_0000u64.to_le_bytes();
        let image = elf(
            true,
            EM_X86_64,
            &[
                xen_note(18, &entry),
                load(0x10_0000, &[0xaa; 0x2000], 0x2000),
                load(0x10_2000, &[0xbb; 0x10], 0x4000),
            ],
        );
        let (domid, _) =
            build_boot_domain(&mut table, &mut pool, &mut mem, &domu("u", &image)).unwrap();
        let d = table.get(domid).unwrap();
        let byte = |gpa: u64| {
            let mfn = d.p2m().translate(&mem, Gfn(gpa >> PAGE_SHIFT)).unwrap().mfn;
            mem.frame(mfn)[(gpa & 0xfff) as usize]
        };
        assert_eq!(byte(0x10_1fff), 0xaa);
        assert_eq!(byte(0x10_200f), 0xbb);
        for gpa in [0x10_2010, 0x10_2fff, 0x10_3000, 0x10_5fff] {
            assert_eq!(byte(gpa), 0, "{gpa:#x}");
        }
    }

    #[test]
    fn builds_a_domu_with_its_memory_map_and_vcpu0_ready() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let image = kernel(true, EM_X86_64, &0x10_0000u64.to_le_bytes());
        let (domid, entry) =
            build_boot_domain(&mut table, &mut pool, &mut mem, &domu("u", &image)).unwrap();
        let d = table.get(domid).unwrap();
        assert_eq!(d.tot_pages(), 0x200 + 2, "RAM, the console and store rings");
        assert_eq!(d.xen().memory_map().len(), 2, "RAM, reserved ring pages");
        assert_eq!(d.vcpu(0).unwrap().run_state(), VcpuRunState::Runnable);
        assert_eq!(entry.rip, 0x10_0000);
        assert!(d.privilege().is_none());
        assert!(d.hardware().is_none());
    }

    #[test]
    fn a_control_domu_gets_control_but_no_hardware() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let image = kernel(true, EM_X86_64, &0x10_0000u64.to_le_bytes());
        let spec = BootDomain {
            control: true,
            ..domu("linux", &image)
        };
        let (domid, _) = build_boot_domain(&mut table, &mut pool, &mut mem, &spec).unwrap();
        let d = table.get(domid).unwrap();
        assert_ne!(domid, DOM0);
        assert!(d.privilege().is_some());
        assert!(d.hardware().is_none());
    }

    /// A boot-time domU's ring: its page at GFN `pfn` (params `pfn_param`
    /// and `port_param` name it), scrubbed, granted to dom0 through
    /// `gref`, and a port unbound for dom0.
    fn check_ring_for_dom0(pfn_param: u32, port_param: u32, gref: u32, pfn: u64) {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let image = kernel(true, EM_X86_64, &0x10_0000u64.to_le_bytes());
        let (domid, _) =
            build_boot_domain(&mut table, &mut pool, &mut mem, &domu("u", &image)).unwrap();
        let d = table.get(domid).unwrap();
        let params = &d.xen().hvm_params;
        assert_eq!(params[pfn_param as usize], pfn);
        let port = u32::try_from(params[port_param as usize]).unwrap();
        let grant = grant::entry::read(&mut mem, d.grant().locate(gref).unwrap());
        assert_eq!(
            (grant.flags, grant.domid, u64::from(grant.frame)),
            (GTF_PERMIT_ACCESS, DOM0, pfn)
        );
        let ring = d.p2m().translate(&mem, Gfn(pfn)).unwrap().mfn;
        assert!(mem.frame(ring).iter().all(|&b| b == 0), "scrubbed ring");
        let reserved = d.xen().memory_map()[1];
        assert_eq!(
            (reserved.addr, reserved.size, reserved.kind),
            (
                0x200 << PAGE_SHIFT,
                2 * PAGE_SIZE as u64,
                XEN_HVM_MEMMAP_TYPE_RESERVED
            ),
            "the console and store pages are one reserved range"
        );
        let status = event::ops::status(&table, domid, port).unwrap();
        assert_eq!(
            status.binding,
            abi::xen::event_channel::EvtchnBinding::Unbound { dom: DOM0 }
        );
        let other = if port_param == HVM_PARAM_STORE_EVTCHN {
            HVM_PARAM_CONSOLE_EVTCHN
        } else {
            HVM_PARAM_STORE_EVTCHN
        };
        assert_ne!(u64::from(port), params[other as usize], "a port each");
    }

    #[test]
    fn a_domu_console_is_granted_to_dom0_with_a_port_for_it() {
        check_ring_for_dom0(
            HVM_PARAM_CONSOLE_PFN,
            HVM_PARAM_CONSOLE_EVTCHN,
            GNTTAB_RESERVED_CONSOLE,
            0x200,
        );
    }

    #[test]
    fn a_domu_store_ring_is_granted_to_dom0_with_a_port_for_it() {
        check_ring_for_dom0(
            HVM_PARAM_STORE_PFN,
            HVM_PARAM_STORE_EVTCHN,
            GNTTAB_RESERVED_XENSTORE,
            0x201,
        );
    }

    #[test]
    fn a_bad_image_leaves_nothing_behind() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let before = pool.free_frames();
        let err = build_boot_domain(&mut table, &mut pool, &mut mem, &domu("u", b"not an elf"));
        assert_eq!(err, Err(BootDomainError::Build(BuildError::NotElf)));
        assert!(table.is_empty());
        assert_eq!(pool.free_frames(), before);
    }

    #[test]
    fn too_little_memory_is_refused_and_returned() {
        let (mut pool, mut mem) = machine(0x100);
        let mut table = DomainTable::new();
        let before = pool.free_frames();
        let image = kernel(true, EM_X86_64, &0x10_0000u64.to_le_bytes());
        let err = build_boot_domain(&mut table, &mut pool, &mut mem, &domu("u", &image));
        assert_eq!(err, Err(BootDomainError::Domain(DomainError::OutOfFrames)));
        assert_eq!(pool.free_frames(), before);
    }

    /// dom0's kernel at 16 MiB (= the simulated machine's first MFN), its RAM 1:1.
    fn dom0_setup(pool: &mut SimPool, pages: u64) -> Vec<u8> {
        (FIRST_MFN..FIRST_MFN + pages).for_each(|m| pool.take(Mfn(m)));
        let base = FIRST_MFN << PAGE_SHIFT;
        let segs = [
            xen_note(18, &base.to_le_bytes()),
            load(base, &[0x90; 64], 0x2000),
        ];
        elf(true, EM_X86_64, &segs)
    }

    #[test]
    fn dom0_gets_identity_memory_and_privilege() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        let image = dom0_setup(&mut pool, 0x100);
        let spec = BootDomain {
            name: "dom0",
            image: &image,
            cmdline: "",
            pages: 0x100,
            vcpus: 1,
            memory: BootMemory::Identity {
                first: Mfn(FIRST_MFN),
            },
            control: false,
            modules: &[],
        };
        let (domid, entry) = build_boot_domain(&mut table, &mut pool, &mut mem, &spec).unwrap();
        let d = table.get(domid).unwrap();
        assert_eq!(domid, 0);
        assert!(d.privilege().is_some());
        assert!(d.hardware().is_some());
        let e = d.p2m().translate(&mem, Gfn(FIRST_MFN + 5)).unwrap();
        assert_eq!(e.mfn, Mfn(FIRST_MFN + 5));
        assert_eq!(entry.rip, FIRST_MFN << PAGE_SHIFT);
    }

    #[test]
    fn a_failed_dom0_returns_its_identity_frames() {
        let (mut pool, mut mem) = machine(0x400);
        let mut table = DomainTable::new();
        dom0_setup(&mut pool, 0x100);
        let taken = pool.free_frames();
        let spec = BootDomain {
            name: "dom0",
            image: b"\x7fELF garbage",
            cmdline: "",
            pages: 0x100,
            vcpus: 1,
            memory: BootMemory::Identity {
                first: Mfn(FIRST_MFN),
            },
            control: false,
            modules: &[],
        };
        assert!(build_boot_domain(&mut table, &mut pool, &mut mem, &spec).is_err());
        assert_eq!(pool.free_frames(), taken + 0x100);
    }
}
