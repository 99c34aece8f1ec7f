//! Volume names: what the operator types and what the GPT entry holds.

use core::fmt;

/// The longest name, in characters (a GPT name holds 36 UCS-2 units).
pub const MAX_NAME_LEN: usize = 32;

/// Why a name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong {
        len: usize,
    },
    /// A character outside `A-Z a-z 0-9 . _ -`, or a leading `.` or `-`.
    BadChar {
        c: char,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("a volume name cannot be empty"),
            NameError::TooLong { len } => {
                write!(f, "a volume name has at most {MAX_NAME_LEN} characters, not {len}")
            }
            NameError::BadChar { c } => write!(
                f,
                "{c:?} is not allowed in a volume name (letters, digits, '.', '_', '-'; not first '.' or '-')"
            ),
        }
    }
}

/// Checks a volume name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits,
/// `.`, `_` or `-`, not starting with `.` or `-` (names go into store
/// values and command lines as they are).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let len = name.chars().count();
    if len == 0 {
        return Err(NameError::Empty);
    }
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { len });
    }
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '.' || c == '-'));
        if !ok {
            return Err(NameError::BadChar { c });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("data"), Ok(()));
        assert_eq!(check_name("vm-1.disk_0"), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("-x"), Err(NameError::BadChar { c: '-' }));
        assert_eq!(check_name(".x"), Err(NameError::BadChar { c: '.' }));
        assert_eq!(check_name("a/b"), Err(NameError::BadChar { c: '/' }));
        assert_eq!(check_name("é"), Err(NameError::BadChar { c: 'é' }));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(check_name(&long), Err(NameError::TooLong { len: 33 }));
        assert_eq!(check_name(&long[1..]), Ok(()));
    }
}
