//! The local APIC as a Xen HVM/PVH guest sees it (Xen's vlapic): xAPIC
//! registers through MMIO at MSR_APIC_BASE's page, x2APIC registers
//! through MSRs 0x800 + offset / 16, and an IDT gate that counts the
//! interrupts of the vectors a kernel installs, writing EOI for each.
//! For example guests and scenarios that exercise the APIC.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::probe::{self, Load};
use super::trap::{probe_rdmsr, probe_wrmsr, Exception};

/// MSR_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// MSR_APIC_BASE: x2APIC mode.
pub const BASE_EXTD: u64 = 1 << 10;
/// MSR_APIC_BASE: enabled.
pub const BASE_ENABLE: u64 = 1 << 11;
/// The xAPIC page's default base.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;

/// Register offsets (AMD APM vol. 2, table 16-2).
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xb0;
    pub const SPIV: u32 = 0xf0;
    pub const ESR: u32 = 0x280;
    pub const ICR: u32 = 0x300;
    pub const ICR2: u32 = 0x310;
    pub const LVTT: u32 = 0x320;
    pub const TMICT: u32 = 0x380;
    pub const TMCCT: u32 = 0x390;
    pub const TDCR: u32 = 0x3e0;
    pub const SELF_IPI: u32 = 0x3f0;
}

/// LVTT timer modes.
pub const TIMER_PERIODIC: u32 = 1 << 17;
/// LVTT TSC-deadline mode.
pub const TIMER_TSC_DEADLINE: u32 = 2 << 17;
/// LVT masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// ICR shorthand: self.
pub const DEST_SELF: u32 = 1 << 18;
/// ICR delivery mode INIT (AMD APM vol. 2 §16.5).
pub const DM_INIT: u32 = 5 << 8;
/// ICR delivery mode STARTUP; the vector is the start page number.
pub const DM_STARTUP: u32 = 6 << 8;
/// ICR level: assert.
pub const INT_ASSERT: u32 = 1 << 14;
/// ICR trigger mode: level.
pub const INT_LEVELTRIG: u32 = 1 << 15;

/// Interrupts taken through [`install_gate`]'s gates.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Whether the handler writes EOI through the x2APIC MSR.
static X2APIC: AtomicBool = AtomicBool::new(false);

extern "C" {
    static shim_idt: [[u64; 2]; 256];
    fn shim_lapic_entry();
}

/// Fills the IDT gate of `vector` (0x20..=0xef: not the upcall's) with
/// the counting handler. Call with interrupts off.
pub fn install_gate(vector: u8) {
    assert!((0x20..0xf0).contains(&vector), "not an APIC vector");
    let handler = shim_lapic_entry as unsafe extern "C" fn() as usize as u64;
    let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16) & 0xffff) << 48;
    // SAFETY: as `upcall::install_gate`: the IDT entry.S loaded, a vector
    // < 256, interrupts off, no Rust reference to the table.
    unsafe {
        let gate = core::ptr::addr_of!(shim_idt[vector as usize]) as *mut u64;
        gate.write_volatile(low);
        gate.add(1).write_volatile(handler >> 32);
    }
}

/// Called by `shim_lapic_entry` with interrupts off.
#[no_mangle]
extern "C" fn shim_lapic_interrupt() {
    INTERRUPTS.fetch_add(1, Ordering::AcqRel);
    let _ = if X2APIC.load(Ordering::Acquire) {
        probe_wrmsr(x2apic_msr(reg::EOI), 0)
    } else {
        write_mmio(reg::EOI, 0)
    };
}

/// Interrupts counted so far.
pub fn interrupts() -> u64 {
    INTERRUPTS.load(Ordering::Acquire)
}

/// Halts with interrupts open until the count passes `count` (STI;HLT:
/// the interrupt wakes the HLT), then closes them again.
pub fn wait_for(count: u64) {
    while interrupts() < count {
        // SAFETY: STI;HLT only waits for an interrupt; every vector the
        // APIC can raise here has a gate (`install_gate`).
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }
}

/// The x2APIC MSR of register `offset`.
pub fn x2apic_msr(offset: u32) -> u32 {
    0x800 + (offset >> 4)
}

fn write_mmio(offset: u32, value: u32) -> Result<(), Exception> {
    // ram_end 0: the APIC page lies beyond any RAM of a shim guest.
    match probe::write(DEFAULT_BASE + u64::from(offset), 0, value, false) {
        Ok(r) => r,
        Err(_) => Err(Exception { vector: 0xff }),
    }
}

/// An xAPIC register read through MMIO.
pub fn read(offset: u32) -> Result<u32, Exception> {
    match probe::read(DEFAULT_BASE + u64::from(offset), 0, Load::Dword, 0) {
        // A 32-bit load zero-extends into RAX.
        Ok(r) => r.map(|v| (v & 0xffff_ffff) as u32),
        Err(_) => Err(Exception { vector: 0xff }),
    }
}

/// An xAPIC register write through MMIO.
pub fn write(offset: u32, value: u32) -> Result<(), Exception> {
    write_mmio(offset, value)
}

/// RDMSR of an APIC MSR.
pub fn rdmsr(msr: u32) -> Result<u64, Exception> {
    probe_rdmsr(msr)
}

/// WRMSR of an APIC MSR; switching MSR_APIC_BASE's mode also switches how
/// the handler writes EOI.
pub fn wrmsr(msr: u32, value: u64) -> Result<(), Exception> {
    probe_wrmsr(msr, value)?;
    if msr == MSR_APIC_BASE {
        X2APIC.store(
            value & (BASE_EXTD | BASE_ENABLE) == BASE_EXTD | BASE_ENABLE,
            Ordering::Release,
        );
    }
    Ok(())
}

/// Sends the interrupt command `icr` (ICR's low half) to APIC id `dest`:
/// one WRMSR of the x2APIC ICR in x2APIC mode, else ICR2 (`dest` in its
/// top byte) then ICR through MMIO.
pub fn send_ipi(icr: u32, dest: u32) -> Result<(), Exception> {
    let base = rdmsr(MSR_APIC_BASE)?;
    if base & (BASE_EXTD | BASE_ENABLE) == BASE_EXTD | BASE_ENABLE {
        wrmsr(
            x2apic_msr(reg::ICR),
            (u64::from(dest) << 32) | u64::from(icr),
        )
    } else {
        write(reg::ICR2, dest << 24)?;
        write(reg::ICR, icr)
    }
}
