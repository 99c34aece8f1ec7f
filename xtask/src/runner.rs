//! Running QEMU: interactively (`cargo xtask up`), as the demo (`cargo
//! xtask run`) and as scenarios, with a report of what was expected when a
//! scenario fails.

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

use crate::artifacts::Artifacts;
use crate::bundle;
use crate::machine::MachineDevices;
use crate::mgmt_key::{MgmtKey, KEY_FILE_NAME};
use crate::mgmt_socket::{self, AGENT_READY};
use crate::output::{self, End, ExitName, Expectations, InputScript};
use crate::progress;
use crate::qemu::{self, Qemu};
use crate::scenario::{self, Scenario};
use crate::step_runner::{self, StepContext, StepsReport};
use crate::steps::{self, Captures, Placeholders};
use crate::xen_tools;

/// Lines of output shown with a failure.
const TAIL_LINES: usize = 100;
/// How often a running QEMU is polled.
const POLL: Duration = Duration::from_millis(20);

/// What a scenario run shows while it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Only the result.
    Result,
    /// COM1 as it comes, and each CLI step with its output.
    Everything,
    /// Each CLI step with its output (the demo).
    Steps,
}

/// Boots `ci/run.toml`'s bundle with COM1 on this terminal (lines typed
/// here go to the console) and COM2 on the management socket `socket`;
/// says how to connect once dom0's agent is ready. Ends when QEMU does (or
/// on Ctrl-C).
pub fn up(
    root: &Path,
    artifacts: &Artifacts,
    socket: &Path,
    key_file: &Path,
    smp: Option<u32>,
) -> Result<ExitCode> {
    let mut config = scenario::load_run_config(root)?;
    if let Some(smp) = smp {
        config.qemu.smp = smp;
    }
    let claimed = mgmt_socket::claim(socket)?;
    let key = MgmtKey::create(key_file)?;
    let bundle = bundle::write(root, artifacts, &config.bundle, "default", Some(&key))?;
    let devices = MachineDevices::persistent(root)?;
    let command = qemu::command(
        &artifacts.xen_core()?,
        Some(&bundle),
        &config.qemu,
        Some(socket),
        Some(&devices),
    );
    println!(
        "xtask: booting {} with the management socket {} (Ctrl-C stops QEMU)",
        bundle.display(),
        socket.display()
    );
    println!(
        "xtask: dom0's disk: {}; management NIC: 127.0.0.1:{} forwarded to dom0's port {}",
        devices.disk().display(),
        devices.mgmt_host_port(),
        abi::machine::MGMT_TCP_PORT
    );
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
    let ready = Regex::new(&format!("(?m){AGENT_READY}")).context("agent marker")?;
    let mut announced = false;
    let status = loop {
        if let Some(status) = qemu.try_wait()? {
            break status;
        }
        if !announced && ready.is_match(&output::clean(&qemu.output())) {
            announced = true;
            print_how_to_connect(artifacts, socket, &devices, &key);
        }
        std::thread::sleep(POLL);
    };
    qemu.finish();
    drop(claimed);
    if qemu::interrupted() {
        println!("\nxtask: QEMU stopped (interrupted)");
        return Ok(ExitCode::SUCCESS);
    }
    let end = end_of(status);
    println!("\nxtask: QEMU ended: {end}");
    Ok(if end.exit_name() == Some(ExitName::Poweroff) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_how_to_connect(
    artifacts: &Artifacts,
    socket: &Path,
    devices: &MachineDevices,
    key: &MgmtKey,
) {
    let binary = artifacts.dom0ctl().map_or_else(
        |_| "target/debug/dom0ctl".into(),
        |p| p.display().to_string(),
    );
    let env = if socket == Path::new(dom0ctl::DEFAULT_SOCKET) {
        String::new()
    } else {
        format!("DOM0CTL_SOCKET={} ", socket.display())
    };
    let key_option = if key.path() == Path::new(dom0ctl::DEFAULT_KEY_FILE) {
        String::new()
    } else {
        format!(" --key-file {}", key.path().display())
    };
    println!(
        "\nxtask: the management agent is ready. In another terminal:\n\
         \x20   {env}cargo run -q -p dom0ctl -- list\n\
         \x20 or {env}{binary} list\n\
         \x20 or over TCP (authenticated with the key in {key_path}):\n\
         \x20   {binary} --connect tcp://127.0.0.1:{port}{key_option} list\n\
         \x20 (`dom0ctl shutdown 0` powers the machine off; Ctrl-C here stops QEMU)\n",
        key_path = key.path().display(),
        port = devices.mgmt_host_port(),
    );
    print_uplink(devices);
}

/// How the host reaches guests through dom0's uplink, and they it.
fn print_uplink(devices: &MachineDevices) {
    let ([a, b, c, d], guest_port) = abi::machine::UPLINK_FORWARD_GUEST;
    let ([e, f, g, h], service_port) = abi::machine::UPLINK_HOST_SERVICE;
    println!(
        "xtask: guests' uplink (QEMU user networking, loopback only; guests on the uplink's \
         VLAN 1, addresses 10.0.2.16 and up):\n\
         \x20 host 127.0.0.1:{up} -> guest {a}.{b}.{c}.{d}:{guest_port}, e.g. for the nethttp \
         example: curl http://127.0.0.1:{up}/\n\
         \x20 guest {e}.{f}.{g}.{h}:{service_port} -> host 127.0.0.1:{service}, e.g. \
         python3 -m http.server --bind 127.0.0.1 {service}\n",
        up = devices.uplink_host_port(),
        service = devices.host_service_port(),
    );
}

/// Runs one scenario and prints its result.
pub fn run_one(root: &Path, artifacts: &Artifacts, scenario: &Scenario, show: Show) -> ExitCode {
    let result = run_scenario(root, artifacts, scenario, show);
    print_result(scenario, &result);
    if show == Show::Steps {
        if let Some(end) = result.end {
            println!("xtask: QEMU ended: {end}");
        }
    }
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
        let result = run_scenario(root, artifacts, scenario, Show::Result);
        print_result(scenario, &result);
        results.push((scenario, result));
    }
    println!("\n{:<24} {:<6} {:>8}  ending", "scenario", "result", "time");
    for (scenario, result) in &results {
        let verdict = match (&result.skipped, result.passed()) {
            (Some(_), _) => "SKIP",
            (None, true) => "PASS",
            (None, false) => "FAIL",
        };
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
    let skipped = results.iter().filter(|(_, r)| r.skipped.is_some()).count();
    println!(
        "{} passed, {failed} failed, {skipped} skipped",
        results.len() - failed - skipped
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one benchmark (a scenario-format file) and returns its cleaned
/// output, or why it failed (its expectations are checked as a scenario's).
pub fn run_bench(root: &Path, artifacts: &Artifacts, bench: &Scenario) -> Result<String> {
    let result = run_scenario(root, artifacts, bench, Show::Result);
    if let Some(reason) = &result.skipped {
        println!("xtask: bench {} skipped: {reason}", bench.name);
        return Ok(String::new());
    }
    if result.passed() {
        return Ok(result.output);
    }
    print_result(bench, &result);
    anyhow::bail!("benchmark {} failed", bench.name)
}

/// Runs a scenario for its output, judged or not: the cleaned output and
/// how QEMU ended (a run that could not start is an error).
pub fn run_for_output(
    root: &Path,
    artifacts: &Artifacts,
    scenario: &Scenario,
) -> Result<(String, End)> {
    let judged = boot_and_judge(root, artifacts, scenario, Show::Result)?;
    Ok((judged.output, judged.end))
}

/// What one scenario run gave.
struct ScenarioResult {
    /// Why it failed; empty when it passed.
    failures: Vec<String>,
    /// Why it was not run (a kernel outside the repository is absent).
    skipped: Option<String>,
    /// Cleaned output.
    output: String,
    /// The CLI steps and their output.
    transcript: String,
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
    show: Show,
) -> ScenarioResult {
    let start = Instant::now();
    let missing = scenario
        .bundle
        .as_ref()
        .and_then(|b| {
            artifacts
                .missing_xtf(b)
                .or_else(|| crate::linux::missing(root, b))
        })
        .or_else(|| crate::steps::missing_linux(root, &scenario.step));
    if let Some(reason) = missing {
        return ScenarioResult {
            failures: Vec::new(),
            skipped: Some(reason),
            output: String::new(),
            transcript: String::new(),
            end: None,
            elapsed: start.elapsed(),
        };
    }
    match boot_and_judge(root, artifacts, scenario, show) {
        Ok(judged) => ScenarioResult {
            failures: judged.failures,
            skipped: None,
            output: judged.output,
            transcript: judged.transcript,
            end: Some(judged.end),
            elapsed: start.elapsed(),
        },
        Err(error) => ScenarioResult {
            failures: vec![format!("could not run: {error:#}")],
            skipped: None,
            output: String::new(),
            transcript: String::new(),
            end: None,
            elapsed: start.elapsed(),
        },
    }
}

/// A finished run, judged.
struct Judged {
    failures: Vec<String>,
    output: String,
    transcript: String,
    end: End,
    /// What its steps captured, carried into the next boot.
    values: Captures,
}

/// Boots the scenario (and, once it passed, each `then` boot on the same
/// disk image) and judges every boot.
fn boot_and_judge(
    root: &Path,
    artifacts: &Artifacts,
    scenario: &Scenario,
    show: Show,
) -> Result<Judged> {
    // dom0 (the bundle's first image) gets its disk and NICs; every boot
    // of the scenario gets the same disk image.
    let devices = scenario
        .bundle
        .as_ref()
        .map(|_| MachineDevices::per_run(root, &scenario.name))
        .transpose()?;
    let mut judged = boot_once(
        root,
        artifacts,
        scenario,
        show,
        devices.as_ref(),
        Captures::new(),
    )?;
    let mut next = scenario.then.as_deref();
    while let Some(then) = next {
        if !judged.failures.is_empty() {
            break;
        }
        if show != Show::Result {
            println!("xtask: {}: QEMU again, on the same disk image", then.name);
        }
        let devices = devices.as_ref().map(MachineDevices::again).transpose()?;
        let carried = std::mem::take(&mut judged.values);
        let boot = boot_once(root, artifacts, then, show, devices.as_ref(), carried)?;
        judged.failures = boot
            .failures
            .into_iter()
            .map(|f| format!("{}: {f}", then.name))
            .collect();
        judged.output = format!("{}\n--- {} ---\n{}", judged.output, then.name, boot.output);
        judged.transcript.push_str(&boot.transcript);
        judged.end = boot.end;
        judged.values = boot.values;
        next = then.then.as_deref();
    }
    Ok(judged)
}

/// Boots one QEMU until it exits, times out or a CLI step fails, then
/// judges it; its steps start with the values `carried` from the boot
/// before.
fn boot_once(
    root: &Path,
    artifacts: &Artifacts,
    scenario: &Scenario,
    show: Show,
    devices: Option<&MachineDevices>,
    carried: Captures,
) -> Result<Judged> {
    // The scenario's directory (socket, key, generated files), removed at
    // the end.
    let dir = mgmt_socket::scenario_dir(&scenario.name)?;
    let socket = (!scenario.step.is_empty()).then(|| dir.path().join("mgmt.sock"));
    // A scenario that talks to dom0 gets a management key for TCP.
    let key = socket
        .as_ref()
        .map(|_| MgmtKey::create(&dir.path().join(KEY_FILE_NAME)))
        .transpose()?;
    let bundle = scenario
        .bundle
        .as_ref()
        .map(|spec| bundle::write_in(dir.path(), artifacts, spec, &scenario.name, key.as_ref()))
        .transpose()?;
    let bundle_size = match &bundle {
        Some(path) => std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len(),
        None => 0,
    };
    let expectations = Expectations::compile(scenario, bundle_size)?;
    let mut input = InputScript::compile(scenario, bundle_size)?;
    let devices = devices.filter(|_| bundle.is_some());
    // Xen's own store tools, for steps that run them against the proxy.
    if format!("{:?}", scenario.step).contains(steps::XEN_TOOLS_PLACEHOLDER) {
        xen_tools::ensure(root)?;
    }
    let steps = steps::compile_all(
        &scenario.step,
        &Placeholders {
            root,
            tmp: dir.path(),
            mgmt_port: devices.map(MachineDevices::mgmt_host_port),
            disk: devices.map(MachineDevices::disk),
            uplink_ports: devices
                .as_ref()
                .map(|d| (d.uplink_host_port(), d.host_service_port())),
        },
    )?;
    let dom0ctl = if steps.is_empty() {
        None
    } else {
        Some(artifacts.dom0ctl()?)
    };
    let command = qemu::command(
        &artifacts.xen_core()?,
        bundle.as_deref(),
        &scenario.qemu,
        socket.as_deref(),
        devices,
    );

    let mut qemu = Qemu::spawn(command, show == Show::Everything)?;
    let qemu_ended = Arc::new(AtomicBool::new(false));
    let step_failed = Arc::new(AtomicBool::new(false));
    let stepper = match (socket, dom0ctl) {
        (Some(socket), Some(dom0ctl)) => Some(step_runner::spawn(
            steps,
            StepContext {
                root: root.to_path_buf(),
                dom0ctl,
                socket,
                key_file: key.as_ref().map(|k| k.path().to_path_buf()),
                com1: qemu.output_handle(),
                qemu_ended: Arc::clone(&qemu_ended),
                echo: show != Show::Result,
                carried,
            },
            Arc::clone(&step_failed),
        )),
        _ => None,
    };
    let limit = Duration::from_secs(scenario.timeout_secs);
    let deadline = Instant::now() + limit;
    let waiting = progress::Waiting::start(
        &format!("scenario {}: QEMU running", scenario.name),
        limit,
        show == Show::Result,
    );
    let end = loop {
        if let Some(status) = qemu.try_wait()? {
            break end_of(status);
        }
        if Instant::now() >= deadline {
            break End::TimedOut {
                secs: scenario.timeout_secs,
            };
        }
        if step_failed.load(Ordering::SeqCst) {
            break End::StepFailed;
        }
        if let Some(text) = input.due(&output::clean(&qemu.output())) {
            qemu.send(&text)?;
        }
        std::thread::sleep(POLL);
    };
    drop(waiting);
    let output = output::clean(&qemu.finish());
    qemu_ended.store(true, Ordering::SeqCst);
    let steps_report = match stepper {
        Some(handle) => handle.join().unwrap_or_else(|_| StepsReport {
            failures: vec!["the step runner panicked".into()],
            transcript: String::new(),
            values: Captures::new(),
        }),
        None => StepsReport::default(),
    };
    let mut failures = steps_report.failures;
    if end != End::StepFailed {
        // After a failed step, the markers and exit that never came are
        // consequences, not news.
        failures.extend(expectations.failures(&output, end));
    }
    drop(dir);
    Ok(Judged {
        failures,
        output,
        transcript: steps_report.transcript,
        end,
        values: steps_report.values,
    })
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
    if let Some(reason) = &result.skipped {
        let _ = writeln!(out, "SKIPPED {}: {reason}", scenario.name);
        return;
    }
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
    if !result.transcript.is_empty() {
        let _ = writeln!(out, "  CLI steps (last {TAIL_LINES} lines):");
        for line in output::tail(&result.transcript, TAIL_LINES).lines() {
            let _ = writeln!(out, "  > {line}");
        }
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
