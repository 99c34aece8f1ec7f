//! Stopping the machine: through QEMU's `isa-debug-exit`
//! (`abi::debug_exit`), with a last message on COM1 when it is a failure.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use abi::debug_exit::{DEBUG_EXIT_PORT, EXIT_FATAL};
use x86_64::instructions::port::PortWriteOnly;

use super::serial::{Com1, LOG};

/// Set by the first [`fatal`]: a fault while printing must not recurse.
static DYING: AtomicBool = AtomicBool::new(false);

/// Flushes the log to COM1, then ends the QEMU run with status
/// `(code << 1) | 1`. Without the exit device (real hardware) the CPU
/// halts with interrupts off.
pub fn exit(code: u8) -> ! {
    LOG.flush_unless_locked();
    let mut port = PortWriteOnly::<u8>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing the isa-debug-exit port ends the machine; it touches
    // no memory. On hardware without it, port 0xf4 is unused.
    unsafe { port.write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Prints `FATAL: <args>` and `extra` (register dumps) on COM1, without
/// taking the logger's lock, then exits with `EXIT_FATAL`.
pub fn fatal_with(args: fmt::Arguments, extra: impl FnOnce(&mut Com1) -> fmt::Result) -> ! {
    if !DYING.swap(true, Ordering::SeqCst) {
        // What was logged before comes first (unless the fault hit the
        // logger itself, which then holds its lock).
        LOG.flush_unless_locked();
        let mut com1 = Com1::new();
        let _ = writeln!(com1, "\nFATAL: {args}");
        let _ = extra(&mut com1);
    }
    exit(EXIT_FATAL)
}

/// Prints `FATAL: <args>` on COM1 and exits with `EXIT_FATAL`.
pub fn fatal(args: fmt::Arguments) -> ! {
    fatal_with(args, |_| Ok(()))
}
