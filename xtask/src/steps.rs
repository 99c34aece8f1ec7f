//! CLI steps of a scenario (`[[step]]`): what each one does, how its output
//! is judged, and the values later steps compare. Pure logic, tested on the
//! host; `step_runner` executes them against a running QEMU.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;

/// Seconds a step may take when it does not say.
const DEFAULT_STEP_TIMEOUT_SECS: u64 = 60;
/// Most instances one `[[step]]` may expand to with `repeat`.
const MAX_REPEAT: u32 = 256;

/// One `[[step]]` as written. Exactly one of `run`, `raw`, `write`,
/// `kill`, `wait`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// A label for the log and for `elapsed_since`.
    pub name: Option<String>,
    /// A COM1 marker (regex) to wait for before the step, looked for after
    /// the previous step's `after` match.
    pub after: Option<String>,
    /// A command and its arguments; `dom0ctl` is the built CLI, run with
    /// `DOM0CTL_SOCKET` set to the scenario's socket.
    pub run: Option<Vec<String>>,
    /// Write a hostile frame to the socket (after a handshake), then a
    /// valid `List` request: an error reply must come, then the list.
    pub raw: Option<RawKind>,
    /// The bytes of `raw = "garbage"` (default: a line of text).
    pub bytes: Option<String>,
    /// The kernel `raw = "abandoned-upload"` uploads (relative to the
    /// workspace).
    pub kernel: Option<String>,
    /// With `run`: start the command and go on at once; a later `wait`
    /// (or `kill`) step names it. Needs `name`.
    #[serde(default)]
    pub background: bool,
    /// Kill (SIGKILL, as `kill -9`) the background step of this name.
    pub kill: Option<String>,
    /// Wait for the background step of this name to end, then judge it by
    /// its own expectations.
    pub wait: Option<String>,
    /// Write `text` to this file (e.g. a generated domain config).
    pub write: Option<String>,
    pub text: Option<String>,
    /// The exit status `run` must end with.
    #[serde(default)]
    pub expect_exit: i32,
    /// Regexes that must each match the output (stdout and stderr).
    #[serde(default)]
    pub expect: Vec<String>,
    /// Regexes that must not match the output.
    #[serde(default)]
    pub reject: Vec<String>,
    /// Values taken from the output for later `assert`s.
    #[serde(default)]
    pub capture: Vec<CaptureSpec>,
    /// Comparisons of captured values and integers: `a == b`, `!=`, `<`,
    /// `<=`, `>`, `>=`; a side may add or subtract an integer (`a + 20`).
    #[serde(default)]
    pub assert: Vec<String>,
    /// Seconds for the step (its `after` wait, each run, all retries).
    pub timeout_secs: Option<u64>,
    /// Run the step this many times; `{i}` counts 1..=repeat.
    #[serde(default = "one")]
    pub repeat: u32,
    /// With `repeat`: repeat this step and the next `group - 1` together
    /// (e.g. create, then wait for its console), as one block per `{i}`.
    #[serde(default = "one")]
    pub group: u32,
    /// Run again until the expectations hold (or the timeout passes).
    #[serde(default)]
    pub retry: bool,
    /// Print the time from the start and from the end of the step with
    /// this name to this one's success (an observation, never a failure).
    pub elapsed_since: Option<String>,
}

fn one() -> u32 {
    1
}

/// A value taken from a step's output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    pub name: String,
    /// The first group of the first match; with `count`, how many matches.
    pub regex: String,
    #[serde(default)]
    pub count: bool,
}

/// A hostile frame for a `raw` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawKind {
    /// Bytes that are no frame at all.
    Garbage,
    /// A frame whose payload CRC is wrong.
    BadCrc,
    /// A genuine header announcing more than the maximum payload.
    Oversized,
    /// Half a frame, then a pause long enough for the agent to give up.
    Truncated,
    /// A well-framed request with a variant number no request has.
    UnknownRequest,
    /// Half a frame on a new connection, then the connection closes.
    HalfFrame,
    /// Requests that never said `Hello`: each must get `HandshakeRequired`.
    NoHello,
    /// A whole kernel uploaded without `CreateCommit`, the connection
    /// closed; then from a new connection a commit without a session and
    /// one in a new session: neither may build anything.
    AbandonedUpload,
}

impl fmt::Display for RawKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RawKind::Garbage => "garbage",
            RawKind::BadCrc => "bad-crc",
            RawKind::Oversized => "oversized",
            RawKind::Truncated => "truncated",
            RawKind::UnknownRequest => "unknown-request",
            RawKind::HalfFrame => "half-frame",
            RawKind::NoHello => "no-hello",
            RawKind::AbandonedUpload => "abandoned-upload",
        })
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run(Vec<String>),
    Raw {
        kind: RawKind,
        bytes: Option<String>,
        kernel: Option<String>,
    },
    Write {
        path: String,
        text: String,
    },
    /// SIGKILL to a background step.
    Kill(String),
    /// The end of a background step.
    Wait(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Run(argv) => write!(f, "$ {}", shell_words(argv)),
            Action::Raw { kind, .. } => write!(f, "raw frame on the socket: {kind}"),
            Action::Write { path, .. } => write!(f, "write {path}"),
            Action::Kill(name) => write!(f, "kill -9 `{name}`"),
            Action::Wait(name) => write!(f, "wait for `{name}`"),
        }
    }
}

/// `argv` as a shell would show it (quoted where needed).
fn shell_words(argv: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// The placeholder naming [`crate::xen_tools::bin_dir`].
pub const XEN_TOOLS_PLACEHOLDER: &str = "{xen_tools}";
/// The placeholder naming the folder of Debian's Linux guest
/// ([`crate::linux::paths`]: `vmlinux`, `initramfs.cpio`); a scenario
/// whose steps name it is skipped if the packages cannot be fetched.
pub const LINUX_PLACEHOLDER: &str = "{linux}";

/// Text substituted into a step: `{i}` (repeat index), `{root}` (the
/// workspace), `{tmp}` (the scenario's own temporary directory),
/// `{mgmt_port}` (the host port QEMU forwards to dom0's management agent
/// on TCP; `tcp://127.0.0.1:{mgmt_port}` with the scenario's key, which
/// steps get in `DOM0CTL_KEY_FILE`), `{xen_tools}` (the wrappers of Xen's
/// `xenstore-*` tools, [`crate::xen_tools`]; fetched before the steps run),
/// `{disk}` (dom0's disk image, e.g. for `sgdisk -p {disk}`).
/// `{uplink_port}` (the host port QEMU forwards through dom0's uplink to
/// `abi::machine::UPLINK_FORWARD_GUEST`, a guest's HTTP server),
/// `{host_service_port}` (the host port guests reach at
/// `abi::machine::UPLINK_HOST_SERVICE`: a step starts a server there),
/// `{linux}` ([`LINUX_PLACEHOLDER`]).
pub struct Placeholders<'a> {
    pub root: &'a Path,
    pub tmp: &'a Path,
    /// The host port forwarded to dom0's management agent on TCP.
    pub mgmt_port: Option<u16>,
    /// dom0's disk image.
    pub disk: Option<&'a Path>,
    /// The host ports of the uplink: forwarded in, relayed out.
    pub uplink_ports: Option<(u16, u16)>,
}

impl Placeholders<'_> {
    fn expand(&self, text: &str, i: u32) -> String {
        let port = self.mgmt_port.map_or_else(|| "0".into(), |p| p.to_string());
        let (uplink, service) = self.uplink_ports.unwrap_or_default();
        text.replace("{i}", &i.to_string())
            .replace("{uplink_port}", &uplink.to_string())
            .replace("{host_service_port}", &service.to_string())
            .replace("{root}", &self.root.display().to_string())
            .replace("{tmp}", &self.tmp.display().to_string())
            .replace("{mgmt_port}", &port)
            .replace(
                "{disk}",
                &self
                    .disk
                    .map_or_else(String::new, |d| d.display().to_string()),
            )
            .replace(
                XEN_TOOLS_PLACEHOLDER,
                &crate::xen_tools::bin_dir(self.root).display().to_string(),
            )
            .replace(LINUX_PLACEHOLDER, &linux_dir(self.root))
    }
}

/// The folder [`LINUX_PLACEHOLDER`] names.
fn linux_dir(root: &Path) -> String {
    let vmlinux = crate::linux::paths(root).vmlinux;
    vmlinux.parent().unwrap_or(root).display().to_string()
}

impl StepSpec {
    /// Whether the step's command, file or text mentions `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        let texts = [&self.write, &self.text, &self.kernel];
        self.run.iter().flatten().any(|arg| arg.contains(needle))
            || texts
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| t.contains(needle)))
    }
}

/// Why `steps` cannot run here: one names Debian's Linux guest
/// ([`LINUX_PLACEHOLDER`]) and its packages could not be fetched.
pub fn missing_linux(root: &Path, steps: &[StepSpec]) -> Option<String> {
    if !steps.iter().any(|s| s.mentions(LINUX_PLACEHOLDER)) {
        return None;
    }
    crate::linux::ensure(root)
        .err()
        .map(|e| format!("Debian's Linux guest could not be fetched: {e:#}"))
}

/// One step ready to run: placeholders expanded, regexes compiled.
#[derive(Debug)]
pub struct Step {
    pub name: Option<String>,
    pub after: Option<Regex>,
    pub action: Action,
    pub expect_exit: i32,
    pub expect: Vec<Regex>,
    pub reject: Vec<Regex>,
    pub capture: Vec<Capture>,
    pub assert: Vec<Assertion>,
    pub timeout: Duration,
    pub retry: bool,
    pub elapsed_since: Option<String>,
    /// Started and left running (see [`StepSpec::background`]).
    pub background: bool,
}

/// A compiled [`CaptureSpec`].
#[derive(Debug)]
pub struct Capture {
    pub name: String,
    pub regex: Regex,
    pub count: bool,
}

/// Regex with `^`/`$` at line ends, as scenario markers are.
fn multiline(pattern: &str) -> Result<Regex> {
    Regex::new(&format!("(?m){pattern}")).with_context(|| format!("bad regex {pattern:?}"))
}

impl StepSpec {
    fn instance(&self, ph: &Placeholders, i: u32) -> Result<Step> {
        let ex = |s: &String| ph.expand(s, i);
        let action = match (&self.run, self.raw, &self.write, &self.kill, &self.wait) {
            (Some(argv), None, None, None, None) if !argv.is_empty() => {
                Action::Run(argv.iter().map(ex).collect())
            }
            (None, Some(kind), None, None, None) => Action::Raw {
                kind,
                bytes: self.bytes.as_ref().map(ex),
                kernel: self.kernel.as_ref().map(ex),
            },
            (None, None, Some(path), None, None) => Action::Write {
                path: ex(path),
                text: ex(self.text.as_ref().context("`write` needs `text`")?),
            },
            (None, None, None, Some(name), None) => Action::Kill(ex(name)),
            (None, None, None, None, Some(name)) => Action::Wait(ex(name)),
            _ => bail!(
                "a step needs exactly one of `run` (non-empty), `raw`, `write`, `kill`, `wait`"
            ),
        };
        if self.bytes.is_some() && self.raw != Some(RawKind::Garbage) {
            bail!("`bytes` belongs to `raw = \"garbage\"`");
        }
        if self.kernel.is_some() != (self.raw == Some(RawKind::AbandonedUpload)) {
            bail!("`raw = \"abandoned-upload\"` needs `kernel`, and only it takes one");
        }
        if self.background && (self.run.is_none() || self.name.is_none() || self.retry) {
            bail!("`background` needs `run` and `name`, and cannot `retry`");
        }
        if self.text.is_some() && self.write.is_none() {
            bail!("`text` belongs to `write`");
        }
        let regexes = |list: &[String]| {
            list.iter()
                .map(|p| multiline(&ex(p)))
                .collect::<Result<Vec<_>>>()
        };
        let capture = self
            .capture
            .iter()
            .map(|c| {
                let regex = multiline(&ex(&c.regex))?;
                if !c.count && regex.captures_len() < 2 {
                    bail!("capture {:?}: regex {:?} has no group", c.name, c.regex);
                }
                Ok(Capture {
                    name: ex(&c.name),
                    regex,
                    count: c.count,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Step {
            name: self.name.as_ref().map(ex),
            after: self.after.as_ref().map(|p| multiline(&ex(p))).transpose()?,
            action,
            expect_exit: self.expect_exit,
            expect: regexes(&self.expect)?,
            reject: regexes(&self.reject)?,
            capture,
            assert: self
                .assert
                .iter()
                .map(|a| Assertion::parse(&ex(a)))
                .collect::<Result<_>>()?,
            timeout: Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_STEP_TIMEOUT_SECS)),
            retry: self.retry,
            elapsed_since: self.elapsed_since.as_ref().map(ex),
            background: self.background,
        })
    }
}

/// Every step of a scenario, in order, repeated blocks expanded.
pub fn compile_all(specs: &[StepSpec], ph: &Placeholders) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut index = 0;
    while index < specs.len() {
        let first = &specs[index];
        let context = || format!("step {}", index + 1);
        if first.repeat == 0 || first.repeat > MAX_REPEAT {
            bail!(
                "{}: repeat must be 1..={MAX_REPEAT}, not {}",
                context(),
                first.repeat
            );
        }
        let group = usize::try_from(first.group).unwrap_or(usize::MAX);
        let Some(block) = specs
            .get(index..index.saturating_add(group))
            .filter(|_| group > 0)
        else {
            bail!(
                "{}: group {} reaches past the last step",
                context(),
                first.group
            );
        };
        if block[1..].iter().any(|s| s.repeat != 1 || s.group != 1) {
            bail!(
                "{}: steps inside a group cannot repeat or group themselves",
                context()
            );
        }
        for i in 1..=first.repeat {
            for (offset, spec) in block.iter().enumerate() {
                let step = spec
                    .instance(ph, i)
                    .with_context(|| format!("step {}", index + offset + 1))?;
                steps.push(step);
            }
        }
        index += block.len();
    }
    Ok(steps)
}

/// Values captured so far, by name.
pub type Captures = BTreeMap<String, String>;

/// What one run of a step gave.
pub struct Outcome {
    /// Exit status (`run`), or 0 for the other actions when they worked.
    pub exit: i32,
    /// stdout and stderr (or the replies of a `raw` step).
    pub output: String,
}

impl Step {
    /// Why `outcome` does not satisfy this step (empty: it does); captures
    /// are added to `values` when everything else held.
    pub fn judge(&self, outcome: &Outcome, values: &mut Captures) -> Vec<String> {
        let mut failures = Vec::new();
        if outcome.exit != self.expect_exit {
            failures.push(format!(
                "expected exit {}, got {}",
                self.expect_exit, outcome.exit
            ));
        }
        for re in &self.expect {
            if !re.is_match(&outcome.output) {
                failures.push(format!("output does not match /{}/", pattern(re)));
            }
        }
        for re in &self.reject {
            if let Some(m) = re.find(&outcome.output) {
                failures.push(format!(
                    "output matches /{}/: {:?}",
                    pattern(re),
                    m.as_str()
                ));
            }
        }
        let mut captured = values.clone();
        for c in &self.capture {
            match c.take(&outcome.output) {
                Some(value) => {
                    captured.insert(c.name.clone(), value);
                }
                None => failures.push(format!(
                    "capture {:?}: /{}/ not found",
                    c.name,
                    pattern(&c.regex)
                )),
            }
        }
        for a in &self.assert {
            if let Err(e) = a.holds(&captured) {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            *values = captured;
        }
        failures
    }
}

impl Capture {
    fn take(&self, text: &str) -> Option<String> {
        if self.count {
            return Some(self.regex.find_iter(text).count().to_string());
        }
        Some(self.regex.captures(text)?.get(1)?.as_str().to_string())
    }
}

/// A compiled pattern as the scenario wrote it.
fn pattern(re: &Regex) -> &str {
    re.as_str().trim_start_matches("(?m)")
}

/// `left OP right`: each side a captured value's name or an integer,
/// optionally plus or minus an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    left: Operand,
    op: Op,
    right: Operand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Integer(i128),
    Name(String),
    /// `operand + offset` (a negative offset for `-`).
    Offset(Box<Operand>, i128),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(s, _)| s)
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
        }
    }
}

impl Operand {
    fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        // The last `+`/`-` that is not a leading sign splits off an offset.
        if let Some(at) = text.rfind(['+', '-']).filter(|&at| at > 0) {
            let magnitude: i128 = text[at + 1..]
                .trim()
                .parse()
                .with_context(|| format!("offset in {text:?} is not an integer"))?;
            let offset = if text[at..].starts_with('-') {
                -magnitude
            } else {
                magnitude
            };
            return Ok(Operand::Offset(
                Box::new(Operand::parse(&text[..at])?),
                offset,
            ));
        }
        if let Ok(n) = text.parse() {
            return Ok(Operand::Integer(n));
        }
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(Operand::Name(text.to_string()));
        }
        bail!("{text:?} is neither an integer nor a captured value's name")
    }

    fn value(&self, values: &Captures) -> Result<i128, String> {
        match self {
            Operand::Integer(n) => Ok(*n),
            Operand::Name(name) => {
                let text = values
                    .get(name)
                    .ok_or_else(|| format!("nothing captured as {name:?}"))?;
                text.parse()
                    .map_err(|_| format!("captured {name:?} = {text:?} is not an integer"))
            }
            Operand::Offset(base, offset) => Ok(base.value(values)? + offset),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Integer(n) => write!(f, "{n}"),
            Operand::Name(name) => f.write_str(name),
            Operand::Offset(base, offset) if *offset < 0 => write!(f, "{base} - {}", -offset),
            Operand::Offset(base, offset) => write!(f, "{base} + {offset}"),
        }
    }
}

impl Assertion {
    /// Parses `left OP right`.
    pub fn parse(text: &str) -> Result<Self> {
        for (symbol, op) in Op::ALL {
            if let Some((left, right)) = text.split_once(symbol) {
                return Ok(Assertion {
                    left: Operand::parse(left)?,
                    op,
                    right: Operand::parse(right)?,
                });
            }
        }
        bail!("assertion {text:?} has no comparison (==, !=, <, <=, >, >=)")
    }

    /// Whether it holds for `values`; the reason if not.
    pub fn holds(&self, values: &Captures) -> Result<(), String> {
        let left = self.left.value(values)?;
        let right = self.right.value(values)?;
        if self.op.holds(left.cmp(&right)) {
            Ok(())
        } else {
            Err(format!(
                "assertion {self} failed: {} is {left}, {} is {right}",
                self.left, self.right
            ))
        }
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.left, self.op.symbol(), self.right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(toml_text: &str) -> Result<Vec<Step>> {
        #[derive(Deserialize)]
        struct File {
            step: Vec<StepSpec>,
        }
        let file: File = toml::from_str(toml_text)?;
        let ph = Placeholders {
            root: Path::new("/repo"),
            tmp: Path::new("/tmp/s"),
            mgmt_port: Some(7001),
            disk: None,
            uplink_ports: Some((7002, 7003)),
        };
        compile_all(&file.step, &ph)
    }

    fn outcome(exit: i32, output: &str) -> Outcome {
        Outcome {
            exit,
            output: output.to_string(),
        }
    }

    const INFO: &str = "{\n  \"nr_domains\": 1,\n  \"free_memory_kib\": 180224\n}\n";

    #[test]
    fn assertions_parse_and_compare() {
        let values: Captures = [
            ("free".to_string(), "100".to_string()),
            ("before".to_string(), "100".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            Assertion::parse("free == before").unwrap().holds(&values),
            Ok(())
        );
        assert_eq!(
            Assertion::parse("free<=100").unwrap().holds(&values),
            Ok(())
        );
        assert_eq!(
            Assertion::parse("free >= 101").unwrap().to_string(),
            "free >= 101"
        );
        assert_eq!(
            Assertion::parse("free > before").unwrap().holds(&values),
            Err("assertion free > before failed: free is 100, before is 100".into())
        );
        assert_eq!(
            Assertion::parse("free != 7").unwrap().holds(&values),
            Ok(())
        );
        assert!(Assertion::parse("free < -1")
            .unwrap()
            .holds(&values)
            .is_err());
        assert!(Assertion::parse("missing == 1")
            .unwrap()
            .holds(&values)
            .unwrap_err()
            .contains("nothing captured"));
        assert!(Assertion::parse("free = 1").is_err());
        assert!(Assertion::parse("free == ").is_err());
        assert!(Assertion::parse("a b == 1").is_err());
        assert_eq!(
            Assertion::parse("free == before + 0")
                .unwrap()
                .holds(&values),
            Ok(())
        );
        assert_eq!(
            Assertion::parse("free - 20 == 80").unwrap().holds(&values),
            Ok(())
        );
        assert_eq!(
            Assertion::parse("free == before + 20")
                .unwrap()
                .holds(&values),
            Err("assertion free == before + 20 failed: free is 100, before + 20 is 120".into())
        );
        assert!(Assertion::parse("free == before + x").is_err());
        assert!(
            Assertion::parse("-20 + free == 80").is_err(),
            "the offset comes last"
        );
    }

    #[test]
    fn a_non_integer_capture_fails_the_assertion() {
        let values: Captures = [("state".to_string(), "paused".to_string())]
            .into_iter()
            .collect();
        assert!(Assertion::parse("state == 1")
            .unwrap()
            .holds(&values)
            .unwrap_err()
            .contains("not an integer"));
    }

    #[test]
    fn captures_feed_later_assertions() {
        let s = steps(
            r#"
            [[step]]
            run = ["dom0ctl", "info", "--json"]
            capture = [{ name = "free_before", regex = '"free_memory_kib": (\d+)' }]
            [[step]]
            run = ["dom0ctl", "info", "--json"]
            capture = [{ name = "free_after", regex = '"free_memory_kib": (\d+)' },
                       { name = "domains", regex = '"nr_domains": (\d+)' }]
            assert = ["free_after == free_before", "domains == 1"]
            "#,
        )
        .unwrap();
        let mut values = Captures::new();
        assert!(s[0].judge(&outcome(0, INFO), &mut values).is_empty());
        assert_eq!(values["free_before"], "180224");
        assert!(s[1].judge(&outcome(0, INFO), &mut values).is_empty());
        let less = INFO.replace("180224", "163840");
        let failures = s[1].judge(&outcome(0, &less), &mut values);
        assert_eq!(
            failures,
            ["assertion free_after == free_before failed: free_after is 163840, free_before is 180224"]
        );
    }

    #[test]
    fn a_failed_step_captures_nothing() {
        let s = steps(
            r#"
            [[step]]
            run = ["dom0ctl", "info", "--json"]
            expect_exit = 0
            capture = [{ name = "free", regex = '"free_memory_kib": (\d+)' }]
            "#,
        )
        .unwrap();
        let mut values = Captures::new();
        assert_eq!(
            s[0].judge(&outcome(4, INFO), &mut values),
            ["expected exit 0, got 4"]
        );
        assert!(values.is_empty());
    }

    #[test]
    fn expect_reject_and_count() {
        let s = steps(
            r#"
            [[step]]
            run = ["dom0ctl", "list", "--json"]
            expect = ['"name": "g1"']
            reject = ['"name": "hello"']
            capture = [{ name = "listed", regex = '"domid"', count = true }]
            assert = ["listed == 2"]
            "#,
        )
        .unwrap();
        let list = "[{\"domid\": 0, \"name\": \"dom0\"}, {\"domid\": 1, \"name\": \"g1\"}]";
        let mut values = Captures::new();
        let pretty = list.replace("\"name\":", "\n\"name\":");
        assert_eq!(
            s[0].judge(&outcome(0, &pretty), &mut values),
            Vec::<String>::new()
        );
        assert_eq!(values["listed"], "2");
        let with_hello = pretty.replace("g1", "hello");
        let failures = s[0].judge(&outcome(0, &with_hello), &mut values);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with("output does not match"));
        assert!(failures[1].starts_with("output matches"));
    }

    #[test]
    fn repeat_expands_the_index_and_paths() {
        let s = steps(
            r#"
            [[step]]
            repeat = 3
            name = "create-{i}"
            write = "{tmp}/g{i}.toml"
            text = "name = \"g{i}\"\nkernel = \"{root}/k\"\n"
            [[step]]
            run = ["dom0ctl", "console", "g2", "--no-follow"]
            retry = true
            timeout_secs = 5
            elapsed_since = "create-2"
            "#,
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[2].name.as_deref(), Some("create-3"));
        assert_eq!(
            s[1].action,
            Action::Write {
                path: "/tmp/s/g2.toml".into(),
                text: "name = \"g2\"\nkernel = \"/repo/k\"\n".into()
            }
        );
        assert!(s[3].retry);
        assert_eq!(s[3].timeout, Duration::from_secs(5));
        assert_eq!(s[3].action.to_string(), "$ dom0ctl console g2 --no-follow");
    }

    #[test]
    fn a_group_repeats_as_a_block() {
        let s = steps(
            r#"
            [[step]]
            repeat = 2
            group = 2
            name = "create-{i}"
            run = ["dom0ctl", "create", "g{i}.toml"]
            [[step]]
            run = ["dom0ctl", "console", "g{i}"]
            elapsed_since = "create-{i}"
            [[step]]
            run = ["dom0ctl", "list"]
            "#,
        )
        .unwrap();
        let shown: Vec<String> = s.iter().map(|s| s.action.to_string()).collect();
        assert_eq!(
            shown,
            [
                "$ dom0ctl create g1.toml",
                "$ dom0ctl console g1",
                "$ dom0ctl create g2.toml",
                "$ dom0ctl console g2",
                "$ dom0ctl list"
            ]
        );
        assert_eq!(s[3].elapsed_since.as_deref(), Some("create-2"));
    }

    #[test]
    fn malformed_steps_are_errors() {
        let bad = [
            "[[step]]\nexpect = ['x']\n",
            "[[step]]\nrun = []\n",
            "[[step]]\nrun = ['a']\nraw = 'garbage'\n",
            "[[step]]\nraw = 'bad-crc'\nbytes = 'x'\n",
            "[[step]]\nwrite = 'f'\n",
            "[[step]]\nrun = ['a']\nrepeat = 0\n",
            "[[step]]\nrun = ['a']\nrepeat = 2\ngroup = 2\n",
            "[[step]]\nrun = ['a']\ngroup = 2\n[[step]]\nrun = ['b']\nrepeat = 2\n",
            "[[step]]\nrun = ['a']\ncapture = [{ name = 'x', regex = 'no group' }]\n",
            "[[step]]\nrun = ['a']\nexpect = ['(']\n",
            "[[step]]\nrun = ['a']\nassert = ['x']\n",
            "[[step]]\nrun = ['a']\nraw = 'nonsense'\n",
            "[[step]]\nrun = ['a']\nexpct = []\n",
            "[[step]]\nrun = ['a']\nbackground = true\n",
            "[[step]]\nraw = 'abandoned-upload'\n",
            "[[step]]\nraw = 'no-hello'\nkernel = 'k'\n",
            "[[step]]\nkill = 'a'\nwait = 'a'\n",
        ];
        for text in bad {
            assert!(steps(text).is_err(), "{text}");
        }
    }

    #[test]
    fn background_kill_and_wait_steps() {
        let s = steps(
            r#"
            [[step]]
            name = "big"
            background = true
            run = ["dom0ctl", "create", "big.toml"]
            expect_exit = 0
            [[step]]
            kill = "big"
            [[step]]
            wait = "big"
            [[step]]
            raw = "abandoned-upload"
            kernel = "{root}/k"
            "#,
        )
        .unwrap();
        assert!(s[0].background);
        assert_eq!(s[1].action, Action::Kill("big".into()));
        assert_eq!(s[1].action.to_string(), "kill -9 `big`");
        assert_eq!(s[2].action, Action::Wait("big".into()));
        assert!(matches!(&s[3].action, Action::Raw { kernel: Some(k), .. } if k == "/repo/k"));
    }

    #[test]
    fn commands_are_shown_quoted() {
        let argv: Vec<String> = ["dom0ctl", "create", "a b.toml", "it's"]
            .map(String::from)
            .into();
        assert_eq!(shell_words(&argv), r"dom0ctl create 'a b.toml' 'it'\''s'");
    }
}
