//! The bench's JSON: one record per metric and run (name, unit, value,
//! the hypervisor measured, the run's commit, QEMU version and time), the
//! committed baseline and reference files, and the regression check.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::metrics::{Unit, UNGATED};

/// Largest allowed growth of an instruction count over the baseline.
pub const MAX_REGRESSION: f64 = 0.05;

/// One measured value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// `xen-core` or `xen-4.17`.
    pub hypervisor: String,
    /// `git describe --always --dirty` of the workspace.
    pub commit: String,
    /// `qemu-system-x86_64 --version`'s first line.
    pub qemu: String,
    /// When xtask took the run (seconds since the Unix epoch).
    pub unix_time: u64,
}

/// What every record of one run shares.
pub struct RunInfo {
    pub hypervisor: &'static str,
    pub commit: String,
    pub qemu: String,
    pub unix_time: u64,
}

impl RunInfo {
    /// This run, on `hypervisor`, timestamped now by xtask.
    pub fn now(root: &Path, hypervisor: &'static str) -> Result<Self> {
        Ok(RunInfo {
            hypervisor,
            commit: first_line(
                Command::new("git")
                    .args(["describe", "--always", "--dirty"])
                    .current_dir(root),
            )?,
            qemu: first_line(Command::new("qemu-system-x86_64").arg("--version"))?,
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// A record of `value` for metric `name`.
    pub fn record(&self, name: &str, unit: Unit, value: f64) -> Record {
        Record {
            name: name.to_string(),
            unit: unit.as_str().to_string(),
            value,
            hypervisor: self.hypervisor.to_string(),
            commit: self.commit.clone(),
            qemu: self.qemu.clone(),
            unix_time: self.unix_time,
        }
    }
}

fn first_line(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_string())
}

/// Reads a JSON array of records; an absent file is an empty list.
pub fn load(path: &Path) -> Result<Vec<Record>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `records` as a JSON array (creating the folder).
pub fn save(path: &Path, records: &[Record]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(records)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Appends `records` to the JSON-lines history at `path`.
pub fn append_history(path: &Path, records: &[Record]) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for r in records {
        writeln!(file, "{}", serde_json::to_string(r)?)?;
    }
    Ok(())
}

/// The value of metric `name` in `records`.
pub fn value_of(records: &[Record], name: &str) -> Option<f64> {
    records.iter().find(|r| r.name == name).map(|r| r.value)
}

/// `baseline` with the metrics of `run` put in (a metric already there
/// replaced in its place, a new one appended): a run of some benchmarks
/// saved as the baseline keeps the others' values.
pub fn merged(baseline: &[Record], run: &[Record]) -> Vec<Record> {
    let mut out: Vec<Record> = baseline
        .iter()
        .map(|b| run.iter().find(|r| r.name == b.name).unwrap_or(b).clone())
        .collect();
    out.extend(
        run.iter()
            .filter(|r| value_of(baseline, &r.name).is_none())
            .cloned(),
    );
    out
}

/// Instruction counts of `current` more than [`MAX_REGRESSION`] above
/// `baseline`: one message each (metrics absent from either, and the
/// host-dependent [`UNGATED`] ones, are skipped).
pub fn regressions(current: &[Record], baseline: &[Record]) -> Vec<String> {
    current
        .iter()
        .filter(|r| r.unit == Unit::Instructions.as_str() && !UNGATED.contains(&r.name.as_str()))
        .filter_map(|r| {
            let base = value_of(baseline, &r.name)?;
            (r.value > base * (1.0 + MAX_REGRESSION)).then(|| {
                format!(
                    "{}: {} instructions, {:+.1}% over the baseline's {}",
                    r.name,
                    r.value,
                    (r.value / base - 1.0) * 100.0,
                    base
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, unit: Unit, value: f64) -> Record {
        RunInfo {
            hypervisor: "xen-core",
            commit: "c".into(),
            qemu: "q".into(),
            unix_time: 0,
        }
        .record(name, unit, value)
    }

    #[test]
    fn more_than_five_percent_is_a_regression() {
        let base = [
            rec("a", Unit::Instructions, 100.0),
            rec("b", Unit::Instructions, 100.0),
            rec("w", Unit::Seconds, 1.0),
            rec(UNGATED[0], Unit::Instructions, 100.0),
        ];
        let now = [
            rec("a", Unit::Instructions, 105.0),
            rec("b", Unit::Instructions, 106.0),
            rec("w", Unit::Seconds, 9.0),
            rec("new", Unit::Instructions, 1.0),
            rec(UNGATED[0], Unit::Instructions, 1000.0),
        ];
        let found = regressions(&now, &base);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("b: 106 instructions"));
    }

    #[test]
    fn a_partial_run_replaces_only_its_own_metrics_in_the_baseline() {
        let base = [
            rec("a", Unit::Instructions, 1.0),
            rec("b", Unit::Instructions, 2.0),
            rec("wall-x", Unit::Seconds, 3.0),
        ];
        let run = [
            rec("net", Unit::Instructions, 9.0),
            rec("b", Unit::Instructions, 5.0),
        ];
        let names_values: Vec<(String, f64)> = merged(&base, &run)
            .into_iter()
            .map(|r| (r.name, r.value))
            .collect();
        let expected = [("a", 1.0), ("b", 5.0), ("wall-x", 3.0), ("net", 9.0)];
        assert_eq!(
            names_values,
            expected.map(|(n, v)| (n.to_string(), v)).to_vec()
        );
    }

    #[test]
    fn records_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/records.json");
        let records = vec![rec("a", Unit::Instructions, 7.0)];
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        assert!(load(&dir.path().join("absent.json")).unwrap().is_empty());
    }
}
