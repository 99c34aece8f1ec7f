//! A local APIC per vCPU, as Xen's vlapic gives HVM/PVH guests
//! (`xen/arch/x86/hvm/vlapic.c`): the register file, MSR_APIC_BASE,
//! xAPIC MMIO and x2APIC MSR access with Xen's reserved-bit rules, the
//! IRR/ISR/PPR priority logic, the interrupt command register and the
//! timer in one-shot, periodic and TSC-deadline modes.
//!
//! Portable: the arch layer reaches it through the vCPU exit path
//! (`vmexit::lapic`) and delivers [`Vlapic::pending_vector`] as an SVM
//! virtual interrupt. Nothing here touches the real APIC. Time is system
//! time in ns; like Xen (`APIC_BUS_CYCLE_NS`), the APIC bus runs at
//! 1 GHz, so one timer count is `divisor` ns.
//!
//! Sources: AMD64 APM vol. 2, chapter 16; Intel SDM vol. 3, chapter 11
//! (x2APIC, TSC-deadline mode).

mod deliver;
pub mod regs;
mod timer;

pub use deliver::{deliver_ipi, IpiOutcome};

#[cfg(test)]
mod tests;

use regs::*;
use timer::Timer;

/// Words in the 4 KiB register page that hold registers (offset >> 4).
const REG_SLOTS: usize = 64;
/// Vectors below 16 are illegal for delivery (`APIC_VECTOR_VALID`).
const FIRST_VALID_VECTOR: u32 = 16;

/// The time an APIC operation happens at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// System time, ns.
    pub ns: u64,
    /// The vCPU's TSC.
    pub guest_tsc: u64,
    /// TSC ticks per second.
    pub tsc_hz: u64,
}

/// Why an APIC access is refused with #GP (Xen's `X86EMUL_EXCEPTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicFault {
    /// Reserved bits set in the value.
    ReservedBits,
    /// An x2APIC MSR while not in x2APIC mode, or a register that is not
    /// readable/writable through MSRs.
    NotAccessible,
    /// MSR_APIC_BASE moves the xAPIC window off its default base.
    MovedWindow,
    /// An illegal MSR_APIC_BASE mode transition (e.g. x2APIC → xAPIC
    /// without disabling, or enabling straight into x2APIC).
    InvalidTransition,
}

/// An interrupt command a write to ICR (or SELF_IPI) issued, for the
/// domain to deliver to the vCPUs it names (Xen's `vlapic_ipi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// ICR's low half: vector, delivery mode, destination mode, shorthand.
    pub icr: u32,
    /// The destination: ICR2's top byte in xAPIC mode, the full 32-bit id
    /// in x2APIC mode.
    pub dest: u32,
}

impl Ipi {
    /// The delivery mode field ([`regs::DM_MASK`]).
    pub fn delivery_mode(&self) -> u32 {
        self.icr & DM_MASK
    }
    /// The vector (or SIPI page number).
    pub fn vector(&self) -> u8 {
        (self.icr & VECTOR_MASK) as u8
    }
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Vlapic {
    regs: [u32; REG_SLOTS],
    apic_base: u64,
    vcpu_id: u32,
    /// Software-disabled (SPIV.enable clear), Xen's `VLAPIC_SW_DISABLED`.
    sw_disabled: bool,
    /// Errors since the last ESR write (Xen's `hw.pending_esr`).
    pending_esr: u32,
    timer: Timer,
}

impl Default for Vlapic {
    /// vCPU 0's APIC after reset.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Vlapic {
    /// The APIC of vCPU `vcpu_id` after reset (Xen's `vlapic_reset`):
    /// globally enabled at the default base (BSP on vCPU 0), software
    /// disabled, APIC id `2 * vcpu_id` as Xen numbers them.
    pub fn new(vcpu_id: u32) -> Self {
        let mut v = Self {
            regs: [0; REG_SLOTS],
            apic_base: 0,
            vcpu_id,
            sw_disabled: true,
            pending_esr: 0,
            timer: Timer::default(),
        };
        v.reset();
        v
    }

    /// Back to the power-on state (Xen's `vlapic_reset`).
    pub fn reset(&mut self) {
        self.apic_base = DEFAULT_PHYS_BASE | BASE_ENABLE;
        if self.vcpu_id == 0 {
            self.apic_base |= BASE_BSP;
        }
        self.set(ID, self.xapic_id() << 24);
        self.init();
    }

    /// The INIT signal's reset (Xen's `vlapic_do_init`): everything but
    /// ID, MSR_APIC_BASE (and LDR in x2APIC mode) to its reset value.
    pub fn init(&mut self) {
        self.set(LVR, VERSION);
        for i in 0..8 {
            for base in [IRR, ISR, TMR] {
                self.set(base + 0x10 * i, 0);
            }
        }
        for reg in [ICR, ICR2, TASKPRI, TMICT, TMCCT] {
            self.set(reg, 0);
        }
        if !self.x2apic_mode() {
            self.set(LDR, 0);
        }
        self.set(TDCR, 0);
        self.set(DFR, u32::MAX);
        for (reg, _) in LVT_BITS {
            self.set(reg, LVT_MASKED);
        }
        self.set(SPIV, 0xff);
        self.sw_disabled = true;
        self.timer = Timer::default();
    }

    fn xapic_id(&self) -> u32 {
        self.vcpu_id.wrapping_mul(2) & 0xff
    }

    fn get(&self, reg: u32) -> u32 {
        self.regs[(reg >> 4) as usize % REG_SLOTS]
    }

    fn set(&mut self, reg: u32, value: u32) {
        self.regs[(reg >> 4) as usize % REG_SLOTS] = value;
    }

    /// MSR_APIC_BASE as the guest reads it.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// Whether MSR_APIC_BASE.EN is set.
    pub fn hw_enabled(&self) -> bool {
        self.apic_base & BASE_ENABLE != 0
    }

    /// Whether the APIC is in x2APIC mode.
    pub fn x2apic_mode(&self) -> bool {
        self.hw_enabled() && self.apic_base & BASE_EXTD != 0
    }

    /// Whether interrupts are accepted: globally and software enabled.
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && !self.sw_disabled
    }

    /// The GPA of the xAPIC MMIO page, if the APIC is enabled in xAPIC
    /// mode (Xen's `vlapic_range`).
    pub fn mmio_base(&self) -> Option<u64> {
        (self.hw_enabled() && !self.x2apic_mode()).then_some(self.apic_base & BASE_ADDR_MASK)
    }

    /// The APIC id ICR destinations match: 8 bits in xAPIC mode, 32 in
    /// x2APIC mode.
    pub fn id(&self) -> u32 {
        if self.x2apic_mode() {
            self.get(ID)
        } else {
            self.get(ID) >> 24
        }
    }

    /// A write to MSR_APIC_BASE (Xen's `guest_wrmsr_apic_base`).
    /// `x2apic_offered`: whether CPUID advertises x2APIC (else EXTD is
    /// reserved). The window cannot move in xAPIC mode.
    pub fn write_apic_base(&mut self, value: u64, x2apic_offered: bool) -> Result<(), ApicFault> {
        let extd = if x2apic_offered { BASE_EXTD } else { 0 };
        if value & !(BASE_ADDR_MASK | BASE_ENABLE | BASE_BSP | extd) != 0 {
            return Err(ApicFault::ReservedBits);
        }
        if value & (BASE_EXTD | BASE_ENABLE) == BASE_ENABLE
            && value & BASE_ADDR_MASK != DEFAULT_PHYS_BASE
        {
            return Err(ApicFault::MovedWindow);
        }
        let changed = self.apic_base ^ value;
        if changed & BASE_ENABLE != 0 {
            if value & BASE_EXTD != 0 {
                return Err(ApicFault::InvalidTransition);
            }
            if value & BASE_ENABLE != 0 {
                // Keep what the guest wrote once reset has run.
                self.reset();
            }
        } else if changed & BASE_EXTD != 0 && self.x2apic_mode() {
            return Err(ApicFault::InvalidTransition);
        }
        // BSP is read-only: keep ours.
        self.apic_base = (value & !BASE_BSP) | (self.apic_base & BASE_BSP);
        if value & BASE_ENABLE == 0 {
            self.timer.stop();
        }
        if self.x2apic_mode() {
            let id = self.vcpu_id.wrapping_mul(2);
            self.set(ID, id);
            self.set(LDR, ((id & !0xf) << 12) | (1 << (id & 0xf)));
        }
        Ok(())
    }

    // ---- register reads ----

    /// The 32-bit register at `offset` (16-byte aligned), as Xen's
    /// `vlapic_read_aligned`: PPR and TMCCT computed, TMICT/TMCCT 0 in
    /// TSC-deadline mode.
    fn read_aligned(&self, offset: u32, now_ns: u64) -> u32 {
        match offset {
            PROCPRI => self.ppr(),
            TMCCT if self.counting_mode() => {
                self.timer
                    .current_count(self.get(TMICT), self.divisor(), now_ns)
            }
            TMCCT | TMICT if !self.counting_mode() => 0,
            _ => self.get(offset),
        }
    }

    /// An xAPIC MMIO load of `len` bytes at `offset` in the APIC page
    /// (Xen's `vlapic_mmio_read`): any access inside one 32-bit register
    /// is served; anything else reads 0.
    pub fn mmio_read(&self, offset: u32, len: u8, now_ns: u64) -> u32 {
        let align = offset & 0xf;
        if align + u32::from(len) > 4 || offset > TDCR + 3 {
            return 0;
        }
        let reg = self.read_aligned(offset & !0xf, now_ns) >> (align * 8);
        match len {
            1 => reg & 0xff,
            2 => reg & 0xffff,
            _ => reg,
        }
    }

    /// An xAPIC MMIO store (Xen's `vlapic_mmio_write`): partial writes
    /// inside a register are merged with its value; others are dropped.
    pub fn mmio_write(&mut self, offset: u32, len: u8, value: u32, now_ns: u64) -> Option<Ipi> {
        let align = offset & 0xf;
        let offset = offset & !0xf;
        if align + u32::from(len) > 4 || offset > TDCR {
            return None;
        }
        let value = if len < 4 {
            let shift = align * 8;
            let mask = if len == 1 { 0xffu32 } else { 0xffff } << shift;
            (self.read_aligned(offset, now_ns) & !mask) | ((value << shift) & mask)
        } else {
            value
        };
        self.reg_write(offset, value, now_ns)
    }

    /// RDMSR of x2APIC MSR `msr` (Xen's `guest_rdmsr_x2apic`).
    pub fn x2apic_read(&self, msr: u32, now_ns: u64) -> Result<u64, ApicFault> {
        let offset = msr.wrapping_sub(MSR_X2APIC_FIRST) << 4;
        if !self.x2apic_mode() || !x2apic_readable(offset) {
            return Err(ApicFault::NotAccessible);
        }
        let high = if offset == ICR {
            u64::from(self.get(ICR2)) << 32
        } else {
            0
        };
        Ok(high | u64::from(self.read_aligned(offset, now_ns)))
    }

    /// WRMSR of x2APIC MSR `msr` (Xen's `guest_wrmsr_x2apic`): reserved
    /// bits, read-only and unknown registers are #GP.
    pub fn x2apic_write(
        &mut self,
        msr: u32,
        value: u64,
        now_ns: u64,
    ) -> Result<Option<Ipi>, ApicFault> {
        if !self.x2apic_mode() {
            return Err(ApicFault::NotAccessible);
        }
        let offset = msr.wrapping_sub(MSR_X2APIC_FIRST) << 4;
        let allowed: u64 = match offset {
            TASKPRI => 0xff,
            SPIV => u64::from(VECTOR_MASK | SPIV_ENABLED | SPIV_FOCUS_DISABLED),
            LVTT => u64::from(LVT_MASK | TIMER_MODE_MASK),
            LVTTHMR | LVTPC | CMCI => u64::from(LVT_MASK | DM_MASK),
            LVT0 | LVT1 => u64::from(LINT_MASK),
            LVTERR => u64::from(LVT_MASK),
            TMICT => 0xffff_ffff,
            TDCR => u64::from(TDCR_DIV_MASK),
            ICR => {
                u64::from(
                    VECTOR_MASK | DM_MASK | DEST_LOGICAL | INT_ASSERT | INT_LEVELTRIG | SHORT_MASK,
                ) | 0xffff_ffff_0000_0000
            }
            SELF_IPI => u64::from(VECTOR_MASK),
            EOI | ESR => 0,
            _ => return Err(ApicFault::NotAccessible),
        };
        if value & !allowed != 0 {
            return Err(ApicFault::ReservedBits);
        }
        let low = (value & 0xffff_ffff) as u32;
        Ok(match offset {
            ICR => {
                self.set(ICR2, (value >> 32) as u32);
                self.reg_write(ICR, low, now_ns)
            }
            SELF_IPI => self.reg_write(ICR, DEST_SELF | low, now_ns),
            // CMCI is accepted and ignored, as Xen's vlapic_reg_write.
            CMCI => None,
            _ => self.reg_write(offset, low, now_ns),
        })
    }

    /// A register write after access checks (Xen's `vlapic_reg_write`).
    /// Returns the IPI an ICR write issued.
    fn reg_write(&mut self, offset: u32, value: u32, now_ns: u64) -> Option<Ipi> {
        match offset {
            // The xAPIC ID is writable in Xen; read-only in x2APIC mode.
            ID if !self.x2apic_mode() => self.set(ID, value),
            ESR => {
                let esr = core::mem::take(&mut self.pending_esr);
                self.set(ESR, esr);
            }
            TASKPRI => self.set(TASKPRI, value & 0xff),
            EOI => self.eoi(),
            LDR if !self.x2apic_mode() => self.set(LDR, value & LDR_MASK),
            DFR if !self.x2apic_mode() => self.set(DFR, value | 0x0fff_ffff),
            SPIV => self.write_spiv(value),
            ICR => return self.write_icr(value),
            ICR2 if !self.x2apic_mode() => self.set(ICR2, value & 0xff00_0000),
            LVTT => {
                let old_tdt = self.lvtt_mode() == TIMER_TSC_DEADLINE;
                if old_tdt != (value & TIMER_MODE_MASK == TIMER_TSC_DEADLINE) {
                    self.set(TMICT, 0);
                    self.timer.stop();
                }
                let period = self.period_ns(self.get(TMICT));
                self.timer
                    .mode_changed(value & TIMER_MODE_MASK, period, now_ns);
                self.write_lvt(LVTT, value);
            }
            LVTTHMR | LVTPC | LVT0 | LVT1 | LVTERR => self.write_lvt(offset, value),
            TMICT if self.counting_mode() => {
                self.set(TMICT, value);
                let period = self.period_ns(value);
                self.timer
                    .start(period, self.lvtt_mode() == TIMER_PERIODIC, now_ns);
            }
            TDCR => {
                let old = self.divisor();
                self.set(TDCR, value & TDCR_DIV_MASK);
                let new = self.divisor();
                if self.counting_mode() {
                    self.timer.rescale(old, new, now_ns);
                }
            }
            _ => {}
        }
        None
    }

    fn write_lvt(&mut self, reg: u32, value: u32) {
        let keep = LVT_BITS
            .iter()
            .find(|(r, _)| *r == reg)
            .map_or(0, |(_, bits)| *bits);
        let value = if self.sw_disabled {
            value | LVT_MASKED
        } else {
            value
        };
        self.set(reg, value & keep);
    }

    fn write_spiv(&mut self, value: u32) {
        self.set(SPIV, value & 0x3ff);
        self.sw_disabled = value & SPIV_ENABLED == 0;
        if self.sw_disabled {
            for (reg, _) in LVT_BITS {
                let lvt = self.get(reg);
                self.set(reg, lvt | LVT_MASKED);
            }
        }
    }

    /// An ICR write: the send-pending bit always reads clear; illegal
    /// fixed vectors set ESR.SENDILL instead of sending.
    fn write_icr(&mut self, value: u32) -> Option<Ipi> {
        let icr = value & !SEND_PENDING;
        self.set(ICR, icr);
        let dest = if self.x2apic_mode() {
            self.get(ICR2)
        } else {
            self.get(ICR2) >> 24
        };
        let mode = icr & DM_MASK;
        if matches!(mode, DM_FIXED | DM_LOWEST) && icr & VECTOR_MASK < FIRST_VALID_VECTOR {
            self.error(ESR_SENDILL);
            return None;
        }
        Some(Ipi { icr, dest })
    }

    /// Records an error in ESR and raises LVTERR if unmasked and legal
    /// (Xen's `vlapic_error`).
    fn error(&mut self, bit: u32) {
        if self.pending_esr & bit != 0 {
            return;
        }
        self.pending_esr |= bit;
        let lvterr = self.get(LVTERR);
        if lvterr & LVT_MASKED == 0 {
            if lvterr & VECTOR_MASK >= FIRST_VALID_VECTOR {
                self.set_irq((lvterr & VECTOR_MASK) as u8, false);
            } else {
                self.pending_esr |= ESR_RECVILL;
            }
        }
    }

    // ---- interrupt state ----

    /// Makes `vector` pending in IRR (Xen's `vlapic_set_irq`); TMR
    /// records the trigger mode. Illegal vectors set ESR.RECVILL.
    pub fn set_irq(&mut self, vector: u8, level: bool) {
        if u32::from(vector) < FIRST_VALID_VECTOR {
            self.error(ESR_RECVILL);
            return;
        }
        self.set_bit(TMR, vector, level);
        self.set_bit(IRR, vector, true);
    }

    fn set_bit(&mut self, base: u32, vector: u8, on: bool) {
        let reg = base + 0x10 * u32::from(vector >> 5);
        let bit = 1u32 << (vector & 31);
        let old = self.get(reg);
        self.set(reg, if on { old | bit } else { old & !bit });
    }

    fn highest(&self, base: u32) -> Option<u8> {
        (0..8u32).rev().find_map(|i| {
            let word = self.get(base + 0x10 * i);
            // i < 8, so the vector is below 256.
            (word != 0).then(|| u8::try_from(i * 32 + 31 - word.leading_zeros()).unwrap_or(u8::MAX))
        })
    }

    /// The processor priority (Xen's `vlapic_get_ppr`): TPR if its class
    /// is at least the highest in-service vector's, else that class.
    pub fn ppr(&self) -> u32 {
        let tpr = self.get(TASKPRI) & 0xff;
        let isrv = self.highest(ISR).map_or(0, u32::from);
        if tpr & 0xf0 >= isrv & 0xf0 {
            tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The task priority register (the guest's CR8 is its top nibble).
    pub fn tpr(&self) -> u32 {
        self.get(TASKPRI)
    }

    /// Sets TPR's priority class from a CR8 write (V_TPR), keeping the
    /// sub-class as Xen's SVM code does.
    pub fn set_cr8(&mut self, cr8: u8) {
        let tpr = (u32::from(cr8 & 0xf) << 4) | (self.get(TASKPRI) & 0xf);
        self.set(TASKPRI, tpr);
    }

    /// The vector to deliver now, if any (Xen's
    /// `vlapic_has_pending_irq`): the highest IRR vector whose class is
    /// above PPR's, with the APIC enabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let irr = self.highest(IRR)?;
        (u32::from(irr) & 0xf0 > self.ppr() & 0xf0).then_some(irr)
    }

    /// Whether any vector waits in IRR, deliverable or not (wakes a
    /// halted vCPU only through [`Self::pending_vector`]).
    pub fn irr_pending(&self) -> bool {
        self.highest(IRR).is_some()
    }

    /// The guest took `vector` (Xen's `vlapic_ack_pending_irq`): IRR to
    /// ISR.
    pub fn ack(&mut self, vector: u8) {
        self.set_bit(IRR, vector, false);
        self.set_bit(ISR, vector, true);
    }

    /// End of interrupt (Xen's `vlapic_EOI_set`): clears the highest
    /// in-service vector; nothing if none is in service.
    pub fn eoi(&mut self) {
        if let Some(v) = self.highest(ISR) {
            self.set_bit(ISR, v, false);
        }
    }

    /// Whether this APIC is a target of an IPI with shorthand and
    /// destination from `ipi`, sent by `source_is_self` or another vCPU
    /// (Xen's `vlapic_match_dest`).
    pub fn matches(&self, ipi: &Ipi, source_is_self: bool) -> bool {
        match ipi.icr & SHORT_MASK {
            DEST_SELF => source_is_self,
            DEST_ALLINC => true,
            DEST_ALLBUT => !source_is_self,
            _ if ipi.icr & DEST_LOGICAL != 0 => self.match_logical(ipi.dest),
            _ => {
                let broadcast = if self.x2apic_mode() { u32::MAX } else { 0xff };
                ipi.dest == broadcast || ipi.dest == self.id()
            }
        }
    }

    fn match_logical(&self, mda: u32) -> bool {
        let ldr = self.get(LDR);
        if self.x2apic_mode() {
            return ldr >> 16 == mda >> 16 && (ldr & mda & 0xffff) != 0;
        }
        let id = ldr >> 24;
        let mda = mda & 0xff;
        match self.get(DFR) {
            u32::MAX => id & mda != 0,
            0x0fff_ffff => id >> 4 == mda >> 4 && id & mda & 0xf != 0,
            _ => false,
        }
    }

    // ---- timer ----

    fn lvtt_mode(&self) -> u32 {
        self.get(LVTT) & TIMER_MODE_MASK
    }

    /// One-shot or periodic: TMICT counts.
    fn counting_mode(&self) -> bool {
        matches!(self.lvtt_mode(), TIMER_ONESHOT | TIMER_PERIODIC)
    }

    /// The divide configuration's divisor (1..=128).
    fn divisor(&self) -> u32 {
        let v = self.get(TDCR);
        let v = ((v & 3) | ((v & 8) >> 1)) + 1;
        1 << (v & 7)
    }

    fn period_ns(&self, count: u32) -> u64 {
        u64::from(count) * u64::from(self.divisor())
    }

    /// IA32_TSC_DEADLINE as read: 0 outside TSC-deadline mode or once it
    /// fired (Xen's `vlapic_tdt_msr_get`).
    pub fn tsc_deadline(&self) -> u64 {
        if self.lvtt_mode() == TIMER_TSC_DEADLINE {
            self.timer.tdt
        } else {
            0
        }
    }

    /// A write to IA32_TSC_DEADLINE (Xen's `vlapic_tdt_msr_set`): ignored
    /// unless enabled in TSC-deadline mode; 0 disarms; a deadline already
    /// past fires at once.
    pub fn set_tsc_deadline(&mut self, value: u64, now: Now) {
        if !self.hw_enabled() || self.lvtt_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.timer.set_tsc_deadline(value, now);
    }

    /// When the timer next fires, ns of system time.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        self.timer.deadline_ns()
    }

    /// Fires the timer if due at `now_ns`: its LVTT vector becomes
    /// pending unless masked; a periodic timer re-arms. Returns whether a
    /// vector was made pending.
    pub fn expire_timer(&mut self, now_ns: u64) -> bool {
        if !self.timer.expire(now_ns) {
            return false;
        }
        let lvtt = self.get(LVTT);
        if lvtt & LVT_MASKED != 0 || !self.enabled() {
            return false;
        }
        self.set_irq((lvtt & VECTOR_MASK) as u8, false);
        true
    }
}

/// Whether x2APIC register `offset` is readable through its MSR (Xen's
/// `readable` bitmap in `guest_rdmsr_x2apic`).
fn x2apic_readable(offset: u32) -> bool {
    matches!(
        offset,
        ID | LVR
            | TASKPRI
            | PROCPRI
            | LDR
            | SPIV
            | ESR
            | ICR
            | CMCI
            | LVTT
            | LVTTHMR
            | LVTPC
            | LVT0
            | LVT1
            | LVTERR
            | TMICT
            | TMCCT
            | TDCR
    ) || (ISR..TMR + 0x80).contains(&offset)
        || (IRR..IRR + 0x80).contains(&offset)
}
