//! Portable per-vCPU state: run state, one-shot timer, local APIC, CPU
//! time and the register state it starts from. The VMCB itself lives in
//! `arch`.

use crate::vlapic::Vlapic;
use alloc::vec::Vec;

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

/// Register state a vCPU starts from; everything not named here is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuEntryState {
    /// Instruction pointer.
    pub rip: u64,
    /// RBX: the PVH start info GPA.
    pub rbx: u64,
    /// RFLAGS (bit 1 always set).
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER as the guest sees it (the SVM layer adds SVME).
    pub efer: u64,
    /// CS.
    pub cs: SegmentState,
    /// DS, ES, SS, FS and GS.
    pub data: SegmentState,
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
        Self {
            rip: entry.into(),
            rbx: start_info_gpa.into(),
            rflags: RFLAGS_FIXED,
            cr0: CR0_PE | CR0_ET,
            cr4: 0,
            efer: 0,
            cs: flat(0x08, TYPE_CODE_RX_ACCESSED),
            data: flat(0x10, TYPE_DATA_RW_ACCESSED),
            tr: SegmentState {
                selector: 0x18,
                attrib: (1 << 7) | TYPE_TSS32_BUSY,
                limit: 0x67,
                base: 0,
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
    entry: VcpuEntryState,
    cpu_time_ns: u64,
    /// Its local APIC, allocated when first used (0 or 1 entries): an
    /// APIC the guest never touched is in its reset state, which never
    /// delivers anything, and costs no memory.
    vlapic: Vec<Vlapic>,
}

impl Vcpu {
    pub(super) fn new(id: u32) -> Self {
        Self {
            id,
            run_state: VcpuRunState::Down,
            timer_deadline_ns: None,
            timer_fired_awake: false,
            entry: VcpuEntryState::default(),
            cpu_time_ns: 0,
            vlapic: Vec::new(),
        }
    }

    /// The vCPU's index in its domain.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Current run state.
    pub fn run_state(&self) -> VcpuRunState {
        self.run_state
    }

    /// The state it was (or will be) started from.
    pub fn entry(&self) -> &VcpuEntryState {
        &self.entry
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

    /// Brings the vCPU up at `entry` (VCPUOP_initialise + up, or boot).
    pub fn start(&mut self, entry: VcpuEntryState) {
        self.entry = entry;
        self.run_state = VcpuRunState::Runnable;
    }

    /// Blocks a runnable vCPU (HLT, SCHEDOP_block), unless its timer fired
    /// since it last blocked.
    pub fn block(&mut self) {
        if self.run_state == VcpuRunState::Runnable && !core::mem::take(&mut self.timer_fired_awake)
        {
            self.run_state = VcpuRunState::Blocked;
        }
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
        assert_eq!((s.rip, s.rbx, s.cr0, s.efer), (0x10_0000, 0x8000, 0x11, 0));
        assert_eq!(s.cs.attrib, 0xc9b);
        assert_eq!(s.data.attrib, 0xc93);
        assert_eq!((s.cs.base, s.cs.limit), (0, 0xffff_ffff));
        assert_eq!(s.tr.attrib, 0x8b);
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
