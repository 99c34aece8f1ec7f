//! Formatting for `print!`/`println!`: output is collected per call in a
//! line buffer and handed to the console sink a whole line at a time, so
//! lines of different domains interleave only at line boundaries.

use core::fmt;

/// Bytes collected before a partial line is flushed.
pub const LINE_BUFFER_SIZE: usize = 256;

/// A line buffer that flushes to `sink` at each newline and when full.
pub struct LineWriter<F: FnMut(&[u8])> {
    buf: [u8; LINE_BUFFER_SIZE],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> LineWriter<F> {
    /// An empty buffer writing to `sink`.
    pub fn new(sink: F) -> Self {
        Self {
            buf: [0; LINE_BUFFER_SIZE],
            len: 0,
            sink,
        }
    }

    /// Hands any buffered bytes to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> fmt::Write for LineWriter<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' || self.len == LINE_BUFFER_SIZE {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Formats `args` and writes the result to `sink` line by line.
pub fn write_fmt_to(sink: impl FnMut(&[u8]), args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new(sink);
    // A formatting error leaves what was formatted so far; print! has no
    // caller to report it to.
    let _ = fmt::Write::write_fmt(&mut w, args);
    w.flush();
}

/// The text of a NUL-padded byte array (as Xen returns strings), up to the
/// first NUL; bytes that are not UTF-8 end the text.
pub fn nul_padded_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    match core::str::from_utf8(&bytes[..end]) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(args: fmt::Arguments<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        write_fmt_to(|b: &[u8]| out.push(b.to_vec()), args);
        out
    }

    #[test]
    fn one_sink_write_per_line() {
        assert_eq!(
            writes(format_args!("a {}\nb\n", 1)),
            vec![b"a 1\n".to_vec(), b"b\n".to_vec()]
        );
        assert_eq!(
            writes(format_args!("no newline")),
            vec![b"no newline".to_vec()]
        );
        assert!(writes(format_args!("")).is_empty());
    }

    #[test]
    fn long_lines_flush_when_full() {
        let long = "x".repeat(LINE_BUFFER_SIZE + 10);
        let out = writes(format_args!("{long}\n"));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_BUFFER_SIZE);
        assert_eq!(out[1], b"xxxxxxxxxx\n".to_vec());
    }

    #[test]
    fn nul_padded_strings() {
        assert_eq!(nul_padded_str(b".0-xen-core\0\0\0\0\0"), ".0-xen-core");
        assert_eq!(nul_padded_str(b"full"), "full");
        assert_eq!(nul_padded_str(b"ok\xffbad\0"), "ok");
        assert_eq!(nul_padded_str(b"\0x"), "");
    }
}
