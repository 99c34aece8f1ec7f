//! The kernel modules the Linux guest loads at boot: Xen's split-driver
//! frontends, ext4 and the control-domain devices are modules (`=m`) in
//! Debian's kernel. The package ships no `modules.dep` (`depmod` writes
//! it at install), so each module's dependencies come from its own
//! `.modinfo` section (`depends=a,b`, written by modpost), and the
//! modules are loaded with `insmod` in an order where every module comes
//! after what it depends on.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What the guest loads, by module name (dependencies are added).
/// - `xen-blkfront`, `xen-netfront`: the split-driver frontends
///   (issue 17 milestone B);
/// - `ext4`, and `crc32c_generic` for its metadata checksums (the kernel
///   would `request_module("crc32c")` at mount, with no modprobe to
///   answer);
/// - `xen-privcmd`, `xen-evtchn`, `xen-gntdev`, `xen-gntalloc`, `xenfs`:
///   what a control domain's toolstack opens (milestone C).
pub const MODULES: &[&str] = &[
    "xen-blkfront",
    "xen-netfront",
    "crc32c_generic",
    "ext4",
    "xen-privcmd",
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xenfs",
];

/// Most modules the dependency walk may visit: a bound against a cycle
/// or a runaway dependency list in a damaged package.
const MAX_MODULES: usize = 64;

/// A module to put into the initramfs.
pub struct Module {
    /// Its name, as `depends=` and `insmod` see it (`xen-blkfront`).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// `MODULES` and everything they depend on, read from the unpacked
/// kernel package at `tree` (`lib/modules/VERSION/kernel/...`), in load
/// order: each module after its dependencies.
pub fn collect(tree: &Path, version: &str) -> Result<Vec<Module>> {
    let index = index(&tree.join("lib/modules").join(version).join("kernel"))?;
    let mut order = Vec::new();
    for name in MODULES {
        visit(&index, name, &mut order, &mut Vec::new())?;
    }
    order
        .into_iter()
        .map(|name| {
            let bytes = fs::read(&index[&name])?;
            Ok(Module { name, bytes })
        })
        .collect()
}

/// Every `.ko` under `dir`, by module name (file stem).
fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".ko"))
            {
                found.insert(stem.to_string(), path);
            }
        }
    }
    Ok(found)
}

/// Depth-first: `name`'s dependencies into `order`, then `name`.
/// `path` holds the modules being visited, to refuse a cycle.
fn visit(
    index: &BTreeMap<String, PathBuf>,
    name: &str,
    order: &mut Vec<String>,
    path: &mut Vec<String>,
) -> Result<()> {
    // modpost writes `-` and `_` interchangeably in names; files keep
    // the Makefile's spelling.
    let file_name = [
        name.to_string(),
        name.replace('_', "-"),
        name.replace('-', "_"),
    ]
    .into_iter()
    .find(|n| index.contains_key(n))
    .with_context(|| format!("module {name} is not in the kernel package"))?;
    if order.contains(&file_name) {
        return Ok(());
    }
    if path.contains(&file_name) || path.len() >= MAX_MODULES {
        bail!("module dependencies loop or run too deep at {file_name}");
    }
    path.push(file_name.clone());
    let elf = fs::read(&index[&file_name])?;
    for dep in depends(&elf).with_context(|| format!("reading {file_name}.ko"))? {
        visit(index, &dep, order, path)?;
    }
    path.pop();
    order.push(file_name);
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section (NUL-separated
/// `key=value` strings).
fn depends(elf: &[u8]) -> Result<Vec<String>> {
    let file = elf::ElfBytes::<elf::endian::AnyEndian>::minimal_parse(elf)?;
    let header = file
        .section_header_by_name(".modinfo")?
        .context("no .modinfo section")?;
    let (data, _) = file.section_data(&header)?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|list| list.split(|&b| b == b','))
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 relocatable file whose only section (besides the
    /// null one and the names) is `.modinfo` holding `modinfo`.
    fn module_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let (modinfo_at, names_at) = (64, 64 + modinfo.len());
        let sh_at = names_at + names.len();
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        (f[4], f[5], f[6]) = (2, 1, 1); // 64-bit, little endian, version 1
        f[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[40..48].copy_from_slice(&(sh_at as u64).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        f[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        f[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
        f.extend_from_slice(modinfo);
        f.extend_from_slice(names);
        let section = |name: u32, kind: u32, at: usize, len: usize| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&kind.to_le_bytes());
            s[24..32].copy_from_slice(&(at as u64).to_le_bytes());
            s[32..40].copy_from_slice(&(len as u64).to_le_bytes());
            s[48..56].copy_from_slice(&1u64.to_le_bytes());
            s
        };
        f.extend(vec![0u8; 64]);
        f.extend(section(1, 1, modinfo_at, modinfo.len())); // PROGBITS
        f.extend(section(10, 3, names_at, names.len())); // STRTAB
        f
    }

    #[test]
    fn depends_lists_the_modinfo_entry() {
        let elf = module_with_modinfo(b"license=GPL\0depends=jbd2,mbcache,crc16\0intree=Y\0");
        assert_eq!(depends(&elf).unwrap(), ["jbd2", "mbcache", "crc16"]);
        let none = module_with_modinfo(b"license=GPL\0depends=\0");
        assert!(depends(&none).unwrap().is_empty());
    }

    #[test]
    fn load_order_puts_dependencies_first_and_refuses_loops() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, deps: &str| {
            let info = format!("depends={deps}\0");
            fs::write(
                dir.path().join(format!("{name}.ko")),
                module_with_modinfo(info.as_bytes()),
            )
            .unwrap();
        };
        write("ext4", "jbd2,mbcache");
        write("jbd2", "");
        write("mbcache", "");
        write("xen-blkfront", "");
        let index = index(dir.path()).unwrap();
        let mut order = Vec::new();
        for name in ["xen_blkfront", "ext4", "jbd2"] {
            visit(&index, name, &mut order, &mut Vec::new()).unwrap();
        }
        assert_eq!(order, ["xen-blkfront", "jbd2", "mbcache", "ext4"]);

        write("a", "b");
        write("b", "a");
        let index = super::index(dir.path()).unwrap();
        let err = visit(&index, "a", &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        assert!(visit(&index, "absent", &mut Vec::new(), &mut Vec::new()).is_err());
    }
}
