//! e2fsprogs' `mke2fs` for the Linux guest (issue 17 milestone B: an
//! ext4 file system on xen-blkfront's `/dev/xvda`). Busybox's `mke2fs`
//! makes only ext2 (it has no `-t`), so the guest gets Debian's own,
//! with what it links: each library its ELF `DT_NEEDED` entries name
//! (and theirs, transitively) and the program interpreter (`PT_INTERP`),
//! read from the unpacked packages, at the paths the packages give them
//! (the dynamic loader searches `/lib/x86_64-linux-gnu` and
//! `/usr/lib/x86_64-linux-gnu` without a cache). The package tree's
//! symbolic links (`libext2fs.so.2 -> libext2fs.so.2.4`, the absolute
//! `/lib64/ld-linux-x86-64.so.2`) are resolved inside the tree, and the
//! initramfs holds the files they end at.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The packages: the program and the libraries it links (`libc6` gives
/// the loader and libc).
pub const PACKAGES: &[&str] = &[
    "e2fsprogs",
    "libext2fs2",
    "libcom-err2",
    "libblkid1",
    "libuuid1",
    "libc6",
];
/// The program, in the tree and in the initramfs. Busybox's shell runs
/// its own applet for a bare `mke2fs`: call this one as `/sbin/mke2fs`.
const PROGRAM: &str = "sbin/mke2fs";
/// Its configuration (the ext4 feature set of `-t ext4`).
const CONFIG: &str = "etc/mke2fs.conf";
/// Where libraries are looked for, as the loader does.
const LIBRARY_DIRS: [&str; 2] = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];
/// Most libraries followed: a bound against a runaway `DT_NEEDED` walk.
const MAX_LIBRARIES: usize = 16;
/// Most symbolic links followed for one path.
const MAX_LINKS: usize = 8;

/// A file for the initramfs: its path there (no leading `/`) and bytes.
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Whether it is run (the program, the loader): mode 0755, else 0644.
    pub executable: bool,
}

/// `mke2fs`, its configuration, its libraries and loader, read from the
/// unpacked packages at `tree`.
pub fn collect(tree: &Path) -> Result<Vec<File>> {
    let program = read(tree, PROGRAM)?;
    let interpreter = interpreter(&program)?;
    let mut files = vec![
        File {
            path: CONFIG.into(),
            bytes: read(tree, CONFIG)?,
            executable: false,
        },
        File {
            bytes: read(tree, &interpreter)?,
            path: interpreter,
            executable: true,
        },
    ];
    let mut pending = needed(&program)?;
    files.push(File {
        path: PROGRAM.into(),
        bytes: program,
        executable: true,
    });
    // libc names the loader too: it is there already.
    let loader = Path::new(&files[1].path).file_name();
    let mut seen: BTreeSet<String> = loader
        .map(|n| n.to_string_lossy().into_owned())
        .into_iter()
        .collect();
    while let Some(soname) = pending.pop() {
        if !seen.insert(soname.clone()) {
            continue;
        }
        if seen.len() > MAX_LIBRARIES + 1 {
            bail!("{PROGRAM} needs more than {MAX_LIBRARIES} libraries");
        }
        let path = LIBRARY_DIRS
            .iter()
            .map(|dir| format!("{dir}/{soname}"))
            .find(|p| fs::symlink_metadata(tree.join(p)).is_ok())
            .with_context(|| format!("{soname} (needed by {PROGRAM}) is in no package"))?;
        let bytes = read(tree, &path)?;
        pending.extend(needed(&bytes).with_context(|| format!("reading {path}"))?);
        files.push(File {
            path,
            bytes,
            executable: false,
        });
    }
    Ok(files)
}

/// The folders `files` lie in that `existing` lacks, each after its own
/// parent (the initramfs unpacker creates no missing parents).
pub fn folders(files: &[File], existing: &[&str]) -> Vec<String> {
    let mut all = BTreeSet::new();
    for file in files {
        let mut at = Path::new(&file.path).parent();
        while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
            all.insert(dir.to_string_lossy().into_owned());
            at = dir.parent();
        }
    }
    // Sorted, a folder comes right before the folders under it.
    all.into_iter()
        .filter(|d| !existing.contains(&d.as_str()))
        .collect()
}

/// The bytes at `path` in `tree`, symbolic links followed inside it.
fn read(tree: &Path, path: &str) -> Result<Vec<u8>> {
    let at = resolve(tree, path)?;
    fs::read(&at).with_context(|| format!("reading {}", at.display()))
}

/// Where `path` (relative to `tree`) ends once its symbolic links are
/// followed, an absolute target counting from `tree`.
fn resolve(tree: &Path, path: &str) -> Result<PathBuf> {
    let mut at = tree.join(path);
    for _ in 0..MAX_LINKS {
        let meta = fs::symlink_metadata(&at)
            .with_context(|| format!("{path} is not in the packages ({})", at.display()))?;
        if !meta.file_type().is_symlink() {
            return Ok(at);
        }
        let target = fs::read_link(&at)?;
        at = lexical(&match target.strip_prefix("/") {
            Ok(inside) => tree.join(inside),
            Err(_) => at.parent().context("a link at the root")?.join(target),
        });
        if !at.starts_with(lexical(tree)) {
            bail!("{path} links outside the package tree");
        }
    }
    bail!("{path}: more than {MAX_LINKS} symbolic links")
}

/// `path` with its `..` and `.` components applied to the ones before
/// (without asking the file system), so that `starts_with` sees where
/// a relative link really ends.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The ELF's `DT_NEEDED` library names.
fn needed(elf: &[u8]) -> Result<Vec<String>> {
    let file = elf::ElfBytes::<elf::endian::AnyEndian>::minimal_parse(elf)?;
    let Some(dynamic) = file.dynamic()? else {
        return Ok(Vec::new());
    };
    let header = file
        .section_header_by_name(".dynstr")?
        .context("no .dynstr section")?;
    let strings = file.section_data_as_strtab(&header)?;
    dynamic
        .iter()
        .filter(|d| d.d_tag == elf::abi::DT_NEEDED)
        .map(|d| Ok(strings.get(usize::try_from(d.d_val())?)?.to_string()))
        .collect()
}

/// The ELF's program interpreter (`PT_INTERP`), without the leading `/`.
fn interpreter(elf: &[u8]) -> Result<String> {
    let file = elf::ElfBytes::<elf::endian::AnyEndian>::minimal_parse(elf)?;
    let segments = file.segments().context("no program headers")?;
    let header = segments
        .iter()
        .find(|p| p.p_type == elf::abi::PT_INTERP)
        .context("no PT_INTERP (not a dynamic program)")?;
    let name = file.segment_data(&header)?;
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    let name = std::str::from_utf8(name).context("PT_INTERP is not UTF-8")?;
    Ok(name.trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_followed_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        fs::create_dir_all(tree.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(tree.join("lib64")).unwrap();
        fs::write(tree.join("lib/x86_64-linux-gnu/ld.so.2"), b"LD").unwrap();
        fs::write(tree.join("lib/x86_64-linux-gnu/libx.so.2.4"), b"X").unwrap();
        symlink("libx.so.2.4", tree.join("lib/x86_64-linux-gnu/libx.so.2")).unwrap();
        // Absolute: it must not reach the host's /lib.
        symlink("/lib/x86_64-linux-gnu/ld.so.2", tree.join("lib64/ld.so.2")).unwrap();
        symlink("../../../etc/passwd", tree.join("lib64/out")).unwrap();
        symlink("loop", tree.join("lib64/loop")).unwrap();
        assert_eq!(read(tree, "lib/x86_64-linux-gnu/libx.so.2").unwrap(), b"X");
        assert_eq!(read(tree, "lib64/ld.so.2").unwrap(), b"LD");
        assert!(read(tree, "lib64/out").is_err());
        assert!(read(tree, "lib64/loop").is_err());
        assert!(read(tree, "lib64/absent").is_err());
    }

    #[test]
    fn folders_come_before_their_contents_and_skip_existing_ones() {
        let file = |path: &str| File {
            path: path.into(),
            bytes: Vec::new(),
            executable: false,
        };
        let files = [
            file("usr/lib/x86_64-linux-gnu/libblkid.so.1"),
            file("lib/x86_64-linux-gnu/libc.so.6"),
            file("sbin/mke2fs"),
            file("etc/mke2fs.conf"),
        ];
        assert_eq!(
            folders(&files, &["etc", "lib"]),
            [
                "lib/x86_64-linux-gnu",
                "sbin",
                "usr",
                "usr/lib",
                "usr/lib/x86_64-linux-gnu"
            ]
        );
    }

    /// The host's own programs are ELF files with the same layout.
    #[test]
    fn a_dynamic_program_names_its_libraries_and_loader() {
        let Ok(program) = fs::read("/bin/sh") else {
            return;
        };
        let libs = needed(&program).unwrap();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        assert!(interpreter(&program).unwrap().contains("ld-linux"));
    }
}
