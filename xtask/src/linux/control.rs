//! The control domain's initramfs (issue 17 C), artifact
//! `linux:initramfs-control`: Linux's initramfs ([`super::ensure`]) with a
//! second newc archive appended (Linux unpacks concatenated archives in
//! turn) that adds `/bin/xl-privcmd`, built statically for
//! `x86_64-unknown-linux-gnu` (glibc's static libraries), and a guest for
//! it to create: `/etc/xl/hello.toml` naming `/etc/xl/hello.elf` (the
//! `hello` example). The plain initramfs, which the other Linux
//! scenarios load, stays as it is.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The artifact name (after `linux:`).
pub const ARTIFACT: &str = "initramfs-control";
/// Where the static build goes (its own target dir: other flags).
const TARGET_DIR: &str = "target/static";
/// The host triple it is built for.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The guest `xl-privcmd create` builds.
const HELLO_TOML: &str = "name = \"hello\"\nkernel = \"hello.elf\"\nmemory = 16\n";

/// Where the control initramfs is.
pub fn path(root: &Path) -> PathBuf {
    root.join(super::DIR).join("initramfs-control.cpio")
}

/// Builds `xl-privcmd` statically and writes [`path`] from the plain
/// initramfs at `base` and the `hello` kernel at `hello`.
pub fn ensure(root: &Path, base: &Path, hello: &Path) -> Result<PathBuf> {
    let xl = build_xl_privcmd(root)?;
    let mut bytes = fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    bytes.extend(archive(
        &fs::read(&xl).context("reading xl-privcmd")?,
        &fs::read(hello).with_context(|| format!("reading {}", hello.display()))?,
    )?);
    let out = path(root);
    super::write_atomically(&out, &bytes)?;
    Ok(out)
}

/// `cargo build -p xl-privcmd --release` for [`TARGET`] with
/// `+crt-static`; the binary.
fn build_xl_privcmd(root: &Path) -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        // Without debug info and symbols: 63 MB with them, in a guest
        // of 256 MiB that unpacks its initramfs into RAM.
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=symbols",
        )
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .args(["build", "-p", "xl-privcmd", "--release", "--target", TARGET])
        .args(["--target-dir", TARGET_DIR])
        .status()
        .context("running cargo for xl-privcmd")?;
    if !status.success() {
        bail!("building xl-privcmd statically failed ({status})");
    }
    Ok(root
        .join(TARGET_DIR)
        .join(TARGET)
        .join("release/xl-privcmd"))
}

/// The appended archive: `/bin/xl-privcmd`, `/etc/xl/hello.toml`,
/// `/etc/xl/hello.elf`.
fn archive(xl: &[u8], hello: &[u8]) -> Result<Vec<u8>> {
    use cpio::newc::{Builder, ModeFileType};
    let mut out = Vec::new();
    Builder::new("etc/xl")
        .ino(1000)
        .mode(0o755)
        .set_mode_file_type(ModeFileType::Directory)
        .nlink(2)
        .write(&mut out, 0)
        .finish()?;
    let files: [(&str, &[u8]); 3] = [
        ("bin/xl-privcmd", xl),
        ("etc/xl/hello.toml", HELLO_TOML.as_bytes()),
        ("etc/xl/hello.elf", hello),
    ];
    for (ino, (name, bytes)) in (1001..).zip(files) {
        let mut w = Builder::new(name)
            .ino(ino)
            .mode(0o755)
            .set_mode_file_type(ModeFileType::Regular)
            .nlink(1)
            .write(&mut out, u32::try_from(bytes.len())?);
        w.write_all(bytes)?;
        w.finish()?;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appended_archive_holds_the_tool_and_the_guest() {
        let archive = archive(b"XL", b"\x7fELF").unwrap();
        let mut reader = archive.as_slice();
        let mut names = Vec::new();
        loop {
            let entry = cpio::NewcReader::new(reader).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            names.push(entry.entry().name().to_string());
            reader = entry.finish().unwrap();
        }
        assert_eq!(
            names,
            [
                "etc/xl",
                "bin/xl-privcmd",
                "etc/xl/hello.toml",
                "etc/xl/hello.elf"
            ]
        );
    }
}
