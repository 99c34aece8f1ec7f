//! Calendar time for the shared-info wall clock: the MC146818 CMOS RTC's
//! register formats (BCD or binary, 12- or 24-hour) decoded into a UTC
//! [`DateTime`], and that date converted to UNIX time.
//!
//! Register layout: MC146818A data sheet; index 0x32 holds the century,
//! as on the IBM PC AT and in QEMU (the ACPI FADT `CENTURY` field names
//! it). The RTC is assumed to keep UTC, as QEMU's does by default.

#![forbid(unsafe_code)]

use core::fmt;

/// Status register B bit 2: the time and date registers are binary (else BCD).
pub const STATUS_B_BINARY: u8 = 1 << 2;
/// Status register B bit 1: 24-hour mode (else 12-hour with a PM flag).
pub const STATUS_B_24H: u8 = 1 << 1;
/// In 12-hour mode, bit 7 of the hours register marks PM.
const HOURS_PM: u8 = 1 << 7;

/// Seconds per day.
const SECS_PER_DAY: u64 = 86_400;
/// The first year a UNIX time in seconds (unsigned) can express.
const UNIX_EPOCH_YEAR: u16 = 1970;

/// Why the RTC's registers do not make a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarError {
    /// A register in BCD mode holds a nibble above 9.
    BadBcd,
    /// A field is out of its range (month 13, hour 24, 31 April...).
    OutOfRange,
    /// The date is before 1970-01-01.
    BeforeEpoch,
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CalendarError::BadBcd => "a BCD register holds a digit above 9",
            CalendarError::OutOfRange => "a date or time field is out of range",
            CalendarError::BeforeEpoch => "the date is before 1970",
        })
    }
}

/// The raw CMOS RTC registers, as read from the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcRegisters {
    /// Index 0x00.
    pub seconds: u8,
    /// Index 0x02.
    pub minutes: u8,
    /// Index 0x04 (bit 7 = PM in 12-hour mode).
    pub hours: u8,
    /// Index 0x07, day of the month.
    pub day: u8,
    /// Index 0x08.
    pub month: u8,
    /// Index 0x09, year within the century.
    pub year: u8,
    /// Index 0x32, the century (19, 20...); other values are ignored.
    pub century: u8,
    /// Index 0x0b, status register B (data mode and hour format).
    pub status_b: u8,
}

/// A UTC date and time of day, fields in range ([`DateTime::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl RtcRegisters {
    /// The date the registers hold. Without a valid century register, years
    /// 70..=99 are 19xx and 00..=69 are 20xx.
    pub fn decode(&self) -> Result<DateTime, CalendarError> {
        let binary = self.status_b & STATUS_B_BINARY != 0;
        let field = |raw: u8| if binary { Ok(raw) } else { from_bcd(raw) };
        let hour = decode_hour(field(self.hours & !HOURS_PM)?, self.hours, self.status_b)?;
        let year_in_century = u16::from(field(self.year)?);
        let century = match field(self.century) {
            Ok(c @ 19..=99) => u16::from(c),
            _ if year_in_century >= 70 => 19,
            _ => 20,
        };
        DateTime::new(
            century * 100 + year_in_century,
            field(self.month)?,
            field(self.day)?,
            hour,
            field(self.minutes)?,
            field(self.seconds)?,
        )
    }
}

/// The 0..=23 hour from the decoded hours `value`, the raw register (PM
/// flag) and status register B.
fn decode_hour(value: u8, raw: u8, status_b: u8) -> Result<u8, CalendarError> {
    if status_b & STATUS_B_24H != 0 {
        return Ok(value);
    }
    if !(1..=12).contains(&value) {
        return Err(CalendarError::OutOfRange);
    }
    // 12 AM is midnight, 12 PM is noon.
    let hour = value % 12;
    Ok(if raw & HOURS_PM != 0 { hour + 12 } else { hour })
}

/// A packed two-digit BCD byte's value.
fn from_bcd(raw: u8) -> Result<u8, CalendarError> {
    let (tens, ones) = (raw >> 4, raw & 0x0f);
    if tens > 9 || ones > 9 {
        return Err(CalendarError::BadBcd);
    }
    Ok(tens * 10 + ones)
}

fn is_leap_year(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// A date in the Gregorian calendar, from 1970 on; no leap seconds
    /// (the RTC has none).
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<Self, CalendarError> {
        if year < UNIX_EPOCH_YEAR {
            return Err(CalendarError::BeforeEpoch);
        }
        let month_ok = (1..=12).contains(&month);
        if !month_ok || day == 0 || day > days_in_month(year, month) {
            return Err(CalendarError::OutOfRange);
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(CalendarError::OutOfRange);
        }
        Ok(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Seconds since 1970-01-01 00:00:00 UTC.
    pub fn unix_seconds(&self) -> u64 {
        let seconds_of_day =
            u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second);
        self.days_since_epoch() * SECS_PER_DAY + seconds_of_day
    }

    /// Days from 1970-01-01 to this date: whole years since 1970 from the
    /// leap-day count, then the days of the months before this one.
    fn days_since_epoch(&self) -> u64 {
        let leap_days = |y: u64| y / 4 - y / 100 + y / 400;
        let before = u64::from(self.year - 1);
        let years = u64::from(self.year - UNIX_EPOCH_YEAR);
        let mut days = years * 365 + leap_days(before) - leap_days(1969);
        for month in 1..self.month {
            days += u64::from(days_in_month(self.year, month));
        }
        days + u64::from(self.day - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unix(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> u64 {
        DateTime::new(y, mo, d, h, mi, s).unwrap().unix_seconds()
    }

    #[test]
    fn known_dates() {
        assert_eq!(unix(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix(2024, 2, 29, 0, 0, 0), 1_709_164_800);
        assert_eq!(unix(2038, 1, 19, 3, 14, 7), 2_147_483_647);
        assert_eq!(unix(2100, 3, 1, 0, 0, 0), 4_107_542_400);
        assert_eq!(unix(2106, 2, 7, 6, 28, 16), 1 << 32);
    }

    #[test]
    fn rejects_impossible_dates() {
        assert_eq!(
            DateTime::new(1969, 12, 31, 23, 59, 59),
            Err(CalendarError::BeforeEpoch)
        );
        for (y, mo, d) in [
            (2023, 2, 29),
            (2100, 2, 29),
            (2024, 4, 31),
            (2024, 13, 1),
            (2024, 0, 1),
            (2024, 1, 0),
        ] {
            assert_eq!(
                DateTime::new(y, mo, d, 0, 0, 0),
                Err(CalendarError::OutOfRange),
                "{y}-{mo}-{d}"
            );
        }
        assert!(DateTime::new(2000, 2, 29, 0, 0, 0).is_ok());
        assert_eq!(
            DateTime::new(2024, 1, 1, 24, 0, 0),
            Err(CalendarError::OutOfRange)
        );
        assert_eq!(
            DateTime::new(2024, 1, 1, 0, 60, 0),
            Err(CalendarError::OutOfRange)
        );
        assert_eq!(
            DateTime::new(2024, 1, 1, 0, 0, 60),
            Err(CalendarError::OutOfRange)
        );
    }

    /// 2024-07-15 13:45:30 UTC.
    const SAMPLE: u64 = 1_721_051_130;

    #[test]
    fn decodes_bcd_24_hour() {
        let regs = RtcRegisters {
            seconds: 0x30,
            minutes: 0x45,
            hours: 0x13,
            day: 0x15,
            month: 0x07,
            year: 0x24,
            century: 0x20,
            status_b: STATUS_B_24H,
        };
        assert_eq!(regs.decode().unwrap().unix_seconds(), SAMPLE);
    }

    #[test]
    fn decodes_binary_12_hour() {
        let regs = RtcRegisters {
            seconds: 30,
            minutes: 45,
            hours: HOURS_PM | 1,
            day: 15,
            month: 7,
            year: 24,
            century: 20,
            status_b: STATUS_B_BINARY,
        };
        assert_eq!(regs.decode().unwrap().unix_seconds(), SAMPLE);
        // 12 AM is midnight, 12 PM noon, in BCD too.
        let at = |hours: u8, status_b: u8| {
            RtcRegisters {
                hours,
                status_b,
                ..regs
            }
            .decode()
        };
        assert_eq!(at(12, STATUS_B_BINARY).unwrap().hour, 0);
        assert_eq!(at(HOURS_PM | 12, STATUS_B_BINARY).unwrap().hour, 12);
        let bcd = RtcRegisters {
            seconds: 0x30,
            minutes: 0x45,
            day: 0x15,
            month: 0x07,
            year: 0x24,
            century: 0x20,
            ..regs
        };
        assert_eq!(
            RtcRegisters {
                hours: HOURS_PM | 0x11,
                status_b: 0,
                ..bcd
            }
            .decode()
            .unwrap()
            .hour,
            23
        );
        assert_eq!(at(0, STATUS_B_BINARY), Err(CalendarError::OutOfRange));
        assert_eq!(at(13, STATUS_B_BINARY), Err(CalendarError::OutOfRange));
    }

    #[test]
    fn century_register_or_window() {
        let regs = RtcRegisters {
            day: 1,
            month: 1,
            year: 99,
            century: 0,
            status_b: STATUS_B_BINARY | STATUS_B_24H,
            ..RtcRegisters::default()
        };
        assert_eq!(regs.decode().unwrap().year, 1999);
        assert_eq!(
            RtcRegisters { year: 5, ..regs }.decode().unwrap().year,
            2005
        );
        assert_eq!(
            RtcRegisters {
                year: 5,
                century: 21,
                ..regs
            }
            .decode()
            .unwrap()
            .year,
            2105
        );
        assert_eq!(
            RtcRegisters {
                year: 5,
                century: 0xff,
                ..regs
            }
            .decode()
            .unwrap()
            .year,
            2005
        );
    }

    #[test]
    fn rejects_bad_bcd() {
        let regs = RtcRegisters {
            seconds: 0x5a,
            minutes: 0,
            hours: 0,
            day: 1,
            month: 1,
            year: 0x24,
            century: 0x20,
            status_b: STATUS_B_24H,
        };
        assert_eq!(regs.decode(), Err(CalendarError::BadBcd));
    }

    /// Days since 1970 counted one year and one month at a time.
    fn reference_days(year: u16, month: u8, day: u8) -> u64 {
        let years: u64 = (1970..year)
            .map(|y| if is_leap_year(y) { 366 } else { 365 })
            .sum();
        let months: u64 = (1..month).map(|m| u64::from(days_in_month(year, m))).sum();
        years + months + u64::from(day) - 1
    }

    proptest! {
        #[test]
        fn matches_day_by_day_count(
            year in 1970u16..=9999, month in 1u8..=12, day in 1u8..=31,
            hour in 0u8..24, minute in 0u8..60, second in 0u8..60,
        ) {
            let day = day.min(days_in_month(year, month));
            let t = DateTime::new(year, month, day, hour, minute, second).unwrap();
            let want = reference_days(year, month, day) * SECS_PER_DAY
                + u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second);
            prop_assert_eq!(t.unix_seconds(), want);
        }

        #[test]
        fn never_panics_on_any_registers(regs in any::<[u8; 8]>()) {
            let [seconds, minutes, hours, day, month, year, century, status_b] = regs;
            let regs = RtcRegisters { seconds, minutes, hours, day, month, year, century, status_b };
            if let Ok(date) = regs.decode() {
                prop_assert!(date.unix_seconds() < 254_000_000_000);
            }
        }
    }
}
