//! Building store paths without allocation: a fixed buffer filled with
//! `format_args!`.

use core::fmt;

use super::XenbusError;

/// Capacity of a [`PathBuf`], bytes (ours; a driver's paths are short).
pub const PATH_BUF_MAX: usize = 256;

/// A path formatted into a fixed buffer.
pub struct PathBuf {
    buf: [u8; PATH_BUF_MAX],
    len: usize,
}

impl PathBuf {
    /// The formatted `args` (`TooLong` beyond [`PATH_BUF_MAX`]), e.g.
    /// `PathBuf::format(format_args!("/local/domain/{domid}/name"))`.
    pub fn format(args: fmt::Arguments<'_>) -> Result<Self, XenbusError> {
        let mut path = Self {
            buf: [0; PATH_BUF_MAX],
            len: 0,
        };
        fmt::write(&mut path, args).map_err(|_| XenbusError::TooLong)?;
        Ok(path)
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for PathBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_refuses_overlong_paths() {
        let p = PathBuf::format(format_args!("/local/domain/{}/name", 7)).unwrap();
        assert_eq!(p.as_str(), "/local/domain/7/name");
        let long = "x".repeat(PATH_BUF_MAX + 1);
        assert!(matches!(
            PathBuf::format(format_args!("{long}")),
            Err(XenbusError::TooLong)
        ));
    }
}
