//! Scenario files: `ci/scenarios/NAME.toml`, one QEMU boot with what it
//! must print and how it must end. The format is documented in
//! docs/development.md; unknown keys are errors so typos do not pass.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::output::ExitName;
use crate::steps::StepSpec;

/// Where scenario files live, from the workspace root.
pub const SCENARIO_DIR: &str = "ci/scenarios";

/// One scenario, as read from its file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The file name without `.toml`.
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// Seconds before QEMU is killed and the scenario fails.
    pub timeout_secs: u64,
    /// How QEMU must end: a debug-exit code name (see [`ExitName`]).
    pub expect_exit: ExitName,
    /// Regular expressions that must match COM1's output, in this order.
    #[serde(default)]
    pub markers: Vec<String>,
    #[serde(default)]
    pub qemu: QemuSpec,
    /// Why it keeps its own `[qemu] smp` under `cargo xtask test --smp N`
    /// (it checks a given number of pCPUs); absent: it runs on N.
    pub keep_smp: Option<String>,
    /// The boot bundle; absent means no `-initrd`.
    pub bundle: Option<BundleSpec>,
    /// Console input, each sent once its `after` marker has appeared.
    #[serde(default)]
    pub input: Vec<Input>,
    /// Numbers read from the output and compared with bounds.
    #[serde(default)]
    pub check: Vec<NumericCheck>,
    /// CLI steps against the management socket (COM2), in order; with
    /// any, QEMU gets COM2 on a socket of the scenario's own.
    #[serde(default)]
    pub step: Vec<StepSpec>,
    /// A second boot, after this one passed, of a new QEMU on the same
    /// disk image (`[then]`, the same format): what dom0 wrote must
    /// survive a full restart. Its output is judged on its own.
    pub then: Option<Box<Scenario>>,
}

/// The parts of the QEMU command line a scenario chooses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSpec {
    /// Guest RAM (`-m`), in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// Processors (`-smp`): the boot pCPU and `smp - 1` APs.
    #[serde(default = "default_smp")]
    pub smp: u32,
    /// xen-core's command line (`-append`).
    pub append: Option<String>,
    /// Further arguments, appended as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl Default for QemuSpec {
    fn default() -> Self {
        QemuSpec {
            memory_mib: default_memory_mib(),
            smp: default_smp(),
            append: None,
            extra_args: Vec::new(),
        }
    }
}

impl Scenario {
    /// For `cargo xtask test --smp N`: runs it on `smp` processors unless
    /// it keeps its own (`keep_smp`); then says so and why.
    pub fn set_smp_unless_kept(&mut self, smp: u32) {
        match &self.keep_smp {
            Some(why) => println!(
                "xtask: scenario {} keeps -smp {}: {why}",
                self.name, self.qemu.smp
            ),
            None => self.set_smp(smp),
        }
    }

    /// Runs it, and each `[then]` boot, on `smp` processors.
    pub fn set_smp(&mut self, smp: u32) {
        self.qemu.smp = smp;
        if let Some(then) = self.then.as_deref_mut() {
            then.set_smp(smp);
        }
    }
}

fn default_smp() -> u32 {
    1
}

fn default_memory_mib() -> u32 {
    256
}

/// The images of a boot bundle, and optionally how to damage it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    pub dom0: ImageSpec,
    #[serde(default)]
    pub domus: Vec<ImageSpec>,
    /// Deliberate damage after building, to test xen-core's checks.
    pub corrupt: Option<Corruption>,
}

/// One image of a bundle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Domain name; dom0's defaults to "dom0".
    pub name: Option<String>,
    /// Artifact name: `dom0`, `xen-core`, `example:NAME` or `xtf:NAME`
    /// (XTF's `test-hvm64-NAME` from `shared/xtf/hvm64` above the
    /// workspace; a scenario that names an absent one is skipped).
    pub kernel: String,
    pub memory_mib: u32,
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    #[serde(default)]
    pub cmdline: String,
    /// A domU's boot module (its start info's one module, e.g. Linux's
    /// initramfs): an artifact name as `kernel`.
    pub ramdisk: Option<String>,
    /// Leave the image out if its kernel was not built (domUs only).
    #[serde(default)]
    pub optional: bool,
    /// A control domain (domUs only): the bundle entry's
    /// `ENTRY_FLAG_CONTROL`.
    #[serde(default)]
    pub control: bool,
}

fn default_vcpus() -> u32 {
    1
}

/// How to damage a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// Flip a byte of the last image: the CRC no longer matches.
    Checksum,
    /// Cut the bundle in half.
    Truncate,
    /// Overwrite the magic.
    Magic,
}

/// Text to type on the console once `after` has matched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub after: String,
    pub send: String,
}

/// A number captured by the first group of `regex`, within `min..=max`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericCheck {
    /// What the number is, for the report.
    pub what: String,
    pub regex: String,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

/// What `cargo xtask up` boots: `ci/run.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub qemu: QemuSpec,
    pub bundle: BundleSpec,
}

/// Reads `ci/run.toml`.
pub fn load_run_config(root: &Path) -> Result<RunConfig> {
    let path = root.join("ci/run.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Where benchmark files live (the scenario format, never run by `test`).
pub const BENCH_DIR: &str = "ci/bench";

/// Every scenario, by name.
pub fn load_all(root: &Path) -> Result<Vec<Scenario>> {
    load_dir(root, SCENARIO_DIR)
}

/// Every scenario-format file in `dir` (from the root), by name.
pub fn load_dir(root: &Path, dir: &str) -> Result<Vec<Scenario>> {
    let dir = root.join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    paths.iter().map(|p| load_file(p)).collect()
}

/// The scenario called `name`.
pub fn load(root: &Path, name: &str) -> Result<Scenario> {
    let path = root.join(SCENARIO_DIR).join(format!("{name}.toml"));
    if !path.is_file() {
        bail!(
            "no scenario {name:?} (no {}); `cargo xtask scenario --list` lists them",
            path.display()
        );
    }
    load_file(&path)
}

fn load_file(path: &Path) -> Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut scenario: Scenario =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    scenario.name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{} has no UTF-8 name", path.display()))?
        .to_string();
    let mut boot = 2;
    let mut next = scenario.then.as_deref_mut();
    while let Some(then) = next {
        then.name = format!("{}-boot{boot}", scenario.name);
        boot += 1;
        next = then.then.as_deref_mut();
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_scenarios_parse() {
        let root = &crate::root::workspace_root().unwrap();
        let mut scenarios = load_all(root).unwrap();
        assert!(scenarios.iter().any(|s| s.name == "boot"));
        scenarios.extend(load_dir(root, BENCH_DIR).unwrap());
        load_run_config(root).unwrap();
        let ph = crate::steps::Placeholders {
            root,
            tmp: Path::new("/tmp"),
            mgmt_port: None,
            disk: None,
            uplink_ports: None,
        };
        let boots = scenarios
            .iter()
            .flat_map(|s| std::iter::successors(Some(s), |s| s.then.as_deref()));
        for s in boots {
            crate::output::Expectations::compile(s, 0).unwrap();
            crate::steps::compile_all(&s.step, &ph).unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        }
    }

    #[test]
    fn test_smp_spares_the_scenarios_that_keep_theirs() {
        let text = "description = \"x\"\ntimeout_secs = 1\nexpect_exit = \"poweroff\"\n\
                    [then]\ndescription = \"y\"\ntimeout_secs = 1\nexpect_exit = \"poweroff\"\n";
        let mut any: Scenario = toml::from_str(text).unwrap();
        any.set_smp_unless_kept(4);
        assert_eq!(any.qemu.smp, 4);
        assert_eq!(any.then.unwrap().qemu.smp, 4);
        let text = "description = \"x\"\ntimeout_secs = 1\nexpect_exit = \"poweroff\"\n\
                    keep_smp = \"pins to pCPU 3\"\n[qemu]\nsmp = 4\n";
        let mut kept: Scenario = toml::from_str(text).unwrap();
        kept.set_smp_unless_kept(2);
        assert_eq!(kept.qemu.smp, 4);
    }

    #[test]
    fn typos_are_errors() {
        let text =
            "description = \"x\"\ntimeout_secs = 1\nexpect_exit = \"poweroff\"\nmarkrs = []\n";
        assert!(toml::from_str::<Scenario>(text).is_err());
        let text = "description = \"x\"\ntimeout_secs = 1\nexpect_exit = \"powreoff\"\n";
        assert!(toml::from_str::<Scenario>(text).is_err());
    }
}
