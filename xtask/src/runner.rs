//! Running QEMU: interactively (`cargo xtask run`) and as scenarios, with a
//! report of what was expected when a scenario fails.

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::artifacts::Artifacts;
use crate::bundle;
use crate::output::{self, End, ExitName, Expectations, InputScript};
use crate::qemu::{self, Qemu};
use crate::scenario::{self, Scenario};

/// Lines of output shown with a failure.
const TAIL_LINES: usize = 100;
/// How often a running QEMU is polled.
const POLL: Duration = Duration::from_millis(20);

/// Boots the default bundle with COM1 on this terminal; lines typed here
/// go to the console. Ends when QEMU does (or on Ctrl-C).
pub fn run_interactive(root: &Path, artifacts: &Artifacts) -> Result<ExitCode> {
    let config = scenario::load_run_config(root)?;
    let bundle = bundle::write(root, artifacts, &config.bundle, "default")?;
    let command = qemu::command(&artifacts.xen_core()?, Some(&bundle), &config.qemu);
    println!("xtask: booting {} (Ctrl-C stops QEMU)", bundle.display());
    let mut qemu = Qemu::spawn(command, true)?;
    if let Some(mut console) = qemu.stdin() {
        // Detached: it ends with the process, or when QEMU closes its stdin.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if writeln!(console, "{line}")
                    .and_then(|()| console.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let status = loop {
        if let Some(status) = qemu.try_wait()? {
            break status;
        }
        std::thread::sleep(POLL);
    };
    qemu.finish();
    let end = end_of(status);
    println!("\nxtask: QEMU ended: {end}");
    Ok(if end.exit_name() == Some(ExitName::Poweroff) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one scenario and prints its result.
pub fn run_one(root: &Path, artifacts: &Artifacts, scenario: &Scenario, verbose: bool) -> ExitCode {
    let result = run_scenario(root, artifacts, scenario, verbose);
    print_result(scenario, &result);
    if result.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every scenario, prints a summary table; fails if any failed.
pub fn run_all(root: &Path, artifacts: &Artifacts, scenarios: &[Scenario]) -> ExitCode {
    let mut results = Vec::new();
    for scenario in scenarios {
        println!("xtask: scenario {} ...", scenario.name);
        let result = run_scenario(root, artifacts, scenario, false);
        print_result(scenario, &result);
        results.push((scenario, result));
    }
    println!("\n{:<24} {:<6} {:>8}  ending", "scenario", "result", "time");
    for (scenario, result) in &results {
        let verdict = if result.passed() { "PASS" } else { "FAIL" };
        let ending = result
            .end
            .map_or_else(|| "not started".to_string(), |e| e.to_string());
        println!(
            "{:<24} {verdict:<6} {:>7.1}s  {ending}",
            scenario.name,
            result.elapsed.as_secs_f64()
        );
    }
    let failed = results.iter().filter(|(_, r)| !r.passed()).count();
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What one scenario run gave.
struct ScenarioResult {
    /// Why it failed; empty when it passed.
    failures: Vec<String>,
    /// Cleaned output.
    output: String,
    end: Option<End>,
    elapsed: Duration,
}

impl ScenarioResult {
    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn run_scenario(
    root: &Path,
    artifacts: &Artifacts,
    scenario: &Scenario,
    verbose: bool,
) -> ScenarioResult {
    let start = Instant::now();
    match boot_and_judge(root, artifacts, scenario, verbose) {
        Ok((failures, output, end)) => ScenarioResult {
            failures,
            output,
            end: Some(end),
            elapsed: start.elapsed(),
        },
        Err(error) => ScenarioResult {
            failures: vec![format!("could not run: {error:#}")],
            output: String::new(),
            end: None,
            elapsed: start.elapsed(),
        },
    }
}

/// Boots the scenario's QEMU until it exits or times out, then judges it.
fn boot_and_judge(
    root: &Path,
    artifacts: &Artifacts,
    scenario: &Scenario,
    verbose: bool,
) -> Result<(Vec<String>, String, End)> {
    let bundle = scenario
        .bundle
        .as_ref()
        .map(|spec| bundle::write(root, artifacts, spec, &scenario.name))
        .transpose()?;
    let bundle_size = match &bundle {
        Some(path) => std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len(),
        None => 0,
    };
    let expectations = Expectations::compile(scenario, bundle_size)?;
    let mut input = InputScript::compile(scenario, bundle_size)?;
    let command = qemu::command(&artifacts.xen_core()?, bundle.as_deref(), &scenario.qemu);

    let mut qemu = Qemu::spawn(command, verbose)?;
    let deadline = Instant::now() + Duration::from_secs(scenario.timeout_secs);
    let end = loop {
        if let Some(status) = qemu.try_wait()? {
            break end_of(status);
        }
        if Instant::now() >= deadline {
            break End::TimedOut {
                secs: scenario.timeout_secs,
            };
        }
        if let Some(text) = input.due(&output::clean(&qemu.output())) {
            qemu.send(&text)?;
        }
        std::thread::sleep(POLL);
    };
    let output = output::clean(&qemu.finish());
    Ok((expectations.failures(&output, end), output, end))
}

fn end_of(status: ExitStatus) -> End {
    match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited(code),
        (None, Some(signal)) => End::Signaled(signal),
        (None, None) => End::Exited(-1),
    }
}

fn print_result(scenario: &Scenario, result: &ScenarioResult) {
    let mut out = std::io::stdout().lock();
    if result.passed() {
        let _ = writeln!(
            out,
            "PASS {} ({:.1}s)",
            scenario.name,
            result.elapsed.as_secs_f64()
        );
        return;
    }
    let _ = writeln!(out, "FAIL {}: {}", scenario.name, scenario.description);
    for failure in &result.failures {
        let _ = writeln!(out, "  - {failure}");
    }
    if result.output.is_empty() {
        let _ = writeln!(out, "  no output");
        return;
    }
    let _ = writeln!(out, "  last {TAIL_LINES} lines of output:");
    for line in output::tail(&result.output, TAIL_LINES).lines() {
        let _ = writeln!(out, "  | {line}");
    }
}
