//! Xen's own store tools (`xenstore-ls`, `-read`, `-write`, ...) for the
//! host, to run against `dom0ctl xenstore proxy`: Debian's packages,
//! downloaded with `apt-get download` (no root needed, nothing installed
//! system-wide) and unpacked under `target/xen-tools/`, with a wrapper per
//! tool in `target/xen-tools/bin/` that points the dynamic loader at the
//! unpacked libraries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Debian's packages holding the tools and the libraries they load
/// (`xenstore-utils` → `libxenstore4` → `libxentoolcore1`).
const PACKAGES: [&str; 3] = ["xenstore-utils", "libxenstore4", "libxentoolcore1"];
/// Where they are unpacked, under the workspace.
const DIR: &str = "target/xen-tools";
/// The tools given a wrapper.
/// (`xenstore-control` is left out: Debian links it to a wrapper that
/// looks for an installed Xen.)
const TOOLS: [&str; 8] = [
    "xenstore-ls",
    "xenstore-read",
    "xenstore-write",
    "xenstore-rm",
    "xenstore-list",
    "xenstore-exists",
    "xenstore-chmod",
    "xenstore-watch",
];
/// Where Debian puts the libraries, inside the unpacked tree.
const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";

/// The directory of the wrappers (`{xen_tools}` in scenario steps).
pub fn bin_dir(root: &Path) -> PathBuf {
    root.join(DIR).join("bin")
}

/// Downloads and unpacks the tools unless they are there; returns
/// [`bin_dir`].
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let bin = bin_dir(root);
    if TOOLS.iter().all(|t| bin.join(t).is_file()) {
        return Ok(bin);
    }
    let tree = crate::debs::fetch_and_unpack(&root.join(DIR), &PACKAGES, "Xen's store tools")?;
    fs::create_dir_all(&bin)?;
    for tool in TOOLS {
        write_wrapper(&bin.join(tool), &tree, tool)?;
    }
    Ok(bin)
}

/// A shell script running the unpacked `tool` with its libraries.
fn write_wrapper(path: &Path, tree: &Path, tool: &str) -> Result<()> {
    let real = tree.join("usr/bin").join(tool);
    if !real.is_file() {
        bail!("{} is not in the unpacked packages", real.display());
    }
    let script = format!(
        "#!/bin/sh\n# Xen's {tool} from Debian's xenstore-utils (cargo xtask xen-tools).\n\
         LD_LIBRARY_PATH='{}' exec '{}' \"$@\"\n",
        tree.join(LIB_DIR).display(),
        real.display()
    );
    fs::write(path, script).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}
