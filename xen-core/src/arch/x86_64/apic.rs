//! The local APIC in xAPIC mode: xen-core's only interrupt source, used
//! for its one-shot timer (scheduler time slices, vCPU timers, idle
//! wake-ups). AMD APM vol. 2, ch. 16 "Advanced Programmable Interrupt
//! Controller": APIC base MSR, spurious-interrupt register (software
//! enable), LVT, APIC timer (initial/current count, divide configuration)
//! and EOI.
//!
//! The registers are 32-bit MMIO at the base from the IA32_APIC_BASE MSR,
//! which `boot.S` identity-maps with a write-back 2 MiB page; [`init`]
//! makes that page uncacheable (PCD|PWT: PAT entry 3, UC at reset) so that
//! each access reaches the device, as the APM requires. (QEMU ignores
//! cache attributes; real hardware also gets UC from the firmware's MTRRs.)
//!
//! The timer counts down at the bus clock divided by 16 (QEMU: 62.5 MHz); its
//! rate is measured against the TSC at [`init`]. Its interrupt
//! ([`TIMER_VECTOR`]) only raises a per-pCPU flag ([`take_timer_fired`])
//! for the run loop to act on. The interrupt reaches the host either in
//! [`cpu_idle_until`] or, while a guest runs, through the SVM INTR
//! intercept: a VM exit, then the host takes it at STGI if its RFLAGS.IF
//! was 1 at VMRUN.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::convert::usize_from_u64;
use x86_64::instructions::interrupts;
use x86_64::registers::control::Cr3;
use x86_64::registers::model_specific::Msr;
use x86_64::structures::paging::mapper::{MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, Size2MiB, Translate,
};
use x86_64::VirtAddr;

use super::cpu::{this_cpu, MAX_PCPUS};
use super::fatal::fatal;
use super::pic;
use super::tsc::{self, mul_div_ceil};
use crate::time::NS_PER_SEC;

/// Vector of the APIC timer interrupt.
pub const TIMER_VECTOR: u8 = 0xef;
/// Vector of the IPI that wakes a pCPU to look at its work (Xen's
/// `EVENT_CHECK_VECTOR`).
pub const KICK_VECTOR: u8 = 0xfc;
/// Vector of the IPI that ends a lock waiter's halt (`machine::lock`):
/// it raises no flag, so unlike a kick it asks the run loop for nothing
/// (a kick would send the woken pCPU's next exit to the writer side).
pub const WAKE_VECTOR: u8 = 0xfb;
/// The largest APIC id an xAPIC IPI can address (8 bits).
pub const MAX_XAPIC_ID: u32 = 0xff;
/// Vector the APIC raises for a spurious interrupt (never EOI'd). Its low
/// four bits are 1, as older CPUs force them.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// IA32_APIC_BASE: bits 12.. the base, bit 11 global enable, bit 10
/// x2APIC mode.
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;
/// CPUID 1 EDX bit 9: on-chip APIC.
const CPUID_1_EDX_APIC: u32 = 1 << 9;

/// Register offsets from the base.
const REG_ID: usize = 0x020;
const REG_TPR: usize = 0x080;
const REG_EOI: usize = 0x0b0;
const REG_SVR: usize = 0x0f0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked. Timer mode bits 18:17 = 0 is one-shot.
const LVT_MASKED: u32 = 1 << 16;
/// ICR low word (APM vol. 2 §16.5 "Interprocessor Interrupts"): bits
/// 10:8 the message type, bit 12 delivery status (send pending), bit 14
/// level (1 = assert). Destination mode 0 (physical), shorthand 0 (the
/// APIC id in ICR high bits 31:24).
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_SEND_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_DEST_SHIFT: u32 = 24;
/// How long a previous IPI may stay pending before the APIC is declared
/// broken (QEMU sends at once; hardware within microseconds).
const ICR_IDLE_TIMEOUT_NS: u64 = 10_000_000;
/// Divide configuration value for divide-by-16 (bits 3, 1:0 = 0b011).
const TIMER_DIVIDE_BY_16: u32 = 0b0011;
/// Calibration window: 1 ms of TSC ticks (at QEMU's 62.5 MHz, divided by
/// 16, that is 3 906 timer ticks: within 0.03%). Short: under icount every
/// nanosecond of waiting is an instruction of the boot.
const CALIBRATION_DIVISOR: u64 = 1_000;

/// Base of the register page (identity-mapped); 0 before [`init`].
static APIC_BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per second; 0 before [`init`].
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Set by the timer interrupt on each pCPU, cleared by [`take_timer_fired`].
static TIMER_FIRED: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];
/// Set by [`KICK_VECTOR`] on each pCPU, cleared by [`take_kicked`].
static KICKED: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];

/// Silences the legacy PICs, enables this pCPU's local APIC with the
/// timer masked, and measures the timer against the TSC ([`tsc::init`]
/// first). Returns the timer rate (ticks per second). Fatal if the CPU
/// has no usable xAPIC. Interrupts must be off.
pub fn init() -> u64 {
    pic::disable();
    let base = enable_xapic();
    map_uncached(base);
    APIC_BASE.store(base, Ordering::Relaxed);
    enable_local();
    let hz = calibrate_timer();
    TIMER_HZ.store(hz, Ordering::Relaxed);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    hz
}

/// Enables an application processor's local APIC as [`init`] did the
/// boot pCPU's, with the timer rate the boot pCPU measured (every APIC
/// timer counts the same bus clock). Fatal if its registers are not
/// where the boot pCPU's are (the one uncached mapping covers both).
pub fn init_ap() {
    let base = enable_xapic();
    if base != APIC_BASE.load(Ordering::Relaxed) {
        fatal(format_args!(
            "apic: pCPU {} has its APIC at {base:#x}, not the boot pCPU's",
            this_cpu().index
        ));
    }
    enable_local();
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
}

/// Software-enables this pCPU's APIC: every interrupt accepted (TPR 0),
/// LINT0 and errors masked, the timer dividing by 16 and still masked.
fn enable_local() {
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// This pCPU's local APIC id (xAPIC: ID register bits 31:24).
pub fn id() -> u32 {
    read(REG_ID) >> ICR_DEST_SHIFT
}

/// Sends an INIT IPI (assert) to the pCPU with APIC id `dest`: it resets
/// and waits for a STARTUP IPI (APM vol. 2 §16.5).
pub fn send_init(dest: u32) {
    send_icr(dest, ICR_INIT | ICR_ASSERT);
}

/// Sends a STARTUP IPI to `dest`: a pCPU waiting after INIT starts in
/// real mode at CS:IP = (`page` << 8):0000, i.e. physical `page` << 12.
pub fn send_startup(dest: u32, page: u8) {
    send_icr(dest, ICR_STARTUP | ICR_ASSERT | u32::from(page));
}

/// Sends a fixed interrupt with `vector` to the pCPU with APIC id `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, ICR_FIXED | ICR_ASSERT | u32::from(vector));
}

/// Writes the ICR (high word first: writing the low word sends) once the
/// previous IPI has left; interrupts are off meanwhile, so no handler on
/// this pCPU can write the ICR between the two words. An APIC that keeps
/// an IPI pending for [`ICR_IDLE_TIMEOUT_NS`] is broken: fatal.
fn send_icr(dest: u32, low: u32) {
    if dest > MAX_XAPIC_ID {
        fatal(format_args!("apic: APIC id {dest:#x} is not an xAPIC id"));
    }
    interrupts::without_interrupts(|| {
        let deadline = tsc::now() + mul_div_ceil(ICR_IDLE_TIMEOUT_NS, tsc::hz(), NS_PER_SEC);
        while read(REG_ICR_LOW) & ICR_SEND_PENDING != 0 {
            if tsc::now() > deadline {
                fatal(format_args!("apic: an IPI stayed pending for 10 ms"));
            }
            core::hint::spin_loop();
        }
        write(REG_ICR_HIGH, dest << ICR_DEST_SHIFT);
        write(REG_ICR_LOW, low);
    });
}

/// Turns the APIC on in xAPIC mode and returns its register base.
fn enable_xapic() -> u64 {
    if core::arch::x86_64::__cpuid(1).edx & CPUID_1_EDX_APIC == 0 {
        fatal(format_args!("apic: the CPU has no local APIC"));
    }
    let mut msr = Msr::new(MSR_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked).
    let value = unsafe { msr.read() };
    if value & APIC_BASE_X2APIC != 0 {
        fatal(format_args!("apic: firmware left the APIC in x2APIC mode"));
    }
    let base = value & APIC_BASE_MASK;
    if base >= 1 << 32 {
        fatal(format_args!(
            "apic: base {base:#x} is outside the identity map"
        ));
    }
    if value & APIC_BASE_ENABLE == 0 {
        // SAFETY: setting the global enable bit keeps the base and mode;
        // the APIC then starts with every LVT entry masked.
        unsafe { msr.write(value | APIC_BASE_ENABLE) };
    }
    base
}

/// Makes the 2 MiB identity-mapped page holding `base` (a device's
/// registers: the local APIC, an IO-APIC) uncacheable.
pub(super) fn map_uncached(base: u64) {
    let (pml4_frame, _) = Cr3::read();
    // SAFETY: CR3 holds boot.S's identity map (VA = PA below 4 GiB, where
    // its tables live, in our image's .bss); only this function makes a
    // Rust reference to them, on the boot pCPU at boot with interrupts
    // off, and the reference ends with the call.
    let pml4 = unsafe { &mut *(pml4_frame.start_address().as_u64() as *mut PageTable) };
    // SAFETY: offset 0 is right for the identity map, as above.
    let mut tables = unsafe { OffsetPageTable::new(pml4, VirtAddr::zero()) };
    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(base));
    let flags = match tables.translate(page.start_address()) {
        TranslateResult::Mapped {
            frame: MappedFrame::Size2MiB(_),
            flags,
            ..
        } => flags,
        other => fatal(format_args!(
            "apic: {base:#x} is not in a 2 MiB boot page: {other:?}"
        )),
    };
    let uncached = flags | PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
    // SAFETY: only the page's cache attributes change (same frame, same
    // access rights); nothing has touched the device through it yet, so
    // no cached line needs flushing. The TLB entry is flushed.
    match unsafe { tables.update_flags(page, uncached) } {
        Ok(flush) => flush.flush(),
        Err(e) => fatal(format_args!("apic: cannot remap {base:#x}: {e:?}")),
    }
}

/// Measures the timer's rate over a TSC window, the timer masked.
fn calibrate_timer() -> u64 {
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    let window = tsc::hz() / CALIBRATION_DIVISOR;
    let start = tsc::now();
    write(REG_TIMER_INITIAL, u32::MAX);
    let mut elapsed = 0;
    while elapsed < window {
        elapsed = tsc::now().wrapping_sub(start);
    }
    let ticks = u64::from(u32::MAX - read(REG_TIMER_CURRENT));
    write(REG_TIMER_INITIAL, 0);
    if ticks == 0 || elapsed == 0 {
        fatal(format_args!(
            "apic: the timer did not count in {elapsed} TSC ticks"
        ));
    }
    mul_div_ceil(ticks, tsc::hz(), elapsed)
}

/// Timer ticks per second ([`init`]).
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Starts the one-shot timer to fire `ns` nanoseconds from now, replacing
/// any pending shot. Beyond the counter's range (about 68 s at QEMU's
/// 62.5 MHz) it fires early: callers re-check their deadline.
pub fn arm_oneshot_ns(ns: u64) {
    start_timer(mul_div_ceil(ns, timer_hz(), NS_PER_SEC));
}

/// Starts the one-shot timer to fire when the TSC reaches `deadline_tsc`
/// (at once if it has), with the same range limit as [`arm_oneshot_ns`].
pub fn arm_at_tsc(deadline_tsc: u64) {
    let delta = deadline_tsc.saturating_sub(tsc::now());
    start_timer(mul_div_ceil(delta, timer_hz(), tsc::hz().max(1)));
}

/// Writing the initial count starts the countdown; 0 would stop it, so a
/// due deadline gets the shortest shot.
fn start_timer(ticks: u64) {
    write(
        REG_TIMER_INITIAL,
        u32::try_from(ticks).unwrap_or(u32::MAX).max(1),
    );
}

/// Stops the timer. An interrupt it already raised may still arrive.
pub fn disarm() {
    write(REG_TIMER_INITIAL, 0);
}

/// Signals the end of the interrupt being serviced.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Whether the timer fired on this pCPU since the last call (and clears it).
pub fn take_timer_fired() -> bool {
    TIMER_FIRED[this_cpu().index].swap(false, Ordering::Acquire)
}

/// Whether the timer fired since the last [`take_timer_fired`], without
/// consuming it.
pub fn timer_fired() -> bool {
    TIMER_FIRED[this_cpu().index].load(Ordering::Acquire)
}

/// The timer interrupt's handler, called by its stub (exceptions.rs).
pub(super) extern "C" fn timer_interrupt() {
    TIMER_FIRED[this_cpu().index].store(true, Ordering::Release);
    eoi();
}

/// Whether a [`KICK_VECTOR`] IPI reached this pCPU since the last call
/// (and clears it).
pub fn take_kicked() -> bool {
    KICKED[this_cpu().index].swap(false, Ordering::Acquire)
}

/// Whether a kick came since the last [`take_kicked`], without consuming
/// it (a reader section leaves it to the writer side).
pub fn kicked() -> bool {
    KICKED[this_cpu().index].load(Ordering::Acquire)
}

/// The kick IPI's handler, called by its stub (exceptions.rs).
pub(super) extern "C" fn kick_interrupt() {
    KICKED[this_cpu().index].store(true, Ordering::Release);
    eoi();
}

/// The wake IPI's handler, called by its stub (exceptions.rs): the
/// interrupt itself ended the HLT.
pub(super) extern "C" fn wake_interrupt() {
    eoi();
}

/// Halts this pCPU until an interrupt arrives, the timer armed for
/// `deadline_tsc`; returns at once if the TSC has passed it. Returns with
/// interrupts off, as it must be called. The wake-up may come early (any
/// interrupt, or a deadline beyond the timer's range): callers re-check.
pub fn cpu_idle_until(deadline_tsc: u64) {
    if interrupts::are_enabled() {
        fatal(format_args!("cpu_idle_until called with interrupts on"));
    }
    if tsc::now() >= deadline_tsc {
        return;
    }
    arm_at_tsc(deadline_tsc);
    // STI delays interrupts by one instruction, so an interrupt that is
    // already pending (or arrives now) ends the HLT instead of being taken
    // before it and sleeping through.
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// Halts this pCPU until any interrupt (a kick IPI, its armed timer, a
/// device on the boot pCPU), with interrupts off before and after; no
/// timer is armed or changed.
pub fn cpu_halt() {
    if interrupts::are_enabled() {
        fatal(format_args!("cpu_halt called with interrupts on"));
    }
    // As in `cpu_idle_until`: an interrupt already pending ends the HLT.
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// Reads a 32-bit APIC register.
fn read(offset: usize) -> u32 {
    // SAFETY: `register` is a 4-byte-aligned APIC register in the
    // uncached identity-mapped page; reading it has no memory effect.
    unsafe { ptr::read_volatile(register(offset)) }
}

/// Writes a 32-bit APIC register.
fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; the register page is device memory that no
    // Rust object occupies.
    unsafe { ptr::write_volatile(register(offset), value) }
}

fn register(offset: usize) -> *mut u32 {
    let base = APIC_BASE.load(Ordering::Relaxed);
    if base == 0 {
        fatal(format_args!("apic: register {offset:#x} used before init"));
    }
    (usize_from_u64(base) + offset) as *mut u32
}
