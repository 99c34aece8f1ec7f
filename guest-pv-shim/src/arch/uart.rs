//! A 16550 UART by port I/O ([`uart_16550`]): COM2, dom0's management
//! channel. xen-core passes COM2's ports (0x2f8..0x2ff) through to dom0 in
//! its I/O permission bitmap; from any other domain the accesses exit and
//! the domain gets #GP (no memory is touched either way).
//!
//! [`Uart::com2`] enables the receive-data interrupt (IER bit 0), which
//! dom0 takes as an event channel (its ISA IRQ 3 mapped as a pirq, see
//! `physdev`); [`Uart::try_read`] never waits, [`Uart::write`] waits only
//! for the transmitter (LSR THRE).

use uart_16550::SerialPort;

/// I/O base of COM2.
pub const COM2_PORT: u16 = 0x2f8;

/// A 16550 UART, set up for 8-N-1 with its FIFOs on.
pub struct Uart(SerialPort);

impl Uart {
    /// COM2, initialised (8-N-1, FIFOs on and cleared; the baud rate is
    /// irrelevant under QEMU).
    pub fn com2() -> Uart {
        // SAFETY: 0x2f8 is the standard COM2 base; its registers are port
        // I/O that touches no memory, and this domain owns COM2 (dom0), or
        // its accesses fault without side effects.
        let mut port = unsafe { SerialPort::new(COM2_PORT) };
        port.init();
        Uart(port)
    }

    /// A received byte, if one is waiting (LSR data ready).
    pub fn try_read(&mut self) -> Option<u8> {
        self.0.try_receive().ok()
    }

    /// Sends `bytes` as they are (binary safe), each after LSR THRE.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0.send_raw(b);
        }
    }
}
