//! `cargo xtask`: builds xen-core and the guest kernels for bare metal,
//! assembles boot bundles, boots them in QEMU and runs the scenarios in
//! `ci/scenarios/`. See docs/development.md.

mod artifacts;
mod bench;
mod bundle;
mod debs;
mod deps;
mod fuzz;
mod lint;
mod linux;
mod machine;
mod mgmt_key;
mod mgmt_socket;
mod output;
mod progress;
mod qemu;
mod raw_frames;
mod root;
mod runner;
mod scenario;
mod soak;
mod step_runner;
mod steps;
mod xen_tools;
mod xtf;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, boot and test the hypervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the bare-metal kernels, the host crates and the default boot bundle.
    Build,
    /// Build, then boot the hypervisor (ci/run.toml) and keep it running:
    /// COM1 on this terminal, COM2 on the management socket for dom0ctl.
    Up {
        /// The management socket QEMU serves COM2 on.
        #[arg(long, value_name = "PATH", default_value = dom0ctl::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Where to write the fresh management key for TCP (mode 0600).
        #[arg(long, value_name = "PATH", default_value = dom0ctl::DEFAULT_KEY_FILE)]
        key_file: PathBuf,
        /// QEMU's processors (`-smp N`; default: ci/run.toml's, 1):
        /// xen-core starts the N - 1 application processors.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        smp: Option<u32>,
    },
    /// Build, then the demo: boot, drive dom0ctl (info, create, list,
    /// console, pause, unpause, destroy, list), power off (scenario `demo`).
    Run,
    /// Host tests, a short deterministic run of every fuzz target, then
    /// every QEMU scenario; non-zero exit on any failure.
    Test {
        /// Only the QEMU scenarios, each on N processors (`-smp N`), but
        /// those whose `keep_smp` says why they need their own.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        smp: Option<u32>,
    },
    /// Build (xen-core and dom0 with `bench-trace`), then measure path
    /// lengths (ci/bench/, QEMU under -icount: exact instruction counts):
    /// a table, JSON records in target/bench/, docs/benchmarks.md.
    Bench {
        /// Benchmark names (files in ci/bench/ without `.toml`); all if none.
        names: Vec<String>,
        /// Fail if an instruction count is more than 5% over ci/bench/baseline.json.
        #[arg(long)]
        check: bool,
        /// Save this run as ci/bench/baseline.json.
        #[arg(long)]
        save_baseline: bool,
        /// Measure the real Xen (Debian's xen-hypervisor-4.17-amd64) with the
        /// same guest as its dom0; writes ci/bench/xen-4.17.json.
        #[arg(long, value_name = "xen", value_parser = ["xen"])]
        reference: Option<String>,
        /// XTF side by side: each test of Xen's reference file alone on
        /// xen-core, first console line → `Test result`, next to Xen 4.17.
        #[arg(long, conflicts_with = "reference")]
        xtf: bool,
    },
    /// Fetch Xen's xenstore-* tools (Debian's xenstore-utils, unpacked
    /// under target/xen-tools/) and print where their wrappers are.
    XenTools,
    /// Fetch Debian's Linux kernel and busybox, extract the ELF vmlinux and
    /// build the initramfs (under target/linux/); print their paths.
    Linux,
    /// Run the libFuzzer targets in fuzz/ (cargo-fuzz on rustup's nightly),
    /// growing their corpus in target/fuzz-corpus/; reports executions.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (default: all).
        target: Option<String>,
    },
    /// rustfmt check and clippy (host and bare-metal builds); fails on any
    /// warning and ends with a count per crate and lint.
    Lint {
        /// Print only the summary, not each finding.
        #[arg(long)]
        summary: bool,
    },
    /// Build, boot the hypervisor (ci/run.toml) and run create/pause/
    /// unpause/console/destroy cycles through dom0ctl, checking free memory
    /// every 1000 cycles and leaked frames at the end; reports cycles/s.
    Soak {
        /// Cycles to run.
        #[arg(long, default_value_t = 10_000)]
        cycles: u64,
    },
    /// Build, then boot Xen's own test kernels (XTF hvm64) as domUs and
    /// compare each `Test result` with ci/xtf/expected.toml.
    ///
    /// Example: `cargo xtask xtf example xsa-122` (all tests if none named).
    Xtf {
        /// The folder holding `test-hvm64-NAME` and its `.cfg` (default:
        /// shared/xtf/hvm64 above the workspace).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Test names (`example`, `xsa-122`...); all in the folder if none.
        tests: Vec<String>,
    },
    /// Build, then run one QEMU scenario.
    Scenario {
        /// Scenario name (a file in ci/scenarios/ without `.toml`).
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// List the scenarios instead.
        #[arg(long)]
        list: bool,
        /// Stream COM1 to the terminal while the scenario runs.
        #[arg(long, short)]
        verbose: bool,
        /// Use the kernels built last time instead of building first.
        #[arg(long)]
        no_build: bool,
        /// Run it on N processors (`-smp N`) instead of its own `smp`.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        smp: Option<u32>,
    },
}

/// The scenario `cargo xtask run` shows.
const DEMO_SCENARIO: &str = "demo";

fn main() -> ExitCode {
    qemu::install_cleanup_handlers();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    let root = root::workspace_root()?;
    match command {
        Command::Build => {
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            let path = bundle::write_default(&root, &artifacts)?;
            println!("xtask: default bundle: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            socket,
            key_file,
            smp,
        } => {
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            runner::up(&root, &artifacts, &socket, &key_file, smp)
        }
        Command::Run => {
            let scenario = scenario::load(&root, DEMO_SCENARIO)?;
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            println!("xtask: the demo: {}", scenario.description);
            Ok(runner::run_one(
                &root,
                &artifacts,
                &scenario,
                runner::Show::Steps,
            ))
        }
        Command::Test { smp: Some(smp) } => {
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            let mut scenarios = scenario::load_all(&root)?;
            for scenario in &mut scenarios {
                scenario.set_smp_unless_kept(smp);
            }
            println!("xtask: every scenario on {smp} processors (host tests, fuzz and XTF: `cargo xtask test`)");
            Ok(runner::run_all(&root, &artifacts, &scenarios))
        }
        Command::Test { smp: None } => {
            deps::ensure()?;
            artifacts::host_tests(&root)?;
            fuzz::smoke(&root)?;
            let artifacts = artifacts::build(&root)?;
            let scenarios = scenario::load_all(&root)?;
            let scenarios_passed = runner::run_all(&root, &artifacts, &scenarios);
            let xtf_passed = match xtf::locate(&artifacts, None) {
                Ok(dir) => {
                    let artifacts = artifacts.with_xtf_dir(dir.clone());
                    xtf::run(&root, &artifacts, &dir, &[])?
                }
                Err(reason) => {
                    println!("xtask: xtf: skipped: {reason}");
                    ExitCode::SUCCESS
                }
            };
            Ok(
                if scenarios_passed == ExitCode::SUCCESS && xtf_passed == ExitCode::SUCCESS {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Xtf { dir, tests } => {
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            let dir = xtf::locate(&artifacts, dir).map_err(anyhow::Error::msg)?;
            let artifacts = artifacts.with_xtf_dir(dir.clone());
            xtf::run(&root, &artifacts, &dir, &tests)
        }
        Command::Bench {
            names,
            check,
            save_baseline,
            reference,
            xtf,
        } => {
            deps::ensure()?;
            let artifacts = artifacts::build_bench(&root)?;
            let options = bench::Options {
                names,
                check,
                save_baseline,
                reference_xen: reference.is_some(),
                xtf,
            };
            bench::run(&root, &artifacts, &options)
        }
        Command::XenTools => {
            println!("{}", xen_tools::ensure(&root)?.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Linux => {
            let guest = linux::ensure(&root)?;
            println!("{}\n{}", guest.vmlinux.display(), guest.initramfs.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fuzz { seconds, target } => {
            fuzz::run(&root, seconds, target.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint { summary } => {
            deps::ensure_clippy()?;
            let show = if summary {
                lint::Show::Summary
            } else {
                lint::Show::Findings
            };
            lint::run(&root, show)
        }
        Command::Soak { cycles } => {
            deps::ensure()?;
            let artifacts = artifacts::build(&root)?;
            soak::run(&root, &artifacts, cycles)
        }
        Command::Scenario { list: true, .. } => {
            for s in scenario::load_all(&root)? {
                println!("{:<20} {}", s.name, s.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Scenario {
            name: Some(name),
            verbose,
            no_build,
            smp,
            ..
        } => {
            let mut scenario = scenario::load(&root, &name)?;
            if let Some(smp) = smp {
                scenario.set_smp(smp);
            }
            deps::ensure()?;
            let artifacts = if no_build {
                artifacts::Artifacts::built(&root)
            } else {
                artifacts::build(&root)?
            };
            let show = if verbose {
                runner::Show::Everything
            } else {
                runner::Show::Result
            };
            Ok(runner::run_one(&root, &artifacts, &scenario, show))
        }
        Command::Scenario { name: None, .. } => unreachable!("clap requires a name without --list"),
    }
}
