//! The management socket: the host end of COM2, which QEMU serves as a
//! UNIX socket (`-serial unix:PATH,server=on,wait=off`) and `dom0ctl`
//! connects to. Also the scenario's private directory that holds it.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{bail, Context, Result};

/// The COM1 line dom0's management agent prints once it serves COM2
/// (`(d0)` is xen-core's tag for dom0's console lines).
pub const AGENT_READY: &str = r"^\(d0\) dom0: mgmt: serving the management channel";

/// Paths to remove when xtask ends, also on Ctrl-C (see `qemu`).
static OWNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes every path still owned (sockets, scenario directories).
pub fn remove_owned() {
    let owned = OWNED.lock().unwrap_or_else(PoisonError::into_inner);
    for path in owned.iter() {
        remove(path);
    }
}

fn remove(path: &Path) {
    let _ = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

/// A path xtask created and removes again when this guard drops.
pub struct Owned(PathBuf);

impl Owned {
    pub(crate) fn new(path: PathBuf) -> Self {
        OWNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.clone());
        Owned(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        remove(&self.0);
        OWNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p| p != &self.0);
    }
}

/// Makes `path` free for QEMU to listen on: refuses if something answers
/// there (a running hypervisor), removes a stale socket left by a QEMU
/// that was killed. The returned guard removes QEMU's socket at the end.
pub fn claim(path: &Path) -> Result<Owned> {
    let shown = path.display();
    if path.to_str().is_none_or(|p| p.contains(',')) {
        // QEMU's option syntax separates with commas.
        bail!("socket path {shown} must be UTF-8 without commas");
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {shown}")),
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("{shown} exists and is not a socket; remove it or choose another path")
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => bail!(
                "{shown} is in use: a hypervisor (QEMU) is already running there. \
                 Stop it (Ctrl-C in its terminal) or choose another socket with --socket PATH"
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {shown}"))?;
            }
            Err(e) => return Err(e).with_context(|| format!("probing {shown}")),
        },
    }
    Ok(Owned::new(path.to_path_buf()))
}

/// A fresh private directory for one scenario run (its socket, generated
/// configs), removed at the end.
pub fn scenario_dir(name: &str) -> Result<Owned> {
    let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Owned::new(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_live_socket_is_refused_and_a_stale_one_removed() {
        let dir = scenario_dir("mgmt-socket-test").unwrap();
        let path = dir.path().join("mgmt.sock");
        assert!(claim(&path).is_ok(), "a free path");

        let listener = UnixListener::bind(&path).unwrap();
        let error = claim(&path).err().unwrap().to_string();
        assert!(error.contains("is in use"), "{error}");

        drop(listener); // The file stays: a stale socket.
        assert!(path.exists());
        let guard = claim(&path).unwrap();
        assert!(!path.exists(), "the stale socket was removed");
        drop(guard);

        std::fs::write(&path, "not a socket").unwrap();
        assert!(claim(&path)
            .err()
            .unwrap()
            .to_string()
            .contains("not a socket"));
        assert!(claim(Path::new("/tmp/a,b.sock")).is_err());
        let dir_path = dir.path().to_path_buf();
        drop(dir);
        assert!(!dir_path.exists());
    }
}
