//! The management key (`mgmt::auth`): a fresh random key per boot, in a
//! file only its owner may read (for `dom0ctl --key-file`), and in the
//! boot bundle as a dom0 module (for dom0's agent) — never on a command
//! line that a log or a guest could see.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use abi::bundle::{BundleEntry, ImageKind, MGMT_KEY_MODULE};
use anyhow::{anyhow, Context, Result};
use mgmt::auth::{Key, KEY_LEN};

/// The key file's name in a scenario's directory.
pub const KEY_FILE_NAME: &str = "mgmt.key";

/// A key and the file that holds it.
pub struct MgmtKey {
    bytes: [u8; KEY_LEN],
    path: PathBuf,
}

impl MgmtKey {
    /// A new key from the operating system's random number generator,
    /// written to `path` (hex, mode 0600). An old file there is replaced:
    /// removed, then created anew, so that no one who could open the old
    /// one holds the new key.
    pub fn create(path: &Path) -> Result<MgmtKey> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random numbers from the OS: {e}"))?;
        let key = Key::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the old {}", path.display()))
            }
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the key file {}", path.display()))?;
        file.write_all(&key.to_hex())
            .and_then(|()| file.write_all(b"\n"))
            .with_context(|| format!("writing the key file {}", path.display()))?;
        Ok(MgmtKey {
            bytes,
            path: path.to_path_buf(),
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bundle entry that gives the key to dom0.
    pub fn bundle_entry(&self) -> BundleEntry<'_> {
        BundleEntry {
            kind: ImageKind::Dom0Module,
            name: MGMT_KEY_MODULE,
            cmdline: MGMT_KEY_MODULE,
            memory_mib: 0,
            vcpus: 0,
            control: false,
            image: &self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_file_is_private_fresh_and_matches_the_bundle_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let first = MgmtKey::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let key = Key::from_hex(&text).unwrap();
        assert_eq!(key.as_bytes(), first.bundle_entry().image);
        let second = MgmtKey::create(&path).unwrap();
        assert_ne!(first.bytes, second.bytes, "a fresh key each time");
        assert_eq!(first.bundle_entry().kind, ImageKind::Dom0Module);
    }
}
