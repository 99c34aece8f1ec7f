//! Portable per-vCPU state: run state, one-shot timer, local APIC, CPU
//! time and the register state it starts from. The VMCB itself lives in
//! `arch`.
//!
//! Life cycle, as Xen's `is_initialised` and `_VPF_down`: a vCPU is
//! created down and uninitialised. Boot (vCPU 0), `SET_VCPU_CONTEXT`
//! ([`Vcpu::start`]) initialise and start it at once; `VCPUOP_initialise`
//! ([`Vcpu::initialise`]) only initialises it (once: `-EEXIST`), then
//! `VCPUOP_up` ([`Vcpu::up`], `-EINVAL` before) starts it. `VCPUOP_down`
//! ([`Vcpu::down`]) stops it with its registers kept: up again, it goes
//! on where it stopped. An INIT IPI ([`Vcpu::init_reset`]) takes it down
//! and uninitialised; a STARTUP IPI ([`Vcpu::startup`]) to a vCPU in
//! that state starts it in real mode at `vector << 12`.
//! Each new register state sets a flag the run loop takes
//! ([`Vcpu::take_new_context`]) to load it into the vCPU's VMCB before
//! it next runs.

use alloc::boxed::Box;
use alloc::vec::Vec;

use abi::xen::errno::Errno;

use super::runstate::Runstate;
use crate::vlapic::Vlapic;

/// Whether a vCPU wants a pCPU. It runs only if its domain is running too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuRunState {
    /// Ready to run.
    Runnable,
    /// Waiting for an event or its timer (HLT, SCHEDOP_block).
    Blocked,
    /// Not started, or stopped with its domain.
    Down,
}

/// A segment register in the VMCB's layout (AMD APM vol 2 §15.5.1 and
/// appendix B): `attrib` packs type[3:0], S[4], DPL[6:5], P[7], AVL[8],
/// L[9], D/B[10], G[11].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Selector.
    pub selector: u16,
    /// Packed attributes.
    pub attrib: u16,
    /// Limit in bytes (already scaled by G).
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

/// The general registers a vCPU starts with (R8-R15 start at zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryGprs {
    /// RAX.
    pub rax: u64,
    /// RBX (PVH: the start info GPA).
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
}

/// Register state a vCPU starts from (boot, `SET_VCPU_CONTEXT`,
/// `VCPUOP_initialise`, INIT/STARTUP); everything not named here is
/// zero or as after a reset. FS and GS start as DS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuEntryState {
    /// Instruction pointer.
    pub rip: u64,
    /// General registers.
    pub gprs: EntryGprs,
    /// RFLAGS (bit 1 always set).
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3 (a GPA; meaningful with CR0.PG).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER as the guest sees it (the SVM layer adds SVME).
    pub efer: u64,
    /// CS.
    pub cs: SegmentState,
    /// DS (FS and GS start as this too).
    pub ds: SegmentState,
    /// ES.
    pub es: SegmentState,
    /// SS.
    pub ss: SegmentState,
    /// TR.
    pub tr: SegmentState,
}

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const RFLAGS_FIXED: u64 = 1 << 1;
/// Present, S, D/B and G: a flat 32-bit segment.
const FLAT_32: u16 = (1 << 4) | (1 << 7) | (1 << 10) | (1 << 11);
const TYPE_CODE_RX_ACCESSED: u16 = 0xb;
const TYPE_DATA_RW_ACCESSED: u16 = 0x3;
const TYPE_TSS32_BUSY: u16 = 0xb;

impl VcpuEntryState {
    /// The PVH entry state (Xen `docs/misc/pvh.pandoc`): 32-bit protected
    /// mode, paging off, flat 4 GiB CS/DS/ES/SS, a TR, EBX = start info
    /// GPA, RIP = the ELF note's entry point.
    pub fn pvh(entry: u32, start_info_gpa: u32) -> Self {
        let flat = |selector, kind| SegmentState {
            selector,
            attrib: FLAT_32 | kind,
            limit: u32::MAX,
            base: 0,
        };
        let data = flat(0x10, TYPE_DATA_RW_ACCESSED);
        Self {
            rip: entry.into(),
            gprs: EntryGprs {
                rbx: start_info_gpa.into(),
                ..EntryGprs::default()
            },
            rflags: RFLAGS_FIXED,
            cr0: CR0_PE | CR0_ET,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cs: flat(0x08, TYPE_CODE_RX_ACCESSED),
            ds: data,
            es: data,
            ss: data,
            tr: SegmentState {
                selector: 0x18,
                attrib: (1 << 7) | TYPE_TSS32_BUSY,
                limit: 0x67,
                base: 0,
            },
        }
    }
}

/// Real-mode code segment at reset: present, S, type execute/read accessed.
const REAL_MODE_CS: u16 = 0x9b;
/// Real-mode data segment at reset: present, S, type read/write accessed.
const REAL_MODE_DATA: u16 = 0x93;
const REAL_MODE_LIMIT: u32 = 0xffff;

impl VcpuEntryState {
    /// The state a STARTUP IPI with `vector` starts a vCPU in (Xen's
    /// `hvm_vcpu_reset_state(v, vector << 8, 0)`; APM vol. 2, §14.1.3 and
    /// §16.5): real mode (CR0 = ET), CS selector `vector << 8`, base
    /// `vector << 12`, IP 0, 64 KiB segments, a busy 32-bit TR.
    pub fn real_mode(vector: u8) -> Self {
        let selector = u16::from(vector) << 8;
        let data = SegmentState {
            selector: 0,
            attrib: REAL_MODE_DATA,
            limit: REAL_MODE_LIMIT,
            base: 0,
        };
        Self {
            rip: 0,
            gprs: EntryGprs::default(),
            rflags: RFLAGS_FIXED,
            cr0: CR0_ET,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cs: SegmentState {
                selector,
                attrib: REAL_MODE_CS,
                limit: REAL_MODE_LIMIT,
                base: u64::from(selector) << 4,
            },
            ds: data,
            es: data,
            ss: data,
            tr: SegmentState {
                attrib: (1 << 7) | TYPE_TSS32_BUSY,
                ..data
            },
        }
    }
}

/// One vCPU of a domain.
#[derive(Clone, Debug)]
pub struct Vcpu {
    id: u32,
    run_state: VcpuRunState,
    timer_deadline_ns: Option<u64>,
    /// The one-shot timer fired while the vCPU was running: its next block
    /// returns at once instead of sleeping through the wake-up it missed
    /// (a Xen guest sees the same through VIRQ_TIMER, which stays pending
    /// until it looks; xen-core's timer also wakes guests that did not
    /// bind it).
    timer_fired_awake: bool,
    /// Xen's `is_initialised`: it has a register state to run from.
    initialised: bool,
    /// A register state the run loop has yet to load into the VMCB (boxed:
    /// the domain table holds every vCPU inline, and most have none).
    new_context: Option<Box<VcpuEntryState>>,
    cpu_time_ns: u64,
    /// Its local APIC, allocated when first used (0 or 1 entries): an
    /// APIC the guest never touched is in its reset state, which never
    /// delivers anything, and costs no memory.
    vlapic: Vec<Vlapic>,
    /// The pCPU that holds its register state now: it runs there, or
    /// that pCPU is handling its exit. Set and cleared by the run loop;
    /// its memory must not go while it is set (`DESTROY` waits).
    loaded_on: Option<u32>,
    /// Its `vcpu_runstate_info`, kept by the scheduler.
    runstate: Runstate,
    /// An NMI waits to be injected (Xen's `v->arch.nmi_pending`): one
    /// latch, so NMIs sent while one waits merge into it.
    nmi_pending: bool,
}

impl Vcpu {
    pub(super) fn new(id: u32) -> Self {
        Self {
            id,
            run_state: VcpuRunState::Down,
            timer_deadline_ns: None,
            timer_fired_awake: false,
            initialised: false,
            new_context: None,
            cpu_time_ns: 0,
            vlapic: Vec::new(),
            loaded_on: None,
            runstate: Runstate::new(),
            nmi_pending: false,
        }
    }

    /// Its runstate (`VCPUOP_get_runstate_info`, the registered area).
    pub fn runstate(&self) -> &Runstate {
        &self.runstate
    }

    /// Its runstate, writable (the scheduler's changes, registration).
    pub fn runstate_mut(&mut self) -> &mut Runstate {
        &mut self.runstate
    }

    /// The pCPU it is loaded on (running, or its exit being handled).
    pub fn loaded_on(&self) -> Option<u32> {
        self.loaded_on
    }

    /// The run loop loaded it on `pcpu` (`Some`) or put it down (`None`).
    pub fn set_loaded_on(&mut self, pcpu: Option<u32>) {
        self.loaded_on = pcpu;
    }

    /// The vCPU's index in its domain.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Current run state.
    pub fn run_state(&self) -> VcpuRunState {
        self.run_state
    }

    /// The register state it will start from, until the run loop takes
    /// it ([`Vcpu::take_new_context`]).
    pub fn pending_context(&self) -> Option<&VcpuEntryState> {
        self.new_context.as_deref()
    }

    /// Pending one-shot timer, in ns of system time.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        self.timer_deadline_ns
    }

    /// Its local APIC, if the guest has used it (`None`: in its reset
    /// state).
    pub fn vlapic(&self) -> Option<&Vlapic> {
        self.vlapic.first()
    }

    /// Its local APIC, writable; allocated in its reset state on first
    /// use. `None` only if the heap is exhausted.
    pub fn vlapic_mut(&mut self) -> Option<&mut Vlapic> {
        if self.vlapic.is_empty() {
            self.vlapic.try_reserve_exact(1).ok()?;
            self.vlapic.push(Vlapic::new(self.id));
        }
        self.vlapic.first_mut()
    }

    /// Its local APIC, writable, only if the guest has used it (one in its
    /// reset state needs no INIT).
    pub fn vlapic_in_use_mut(&mut self) -> Option<&mut Vlapic> {
        self.vlapic.first_mut()
    }

    /// The GPA of its xAPIC MMIO page, if the APIC is in xAPIC mode.
    pub fn apic_mmio_base(&self) -> Option<u64> {
        self.vlapic().map_or(
            Some(crate::vlapic::regs::DEFAULT_PHYS_BASE),
            Vlapic::mmio_base,
        )
    }

    /// The APIC vector it would take now, if any.
    pub fn apic_pending_vector(&self) -> Option<u8> {
        self.vlapic().and_then(Vlapic::pending_vector)
    }

    /// The earlier of its one-shot timer and its APIC timer, ns of system
    /// time: when the scheduler must look at it again.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        match (
            self.timer_deadline_ns,
            self.vlapic().and_then(Vlapic::timer_deadline_ns),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the APIC timer if due at `now_ns`; a vector it made pending
    /// wakes the vCPU. Returns whether it did.
    pub fn expire_apic_timer(&mut self, now_ns: u64) -> bool {
        let raised = self
            .vlapic
            .first_mut()
            .is_some_and(|a| a.expire_timer(now_ns));
        if raised {
            self.wake();
        }
        raised
    }

    /// CPU time consumed, in ns.
    pub fn cpu_time_ns(&self) -> u64 {
        self.cpu_time_ns
    }

    /// Whether it has a register state (Xen's `is_initialised`).
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Initialises the vCPU at `entry` and brings it up (boot,
    /// `SET_VCPU_CONTEXT`).
    pub fn start(&mut self, entry: VcpuEntryState) {
        self.set_context(entry);
        self.run_state = VcpuRunState::Runnable;
    }

    /// `VCPUOP_initialise`: the vCPU will start at `entry` once up; it
    /// stays down. `-EEXIST` if it is initialised already.
    pub fn initialise(&mut self, entry: VcpuEntryState) -> Result<(), Errno> {
        if self.initialised {
            return Err(Errno::EEXIST);
        }
        self.set_context(entry);
        self.run_state = VcpuRunState::Down;
        Ok(())
    }

    /// `VCPUOP_up`: a down, initialised vCPU becomes runnable (one that is
    /// up stays as it is). `-EINVAL` if it is not initialised.
    pub fn up(&mut self) -> Result<(), Errno> {
        if !self.initialised {
            return Err(Errno::EINVAL);
        }
        if self.run_state == VcpuRunState::Down {
            self.run_state = VcpuRunState::Runnable;
        }
        Ok(())
    }

    /// `VCPUOP_down`: stops the vCPU, keeping its registers and timer (a
    /// timer firing does not wake a down vCPU).
    pub fn down(&mut self) {
        self.run_state = VcpuRunState::Down;
        self.timer_fired_awake = false;
    }

    /// An INIT IPI (Xen's `vlapic_init_sipi_one`): an initialised vCPU goes
    /// down and uninitialised, waiting for a STARTUP IPI; its timer is
    /// stopped. Nothing happens to one that is already reset.
    pub fn init_reset(&mut self) {
        if self.initialised {
            self.down();
            self.initialised = false;
            self.timer_deadline_ns = None;
        }
    }

    /// A STARTUP IPI with `vector` (Xen's `hvm_vcpu_reset_state`): a vCPU
    /// that INIT reset (or that never ran) starts in real mode at
    /// `vector << 12` ([`VcpuEntryState::real_mode`]). Returns false,
    /// changing nothing, if it is initialised (the IPI is ignored).
    pub fn startup(&mut self, vector: u8) -> bool {
        if self.initialised {
            return false;
        }
        self.start(VcpuEntryState::real_mode(vector));
        true
    }

    /// The new register state waiting to be loaded, if any, taken (the
    /// run loop, before it enters the vCPU).
    pub fn take_new_context(&mut self) -> Option<VcpuEntryState> {
        self.new_context.take().map(|b| *b)
    }

    /// At most one box per vCPU is held; the next state replaces it.
    fn set_context(&mut self, entry: VcpuEntryState) {
        self.initialised = true;
        self.new_context = Some(Box::new(entry));
    }

    /// Blocks a runnable vCPU (HLT, SCHEDOP_block), unless its timer fired
    /// since it last blocked.
    pub fn block(&mut self) {
        if self.run_state == VcpuRunState::Runnable && !core::mem::take(&mut self.timer_fired_awake)
        {
            self.run_state = VcpuRunState::Blocked;
        }
    }

    /// Latches an NMI (Xen's `test_and_set_bool(v->arch.nmi_pending)`):
    /// false if one was latched already, which this one merges into.
    pub fn raise_nmi(&mut self) -> bool {
        !core::mem::replace(&mut self.nmi_pending, true)
    }

    /// An NMI through the local APIC (Xen's `vlapic_accept_irq`,
    /// `APIC_DM_NMI`): latched; one newly latched wakes a blocked vCPU
    /// and brings an initialised one that is down back up (Xen clears
    /// `_VPF_down`: an NMI is what ends a halt with interrupts off).
    /// False if one was latched already.
    pub fn accept_nmi(&mut self) -> bool {
        if !self.raise_nmi() {
            return false;
        }
        let down = self.run_state == VcpuRunState::Down && self.initialised;
        if down || self.run_state == VcpuRunState::Blocked {
            self.run_state = VcpuRunState::Runnable;
        }
        true
    }

    /// Whether an NMI waits to be injected.
    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    /// The NMI is being injected (Xen's `hvm_vcpu_ack_pending_irq` for
    /// `hvm_intsrc_nmi`): the latch is free for the next one.
    pub fn ack_nmi(&mut self) {
        self.nmi_pending = false;
    }

    /// Makes a blocked vCPU runnable (event or timer).
    pub fn wake(&mut self) {
        if self.run_state == VcpuRunState::Blocked {
            self.run_state = VcpuRunState::Runnable;
        }
    }

    /// Arms the one-shot timer (set_timer_op, VCPUOP_set_singleshot_timer).
    pub fn set_timer(&mut self, deadline_ns: u64) {
        self.timer_deadline_ns = Some(deadline_ns);
    }

    /// Disarms the one-shot timer.
    pub fn stop_timer(&mut self) {
        self.timer_deadline_ns = None;
    }

    /// Fires the timer if due at `now_ns`: disarms it and wakes the vCPU.
    /// Returns whether it fired (the caller raises VIRQ_TIMER).
    pub fn expire_timer(&mut self, now_ns: u64) -> bool {
        match self.timer_deadline_ns {
            Some(deadline) if deadline <= now_ns => {
                self.timer_deadline_ns = None;
                self.timer_fired_awake = self.run_state == VcpuRunState::Runnable;
                self.wake();
                true
            }
            _ => false,
        }
    }

    /// Adds `ns` of CPU time.
    pub fn account(&mut self, ns: u64) {
        self.cpu_time_ns = self.cpu_time_ns.saturating_add(ns);
    }

    /// Stops the vCPU with its domain.
    pub(super) fn stop(&mut self) {
        self.run_state = VcpuRunState::Down;
        self.timer_deadline_ns = None;
        self.vlapic.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvh_entry_matches_xen() {
        let s = VcpuEntryState::pvh(0x10_0000, 0x8000);
        assert_eq!(
            (s.rip, s.gprs.rbx, s.cr0, s.efer),
            (0x10_0000, 0x8000, 0x11, 0)
        );
        assert_eq!(s.cs.attrib, 0xc9b);
        assert_eq!(s.ds.attrib, 0xc93);
        assert_eq!((s.es, s.ss), (s.ds, s.ds));
        assert_eq!((s.cs.base, s.cs.limit), (0, 0xffff_ffff));
        assert_eq!(s.tr.attrib, 0x8b);
    }

    #[test]
    fn initialise_then_up_then_down_keeps_the_context() {
        let mut v = Vcpu::new(1);
        assert_eq!(v.up(), Err(Errno::EINVAL), "up before initialise");
        let entry = VcpuEntryState::pvh(0x1000, 0);
        assert_eq!(v.initialise(entry), Ok(()));
        assert_eq!(v.run_state(), VcpuRunState::Down);
        assert_eq!(v.initialise(entry), Err(Errno::EEXIST));
        assert_eq!(v.take_new_context(), Some(entry));
        assert_eq!(v.take_new_context(), None, "taken once");
        assert_eq!(v.up(), Ok(()));
        assert_eq!(v.run_state(), VcpuRunState::Runnable);
        assert_eq!(v.up(), Ok(()), "up twice is fine");
        v.set_timer(10);
        v.down();
        assert_eq!(v.run_state(), VcpuRunState::Down);
        assert!(v.expire_timer(10));
        assert_eq!(
            v.run_state(),
            VcpuRunState::Down,
            "a timer does not wake it"
        );
        assert_eq!(v.up(), Ok(()));
        assert_eq!(
            v.take_new_context(),
            None,
            "up again resumes, no new context"
        );
    }

    #[test]
    fn init_then_startup_starts_in_real_mode() {
        let mut v = Vcpu::new(1);
        v.start(VcpuEntryState::pvh(0x1000, 0));
        assert!(!v.startup(0x9a), "SIPI to a running vCPU is ignored");
        v.take_new_context();
        v.set_timer(5);
        v.init_reset();
        assert_eq!(v.run_state(), VcpuRunState::Down);
        assert!(!v.is_initialised());
        assert_eq!(v.timer_deadline_ns(), None);
        assert_eq!(v.up(), Err(Errno::EINVAL), "INIT leaves it uninitialised");
        assert!(v.startup(0x9a));
        assert_eq!(v.run_state(), VcpuRunState::Runnable);
        let e = v.take_new_context().unwrap();
        assert_eq!((e.cs.selector, e.cs.base, e.rip), (0x9a00, 0x9a000, 0));
        assert_eq!((e.cr0, e.cs.attrib, e.ds.attrib), (0x10, 0x9b, 0x93));
    }

    #[test]
    fn timer_and_blocking() {
        let mut v = Vcpu::new(0);
        v.block();
        assert_eq!(v.run_state(), VcpuRunState::Down, "a down vCPU stays down");
        v.start(VcpuEntryState::pvh(1, 2));
        v.set_timer(100);
        v.block();
        assert!(!v.expire_timer(99));
        assert_eq!(v.run_state(), VcpuRunState::Blocked);
        assert!(v.expire_timer(100));
        assert_eq!(v.run_state(), VcpuRunState::Runnable);
        assert_eq!(v.timer_deadline_ns(), None);
        assert!(!v.expire_timer(200));
        v.account(5);
        v.account(u64::MAX);
        assert_eq!(v.cpu_time_ns(), u64::MAX);
    }

    /// A guest sets a timer, is held up past its deadline, then blocks:
    /// it must not sleep for ever (the ticker lost its wake-up so under
    /// load).
    #[test]
    fn a_timer_that_fired_while_running_is_not_slept_through() {
        let mut v = Vcpu::new(0);
        v.start(VcpuEntryState::pvh(1, 2));
        v.set_timer(100);
        assert!(v.expire_timer(150));
        v.block();
        assert_eq!(v.run_state(), VcpuRunState::Runnable);
        // Only once: the next block sleeps.
        v.block();
        assert_eq!(v.run_state(), VcpuRunState::Blocked);
    }
}
