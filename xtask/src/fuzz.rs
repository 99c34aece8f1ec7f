//! `cargo xtask fuzz`: the libFuzzer targets in `fuzz/` (cargo-fuzz, on
//! rustup's nightly toolchain), for a time per target, reporting the
//! executions each made. `smoke` is the short, deterministic run the test
//! command makes: a fixed seed and run count from an empty corpus, so the
//! same inputs run every time.
//!
//! Builds are optimised, keep debug assertions (overflow checks are part
//! of the oracle) and use no sanitizer: the targets are safe Rust, so
//! AddressSanitizer would only halve the rate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The targets, in `fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 5] = [
    "hypercall_door",
    "grant_table",
    "event_channel",
    "pvh_loader",
    "mgmt_codec",
];
/// Executions per target in the smoke run.
const SMOKE_RUNS: u64 = 20_000;
/// libFuzzer's seed for the smoke run.
const SMOKE_SEED: u64 = 1;
/// The toolchain cargo-fuzz needs (`-Z` flags, sanitizer coverage).
const NIGHTLY: &str = "+nightly";
/// cargo-fuzz's build flags: optimised, debug assertions, no sanitizer.
const BUILD_FLAGS: [&str; 4] = ["-O", "-a", "-s", "none"];

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many executions from `seed`, on an empty corpus.
    Runs { runs: u64, seed: u64 },
    /// This many seconds, growing the kept corpus.
    Seconds(u64),
}

/// What one target's run did.
pub struct Report {
    pub target: String,
    pub execs: u64,
    pub seconds: f64,
}

/// `cargo xtask fuzz`: every target (or `only`) for `seconds` each.
pub fn run(root: &Path, seconds: u64, only: Option<&str>) -> Result<()> {
    let targets = select(only)?;
    ensure_cargo_fuzz()?;
    build(root)?;
    let mut reports = Vec::new();
    for target in targets {
        let corpus = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        println!(
            "xtask: fuzz {target} for {seconds} s (corpus {})",
            corpus.display()
        );
        reports.push(run_target(root, target, &corpus, Budget::Seconds(seconds))?);
    }
    print_table(&reports);
    Ok(())
}

/// The test command's smoke run: every target, [`SMOKE_RUNS`] executions
/// from seed [`SMOKE_SEED`] on an empty corpus.
pub fn smoke(root: &Path) -> Result<()> {
    ensure_cargo_fuzz()?;
    build(root)?;
    let budget = Budget::Runs {
        runs: SMOKE_RUNS,
        seed: SMOKE_SEED,
    };
    let mut reports = Vec::new();
    for target in TARGETS {
        let corpus = root.join("target/fuzz-smoke").join(target);
        let _ = std::fs::remove_dir_all(&corpus);
        std::fs::create_dir_all(&corpus)?;
        reports.push(run_target(root, target, &corpus, budget)?);
    }
    print_table(&reports);
    Ok(())
}

fn select(only: Option<&str>) -> Result<Vec<&'static str>> {
    match only {
        None => Ok(TARGETS.to_vec()),
        Some(name) => match TARGETS.iter().find(|t| **t == name) {
            Some(t) => Ok(vec![*t]),
            None => bail!("no fuzz target {name:?}; targets: {}", TARGETS.join(", ")),
        },
    }
}

/// rustup's nightly toolchain must be there (it cannot be downloaded
/// here); cargo-fuzz is installed from crates.io when missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let nightly = Command::new("cargo")
        .args([NIGHTLY, "--version"])
        .output()
        .context("running cargo +nightly")?;
    if !nightly.status.success() {
        bail!(
            "rustup's nightly toolchain is missing (`rustup toolchain list`); cargo-fuzz needs it"
        );
    }
    let present = Command::new("cargo")
        .args([NIGHTLY, "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is missing; running: cargo install cargo-fuzz");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("`cargo install cargo-fuzz` failed ({status})");
    }
    Ok(())
}

fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("fuzz")
}

fn build(root: &Path) -> Result<()> {
    println!("xtask: building the fuzz targets (cargo +nightly fuzz build)");
    let status = Command::new("cargo")
        .args([NIGHTLY, "fuzz", "build"])
        .args(BUILD_FLAGS)
        .current_dir(fuzz_dir(root))
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    Ok(())
}

/// Runs `target` on `corpus` within `budget`; an error names the input
/// that failed and how to run it again.
fn run_target(root: &Path, target: &str, corpus: &Path, budget: Budget) -> Result<Report> {
    let libfuzzer_args = match budget {
        Budget::Runs { runs, seed } => vec![format!("-runs={runs}"), format!("-seed={seed}")],
        Budget::Seconds(s) => vec![format!("-max_total_time={s}")],
    };
    let started = Instant::now();
    let out = Command::new("cargo")
        .args([NIGHTLY, "fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(corpus)
        .arg("--")
        .args(&libfuzzer_args)
        .current_dir(fuzz_dir(root))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} found a failure ({}):\n{}\nrun it again: cd fuzz && cargo +nightly fuzz run {} {target} <the test unit above>",
            out.status,
            tail.join("\n"),
            BUILD_FLAGS.join(" ")
        );
    }
    let execs =
        done_runs(&log).with_context(|| format!("no `Done N runs` line in {target}'s output"))?;
    Ok(Report {
        target: target.to_string(),
        execs,
        seconds,
    })
}

/// libFuzzer's closing line: `Done 20000 runs in 3 second(s)`.
fn done_runs(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done ")?.split(' ').next()?.parse().ok())
}

fn print_table(reports: &[Report]) {
    for r in reports {
        println!(
            "xtask: fuzz {:<16} {:>12} execs in {:>7.1} s ({:>8.0}/s), no finding",
            r.target,
            r.execs,
            r.seconds,
            r.execs as f64 / r.seconds.max(0.001)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_closing_line() {
        let log = "#20000\tDONE   cov: 317 ft: 388\nDone 20000 runs in 3 second(s)\n";
        assert_eq!(done_runs(log), Some(20000));
        assert_eq!(done_runs("INFO: Seed: 1\n"), None);
    }

    #[test]
    fn only_known_targets_are_selected() {
        assert_eq!(select(Some("grant_table")).unwrap(), ["grant_table"]);
        assert_eq!(select(None).unwrap().len(), TARGETS.len());
        assert!(select(Some("nope")).is_err());
    }
}
