//! Hypercall results: a negative return value is a Xen errno.

use core::fmt;

use abi::xen::errno::Errno;

/// A failed hypercall: its (negative) return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The Xen errno, if the value is one.
    pub fn errno(self) -> Option<Errno> {
        Errno::from_return(self.0)
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno() {
            Some(e) => write!(f, "-{e:?}"),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Splits a hypercall return value into success (>= 0) and error.
pub fn check(ret: i64) -> Result<u64, XenError> {
    u64::try_from(ret).map_err(|_| XenError(ret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_results_and_names_errnos() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(0x4_0013), Ok(0x4_0013));
        let e = check(-14).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EFAULT));
        assert_eq!(e.to_string(), "-EFAULT");
        assert_eq!(XenError(-38).to_string(), "-ENOSYS");
        assert_eq!(XenError(-9999).to_string(), "-9999");
    }
}
