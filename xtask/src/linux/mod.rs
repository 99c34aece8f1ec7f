//! Debian 12's stock Linux kernel and a busybox initramfs, for the Linux
//! PVH guest scenarios (issue 17): `linux-image-6.1.0-N-amd64` (the
//! package `linux-image-amd64` depends on) and `busybox-static`, fetched
//! with [`crate::debs`] and unpacked under [`DIR`].
//!
//! - `vmlinux`: the ELF kernel, the only form with the PVH entry note.
//!   The package ships a bzImage (`vmlinuz`); its payload, which the boot
//!   protocol header locates (`payload_offset`, `payload_length`,
//!   Documentation/arch/x86/boot.rst), is an XZ stream with the
//!   uncompressed size appended. `xz --single-stream` unpacks it, as
//!   Linux's `scripts/extract-vmlinux` does with the whole file.
//! - `initramfs.cpio`: a newc archive (the `cpio` crate) holding busybox,
//!   the kernel modules of [`modules::MODULES`] with their dependencies,
//!   e2fsprogs' `mke2fs` with its libraries ([`e2fsprogs`]) and [`INIT`]. Linux unpacks it into its rootfs and runs `/init`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

pub mod control;
mod e2fsprogs;
mod modules;

/// Where everything goes, under the workspace.
const DIR: &str = "target/linux";
/// The meta package naming the current kernel package.
const META_PACKAGE: &str = "linux-image-amd64";
/// Busybox, statically linked (no libraries in the initramfs).
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The guest's `/init`: busybox's applets, the kernel's file systems,
/// the modules (`/etc/modules`, in load order, each with the
/// `MODULE.PARAM=VALUE` words of the kernel command line that name it,
/// as modprobe passes them), then a shell on the
/// console (hvc0). `setsid cttyhack` gives the shell the console as its
/// controlling terminal (job control, ^C).
const INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
  args=$(tr ' ' '\\n' < /proc/cmdline | sed -n \"s/^$(echo $m | tr - _)\\.//p\")
  insmod /lib/modules/$m.ko $args || echo \"linux-guest: insmod $m failed\"
done
echo \"linux-guest: modules loaded:\" $(cat /etc/modules)
echo \"linux-guest: init on $(cat /sys/class/tty/console/active 2>/dev/null)\"
export PS1='linux-guest# '
exec setsid cttyhack /bin/sh
";
/// Folders the initramfs holds besides the files.
const DIRS: [&str; 8] = [
    "bin",
    "dev",
    "etc",
    "lib",
    "lib/modules",
    "proc",
    "sys",
    "tmp",
];
/// What the initramfs is made of, kept beside it: a cached initramfs
/// built from another recipe (an older [`INIT`] or module list) is
/// rebuilt.
fn recipe() -> String {
    format!(
        "{INIT}\n{:?}\n{:?}\n",
        modules::MODULES,
        e2fsprogs::PACKAGES
    )
}

/// The kernel and initramfs paths.
#[derive(Clone)]
pub struct LinuxGuest {
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    /// The control domain's ([`control`]).
    pub initramfs_control: PathBuf,
}

/// Where the guest's files are once [`ensure`] ran.
pub fn paths(root: &Path) -> LinuxGuest {
    let dir = root.join(DIR);
    LinuxGuest {
        vmlinux: dir.join("vmlinux"),
        initramfs: dir.join("initramfs.cpio"),
        initramfs_control: control::path(root),
    }
}

/// Fetches, extracts and builds what is missing; the paths.
pub fn ensure(root: &Path) -> Result<LinuxGuest> {
    let guest = paths(root);
    let recipe_file = root.join(DIR).join("initramfs.recipe");
    let current = fs::read_to_string(&recipe_file).is_ok_and(|r| r == recipe());
    if guest.vmlinux.is_file() && guest.initramfs.is_file() && current {
        return Ok(guest);
    }
    let kernel = kernel_package()?;
    let packages = [&[kernel.as_str(), BUSYBOX_PACKAGE], e2fsprogs::PACKAGES].concat();
    let tree = crate::debs::fetch_and_unpack(&root.join(DIR), &packages, "Linux")?;
    let version = kernel
        .strip_prefix("linux-image-")
        .context("kernel package name")?;
    let vmlinuz = fs::read(tree.join(format!("boot/vmlinuz-{version}")))
        .context("reading the package's vmlinuz")?;
    let vmlinux = unxz(bzimage_payload(&vmlinuz)?)?;
    write_atomically(&guest.vmlinux, &vmlinux)?;
    let busybox = fs::read(tree.join("bin/busybox")).context("reading busybox")?;
    let modules = modules::collect(&tree, version)?;
    let mkfs = e2fsprogs::collect(&tree)?;
    write_atomically(&guest.initramfs, &initramfs(&busybox, &modules, &mkfs)?)?;
    write_atomically(&recipe_file, recipe().as_bytes())?;
    // The unpacked tree is 400 MB of modules and firmware: not kept.
    for folder in ["root", "debs"] {
        fs::remove_dir_all(root.join(DIR).join(folder))?;
    }
    Ok(guest)
}

/// Why `spec`'s bundle cannot be built here: it names the Linux guest
/// and the packages could not be fetched (no registry in reach).
pub fn missing(root: &Path, spec: &crate::scenario::BundleSpec) -> Option<String> {
    let names_linux = std::iter::once(&spec.dom0)
        .chain(&spec.domus)
        .flat_map(|i| std::iter::once(&i.kernel).chain(&i.ramdisk))
        .any(|name| name.starts_with(crate::artifacts::LINUX_PREFIX));
    if !names_linux {
        return None;
    }
    if let Err(e) = ensure(root) {
        return Some(format!("Debian's Linux guest could not be fetched: {e:#}"));
    }
    control_missing(root, spec)
}

/// Builds the control initramfs if `spec` names it ([`control`]); why
/// not, if it cannot be built.
fn control_missing(root: &Path, spec: &crate::scenario::BundleSpec) -> Option<String> {
    let control = format!("{}{}", crate::artifacts::LINUX_PREFIX, control::ARTIFACT);
    if !spec
        .domus
        .iter()
        .any(|d| d.ramdisk.as_ref() == Some(&control))
    {
        return None;
    }
    let hello = crate::artifacts::Artifacts::built(root).find("example:hello")?;
    control::ensure(root, &paths(root).initramfs, &hello)
        .err()
        .map(|e| format!("the control initramfs could not be built: {e:#}"))
}

/// `linux-image-6.1.0-N-amd64`: what [`META_PACKAGE`] depends on.
fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", META_PACKAGE])
        .output()
        .context("running apt-cache depends")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .with_context(|| format!("`apt-cache depends {META_PACKAGE}` names no kernel package"))
}

/// XZ's stream header magic.
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";

/// The compressed kernel inside a bzImage: the boot protocol header
/// (version 2.08 or later) at 0x1f1 gives the setup size and the
/// payload's offset and length from the protected-mode code.
fn bzimage_payload(image: &[u8]) -> Result<&[u8]> {
    let u32_at = |at: usize| -> Result<u32> {
        let bytes = image.get(at..at + 4).context("bzImage header truncated")?;
        Ok(u32::from_le_bytes(bytes.try_into()?))
    };
    ensure!(
        image.get(0x202..0x206) == Some(b"HdrS"),
        "not a bzImage (no HdrS)"
    );
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + usize::try_from(u32_at(0x248)?)?;
    let len = usize::try_from(u32_at(0x24c)?)?;
    let payload = image
        .get(start..start + len)
        .context("bzImage payload outside the file")?;
    ensure!(
        payload.starts_with(XZ_MAGIC),
        "the bzImage payload is not XZ (only Debian's XZ kernels are handled)"
    );
    Ok(payload)
}

/// Decompresses the first XZ stream of `data` (the rest, Linux's appended
/// size, is ignored) with the `xz` tool.
fn unxz(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("xz")
        .args(["--decompress", "--stdout", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running xz (package xz-utils)")?;
    let mut stdin = child.stdin.take().context("xz stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("xz writer"))??;
    if !out.status.success() {
        bail!("xz failed to unpack the kernel ({})", out.status);
    }
    Ok(out.stdout)
}

/// The newc archive: [`DIRS`], `/bin/busybox`, `/init`, each module as
/// `/lib/modules/NAME.ko` and their load order in `/etc/modules`, and
/// `mkfs` ([`e2fsprogs`]) in the folders it needs.
fn initramfs(
    busybox: &[u8],
    modules: &[modules::Module],
    mkfs: &[e2fsprogs::File],
) -> Result<Vec<u8>> {
    use cpio::newc::{Builder, ModeFileType};
    let mut out = Vec::new();
    let dir = |name: &str| {
        Builder::new(name)
            .mode(0o755)
            .set_mode_file_type(ModeFileType::Directory)
            .nlink(2)
    };
    let file = |name: &str| {
        Builder::new(name)
            .mode(0o755)
            .set_mode_file_type(ModeFileType::Regular)
            .nlink(1)
    };
    for (ino, name) in (1..).zip(DIRS) {
        dir(name).ino(ino).write(&mut out, 0).finish()?;
    }
    for (ino, name) in (50..).zip(e2fsprogs::folders(mkfs, &DIRS)) {
        dir(&name).ino(ino).write(&mut out, 0).finish()?;
    }
    let order: String = modules.iter().map(|m| format!("{}\n", m.name)).collect();
    let mut files = vec![
        ("bin/busybox".to_string(), busybox),
        ("init".to_string(), INIT.as_bytes()),
        ("etc/modules".to_string(), order.as_bytes()),
    ];
    for m in modules {
        files.push((format!("lib/modules/{}.ko", m.name), &m.bytes));
    }
    for (ino, (name, bytes)) in (100..).zip(files) {
        let mut w = file(&name)
            .ino(ino)
            .write(&mut out, u32::try_from(bytes.len())?);
        w.write_all(bytes)?;
        w.finish()?;
    }
    for (ino, f) in (1000..).zip(mkfs) {
        let mode = if f.executable { 0o755 } else { 0o644 };
        let mut w = Builder::new(&f.path)
            .mode(mode)
            .set_mode_file_type(ModeFileType::Regular)
            .nlink(1)
            .ino(ino)
            .write(&mut out, u32::try_from(f.bytes.len())?);
        w.write_all(&f.bytes)?;
        w.finish()?;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

/// Writes `path` through a temporary file, so that an interrupted run
/// leaves no half file that [`ensure`] would take as done.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage header with `setup_sects` 1 and the payload at offset 16.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 1024 + 16];
        image[0x1f1] = 1;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        let len = u32::try_from(payload.len()).unwrap();
        image[0x24c..0x250].copy_from_slice(&len.to_le_bytes());
        image.extend_from_slice(payload);
        image
    }

    #[test]
    fn payload_is_found_by_the_header() {
        let payload = [XZ_MAGIC, b"rest"].concat();
        assert_eq!(bzimage_payload(&bzimage(&payload)).unwrap(), payload);
    }

    #[test]
    fn payloads_other_than_xz_and_bad_headers_are_refused() {
        assert!(bzimage_payload(&bzimage(b"\x1f\x8b gzip")).is_err());
        let mut image = bzimage(XZ_MAGIC);
        image[0x24c] = 0xff;
        assert!(bzimage_payload(&image).is_err());
        assert!(bzimage_payload(&[0u8; 0x300]).is_err());
    }

    #[test]
    fn initramfs_holds_init_and_busybox() {
        let module = modules::Module {
            name: "xen-blkfront".into(),
            bytes: b"KO".to_vec(),
        };
        let mkfs = e2fsprogs::File {
            path: "sbin/mke2fs".into(),
            bytes: b"MKE2FS".to_vec(),
            executable: true,
        };
        let archive = initramfs(b"BUSYBOX", &[module], &[mkfs]).unwrap();
        let mut reader = &archive[..];
        let mut names = Vec::new();
        loop {
            let entry = cpio::NewcReader::new(reader).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            names.push((entry.entry().name().to_string(), entry.entry().file_size()));
            reader = entry.finish().unwrap();
        }
        assert!(names.contains(&("init".to_string(), u32::try_from(INIT.len()).unwrap())));
        assert!(names.contains(&("bin/busybox".to_string(), 7)));
        assert!(names.contains(&("lib/modules/xen-blkfront.ko".to_string(), 2)));
        assert!(names.contains(&("etc/modules".to_string(), 13)));
        assert!(names.iter().any(|(n, _)| n == "dev"));
        let sbin = names.iter().position(|(n, _)| n == "sbin").unwrap();
        let mke2fs = names.iter().position(|(n, _)| n == "sbin/mke2fs").unwrap();
        assert!(sbin < mke2fs, "the folder before its file");
    }
}
