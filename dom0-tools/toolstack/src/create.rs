//! Creating a domain from a PVH kernel, all or nothing, as Xen's
//! libxl/libxc PVH path does it (`libxl__build_pvh` / `xc_dom_*`):
//!
//! 1. check the name, vCPU count and memory, and dry-run the PVH builder
//!    over the layout ([`crate::loader::CheckOnly`]): a bad image or
//!    command line is refused before anything exists;
//! 2. `CONTROL_OP_PHYSINFO`: the domain's RAM, console page and an
//!    estimate of its page tables must fit in the free memory;
//! 3. `CONTROL_OP_CREATE` (paused);
//! 4. `CONTROL_OP_POPULATE_MEMORY`: RAM at GFNs `0..pages`, the PV
//!    console ring at GFN `pages` (just past RAM, reserved in the memory
//!    map: the layout xen-core gives boot-time domUs,
//!    `xen-core/src/boot_domains.rs`);
//! 5. load the kernel and its start info through foreign mappings
//!    ([`crate::loader::ForeignLoader`]), then unmap;
//! 6. the PV console (io/console.h): a port of the new domain unbound
//!    for dom0 (`EVTCHNOP_alloc_unbound`), `HVM_PARAM_CONSOLE_PFN` and
//!    `HVM_PARAM_CONSOLE_EVTCHN`; and the same for its XenStore ring
//!    (io/xs_wire.h) at GFN `pages + 1`, `HVM_PARAM_STORE_PFN` and
//!    `HVM_PARAM_STORE_EVTCHN` (libxl's `alloc_magic_pages`);
//! 7. vCPU 0's PVH entry state (`CONTROL_OP_SET_VCPU_CONTEXT`);
//! 8. its scheduling, if the spec names it (xl.cfg's `weight`, `cap`:
//!    `CONTROL_OP_SCHED_CREDIT`; `cpus`: `CONTROL_OP_SET_VCPU_AFFINITY`
//!    of every vCPU, as libxl sets them before the first unpause), then
//!    unpause ([`build_domain`] stops before the unpause, for a caller
//!    that attaches devices first).
//!
//! Any failure after step 3 unmaps what is mapped and destroys the
//! half-built domain (which returns its memory, ports and parameters).
//!
//! Differences from boot-time domUs, for want of control operations:
//! - the console's and store's grant entries (`GNTTAB_RESERVED_CONSOLE`,
//!   `GNTTAB_RESERVED_XENSTORE`) are not seeded: dom0 would have to map
//!   the new domain's grant table. dom0's console backend and store map
//!   the rings by `MAP_FOREIGN` of the PFN when the grant map fails, as
//!   Xen's xenconsoled and xenstored fall back to foreign-mapping them;
//! - the memory map of the start info is also stored with
//!   `XENMEM_set_memory_map`, as Xen's toolstack does, for the domain's
//!   `XENMEM_memory_map`.

use abi::control::{
    encode_domain_name, VcpuHvmX86_32, DOMAIN_NAME_MAX, MAX_VCPUS_SUPPORTED, POPULATE_MAX_FRAMES,
    SCHED_CAP_UNCHANGED, SCHED_WEIGHT_UNCHANGED,
};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use abi::xen::memory::E820Entry;
use abi::xen::start_info::{HvmMemmapEntry, XEN_HVM_MEMMAP_TYPE_RESERVED};
use abi::xen::{PAGE_SHIFT, PAGE_SIZE};
use alloc::boxed::Box;
use alloc::vec::Vec;
use pvh_builder::{BuildConfig, BuildError, GpaRange, PvhEntry, Scrubbed};

use crate::error::{CreateError, Op};
use crate::hypervisor::Hypervisor;
use crate::loader::{CheckOnly, ForeignLoader};

/// dom0's domid: the console backend's end of the console channel.
const DOM0: DomId = 0;
/// Pages past RAM, reserved in the memory map: the console ring, then
/// the store ring (the layout xen-core gives boot-time domUs).
const SPECIAL_PAGES: u64 = 2;
/// KiB per 4 KiB frame.
const FRAME_KIB: u64 = (PAGE_SIZE / 1024) as u64;
/// Frames per MiB.
const FRAMES_PER_MIB: u64 = 256;
/// GFNs one nested page-table page maps (512 entries of 8 bytes).
const GFNS_PER_TABLE: u64 = 512;
/// Frames xen-core takes for a small domain besides its memory and its
/// last-level NPT pages: PML4, PDPT and PD, shared info, one
/// grant-table frame (a 4 MiB domain took 1033 frames under QEMU).
const FIXED_OVERHEAD_FRAMES: u64 = 5;

/// A domain to create.
#[derive(Clone, Copy, Debug)]
pub struct DomainSpec<'a> {
    /// Unique name, 1..=`DOMAIN_NAME_MAX` bytes without NUL.
    pub name: &'a str,
    /// RAM, MiB (the console ring page comes on top).
    pub memory_mib: u32,
    /// vCPUs, 1..=`MAX_VCPUS_SUPPORTED`; vCPU 0 starts, the others wait
    /// for `VCPUOP_up`.
    pub vcpus: u32,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// The PVH kernel: an x86 ELF with `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub image: &'a [u8],
    /// Its scheduling parameters.
    pub sched: SchedSpec,
}

/// How a new domain is scheduled; `None` keeps the hypervisor's default
/// (every pCPU, weight 256, no cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedSpec {
    /// Hard affinity of every vCPU: bit n for pCPU n.
    pub affinity: Option<u64>,
    /// Credit weight, 1..=65535.
    pub weight: Option<u16>,
    /// Cap, percent of one pCPU (0: none).
    pub cap: Option<u16>,
}

impl From<&mgmt::sched::SchedConfig> for SchedSpec {
    /// A domain config's `cpus`, `weight` and `cap`, as given.
    fn from(config: &mgmt::sched::SchedConfig) -> Self {
        Self {
            affinity: config.cpus.map(|c| c.0),
            weight: config.weight,
            cap: config.cap,
        }
    }
}

/// Where a domain's memory goes: RAM at GFN 0, the console ring after it,
/// then the store ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// RAM frames, at GFNs `0..ram_frames`.
    ram_frames: u64,
}

impl Layout {
    /// The layout of a domain with `memory_mib` of RAM, once the vCPU
    /// count and the memory are checked.
    pub(crate) fn of(vcpus: u32, memory_mib: u32) -> Result<Self, CreateError> {
        if !(1..=MAX_VCPUS_SUPPORTED).contains(&vcpus) {
            return Err(CreateError::BadVcpus(vcpus));
        }
        if memory_mib == 0 {
            return Err(CreateError::NoMemory);
        }
        Ok(Self {
            ram_frames: u64::from(memory_mib) * FRAMES_PER_MIB,
        })
    }

    /// What the PVH builder needs, `ram` and `console` being
    /// [`Layout::ram`] and [`Layout::console_memmap`].
    pub(crate) fn build_config<'a>(
        &self,
        ram: &'a [GpaRange; 1],
        console: &'a [HvmMemmapEntry; 1],
        cmdline: &'a str,
        vcpus: u32,
    ) -> BuildConfig<'a> {
        BuildConfig {
            ram,
            extra_memmap: console,
            cmdline,
            modules: &[],
            acpi_vcpus: vcpus,
        }
    }

    /// GFN of the console ring page.
    fn console_gfn(&self) -> u64 {
        self.ram_frames
    }

    /// GFN of the store ring page.
    fn store_gfn(&self) -> u64 {
        self.ram_frames + 1
    }

    /// Frames populated: RAM and the two rings.
    pub(crate) fn frames(&self) -> u64 {
        self.ram_frames + SPECIAL_PAGES
    }

    /// KiB the domain needs from the host, page tables estimated.
    fn needed_kib(&self) -> u64 {
        let tables = self.frames().div_ceil(GFNS_PER_TABLE) + FIXED_OVERHEAD_FRAMES;
        (self.frames() + tables) * FRAME_KIB
    }

    pub(crate) fn ram(&self) -> [GpaRange; 1] {
        [GpaRange {
            start: 0,
            end: self.ram_frames << PAGE_SHIFT,
        }]
    }

    pub(crate) fn console_memmap(&self) -> [HvmMemmapEntry; 1] {
        [HvmMemmapEntry {
            addr: self.console_gfn() << PAGE_SHIFT,
            size: SPECIAL_PAGES * PAGE_SIZE as u64,
            kind: XEN_HVM_MEMMAP_TYPE_RESERVED,
            reserved: 0,
        }]
    }
}

/// Creates, builds and unpauses the domain `spec` describes; its domid.
/// All or nothing: on error nothing of it is left (except
/// [`CreateError::NotCleanedUp`], which says what is).
pub fn create_domain(hv: &mut impl Hypervisor, spec: &DomainSpec) -> Result<DomId, CreateError> {
    let domid = build_domain(hv, spec)?;
    match hv.unpause(domid) {
        Ok(()) => Ok(domid),
        Err(e) => Err(undo(hv, domid, hypervisor(Op::Unpause, e))),
    }
}

/// Creates and builds the domain `spec` describes and leaves it paused,
/// so that its devices (disks) can be attached before it first runs, as
/// libxl does; the caller unpauses it (or destroys it). All or nothing,
/// as [`create_domain`].
pub fn build_domain(hv: &mut impl Hypervisor, spec: &DomainSpec) -> Result<DomId, CreateError> {
    let name = encode_domain_name(spec.name).ok_or(CreateError::BadName)?;
    let layout = Layout::of(spec.vcpus, spec.memory_mib)?;
    let (ram, console) = (layout.ram(), layout.console_memmap());
    let cfg = layout.build_config(&ram, &console, spec.cmdline, spec.vcpus);
    let mut check = CheckOnly {
        end: layout.frames() << PAGE_SHIFT,
    };
    pvh_builder::build(spec.image, &cfg, &mut check).map_err(CreateError::Image)?;
    let domid = create_populated(hv, &name, spec.vcpus, &layout)?;
    match load(hv, domid, &layout, spec.image, &cfg)
        .and_then(|entry| finish_build(hv, domid, &layout, &cfg, entry))
        .and_then(|()| schedule(hv, domid, spec.vcpus, &spec.sched))
    {
        Ok(()) => Ok(domid),
        Err(cause) => Err(undo(hv, domid, cause)),
    }
}

/// Checks the free memory, creates the domain (paused) and populates
/// it; its domid. Nothing is left on error.
pub(crate) fn create_populated(
    hv: &mut impl Hypervisor,
    name: &[u8; DOMAIN_NAME_MAX],
    vcpus: u32,
    layout: &Layout,
) -> Result<DomId, CreateError> {
    let free_kib = hv
        .physinfo()
        .map_err(|errno| hypervisor(Op::Physinfo, errno))?
        .free_memory_kib;
    if layout.needed_kib() > free_kib {
        return Err(CreateError::NotEnoughMemory {
            needed_kib: layout.needed_kib(),
            free_kib,
        });
    }
    let domid = hv
        .create(name, layout.frames() * FRAME_KIB, vcpus)
        .map_err(|errno| match errno {
            Errno::EEXIST => CreateError::DuplicateName,
            Errno::ENOSPC => CreateError::TooManyDomains,
            _ => hypervisor(Op::Create, errno),
        })?;
    match populate(hv, domid, layout.frames()) {
        Ok(()) => Ok(domid),
        Err(cause) => Err(undo(hv, domid, cause)),
    }
}

/// Destroys the half-made `domid` after `cause`; the error to report.
pub fn undo(hv: &mut impl Hypervisor, domid: DomId, cause: CreateError) -> CreateError {
    match hv.destroy(domid) {
        Ok(()) => cause,
        Err(destroy) => CreateError::NotCleanedUp {
            domid,
            destroy,
            cause: Box::new(cause),
        },
    }
}

pub(crate) fn hypervisor(op: Op, errno: Errno) -> CreateError {
    CreateError::Hypervisor { op, errno }
}

/// Steps 6 and 7 but the unpause, once the kernel is loaded: the memory
/// map, the console's and store's rings and ports, vCPU 0's entry.
pub(crate) fn finish_build(
    hv: &mut impl Hypervisor,
    domid: DomId,
    layout: &Layout,
    cfg: &BuildConfig,
    entry: PvhEntry,
) -> Result<(), CreateError> {
    let e820: Vec<E820Entry> = pvh_builder::memory_map(cfg)
        .map_err(CreateError::Image)?
        .iter()
        .map(|e| E820Entry {
            addr: e.addr,
            size: e.size,
            kind: e.kind,
        })
        .collect();
    hv.set_memory_map(domid, &e820)
        .map_err(|e| hypervisor(Op::MemoryMap, e))?;
    let port = hv
        .evtchn_alloc_unbound(domid, DOM0)
        .map_err(|e| hypervisor(Op::ConsoleEvtchn, e))?;
    hv.hvm_set_param(domid, HVM_PARAM_CONSOLE_PFN, layout.console_gfn())
        .and_then(|()| hv.hvm_set_param(domid, HVM_PARAM_CONSOLE_EVTCHN, port.into()))
        .map_err(|e| hypervisor(Op::ConsoleParams, e))?;
    let store_port = hv
        .evtchn_alloc_unbound(domid, DOM0)
        .map_err(|e| hypervisor(Op::StoreEvtchn, e))?;
    hv.hvm_set_param(domid, HVM_PARAM_STORE_PFN, layout.store_gfn())
        .and_then(|()| hv.hvm_set_param(domid, HVM_PARAM_STORE_EVTCHN, store_port.into()))
        .map_err(|e| hypervisor(Op::StoreParams, e))?;
    hv.set_vcpu_context(domid, 0, &pvh_vcpu_context(entry))
        .map_err(|e| hypervisor(Op::SetVcpuContext, e))
}

/// Step 8: the weight and cap, then every vCPU's hard affinity.
pub(crate) fn schedule(
    hv: &mut impl Hypervisor,
    domid: DomId,
    vcpus: u32,
    sched: &SchedSpec,
) -> Result<(), CreateError> {
    if sched.weight.is_some() || sched.cap.is_some() {
        hv.sched_credit(
            domid,
            sched.weight.unwrap_or(SCHED_WEIGHT_UNCHANGED),
            sched.cap.unwrap_or(SCHED_CAP_UNCHANGED),
        )
        .map_err(|e| hypervisor(Op::SchedCredit, e))?;
    }
    if let Some(affinity) = sched.affinity {
        for vcpu in 0..vcpus {
            hv.set_vcpu_affinity(domid, vcpu, affinity)
                .map_err(|e| hypervisor(Op::VcpuAffinity, e))?;
        }
    }
    Ok(())
}

/// Zeroed frames at GFNs `0..frames`, in batches the hypervisor accepts.
fn populate(hv: &mut impl Hypervisor, domid: DomId, frames: u64) -> Result<(), CreateError> {
    let mut gfn = 0;
    while gfn < frames {
        let nr = (frames - gfn).min(POPULATE_MAX_FRAMES);
        hv.populate(domid, gfn, nr)
            .map_err(|e| hypervisor(Op::Populate, e))?;
        gfn += nr;
    }
    Ok(())
}

/// Loads the kernel and its boot information; nothing stays mapped.
fn load(
    hv: &mut impl Hypervisor,
    domid: DomId,
    layout: &Layout,
    image: &[u8],
    cfg: &BuildConfig,
) -> Result<PvhEntry, CreateError> {
    // `populate` gave scrubbed frames: `.bss` is not zeroed (or mapped)
    // again.
    let mut loader = Scrubbed::new(ForeignLoader::new(hv, domid, layout.frames()));
    let built = pvh_builder::build(image, cfg, &mut loader);
    finish_load(loader.inner_mut(), built)
}

/// Unmaps what `loader` holds; `built`'s result, a write that failed in
/// the hypervisor reported as the hypervisor's error.
pub(crate) fn finish_load<H: Hypervisor, T>(
    loader: &mut ForeignLoader<'_, H>,
    built: Result<T, BuildError>,
) -> Result<T, CreateError> {
    let failure = loader.failure();
    let unmapped = loader.finish();
    let value = built.map_err(|e| match (e, failure) {
        (BuildError::GuestWrite(_), Some((op, errno))) => hypervisor(op, errno),
        _ => CreateError::Image(e),
    })?;
    unmapped.map_err(|(op, errno)| hypervisor(op, errno))?;
    Ok(value)
}

/// vCPU 0's registers at PVH entry: [`VcpuHvmX86_32::pvh_entry`] at the
/// kernel's entry note, EBX = its start info's GPA.
pub fn pvh_vcpu_context(entry: PvhEntry) -> VcpuHvmX86_32 {
    VcpuHvmX86_32::pvh_entry(entry.entry, entry.start_info_gpa)
}
