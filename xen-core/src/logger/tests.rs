use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;

use super::*;

/// A console that takes `room` more bytes, then is busy until given more.
#[derive(Default)]
struct TestConsole {
    out: Vec<u8>,
    room: usize,
}

impl Console for TestConsole {
    fn try_send(&mut self, byte: u8) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        self.out.push(byte);
        true
    }
    fn send(&mut self, byte: u8) {
        self.out.push(byte);
    }
}

fn console(room: usize) -> TestConsole {
    TestConsole {
        out: Vec::new(),
        room,
    }
}

fn no_clock() -> u64 {
    0
}

fn log_at(logger: &impl Log, level: Level, target: &str, msg: &str) {
    log::set_max_level(log::LevelFilter::Debug);
    logger.log(
        &Record::builder()
            .level(level)
            .target(target)
            .args(format_args!("{msg}"))
            .build(),
    );
}

fn output<const N: usize>(logger: &Logger<TestConsole, N>) -> String {
    logger.with_console(|c| String::from_utf8(c.out.clone()).unwrap())
}

#[test]
fn info_is_plain_and_others_are_prefixed() {
    log::set_max_level(log::LevelFilter::Debug);
    let logger: Logger<_> = Logger::new(console(usize::MAX), no_clock);
    log_at(&logger, Level::Info, "x", "xen-core: boot complete");
    log_at(&logger, Level::Warn, "x", "low");
    log_at(&logger, Level::Error, "x", "bad");
    log_at(&logger, Level::Trace, "x", "hidden");
    let expected = "xen-core: boot complete\nWARN: low\nERROR: bad\n";
    assert_eq!(output(&logger), "", "nothing is sent before a drain");
    assert_eq!(logger.drain(usize::MAX), 0);
    assert_eq!(output(&logger), expected);
    logger.with_ring(|old, new| {
        assert_eq!(old, expected.as_bytes());
        assert!(new.is_empty());
    });
}

#[test]
fn drain_sends_at_most_its_budget_and_never_waits() {
    let logger: Logger<_> = Logger::new(console(5), no_clock);
    log_at(&logger, Level::Info, "x", "0123456789");
    assert_eq!(logger.drain(3), 8);
    assert_eq!(output(&logger), "012");
    // The console takes two more, then is busy.
    assert_eq!(logger.drain(100), 6);
    assert_eq!(output(&logger), "01234");
    logger.with_console(|c| c.room = usize::MAX);
    assert_eq!(logger.drain(100), 0);
    assert_eq!(output(&logger), "0123456789\n");
}

#[test]
fn flush_waits_for_the_console_and_sends_everything() {
    let logger: Logger<_> = Logger::new(console(0), no_clock);
    log_at(&logger, Level::Info, "x", "power off");
    logger.flush_unless_locked();
    assert_eq!(output(&logger), "power off\n");
}

/// A line whose text was all sent, but not its newline, when the ring
/// overwrote the rest is marked cut (proptest found it reading as whole
/// while the note counted it lost).
#[test]
fn a_line_cut_before_its_newline_is_marked_cut() {
    let logger: Logger<_, 64> = Logger::new(console(usize::MAX), no_clock);
    log_at(&logger, Level::Info, "x", "first");
    assert_eq!(logger.drain(5), 1);
    for i in 0..10 {
        log_at(&logger, Level::Info, "x", &format!("line {i:02} ......"));
    }
    logger.drain(usize::MAX);
    assert!(
        output(&logger).starts_with("first [...]\nlog: 7 lines lost"),
        "{}",
        output(&logger)
    );
}

#[test]
fn lines_the_ring_overwrote_are_reported_lost() {
    let logger: Logger<_, 64> = Logger::new(console(usize::MAX), no_clock);
    log_at(&logger, Level::Info, "x", "first");
    assert_eq!(logger.drain(2), 4);
    for i in 0..10 {
        log_at(&logger, Level::Info, "x", &format!("line {i:02} ......"));
    }
    logger.drain(usize::MAX);
    // 64 bytes keep the last 4 of the 15-byte lines whole: "first" (cut
    // off after "fi", and marked so) and 6 more lines are lost.
    assert_eq!(
        output(&logger),
        "fi [...]\nlog: 7 lines lost (console too slow)\n\
         line 06 ......\nline 07 ......\nline 08 ......\nline 09 ......\n"
    );
}

static NOW_MS: AtomicU64 = AtomicU64::new(0);

fn test_clock() -> u64 {
    NOW_MS.load(Ordering::Relaxed)
}

#[test]
fn guest_messages_are_rate_limited_as_xen_does() {
    log::set_max_level(log::LevelFilter::Debug);
    let logger: Logger<_> = Logger::new(console(usize::MAX), test_clock);
    NOW_MS.store(1_000, Ordering::Relaxed);
    for i in 0..15 {
        log_at(&logger, Level::Warn, GUEST, &format!("refused {i}"));
    }
    log_at(&logger, Level::Info, "x", "not a guest's");
    NOW_MS.store(1_000 + GUEST_RATELIMIT_MS, Ordering::Relaxed);
    log_at(&logger, Level::Warn, GUEST, "refused 15");
    logger.drain(usize::MAX);
    let out = output(&logger);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[9], "WARN: refused 9");
    assert_eq!(lines[10], "not a guest's");
    assert_eq!(lines[11], "printk: 5 messages suppressed.");
    assert_eq!(lines[12], "WARN: refused 15");
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

proptest! {
    /// Whatever the interleaving of lines and drains, the console shows
    /// whole lines in order, with notes where lines were lost, and every
    /// line is either shown or counted lost.
    #[test]
    fn every_line_is_sent_whole_or_counted_lost(
        ops in proptest::collection::vec((0usize..40, 0usize..80), 1..60)
    ) {
        let logger: Logger<_, 128> = Logger::new(console(usize::MAX), no_clock);
        let mut lines = Vec::new();
        for (i, (len, budget)) in ops.iter().enumerate() {
            let line = format!("{i}:{}", "x".repeat(*len));
            log_at(&logger, Level::Info, "x", &line);
            lines.push(line);
            logger.drain(*budget);
        }
        logger.flush_unless_locked();
        let out = output(&logger);
        let shown: Vec<&str> = out.lines().collect();
        let mut expected = lines.iter().peekable();
        let mut accounted = 0;
        for (i, line) in shown.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("log: ") {
                let lost: usize = rest.split(' ').next().unwrap().parse().unwrap();
                for _ in 0..lost {
                    expected.next();
                }
                accounted += lost;
            } else if let Some(cut) = line.strip_suffix(CUT_MARK) {
                // Cut off by the loss: the start of the first lost line,
                // and the note comes next.
                let first_lost = expected.peek().map(|l| l.as_str()).unwrap_or("");
                prop_assert!(first_lost.starts_with(cut), "{line:?} vs {first_lost:?}");
                prop_assert!(shown.get(i + 1).is_some_and(|next| next.starts_with("log: ")));
            } else {
                prop_assert_eq!(Some(&line.to_string()), expected.next());
                accounted += 1;
            }
        }
        prop_assert_eq!(accounted, lines.len());
    }
}

/// Found by `every_line_is_sent_whole_or_counted_lost`: two overruns
/// before the first note went out must both be counted.
#[test]
fn losses_before_a_note_is_sent_add_up() {
    let logger: Logger<_, 128> = Logger::new(console(usize::MAX), no_clock);
    for (i, len) in [0, 6, 37, 19, 23, 26, 0].into_iter().enumerate() {
        log_at(
            &logger,
            Level::Info,
            "x",
            &format!("{i}:{}", "x".repeat(len)),
        );
        logger.drain(0);
    }
    logger.flush_unless_locked();
    assert!(output(&logger).starts_with("log: 2 lines lost (console too slow)\n2:"));
}
