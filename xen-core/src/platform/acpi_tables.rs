//! MADT and MCFG entries (as the `acpi` crate reads them) turned into
//! [`Platform`] facts. Field meanings: ACPI 6.5 §5.2.12 (MADT) and the PCI
//! Firmware Specification 3.2 §4.1.2 (MCFG).

use acpi::madt::MadtEntry;
use acpi::mcfg::McfgEntry;

use super::{EcamRegion, IoApic, IsaOverride, Platform, PlatformError, Polarity, Trigger};

/// Most MADT entries read: a zero-length entry from broken firmware must
/// not keep the walk going for ever.
pub const MAX_MADT_ENTRIES: usize = 1024;

/// Local APIC flag: the processor is enabled (ACPI 6.5 Table 5.23).
const LAPIC_ENABLED: u32 = 1 << 0;
/// Local APIC flag: the processor can be brought online later.
const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;
/// The bus number ISA's interrupt source overrides carry.
const ISA_BUS: u8 = 0;

/// Decodes MPS INTI flags (ACPI 6.5 Table 5.26): bits 1:0 polarity, 3:2
/// trigger mode; 00 "conforms to the bus" means ISA's active high, edge.
/// The reserved value 10 is read as the bus default too.
pub fn inti_flags(flags: u16) -> (Trigger, Polarity) {
    let polarity = match flags & 0b11 {
        0b11 => Polarity::ActiveLow,
        _ => Polarity::ActiveHigh,
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b11 => Trigger::Level,
        _ => Trigger::Edge,
    };
    (trigger, polarity)
}

/// Records what one MADT entry says; entries xen-core has no use for
/// (NMI sources, x2APIC NMI, SAPIC, GIC) are skipped.
pub fn add_madt_entry(p: &mut Platform, entry: &MadtEntry<'_>) -> Result<(), PlatformError> {
    match entry {
        MadtEntry::LocalApic(e) => {
            let flags = e.flags;
            if flags & (LAPIC_ENABLED | LAPIC_ONLINE_CAPABLE) != 0 {
                p.add_local_apic(u32::from(e.apic_id))?;
            }
        }
        MadtEntry::LocalX2Apic(e) => {
            let flags = e.flags;
            if flags & (LAPIC_ENABLED | LAPIC_ONLINE_CAPABLE) != 0 {
                p.add_local_apic(e.x2apic_id)?;
            }
        }
        MadtEntry::LocalApicAddressOverride(e) => p.set_local_apic_address(e.local_apic_address),
        MadtEntry::IoApic(e) => p.add_io_apic(IoApic {
            id: e.io_apic_id,
            address: u64::from(e.io_apic_address),
            gsi_base: e.global_system_interrupt_base,
        })?,
        MadtEntry::InterruptSourceOverride(e) if e.bus == ISA_BUS => {
            let (trigger, polarity) = inti_flags(e.flags);
            p.add_isa_override(IsaOverride {
                isa_irq: e.irq,
                gsi: e.global_system_interrupt,
                trigger,
                polarity,
            })?;
        }
        _ => {}
    }
    Ok(())
}

/// Records one MCFG entry.
pub fn add_mcfg_entry(p: &mut Platform, e: &McfgEntry) -> Result<(), PlatformError> {
    p.add_ecam(EcamRegion {
        segment: e.pci_segment_group,
        base: e.base_address,
        bus_start: e.bus_number_start,
        bus_end: e.bus_number_end,
    })
}
