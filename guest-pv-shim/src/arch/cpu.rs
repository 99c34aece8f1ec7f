//! CPU instructions the shim needs outside hypercalls: CPUID, TSC, and the
//! COM1 / isa-debug-exit ports of the no-Xen fallback.

use core::arch::asm;
use core::fmt;

/// COM1, used only when no Xen is found (see [`crate::arch::entry`]).
const COM1_PORT: u16 = 0x3f8;

/// Exit codes written to QEMU's isa-debug-exit device when the shim runs
/// without Xen; QEMU exits with status `(code << 1) | 1`.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum NoXenExit {
    /// Entry and start info were fine; no Xen signature (status 0x61).
    XenNotDetected = 0x30,
    /// Exception, panic or bad start info before Xen was found (status 0x63).
    Crash = 0x31,
}

/// CPUID `leaf` (sub-leaf 0): `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid(leaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter (CR4.TSD is clear: we never set it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Writes `text` to COM1 (the debug fallback without Xen).
pub fn com1_write(text: &[u8]) {
    // SAFETY: 0x3f8 is the standard COM1 UART; the shim only takes this
    // path when no hypervisor owns it (QEMU -kernel boot), and the UART
    // touches no memory.
    let mut port = unsafe { uart_16550::SerialPort::new(COM1_PORT) };
    for &b in text {
        port.send(b);
    }
}

/// [`fmt::Write`] adapter over [`com1_write`].
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        com1_write(s.as_bytes());
        Ok(())
    }
}

/// Ends a QEMU run through isa-debug-exit (the no-Xen debug fallback),
/// halting if the device is absent.
pub fn debug_exit(code: NoXenExit) -> ! {
    loop {
        // SAFETY: port I/O to the isa-debug-exit device touches no memory;
        // without the device the write is ignored and we halt below.
        unsafe {
            asm!("out dx, al", in("dx") abi::debug_exit::DEBUG_EXIT_PORT, in("al") code as u8)
        };
        halt();
    }
}

/// Halts with interrupts off: the vCPU stops for good (or, under Xen,
/// until an event wakes it and we halt again).
pub fn halt() {
    // SAFETY: HLT only stops the CPU; interrupts are off in the shim.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}
