//! The system packages the bare-metal build and the scenarios need: QEMU,
//! Debian's rustc with its std sources (for `-Zbuild-std`), binutils'
//! objcopy (stripped guest images) and rustup's rust-lld; for `cargo xtask
//! lint`, also Debian's clippy (matching its rustc); gdisk's `sgdisk`, with
//! which the volume scenarios read dom0's disk image. Installed from
//! Debian's registry when running as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian's rustc: the bare-metal compiler (rustup's toolchains here have no rust-src).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// The Debian packages that provide what [`missing`] looks for.
const PACKAGES: &str = "rustc-web rust-web-src qemu-system-x86 binutils gdisk";
/// Debian's clippy-driver, built for [`DEBIAN_RUSTC`]: lints the bare-metal
/// crates as the workspace wrapper of that rustc.
pub const DEBIAN_CLIPPY_DRIVER: &str = "/usr/bin/clippy-driver";
/// The Debian package that provides [`DEBIAN_CLIPPY_DRIVER`].
const CLIPPY_PACKAGE: &str = "rust-web-clippy";
/// Strips guest kernels for upload (`artifacts::strip_guests`).
pub const OBJCOPY: &str = "objcopy";

/// Checks the dependencies; installs missing packages when root, otherwise
/// fails with the command to run.
pub fn ensure() -> Result<()> {
    if rust_lld().is_none() {
        bail!(
            "rust-lld not found under `rustc --print sysroot`/lib/rustlib/x86_64-unknown-linux-gnu/bin: \
             it comes with rustup's Rust toolchain, which cargo and the host build use too"
        );
    }
    install(PACKAGES, missing)
}

/// [`ensure`], plus Debian's clippy for the bare-metal lint pass.
pub fn ensure_clippy() -> Result<()> {
    ensure()?;
    install(CLIPPY_PACKAGE, || {
        if Path::new(DEBIAN_CLIPPY_DRIVER).is_file() {
            Vec::new()
        } else {
            vec![format!("{DEBIAN_CLIPPY_DRIVER} (package {CLIPPY_PACKAGE})")]
        }
    })
}

/// Installs `packages` with apt-get if `missing` names anything; prints the
/// command and fails instead when not root.
fn install(packages: &str, missing: impl Fn() -> Vec<String>) -> Result<()> {
    let absent = missing();
    if absent.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get update && apt-get install -y {packages}");
    if !nix::unistd::geteuid().is_root() {
        bail!("missing: {}\nrun as root:\n  {command}", absent.join(", "));
    }
    eprintln!("xtask: missing {}; running: {command}", absent.join(", "));
    let status = Command::new("sh")
        .args(["-c", &command])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`{command}` failed ({status})");
    }
    let still = missing();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(", "));
    }
    Ok(())
}

/// The packaged tools that are missing, one description per item.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if which("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86_64 (package qemu-system-x86)".to_string());
    }
    if which(OBJCOPY).is_none() {
        missing.push(format!("{OBJCOPY} (package binutils)"));
    }
    if which("sgdisk").is_none() && !Path::new("/usr/sbin/sgdisk").is_file() {
        missing.push("sgdisk (package gdisk)".to_string());
    }
    match sysroot(DEBIAN_RUSTC) {
        None => missing.push(format!("{DEBIAN_RUSTC} (package rustc-web)")),
        Some(sysroot) => {
            let src = std_sources(&sysroot);
            if !src.is_dir() {
                missing.push(format!("{} (package rust-web-src)", src.display()));
            }
        }
    }
    missing
}

/// `rustc --print sysroot` of the given compiler, if it runs.
fn sysroot(rustc: &str) -> Option<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

fn std_sources(sysroot: &Path) -> PathBuf {
    sysroot.join("lib/rustlib/src/rust/library")
}

/// rustup's rust-lld (Debian's rustc ships none): the bare-metal linker.
pub fn rust_lld() -> Option<PathBuf> {
    let lld = sysroot("rustc")?.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
    lld.is_file().then_some(lld)
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}
