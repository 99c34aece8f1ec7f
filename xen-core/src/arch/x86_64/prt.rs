//! INTx routing from the DSDT: the root bridge's `_PRT`, evaluated with
//! the `aml` crate after `\_PIC(1)` (ACPI 6.5 §5.8.1: the OS says it
//! uses IO-APIC mode, so `_PRT` answers in GSIs or link devices whose
//! `_CRS` give GSIs), resolved per function by `PciRoutingTable::route`.
//!
//! The interpreter runs firmware's AML with **read-only** access to the
//! machine: memory reads go through the identity map, PCI configuration
//! reads through ECAM, port reads return all ones, and every write is
//! dropped. `_PRT` and the link devices' `_CRS` need nothing more on
//! QEMU's q35 (its `_PRT` in APIC mode names the GSIA..GSIH links, whose
//! `_CRS` are constant); an AML method that needs more fails, and the
//! function is logged with no route.

use alloc::boxed::Box;
use core::ptr;

use acpi::AcpiTables;
use aml::pci_routing::{PciRoutingTable, Pin};
use aml::resource::{InterruptPolarity, InterruptTrigger};
use aml::value::Args;
use aml::{AmlContext, AmlName, AmlValue, DebugVerbosity, Handler};

use super::ecam::Ecam;
use super::firmware::IdentityAcpi;
use crate::mm::frame::MAX_PHYS_MEM;
use crate::pci::config::{Bdf, ConfigAccess};
use crate::pci::{IntxRoute, PciFunction};
use crate::platform::{Polarity, Trigger};

/// The root bridge's routing table (QEMU's q35 and i440fx name it PCI0).
const ROOT_PRT: &str = "\\_SB.PCI0._PRT";
/// `\_PIC` argument for IO-APIC mode.
const PIC_MODE_APIC: u64 = 1;

/// The evaluated `_PRT` and the interpreter its link devices need.
pub struct Router {
    context: AmlContext,
    table: PciRoutingTable,
}

impl Router {
    /// Parses the DSDT and evaluates the root bridge's `_PRT`; `None`
    /// (with the reason logged) if that cannot be done.
    pub fn new(tables: &AcpiTables<IdentityAcpi>, ecam: Ecam) -> Option<Self> {
        let dsdt = tables
            .dsdt()
            .inspect_err(|e| log::warn!("pci: no DSDT ({e:?}): INTx not routed"))
            .ok()?;
        let bytes = table_bytes(dsdt.address, dsdt.length)?;
        let mut context = AmlContext::new(Box::new(ReadOnly { ecam }), DebugVerbosity::None);
        let routed = context.parse_table(bytes).and_then(|()| {
            let pic = AmlName::from_str("\\_PIC")?;
            // A DSDT without `\_PIC` answers `_PRT` in one mode only.
            let _ = context.invoke_method(
                &pic,
                Args::from_list([AmlValue::Integer(PIC_MODE_APIC)].into())?,
            );
            PciRoutingTable::from_prt_path(&AmlName::from_str(ROOT_PRT)?, &mut context)
        });
        match routed {
            Ok(table) => Some(Self { context, table }),
            Err(e) => {
                log::warn!("pci: {ROOT_PRT} not evaluated ({e:?}): INTx not routed");
                None
            }
        }
    }

    /// Where `function`'s INTx arrives, if the root `_PRT` says (functions
    /// on bus 0 of segment 0 only: one behind a bridge would need the
    /// bridge's own `_PRT` or the swizzle, and q35 has none).
    pub fn route(&mut self, function: &PciFunction) -> Option<IntxRoute> {
        let pin = match function.interrupt_pin {
            1 => Pin::IntA,
            2 => Pin::IntB,
            3 => Pin::IntC,
            4 => Pin::IntD,
            _ => return None,
        };
        let Bdf {
            segment: 0,
            bus: 0,
            device,
            function: func,
        } = function.bdf
        else {
            return None;
        };
        let irq = self
            .table
            .route(u16::from(device), u16::from(func), pin, &mut self.context)
            .inspect_err(|e| log::warn!("pci: {}: no _PRT route ({e:?})", function.bdf))
            .ok()?;
        Some(IntxRoute {
            gsi: irq.irq,
            trigger: match irq.trigger {
                InterruptTrigger::Edge => Trigger::Edge,
                InterruptTrigger::Level => Trigger::Level,
            },
            polarity: match irq.polarity {
                InterruptPolarity::ActiveHigh => Polarity::ActiveHigh,
                InterruptPolarity::ActiveLow => Polarity::ActiveLow,
            },
        })
    }
}

/// The DSDT's AML bytes, if they lie in the identity map.
fn table_bytes(address: usize, length: u32) -> Option<&'static [u8]> {
    let len = usize::try_from(length).ok()?;
    let end = address.checked_add(len)?;
    if address == 0 || end as u64 > MAX_PHYS_MEM {
        log::warn!("pci: DSDT at {address:#x} is outside the identity map: INTx not routed");
        return None;
    }
    // SAFETY: the range is inside the identity map and not at 0; the acpi
    // crate checked the DSDT's signature and checksum; firmware tables lie
    // in ACPI or reserved memory that the frame allocator never hands out
    // and nothing writes.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
}

/// What AML may do to the machine: read memory and configuration space.
struct ReadOnly {
    ecam: Ecam,
}

impl ReadOnly {
    fn memory<T: Copy>(&self, address: usize, all_ones: T) -> T {
        let size = core::mem::size_of::<T>();
        let inside = address != 0
            && address.is_multiple_of(size)
            && address
                .checked_add(size)
                .is_some_and(|end| end as u64 <= MAX_PHYS_MEM);
        if !inside {
            return all_ones;
        }
        // SAFETY: a naturally aligned address inside the identity map, not
        // 0; a volatile read of plain bits that AML's SystemMemory operation
        // region names (firmware is trusted, as by any OS evaluating it).
        unsafe { ptr::read_volatile(address as *const T) }
    }

    /// Reads `size` bytes of `segment:bus:device.function`'s
    /// configuration space at `offset`.
    fn config(&self, at: (u16, u8, u8, u8), offset: u16, size: u8) -> [u8; 4] {
        let (segment, bus, device, function) = at;
        let bdf = Bdf {
            segment,
            bus,
            device,
            function,
        };
        self.ecam.read(bdf, offset, size).to_le_bytes()
    }
}

impl Handler for ReadOnly {
    fn read_u8(&self, address: usize) -> u8 {
        self.memory(address, u8::MAX)
    }
    fn read_u16(&self, address: usize) -> u16 {
        self.memory(address, u16::MAX)
    }
    fn read_u32(&self, address: usize) -> u32 {
        self.memory(address, u32::MAX)
    }
    fn read_u64(&self, address: usize) -> u64 {
        self.memory(address, u64::MAX)
    }
    fn write_u8(&mut self, _address: usize, _value: u8) {}
    fn write_u16(&mut self, _address: usize, _value: u16) {}
    fn write_u32(&mut self, _address: usize, _value: u32) {}
    fn write_u64(&mut self, _address: usize, _value: u64) {}
    fn read_io_u8(&self, _port: u16) -> u8 {
        u8::MAX
    }
    fn read_io_u16(&self, _port: u16) -> u16 {
        u16::MAX
    }
    fn read_io_u32(&self, _port: u16) -> u32 {
        u32::MAX
    }
    fn write_io_u8(&self, _port: u16, _value: u8) {}
    fn write_io_u16(&self, _port: u16, _value: u16) {}
    fn write_io_u32(&self, _port: u16, _value: u32) {}
    fn read_pci_u8(&self, segment: u16, bus: u8, device: u8, function: u8, offset: u16) -> u8 {
        self.config((segment, bus, device, function), offset, 1)[0]
    }
    fn read_pci_u16(&self, segment: u16, bus: u8, device: u8, function: u8, offset: u16) -> u16 {
        let [low, high, ..] = self.config((segment, bus, device, function), offset, 2);
        u16::from_le_bytes([low, high])
    }
    fn read_pci_u32(&self, segment: u16, bus: u8, device: u8, function: u8, offset: u16) -> u32 {
        u32::from_le_bytes(self.config((segment, bus, device, function), offset, 4))
    }
    fn write_pci_u8(&self, _s: u16, _b: u8, _d: u8, _f: u8, _offset: u16, _value: u8) {}
    fn write_pci_u16(&self, _s: u16, _b: u8, _d: u8, _f: u8, _offset: u16, _value: u16) {}
    fn write_pci_u32(&self, _s: u16, _b: u8, _d: u8, _f: u8, _offset: u16, _value: u32) {}
}
