//! How xen-core ends a QEMU run: a byte written to QEMU's `isa-debug-exit`
//! device. QEMU then exits with status `(code << 1) | 1`, so the scenario
//! runner tells a clean power-off from a crash by the process status.

/// I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// dom0 shut down with SHUTDOWN_poweroff; every domain was stopped.
pub const EXIT_POWEROFF: u8 = 0x10;
/// dom0 shut down with SHUTDOWN_reboot (QEMU has no reset here: we exit).
pub const EXIT_REBOOT: u8 = 0x11;
/// dom0 crashed (SHUTDOWN_crash, triple fault, invalid state).
pub const EXIT_DOM0_CRASH: u8 = 0x12;
/// The hypervisor itself stopped: panic, unexpected exception, unusable
/// boot input (corrupt bundle, no SVM, no memory).
pub const EXIT_FATAL: u8 = 0x20;

/// The QEMU process exit status that results from writing `code`.
pub const fn qemu_status(code: u8) -> i32 {
    ((code as i32) << 1) | 1
}
