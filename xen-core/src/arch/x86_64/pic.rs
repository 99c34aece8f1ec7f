//! The legacy 8259A interrupt controller pair, silenced: xen-core takes
//! its interrupts from the local APIC only. The PICs are first moved off
//! the exception vectors (the BIOS leaves IRQ 0..7 on vectors 8..15) so
//! that a stray IRQ can never pose as a CPU exception, then every line is
//! masked. Programming sequence: Intel 8259A data sheet, ICW1..ICW4, OCW1.

use x86_64::instructions::port::Port;

/// Command and data ports of the primary and secondary PIC.
const PRIMARY_COMMAND: u16 = 0x20;
const PRIMARY_DATA: u16 = 0x21;
const SECONDARY_COMMAND: u16 = 0xa0;
const SECONDARY_DATA: u16 = 0xa1;
/// ICW1: initialise, ICW4 follows, cascade mode, edge triggered.
const ICW1_INIT: u8 = 0x11;
/// ICW2: the first vector of the primary's eight IRQs...
const PRIMARY_VECTOR_BASE: u8 = 0x20;
/// ...and of the secondary's.
const SECONDARY_VECTOR_BASE: u8 = 0x28;
/// ICW3: the secondary hangs off the primary's IRQ 2.
const ICW3_PRIMARY_HAS_SECONDARY_ON_IRQ2: u8 = 1 << 2;
const ICW3_SECONDARY_CASCADE_ID: u8 = 2;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;
/// OCW1: every IRQ line masked.
const MASK_ALL: u8 = 0xff;

/// Remaps the PICs to vectors 0x20..0x2f and masks all 16 lines.
pub fn disable() {
    let mut primary_command = Port::<u8>::new(PRIMARY_COMMAND);
    let mut primary_data = Port::<u8>::new(PRIMARY_DATA);
    let mut secondary_command = Port::<u8>::new(SECONDARY_COMMAND);
    let mut secondary_data = Port::<u8>::new(SECONDARY_DATA);
    // SAFETY: these are the PC's 8259A ports, which xen-core alone drives;
    // the writes only change which vectors the PICs would raise and mask
    // every line. No memory is touched.
    unsafe {
        primary_command.write(ICW1_INIT);
        secondary_command.write(ICW1_INIT);
        primary_data.write(PRIMARY_VECTOR_BASE);
        secondary_data.write(SECONDARY_VECTOR_BASE);
        primary_data.write(ICW3_PRIMARY_HAS_SECONDARY_ON_IRQ2);
        secondary_data.write(ICW3_SECONDARY_CASCADE_ID);
        primary_data.write(ICW4_8086);
        secondary_data.write(ICW4_8086);
        primary_data.write(MASK_ALL);
        secondary_data.write(MASK_ALL);
    }
}
