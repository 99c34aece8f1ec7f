//! `cargo xtask bench --xtf`: XTF side by side. Each test of Xen 4.17's
//! reference file (`xen-4.17-reference.tsv` beside XTF's `hvm64/`) boots
//! alone as a domU of xen-core under icount (the `bench-trace` build
//! stamps every guest console line), and its count is the instructions
//! from its first console line to its `Test result` line. Xen's column is
//! the file's: from dom0's start to the result, the test booted as Xen's
//! PVH dom0. Placement differs (domU here, dom0 there), and so does the
//! start (first line here, first instruction there): Xen's count covers
//! a little more.

use std::path::Path;

use anyhow::{Context, Result};
use regex::Regex;

use crate::artifacts::Artifacts;
use crate::runner;
use crate::xtf;

/// One test, on both.
pub struct XtfRow {
    pub test: String,
    pub xen_result: String,
    pub xen_count: Option<u64>,
    pub result: String,
    pub count: Option<u64>,
}

/// Runs every test of the reference file on xen-core.
pub fn run(root: &Path, artifacts: &Artifacts) -> Result<Vec<XtfRow>> {
    let dir = xtf::locate(artifacts, None).map_err(anyhow::Error::msg)?;
    let reference_path = dir
        .parent()
        .context("XTF folder has no parent")?
        .join(xtf::REFERENCE_FILE);
    let reference = std::fs::read_to_string(&reference_path)
        .with_context(|| format!("reading {}", reference_path.display()))?;
    let artifacts = artifacts.clone().with_xtf_dir(dir.clone());
    let mut rows = Vec::new();
    for line in reference.lines().skip(1) {
        let mut fields = line.split('\t');
        let (Some(test), Some(xen_result)) = (fields.next(), fields.next()) else {
            continue;
        };
        let xen_count = fields.next().and_then(|c| c.parse().ok());
        let Ok(kernels) = xtf::find_kernels(&dir, &[test.to_string()]) else {
            println!(
                "xtask: bench xtf {test}: no kernel and config in {}",
                dir.display()
            );
            continue;
        };
        println!("xtask: bench xtf {test} ...");
        let scenario = xtf::batch_scenario(0, &kernels);
        let (output, _) = runner::run_for_output(root, &artifacts, &scenario)?;
        let (result, count) = first_line_to_result(&output, 1);
        rows.push(XtfRow {
            test: test.to_string(),
            xen_result: xen_result.to_string(),
            xen_count,
            result,
            count,
        });
    }
    Ok(rows)
}

/// Domain `domid`'s result and the instructions from the stamp of its
/// first console line to the stamp of its `Test result` line.
pub fn first_line_to_result(output: &str, domid: u32) -> (String, Option<u64>) {
    let stamp = format!("bench: console-d{domid} ");
    let tag = format!("(d{domid}) ");
    let result_re = Regex::new(r"^Test result: (\w+)").expect("valid regex");
    let mut first = None;
    let mut last_stamp = None;
    for line in output.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(tsc) = line
            .strip_prefix(&stamp)
            .and_then(|t| t.parse::<u64>().ok())
        {
            first.get_or_insert(tsc);
            last_stamp = Some(tsc);
        } else if let Some(text) = line.strip_prefix(&tag) {
            if let Some(caps) = result_re.captures(text) {
                let count = first.zip(last_stamp).map(|(a, b)| b - a);
                return (caps[1].to_string(), count);
            }
        }
    }
    ("none".to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_first_line_to_the_result() {
        let out = "bench: console-d1 1000\n(d1) --- Xen Test Framework ---\n\
                   bench: console-d0 1500\n(d0) dom0: x\n\
                   bench: console-d1 4000\n(d1) Test result: SUCCESS\n";
        assert_eq!(
            first_line_to_result(out, 1),
            ("SUCCESS".to_string(), Some(3000))
        );
        assert_eq!(first_line_to_result(out, 2), ("none".to_string(), None));
    }
}
