//! Debian packages fetched for the host without installing them: `apt-get
//! download` (no root needed, nothing installed system-wide) into a
//! `debs/` folder, then `dpkg-deb -x` into a tree beside it. Xen's store
//! tools, the reference Xen and the Linux guest come this way.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Downloads `packages` into `dir/debs` and unpacks every `.deb` there
/// into `dir/root`; returns that tree. `what` names them in the progress
/// line.
pub fn fetch_and_unpack(dir: &Path, packages: &[&str], what: &str) -> Result<PathBuf> {
    let debs = dir.join("debs");
    let tree = dir.join("root");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    eprintln!(
        "xtask: fetching {what}: apt-get download {}",
        packages.join(" ")
    );
    run(Command::new("apt-get")
        .arg("download")
        .args(packages)
        .current_dir(&debs))
    .context("apt-get download (run `apt-get update` first if the packages are unknown)")?;
    for entry in fs::read_dir(&debs)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        }
    }
    Ok(tree)
}

/// Runs `command`; an error if it cannot start or fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
