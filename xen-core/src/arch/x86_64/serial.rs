//! COM1: xen-core's log console, through the `log` crate. The log goes to
//! a ring first; the run loop drains it (`crate::logger`).

use core::fmt;

use uart_16550::SerialPort;

use super::tsc;
use crate::logger::{Console, Logger};

/// I/O port base of COM1.
const COM1_PORT: u16 = 0x3f8;

/// COM1 as a text writer.
pub struct Com1(SerialPort);

impl Com1 {
    /// A handle on COM1. Each handle programs the same device; the logger
    /// owns the regular one, [`crate::arch::x86_64::fatal`] a second one for
    /// its last words (it must not wait for the logger's lock).
    pub const fn new() -> Self {
        // SAFETY: 0x3f8 is COM1 on every PC-compatible machine (QEMU q35
        // included); its registers are I/O ports, so no memory is touched.
        Self(unsafe { SerialPort::new(COM1_PORT) })
    }
}

impl Default for Com1 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(s)
    }
}

/// Sends without waiting only when the transmitter holding register is
/// empty (LSR.THRE).
impl Console for Com1 {
    fn try_send(&mut self, byte: u8) -> bool {
        self.0.try_send_raw(byte).is_ok()
    }

    fn send(&mut self, byte: u8) {
        self.0.send_raw(byte);
    }
}

/// Milliseconds since boot (0 until the TSC is calibrated).
fn now_ms() -> u64 {
    tsc::system_time_ns() / 1_000_000
}

/// The hypervisor's log: the in-memory ring (`dmesg`), drained to COM1.
pub static LOG: Logger<Com1> = Logger::new(Com1::new(), now_ms);

/// Programs COM1 (38400 8N1, no interrupts) and routes `log` to it at
/// `Info` level.
pub fn init() {
    LOG.with_console(|com1| {
        com1.0.init();
        // SeaBIOS leaves its last line open: start ours on a fresh one.
        com1.0.send(b'\n');
    });
    // Fails only if a logger is already set: then that one stays.
    let _ = log::set_logger(&LOG);
    log::set_max_level(log::LevelFilter::Info);
}

/// Sets the log level from the `loglvl=` option (`error`, `warn`, `info`,
/// `debug`, `trace`); warns about a value it does not know.
pub fn set_level(option: Option<&str>) {
    let Some(value) = option else { return };
    match value.parse::<log::LevelFilter>() {
        Ok(level) => log::set_max_level(level),
        Err(_) => log::warn!("loglvl: unknown level {value:?}"),
    }
}
