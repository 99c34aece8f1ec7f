//! The ACPI tables a PVH guest gets from its builder, as Xen's toolstack
//! gives them (libxl's `libxl__dom_load_acpi` over `libacpi`): an RSDP
//! (revision 2) whose address goes in `hvm_start_info.rsdp_paddr`, an
//! XSDT, a hardware-reduced FADT, an empty DSDT, and a MADT with one
//! enabled Local APIC per vCPU (APIC id `2 * vcpu`, as xen-core's CPUID
//! and virtual APIC number them) and no I/O APIC. Linux needs the MADT to
//! use its local APIC, and from that its per-CPU Xen timer.
//!
//! Layouts: ACPI 6.4, §5.2.5.3 (RSDP), §5.2.6 (header), §5.2.8 (XSDT),
//! §5.2.9 (FADT, 276 bytes), §5.2.11.1 (DSDT), §5.2.12 (MADT, Processor
//! Local APIC structure §5.2.12.2). Every table's bytes sum to zero.
//!
//! They sit at [`ACPI_AREA`] (in the BIOS area below 1 MiB, which Linux
//! keeps reserved for a PVH guest, and where a guest that ignores the
//! start info would scan for the RSDP).

use abi::control::MAX_VCPUS_SUPPORTED;

/// Where the tables go (GPA) and how much room they take.
pub const ACPI_AREA: u64 = 0xe_0000;
/// Bytes of [`ACPI_AREA`] in use at most.
pub const ACPI_AREA_SIZE: usize = 0x400;

/// Offsets of the tables in the area.
const RSDP_AT: usize = 0;
const XSDT_AT: usize = 0x40;
const FADT_AT: usize = 0x80;
const DSDT_AT: usize = 0x1c0;
const MADT_AT: usize = 0x200;

/// Sizes (bytes).
const RSDP_LEN: usize = 36;
/// The RSDP's own length field.
const RSDP_LEN_FIELD: u32 = 36;
const HEADER_LEN: usize = 36;
const FADT_LEN: usize = 276;
const MADT_FIXED_LEN: usize = HEADER_LEN + 8;
const LAPIC_ENTRY_LEN: usize = 8;
/// The Local APIC entry's own length field.
const LAPIC_ENTRY_LEN_FIELD: u8 = 8;

/// OEM fields of every table.
const OEM_ID: &[u8; 6] = b"XENCOR";
const OEM_TABLE_ID: &[u8; 8] = b"XENCORE ";
/// Creator id and revision.
const CREATOR_ID: &[u8; 4] = b"XCOR";

/// FADT flag: HW_REDUCED_ACPI (bit 20).
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IAPC_BOOT_ARCH: no VGA (bit 2), no CMOS RTC (bit 5): a domU has neither.
const IAPC_NO_VGA_NO_CMOS_RTC: u16 = (1 << 2) | (1 << 5);
/// The local APIC's MMIO address (the architectural default).
const LAPIC_ADDRESS: u32 = 0xfee0_0000;
/// MADT entry type 0: Processor Local APIC; flag bit 0: enabled.
const MADT_LOCAL_APIC: u8 = 0;
const LAPIC_ENABLED: u32 = 1;

/// The tables for `vcpus` vCPUs (1..=[`MAX_VCPUS_SUPPORTED`], more are
/// cut there), laid out for [`ACPI_AREA`].
pub fn tables(vcpus: u32) -> [u8; ACPI_AREA_SIZE] {
    let vcpus = vcpus.clamp(1, MAX_VCPUS_SUPPORTED);
    let mut area = [0u8; ACPI_AREA_SIZE];
    let gpa = |offset: usize| ACPI_AREA + offset as u64;
    dsdt(&mut area[DSDT_AT..DSDT_AT + HEADER_LEN]);
    fadt(&mut area[FADT_AT..FADT_AT + FADT_LEN], gpa(DSDT_AT));
    let madt_len = MADT_FIXED_LEN + LAPIC_ENTRY_LEN * vcpus as usize;
    madt(&mut area[MADT_AT..MADT_AT + madt_len], vcpus);
    xsdt(
        &mut area[XSDT_AT..XSDT_AT + HEADER_LEN + 16],
        &[gpa(FADT_AT), gpa(MADT_AT)],
    );
    rsdp(&mut area[RSDP_AT..RSDP_AT + RSDP_LEN], gpa(XSDT_AT));
    area
}

fn put(table: &mut [u8], at: usize, bytes: &[u8]) {
    table[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The byte that makes `bytes` sum to zero (with its own slot zero).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The standard header over all of `table` (its length), then the
/// checksum at offset 9.
fn header(table: &mut [u8], signature: &[u8; 4], revision: u8) {
    let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
    put(table, 0, signature);
    put(table, 4, &len.to_le_bytes());
    table[8] = revision;
    put(table, 10, OEM_ID);
    put(table, 16, OEM_TABLE_ID);
    put(table, 24, &1u32.to_le_bytes());
    put(table, 28, CREATOR_ID);
    put(table, 32, &1u32.to_le_bytes());
    table[9] = 0;
    table[9] = checksum(table);
}

fn rsdp(table: &mut [u8], xsdt: u64) {
    put(table, 0, b"RSD PTR ");
    put(table, 9, OEM_ID);
    table[15] = 2; // revision 2: XSDT address and extended checksum
    put(table, 20, &RSDP_LEN_FIELD.to_le_bytes());
    put(table, 24, &xsdt.to_le_bytes());
    table[8] = checksum(&table[..20]);
    table[32] = checksum(table);
}

fn xsdt(table: &mut [u8], entries: &[u64]) {
    for (i, address) in entries.iter().enumerate() {
        put(table, HEADER_LEN + 8 * i, &address.to_le_bytes());
    }
    header(table, b"XSDT", 1);
}

fn fadt(table: &mut [u8], dsdt: u64) {
    let dsdt32 = u32::try_from(dsdt).unwrap_or(0);
    put(table, 40, &dsdt32.to_le_bytes());
    put(table, 109, &IAPC_NO_VGA_NO_CMOS_RTC.to_le_bytes());
    put(table, 112, &FADT_HW_REDUCED_ACPI.to_le_bytes());
    table[131] = 4; // FADT minor version: 6.4
    put(table, 140, &dsdt.to_le_bytes());
    put(table, 268, b"XenVMM\0\0"); // hypervisor vendor identity
    header(table, b"FACP", 6);
}

/// An empty DSDT: the header and no AML (no devices to describe).
fn dsdt(table: &mut [u8]) {
    header(table, b"DSDT", 2);
}

fn madt(table: &mut [u8], vcpus: u32) {
    put(table, HEADER_LEN, &LAPIC_ADDRESS.to_le_bytes());
    // Flags 0: no PC-AT 8259 pair to mask.
    for vcpu in 0..vcpus {
        let at = MADT_FIXED_LEN + LAPIC_ENTRY_LEN * vcpu as usize;
        let uid = u8::try_from(vcpu).unwrap_or(u8::MAX);
        let apic_id = u8::try_from(vcpu * 2).unwrap_or(u8::MAX);
        put(
            table,
            at,
            &[MADT_LOCAL_APIC, LAPIC_ENTRY_LEN_FIELD, uid, apic_id],
        );
        put(table, at + 4, &LAPIC_ENABLED.to_le_bytes());
    }
    header(table, b"APIC", 5);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The table whose header is at GPA `gpa`, checked: its length and
    /// that it sums to zero.
    fn table(area: &[u8], gpa: u64, signature: &[u8; 4]) -> Vec<u8> {
        let at = usize::try_from(gpa - ACPI_AREA).unwrap();
        assert_eq!(&area[at..at + 4], signature);
        let len = u32_at(area, at + 4) as usize;
        let bytes = area[at..at + len].to_vec();
        assert_eq!(checksum(&bytes), 0, "{signature:?} checksum");
        bytes
    }

    #[test]
    fn rsdp_leads_to_fadt_dsdt_and_madt_with_good_checksums() {
        let area = tables(2);
        let rsdp = &area[..RSDP_LEN];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(checksum(&rsdp[..20]), 0);
        assert_eq!(checksum(rsdp), 0);
        assert_eq!(rsdp[15], 2);
        assert_eq!(u32_at(rsdp, 20) as usize, RSDP_LEN);
        let xsdt = table(&area, u64_at(rsdp, 24), b"XSDT");
        assert_eq!(xsdt.len(), HEADER_LEN + 16);
        let fadt = table(&area, u64_at(&xsdt, 36), b"FACP");
        assert_eq!(fadt.len(), FADT_LEN);
        assert_ne!(u32_at(&fadt, 112) & FADT_HW_REDUCED_ACPI, 0);
        assert_eq!(u64::from(u32_at(&fadt, 40)), u64_at(&fadt, 140));
        let dsdt = table(&area, u64_at(&fadt, 140), b"DSDT");
        assert_eq!(dsdt.len(), HEADER_LEN);
        let madt = table(&area, u64_at(&xsdt, 44), b"APIC");
        assert_eq!(u32_at(&madt, 36), LAPIC_ADDRESS);
        assert_eq!(&madt[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&madt[52..60], &[0, 8, 1, 2, 1, 0, 0, 0]);
        assert_eq!(madt.len(), 60);
    }

    #[test]
    fn vcpu_counts_are_bounded_and_fit_the_area() {
        for vcpus in [0, 1, MAX_VCPUS_SUPPORTED, MAX_VCPUS_SUPPORTED + 1, u32::MAX] {
            let area = tables(vcpus);
            let madt = table(&area, ACPI_AREA + MADT_AT as u64, b"APIC");
            let entries = (madt.len() - MADT_FIXED_LEN) / LAPIC_ENTRY_LEN;
            assert_eq!(
                u32::try_from(entries).unwrap(),
                vcpus.clamp(1, MAX_VCPUS_SUPPORTED)
            );
        }
        assert!(MADT_AT + MADT_FIXED_LEN + 8 * MAX_VCPUS_SUPPORTED as usize <= ACPI_AREA_SIZE);
    }
}
