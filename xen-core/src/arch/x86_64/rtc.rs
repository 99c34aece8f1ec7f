//! The CMOS real-time clock (MC146818A, ports 0x70/0x71): read once at boot
//! for the wall clock domains see in shared info. Decoding is portable
//! ([`crate::calendar`]).

use x86_64::instructions::port::Port;

use crate::calendar::{CalendarError, RtcRegisters};

/// Index port (bit 7 would mask NMIs: left clear) and data port.
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Register indexes (MC146818A data sheet; 0x32 = century, PC AT).
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_CENTURY: u8 = 0x32;
/// Status A bit 7: an update is in progress (registers are changing).
const STATUS_A_UIP: u8 = 1 << 7;
/// UIP stays set for under 2 ms; polls before giving up on it.
const MAX_UIP_POLLS: u32 = 1_000_000;
/// Reads of all registers until two in a row agree (an update may fall
/// between the UIP check and the reads).
const MAX_READS: usize = 4;

/// Why the RTC gave no time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// The update-in-progress flag never cleared.
    Stuck,
    /// Successive reads kept disagreeing.
    Unstable,
    /// The registers hold no valid date.
    Invalid(CalendarError),
}

impl core::fmt::Display for RtcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RtcError::Stuck => f.write_str("the RTC's update-in-progress flag never cleared"),
            RtcError::Unstable => f.write_str("the RTC changed between every two reads"),
            RtcError::Invalid(e) => write!(f, "the RTC holds no valid date: {e}"),
        }
    }
}

/// The RTC's time as UNIX time (seconds since 1970-01-01 00:00 UTC).
pub fn unix_seconds() -> Result<u64, RtcError> {
    let mut previous = read_registers()?;
    for _ in 1..MAX_READS {
        let current = read_registers()?;
        if current == previous {
            return current
                .decode()
                .map(|date| date.unix_seconds())
                .map_err(RtcError::Invalid);
        }
        previous = current;
    }
    Err(RtcError::Unstable)
}

/// One read of the time registers once no update is in progress.
fn read_registers() -> Result<RtcRegisters, RtcError> {
    let mut polls = 0;
    while read(REG_STATUS_A) & STATUS_A_UIP != 0 {
        polls += 1;
        if polls == MAX_UIP_POLLS {
            return Err(RtcError::Stuck);
        }
    }
    Ok(RtcRegisters {
        seconds: read(REG_SECONDS),
        minutes: read(REG_MINUTES),
        hours: read(REG_HOURS),
        day: read(REG_DAY),
        month: read(REG_MONTH),
        year: read(REG_YEAR),
        century: read(REG_CENTURY),
        status_b: read(REG_STATUS_B),
    })
}

fn read(index: u8) -> u8 {
    let mut index_port = Port::<u8>::new(CMOS_INDEX);
    let mut data_port = Port::<u8>::new(CMOS_DATA);
    // SAFETY: 0x70/0x71 are the PC's CMOS index and data ports, which only
    // xen-core drives (with interrupts off: nothing changes the index
    // between the two accesses). Reading a clock register has no side
    // effect, and no memory is touched.
    unsafe {
        index_port.write(index);
        data_port.read()
    }
}
