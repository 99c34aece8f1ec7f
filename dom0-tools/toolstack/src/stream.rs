//! Creating a domain from a kernel and a ramdisk that arrive piece by
//! piece ([`pvh_builder::stream`]): for images larger than dom0 could
//! buffer. The domain and its memory exist first
//! ([`StreamedDomain::begin`]: steps 1 to 4 of [`crate::create`]); each
//! piece goes straight into its memory through foreign mappings
//! ([`StreamedDomain::push`]); [`StreamedDomain::finish`] writes the boot
//! information and does steps 6 and 7 but the unpause.
//!
//! A failed step destroys the half-built domain and says why; so does
//! [`StreamedDomain::abort`] (the client went away or gave up). Nothing
//! stays mapped between pieces.

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use alloc::boxed::Box;
use alloc::string::String;
use pvh_builder::stream::StreamBuild;
use pvh_builder::BuildConfig;

use crate::create::{
    create_populated, finish_build, finish_load, schedule, undo, Layout, SchedSpec,
};
use crate::error::CreateError;
use crate::hypervisor::Hypervisor;
use crate::loader::ForeignLoader;
use abi::control::encode_domain_name;

/// A domain to create from a stream: the kernel's and ramdisk's lengths
/// instead of their bytes.
#[derive(Clone, Copy, Debug)]
pub struct StreamSpec<'a> {
    /// Unique name, 1..=`DOMAIN_NAME_MAX` bytes without NUL.
    pub name: &'a str,
    /// RAM, MiB.
    pub memory_mib: u32,
    /// vCPUs, 1..=`MAX_VCPUS_SUPPORTED`.
    pub vcpus: u32,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// The PVH kernel's length, bytes.
    pub kernel_len: u64,
    /// The ramdisk's length, bytes (0: none); it becomes the start
    /// info's one module.
    pub ramdisk_len: u64,
    /// Weight, cap and hard affinity, applied before the first unpause.
    pub sched: SchedSpec,
}

/// A paused domain whose kernel and ramdisk are arriving.
#[derive(Debug)]
pub struct StreamedDomain {
    domid: DomId,
    layout: Layout,
    vcpus: u32,
    sched: SchedSpec,
    cmdline: String,
    /// Boxed: it holds the kernel's first 16 KiB until its headers came.
    build: Box<StreamBuild>,
}

impl StreamedDomain {
    /// Checks `spec`, creates the domain paused and gives it its
    /// (zeroed) memory. Nothing is left on error.
    pub fn begin(hv: &mut impl Hypervisor, spec: &StreamSpec) -> Result<Self, CreateError> {
        let name = encode_domain_name(spec.name).ok_or(CreateError::BadName)?;
        let layout = Layout::of(spec.vcpus, spec.memory_mib)?;
        if spec.cmdline.len() > pvh_builder::MAX_CMDLINE || spec.cmdline.contains('\0') {
            return Err(CreateError::Image(pvh_builder::BuildError::BadCmdline));
        }
        let domid = create_populated(hv, &name, spec.vcpus, &layout)?;
        Ok(Self {
            domid,
            layout,
            vcpus: spec.vcpus,
            sched: spec.sched,
            cmdline: spec.cmdline.into(),
            build: Box::new(StreamBuild::new(spec.kernel_len, spec.ramdisk_len)),
        })
    }

    /// The domain being built.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.build.received()
    }

    /// The next piece of the stream, written where it belongs. On error
    /// the domain is destroyed.
    pub fn push(mut self, hv: &mut impl Hypervisor, data: &[u8]) -> Result<Self, CreateError> {
        let (domid, frames) = (self.domid, self.layout.frames());
        let result = self.with_config(|build, cfg| {
            let mut loader = ForeignLoader::new(hv, domid, frames);
            let pushed = build.push(data, cfg, &mut loader);
            finish_load(&mut loader, pushed)
        });
        match result {
            Ok(()) => Ok(self),
            Err(cause) => Err(undo(hv, domid, cause)),
        }
    }

    /// Every byte arrived: the boot information, the memory map, the
    /// console and store, vCPU 0's entry. The domain stays paused (the
    /// caller attaches its devices, then unpauses it); on error it is
    /// destroyed.
    pub fn finish(mut self, hv: &mut impl Hypervisor) -> Result<DomId, CreateError> {
        let (domid, layout) = (self.domid, self.layout);
        let result = self
            .with_config(|build, cfg| {
                let mut loader = ForeignLoader::new(&mut *hv, domid, layout.frames());
                let built = build.finish(cfg, &mut loader);
                let entry = finish_load(&mut loader, built)?;
                finish_build(hv, domid, &layout, cfg, entry)
            })
            .and_then(|()| schedule(hv, domid, self.vcpus, &self.sched));
        match result {
            Ok(()) => Ok(domid),
            Err(cause) => Err(undo(hv, domid, cause)),
        }
    }

    /// Gives up: destroys the half-built domain (the hypervisor's error
    /// if it could not).
    pub fn abort(self, hv: &mut impl Hypervisor) -> Result<(), Errno> {
        hv.destroy(self.domid)
    }

    /// Runs `f` with the build and the domain's build configuration.
    fn with_config<T>(&mut self, f: impl FnOnce(&mut StreamBuild, &BuildConfig) -> T) -> T {
        let (ram, console) = (self.layout.ram(), self.layout.console_memmap());
        let cfg = self
            .layout
            .build_config(&ram, &console, &self.cmdline, self.vcpus);
        f(&mut self.build, &cfg)
    }
}
