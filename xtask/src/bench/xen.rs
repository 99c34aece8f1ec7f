//! `cargo xtask bench --reference xen`: the real Xen on the same QEMU
//! machine, with the same benchmark guest (`pathlen`) as its PVH dom0.
//!
//! Xen is Debian's `xen-hypervisor-4.17-amd64`, fetched with `apt-get
//! download` (no root needed) and unpacked under [`DIR`]; its `xen.gz`,
//! decompressed, is a multiboot ELF that QEMU's `-kernel` loads, the guest
//! is the multiboot module (`-initrd "FILE ARGS"`: the rest of the string
//! is the module's command line, dom0's). Xen does not end QEMU when dom0
//! powers off (`noreboot`): the run stops once the guest says it is done.
//!
//! Xen gives an HVM guest its own TSC origin, so dom0's `main-tsc` is not
//! counted from QEMU's start; Xen's `console_timestamps=raw` stamps each
//! of its lines with the host TSC instead, which under TCG Xen cannot
//! rewrite ("TSC only partially writable"): `boot-complete` is the stamp
//! of Xen's last boot line before dom0 runs (`Freed ...kB init memory`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::artifacts::Artifacts;
use crate::output;
use crate::qemu::{self, Qemu};
use crate::scenario::QemuSpec;

/// Debian's package of the Xen hypervisor.
const PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// Where it is unpacked, under the workspace.
const DIR: &str = "target/xen-ref";
/// `xen.gz` inside the package.
const XEN_GZ: &str = "boot/xen-4.17-amd64.gz";
/// Xen's command line: the COM1 console QEMU shows, a PVH dom0 without
/// IOMMU (QEMU has none), host-TSC stamps on Xen's lines.
const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 dom0=pvh dom0-iommu=none \
                           dom0_mem=64M noreboot console_timestamps=raw";
/// The benchmark guest's command line as Xen's dom0 (its domid is 0).
const GUEST_CMDLINE: &str = "role=solo self=0";
/// How long one reference run may take (Xen's boot is ~1e9 instructions).
const TIMEOUT: Duration = Duration::from_secs(900);

/// The decompressed Xen, fetched and unpacked if it is not there yet.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let dir = root.join(DIR);
    let xen = dir.join("xen");
    if xen.is_file() {
        return Ok(xen);
    }
    let tree = crate::debs::fetch_and_unpack(&dir, &[PACKAGE], "the reference Xen")?;
    let gz = tree.join(XEN_GZ);
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .with_context(|| format!("decompressing {}", gz.display()))?;
    if !out.status.success() {
        bail!("gzip -dc {} failed", gz.display());
    }
    std::fs::write(&xen, out.stdout).with_context(|| format!("writing {}", xen.display()))?;
    Ok(xen)
}

/// What one reference run printed, and how long it took.
pub struct XenRun {
    pub output: String,
    pub wall: Duration,
}

/// Boots Xen with the stripped `pathlen` as dom0 until it is done.
pub fn run_pathlen(root: &Path, artifacts: &Artifacts, xen: &Path) -> Result<XenRun> {
    let guest = root.join("target/bare/guests/pathlen");
    if !guest.is_file() || artifacts.find("example:pathlen").is_none() {
        bail!("{} was not built", guest.display());
    }
    // QEMU's multiboot loader: the module path, a space, its command line.
    let module = PathBuf::from(format!("{} {GUEST_CMDLINE}", guest.display()));
    let spec = QemuSpec {
        memory_mib: 256,
        smp: 1,
        append: Some(XEN_CMDLINE.to_string()),
        extra_args: ["-icount", "shift=0,sleep=off", "-rtc", "clock=vm"]
            .map(String::from)
            .to_vec(),
    };
    let command = qemu::command(xen, Some(&module), &spec, None, None);
    let start = Instant::now();
    let mut qemu = Qemu::spawn(command, false)?;
    let end = Regex::new(r"(?m)^pathlen: (done|failed)|Dom0 crashed|Panic on CPU")?;
    loop {
        let text = output::clean(&qemu.output());
        if end.is_match(&text) || qemu.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "Xen's run did not finish within {TIMEOUT:?}:\n{}",
                output::tail(&text, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed();
    let output = output::clean(&qemu.finish());
    if !output.contains("pathlen: done") {
        bail!(
            "the benchmark guest did not finish as Xen's dom0:\n{}",
            output::tail(&output, 30)
        );
    }
    Ok(XenRun { output, wall })
}

/// The host TSC stamp of Xen's last boot line before dom0 runs.
pub fn boot_complete(output: &str) -> Option<u64> {
    let line = Regex::new(r"(?m)^\(XEN\) \[([0-9a-f]{16})\] Freed \d+kB init memory").ok()?;
    let caps = line.captures(output)?;
    u64::from_str_radix(&caps[1], 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_boot_stamp() {
        let out = "(XEN) [000000003b9aca00] Scrubbing Free RAM\n\
                   (XEN) [000000003c000000] Freed 656kB init memory\n";
        assert_eq!(boot_complete(out), Some(0x3c00_0000));
        assert_eq!(boot_complete("(XEN) Freed 656kB init memory\n"), None);
    }
}
