//! xen-core's log: `log` records as lines on a console (COM1 on bare metal)
//! and in a bounded in-memory ring, the later `dmesg`.
//!
//! Info lines carry no prefix, so scenario markers match them exactly;
//! warnings and errors are prefixed `WARN: ` / `ERROR: `.

use core::fmt::{self, Write};

use log::{Level, Log, Metadata, Record};

/// Bytes of log kept in memory; older bytes are overwritten.
pub const LOG_RING_BYTES: usize = 64 * 1024;

/// The last `N` bytes written.
pub struct LogRing<const N: usize> {
    buf: [u8; N],
    /// Total bytes ever written; `written % N` is the next slot.
    written: u64,
}

impl<const N: usize> LogRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            written: 0,
        }
    }

    /// Appends `bytes`, overwriting the oldest when full.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.written % N as u64) as usize] = b;
            self.written += 1;
        }
    }

    /// The kept bytes, oldest first, as two slices (the ring wraps).
    pub fn contents(&self) -> (&[u8], &[u8]) {
        let next = (self.written % N as u64) as usize;
        if self.written < N as u64 {
            (&self.buf[..next], &[])
        } else {
            (&self.buf[next..], &self.buf[..next])
        }
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

struct State<W> {
    console: W,
    ring: LogRing<LOG_RING_BYTES>,
}

/// Writes each byte to the console and the ring.
impl<W: Write> Write for State<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.ring.push(s.as_bytes());
        self.console.write_str(s)
    }
}

/// A [`Log`] over a console writer `W`.
pub struct Logger<W> {
    state: spin::Mutex<State<W>>,
}

impl<W: Write + Send> Logger<W> {
    /// A logger writing to `console`.
    pub const fn new(console: W) -> Self {
        Self {
            state: spin::Mutex::new(State {
                console,
                ring: LogRing::new(),
            }),
        }
    }

    /// Runs `f` on the log kept in memory (oldest bytes first, in two parts).
    pub fn with_ring<R>(&self, f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
        let state = self.state.lock();
        let (older, newer) = state.ring.contents();
        f(older, newer)
    }

    /// Runs `f` on the console itself (set-up, or output that is not a log line).
    pub fn with_console<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut self.state.lock().console)
    }
}

impl<W: Write + Send> Log for Logger<W> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Info => "",
            Level::Warn => "WARN: ",
            Level::Error => "ERROR: ",
            Level::Debug => "DEBUG: ",
            Level::Trace => "TRACE: ",
        };
        // A console error has nowhere to be reported.
        let _ = writeln!(self.state.lock(), "{prefix}{}", record.args());
    }

    fn flush(&self) {}
}

/// Copies the log kept in memory, given as its two parts (`older`, then
/// `newer`), from byte `offset` into `buf`; returns how many bytes.
pub fn copy_log(older: &[u8], newer: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let bytes = older.iter().chain(newer).skip(start);
    let mut copied = 0;
    for (slot, byte) in buf.iter_mut().zip(bytes) {
        *slot = *byte;
        copied += 1;
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_at(logger: &Logger<String>, level: Level, msg: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .args(format_args!("{msg}"))
                .build(),
        );
    }

    #[test]
    fn info_is_plain_and_others_are_prefixed() {
        log::set_max_level(log::LevelFilter::Debug);
        let logger = Logger::new(String::new());
        log_at(&logger, Level::Info, "xen-core: boot complete");
        log_at(&logger, Level::Warn, "low");
        log_at(&logger, Level::Error, "bad");
        log_at(&logger, Level::Trace, "hidden");
        let expected = "xen-core: boot complete\nWARN: low\nERROR: bad\n";
        logger.with_console(|c| assert_eq!(c, expected));
        logger.with_ring(|old, new| {
            assert_eq!(old, expected.as_bytes());
            assert!(new.is_empty());
        });
    }

    #[test]
    fn ring_keeps_the_newest_bytes_in_order() {
        let mut ring = LogRing::<8>::new();
        ring.push(b"abc");
        assert_eq!(ring.contents(), (&b"abc"[..], &b""[..]));
        ring.push(b"defghijk");
        let (old, new) = ring.contents();
        assert_eq!([old, new].concat(), b"defghijk");
        ring.push(b"lm");
        let (old, new) = ring.contents();
        assert_eq!([old, new].concat(), b"fghijklm");
    }

    #[test]
    fn copy_log_reads_across_both_parts_from_an_offset() {
        let mut buf = [0u8; 4];
        assert_eq!(super::copy_log(b"abc", b"def", 2, &mut buf), 4);
        assert_eq!(&buf, b"cdef");
        assert_eq!(super::copy_log(b"abc", b"def", 5, &mut buf), 1);
        assert_eq!(buf[0], b'f');
        assert_eq!(super::copy_log(b"abc", b"def", u64::MAX, &mut buf), 0);
    }
}
