//! The event-channel upcall: the IDT gate for the vector registered with
//! `HVM_PARAM_CALLBACK_IRQ` (Xen's "vector" callback via, as Linux PVH
//! guests use), its handler, and the guest's interrupt flag.
//!
//! The shim runs with interrupts off until a kernel sets up events
//! ([`crate::arch::evtchn`]); waits then open them only around a
//! hypercall that blocks, so port handlers run at known points.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// The vector of the event upcall (Linux uses 0xf3, `HYPERVISOR_CALLBACK_VECTOR`).
pub const UPCALL_VECTOR: u8 = 0xf3;

/// Where the upcall's scan goes; set once by `evtchn` before the gate is live.
static UPCALL_READY: AtomicBool = AtomicBool::new(false);

extern "C" {
    static shim_idt: [[u64; 2]; 256];
    fn shim_upcall_entry();
}

/// Fills the IDT gate of [`UPCALL_VECTOR`] with `shim_upcall_entry`.
pub(super) fn install_gate() {
    let handler = shim_upcall_entry as unsafe extern "C" fn() as usize as u64;
    let low = (handler & 0xffff)
        | (0x08 << 16) // code selector
        | (0x8e00 << 32) // present, DPL 0, 64-bit interrupt gate
        | ((handler >> 16) & 0xffff) << 48;
    let high = handler >> 32;
    // SAFETY: shim_idt is the 256-gate table entry.S loaded with LIDT; the
    // vector is < 256; interrupts are off (nothing can use the gate while
    // it is half written) and no Rust reference to the table exists.
    unsafe {
        let gate = core::ptr::addr_of!(shim_idt[UPCALL_VECTOR as usize]) as *mut u64;
        gate.write_volatile(low);
        gate.add(1).write_volatile(high);
    }
    UPCALL_READY.store(true, Ordering::Release);
}

/// Whether the upcall gate is installed (a kernel set up `Events`).
pub(super) fn installed() -> bool {
    UPCALL_READY.load(Ordering::Acquire)
}

/// Called by `shim_upcall_entry` with interrupts off.
#[no_mangle]
extern "C" fn shim_upcall() {
    if UPCALL_READY.load(Ordering::Acquire) {
        super::evtchn::upcall();
    }
}

/// Whether interrupts are enabled (RFLAGS.IF).
pub fn enabled() -> bool {
    let rflags: u64;
    // SAFETY: reads RFLAGS through the stack; no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) rflags, options(nomem, preserves_flags)) };
    rflags & (1 << 9) != 0
}

/// Disables interrupts; returns whether they were enabled.
pub fn disable() -> bool {
    let was = enabled();
    // SAFETY: CLI only clears IF.
    unsafe { asm!("cli", options(nostack)) };
    was
}

/// Restores the interrupt flag [`disable`] returned.
pub fn restore(was_enabled: bool) {
    if was_enabled {
        // SAFETY: STI only sets IF; the gate and handler are installed
        // whenever a kernel had interrupts on (see `evtchn::Events::init`).
        unsafe { asm!("sti", options(nostack)) };
    }
}

/// Opens a window for a pending upcall: STI, one instruction (the STI
/// shadow), CLI. The upcall runs inside the window if one is pending.
/// Not `nomem`: the compiler must reload what the handlers changed.
pub(super) fn window() {
    // SAFETY: as `restore`; interrupts end disabled as they began.
    unsafe { asm!("sti", "nop", "cli", options(nostack)) };
}

/// Runs `f` with interrupts disabled, restoring the flag after.
pub fn without_interrupts<T>(f: impl FnOnce() -> T) -> T {
    let was = disable();
    let result = f();
    restore(was);
    result
}
