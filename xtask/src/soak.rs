//! `cargo xtask soak`: boots the hypervisor as `cargo xtask up` does
//! (ci/run.toml) and drives the real `dom0ctl` over the management socket
//! through create / pause / unpause / console / destroy cycles of a small
//! domain ([`GUEST_CONFIG`]). Every [`CHECK_EVERY`] cycles, and at the
//! end, free memory and the domain count (`dom0ctl info --json`) must be
//! back at their starting values; at the end dom0 powers the machine off
//! and xen-core's own count of leaked frames (`frames: N free after
//! stopping all domains, M leaked`) must be 0. Reports cycles per second.
//!
//! Not part of the test command: each create uploads the kernel over the
//! serial management line, so a cycle takes seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::artifacts::Artifacts;
use crate::machine::MachineDevices;
use crate::mgmt_socket::{self, AGENT_READY};
use crate::qemu::Qemu;
use crate::{bundle, output, qemu, scenario};

/// The domain each cycle creates (relative to the repository root).
const GUEST_CONFIG: &str = "ci/guests/soak.toml";
/// Its name in that file.
const GUEST_NAME: &str = "soak";
/// Cycles between two memory checks.
const CHECK_EVERY: u64 = 1000;
/// Cycles between two progress lines.
const PROGRESS_EVERY: u64 = 10;
/// How long the hypervisor may take to boot dom0's agent.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// dom0ctl's `--timeout` for each reply, seconds.
const REPLY_TIMEOUT_SECS: &str = "120";
/// How long powering off may take.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// How often to look at QEMU's output while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Free memory and domains, as `dom0ctl info --json` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    free_memory_kib: u64,
    nr_domains: u64,
}

/// The running machine and how to reach it.
struct Machine {
    qemu: Qemu,
    dom0ctl: PathBuf,
    socket: PathBuf,
    root: PathBuf,
}

/// `cargo xtask soak --cycles N`.
pub fn run(root: &Path, artifacts: &Artifacts, cycles: u64) -> Result<ExitCode> {
    let config = scenario::load_run_config(root)?;
    let dir = mgmt_socket::scenario_dir("soak")?;
    let socket = dir.path().join("mgmt.sock");
    let bundle = bundle::write(root, artifacts, &config.bundle, "soak", None)?;
    let devices = MachineDevices::per_run(root, "soak")?;
    let command = qemu::command(
        &artifacts.xen_core()?,
        Some(&bundle),
        &config.qemu,
        Some(&socket),
        Some(&devices),
    );
    let mut machine = Machine {
        qemu: Qemu::spawn(command, false)?,
        dom0ctl: artifacts.dom0ctl()?,
        socket,
        root: root.to_path_buf(),
    };
    machine.wait_for(AGENT_READY, BOOT_TIMEOUT)?;
    let start = machine.usage()?;
    println!(
        "xtask: soak: {cycles} cycles of create/pause/unpause/console/destroy ({GUEST_CONFIG}); \
         start: {} KiB free, {} domains",
        start.free_memory_kib, start.nr_domains
    );
    let began = Instant::now();
    let mut done = 0;
    let failure = loop {
        if done == cycles {
            break None;
        }
        if let Err(e) = machine.cycle() {
            break Some(e.context(format!("cycle {}", done + 1)));
        }
        done += 1;
        if done % PROGRESS_EVERY == 0 {
            let rate = done as f64 / began.elapsed().as_secs_f64();
            println!("xtask: soak: {done} cycles, {rate:.3} cycles/s");
        }
        if done % CHECK_EVERY == 0 || done == cycles {
            machine.check(done, start)?;
        }
    };
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "xtask: soak: {done} good cycles in {elapsed:.0} s: {:.3} cycles/s",
        done as f64 / elapsed
    );
    if let Some(e) = &failure {
        // Still count what leaked: the domain of the failed cycle goes,
        // then the same checks as after a full run.
        eprintln!("xtask: soak: error: {e:#}");
        let _ = machine.dom0ctl(&["destroy", GUEST_NAME]);
        machine.check(done, start)?;
    }
    let leaked = machine.power_off()?;
    println!("xtask: soak: {leaked} leaked frames (xen-core's count at power-off)");
    if leaked != 0 {
        bail!("xen-core leaked {leaked} frames");
    }
    if failure.is_some() {
        bail!("a cycle failed after {done} good cycles");
    }
    Ok(ExitCode::SUCCESS)
}

impl Machine {
    /// One cycle through the CLI.
    fn cycle(&mut self) -> Result<()> {
        self.dom0ctl(&["create", GUEST_CONFIG])?;
        self.dom0ctl(&["pause", GUEST_NAME])?;
        self.dom0ctl(&["unpause", GUEST_NAME])?;
        self.dom0ctl(&["console", GUEST_NAME, "--no-follow"])?;
        self.dom0ctl(&["destroy", GUEST_NAME])?;
        if self.qemu.try_wait()?.is_some() {
            bail!("QEMU ended:\n{}", self.tail());
        }
        Ok(())
    }

    /// Free memory and the domain count are what they were at the start.
    fn check(&mut self, cycle: u64, start: Usage) -> Result<()> {
        let now = self.usage()?;
        let leaked_kib = start.free_memory_kib.saturating_sub(now.free_memory_kib);
        println!(
            "xtask: soak: after {cycle} cycles: {} KiB free ({} frames short), {} domains",
            now.free_memory_kib,
            leaked_kib / 4,
            now.nr_domains
        );
        if now != start {
            bail!("after {cycle} cycles: {now:?}, at the start {start:?}");
        }
        Ok(())
    }

    fn usage(&mut self) -> Result<Usage> {
        let out = self.dom0ctl(&["info", "--json"])?;
        let json: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("dom0ctl info --json: {out}"))?;
        let field = |name: &str| {
            json[name]
                .as_u64()
                .with_context(|| format!("no {name} in dom0ctl info --json: {out}"))
        };
        Ok(Usage {
            free_memory_kib: field("free_memory_kib")?,
            nr_domains: field("nr_domains")?,
        })
    }

    /// Runs dom0ctl with `args`; its stdout, or an error with everything
    /// it printed.
    fn dom0ctl(&mut self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.dom0ctl)
            .arg("--connect")
            .arg(&self.socket)
            .args(["--timeout", REPLY_TIMEOUT_SECS])
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .context("running dom0ctl")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "dom0ctl {} failed ({}):\n{stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Waits until COM1 matches `pattern`; its first capture group, if any.
    fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<Option<String>> {
        let re = Regex::new(&format!("(?m){pattern}")).context("soak marker")?;
        let deadline = Instant::now() + timeout;
        loop {
            let text = output::clean(&self.qemu.output());
            if let Some(c) = re.captures(&text) {
                return Ok(c.get(1).map(|m| m.as_str().to_string()));
            }
            if self.qemu.try_wait()?.is_some() {
                bail!("QEMU ended before /{pattern}/:\n{}", self.tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no /{pattern}/ within {} s:\n{}",
                    timeout.as_secs(),
                    self.tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Powers the machine off through dom0; xen-core's count of frames
    /// not back after stopping every domain.
    fn power_off(&mut self) -> Result<u64> {
        self.dom0ctl(&["shutdown", "0"])?;
        let leaked = self.wait_for(
            r"^frames: \d+ free after stopping all domains, (\d+) leaked",
            POWEROFF_TIMEOUT,
        )?;
        leaked.context("leak count")?.parse().context("leak count")
    }

    /// The last lines of COM1, for error messages.
    fn tail(&self) -> String {
        let text = output::clean(&self.qemu.output());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
