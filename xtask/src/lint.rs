//! `cargo xtask lint`: the formatting and clippy gate.
//!
//! Three checks, each run to the end so one failure does not hide another:
//! `cargo fmt --all -- --check`; clippy over the host build (`cargo clippy
//! --workspace --all-targets`, rustup's toolchain); clippy over the
//! bare-metal build (xen-core, dom0 and the guest examples for
//! `x86_64-unknown-none`, Debian's `clippy-driver` as the workspace wrapper
//! of Debian's rustc, in its own target directory). Any warning fails the
//! gate, as `-D warnings` would; the warnings are collected rather than
//! turned into errors so that one crate's findings do not stop its
//! dependents from being checked, and the summary at the end counts every
//! remaining finding by crate and lint.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::artifacts;

/// What `cargo xtask lint` prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Every finding as the compiler renders it, then the summary.
    Findings,
    /// Only the summary.
    Summary,
}

/// One cargo JSON line; only compiler messages matter here.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    package_id: Option<String>,
    message: Option<Diagnostic>,
}

#[derive(Deserialize)]
struct Diagnostic {
    message: String,
    level: String,
    code: Option<DiagnosticCode>,
    spans: Vec<Span>,
    rendered: Option<String>,
}

#[derive(Deserialize)]
struct DiagnosticCode {
    code: String,
}

#[derive(Deserialize)]
struct Span {
    file_name: String,
    line_start: u32,
    column_start: u32,
    is_primary: bool,
}

/// A finding's identity: the same warning reported by the lib and the test
/// build, or by the host and the bare-metal pass, counts once.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    file: String,
    line: u32,
    column: u32,
    lint: String,
    message: String,
}

/// The findings of all passes, without repeats.
#[derive(Default)]
struct Findings {
    seen: BTreeSet<Location>,
    /// (crate, lint) → count.
    counts: BTreeMap<(String, String), usize>,
    /// Pass name → findings first seen in that pass.
    per_pass: Vec<(String, usize)>,
}

impl Findings {
    /// Records one cargo JSON line; prints the finding if it is new and
    /// `show` asks for findings.
    fn record(&mut self, line: &str, show: Show) -> bool {
        let Ok(msg) = serde_json::from_str::<CargoMessage>(line) else {
            return false;
        };
        if msg.reason != "compiler-message" {
            return false;
        }
        let Some(diag) = msg.message else {
            return false;
        };
        if !matches!(diag.level.as_str(), "warning" | "error") {
            return false;
        }
        // The "N warnings emitted" totals have no primary span.
        let Some(span) = diag.spans.iter().find(|s| s.is_primary) else {
            return false;
        };
        let lint = diag.code.map_or_else(|| diag.level.clone(), |c| c.code);
        let location = Location {
            file: span.file_name.clone(),
            line: span.line_start,
            column: span.column_start,
            lint: lint.clone(),
            message: diag.message,
        };
        if !self.seen.insert(location) {
            return false;
        }
        let krate = msg
            .package_id
            .as_deref()
            .map_or_else(|| "?".to_string(), package_name);
        *self.counts.entry((krate, lint)).or_default() += 1;
        if show == Show::Findings {
            if let Some(rendered) = diag.rendered {
                print!("{rendered}");
            }
        }
        true
    }

    /// Runs `command` (a cargo command with `--message-format=json`),
    /// recording its findings as pass `pass`. Fails only if cargo cannot
    /// be started; a failed compilation shows up as an `error` finding or,
    /// without one, as an error here.
    fn run_pass(&mut self, pass: String, command: &mut Command, show: Show) -> Result<()> {
        let mut child = command
            .arg("--message-format=json")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stdout = child.stdout.take().context("cargo's stdout")?;
        let mut new = 0;
        for line in BufReader::new(stdout).lines() {
            if self.record(&line.context("reading cargo's output")?, show) {
                new += 1;
            }
        }
        let status = child.wait().context("waiting for cargo")?;
        if !status.success() && new == 0 {
            bail!("{command:?} failed ({status}) without a diagnostic");
        }
        self.per_pass.push((pass, new));
        Ok(())
    }

    fn total(&self) -> usize {
        self.counts.values().sum()
    }

    fn print_summary(&self) {
        println!("xtask: lint summary (crate, lint, count):");
        for ((krate, lint), count) in &self.counts {
            println!("  {krate:<16} {lint:<36} {count:>5}");
        }
        let mut per_crate: BTreeMap<&str, usize> = BTreeMap::new();
        for ((krate, _), count) in &self.counts {
            *per_crate.entry(krate).or_default() += count;
        }
        for (krate, count) in per_crate {
            println!("  {krate:<16} {:<36} {count:>5}", "(all)");
        }
        for (pass, count) in &self.per_pass {
            println!("  {pass}: {count} finding(s) not seen by an earlier pass");
        }
        println!("  total: {}", self.total());
    }
}

/// The package name in a cargo package id: `path+file:///dir#name@1.0`,
/// or `path+file:///name#1.0` when the directory is named like the package.
fn package_name(id: &str) -> String {
    let (path, fragment) = id.split_once('#').unwrap_or((id, ""));
    match fragment.split_once('@') {
        Some((name, _version)) => name.to_string(),
        None => path.rsplit('/').next().unwrap_or(path).to_string(),
    }
}

/// `cargo fmt --all -- --check`: the files rustfmt would change.
fn unformatted(root: &Path) -> Result<Vec<String>> {
    let out = artifacts::cargo(root)
        .args(["fmt", "--all", "--", "--check", "--files-with-diff"])
        .output()
        .context("running cargo fmt")?;
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if !out.status.success() && files.is_empty() {
        bail!(
            "cargo fmt failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(files)
}

/// Runs the gate; success only if rustfmt and both clippy passes are clean.
pub fn run(root: &Path, show: Show) -> Result<ExitCode> {
    println!("xtask: lint: cargo fmt --all -- --check");
    let unformatted = unformatted(root)?;
    for file in &unformatted {
        println!("  not formatted: {file}");
    }

    let mut findings = Findings::default();
    println!("xtask: lint: cargo clippy --workspace --all-targets (host)");
    findings.run_pass(
        "host".to_string(),
        artifacts::cargo(root).args(["clippy", "--workspace", "--all-targets"]),
        show,
    )?;
    for (package, selection, mut command) in artifacts::bare_clippy_commands(root)? {
        println!(
            "xtask: lint: clippy {package} {} (x86_64-unknown-none)",
            selection.join(" ")
        );
        findings.run_pass(format!("bare-metal {package}"), &mut command, show)?;
    }

    findings.print_summary();
    if !unformatted.is_empty() {
        println!(
            "xtask: lint: {} file(s) not formatted: run `cargo fmt --all`",
            unformatted.len()
        );
    }
    if unformatted.is_empty() && findings.total() == 0 {
        println!("xtask: lint: clean");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_ids() {
        assert_eq!(package_name("path+file:///work/abi#0.1.0"), "abi");
        assert_eq!(
            package_name("path+file:///work/xen-core#xen-core@0.1.0"),
            "xen-core"
        );
        assert_eq!(
            package_name("path+file:///work/dom0-tools/dom0#0.1.0"),
            "dom0"
        );
        assert_eq!(
            package_name("registry+https://github.com/rust-lang/crates.io-index#log@0.4.22"),
            "log"
        );
    }

    #[test]
    fn a_finding_counts_once() {
        let line = r#"{"reason":"compiler-message","package_id":"path+file:///w/abi#0.1.0","message":{"message":"casting","level":"warning","code":{"code":"clippy::cast_possible_truncation"},"spans":[{"file_name":"abi/src/x.rs","line_start":3,"column_start":5,"is_primary":true}],"rendered":""}}"#;
        let mut findings = Findings::default();
        assert!(findings.record(line, Show::Summary));
        assert!(!findings.record(line, Show::Summary));
        assert_eq!(findings.total(), 1);
        assert_eq!(
            findings.counts.keys().next(),
            Some(&(
                "abi".to_string(),
                "clippy::cast_possible_truncation".to_string()
            ))
        );
    }

    #[test]
    fn totals_and_notes_are_not_findings() {
        let totals = r#"{"reason":"compiler-message","package_id":"path+file:///w/abi#0.1.0","message":{"message":"1 warning emitted","level":"warning","code":null,"spans":[],"rendered":""}}"#;
        let artifact = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/abi#0.1.0"}"#;
        let mut findings = Findings::default();
        assert!(!findings.record(totals, Show::Summary));
        assert!(!findings.record(artifact, Show::Summary));
        assert!(!findings.record("Checking abi", Show::Summary));
        assert_eq!(findings.total(), 0);
    }
}
