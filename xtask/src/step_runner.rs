//! Runs a scenario's CLI steps against a running QEMU, on a thread of its
//! own: waits for COM1 markers, runs `dom0ctl` (the built host binary,
//! `DOM0CTL_SOCKET` set to the scenario's socket) with a timeout each,
//! in the foreground or the background (to be killed or waited for by a
//! later step), writes raw frames, and judges each step. The first
//! failure ends the steps and tells the main loop to stop QEMU; commands
//! still in the background are killed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

use crate::output;
use crate::raw_frames;
use crate::steps::{Action, Captures, Outcome, Step};

/// How often a marker, a child process or a retried step is looked at.
const POLL: Duration = Duration::from_millis(20);
/// Pause between attempts of a `retry` step.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the steps need from their surroundings.
pub struct StepContext {
    pub root: PathBuf,
    /// The built `dom0ctl`.
    pub dom0ctl: PathBuf,
    pub socket: PathBuf,
    /// The management key file (`DOM0CTL_KEY_FILE`), for TCP steps.
    pub key_file: Option<PathBuf>,
    /// Everything QEMU printed so far (COM1).
    pub com1: Arc<Mutex<Vec<u8>>>,
    /// Set by the main loop when QEMU has ended.
    pub qemu_ended: Arc<AtomicBool>,
    /// Print each step and its output as it runs.
    pub echo: bool,
    /// Values captured by an earlier boot of the scenario (its `then`
    /// boots see them, e.g. a checksum written before a restart).
    pub carried: Captures,
}

/// What the steps did.
#[derive(Default)]
pub struct StepsReport {
    /// Why they failed; empty when all passed.
    pub failures: Vec<String>,
    /// Every step with its output, for the failure report.
    pub transcript: String,
    /// The captured values (with those carried in), for a `then` boot.
    pub values: Captures,
}

/// Runs `steps` on a new thread; `failed` is set at the first failure.
pub fn spawn(
    steps: Vec<Step>,
    ctx: StepContext,
    failed: Arc<AtomicBool>,
) -> JoinHandle<StepsReport> {
    std::thread::spawn(move || {
        let report = run_all(&steps, &ctx);
        if !report.failures.is_empty() {
            failed.store(true, Ordering::SeqCst);
        }
        report
    })
}

/// A command a `background` step started: its step, process and output.
struct Background {
    step: usize,
    running: Running,
    deadline: Instant,
}

fn run_all(steps: &[Step], ctx: &StepContext) -> StepsReport {
    let mut background = BTreeMap::new();
    let mut report = run_steps(steps, ctx, &mut background);
    // Whatever is still running in the background ends with the steps;
    // what it printed goes to the transcript (it may say why a step
    // failed).
    for (name, b) in std::mem::take(&mut background) {
        let outcome = b.running.kill();
        ctx.say(
            &mut report,
            &format!("xtask: background step `{name}` still running at the end:"),
        );
        ctx.say(&mut report, outcome.output.trim_end_matches('\n'));
    }
    report
}

fn run_steps(
    steps: &[Step],
    ctx: &StepContext,
    background: &mut BTreeMap<String, Background>,
) -> StepsReport {
    let mut report = StepsReport::default();
    let mut values = ctx.carried.clone();
    // Named steps' (start, end) times, for `elapsed_since`.
    let mut timed: BTreeMap<String, (Instant, Instant)> = BTreeMap::new();
    let mut marker_from = 0;
    for (index, step) in steps.iter().enumerate() {
        let label = format!("step {}/{} ({})", index + 1, steps.len(), step.action);
        let deadline = Instant::now() + step.timeout;
        if let Some(marker) = &step.after {
            ctx.say(
                &mut report,
                &format!("xtask: waiting for /{}/ on COM1", pattern(marker)),
            );
            match wait_for_marker(ctx, marker, marker_from, deadline) {
                Ok(end) => marker_from = end,
                Err(why) => {
                    report.failures.push(format!("{label}: {why}"));
                    break;
                }
            }
        }
        ctx.say(&mut report, &step.action.to_string());
        let started = Instant::now();
        if step.background {
            match start_background(ctx, step, index, deadline) {
                Ok(b) => {
                    ctx.say(&mut report, "xtask: started in the background");
                    background.insert(step.name.clone().unwrap_or_default(), b);
                    continue;
                }
                Err(e) => {
                    report
                        .failures
                        .push(format!("{label}: could not run: {e:#}"));
                    break;
                }
            }
        }
        let result = match &step.action {
            Action::Wait(name) => {
                wait_background(steps, background.remove(name), name, &mut values)
            }
            Action::Kill(name) => match background.remove(name) {
                Some(b) => {
                    let outcome = b.running.kill();
                    judged(step, outcome, &mut values)
                }
                None => Err(no_background(name)),
            },
            _ => attempts(ctx, step, deadline, &mut values),
        };
        match result {
            Ok(outcome) => {
                ctx.say(&mut report, outcome.output.trim_end_matches('\n'));
                let now = Instant::now();
                if let Some(since) = &step.elapsed_since {
                    match timed.get(since) {
                        Some(&(start, end)) => ctx.observe(
                            &mut report,
                            &format!(
                                "xtask: observed: `{since}` to this step's success: {} ms from its start, {} ms from its end",
                                (now - start).as_millis(),
                                (now - end).as_millis()
                            ),
                        ),
                        None => report
                            .failures
                            .push(format!("{label}: no earlier step named {since:?}")),
                    }
                }
                if let Some(name) = &step.name {
                    timed.insert(name.clone(), (started, now));
                }
            }
            Err((outcome, why)) => {
                ctx.say(&mut report, outcome.output.trim_end_matches('\n'));
                let reasons = why.join("; ");
                report.failures.push(format!(
                    "{label}: {reasons}\n    output:\n{}",
                    indent(&outcome.output, "    | ")
                ));
                break;
            }
        }
        if !report.failures.is_empty() {
            break;
        }
    }
    report.values = values;
    report
}

fn start_background(
    ctx: &StepContext,
    step: &Step,
    index: usize,
    deadline: Instant,
) -> Result<Background> {
    let Action::Run(argv) = &step.action else {
        anyhow::bail!("only `run` steps go to the background");
    };
    Ok(Background {
        step: index,
        running: Running::spawn(ctx, argv)?,
        deadline,
    })
}

/// The end of background step `name`, judged by that step's expectations.
fn wait_background(
    steps: &[Step],
    background: Option<Background>,
    name: &str,
    values: &mut Captures,
) -> Result<Outcome, (Outcome, Vec<String>)> {
    let Some(b) = background else {
        return Err(no_background(name));
    };
    let outcome = b.running.finish(b.deadline);
    judged(&steps[b.step], outcome, values)
}

fn no_background(name: &str) -> (Outcome, Vec<String>) {
    let outcome = Outcome {
        exit: -1,
        output: String::new(),
    };
    (
        outcome,
        vec![format!("no background step named {name:?} is running")],
    )
}

fn judged(
    step: &Step,
    outcome: Outcome,
    values: &mut Captures,
) -> Result<Outcome, (Outcome, Vec<String>)> {
    let failures = step.judge(&outcome, values);
    if failures.is_empty() {
        Ok(outcome)
    } else {
        Err((outcome, failures))
    }
}

/// Runs `step` once, or until its expectations hold with `retry`.
fn attempts(
    ctx: &StepContext,
    step: &Step,
    deadline: Instant,
    values: &mut Captures,
) -> Result<Outcome, (Outcome, Vec<String>)> {
    loop {
        let outcome = match execute(ctx, &step.action, deadline) {
            Ok(outcome) => outcome,
            Err(e) => {
                let outcome = Outcome {
                    exit: -1,
                    output: format!("xtask: {e:#}\n"),
                };
                return Err((outcome, vec!["could not run".into()]));
            }
        };
        let failures = step.judge(&outcome, values);
        if failures.is_empty() {
            return Ok(outcome);
        }
        let qemu_gone = ctx.qemu_ended.load(Ordering::SeqCst);
        if !step.retry || qemu_gone || Instant::now() + RETRY_PAUSE >= deadline {
            let mut failures = failures;
            if step.retry {
                failures.push(format!(
                    "still failing after {} s of retries",
                    step.timeout.as_secs()
                ));
            }
            return Err((outcome, failures));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

fn execute(ctx: &StepContext, action: &Action, deadline: Instant) -> Result<Outcome> {
    let left = deadline.saturating_duration_since(Instant::now());
    match action {
        Action::Run(argv) => Ok(Running::spawn(ctx, argv)?.finish(Instant::now() + left)),
        Action::Raw {
            kind,
            bytes,
            kernel,
        } => {
            let kernel = kernel.as_ref().map(|k| ctx.root.join(k));
            raw_frames::exchange(
                &ctx.socket,
                *kind,
                bytes.as_deref(),
                kernel.as_deref(),
                left,
            )
        }
        Action::Write { path, text } => {
            let path = ctx.root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(Outcome {
                exit: 0,
                output: String::new(),
            })
        }
        Action::Kill(_) | Action::Wait(_) => unreachable!("run_steps handles them"),
    }
}

/// A command started by a step, with its output being collected.
struct Running {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Running {
    /// Starts `argv` in the workspace root (`dom0ctl` is the built CLI).
    fn spawn(ctx: &StepContext, argv: &[String]) -> Result<Self> {
        let (program, args) = argv.split_first().context("empty command")?;
        let program: &Path = if program == "dom0ctl" {
            &ctx.dom0ctl
        } else {
            Path::new(program)
        };
        let mut command = Command::new(program);
        if let Some(key_file) = &ctx.key_file {
            command.env(dom0ctl::KEY_FILE_ENV, key_file);
        }
        let mut child = command
            .args(args)
            .current_dir(&ctx.root)
            .env("DOM0CTL_SOCKET", &ctx.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Running {
            stdout: collect(child.stdout.take()),
            stderr: collect(child.stderr.take()),
            child,
        })
    }

    /// Waits for the command to end, killing it at `deadline`. Output is
    /// stdout, then stderr.
    fn finish(mut self, deadline: Instant) -> Outcome {
        let exit = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(-1),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break -1;
                }
            }
        };
        let mut outcome = self.output(exit);
        if exit == -1 {
            outcome
                .output
                .push_str("xtask: killed: it ran past its timeout\n");
        }
        outcome
    }

    /// Kills the command at once (SIGKILL, as `kill -9`): exit 0 if it
    /// was still running, with what it printed until then.
    fn kill(mut self) -> Outcome {
        let pid = self.child.id();
        let was_running = matches!(self.child.try_wait(), Ok(None));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut outcome = self.output(if was_running { 0 } else { 1 });
        outcome.output.push_str(&if was_running {
            format!("xtask: killed pid {pid} with SIGKILL\n")
        } else {
            format!("xtask: pid {pid} had already ended: nothing to kill\n")
        });
        outcome
    }

    fn output(self, exit: i32) -> Outcome {
        let mut output =
            String::from_utf8_lossy(&self.stdout.join().unwrap_or_default()).into_owned();
        output.push_str(&String::from_utf8_lossy(
            &self.stderr.join().unwrap_or_default(),
        ));
        Outcome { exit, output }
    }
}

fn collect(source: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut source) = source {
            let _ = source.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits until `marker` matches COM1 from byte `from` of the cleaned text;
/// returns the match's end.
fn wait_for_marker(
    ctx: &StepContext,
    marker: &Regex,
    from: usize,
    deadline: Instant,
) -> Result<usize, String> {
    loop {
        let text = output::clean(&ctx.com1.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(m) = marker.find_at(&text, from.min(text.len())) {
            return Ok(m.end());
        }
        if ctx.qemu_ended.load(Ordering::SeqCst) {
            return Err(format!(
                "QEMU ended before /{}/ appeared on COM1",
                pattern(marker)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "/{}/ did not appear on COM1 in time",
                pattern(marker)
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn pattern(re: &Regex) -> &str {
    re.as_str().trim_start_matches("(?m)")
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

impl StepContext {
    /// Adds an observation to the transcript and prints it, echoing or not.
    fn observe(&self, report: &mut StepsReport, text: &str) {
        report.transcript.push_str(text);
        report.transcript.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Adds `text` to the transcript, and prints it when echoing.
    fn say(&self, report: &mut StepsReport, text: &str) {
        if text.is_empty() {
            return;
        }
        report.transcript.push_str(text);
        report.transcript.push('\n');
        if self.echo {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}
