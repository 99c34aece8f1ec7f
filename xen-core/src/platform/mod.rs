//! The machine as firmware describes it: processors, interrupt controllers
//! and PCI configuration space, read once at boot from ACPI (MADT, MCFG)
//! and set with [`set`]. Everything after boot reads it through [`get`].
//!
//! Only portable data lives here; the ACPI walk that fills it is in
//! `arch::x86_64::acpi` (it maps physical memory), the decoding of MADT
//! and MCFG entries in [`acpi_tables`].

pub mod acpi_tables;
#[cfg(test)]
mod tests;

use core::fmt;

use heapless::Vec;

/// Most local APICs (processors) recorded.
pub const MAX_LOCAL_APICS: usize = 64;
/// Most IO-APICs recorded (QEMU's q35 has one).
pub const MAX_IO_APICS: usize = 8;
/// Most interrupt source overrides recorded (one per ISA IRQ at most).
pub const MAX_ISA_OVERRIDES: usize = 16;
/// Most ECAM regions (MCFG entries) recorded.
pub const MAX_ECAM_REGIONS: usize = 4;
/// ISA IRQs are 0..16.
pub const ISA_IRQS: u8 = 16;

/// Polarity of an interrupt line (ACPI 6.5 §5.2.12.5, MPS INTI flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Asserted when high (ISA's default).
    ActiveHigh,
    /// Asserted when low (PCI INTx).
    ActiveLow,
}

/// Trigger mode of an interrupt line (ACPI 6.5 §5.2.12.5, MPS INTI flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered (ISA's default).
    Edge,
    /// Level-triggered (PCI INTx).
    Level,
}

/// One IO-APIC (MADT entry type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its IO-APIC id.
    pub id: u8,
    /// Physical address of its register window.
    pub address: u64,
    /// First global system interrupt (GSI) of its input pins.
    pub gsi_base: u32,
}

/// Where an ISA IRQ arrives (MADT entry type 2, or the identity default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaOverride {
    /// The ISA IRQ (0..16).
    pub isa_irq: u8,
    /// The GSI it is wired to.
    pub gsi: u32,
    /// Its trigger mode.
    pub trigger: Trigger,
    /// Its polarity.
    pub polarity: Polarity,
}

/// One PCI Express enhanced configuration (ECAM) window (MCFG entry;
/// PCI Firmware Specification 3.2 §4.1.2): 4 KiB of configuration space
/// per function, 32 devices × 8 functions per bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// PCI segment group number.
    pub segment: u16,
    /// Physical address of bus 0's configuration space (as MCFG gives it,
    /// even when `bus_start` is not 0).
    pub base: u64,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded (inclusive).
    pub bus_end: u8,
}

/// Bytes of configuration space per function in ECAM.
pub const ECAM_FUNCTION_SIZE: u64 = 4096;

impl EcamRegion {
    /// Physical address of the configuration space of `bus:device.function`
    /// (bus in this region, device < 32, function < 8), or `None`.
    pub fn function_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if !(self.bus_start..=self.bus_end).contains(&bus) || device >= 32 || function >= 8 {
            return None;
        }
        let offset =
            (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12);
        self.base.checked_add(offset)
    }

    /// The physical bytes this region decodes, `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        let start = self.base + (u64::from(self.bus_start) << 20);
        let end = self.base + ((u64::from(self.bus_end) + 1) << 20);
        (start, end)
    }
}

/// Why a platform fact was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, displaydoc::Display)]
pub enum PlatformError {
    /// more {0} than xen-core records
    TooMany(&'static str),
    /// ISA IRQ {0} does not exist (ISA has 16)
    BadIsaIrq(u8),
    /// ECAM region for buses {0:#x}..={1:#x} is empty or wraps around
    BadEcam(u8, u8),
}

/// What firmware told xen-core about the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    local_apic_ids: Vec<u32, MAX_LOCAL_APICS>,
    io_apics: Vec<IoApic, MAX_IO_APICS>,
    isa_overrides: Vec<IsaOverride, MAX_ISA_OVERRIDES>,
    ecam: Vec<EcamRegion, MAX_ECAM_REGIONS>,
    legacy_pics: bool,
    local_apic_address: u64,
}

/// The local APIC's architectural default address (AMD APM vol. 2
/// §16.3.1), used until the MADT says otherwise.
pub const DEFAULT_LOCAL_APIC_ADDRESS: u64 = 0xfee0_0000;

impl Default for Platform {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform {
    /// A machine with nothing discovered: no IO-APIC, no PCI.
    pub const fn new() -> Self {
        Self {
            local_apic_ids: Vec::new(),
            io_apics: Vec::new(),
            isa_overrides: Vec::new(),
            ecam: Vec::new(),
            legacy_pics: false,
            local_apic_address: DEFAULT_LOCAL_APIC_ADDRESS,
        }
    }

    /// Records an enabled processor's local APIC id.
    pub fn add_local_apic(&mut self, apic_id: u32) -> Result<(), PlatformError> {
        self.local_apic_ids
            .push(apic_id)
            .map_err(|_| PlatformError::TooMany("local APICs"))
    }

    /// Records an IO-APIC.
    pub fn add_io_apic(&mut self, io_apic: IoApic) -> Result<(), PlatformError> {
        self.io_apics
            .push(io_apic)
            .map_err(|_| PlatformError::TooMany("IO-APICs"))
    }

    /// Records an interrupt source override; a later one for the same ISA
    /// IRQ replaces the earlier one.
    pub fn add_isa_override(&mut self, o: IsaOverride) -> Result<(), PlatformError> {
        if o.isa_irq >= ISA_IRQS {
            return Err(PlatformError::BadIsaIrq(o.isa_irq));
        }
        self.isa_overrides.retain(|e| e.isa_irq != o.isa_irq);
        self.isa_overrides
            .push(o)
            .map_err(|_| PlatformError::TooMany("interrupt source overrides"))
    }

    /// Records an ECAM region.
    pub fn add_ecam(&mut self, region: EcamRegion) -> Result<(), PlatformError> {
        let end = (u64::from(region.bus_end) + 1) << 20;
        if region.bus_start > region.bus_end || region.base.checked_add(end).is_none() {
            return Err(PlatformError::BadEcam(region.bus_start, region.bus_end));
        }
        self.ecam
            .push(region)
            .map_err(|_| PlatformError::TooMany("ECAM regions"))
    }

    /// Records whether the machine also has the two 8259 PICs (MADT flag
    /// PCAT_COMPAT).
    pub fn set_legacy_pics(&mut self, present: bool) {
        self.legacy_pics = present;
    }

    /// Records the local APICs' physical address (MADT header, or its
    /// 64-bit override entry).
    pub fn set_local_apic_address(&mut self, address: u64) {
        self.local_apic_address = address;
    }

    /// Physical address of the local APICs' register page.
    pub fn local_apic_address(&self) -> u64 {
        self.local_apic_address
    }

    /// Local APIC ids of the enabled processors, in MADT order.
    pub fn local_apic_ids(&self) -> &[u32] {
        &self.local_apic_ids
    }

    /// The IO-APICs, in MADT order.
    pub fn io_apics(&self) -> &[IoApic] {
        &self.io_apics
    }

    /// The interrupt source overrides, in MADT order.
    pub fn isa_overrides(&self) -> &[IsaOverride] {
        &self.isa_overrides
    }

    /// The ECAM regions, in MCFG order; empty means no PCI.
    pub fn ecam_regions(&self) -> &[EcamRegion] {
        &self.ecam
    }

    /// Whether the 8259 PICs exist too (they must then be masked).
    pub fn legacy_pics(&self) -> bool {
        self.legacy_pics
    }

    /// Where ISA IRQ `irq` arrives: its override, or else GSI = IRQ,
    /// edge, active high (ACPI 6.5 §5.2.12.5: ISA interrupts without an
    /// override are identity-mapped). `None` if `irq` is not an ISA IRQ.
    pub fn isa_irq(&self, irq: u8) -> Option<IsaOverride> {
        if irq >= ISA_IRQS {
            return None;
        }
        let default = IsaOverride {
            isa_irq: irq,
            gsi: u32::from(irq),
            trigger: Trigger::Edge,
            polarity: Polarity::ActiveHigh,
        };
        Some(
            self.isa_overrides
                .iter()
                .copied()
                .find(|o| o.isa_irq == irq)
                .unwrap_or(default),
        )
    }

    /// The IO-APIC serving `gsi` and the pin number on it, given each
    /// IO-APIC's pin count (`pins(io_apic)`, read from its version register).
    pub fn io_apic_for_gsi(
        &self,
        gsi: u32,
        pins: impl Fn(&IoApic) -> u32,
    ) -> Option<(IoApic, u32)> {
        self.io_apics.iter().find_map(|a| {
            let pin = gsi.checked_sub(a.gsi_base)?;
            (pin < pins(a)).then_some((*a, pin))
        })
    }

    /// The ECAM region decoding `segment:bus`, if any.
    pub fn ecam_for(&self, segment: u16, bus: u8) -> Option<&EcamRegion> {
        self.ecam
            .iter()
            .find(|r| r.segment == segment && (r.bus_start..=r.bus_end).contains(&bus))
    }

    /// Writes the `platform: ...` boot log lines.
    pub fn log(&self) {
        log::info!(
            "platform: {} local APICs (ids {}) at {:#x}, 8259 PICs {}",
            self.local_apic_ids.len(),
            IdList(&self.local_apic_ids),
            self.local_apic_address,
            if self.legacy_pics {
                "present"
            } else {
                "absent"
            }
        );
        for a in &self.io_apics {
            log::info!(
                "platform: IO-APIC id {} at {:#x}, GSI base {}",
                a.id,
                a.address,
                a.gsi_base
            );
        }
        for o in &self.isa_overrides {
            log::info!(
                "platform: ISA IRQ {} -> GSI {} {:?} {:?}",
                o.isa_irq,
                o.gsi,
                o.trigger,
                o.polarity
            );
        }
        for r in &self.ecam {
            log::info!(
                "platform: ECAM segment {} buses {:02x}-{:02x} at {:#x}",
                r.segment,
                r.bus_start,
                r.bus_end,
                r.base
            );
        }
        if self.ecam.is_empty() {
            log::info!("platform: no ECAM region: no PCI devices");
        }
    }
}

/// A list of ids printed as `0,1,2`.
struct IdList<'a>(&'a [u32]);

impl fmt::Display for IdList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// Sets the platform description; only the first call has an effect
/// (boot calls it once, before any domain exists).
pub fn set(platform: Platform) -> &'static Platform {
    PLATFORM.call_once(|| platform)
}

/// The platform description, once boot has set it.
pub fn get() -> Option<&'static Platform> {
    PLATFORM.get()
}
