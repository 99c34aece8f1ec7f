//! ACPI static tables read through the identity map with the `acpi`
//! crate: the MADT and the MCFG become the boot-time [`Platform`].
//!
//! Firmware is trusted as in Xen (it could corrupt xen-core at will), but
//! its mistakes end in a boot message, not a fault: a missing RSDP, MADT
//! or MCFG leaves the platform without IO-APICs or without PCI.

use core::mem::size_of;
use core::ptr::NonNull;

use acpi::madt::Madt;
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};

use super::fatal::fatal;
use crate::mm::frame::MAX_PHYS_MEM;
use crate::platform::acpi_tables::{add_madt_entry, add_mcfg_entry, MAX_MADT_ENTRIES};
use crate::platform::Platform;

/// Maps ACPI tables through the identity map `boot.S` built (physical =
/// virtual below [`MAX_PHYS_MEM`]); nothing to map or unmap.
#[derive(Clone, Copy, Debug)]
pub struct IdentityAcpi;

impl AcpiHandler for IdentityAcpi {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let inside = (pa as u64)
            .checked_add(size as u64)
            .is_some_and(|end| end <= MAX_PHYS_MEM);
        let Some(start) = NonNull::new(pa as *mut T).filter(|_| inside) else {
            fatal(format_args!(
                "acpi: firmware table at {pa:#x} (+{size:#x}) is outside the identity map"
            ))
        };
        // SAFETY: [pa, pa + size) is inside the identity map and not at 0;
        // the acpi crate reads firmware tables there (ACPI reclaim or
        // reserved memory, which the frame allocator never hands out).
        unsafe { PhysicalMapping::new(pa, start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The ACPI tables found through `rsdp`, or `None` with a boot message.
pub fn tables(rsdp: Option<u64>) -> Option<AcpiTables<IdentityAcpi>> {
    let Some(rsdp) = rsdp else {
        log::warn!("platform: the start info has no RSDP: no ACPI, no IO-APIC, no PCI");
        return None;
    };
    let Ok(rsdp) = usize::try_from(rsdp) else {
        return None;
    };
    // SAFETY: `rsdp` is the loader's RSDP address; the handler refuses any
    // region outside the identity map, the crate checks signatures and
    // checksums before trusting a table.
    match unsafe { AcpiTables::from_rsdp(IdentityAcpi, rsdp) } {
        Ok(tables) => Some(tables),
        Err(e) => {
            log::warn!("platform: RSDP at {rsdp:#x} rejected ({e:?}): no ACPI, no PCI");
            None
        }
    }
}

/// The platform as the MADT and MCFG describe it; what is missing stays
/// empty (and is said in the log).
pub fn discover(tables: Option<&AcpiTables<IdentityAcpi>>) -> Platform {
    let mut platform = Platform::new();
    if let Some(tables) = tables {
        read_madt(tables, &mut platform);
        read_mcfg(tables, &mut platform);
    }
    platform
}

fn read_madt(tables: &AcpiTables<IdentityAcpi>, platform: &mut Platform) {
    let madt = match tables.find_table::<Madt>() {
        Ok(madt) => madt,
        Err(e) => {
            log::warn!("platform: no MADT ({e:?}): no IO-APIC");
            return;
        }
    };
    let madt = madt.get();
    if (madt.header.length as usize) < size_of::<Madt>() {
        log::warn!("platform: MADT shorter than its header: ignored");
        return;
    }
    platform.set_legacy_pics(madt.supports_8259());
    platform.set_local_apic_address(u64::from(madt.local_apic_address));
    for entry in madt.entries().take(MAX_MADT_ENTRIES) {
        if let Err(e) = add_madt_entry(platform, &entry) {
            log::warn!("platform: MADT entry ignored: {e}");
        }
    }
}

fn read_mcfg(tables: &AcpiTables<IdentityAcpi>, platform: &mut Platform) {
    let mcfg = match tables.find_table::<Mcfg>() {
        Ok(mcfg) => mcfg,
        Err(e) => {
            log::warn!("platform: no MCFG ({e:?}): no PCI");
            return;
        }
    };
    if (mcfg.header().length as usize) < size_of::<Mcfg>() {
        log::warn!("platform: MCFG shorter than its header: no PCI");
        return;
    }
    for entry in mcfg.entries() {
        if let Err(e) = add_mcfg_entry(platform, entry) {
            log::warn!("platform: MCFG entry ignored: {e}");
        }
    }
}
