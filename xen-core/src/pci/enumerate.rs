//! Finding every PCI function behind the ECAM regions, sizing its BARs
//! and reading its interrupt pin.
//!
//! Every bus an MCFG region decodes is scanned (not only those reached
//! through bridges): ECAM answers all ones for absent functions, and a
//! brute-force scan also finds buses firmware left unconnected. Sources:
//! PCI Local Bus Specification 3.0 §6.1 (header), §6.2.5.1 (BAR sizing:
//! decoding off, write all ones, read the mask back, restore).

use alloc::vec::Vec;
use core::fmt;

use crate::platform::{EcamRegion, Polarity, Trigger};

use super::config::{
    Bdf, ConfigAccess, BAR0, BRIDGE_ROM_BASE, CLASS_REVISION, COMMAND, COMMAND_IO, COMMAND_MEMORY,
    DEVICES_PER_BUS, DEVICE_ID, FUNCTIONS_PER_DEVICE, HEADER_BRIDGE, HEADER_ENDPOINT,
    HEADER_MULTIFUNCTION, HEADER_TYPE, INTERRUPT_PIN, ROM_BASE, VENDOR_ID,
};

/// Most functions recorded; more are logged and left to nobody.
pub const MAX_PCI_FUNCTIONS: usize = 256;
/// BARs of a type 0 header (a type 1 header has 2).
pub const MAX_BARS: usize = 6;

/// BAR bit 0: the BAR decodes I/O space.
const BAR_IO: u32 = 1 << 0;
/// Memory BAR bits 2:1: 00 32-bit, 10 64-bit (01, 11 reserved).
const BAR_MEM_TYPE: u32 = 0b110;
const BAR_MEM_64: u32 = 0b100;
/// Memory BAR bit 3: prefetchable.
const BAR_PREFETCHABLE: u32 = 1 << 3;
/// Address bits of a memory BAR's low dword.
pub const BAR_MEM_ADDRESS: u32 = !0xf;
/// Address bits of an I/O BAR.
pub const BAR_IO_ADDRESS: u32 = !0x3;
/// I/O BARs decode 16-bit port numbers on x86.
const IO_SPACE_MASK: u32 = 0xffff;

/// What address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB (one register).
    Mem32,
    /// Memory anywhere (two registers: this one and the next).
    Mem64,
}

/// One implemented BAR, as firmware placed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its register index (0..6); a 64-bit BAR also uses `index + 1`.
    pub index: u8,
    /// Address space.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Address (or first port) firmware assigned.
    pub base: u64,
    /// Bytes (or ports) decoded: a power of two.
    pub size: u64,
}

impl Bar {
    /// Whether the BAR decodes memory.
    pub fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
        };
        let pref = if self.prefetchable { " pref" } else { "" };
        write!(
            f,
            "[{} {kind}{pref} {:#x}+{:#x}]",
            self.index, self.base, self.size
        )
    }
}

/// Where a function's INTx pin arrives (from the DSDT's `_PRT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxRoute {
    /// The GSI.
    pub gsi: u32,
    /// Its trigger mode (PCI INTx is level-triggered; firmware says).
    pub trigger: Trigger,
    /// Its polarity (QEMU's q35 link devices say active high).
    pub polarity: Polarity,
}

/// Who drives a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// dom0, the hardware domain.
    Dom0,
    /// xen-core itself (dom0 reads all ones).
    Hypervisor,
}

/// xen-core's ownership policy: it drives no PCI function itself (its own
/// devices are COM1, the local APIC, the PIT and the RTC), so dom0 owns
/// every function, host bridge and LPC bridge included, as Xen's hardware
/// domain does.
pub fn default_owner(_function: &PciFunction) -> Owner {
    Owner::Dom0
}

/// One PCI function found at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Sub-class.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Header layout (bits 6:0 of the header type).
    pub header_layout: u8,
    /// Implemented BARs.
    pub bars: Vec<Bar>,
    /// The BAR registers as firmware left them (index 0..6; unused ones 0).
    pub bar_registers: [u32; MAX_BARS],
    /// The expansion ROM register as firmware left it.
    pub rom_register: u32,
    /// Interrupt pin: 0 none, 1..=4 INTA#..INTD#.
    pub interrupt_pin: u8,
    /// Where its INTx is wired, once routed.
    pub intx: Option<IntxRoute>,
    /// Who drives it.
    pub owner: Owner,
}

impl PciFunction {
    /// Offset of the expansion ROM register in this header layout.
    pub fn rom_offset(&self) -> Option<u16> {
        match self.header_layout {
            HEADER_ENDPOINT => Some(ROM_BASE),
            HEADER_BRIDGE => Some(BRIDGE_ROM_BASE),
            _ => None,
        }
    }

    /// Number of BAR registers in this header layout.
    pub fn bar_registers_count(&self) -> u8 {
        bar_count(self.header_layout)
    }
}

fn bar_count(layout: u8) -> u8 {
    match layout {
        HEADER_ENDPOINT => 6,
        HEADER_BRIDGE => 2,
        _ => 0,
    }
}

/// Every function behind `regions`, at most [`MAX_PCI_FUNCTIONS`] (the
/// rest are counted in the second value).
pub fn enumerate(cfg: &impl ConfigAccess, regions: &[EcamRegion]) -> (Vec<PciFunction>, usize) {
    let mut found = Vec::new();
    let mut dropped = 0;
    for region in regions {
        for bus in region.bus_start..=region.bus_end {
            for device in 0..DEVICES_PER_BUS {
                for function in functions_of(cfg, region.segment, bus, device) {
                    if found.len() < MAX_PCI_FUNCTIONS {
                        found.push(probe(cfg, function));
                    } else {
                        dropped += 1;
                    }
                }
            }
        }
    }
    (found, dropped)
}

/// The present functions of one device.
fn functions_of(
    cfg: &impl ConfigAccess,
    segment: u16,
    bus: u8,
    device: u8,
) -> impl Iterator<Item = Bdf> + '_ {
    let at = move |function| Bdf {
        segment,
        bus,
        device,
        function,
    };
    let present = move |bdf: &Bdf| cfg.read16(*bdf, VENDOR_ID) != 0xffff;
    let count = if present(&at(0)) {
        let header = cfg.read8(at(0), HEADER_TYPE);
        if header & HEADER_MULTIFUNCTION != 0 {
            FUNCTIONS_PER_DEVICE
        } else {
            1
        }
    } else {
        0
    };
    (0..count).map(at).filter(present)
}

/// Reads one present function's header and sizes its BARs.
fn probe(cfg: &impl ConfigAccess, bdf: Bdf) -> PciFunction {
    let [_revision, prog_if, subclass, class] = cfg.read32(bdf, CLASS_REVISION).to_le_bytes();
    let layout = cfg.read8(bdf, HEADER_TYPE) & !HEADER_MULTIFUNCTION;
    let mut function = PciFunction {
        bdf,
        vendor: cfg.read16(bdf, VENDOR_ID),
        device: cfg.read16(bdf, DEVICE_ID),
        class,
        subclass,
        prog_if,
        header_layout: layout,
        bars: Vec::new(),
        bar_registers: [0; MAX_BARS],
        rom_register: 0,
        interrupt_pin: cfg.read8(bdf, INTERRUPT_PIN),
        intx: None,
        owner: Owner::Dom0,
    };
    for index in 0..bar_count(layout) {
        function.bar_registers[usize::from(index)] = cfg.read32(bdf, bar_offset(index));
    }
    if let Some(rom) = function.rom_offset() {
        function.rom_register = cfg.read32(bdf, rom);
    }
    function.bars = size_bars(cfg, bdf, layout);
    function.owner = default_owner(&function);
    function
}

/// Offset of BAR register `index`.
pub fn bar_offset(index: u8) -> u16 {
    BAR0 + 4 * u16::from(index)
}

/// Sizes every BAR with decoding turned off, restoring each register and
/// the command register afterwards.
fn size_bars(cfg: &impl ConfigAccess, bdf: Bdf, layout: u8) -> Vec<Bar> {
    let command = cfg.read(bdf, COMMAND, 2);
    let decode = u32::from(COMMAND_IO | COMMAND_MEMORY);
    cfg.write(bdf, COMMAND, 2, command & !decode);
    let mut bars = Vec::new();
    let count = bar_count(layout);
    let mut index = 0;
    while index < count {
        let (bar, used) = size_bar(cfg, bdf, index, count);
        bars.extend(bar);
        index += used;
    }
    cfg.write(bdf, COMMAND, 2, command);
    bars
}

/// Writes all ones to a BAR register and reads the mask back, restoring
/// the original value.
fn mask_of(cfg: &impl ConfigAccess, bdf: Bdf, index: u8) -> (u32, u32) {
    let offset = bar_offset(index);
    let original = cfg.read32(bdf, offset);
    cfg.write(bdf, offset, 4, u32::MAX);
    let mask = cfg.read32(bdf, offset);
    cfg.write(bdf, offset, 4, original);
    (original, mask)
}

/// Sizes BAR `index`; returns it (if implemented) and how many registers
/// it takes (2 for a 64-bit BAR).
fn size_bar(cfg: &impl ConfigAccess, bdf: Bdf, index: u8, count: u8) -> (Option<Bar>, u8) {
    let (original, mask) = mask_of(cfg, bdf, index);
    if original & BAR_IO != 0 {
        let size_mask = mask & BAR_IO_ADDRESS & IO_SPACE_MASK;
        let bar = (size_mask != 0).then(|| Bar {
            index,
            kind: BarKind::Io,
            prefetchable: false,
            base: u64::from(original & BAR_IO_ADDRESS & IO_SPACE_MASK),
            size: lowest_bit(u64::from(size_mask)),
        });
        return (bar, 1);
    }
    let prefetchable = original & BAR_PREFETCHABLE != 0;
    match original & BAR_MEM_TYPE {
        0 => {
            let size_mask = mask & BAR_MEM_ADDRESS;
            let bar = (size_mask != 0).then(|| Bar {
                index,
                kind: BarKind::Mem32,
                prefetchable,
                base: u64::from(original & BAR_MEM_ADDRESS),
                size: lowest_bit(u64::from(size_mask)),
            });
            (bar, 1)
        }
        BAR_MEM_64 if index + 1 < count => {
            let (original_high, mask_high) = mask_of(cfg, bdf, index + 1);
            let size_mask = (u64::from(mask_high) << 32) | u64::from(mask & BAR_MEM_ADDRESS);
            let bar = (size_mask != 0).then(|| Bar {
                index,
                kind: BarKind::Mem64,
                prefetchable,
                base: (u64::from(original_high) << 32) | u64::from(original & BAR_MEM_ADDRESS),
                size: lowest_bit(size_mask),
            });
            (bar, 2)
        }
        // A reserved memory type, or a 64-bit BAR in the last register:
        // not a BAR xen-core can place; dom0 gets no mapping for it.
        _ => (None, 1),
    }
}

/// The BAR size a non-zero sizing mask says: its lowest set bit (the
/// register's writable address bits start there).
fn lowest_bit(size_mask: u64) -> u64 {
    1 << size_mask.trailing_zeros()
}
