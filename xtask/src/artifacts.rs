//! Building: the host crates with rustup's toolchain, the bare-metal kernels
//! with Debian's rustc and `-Zbuild-std` (docs/development.md says why),
//! and where the resulting kernels are.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::deps;

/// The bare-metal target triple.
const TARGET: &str = "x86_64-unknown-none";
/// Cargo target directory of the bare-metal build, under the workspace root.
const BARE_TARGET_DIR: &str = "target/bare";
/// Cargo target directory of the bare-metal clippy pass (`cargo xtask lint`).
const BARE_CLIPPY_TARGET_DIR: &str = "target/bare-clippy";
/// Cargo target directory of the kernels `cargo xtask bench` boots: xen-core
/// and dom0 with their `bench-trace` feature (milestone lines).
const BENCH_TARGET_DIR: &str = "target/bare-bench";
/// The bare-metal packages `cargo xtask bench` builds with `bench-trace`.
const BENCH_TRACED: &[(&str, &[&str])] = &[
    ("xen-core", &["--bin", "xen-core"]),
    ("dom0", &["--bin", "dom0"]),
];
/// Stripped copies of the guest examples, for `dom0ctl create` to upload
/// (debug info makes the built ones ~100 times larger; ci/guests/*.toml
/// point here).
const GUEST_IMAGE_DIR: &str = "target/bare/guests";

/// What to build of one package for bare metal.
struct BarePackage {
    package: &'static str,
    /// `--bin NAME` or `--examples`.
    selection: &'static [&'static str],
    /// Only xen-core must exist; the others arrive with later work.
    required: bool,
}

const BARE_PACKAGES: &[BarePackage] = &[
    BarePackage {
        package: "xen-core",
        selection: &["--bin", "xen-core"],
        required: true,
    },
    BarePackage {
        package: "dom0",
        // dom0 and the dom0-side test kernels (`src/bin/`), all linked at
        // dom0's GPA.
        selection: &["--bins"],
        required: false,
    },
    BarePackage {
        package: "guest-pv-shim",
        selection: &["--examples"],
        required: false,
    },
];

/// The built kernels (`target/bare/x86_64-unknown-none/release`) and
/// host programs (`target/debug`).
#[derive(Clone)]
pub struct Artifacts {
    dir: PathBuf,
    /// Where the binaries (xen-core, dom0) come from: `dir`, or the
    /// bench's traced build.
    bins_dir: PathBuf,
    host_dir: PathBuf,
    /// XTF's hvm64 kernels, if a `shared/xtf/hvm64` folder sits beside
    /// the workspace or one of its parents.
    xtf_dir: Option<PathBuf>,
    /// Debian's Linux guest (`crate::linux`), fetched on demand.
    linux: crate::linux::LinuxGuest,
}

/// Prefix of the Linux guest's artifacts (Debian's, used as they are).
pub const LINUX_PREFIX: &str = "linux:";

/// Where XTF's kernels are, relative to a folder above the workspace.
const XTF_DIR: &str = "shared/xtf/hvm64";

/// `shared/xtf/hvm64` in the nearest parent of `root` that has one
/// (`/work/shared` for `/work/main` and `/work/wt/NAME` alike).
fn find_xtf_dir(root: &Path) -> Option<PathBuf> {
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join(XTF_DIR))
        .find(|dir| dir.is_dir())
}

impl Artifacts {
    /// The kernels and host programs as they are now.
    pub fn built(root: &Path) -> Self {
        let host_target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), |dir| root.join(dir));
        let dir = root.join(BARE_TARGET_DIR).join(TARGET).join("release");
        Artifacts {
            bins_dir: dir.clone(),
            dir,
            host_dir: host_target.join("debug"),
            xtf_dir: find_xtf_dir(root),
            linux: crate::linux::paths(root),
        }
    }

    /// The same artifacts with XTF's kernels taken from `dir`.
    pub fn with_xtf_dir(self, dir: PathBuf) -> Self {
        Artifacts {
            xtf_dir: Some(dir),
            ..self
        }
    }

    /// The folder XTF's kernels are taken from, if any.
    pub fn xtf_dir(&self) -> Option<&Path> {
        self.xtf_dir.as_deref()
    }

    /// The operator's CLI, built for the host.
    pub fn dom0ctl(&self) -> Result<PathBuf> {
        let path = self.host_dir.join("dom0ctl");
        if !path.is_file() {
            bail!(
                "{} was not built (`cargo build -p dom0ctl`)",
                path.display()
            );
        }
        Ok(path)
    }

    /// The artifact named `name`: `example:NAME` is an example kernel,
    /// `xtf:NAME` XTF's `test-hvm64-NAME`, `linux:vmlinux` and
    /// `linux:initramfs` Debian's Linux guest (`cargo xtask linux`),
    /// anything else a binary (`xen-core`, `dom0`). `None` if not built
    /// (or no XTF folder).
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        let path = if let Some(linux) = name.strip_prefix(LINUX_PREFIX) {
            match linux {
                "vmlinux" => self.linux.vmlinux.clone(),
                "initramfs" => self.linux.initramfs.clone(),
                crate::linux::control::ARTIFACT => self.linux.initramfs_control.clone(),
                _ => return None,
            }
        } else if let Some(example) = name.strip_prefix("example:") {
            self.dir.join("examples").join(example)
        } else if let Some(test) = name.strip_prefix("xtf:") {
            self.xtf_dir.as_ref()?.join(format!("test-hvm64-{test}"))
        } else {
            self.bins_dir.join(name)
        };
        path.is_file().then_some(path)
    }

    /// [`Self::find`]'s kernel without symbols and debug info (the
    /// loadable segments and notes stay), in a `stripped/` folder beside
    /// it; XTF's kernels, outside the workspace, as they are.
    pub fn stripped(&self, name: &str) -> Result<Option<PathBuf>> {
        let Some(built) = self.find(name) else {
            return Ok(None);
        };
        if name.starts_with("xtf:") || name.starts_with(LINUX_PREFIX) {
            return Ok(Some(built));
        }
        let (Some(dir), Some(file)) = (built.parent(), built.file_name()) else {
            bail!("{} has no folder", built.display());
        };
        let out = dir.join("stripped");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let stripped = out.join(file);
        // Written aside and renamed into place: two scenarios running at
        // once each strip the same kernel, and one must never read the
        // file while objcopy of the other has truncated it (a 0-byte
        // dom0 in its bundle).
        static PARTIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PARTIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut partial = stripped.clone().into_os_string();
        partial.push(format!(".{}-{n}.partial", std::process::id()));
        run(Command::new(deps::OBJCOPY)
            .arg("--strip-all")
            .arg(&built)
            .arg(&partial))?;
        std::fs::rename(&partial, &stripped)
            .with_context(|| format!("renaming to {}", stripped.display()))?;
        Ok(Some(stripped))
    }

    /// Why `spec`'s bundle cannot be built here: the first XTF kernel it
    /// names that is absent (XTF is not part of the repository).
    pub fn missing_xtf(&self, spec: &crate::scenario::BundleSpec) -> Option<String> {
        std::iter::once(&spec.dom0)
            .chain(&spec.domus)
            .map(|image| image.kernel.as_str())
            .find(|kernel| kernel.starts_with("xtf:") && self.find(kernel).is_none())
            .map(|kernel| match &self.xtf_dir {
                Some(dir) => format!("{kernel}: {} has no such test", dir.display()),
                None => format!("{kernel}: no {XTF_DIR} folder above the workspace"),
            })
    }

    /// The hypervisor binary, passed to QEMU with `-kernel`.
    pub fn xen_core(&self) -> Result<PathBuf> {
        self.find("xen-core").context("xen-core was not built")
    }
}

/// `cargo test --workspace` with rustup's toolchain.
pub fn host_tests(root: &Path) -> Result<()> {
    println!("xtask: host tests: cargo test --workspace");
    run(cargo(root).args(["test", "--workspace"]))
}

/// Builds the host crates, then every bare-metal package that exists.
pub fn build(root: &Path) -> Result<Artifacts> {
    run(cargo(root).args(["build", "--workspace", "--quiet"]))?;
    let packages = workspace_packages(root)?;
    let lld = deps::rust_lld().context("rust-lld not found in rustup's sysroot")?;
    for p in present_bare_packages(&packages)? {
        println!(
            "xtask: building {} {} for {TARGET}",
            p.package,
            p.selection.join(" ")
        );
        run(bare_cargo(root, &lld, "build", BARE_TARGET_DIR)
            .args(["--package", p.package])
            .args(p.selection))?;
    }
    let artifacts = Artifacts::built(root);
    let examples: Vec<&str> = packages
        .iter()
        .flat_map(|p| &p.targets)
        .filter(|t| t.kind.iter().any(|k| k == "example"))
        .map(|t| t.name.as_str())
        .collect();
    strip_guests(root, &artifacts, &examples)?;
    Ok(artifacts)
}

/// [`build`], then xen-core and dom0 again with their `bench-trace`
/// feature (in their own target directory, so the normal build stays
/// cached): the artifacts `cargo xtask bench` boots, guests unchanged.
pub fn build_bench(root: &Path) -> Result<Artifacts> {
    let artifacts = build(root)?;
    let lld = deps::rust_lld().context("rust-lld not found in rustup's sysroot")?;
    for (package, selection) in BENCH_TRACED {
        println!("xtask: building {package} with bench-trace for {TARGET}");
        run(bare_cargo(root, &lld, "build", BENCH_TARGET_DIR)
            .args(["--package", package, "--features", "bench-trace"])
            .args(*selection))?;
    }
    Ok(Artifacts {
        bins_dir: root.join(BENCH_TARGET_DIR).join(TARGET).join("release"),
        ..artifacts
    })
}

/// `target/bare/guests/NAME`: each built example without symbols and
/// debug info (the loadable segments and the PVH note stay).
fn strip_guests(root: &Path, artifacts: &Artifacts, examples: &[&str]) -> Result<()> {
    let out = root.join(GUEST_IMAGE_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for name in examples {
        let Some(built) = artifacts.find(&format!("example:{name}")) else {
            continue;
        };
        run(Command::new(deps::OBJCOPY)
            .arg("--strip-all")
            .arg(built)
            .arg(out.join(name)))?;
    }
    Ok(())
}

/// The bare-metal packages that exist in the workspace (with examples,
/// for an examples-only selection); the others are skipped with a message.
fn present_bare_packages(packages: &[Package]) -> Result<Vec<&'static BarePackage>> {
    let mut present = Vec::new();
    for p in BARE_PACKAGES {
        let Some(meta) = packages.iter().find(|m| m.name == p.package) else {
            if p.required {
                bail!("package {} is not in the workspace", p.package);
            }
            println!("xtask: skipping {}: not in the workspace yet", p.package);
            continue;
        };
        if p.selection == ["--examples"]
            && !meta
                .targets
                .iter()
                .any(|t| t.kind.iter().any(|k| k == "example"))
        {
            println!("xtask: skipping {}: no examples yet", p.package);
            continue;
        }
        present.push(p);
    }
    Ok(present)
}

/// One `cargo check` per bare-metal package with Debian's clippy-driver as
/// the workspace wrapper (it matches Debian's rustc; rustup's clippy has no
/// std for the target), in [`BARE_CLIPPY_TARGET_DIR`] so linting never
/// invalidates the kernels' build. Returns (package, selection, command).
pub fn bare_clippy_commands(
    root: &Path,
) -> Result<Vec<(&'static str, &'static [&'static str], Command)>> {
    let packages = workspace_packages(root)?;
    let lld = deps::rust_lld().context("rust-lld not found in rustup's sysroot")?;
    Ok(present_bare_packages(&packages)?
        .into_iter()
        .map(|p| {
            let mut command = bare_cargo(root, &lld, "check", BARE_CLIPPY_TARGET_DIR);
            command
                .env("RUSTC_WORKSPACE_WRAPPER", deps::DEBIAN_CLIPPY_DRIVER)
                .args(["--package", p.package])
                .args(p.selection);
            (p.package, p.selection, command)
        })
        .collect())
}

/// Rustup's cargo in the workspace root (the one running xtask, if any).
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root);
    command
}

/// `cargo SUBCOMMAND --release` (build or check) set up for the
/// bare-metal recipe: Debian's rustc with build-std, rustup's rust-lld, a
/// static non-PIE image, `target_dir` under the workspace root.
fn bare_cargo(root: &Path, lld: &Path, subcommand: &str, target_dir: &str) -> Command {
    let mut command = cargo(root);
    command
        .args([subcommand, "--release", "--quiet", "--target", TARGET])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", deps::DEBIAN_RUSTC)
        .env("CARGO_TARGET_DIR", root.join(target_dir))
        .env(
            "RUSTFLAGS",
            format!(
                "-C linker={} -C relocation-model=static -C code-model=small",
                lld.display()
            ),
        )
        .env_remove("RUSTC_WRAPPER")
        .args([
            "-Zbuild-std=core,alloc,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
        ]);
    command
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

/// The workspace's packages, from `cargo metadata`.
fn workspace_packages(root: &Path) -> Result<Vec<Package>> {
    let out = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    Ok(metadata.packages)
}

/// Runs `command`, failing with its command line if it does not succeed.
fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
