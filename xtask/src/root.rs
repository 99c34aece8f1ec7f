//! Where the workspace is: found at run time from the current directory
//! upwards, as cargo finds it, so that a copy of the checkout builds and
//! boots its own files (never those of the tree xtask was compiled in).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The workspace root above (or at) the current directory.
pub fn workspace_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    find_from(&cwd)
}

/// The nearest directory from `start` upwards whose `Cargo.toml` has a
/// `[workspace]` table and which holds `xtask/` (this workspace, not
/// another one we are nested in).
fn find_from(start: &Path) -> Result<PathBuf> {
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let is_workspace = text.lines().any(|l| l.trim() == "[workspace]");
        if is_workspace && dir.join("xtask").join("Cargo.toml").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "no xen-core workspace (a Cargo.toml with [workspace] next to xtask/) in {} or above; \
         run cargo xtask inside the checkout",
        start.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with a workspace at `ws/` and a copy of it at `copy/`.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for ws in ["ws", "copy"] {
            let root = dir.path().join(ws);
            std::fs::create_dir_all(root.join("xtask/src")).unwrap();
            std::fs::create_dir_all(root.join("abi/src")).unwrap();
            std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
            std::fs::write(
                root.join("xtask/Cargo.toml"),
                "[package]\nname = \"xtask\"\n",
            )
            .unwrap();
            std::fs::write(root.join("abi/Cargo.toml"), "[package]\nname = \"abi\"\n").unwrap();
        }
        dir
    }

    #[test]
    fn the_root_is_found_from_any_directory_inside_it() {
        let t = tree();
        let ws = t.path().join("ws");
        assert_eq!(find_from(&ws).unwrap(), ws);
        assert_eq!(find_from(&ws.join("abi/src")).unwrap(), ws);
        assert_eq!(find_from(&ws.join("xtask")).unwrap(), ws);
        // A copy finds itself, not the original.
        let copy = t.path().join("copy");
        assert_eq!(find_from(&copy.join("abi")).unwrap(), copy);
        assert!(find_from(t.path())
            .unwrap_err()
            .to_string()
            .contains("no xen-core workspace"));
    }

    #[test]
    fn this_checkout_is_found() {
        let root = workspace_root().unwrap();
        assert!(root.join("ci/scenarios").is_dir(), "{}", root.display());
    }
}
