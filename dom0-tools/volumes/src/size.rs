//! Volume sizes as the operator writes them: `64MiB`, `2GiB` (also `M`,
//! `G`, any case).

use alloc::string::String;
use core::fmt;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Why a size is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// No number, or not a whole number.
    NotANumber {
        text: String,
    },
    /// A number without a unit, or a unit other than MiB/GiB.
    BadUnit {
        text: String,
    },
    Zero,
    /// More than 2^64 bytes.
    Overflow,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SizeError::NotANumber { text } => {
                write!(
                    f,
                    "{text:?} is not a size: write a whole number and a unit, e.g. 64MiB or 2GiB"
                )
            }
            SizeError::BadUnit { text } => {
                write!(
                    f,
                    "{text:?}: the unit must be MiB or GiB (M, G), e.g. 64MiB or 2GiB"
                )
            }
            SizeError::Zero => f.write_str("a volume cannot be empty (size 0)"),
            SizeError::Overflow => f.write_str("that size does not fit in 64 bits of bytes"),
        }
    }
}

/// Parses `64MiB`, `64M`, `2GiB`, `2G` (case-insensitive, spaces
/// allowed before the unit) into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits.parse().map_err(|_| SizeError::NotANumber {
        text: String::from(text),
    })?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        _ => {
            return Err(SizeError::BadUnit {
                text: String::from(text),
            })
        }
    };
    match number.checked_mul(scale) {
        Some(0) => Err(SizeError::Zero),
        Some(bytes) => Ok(bytes),
        None => Err(SizeError::Overflow),
    }
}

/// `bytes` in the largest of GiB or MiB that states it exactly, else in
/// MiB with a fraction cut off (`2GiB`, `1536MiB`, `0.5MiB` as `0MiB`
/// does not occur for volumes, which are whole MiB).
pub fn format_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        alloc::format!("{}GiB", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        alloc::format!("{}MiB", bytes / MIB)
    } else {
        alloc::format!("{bytes}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("64m"), Ok(64 * MIB));
        assert_eq!(parse_size(" 2 GiB"), Ok(2 * GIB));
        assert_eq!(parse_size("1G"), Ok(GIB));
        assert_eq!(parse_size("0MiB"), Err(SizeError::Zero));
        assert!(matches!(parse_size("64"), Err(SizeError::BadUnit { .. })));
        assert!(matches!(
            parse_size("64KiB"),
            Err(SizeError::BadUnit { .. })
        ));
        assert!(matches!(
            parse_size("MiB"),
            Err(SizeError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("-1MiB"),
            Err(SizeError::NotANumber { .. })
        ));
        assert_eq!(parse_size("99999999999999999GiB"), Err(SizeError::Overflow));
        assert_eq!(format_size(2 * GIB), "2GiB");
        assert_eq!(format_size(1536 * MIB), "1536MiB");
        assert_eq!(format_size(512), "512B");
        assert!(parse_size("64KiB")
            .unwrap_err()
            .to_string()
            .contains("MiB or GiB"));
    }
}
