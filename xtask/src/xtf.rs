//! `cargo xtask xtf`: Xen's own test kernels (XTF, hvm64) booted as domUs
//! of xen-core, each with the memory and vCPUs its `.cfg` asks for, their
//! `Test result:` lines compared with the table of expected results
//! committed in `ci/xtf/expected.toml` (which also gives each non-SUCCESS
//! result's reason and whose behaviour it is).
//!
//! Several kernels share one QEMU boot (a batch, within
//! [`MACHINE_MIB`]); dom0's console backend powers the machine off once
//! every domU has shut down. Runs are under `-icount shift=0,sleep=off`,
//! so the interleaving of a batch, and with it every result, is the same
//! on every run whatever the host's load.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;

use crate::artifacts::Artifacts;
use crate::output::ExitName;
use crate::runner;
use crate::scenario::{BundleSpec, ImageSpec, QemuSpec, Scenario};

/// The expected results, from the workspace root.
pub const EXPECTED_FILE: &str = "ci/xtf/expected.toml";
/// Real Xen 4.17's results on this machine, in the XTF folder's parent.
pub const REFERENCE_FILE: &str = "xen-4.17-reference.tsv";
/// Guest RAM of each batch's machine, MiB (below 4 GiB, all of it RAM
/// xen-core uses).
const MACHINE_MIB: u32 = 2048;
/// dom0's memory in a batch, MiB (it only serves the consoles).
const DOM0_MIB: u32 = 32;
/// Most kernels booted together: a batch's wall time is its slowest
/// kernel's, and its console lines must stay readable.
const BATCH_MAX: usize = 12;
/// Console lines shown for each test whose result differs.
const SHOWN_LINES: usize = 8;
/// Memory and vCPUs when a `.cfg` does not say (XTF's own defaults).
const DEFAULT_MIB: u32 = 128;
/// Seconds one batch may take before it is stopped (its kernels that had
/// not finished count as TIMEOUT).
const BATCH_TIMEOUT_SECS: u64 = 600;

/// A test's outcome: XTF's four results, or none printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Success,
    Skip,
    Failure,
    Error,
    /// The domain ended (or the batch stopped) without a `Test result`.
    #[serde(rename = "NONE")]
    None,
}

impl Outcome {
    fn parse(word: &str) -> Option<Outcome> {
        Some(match word {
            "SUCCESS" => Outcome::Success,
            "SKIP" => Outcome::Skip,
            "FAILURE" => Outcome::Failure,
            "ERROR" => Outcome::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Ours => "ours",
            Cause::Qemu => "qemu",
            Cause::Xen => "xen",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Success => "SUCCESS",
            Outcome::Skip => "SKIP",
            Outcome::Failure => "FAILURE",
            Outcome::Error => "ERROR",
            Outcome::None => "none",
        })
    }
}

/// Whose behaviour a result other than SUCCESS comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// xen-core lacks what the test needs (an issue should name it).
    Ours,
    /// QEMU's CPU emulation, on Xen as here.
    Qemu,
    /// Xen itself gives this result in a release build (no FEP, no
    /// nested virtualisation, no Argo...).
    Xen,
}

/// One row of `ci/xtf/expected.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub result: Outcome,
    /// Why it is not SUCCESS (required then).
    pub reason: Option<String>,
    /// Whose behaviour that is (required when not SUCCESS).
    pub cause: Option<Cause>,
}

/// Reads and checks the expected table: every non-SUCCESS row says why.
pub fn load_expected(root: &Path) -> Result<BTreeMap<String, Expected>> {
    let path = root.join(EXPECTED_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: BTreeMap<String, Expected> =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for (test, row) in &table {
        if row.result != Outcome::Success && (row.reason.is_none() || row.cause.is_none()) {
            bail!(
                "{}: {test} expects {} without a reason and cause",
                path.display(),
                row.result
            );
        }
    }
    Ok(table)
}

/// One XTF kernel to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub test: String,
    pub memory_mib: u32,
    pub vcpus: u32,
}

/// Memory and vCPUs from an xl config's `memory=` and `vcpus=` lines.
pub fn parse_cfg(test: &str, text: &str) -> Result<Kernel> {
    let mut kernel = Kernel {
        test: test.to_string(),
        memory_mib: DEFAULT_MIB,
        vcpus: 1,
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let number = || {
            value
                .parse::<u32>()
                .with_context(|| format!("{test}.cfg: {} = {value:?}", key.trim()))
        };
        match key.trim() {
            "memory" => kernel.memory_mib = number()?,
            "vcpus" => kernel.vcpus = number()?,
            _ => {}
        }
    }
    Ok(kernel)
}

/// The kernels in `dir` (`test-hvm64-NAME` with a `.cfg` beside), or the
/// `only` ones, sorted by name.
pub fn find_kernels(dir: &Path, only: &[String]) -> Result<Vec<Kernel>> {
    let mut names: Vec<String> = if only.is_empty() {
        std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|file| file.strip_suffix(".cfg").map(str::to_string))
            .filter_map(|file| file.strip_prefix("test-hvm64-").map(str::to_string))
            // `NAME~hap` and the like are xl variants of one kernel (paging
            // mode choices); xen-core always uses nested paging.
            .filter(|test| !test.contains('~'))
            .collect()
    } else {
        only.to_vec()
    };
    names.sort();
    names
        .iter()
        .map(|test| {
            let cfg = dir.join(format!("test-hvm64-{test}.cfg"));
            if !dir.join(format!("test-hvm64-{test}")).is_file() {
                bail!("no XTF kernel test-hvm64-{test} in {}", dir.display());
            }
            let text = std::fs::read_to_string(&cfg)
                .with_context(|| format!("reading {}", cfg.display()))?;
            parse_cfg(test, &text)
        })
        .collect()
}

/// Splits `kernels` into batches that fit the machine beside dom0.
pub fn batches(kernels: &[Kernel]) -> Result<Vec<Vec<Kernel>>> {
    let room = MACHINE_MIB - DOM0_MIB - MACHINE_MIB / 16;
    let mut batches: Vec<Vec<Kernel>> = Vec::new();
    let mut used = 0;
    for kernel in kernels {
        if kernel.memory_mib > room {
            bail!(
                "{} asks for {} MiB; a batch has {room} MiB",
                kernel.test,
                kernel.memory_mib
            );
        }
        let fits = batches
            .last()
            .is_some_and(|b| b.len() < BATCH_MAX && used + kernel.memory_mib <= room);
        if !fits {
            batches.push(Vec::new());
            used = 0;
        }
        used += kernel.memory_mib;
        batches
            .last_mut()
            .expect("pushed above")
            .push(kernel.clone());
    }
    Ok(batches)
}

/// The scenario that boots one batch: domU N+1 is `batch[N]`.
pub fn batch_scenario(index: usize, batch: &[Kernel]) -> Scenario {
    Scenario {
        name: format!("xtf-batch-{index}"),
        description: format!("XTF batch {index}"),
        timeout_secs: BATCH_TIMEOUT_SECS,
        expect_exit: ExitName::Poweroff,
        markers: vec!["^xen-core: powering off".into()],
        qemu: QemuSpec {
            memory_mib: MACHINE_MIB,
            smp: 1,
            append: None,
            extra_args: vec!["-icount".into(), "shift=0,sleep=off".into()],
        },
        keep_smp: None,
        bundle: Some(BundleSpec {
            dom0: ImageSpec {
                name: None,
                kernel: "dom0".into(),
                memory_mib: DOM0_MIB,
                vcpus: 1,
                cmdline: "console-backend".into(),
                ramdisk: None,
                optional: false,
                control: false,
            },
            domus: batch
                .iter()
                .map(|k| ImageSpec {
                    name: Some(format!("xtf-{}", k.test)),
                    kernel: format!("xtf:{}", k.test),
                    memory_mib: k.memory_mib,
                    vcpus: k.vcpus,
                    cmdline: String::new(),
                    ramdisk: None,
                    optional: false,
                    control: false,
                })
                .collect(),
            corrupt: None,
        }),
        input: Vec::new(),
        check: Vec::new(),
        step: Vec::new(),
        then: None,
    }
}

/// Each domU's result in a batch's output: console_io's `(dN) Test
/// result: X` line (XTF also prints it on its PV console, which dom0
/// tags differently), and xen-core's crash report if it crashed.
pub fn results_of(output: &str, batch: &[Kernel]) -> Vec<(Outcome, Option<String>)> {
    let result = Regex::new(r"(?m)^\(d(\d+)\) Test result: (\w+)").expect("valid regex");
    let crash =
        Regex::new(r#"(?m)^(?:[A-Z]+: )?d(\d+) "[^"]*" crashed: (.*)$"#).expect("valid regex");
    let mut results = vec![(Outcome::None, None); batch.len()];
    let slot = |domid: &str| {
        let domid: usize = domid.parse().ok()?;
        domid.checked_sub(1).filter(|&i| i < batch.len())
    };
    for caps in result.captures_iter(output) {
        if let (Some(i), Some(outcome)) = (slot(&caps[1]), Outcome::parse(&caps[2])) {
            results[i].0 = outcome;
        }
    }
    for caps in crash.captures_iter(output) {
        if let Some(i) = slot(&caps[1]) {
            results[i].1 = Some(format!("crashed: {}", &caps[2]));
        }
    }
    results
}

/// The last [`SHOWN_LINES`] console_io lines of domU `domid` in a batch's
/// output (shown for a result that differs from the table).
pub fn domain_lines(output: &str, domid: usize) -> Vec<&str> {
    let tag = format!("(d{domid}) ");
    let lines: Vec<&str> = output.lines().filter(|l| l.starts_with(&tag)).collect();
    lines[lines.len().saturating_sub(SHOWN_LINES)..].to_vec()
}

/// Real Xen 4.17's result per test, from the reference table beside the
/// kernels (empty if it is absent).
fn reference(dir: &Path) -> BTreeMap<String, String> {
    let path = dir.parent().map(|p| p.join(REFERENCE_FILE));
    let text = path.and_then(|p| std::fs::read_to_string(p).ok());
    text.unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect()
}

/// One test's row of the summary.
struct Row {
    test: String,
    expected: Option<Outcome>,
    got: Outcome,
    note: Option<String>,
    xen: String,
}

impl Row {
    fn passed(&self) -> bool {
        self.expected == Some(self.got)
    }
}

/// Boots every kernel (or the `only` ones) and compares with the table;
/// fails if any result differs from the expected one.
pub fn run(root: &Path, artifacts: &Artifacts, dir: &Path, only: &[String]) -> Result<ExitCode> {
    let expected = load_expected(root)?;
    let kernels = find_kernels(dir, only)?;
    let reference = reference(dir);
    let mut rows = Vec::new();
    let batches = batches(&kernels)?;
    for (index, batch) in batches.iter().enumerate() {
        let names: Vec<&str> = batch.iter().map(|k| k.test.as_str()).collect();
        println!(
            "xtask: xtf batch {}/{}: {}",
            index + 1,
            batches.len(),
            names.join(" ")
        );
        let scenario = batch_scenario(index, batch);
        let (output, end) = runner::run_for_output(root, artifacts, &scenario)?;
        let ended_well = end.exit_name() == Some(ExitName::Poweroff);
        for (i, (kernel, (got, crash))) in batch.iter().zip(results_of(&output, batch)).enumerate()
        {
            let note = crash.or_else(|| {
                (got == Outcome::None && !ended_well).then(|| format!("batch ended: {end}"))
            });
            if expected.get(&kernel.test).map(|e| e.result) != Some(got) {
                println!("xtask: xtf: {} gave {got}; its last lines:", kernel.test);
                for line in domain_lines(&output, i + 1) {
                    println!("  | {line}");
                }
            }
            rows.push(Row {
                test: kernel.test.clone(),
                expected: expected.get(&kernel.test).map(|e| e.result),
                got,
                note,
                xen: reference.get(&kernel.test).cloned().unwrap_or_default(),
            });
        }
    }
    print_summary(&rows, &expected);
    Ok(if rows.iter().all(Row::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(rows: &[Row], expected: &BTreeMap<String, Expected>) {
    println!(
        "\n{:<24} {:<8} {:<8} {:<8} {:<5} why",
        "test", "expected", "got", "Xen4.17", ""
    );
    for row in rows {
        let verdict = if row.passed() { "ok" } else { "DIFF" };
        let why = match (expected.get(&row.test), &row.note) {
            (_, Some(note)) => note.clone(),
            (None, None) => format!("no row in {EXPECTED_FILE}"),
            (Some(e), None) => match (&e.reason, e.cause) {
                (Some(reason), Some(cause)) => format!("[{cause}] {reason}"),
                _ => String::new(),
            },
        };
        let expected = row
            .expected
            .map_or_else(|| "-".to_string(), |e| e.to_string());
        println!(
            "{:<24} {:<8} {:<8} {:<8} {verdict:<5} {why}",
            row.test,
            expected,
            row.got.to_string(),
            row.xen
        );
    }
    let count = |o: Outcome| rows.iter().filter(|r| r.got == o).count();
    let differ = rows.iter().filter(|r| !r.passed()).count();
    let xen_success = rows.iter().filter(|r| r.xen == "SUCCESS").count();
    let both = rows
        .iter()
        .filter(|r| r.xen == "SUCCESS" && r.got == Outcome::Success)
        .count();
    println!(
        "{} tests: {} SUCCESS, {} SKIP, {} FAILURE, {} ERROR, {} none; \
         {both} of the {xen_success} Xen 4.17 passes pass here; {differ} differ from {EXPECTED_FILE}",
        rows.len(),
        count(Outcome::Success),
        count(Outcome::Skip),
        count(Outcome::Failure),
        count(Outcome::Error),
        count(Outcome::None),
    );
}

/// The XTF folder to use: `--dir`, else the one found above the
/// workspace; `None` (with the reason) if there is none.
pub fn locate(artifacts: &Artifacts, dir: Option<PathBuf>) -> Result<PathBuf, String> {
    match dir.or_else(|| artifacts.xtf_dir().map(Path::to_path_buf)) {
        Some(dir) if dir.is_dir() => Ok(dir),
        Some(dir) => Err(format!("{} is not a folder", dir.display())),
        None => Err("no shared/xtf/hvm64 folder above the workspace".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(test: &str, memory_mib: u32) -> Kernel {
        Kernel {
            test: test.into(),
            memory_mib,
            vcpus: 1,
        }
    }

    #[test]
    fn cfg_memory_and_vcpus_are_read_and_comments_ignored() {
        let text = "name=\"t\"\nvcpus=2 \nmemory=128\n# memory=4\non_reboot = \"destroy\"\n";
        assert_eq!(
            parse_cfg("t", text).unwrap(),
            Kernel {
                test: "t".into(),
                memory_mib: 128,
                vcpus: 2
            }
        );
        assert!(parse_cfg("t", "memory=lots\n").is_err());
        assert_eq!(parse_cfg("t", "").unwrap().memory_mib, DEFAULT_MIB);
    }

    #[test]
    fn batches_fit_the_machine_and_keep_order() {
        let kernels: Vec<Kernel> = (0..30).map(|i| kernel(&format!("t{i:02}"), 128)).collect();
        let batches = batches(&kernels).unwrap();
        let room = MACHINE_MIB - DOM0_MIB - MACHINE_MIB / 16;
        for batch in &batches {
            assert!(batch.len() <= BATCH_MAX);
            assert!(batch.iter().map(|k| k.memory_mib).sum::<u32>() <= room);
        }
        let flat: Vec<Kernel> = batches.into_iter().flatten().collect();
        assert_eq!(flat, kernels);
        assert!(super::batches(&[kernel("huge", MACHINE_MIB)]).is_err());
    }

    #[test]
    fn results_are_read_from_console_io_lines_by_domid() {
        let batch = [kernel("a", 128), kernel("b", 128), kernel("c", 128)];
        let output = "(d1) Test result: SUCCESS\n\
                      xtf-b: Test result: FAILURE\n\
                      (d2) Test result: SKIP\n\
                      ERROR: d3 \"xtf-c\" crashed: triple fault\n\
                      (d9) Test result: ERROR\n";
        let results = results_of(output, &batch);
        assert_eq!(results[0], (Outcome::Success, None));
        assert_eq!(results[1], (Outcome::Skip, None));
        assert_eq!(
            results[2],
            (Outcome::None, Some("crashed: triple fault".into()))
        );
    }

    #[test]
    fn the_committed_table_parses_and_explains_every_non_success() {
        let root = crate::root::workspace_root().unwrap();
        let table = load_expected(&root).unwrap();
        assert!(table.contains_key("example"));
    }
}
