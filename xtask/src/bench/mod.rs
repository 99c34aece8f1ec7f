//! `cargo xtask bench`: path lengths of xen-core, measured by guests under
//! `-icount shift=0,sleep=off`, where the guest-visible TSC counts executed
//! instructions, so every figure is exact and the same on every run.
//!
//! Each benchmark is a scenario-format file in `ci/bench/`; its guests
//! print `pathlen: <name> <instructions>` lines (see
//! `guest-pv-shim/examples/pathlen.rs`), and the `bench-trace` build of
//! xen-core and dom0 prints `bench: <milestone> <TSC>` lines ([`metrics`]
//! reads both). One JSON record per metric goes to
//! `target/bench/xen-core.json` (and the history file next to it);
//! `--check` compares the instruction counts with the committed
//! `ci/bench/baseline.json`; a full run renders `docs/benchmarks.md`.
//! `--reference xen` measures the real Xen instead ([`xen`]), `--xtf` puts
//! XTF's tests side by side with Xen's counts ([`xtf`]).

mod metrics;
mod record;
mod report;
mod xen;
mod xtf;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::artifacts::Artifacts;
use crate::runner;
use crate::scenario::{self, BENCH_DIR};
use metrics::Unit;
use record::{Record, RunInfo};

/// The committed baseline `--check` compares with.
const BASELINE: &str = "ci/bench/baseline.json";
/// The committed reference run of the real Xen.
const XEN_REFERENCE: &str = "ci/bench/xen-4.17.json";
/// This machine's latest run of xen-core, and every run's records.
const LATEST: &str = "target/bench/xen-core.json";
const HISTORY: &str = "target/bench/history.jsonl";
/// The latest XTF side-by-side run.
const XTF_LATEST: &str = "target/bench/xtf.json";
/// The document the tables are rendered into.
const DOC: &str = "docs/benchmarks.md";

/// What `cargo xtask bench` was asked to do.
pub struct Options {
    /// Benchmark names (files in ci/bench/); all if empty.
    pub names: Vec<String>,
    /// Fail on an instruction count more than 5% over the baseline.
    pub check: bool,
    /// Put this run's metrics into the committed baseline (the others
    /// keep their values).
    pub save_baseline: bool,
    /// Measure the real Xen instead of xen-core.
    pub reference_xen: bool,
    /// XTF side by side instead: each test of Xen's reference file alone.
    pub xtf: bool,
}

/// Runs the benchmarks of `options` on the `artifacts` (from
/// `artifacts::build_bench`).
pub fn run(root: &Path, artifacts: &Artifacts, options: &Options) -> Result<ExitCode> {
    if options.reference_xen {
        return reference_xen(root, artifacts);
    }
    if options.xtf {
        let rows = xtf::run(root, artifacts)?;
        let records: Vec<Record> = {
            let run = RunInfo::now(root, "xen-core")?;
            rows.iter()
                .filter_map(|r| {
                    let c = r.count?;
                    Some(run.record(&format!("xtf-{}", r.test), Unit::Instructions, c as f64))
                })
                .collect()
        };
        record::save(&root.join(XTF_LATEST), &records)?;
        report::update_xtf(&root.join(DOC), &rows)?;
        println!("xtask: bench: XTF counts in {XTF_LATEST}, table in {DOC}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut benches = scenario::load_dir(root, BENCH_DIR)?;
    if !options.names.is_empty() {
        benches.retain(|b| options.names.contains(&b.name));
        if benches.is_empty() {
            bail!("no benchmark named {:?} in {BENCH_DIR}/", options.names);
        }
    }
    let run = RunInfo::now(root, "xen-core")?;
    let mut records = Vec::new();
    let mut walls = Vec::new();
    for bench in &benches {
        println!("xtask: bench {} ...", bench.name);
        let start = Instant::now();
        let output = runner::run_bench(root, artifacts, bench)?;
        let wall = start.elapsed().as_secs_f64();
        for (name, value) in metrics::parse(&bench.name, &output)?.values {
            records.push(run.record(&name, Unit::Instructions, value as f64));
        }
        walls.push(run.record(&format!("wall-{}", bench.name), Unit::Seconds, wall));
    }
    records.sort_by_key(|r| order(&r.name));
    records.extend(walls);
    let baseline = record::load(&root.join(BASELINE))?;
    print_table(&records, &baseline);
    record::save(&root.join(LATEST), &records)?;
    record::append_history(&root.join(HISTORY), &records)?;
    println!("xtask: bench: records in {LATEST}");
    if options.save_baseline {
        // Only this run's metrics change (`cargo xtask bench net
        // --save-baseline` leaves the others' values alone).
        record::save(&root.join(BASELINE), &record::merged(&baseline, &records))?;
        println!("xtask: bench: this run's metrics saved to the baseline {BASELINE}");
    }
    if options.names.is_empty() {
        render(root, &records)?;
    }
    if options.check {
        let regressions = record::regressions(&records, &baseline);
        if !regressions.is_empty() {
            for r in &regressions {
                println!("xtask: bench: REGRESSION {r}");
            }
            return Ok(ExitCode::FAILURE);
        }
        println!("xtask: bench: no instruction count more than 5% over the baseline");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--reference xen`: the same guest as Xen 4.17's dom0.
fn reference_xen(root: &Path, artifacts: &Artifacts) -> Result<ExitCode> {
    let xen_path = xen::ensure(root)?;
    println!(
        "xtask: bench: Xen 4.17 ({}) with pathlen as its PVH dom0 ...",
        xen_path.display()
    );
    let xen_run = xen::run_pathlen(root, artifacts, &xen_path)?;
    let run = RunInfo::now(root, "xen-4.17")?;
    let mut records: Vec<Record> = metrics::parse("xen", &xen_run.output)?
        .values
        .into_iter()
        .map(|(name, value)| run.record(&name, Unit::Instructions, value as f64))
        .collect();
    if let Some(tsc) = xen::boot_complete(&xen_run.output) {
        records.push(run.record("boot-complete", Unit::Instructions, tsc as f64));
    }
    records.sort_by_key(|r| order(&r.name));
    records.push(run.record("wall-xen-solo", Unit::Seconds, xen_run.wall.as_secs_f64()));
    print_table(&records, &[]);
    record::save(&root.join(XEN_REFERENCE), &records)?;
    record::append_history(&root.join(HISTORY), &records)?;
    println!("xtask: bench: Xen's records in {XEN_REFERENCE}");
    let ours = record::load(&root.join(LATEST))?;
    let ours = if ours.is_empty() {
        record::load(&root.join(BASELINE))?
    } else {
        ours
    };
    render(root, &ours)?;
    Ok(ExitCode::SUCCESS)
}

/// Renders docs/benchmarks.md from `current` and the committed files.
fn render(root: &Path, current: &[Record]) -> Result<()> {
    let baseline = record::load(&root.join(BASELINE))?;
    let xen = record::load(&root.join(XEN_REFERENCE))?;
    report::update(
        &root.join(DOC),
        &report::Inputs {
            current,
            baseline: &baseline,
            xen: &xen,
        },
    )?;
    println!("xtask: bench: {DOC} updated");
    Ok(())
}

/// A metric's place in [`metrics::METRICS`] (unknown ones last).
fn order(name: &str) -> usize {
    metrics::METRICS
        .iter()
        .position(|m| m.name == name)
        .unwrap_or(usize::MAX)
}

fn print_table(records: &[Record], baseline: &[Record]) {
    println!(
        "\n{:<20} {:>14} {:>14} {:>8}",
        "metric", "value", "baseline", "change"
    );
    for r in records {
        let base = record::value_of(baseline, &r.name);
        let change = base.filter(|b| *b > 0.0).map_or(String::new(), |b| {
            format!("{:+.1}%", (r.value / b - 1.0) * 100.0)
        });
        let fmt = |v: f64| {
            if r.unit == Unit::Seconds.as_str() {
                format!("{v:.1} s")
            } else {
                format!("{v:.0}")
            }
        };
        println!(
            "{:<20} {:>14} {:>14} {:>8}",
            r.name,
            fmt(r.value),
            base.map_or(String::new(), fmt),
            change
        );
    }
}
