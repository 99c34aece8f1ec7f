//! PCI: the functions found at boot over ECAM, who owns each, their INTx
//! GSIs, and dom0's mediated access to their configuration space.
//!
//! Portable: the arch layer supplies [`config::ConfigAccess`] over ECAM
//! and the `_PRT` answers; everything here is host-tested against a fake
//! configuration space.

pub mod bars;
pub mod config;
pub mod enumerate;
pub mod vpci;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use pci_types::device_type::DeviceType;

use bars::BarMapping;
use config::{Bdf, ConfigAccess, INTERRUPT_LINE, NO_INTERRUPT_LINE};
pub use enumerate::{Bar, BarKind, IntxRoute, Owner, PciFunction};

use crate::platform::{Polarity, Trigger};

/// The functions found at boot, in scan order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciDevices {
    functions: Vec<PciFunction>,
    dom0_bars: Vec<BarMapping>,
}

impl PciDevices {
    /// Wraps the enumerated functions.
    pub fn new(functions: Vec<PciFunction>) -> Self {
        Self {
            functions,
            dom0_bars: Vec::new(),
        }
    }

    /// Plans dom0's 1:1 BAR mappings (see [`bars::plan_dom0_bars`]),
    /// keeps them for dom0's build and logs each refused BAR.
    pub fn plan_dom0_bars(&mut self, forbidden: &[(crate::mm::PhysRange, &'static str)]) {
        let (mapped, refused) = bars::plan_dom0_bars(self, forbidden);
        for r in refused {
            log::warn!(
                "pci: {} BAR{} [{:#x}+{:#x}] not mapped into dom0: {}",
                r.bdf,
                r.index,
                r.base,
                r.size,
                r.reason
            );
        }
        self.dom0_bars = mapped;
    }

    /// The BAR ranges dom0 gets 1:1.
    pub fn dom0_bars(&self) -> &[BarMapping] {
        &self.dom0_bars
    }

    /// Every function found.
    pub fn functions(&self) -> &[PciFunction] {
        &self.functions
    }

    /// The function at `bdf`, if one was found there.
    pub fn get(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.iter().find(|f| f.bdf == bdf)
    }

    /// Records where each function's INTx arrives (`route(function)`,
    /// `None` when it has no pin or no route) and writes the GSI into the
    /// function's Interrupt Line register, where dom0 reads it (0xFF for
    /// none, and for a GSI of 255 or more, which 8 bits cannot hold).
    pub fn route_intx(
        &mut self,
        cfg: &impl ConfigAccess,
        mut route: impl FnMut(&PciFunction) -> Option<IntxRoute>,
    ) {
        for function in &mut self.functions {
            function.intx = if function.interrupt_pin == 0 {
                None
            } else {
                route(function)
            };
            let line = function
                .intx
                .and_then(|r| u8::try_from(r.gsi).ok())
                .filter(|&line| line != NO_INTERRUPT_LINE)
                .unwrap_or(NO_INTERRUPT_LINE);
            cfg.write(function.bdf, INTERRUPT_LINE, 1, u32::from(line));
        }
    }

    /// Trigger mode and polarity of `gsi` if some function's INTx is
    /// routed there (for programming the IO-APIC pin).
    pub fn intx_mode(&self, gsi: u32) -> Option<(Trigger, Polarity)> {
        self.functions
            .iter()
            .filter_map(|f| f.intx)
            .find(|r| r.gsi == gsi)
            .map(|r| (r.trigger, r.polarity))
    }

    /// Writes one `pci: ...` boot log line per function.
    pub fn log(&self) {
        for function in &self.functions {
            log::info!("pci: {}", Summary(function));
        }
        log::info!("pci: {} functions", self.functions.len());
    }
}

/// A short name for a function: the virtio device type for virtio
/// (vendor 0x1af4; virtio 1.2 §4.1.2: device ID 0x1040 + type, or the
/// transitional IDs 0x1000..), else pci_types' name of its class.
pub fn function_name(f: &PciFunction) -> FunctionName {
    const VIRTIO_VENDOR: u16 = 0x1af4;
    let virtio = match (f.vendor, f.device) {
        (VIRTIO_VENDOR, 0x1000 | 0x1041) => Some("virtio-net"),
        (VIRTIO_VENDOR, 0x1001 | 0x1042) => Some("virtio-blk"),
        (VIRTIO_VENDOR, 0x1003 | 0x1043) => Some("virtio-console"),
        (VIRTIO_VENDOR, 0x1005 | 0x1044) => Some("virtio-rng"),
        (VIRTIO_VENDOR, 0x1040..=0x107f) => Some("virtio"),
        _ => None,
    };
    match virtio {
        Some(name) => FunctionName::Virtio(name),
        None => FunctionName::Class(DeviceType::from((f.class, f.subclass))),
    }
}

/// What [`function_name`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionName {
    /// A virtio device type.
    Virtio(&'static str),
    /// The class, as pci_types names it.
    Class(DeviceType),
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Virtio(name) => f.write_str(name),
            Self::Class(class) => write!(f, "{class:?}"),
        }
    }
}

/// The boot log line of one function.
struct Summary<'a>(&'a PciFunction);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{} {:04x}:{:04x} class {:02x}.{:02x} ({})",
            d.bdf,
            d.vendor,
            d.device,
            d.class,
            d.subclass,
            function_name(d)
        )?;
        if !d.bars.is_empty() {
            f.write_str(" BARs")?;
            for bar in &d.bars {
                write!(f, " {bar}")?;
            }
        }
        match (d.interrupt_pin, d.intx) {
            (0, _) => f.write_str(" no INTx")?,
            (pin, Some(r)) => write!(
                f,
                " INT{}->GSI {} {:?} {:?}",
                pin_name(pin),
                r.gsi,
                r.trigger,
                r.polarity
            )?,
            (pin, None) => write!(f, " INT{}->none", pin_name(pin))?,
        }
        let owner = match d.owner {
            Owner::Dom0 => "dom0",
            Owner::Hypervisor => "xen",
        };
        write!(f, " owner {owner}")
    }
}

/// `A`..`D` for interrupt pins 1..=4, `?` otherwise.
fn pin_name(pin: u8) -> char {
    match pin {
        1..=4 => char::from(b'A' + pin - 1),
        _ => '?',
    }
}

static DEVICES: spin::Once<PciDevices> = spin::Once::new();

/// Sets the boot-time device list; only the first call has an effect.
pub fn set(devices: PciDevices) -> &'static PciDevices {
    DEVICES.call_once(|| devices)
}

/// The device list, once boot has set it.
pub fn get() -> Option<&'static PciDevices> {
    DEVICES.get()
}
