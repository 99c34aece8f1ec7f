//! xen-core's log: `log` records as lines in a bounded in-memory ring (the
//! `dmesg`), drained to a console (COM1 on bare metal) a bounded number of
//! bytes at a time, so that no guest waits for the UART.
//!
//! - Info lines carry no prefix, so scenario markers match them exactly;
//!   warnings and errors are prefixed `WARN: ` / `ERROR: `.
//! - Messages a guest causes use the target [`GUEST`] (Xen's
//!   `XENLOG_GUEST`) and are rate-limited as Xen's `printk_ratelimit`
//!   does ([`GUEST_RATELIMIT_MS`], [`GUEST_RATELIMIT_BURST`]); the next
//!   one let through is preceded by `printk: N messages suppressed.`
//! - The run loop drains [`DRAIN_BYTES_PER_SCHEDULE`] bytes as each time
//!   slice starts and [`DRAIN_BYTES_IDLE`] per idle pass, each only
//!   while the console can take a byte without waiting; FATAL and
//!   power-off flush everything, waiting. Lines the ring overwrote before
//!   they were sent are counted and reported in their place as
//!   `log: N lines lost (console too slow)`.

use core::fmt::{self, Write};

use abi::convert::usize_from_u64;
use log::{Level, Log, Metadata, Record};

use crate::ratelimit::RateLimit;

/// The `log` target of messages a guest causes (Xen's `XENLOG_GUEST`):
/// `log::warn!(target: GUEST, ...)`. They are rate-limited.
pub const GUEST: &str = "guest";

/// Bytes of log kept in memory; older bytes are overwritten.
pub const LOG_RING_BYTES: usize = 64 * 1024;
/// Xen's `printk_ratelimit_ms`: one guest-caused message per 5 s ...
pub const GUEST_RATELIMIT_MS: u64 = 5_000;
/// ... after a burst of Xen's `printk_ratelimit_burst` (10) messages.
pub const GUEST_RATELIMIT_BURST: u64 = 10;
/// Most bytes sent to the console as a time slice starts. Small: under
/// QEMU each byte is an I/O exit and a write to the host (some µs), and
/// the time is charged to the slice; a real 16550 takes one byte per
/// THRE anyway.
pub const DRAIN_BYTES_PER_SCHEDULE: usize = 64;
/// Most bytes sent per pass of the idle loop, which then looks at timers
/// again before sending more.
pub const DRAIN_BYTES_IDLE: usize = 4096;

/// A console the log drains to.
pub trait Console {
    /// Sends `byte` if the transmitter takes it now; `false` if it is busy.
    fn try_send(&mut self, byte: u8) -> bool;
    /// Sends `byte`, waiting for the transmitter (FATAL and power-off).
    fn send(&mut self, byte: u8);
}

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
            self.buf[usize_from_u64(self.written % N as u64)] = b;
            self.written += 1;
        }
    }

    /// The kept bytes, oldest first, as two slices (the ring wraps).
    pub fn contents(&self) -> (&[u8], &[u8]) {
        let next = usize_from_u64(self.written % N as u64);
        if self.written < N as u64 {
            (&self.buf[..next], &[])
        } else {
            (&self.buf[next..], &self.buf[..next])
        }
    }

    /// Total bytes ever written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Position of the oldest byte still kept.
    fn oldest(&self) -> u64 {
        self.written.saturating_sub(N as u64)
    }

    /// The byte written at position `at`, if still kept.
    fn byte_at(&self, at: u64) -> Option<u8> {
        (at >= self.oldest() && at < self.written).then(|| self.buf[usize_from_u64(at % N as u64)])
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest "lines lost" note.
const NOTE_BYTES: usize = 64;
/// Ends a line the console had begun when the ring overwrote its rest, so
/// that a cut line never reads as whole; the note that follows counts it
/// among the lines lost.
const CUT_MARK: &str = " [...]";

/// Where the console is in the ring, and what it has sent.
#[derive(Default)]
struct DrainState {
    /// Ring position of the next byte to send.
    sent: u64,
    /// Newlines written to the ring / sent to the console.
    lines_written: u64,
    lines_sent: u64,
    /// Lines lost and not yet reported.
    lost: u64,
    /// A "lines lost" note being sent, before the ring's next byte.
    note: heapless::Vec<u8, NOTE_BYTES>,
    note_sent: usize,
    /// The console is in the middle of a line.
    mid_line: bool,
}

struct State<W, const N: usize> {
    console: W,
    ring: LogRing<N>,
    drain: DrainState,
    guest_limit: RateLimit,
}

/// Appends formatted text to the ring, counting its lines.
impl<W, const N: usize> Write for State<W, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.ring.push(s.as_bytes());
        self.drain.lines_written += s.bytes().filter(|&b| b == b'\n').count() as u64;
        Ok(())
    }
}

impl<W: Console, const N: usize> State<W, N> {
    /// Sends up to `budget` bytes (waiting for the console if `wait`,
    /// else stopping when it is busy); returns how many are still pending.
    fn drain(&mut self, budget: usize, wait: bool) -> u64 {
        self.skip_lost();
        for _ in 0..budget {
            self.start_note();
            let Some(byte) = self.next_byte() else { break };
            if wait {
                self.console.send(byte);
            } else if !self.console.try_send(byte) {
                break;
            }
            self.advance(byte);
        }
        self.pending()
    }

    fn pending(&self) -> u64 {
        let d = &self.drain;
        let note = (d.note.len() - d.note_sent) as u64 + u64::from(d.lost > 0);
        note + (self.ring.written() - d.sent)
    }

    /// Formats the note for lines lost, unless one is being sent.
    fn start_note(&mut self) {
        let d = &mut self.drain;
        if d.lost == 0 || !d.note.is_empty() {
            return;
        }
        let mut note = heapless::String::<NOTE_BYTES>::new();
        let cut = if d.mid_line { CUT_MARK } else { "" };
        let newline = if d.mid_line { "\n" } else { "" };
        let lost = core::mem::take(&mut d.lost);
        let _ = writeln!(
            note,
            "{cut}{newline}log: {lost} lines lost (console too slow)"
        );
        d.note = heapless::Vec::from_slice(note.as_bytes()).unwrap_or_default();
    }

    fn next_byte(&self) -> Option<u8> {
        let d = &self.drain;
        d.note
            .get(d.note_sent)
            .copied()
            .or_else(|| self.ring.byte_at(d.sent))
    }

    fn advance(&mut self, byte: u8) {
        let d = &mut self.drain;
        d.mid_line = byte != b'\n';
        if d.note_sent < d.note.len() {
            d.note_sent += 1;
            if d.note_sent == d.note.len() {
                d.note.clear();
                d.note_sent = 0;
            }
            return;
        }
        d.sent += 1;
        if byte == b'\n' {
            d.lines_sent += 1;
        }
    }

    /// If the ring overwrote bytes not yet sent, resumes at the first
    /// whole line still kept and notes how many lines were lost.
    fn skip_lost(&mut self) {
        let oldest = self.ring.oldest();
        if self.drain.sent >= oldest {
            return;
        }
        let written = self.ring.written();
        let resume = (oldest..written)
            .find(|&at| self.ring.byte_at(at) == Some(b'\n'))
            .map_or(written, |newline| newline + 1);
        let kept_lines = (resume..written)
            .filter(|&at| self.ring.byte_at(at) == Some(b'\n'))
            .count() as u64;
        let d = &mut self.drain;
        let lost = d.lines_written - d.lines_sent - kept_lines;
        d.lines_sent += lost;
        d.lost += lost;
        d.sent = resume;
    }
}

/// A [`Log`] over a console `W`, keeping the last `N` bytes.
pub struct Logger<W, const N: usize = LOG_RING_BYTES> {
    state: spin::Mutex<State<W, N>>,
    /// Milliseconds since boot, for the rate limit.
    now_ms: fn() -> u64,
}

impl<W: Console + Send, const N: usize> Logger<W, N> {
    /// A logger draining to `console`, with `now_ms` as its clock.
    pub const fn new(console: W, now_ms: fn() -> u64) -> Self {
        Self {
            state: spin::Mutex::new(State {
                console,
                ring: LogRing::new(),
                drain: DrainState {
                    sent: 0,
                    lines_written: 0,
                    lines_sent: 0,
                    lost: 0,
                    note: heapless::Vec::new(),
                    note_sent: 0,
                    mid_line: false,
                },
                guest_limit: RateLimit::messages(GUEST_RATELIMIT_MS, GUEST_RATELIMIT_BURST),
            }),
            now_ms,
        }
    }

    /// Runs `f` on the log kept in memory (oldest bytes first, in two parts).
    pub fn with_ring<R>(&self, f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
        let state = self.state.lock();
        let (older, newer) = state.ring.contents();
        f(older, newer)
    }

    /// Runs `f` on the console itself (set-up).
    pub fn with_console<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut self.state.lock().console)
    }

    /// Sends up to `budget` bytes of log the console takes without
    /// waiting; returns how many bytes are still waiting.
    pub fn drain(&self, budget: usize) -> u64 {
        self.state.lock().drain(budget, false)
    }

    /// Bytes waiting for the console (what [`Self::drain`] would send),
    /// without sending any.
    pub fn pending(&self) -> u64 {
        self.state.lock().pending()
    }

    /// Sends everything, waiting for the console; does nothing if the log
    /// is locked (a fault inside the logger must still reach FATAL).
    pub fn flush_unless_locked(&self) {
        if let Some(mut state) = self.state.try_lock() {
            state.drain(usize::MAX, true);
        }
    }
}

impl<W: Console + Send, const N: usize> Log for Logger<W, N> {
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
        let mut state = self.state.lock();
        if record.target() == GUEST {
            match state.guest_limit.take((self.now_ms)(), GUEST_RATELIMIT_MS) {
                None => return,
                Some(0) => {}
                Some(missed) => {
                    let _ = writeln!(state, "printk: {missed} messages suppressed.");
                }
            }
        }
        // Writing to the ring cannot fail.
        let _ = writeln!(state, "{prefix}{}", record.args());
    }

    fn flush(&self) {
        self.flush_unless_locked();
    }
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
mod tests;
