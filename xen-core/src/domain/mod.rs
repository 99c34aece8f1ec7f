//! Domains: identity, life-cycle state, memory (the p2m and the frames it
//! owns), vCPUs and counters. [`table::DomainTable`] holds them all.
//!
//! Memory rules: a domain's NPT maps only frames it owns
//! ([`P2mKind::Owned`]) or that are deliberately shared with it
//! ([`P2mKind::Shared`]); owned frames are scrubbed (zeroed) before the
//! domain sees them and again before they go back to the pool.

#![forbid(unsafe_code)]

pub mod counters;
pub mod foreign;
pub mod hvm_context;
pub mod runstate;
pub(crate) mod shared;
pub mod table;
pub mod vcpu;
pub mod vcpu_ops;
pub mod xen_state;

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::memory::E820_RAM;
use abi::xen::vcpu::RUNSTATE_OFFLINE;
use displaydoc::Display;
use table::MAX_DOMAINS;

use crate::event::EventChannels;
use crate::grant::table::GrantTable;
use crate::mm::{FramePool, Gfn, Mfn, PhysMem, PAGE_SHIFT};
use crate::paging::npt::{Npt, NptError, P2mAccess, P2mEntry, P2mKind, NPT_MAX_GFN};
use crate::sched::params::DomainSched;
use counters::{ExitCounters, HypercallCounters, VcpuCounters};
use vcpu::Vcpu;
use xen_state::XenState;

/// vCPUs per domain (the control ABI's `MAX_VCPUS_SUPPORTED`: toolstacks
/// check against the same number).
pub const MAX_VCPUS: usize = abi::control::MAX_VCPUS_SUPPORTED as usize;
/// Largest `max_pages` a domain may have: 4 GiB.
pub const MAX_DOMAIN_PAGES: u64 = 1 << 20;
/// Frames not its own (shared info, grant frames, granted pages) a domain
/// may have mapped at once (512: room for a backend's persistent grants,
/// blkif's 32 requests of 11 pages, next to its rings).
pub const MAX_SHARED_PAGES: u64 = 512;
/// Longest domain name, in bytes.
pub const DOMAIN_NAME_MAX: usize = 64;
/// Frames one slice of a long operation on a domain's memory (destroy,
/// populate) scrubs at most: 2 MiB of zeroing. Then the hypercall
/// continues (its caller re-executes it for the rest, Xen's
/// `hypercall_create_continuation`), so none holds the pCPU for long.
pub const SLICE_FRAMES: u64 = 512;
/// Most outstanding pauses of a domain (Xen limits the toolstack's to 255;
/// the control ABI's `PAUSE_COUNT_MAX`).
pub const MAX_PAUSE_COUNT: u8 = u8::MAX;
const _: () = assert!(MAX_PAUSE_COUNT as u32 == abi::control::PAUSE_COUNT_MAX);

/// A domain's name.
pub type DomainName = heapless::String<DOMAIN_NAME_MAX>;

/// Proof that a domain is a control domain (Xen's `is_control_domain`):
/// it may use the control hypercall and act on other domains (build,
/// map, destroy them). Handlers of control operations take
/// `&Privileged`, which only [`Domain::privilege`] hands out. dom0 has
/// it; so has a domU whose boot entry says `control`. Nothing outside
/// this module can make one.
#[derive(Debug)]
pub struct Privileged {
    _private: (),
}

/// Proof that a domain is the hardware domain (Xen's
/// `is_hardware_domain`): I/O ports, pirqs, device MMIO, PCI
/// configuration space and the `XENFEAT_dom0` feature. Only dom0 has
/// it; only [`Domain::hardware`] hands it out.
#[derive(Debug)]
pub struct Hardware {
    _private: (),
}

/// The privileges a new domain gets (Xen separates the control domain
/// from the hardware domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// Control privilege ([`Privileged`]).
    pub control: bool,
    /// Hardware privilege ([`Hardware`]).
    pub hardware: bool,
}

impl Privileges {
    /// An ordinary domU: neither.
    pub const NONE: Self = Self {
        control: false,
        hardware: false,
    };
    /// A control domU: control, no hardware.
    pub const CONTROL: Self = Self {
        control: true,
        hardware: false,
    };
    /// dom0: both.
    pub const DOM0: Self = Self {
        control: true,
        hardware: true,
    };
}

pub use abi::xen::sched::ShutdownReason;

/// Why the hypervisor declared a domain crashed; the doc comment is the
/// message the log shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Display)]
pub enum CrashReason {
    /// triple fault
    TripleFault,
    /// invalid guest state
    InvalidGuestState,
    /// nested page fault at GPA {gpa:#x}
    NptFault {
        /// Faulting guest physical address.
        gpa: u64,
    },
    /// unhandled VM exit {code:#x}
    UnhandledExit {
        /// SVM exit code.
        code: u64,
    },
}

/// A domain's life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Its runnable vCPUs get pCPU time.
    Running,
    /// Stopped by the toolstack (new domains start paused).
    Paused,
    /// It shut itself down.
    Shutdown(ShutdownReason),
    /// The hypervisor stopped it.
    Crashed(CrashReason),
    /// Being destroyed; no vCPU runs.
    Dying,
}

/// What a new domain is made with.
#[derive(Clone, Copy, Debug)]
pub struct DomainConfig<'a> {
    /// Unique name, at most [`DOMAIN_NAME_MAX`] bytes.
    pub name: &'a str,
    /// Most frames it may own, at most [`MAX_DOMAIN_PAGES`].
    pub max_pages: u64,
    /// Number of vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
}

/// Why a domain operation failed. Each variant's doc comment is its
/// message; [`Errno::from`] is its one Xen errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Display)]
pub enum DomainError {
    /// domain table full ({MAX_DOMAINS} domains)
    TableFull,
    /// no free domid (all in use or in quarantine)
    NoFreeDomid,
    /// dom0 exists already
    Dom0Exists,
    /// name empty or longer than {DOMAIN_NAME_MAX} bytes
    BadName,
    /// name in use by another domain
    NameInUse,
    /// vCPU count must be 1..={MAX_VCPUS}
    BadVcpuCount,
    /// max_pages above {MAX_DOMAIN_PAGES}
    TooMuchMemory,
    /// no such domain
    NoSuchDomain,
    /// not possible in state {0:?}
    BadState(DomainState),
    /// domain memory limit (max_pages) reached
    OverMaxPages,
    /// more than {MAX_SHARED_PAGES} frames not its own mapped
    TooManyShared,
    /// GFN beyond the p2m's reach
    GfnOutOfRange,
    /// GFN {0} is already mapped
    GfnMapped(Gfn),
    /// out of machine frames
    OutOfFrames,
    /// out of hypervisor heap
    OutOfHeap,
    /// GFN {0} is in use by a grant mapping (its frame is mapped by another domain, or it holds one)
    GrantInUse(Gfn),
    /// GFN {0} is in use by a foreign mapping (lent to one, or holding one)
    ForeignInUse(Gfn),
    /// paused {MAX_PAUSE_COUNT} times already
    PauseCountOverflow,
    /// GFN {0} is not RAM of the domain's own
    NotOwnRam(Gfn),
    /// only the privileged domain may do that
    NotPrivileged,
}

impl From<DomainError> for Errno {
    /// Xen's errno for each failure, the one mapping every hypercall uses.
    fn from(e: DomainError) -> Self {
        match e {
            // Xen says -ENOMEM when no domid or slot is left; we say
            // -ENOSPC (docs/abi.md, CREATE).
            DomainError::TableFull | DomainError::NoFreeDomid => Errno::ENOSPC,
            DomainError::Dom0Exists | DomainError::NameInUse | DomainError::GfnMapped(_) => {
                Errno::EEXIST
            }
            DomainError::BadName
            | DomainError::BadVcpuCount
            | DomainError::BadState(_)
            | DomainError::GfnOutOfRange => Errno::EINVAL,
            DomainError::TooMuchMemory
            | DomainError::OverMaxPages
            | DomainError::TooManyShared
            | DomainError::OutOfFrames
            | DomainError::OutOfHeap => Errno::ENOMEM,
            DomainError::NoSuchDomain => Errno::ESRCH,
            DomainError::GrantInUse(_) | DomainError::ForeignInUse(_) => Errno::EBUSY,
            DomainError::PauseCountOverflow => Errno::EOVERFLOW,
            // Xen's guest_remove_page: -ENOENT for a GFN with no RAM.
            DomainError::NotOwnRam(_) => Errno::ENOENT,
            DomainError::NotPrivileged => Errno::EPERM,
        }
    }
}

impl From<NptError> for DomainError {
    fn from(e: NptError) -> Self {
        match e {
            NptError::GfnOutOfRange(_) => Self::GfnOutOfRange,
            NptError::AlreadyMapped(g) => Self::GfnMapped(g),
            NptError::OutOfFrames => Self::OutOfFrames,
        }
    }
}

/// One domain.
#[derive(Debug)]
pub struct Domain {
    domid: DomId,
    name: DomainName,
    privilege: Option<Privileged>,
    hardware: Option<Hardware>,
    state: DomainState,
    p2m: Npt,
    tot_pages: u64,
    max_pages: u64,
    shared_pages: u64,
    vcpus: [Vcpu; MAX_VCPUS],
    nr_vcpus: u32,
    exits: ExitCounters,
    hypercalls: HypercallCounters,
    /// Per-vCPU VM exits, hypercalls and events.
    vcpu_counters: [VcpuCounters; MAX_VCPUS],
    /// Weight, cap and each vCPU's credit state.
    sched: DomainSched,
    shared_info: Mfn,
    shared_info_gfn: Option<Gfn>,
    grant: GrantTable,
    p2m_generation: u64,
    xen: XenState,
    events: EventChannels,
    foreign: foreign::ForeignMaps,
    pause_count: u8,
    /// Destruction has released its grant and foreign mappings (the first
    /// step of [`table::DomainTable::destroy_slice`]).
    mappings_released: bool,
}

fn scrub(mem: &mut impl PhysMem, mfn: Mfn) {
    mem.frame_mut(mfn).fill(0);
}

impl Domain {
    /// A paused domain with an empty p2m. `cfg` must be validated.
    fn new(
        domid: DomId,
        cfg: &DomainConfig,
        privileges: Privileges,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<Self, DomainError> {
        let name = DomainName::try_from(cfg.name).map_err(|_| DomainError::BadName)?;
        let shared_info = pool.alloc().ok_or(DomainError::OutOfFrames)?;
        scrub(mem, shared_info);
        let p2m = match Npt::new(pool, mem) {
            Ok(p2m) => p2m,
            Err(e) => {
                pool.free(shared_info);
                return Err(e.into());
            }
        };
        Ok(Self {
            domid,
            name,
            privilege: privileges.control.then_some(Privileged { _private: () }),
            hardware: privileges.hardware.then_some(Hardware { _private: () }),
            state: DomainState::Paused,
            p2m,
            tot_pages: 0,
            max_pages: cfg.max_pages,
            shared_pages: 0,
            // Ids 0..MAX_VCPUS, a small constant: every one fits.
            vcpus: core::array::from_fn(|i| Vcpu::new(u32::try_from(i).unwrap_or(u32::MAX))),
            nr_vcpus: cfg.vcpus,
            exits: ExitCounters::new(),
            hypercalls: HypercallCounters::new(),
            vcpu_counters: [VcpuCounters::new(); MAX_VCPUS],
            sched: DomainSched::new(),
            shared_info,
            shared_info_gfn: None,
            grant: GrantTable::new(),
            p2m_generation: 0,
            xen: XenState::new(),
            events: EventChannels::new(),
            foreign: foreign::ForeignMaps::new(),
            pause_count: 1,
            mappings_released: false,
        })
    }

    /// The domid.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control privilege token, if this is a control domain.
    pub fn privilege(&self) -> Option<&Privileged> {
        self.privilege.as_ref()
    }

    /// The hardware privilege token, if this is the hardware domain.
    pub fn hardware(&self) -> Option<&Hardware> {
        self.hardware.as_ref()
    }

    /// Life-cycle state.
    pub fn state(&self) -> DomainState {
        self.state
    }

    /// Whether `gfn` is the domain's own RAM, mapped writable (where a
    /// guest may ask xen-core to keep a shared structure).
    pub fn owns_writable(&self, mem: &impl PhysMem, gfn: Gfn) -> bool {
        self.p2m
            .translate(mem, gfn)
            .is_some_and(|e| e.kind == P2mKind::Owned && e.access.write)
    }

    /// The p2m (its NPT root goes into every vCPU's VMCB as nCR3).
    pub fn p2m(&self) -> &Npt {
        &self.p2m
    }

    /// Frames the domain owns.
    pub fn tot_pages(&self) -> u64 {
        self.tot_pages
    }

    /// Most frames it may own.
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Sets the most frames it may own (Xen's domctl `max_mem`). Below
    /// [`Self::tot_pages`] nothing is taken away: it just gets no more
    /// until it gives some back. At most [`MAX_DOMAIN_PAGES`].
    pub fn set_max_pages(&mut self, pages: u64) -> Result<(), DomainError> {
        if pages > MAX_DOMAIN_PAGES {
            return Err(DomainError::TooMuchMemory);
        }
        self.max_pages = pages;
        Ok(())
    }

    /// Foreign frames mapped in its p2m.
    pub fn shared_pages(&self) -> u64 {
        self.shared_pages
    }

    /// Its vCPUs.
    pub fn vcpus(&self) -> &[Vcpu] {
        &self.vcpus[..self.nr_vcpus as usize]
    }

    /// How many vCPUs the domain has (`max_vcpus` at creation).
    pub fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    /// vCPU `id`, if it exists (`id` may come from a guest).
    pub fn vcpu(&self, id: u32) -> Option<&Vcpu> {
        self.vcpus().get(usize::try_from(id).ok()?)
    }

    /// vCPU `id`, writable.
    pub fn vcpu_mut(&mut self, id: u32) -> Option<&mut Vcpu> {
        self.vcpus[..self.nr_vcpus as usize].get_mut(usize::try_from(id).ok()?)
    }

    /// Whether any of its vCPUs is loaded on a pCPU (running, or its
    /// exit being handled): its memory must stay until none is.
    pub fn any_vcpu_loaded(&self) -> bool {
        self.vcpus().iter().any(|v| v.loaded_on().is_some())
    }

    /// Whether vCPU `id` may be given a pCPU now.
    pub fn vcpu_may_run(&self, id: u32) -> bool {
        self.state == DomainState::Running
            && self.vcpu(id).map(Vcpu::run_state) == Some(vcpu::VcpuRunState::Runnable)
    }

    /// The `RUNSTATE_*` vCPU `id` is in while no pCPU runs it
    /// ([`runstate::off_cpu`]).
    pub fn runstate_off_cpu(&self, id: u32) -> i32 {
        let running = self.state == DomainState::Running;
        self.vcpu(id).map_or(RUNSTATE_OFFLINE, |v| {
            runstate::off_cpu(v.run_state(), running)
        })
    }

    /// Brings vCPU `id`'s runstate up to date at `now_ns` if no pCPU runs
    /// it (the scheduler changes a current vCPU's as it takes it off).
    pub fn sync_runstate(&mut self, id: u32, now_ns: u64) {
        if self.sched().unit(id).is_some_and(|u| u.running) {
            return;
        }
        let running = self.state == DomainState::Running;
        if let Some(v) = self.vcpu_mut(id) {
            let state = runstate::off_cpu(v.run_state(), running);
            v.runstate_mut().sync(state, now_ns);
        }
    }

    /// CPU time of all vCPUs, in ns.
    pub fn cpu_time_ns(&self) -> u64 {
        self.vcpus()
            .iter()
            .fold(0, |t, v| t.saturating_add(v.cpu_time_ns()))
    }

    /// VM exits by exit code.
    pub fn exits(&self) -> &ExitCounters {
        &self.exits
    }

    /// VM exits by exit code, writable.
    pub fn exits_mut(&mut self) -> &mut ExitCounters {
        &mut self.exits
    }

    /// Counts a VM exit of vCPU `vcpu_id` with `exit_code`.
    pub fn record_exit(&mut self, vcpu_id: u32, exit_code: u64) {
        self.exits.record(exit_code);
        if let Some(c) = self.vcpu_counters_mut(vcpu_id) {
            c.exits = c.exits.saturating_add(1);
        }
    }

    /// Counts hypercall `nr` of vCPU `vcpu_id`.
    pub fn record_hypercall(&mut self, vcpu_id: u32, nr: u64) {
        self.hypercalls.record(nr);
        if let Some(c) = self.vcpu_counters_mut(vcpu_id) {
            c.hypercalls = c.hypercalls.saturating_add(1);
        }
    }

    /// Counts an event that became pending for vCPU `vcpu_id`.
    pub fn record_event(&mut self, vcpu_id: u32) {
        if let Some(c) = self.vcpu_counters_mut(vcpu_id) {
            c.events = c.events.saturating_add(1);
        }
    }

    /// vCPU `id`'s counters.
    pub fn vcpu_counters(&self, id: u32) -> Option<&VcpuCounters> {
        self.vcpu_counters[..self.nr_vcpus as usize].get(usize::try_from(id).ok()?)
    }

    fn vcpu_counters_mut(&mut self, id: u32) -> Option<&mut VcpuCounters> {
        self.vcpu_counters[..self.nr_vcpus as usize].get_mut(usize::try_from(id).ok()?)
    }

    /// Scheduling parameters and state (weight, cap, affinity, credit).
    pub fn sched(&self) -> &DomainSched {
        &self.sched
    }

    /// Scheduling parameters and state, writable.
    pub fn sched_mut(&mut self) -> &mut DomainSched {
        &mut self.sched
    }

    /// Hypercalls by number.
    pub fn hypercalls(&self) -> &HypercallCounters {
        &self.hypercalls
    }

    /// Hypercalls by number, writable.
    pub fn hypercalls_mut(&mut self) -> &mut HypercallCounters {
        &mut self.hypercalls
    }

    /// The domain's shared-info frame (`struct shared_info`), allocated and
    /// scrubbed at creation, owned by the hypervisor, freed at destruction.
    pub fn shared_info_mfn(&self) -> Mfn {
        self.shared_info
    }

    /// Where the guest mapped its shared info (`XENMEM_add_to_physmap`).
    pub fn shared_info_gfn(&self) -> Option<Gfn> {
        self.shared_info_gfn
    }

    /// Its grant table: table frames, active grants, maptrack.
    pub fn grant(&self) -> &GrantTable {
        &self.grant
    }

    /// Hypervisor memory this domain costs, in bytes, besides the RAM it
    /// owns: its shared-info frame, its NPT and grant-table frames, and
    /// the heap (the domain itself, its active grant entries and
    /// maptrack, its event channels).
    pub fn hypervisor_bytes(&self) -> u64 {
        let frames = 1 + self.p2m.table_frames() + u64::from(self.grant.nr_frames());
        let heap =
            core::mem::size_of::<Self>() + self.grant.heap_bytes() + self.events.heap_bytes();
        (frames << PAGE_SHIFT) + heap as u64
    }

    /// Its grant table, writable.
    pub fn grant_mut(&mut self) -> &mut GrantTable {
        &mut self.grant
    }

    /// Counts removals of p2m entries. A vCPU that last flushed its
    /// nested TLB (its ASID) at an older value must flush before it runs
    /// again: it may still cache the old translation (e.g. after
    /// `GNTTABOP_unmap_grant_ref`).
    pub fn p2m_generation(&self) -> u64 {
        self.p2m_generation
    }

    /// Removes `gfn` from the p2m; the caller decides about the frame.
    fn p2m_unmap(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
    ) -> Option<P2mEntry> {
        let old = self.p2m.unmap(pool, mem, gfn)?;
        self.p2m_generation += 1;
        Some(old)
    }

    /// Guest-ABI state: HVM params, memory map, vcpu_info areas, console line.
    pub fn xen(&self) -> &XenState {
        &self.xen
    }

    /// Guest-ABI state, writable.
    pub fn xen_mut(&mut self) -> &mut XenState {
        &mut self.xen
    }

    /// Event channels: ports, VIRQ bindings, upcall vectors, polls.
    pub fn events(&self) -> &EventChannels {
        &self.events
    }

    /// Event channels, writable.
    pub fn events_mut(&mut self) -> &mut EventChannels {
        &mut self.events
    }

    /// Maps the shared-info frame read-write at `gfn`, moving it from where
    /// it was mapped before (Xen's `XENMAPSPACE_shared_info`: one mapping).
    pub fn map_shared_info(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
    ) -> Result<(), DomainError> {
        if let Some(old) = self.shared_info_gfn.filter(|old| *old != gfn) {
            let still_there = self
                .p2m
                .translate(mem, old)
                .is_some_and(|e| e.kind == P2mKind::Shared && e.mfn == self.shared_info);
            if still_there {
                if let Some(e) = self.p2m_unmap(pool, mem, old) {
                    self.drop_entry(pool, mem, e);
                }
            }
            self.shared_info_gfn = None;
        }
        self.map_shared(pool, mem, gfn, self.shared_info, P2mAccess::RW)?;
        self.shared_info_gfn = Some(gfn);
        Ok(())
    }

    /// Drops one pause; the last one (a new domain has one) makes it
    /// running (Xen's `domain_unpause_by_systemcontroller`).
    pub fn unpause(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::Paused {
            return Err(DomainError::BadState(self.state));
        }
        self.pause_count = self.pause_count.saturating_sub(1);
        if self.pause_count == 0 {
            self.state = DomainState::Running;
        }
        Ok(())
    }

    /// Pauses a running domain, or counts one more pause of a paused one
    /// (Xen's `domain_pause_by_systemcontroller`, at most
    /// [`MAX_PAUSE_COUNT`]).
    pub fn pause(&mut self) -> Result<(), DomainError> {
        match self.state {
            DomainState::Running => {
                self.state = DomainState::Paused;
                self.pause_count = 1;
            }
            DomainState::Paused if self.pause_count < MAX_PAUSE_COUNT => self.pause_count += 1,
            DomainState::Paused => return Err(DomainError::PauseCountOverflow),
            other => return Err(DomainError::BadState(other)),
        }
        Ok(())
    }

    /// Outstanding pauses (0 unless paused).
    pub fn pause_count(&self) -> u8 {
        if self.state == DomainState::Paused {
            self.pause_count
        } else {
            0
        }
    }

    /// Whether the domain is alive (running or paused).
    fn is_alive(&self) -> bool {
        matches!(self.state, DomainState::Running | DomainState::Paused)
    }

    /// Stops all vCPUs in `state`, if the domain is still alive: the first
    /// shutdown or crash wins.
    fn stop(&mut self, state: DomainState) {
        if self.is_alive() {
            self.state = state;
            self.vcpus.iter_mut().for_each(Vcpu::stop);
        }
    }

    /// The domain shut itself down (SCHEDOP_shutdown).
    pub fn shutdown(&mut self, reason: ShutdownReason) {
        self.stop(DomainState::Shutdown(reason));
    }

    /// The hypervisor stops the domain for `reason`.
    pub fn crash(&mut self, reason: CrashReason) {
        self.stop(DomainState::Crashed(reason));
    }

    /// First step of destruction: nothing of it runs any more.
    fn kill(&mut self) {
        self.state = DomainState::Dying;
        self.vcpus.iter_mut().for_each(Vcpu::stop);
    }

    /// Checks that `count` more owned frames at `first` are allowed (never
    /// for a dying domain).
    fn check_room(&self, first: Gfn, count: u64) -> Result<(), DomainError> {
        if self.state == DomainState::Dying {
            return Err(DomainError::BadState(self.state));
        }
        if count > self.max_pages.saturating_sub(self.tot_pages) {
            return Err(DomainError::OverMaxPages);
        }
        match first.0.checked_add(count) {
            Some(end) if end <= NPT_MAX_GFN + 1 => Ok(()),
            _ => Err(DomainError::GfnOutOfRange),
        }
    }

    /// Scrubs `mfn` and maps it at `gfn` as the domain's own. On failure
    /// the frame goes back to the pool.
    fn map_owned(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
        mfn: Mfn,
    ) -> Result<(), DomainError> {
        scrub(mem, mfn);
        let entry = P2mEntry {
            mfn,
            access: P2mAccess::RWX,
            kind: P2mKind::Owned,
        };
        if let Err(e) = self.p2m.map(pool, mem, gfn, entry) {
            pool.free(mfn);
            return Err(e.into());
        }
        self.tot_pages += 1;
        Ok(())
    }

    /// Maps device memory (a PCI BAR page dom0 owns) at `gfn`, uncached
    /// ([`P2mKind::Mmio`]): never counted, scrubbed or freed, and never
    /// read or written by xen-core as guest memory. Only the hardware
    /// domain gets device memory; `gfn` must be unmapped.
    pub fn map_mmio(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
        mfn: Mfn,
    ) -> Result<(), DomainError> {
        if self.hardware.is_none() {
            return Err(DomainError::NotPrivileged);
        }
        let entry = P2mEntry {
            mfn,
            access: P2mAccess::RW,
            kind: P2mKind::Mmio,
        };
        Ok(self.p2m.map(pool, mem, gfn, entry)?)
    }

    /// Gives up what an unmapped entry held: owned frames are scrubbed
    /// and freed, shared ones are just no longer counted.
    fn drop_entry(&mut self, pool: &mut impl FramePool, mem: &mut impl PhysMem, e: P2mEntry) {
        match e.kind {
            P2mKind::Owned => {
                scrub(mem, e.mfn);
                pool.free(e.mfn);
                self.tot_pages -= 1;
            }
            P2mKind::Shared => self.shared_pages -= 1,
            // Device memory: nothing to scrub, free or count.
            P2mKind::Mmio => {}
        }
    }

    /// Undoes a partial populate of `count` GFNs from `first`.
    fn unpopulate(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        first: Gfn,
        count: u64,
    ) {
        for gfn in (first.0..first.0 + count).map(Gfn) {
            if let Some(e) = self.p2m_unmap(pool, mem, gfn) {
                self.drop_entry(pool, mem, e);
            }
        }
    }

    /// Whether [`Self::populate`] of `count` frames at `first` can succeed
    /// now: room under `max_pages`, GFNs in reach and all empty, and as
    /// many free frames in `pool`. A populate done in slices checks this
    /// first, so that it fails, if at all, before it changes anything.
    pub fn check_populate(
        &self,
        pool: &impl FramePool,
        mem: &impl PhysMem,
        first: Gfn,
        count: u64,
    ) -> Result<(), DomainError> {
        self.check_room(first, count)?;
        if pool.free_frames() < count {
            return Err(DomainError::OutOfFrames);
        }
        match self.p2m.next_mapped(mem, first) {
            Some((gfn, _)) if gfn.0 < first.0 + count => Err(DomainError::GfnMapped(gfn)),
            _ => Ok(()),
        }
    }

    /// Gives the domain `count` fresh, scrubbed frames at GFNs `first..`.
    /// All or nothing.
    pub fn populate(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        first: Gfn,
        count: u64,
    ) -> Result<(), DomainError> {
        self.check_room(first, count)?;
        for i in 0..count {
            let result = match pool.alloc() {
                Some(mfn) => self.map_owned(pool, mem, Gfn(first.0 + i), mfn),
                None => Err(DomainError::OutOfFrames),
            };
            if let Err(e) = result {
                self.unpopulate(pool, mem, first, i);
                return Err(e);
            }
        }
        Ok(())
    }

    /// dom0's 1:1 memory: maps the `count` machine frames from `first`
    /// (taken from the pool by the caller, e.g. with `alloc_range`) at
    /// GFN = MFN, scrubbed. Takes ownership of the frames whatever the
    /// outcome (on failure they are back in the pool), except for a range
    /// that wraps around, which is refused untouched. All or nothing.
    pub fn populate_identity(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        first: Mfn,
        count: u64,
    ) -> Result<(), DomainError> {
        let Some(end) = first.0.checked_add(count) else {
            return Err(DomainError::GfnOutOfRange);
        };
        if let Err(e) = self.check_room(Gfn(first.0), count) {
            (first.0..end).for_each(|m| pool.free(Mfn(m)));
            return Err(e);
        }
        for m in first.0..end {
            if let Err(e) = self.map_owned(pool, mem, Gfn(m), Mfn(m)) {
                self.unpopulate(pool, mem, Gfn(first.0), m - first.0);
                (m + 1..end).for_each(|m| pool.free(Mfn(m)));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Maps a frame the domain does not own at `gfn` (shared info, grant
    /// frames, granted pages), replacing what was there (an owned frame
    /// there is scrubbed and freed, as Xen's add_to_physmap does), except
    /// a frame mapped by another domain through a grant or a grant mapping
    /// ([`DomainError::GrantInUse`]) and a GFN lent to or holding a
    /// foreign mapping ([`DomainError::ForeignInUse`]).
    pub fn map_shared(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
        mfn: Mfn,
        access: P2mAccess,
    ) -> Result<(), DomainError> {
        let old = self.p2m.translate(mem, gfn);
        let pinned = old.is_some_and(|e| e.kind == P2mKind::Owned && self.grant.is_pinned(e.mfn));
        if pinned || self.grant.maptrack().maps_gfn(gfn) {
            return Err(DomainError::GrantInUse(gfn));
        }
        if self.foreign.in_use(gfn) {
            return Err(DomainError::ForeignInUse(gfn));
        }
        let replaces_shared = matches!(old, Some(e) if e.kind == P2mKind::Shared);
        if self.shared_pages >= MAX_SHARED_PAGES && !replaces_shared {
            return Err(DomainError::TooManyShared);
        }
        if let Some(e) = self.p2m_unmap(pool, mem, gfn) {
            self.drop_entry(pool, mem, e);
        }
        let entry = P2mEntry {
            mfn,
            access,
            kind: P2mKind::Shared,
        };
        self.p2m.map(pool, mem, gfn, entry)?;
        self.shared_pages += 1;
        Ok(())
    }

    /// Removes the frame not its own at `gfn` if it is `mfn`; returns
    /// whether it did.
    pub fn unmap_shared(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
        mfn: Mfn,
    ) -> bool {
        let there = self
            .p2m
            .translate(mem, gfn)
            .is_some_and(|e| e.kind == P2mKind::Shared && e.mfn == mfn);
        if there {
            if let Some(e) = self.p2m_unmap(pool, mem, gfn) {
                self.drop_entry(pool, mem, e);
            }
        }
        there
    }

    /// Balloons out the domain's own frame at `gfn` (Xen's
    /// `guest_remove_page`): unmapped, scrubbed, back in the pool. Refused
    /// for anything but the domain's own RAM (shared info, grant frames
    /// and grant mappings are not: XSA-style cases) and for a frame another
    /// domain maps through a grant or a foreign mapping: freeing that one
    /// would hand memory still in use to the next domain. (Xen keeps such
    /// a page referenced until the mapping goes; xen-core has no page
    /// references, so it says `-EBUSY`.)
    pub fn balloon_out(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
    ) -> Result<(), DomainError> {
        if self.state == DomainState::Dying {
            return Err(DomainError::BadState(self.state));
        }
        let entry = self.p2m.translate(mem, gfn);
        let Some(entry) = entry.filter(|e| e.kind == P2mKind::Owned) else {
            return Err(DomainError::NotOwnRam(gfn));
        };
        if self.grant.is_pinned(entry.mfn) {
            return Err(DomainError::GrantInUse(gfn));
        }
        if self.foreign.in_use(gfn) {
            return Err(DomainError::ForeignInUse(gfn));
        }
        if let Some(e) = self.p2m_unmap(pool, mem, gfn) {
            self.drop_entry(pool, mem, e);
        }
        Ok(())
    }

    /// Whether nobody claims `gpa`: the p2m maps nothing there and the
    /// domain's memory map names no range other than RAM (reserved, ACPI,
    /// ...) that holds it. Such an address is left to the null handler
    /// (`vmexit::unclaimed`), as Xen's `p2m_mmio_dm` is: past the memory
    /// map, and a RAM GFN the domain gave back (ballooned out, or left by
    /// moving its shared-info page; XSA-195's test reads one). An
    /// unmapped reserved range stays a fatal fault.
    pub fn gpa_unclaimed(&self, mem: &impl PhysMem, gpa: u64) -> bool {
        let in_map = self
            .xen
            .memory_map()
            .iter()
            .any(|e| e.kind != E820_RAM && gpa >= e.addr && gpa - e.addr < e.size);
        !in_map && self.p2m.translate(mem, Gfn(gpa >> PAGE_SHIFT)).is_none()
    }

    /// One slice of Xen's `relinquish_memory` for a dying domain: removes
    /// up to `budget` entries from its p2m, lowest GFN first, scrubbing
    /// and freeing the frames it owns. Owned frames other domains still
    /// map through grants stay out of the pool: their mappings became
    /// orphans that free them (`grant::release`). Returns whether the p2m
    /// is empty now.
    fn relinquish(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        budget: u64,
    ) -> bool {
        let pinned = self.grant.pinned_frames();
        for _ in 0..budget {
            let Some((gfn, _)) = self.p2m.next_mapped(mem, Gfn(0)) else {
                return true;
            };
            let Some(e) = self.p2m_unmap(pool, mem, gfn) else {
                continue;
            };
            let kept = u32::try_from(e.mfn.0).is_ok_and(|m| pinned.binary_search(&m).is_ok());
            if e.kind == P2mKind::Owned && kept {
                self.tot_pages -= 1;
            } else {
                self.drop_entry(pool, mem, e);
            }
        }
        self.p2m.mapped() == 0
    }

    /// Returns the shared-info frame (scrubbed), the grant-table frames
    /// and the NPT's frames to the pool, once [`Self::relinquish`] emptied
    /// the p2m.
    fn release(mut self, pool: &mut impl FramePool, mem: &mut impl PhysMem) {
        debug_assert_eq!(self.p2m.mapped(), 0, "release before relinquish");
        scrub(mem, self.shared_info);
        pool.free(self.shared_info);
        self.grant.free_frames(pool, mem);
        self.p2m.destroy(pool, mem, |_, _, _, _| {});
    }
}

#[cfg(test)]
mod tests;
