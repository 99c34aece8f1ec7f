//! PCI configuration space: addresses, the registers xen-core reads, and
//! the access trait the arch layer implements over ECAM.
//!
//! Register offsets: PCI Local Bus Specification 3.0 §6.1 (type 0 header),
//! PCI-to-PCI Bridge Architecture Specification 1.2 §3.2 (type 1).

use core::fmt;

/// Vendor ID (16 bits); 0xFFFF reads mean "no function here".
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (16 bits).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits).
pub const COMMAND: u16 = 0x04;
/// Revision ID, programming interface, sub-class, base class (one dword).
pub const CLASS_REVISION: u16 = 0x08;
/// Header type (8 bits): layout in bits 6:0, multi-function in bit 7.
pub const HEADER_TYPE: u16 = 0x0e;
/// First Base Address Register.
pub const BAR0: u16 = 0x10;
/// Expansion ROM base address of a type 0 header.
pub const ROM_BASE: u16 = 0x30;
/// Expansion ROM base address of a type 1 (bridge) header.
pub const BRIDGE_ROM_BASE: u16 = 0x38;
/// Interrupt Line (8 bits): xen-core writes the function's INTx GSI here
/// (0xFF = none); dom0 reads it.
pub const INTERRUPT_LINE: u16 = 0x3c;
/// Interrupt Pin (8 bits): 0 none, 1..=4 INTA#..INTD#.
pub const INTERRUPT_PIN: u16 = 0x3d;
/// First bridge register that places things (bus numbers, I/O, memory
/// and prefetchable windows, 0x18..0x30 in a type 1 header).
pub const BRIDGE_PLACEMENT: core::ops::Range<u16> = 0x18..0x30;

/// Command register: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;

/// Header type bit 7: the device has functions 1..=7.
pub const HEADER_MULTIFUNCTION: u8 = 0x80;
/// Header layout 0: an endpoint, six BARs.
pub const HEADER_ENDPOINT: u8 = 0;
/// Header layout 1: a PCI-to-PCI bridge, two BARs.
pub const HEADER_BRIDGE: u8 = 1;

/// Interrupt Line value meaning "no interrupt" (PCI 3.0 §6.2.4).
pub const NO_INTERRUPT_LINE: u8 = 0xff;

/// Bytes of configuration space per function (PCI Express: 4 KiB).
pub const CONFIG_SPACE_BYTES: u16 = 4096;
/// Devices per bus.
pub const DEVICES_PER_BUS: u8 = 32;
/// Functions per device.
pub const FUNCTIONS_PER_DEVICE: u8 = 8;

/// A function's address: segment, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment group.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (< 32).
    pub device: u8,
    /// Function number (< 8).
    pub function: u8,
}

impl fmt::Display for Bdf {
    /// `SSSS:BB:DD.F`, as Linux and Xen print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// Access to the real configuration space (ECAM on bare metal, a fake in
/// host tests). Accesses are 1, 2 or 4 bytes, naturally aligned, inside
/// the function's 4 KiB; a function that does not exist reads all ones.
pub trait ConfigAccess {
    /// Reads `size` bytes at `offset`, zero-extended.
    fn read(&self, bdf: Bdf, offset: u16, size: u8) -> u32;
    /// Writes the low `size` bytes of `value` at `offset`.
    fn write(&self, bdf: Bdf, offset: u16, size: u8, value: u32);

    /// Reads the dword at `offset`.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.read(bdf, offset, 4)
    }

    /// Reads the word at `offset`.
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        let [low, high, ..] = self.read(bdf, offset, 2).to_le_bytes();
        u16::from_le_bytes([low, high])
    }

    /// Reads the byte at `offset`.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        self.read(bdf, offset, 1).to_le_bytes()[0]
    }
}

impl<T: ConfigAccess> ConfigAccess for &T {
    fn read(&self, bdf: Bdf, offset: u16, size: u8) -> u32 {
        (**self).read(bdf, offset, size)
    }
    fn write(&self, bdf: Bdf, offset: u16, size: u8, value: u32) {
        (**self).write(bdf, offset, size, value);
    }
}

/// Whether a `size`-byte access at `offset` is one ECAM can carry:
/// 1, 2 or 4 bytes, naturally aligned, inside the 4 KiB.
pub fn valid_access(offset: u16, size: u8) -> bool {
    matches!(size, 1 | 2 | 4)
        && offset.is_multiple_of(u16::from(size))
        && offset < CONFIG_SPACE_BYTES
}
