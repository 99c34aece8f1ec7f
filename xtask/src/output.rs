//! Judging a QEMU run: cleaning COM1's output, finding the markers in order,
//! numeric checks, console input timing and the debug-exit status.

use std::fmt;
use std::sync::LazyLock;

use abi::debug_exit;
use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;

use crate::scenario::{NumericCheck, Scenario};

/// A debug-exit code by name, as scenarios write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitName {
    Poweroff,
    Reboot,
    Dom0Crash,
    Fatal,
}

impl ExitName {
    const ALL: [ExitName; 4] = [
        ExitName::Poweroff,
        ExitName::Reboot,
        ExitName::Dom0Crash,
        ExitName::Fatal,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitName::Poweroff => debug_exit::EXIT_POWEROFF,
            ExitName::Reboot => debug_exit::EXIT_REBOOT,
            ExitName::Dom0Crash => debug_exit::EXIT_DOM0_CRASH,
            ExitName::Fatal => debug_exit::EXIT_FATAL,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

impl fmt::Display for ExitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExitName::Poweroff => "poweroff",
            ExitName::Reboot => "reboot",
            ExitName::Dom0Crash => "dom0-crash",
            ExitName::Fatal => "fatal",
        })
    }
}

/// How a QEMU run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QEMU exited with this status.
    Exited(i32),
    /// QEMU was ended by this signal (not by us).
    Signaled(i32),
    /// The timeout passed; we killed QEMU.
    TimedOut { secs: u64 },
    /// A CLI step failed; we killed QEMU.
    StepFailed,
}

impl End {
    /// The debug-exit code name, if QEMU ended through a known one.
    pub fn exit_name(self) -> Option<ExitName> {
        match self {
            End::Exited(status) if status > 1 && status & 1 == 1 => {
                u8::try_from(status >> 1).ok().and_then(ExitName::from_code)
            }
            _ => None,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            End::Exited(status) => match self.exit_name() {
                Some(name) => write!(
                    f,
                    "{name} (debug-exit {:#04x}, QEMU status {status})",
                    name.code()
                ),
                None if status == 0 => f.write_str("QEMU status 0: ended without isa-debug-exit"),
                None if status == 1 => {
                    f.write_str("QEMU status 1: debug-exit code 0 or a QEMU error")
                }
                None if status & 1 == 1 => write!(
                    f,
                    "unknown debug-exit code {:#04x} (QEMU status {status})",
                    status >> 1
                ),
                None => write!(f, "QEMU status {status}: ended without isa-debug-exit"),
            },
            End::Signaled(signal) => write!(f, "QEMU killed by signal {signal}"),
            End::TimedOut { secs } => write!(f, "timed out after {secs} s (QEMU killed)"),
            End::StepFailed => f.write_str("a CLI step failed (QEMU killed)"),
        }
    }
}

/// COM1 output as text to match: ANSI escape sequences, carriage returns and
/// other control characters (SeaBIOS writes some) removed.
pub fn clean(raw: &[u8]) -> String {
    static ESCAPE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[0-~])").expect("valid regex")
    });
    let text = String::from_utf8_lossy(raw);
    ESCAPE
        .replace_all(&text, "")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> &str {
    let start = text
        .trim_end_matches('\n')
        .rmatch_indices('\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    &text[start..]
}

/// Replaces `{bundle_size}` in a scenario pattern with the literal value.
fn expand(pattern: &str, bundle_size: u64) -> String {
    pattern.replace("{bundle_size}", &regex::escape(&bundle_size.to_string()))
}

fn compile(pattern: &str, bundle_size: u64) -> Result<Regex> {
    let expanded = expand(pattern, bundle_size);
    Regex::new(&format!("(?m){expanded}")).with_context(|| format!("bad regex {pattern:?}"))
}

/// A scenario's expectations with the patterns compiled.
pub struct Expectations {
    markers: Vec<Regex>,
    checks: Vec<(String, Regex, Option<u64>, Option<u64>)>,
    exit: ExitName,
}

impl Expectations {
    /// Compiles the scenario's patterns, substituting `{bundle_size}`.
    pub fn compile(scenario: &Scenario, bundle_size: u64) -> Result<Self> {
        let markers = scenario
            .markers
            .iter()
            .map(|m| compile(m, bundle_size))
            .collect::<Result<_>>()?;
        let checks = scenario
            .check
            .iter()
            .map(|c| compile_check(c, bundle_size))
            .collect::<Result<_>>()?;
        Ok(Expectations {
            markers,
            checks,
            exit: scenario.expect_exit,
        })
    }

    /// Everything that did not hold, each as one line for the report.
    pub fn failures(&self, text: &str, end: End) -> Vec<String> {
        let mut failures = Vec::new();
        if let Err(index) = find_in_order(&self.markers, text) {
            let after = match index {
                0 => String::new(),
                _ => format!(
                    " after marker {index} /{}/",
                    pattern(&self.markers[index - 1])
                ),
            };
            failures.push(format!(
                "marker {} /{}/ not found{after}",
                index + 1,
                pattern(&self.markers[index])
            ));
        }
        for (what, re, min, max) in &self.checks {
            if let Err(e) = check_number(text, re, *min, *max) {
                failures.push(format!("check {what:?}: {e}"));
            }
        }
        if end.exit_name() != Some(self.exit) {
            failures.push(format!("expected exit {}, got {end}", self.exit));
        }
        failures
    }
}

fn compile_check(
    check: &NumericCheck,
    bundle_size: u64,
) -> Result<(String, Regex, Option<u64>, Option<u64>)> {
    let re = compile(&check.regex, bundle_size)?;
    if re.captures_len() < 2 {
        bail!(
            "check {:?}: regex {:?} has no capture group",
            check.what,
            check.regex
        );
    }
    Ok((check.what.clone(), re, check.min, check.max))
}

/// A compiled pattern as the scenario wrote it, placeholders expanded.
fn pattern(re: &Regex) -> &str {
    re.as_str().trim_start_matches("(?m)")
}

/// `Err(i)`: marker `i` does not match after the previous marker's match.
fn find_in_order(markers: &[Regex], text: &str) -> Result<(), usize> {
    let mut from = 0;
    for (index, re) in markers.iter().enumerate() {
        match re.find_at(text, from) {
            Some(m) => from = m.end(),
            None => return Err(index),
        }
    }
    Ok(())
}

/// The first match's first group as a number (decimal or 0x-hex), within bounds.
fn check_number(text: &str, re: &Regex, min: Option<u64>, max: Option<u64>) -> Result<u64, String> {
    let captured = re
        .captures(text)
        .and_then(|c| c.get(1))
        .ok_or_else(|| format!("/{}/ not found", pattern(re)))?
        .as_str();
    let value = match captured.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => captured.parse(),
    }
    .map_err(|_| format!("captured {captured:?} is not a number"))?;
    if let Some(min) = min.filter(|&min| value < min) {
        return Err(format!("{value} is below the minimum {min}"));
    }
    if let Some(max) = max.filter(|&max| value > max) {
        return Err(format!("{value} is above the maximum {max}"));
    }
    Ok(value)
}

/// Console input to send, each step once its marker has appeared after the
/// previous step's marker.
pub struct InputScript {
    steps: Vec<(Regex, String)>,
    next: usize,
    from: usize,
}

impl InputScript {
    pub fn compile(scenario: &Scenario, bundle_size: u64) -> Result<Self> {
        let steps = scenario
            .input
            .iter()
            .map(|i| Ok((compile(&i.after, bundle_size)?, i.send.clone())))
            .collect::<Result<_>>()?;
        Ok(InputScript {
            steps,
            next: 0,
            from: 0,
        })
    }

    /// The text due now, given all output so far (cleaned).
    pub fn due(&mut self, text: &str) -> Option<String> {
        let (re, send) = self.steps.get(self.next)?;
        let m = re.find_at(text, self.from.min(text.len()))?;
        self.from = m.end();
        self.next += 1;
        Some(send.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(toml_text: &str) -> Scenario {
        toml::from_str(toml_text).unwrap()
    }

    const BOOT: &str = r#"
        description = "t"
        timeout_secs = 5
        expect_exit = "poweroff"
        markers = ['^xen-core \d+\.\d+\.\d+', 'boot module 0: {bundle_size} bytes at 0x[0-9a-f]+', 'boot complete']
        [[check]]
        what = "memory"
        regex = 'memory: (\d+) KiB usable'
        min = 250000
        max = 262144
    "#;

    const GOOD: &str = "\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16)\r\nxen-core 0.1.0: Xen guest ABI 4.19\r\nmemory: 261500 KiB usable in 2 RAM regions\r\nboot module 0: 8192 bytes at 0x0fe00000\r\nxen-core: boot complete\r\n";

    fn poweroff() -> End {
        End::Exited(debug_exit::qemu_status(debug_exit::EXIT_POWEROFF))
    }

    #[test]
    fn clean_strips_escapes_and_carriage_returns() {
        assert_eq!(
            clean(b"\x1bc\x1b[?7l\x1b[2J\x1b[0;1mHi\x1b[0m\r\nthere\x07\n"),
            "Hi\nthere\n"
        );
    }

    #[test]
    fn a_good_run_passes() {
        let e = Expectations::compile(&scenario(BOOT), 8192).unwrap();
        assert_eq!(
            e.failures(&clean(GOOD.as_bytes()), poweroff()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn markers_must_come_in_order() {
        let e = Expectations::compile(&scenario(BOOT), 8192).unwrap();
        let swapped = GOOD
            .replace("xen-core: boot complete", "")
            .replace("xen-core 0.1.0", "xen-core: boot complete\nxen-core 0.1.0");
        let failures = e.failures(&clean(swapped.as_bytes()), poweroff());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("marker 3 /boot complete/ not found after marker 2"),
            "{}",
            failures[0]
        );
    }

    #[test]
    fn bundle_size_placeholder_is_literal() {
        let e = Expectations::compile(&scenario(BOOT), 4096).unwrap();
        let failures = e.failures(&clean(GOOD.as_bytes()), poweroff());
        assert!(failures[0].contains("marker 2"), "{failures:?}");
    }

    #[test]
    fn numeric_checks_enforce_bounds() {
        let e = Expectations::compile(&scenario(BOOT), 8192).unwrap();
        let low = GOOD.replace("261500", "131000");
        assert_eq!(
            e.failures(&clean(low.as_bytes()), poweroff()),
            ["check \"memory\": 131000 is below the minimum 250000"]
        );
        let missing = GOOD.replace("memory: 261500 KiB usable", "memory: lots");
        assert!(e.failures(&clean(missing.as_bytes()), poweroff())[0].contains("not found"));
        let re = Regex::new(r"at (0x[0-9a-f]+)").unwrap();
        assert_eq!(check_number("at 0x10", &re, Some(16), Some(16)), Ok(16));
    }

    #[test]
    fn the_exit_status_is_decoded_and_checked() {
        let e = Expectations::compile(&scenario(BOOT), 8192).unwrap();
        let text = clean(GOOD.as_bytes());
        let fatal = End::Exited(debug_exit::qemu_status(debug_exit::EXIT_FATAL));
        assert_eq!(fatal.exit_name(), Some(ExitName::Fatal));
        assert_eq!(
            e.failures(&text, fatal),
            ["expected exit poweroff, got fatal (debug-exit 0x20, QEMU status 65)"]
        );
        assert_eq!(End::Exited(1).exit_name(), None);
        assert_eq!(End::Exited(0).exit_name(), None);
        let timeout = e.failures(&text, End::TimedOut { secs: 5 });
        assert_eq!(
            timeout,
            ["expected exit poweroff, got timed out after 5 s (QEMU killed)"]
        );
    }

    #[test]
    fn a_check_needs_a_capture_group() {
        let s = scenario(&BOOT.replace(r"(\d+) KiB", r"\d+ KiB"));
        assert!(Expectations::compile(&s, 0).is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn input_is_sent_once_per_step_in_order() {
        let mut s = scenario(BOOT);
        s.input = toml::from_str::<Scenario>(
            "description = \"\"\ntimeout_secs = 1\nexpect_exit = \"fatal\"\n[[input]]\nafter = 'login:'\nsend = \"root\\n\"\n[[input]]\nafter = 'login:'\nsend = \"again\\n\"\n",
        )
        .unwrap()
        .input;
        let mut script = InputScript::compile(&s, 0).unwrap();
        assert_eq!(script.due("booting"), None);
        assert_eq!(script.due("login:").as_deref(), Some("root\n"));
        assert_eq!(script.due("login:"), None);
        assert_eq!(
            script.due("login: root\nlogin:").as_deref(),
            Some("again\n")
        );
        assert_eq!(script.due("login: root\nlogin: again\nlogin:"), None);
    }
}
