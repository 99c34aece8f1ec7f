//! `cargo xtask bench`: path lengths of xen-core, measured by guests under
//! `-icount shift=0,sleep=off`, where the guest-visible TSC counts executed
//! instructions, so every figure is exact and the same on every run.
//!
//! Each benchmark is a scenario-format file in `ci/bench/`; its guests
//! print `pathlen: <name> <instructions>` lines (see
//! `guest-pv-shim/examples/pathlen.rs`), which this gathers into a table.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use regex::Regex;

use crate::artifacts::Artifacts;
use crate::runner;
use crate::scenario::{self, BENCH_DIR};

/// One measured figure.
struct Figure {
    bench: String,
    /// The domain that measured it, as xen-core tags its console lines.
    domain: String,
    name: String,
    instructions: u64,
}

/// Runs every benchmark (or those named) and prints the figures.
pub fn run(root: &Path, artifacts: &Artifacts, only: &[String]) -> Result<ExitCode> {
    let mut benches = scenario::load_dir(root, BENCH_DIR)?;
    if !only.is_empty() {
        benches.retain(|b| only.contains(&b.name));
        if benches.is_empty() {
            bail!("no benchmark named {only:?} in {BENCH_DIR}/");
        }
    }
    let line = Regex::new(r"(?m)^\((d\d+)\) pathlen: (\S+) (\d+)$")?;
    let mut figures = Vec::new();
    for bench in &benches {
        println!("xtask: bench {} ...", bench.name);
        let output = runner::run_bench(root, artifacts, bench)?;
        for caps in line.captures_iter(&output) {
            figures.push(Figure {
                bench: bench.name.clone(),
                domain: caps[1].to_string(),
                name: caps[2].to_string(),
                instructions: caps[3].parse()?,
            });
        }
    }
    println!(
        "\n{:<12} {:<6} {:<20} {:>14}",
        "bench", "domain", "path", "instructions"
    );
    for f in &figures {
        println!(
            "{:<12} {:<6} {:<20} {:>14}",
            f.bench, f.domain, f.name, f.instructions
        );
    }
    Ok(ExitCode::SUCCESS)
}
