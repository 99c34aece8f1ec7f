//! Assembling boot bundles (format: `abi::bundle`) from built kernels, and
//! damaging them on purpose for the scenarios that test xen-core's checks.

use std::path::{Path, PathBuf};

use abi::bundle::{BundleBuilder, BundleEntry, ImageKind};
use anyhow::{anyhow, Context, Result};

use crate::artifacts::Artifacts;
use crate::mgmt_key::MgmtKey;
use crate::scenario::{self, BundleSpec, Corruption, ImageSpec};

/// Where `up`, `soak` and `build` write bundles, under the workspace
/// root.
const BUNDLE_DIR: &str = "target/bare/bundles";

/// Builds the bundle described by `spec` (with `key` as a dom0 module, if
/// given) and writes it as `NAME.bundle` in [`BUNDLE_DIR`].
pub fn write(
    root: &Path,
    artifacts: &Artifacts,
    spec: &BundleSpec,
    name: &str,
    key: Option<&MgmtKey>,
) -> Result<PathBuf> {
    let dir = root.join(BUNDLE_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_in(&dir, artifacts, spec, name, key)
}

/// Like [`write`], into `dir`: a scenario writes its bundle into its own
/// run directory, so that two runs of one scenario at once (or a
/// scenario and `up`) never boot each other's bundle and key.
pub fn write_in(
    dir: &Path,
    artifacts: &Artifacts,
    spec: &BundleSpec,
    name: &str,
    key: Option<&MgmtKey>,
) -> Result<PathBuf> {
    let mut bytes = assemble(artifacts, spec, key)?;
    if let Some(corruption) = spec.corrupt {
        corrupt(&mut bytes, corruption);
    }
    let path = dir.join(format!("{name}.bundle"));
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Builds the bundle `cargo xtask up` boots (ci/run.toml), without a key.
pub fn write_default(root: &Path, artifacts: &Artifacts) -> Result<PathBuf> {
    let config = scenario::load_run_config(root)?;
    write(root, artifacts, &config.bundle, "default", None)
}

/// The bundle's bytes: dom0 first, then the domUs whose kernels were
/// built, then the key's dom0 module.
fn assemble(artifacts: &Artifacts, spec: &BundleSpec, key: Option<&MgmtKey>) -> Result<Vec<u8>> {
    let mut images = vec![(
        ImageKind::Dom0Kernel,
        &spec.dom0,
        read_kernel(artifacts, &spec.dom0)?,
    )];
    for domu in &spec.domus {
        match read_kernel(artifacts, domu) {
            Ok(image) => images.push((ImageKind::DomUKernel, domu, image)),
            Err(_) if domu.optional => {
                println!("xtask: leaving out {}: not built", domu.kernel);
            }
            Err(e) => return Err(e),
        }
    }
    let ramdisks = read_ramdisks(artifacts, spec, &images)?;
    let mut builder = BundleBuilder::new();
    for (kind, spec, image) in &images {
        builder
            .push(BundleEntry {
                kind: *kind,
                name: spec.name.as_deref().unwrap_or("dom0"),
                cmdline: &spec.cmdline,
                memory_mib: spec.memory_mib,
                vcpus: spec.vcpus,
                control: spec.control,
                image,
            })
            .map_err(|e| anyhow!("bundle: {e}"))?;
    }
    for (name, image) in &ramdisks {
        builder
            .push(BundleEntry {
                kind: ImageKind::DomUModule,
                name,
                cmdline: "",
                memory_mib: 0,
                vcpus: 0,
                control: false,
                image,
            })
            .map_err(|e| anyhow!("bundle: {e}"))?;
    }
    if let Some(key) = key {
        builder
            .push(key.bundle_entry())
            .map_err(|e| anyhow!("bundle: {e}"))?;
    }
    builder.build().map_err(|e| anyhow!("bundle: {e}"))
}

/// The domUs' ramdisks (`DomUModule` entries, named as their domU) of
/// the domUs in `images`.
fn read_ramdisks(
    artifacts: &Artifacts,
    spec: &BundleSpec,
    images: &[(ImageKind, &ImageSpec, Vec<u8>)],
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut ramdisks = Vec::new();
    for domu in &spec.domus {
        let Some(ramdisk) = &domu.ramdisk else {
            continue;
        };
        let name = domu
            .name
            .clone()
            .ok_or_else(|| anyhow!("a domU with a ramdisk needs a name"))?;
        if !images
            .iter()
            .any(|(_, s, _)| s.name.as_ref() == Some(&name))
        {
            continue; // its optional kernel was left out
        }
        let path = artifacts
            .find(ramdisk)
            .ok_or_else(|| anyhow!("ramdisk {ramdisk} has not been built"))?;
        let image = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ramdisks.push((name, image));
    }
    Ok(ramdisks)
}

/// The image's kernel as the bundle carries it: stripped of symbols and
/// debug info (xen-core checksums every byte at boot, and dom0's debug
/// info alone is most of its 18 MB).
fn read_kernel(artifacts: &Artifacts, spec: &ImageSpec) -> Result<Vec<u8>> {
    let path = artifacts
        .stripped(&spec.kernel)?
        .ok_or_else(|| anyhow!("kernel {} has not been built", spec.kernel))?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Damages a valid bundle so that parsing it must fail the given way.
fn corrupt(bytes: &mut Vec<u8>, corruption: Corruption) {
    match corruption {
        Corruption::Checksum => {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
        }
        Corruption::Truncate => bytes.truncate(bytes.len() / 2),
        Corruption::Magic => bytes[..4].copy_from_slice(b"JUNK"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::bundle::{Bundle, BundleError};

    fn valid() -> Vec<u8> {
        let mut builder = BundleBuilder::new();
        builder
            .push(BundleEntry {
                kind: ImageKind::Dom0Kernel,
                name: "dom0",
                cmdline: "",
                memory_mib: 64,
                vcpus: 1,
                control: false,
                image: &[0x7f; 5000],
            })
            .unwrap();
        builder.build().unwrap()
    }

    #[test]
    fn each_corruption_is_caught_for_its_reason() {
        for (corruption, check) in [
            (
                Corruption::Checksum,
                (|e| matches!(e, BundleError::ChecksumMismatch { .. })) as fn(BundleError) -> bool,
            ),
            (Corruption::Truncate, |e| {
                matches!(e, BundleError::Truncated { .. })
            }),
            (Corruption::Magic, |e| {
                matches!(e, BundleError::BadMagic { .. })
            }),
        ] {
            let mut bytes = valid();
            corrupt(&mut bytes, corruption);
            let error = Bundle::parse(&bytes).unwrap_err();
            assert!(check(error), "{corruption:?}: {error}");
        }
    }
}
