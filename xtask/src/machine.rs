//! The devices dom0 drives on the QEMU machine (issue 10): a raw disk
//! image as `virtio-blk-pci`, the management NIC (`virtio-net-pci` on QEMU
//! user networking, loopback only, one TCP port forwarded to dom0's
//! agent) and the uplink NIC for guests (user networking, `restrict=on`).
//! The PCI slots and the guest port are the contract in `abi::machine`.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use abi::machine::{MGMT_TCP_PORT, UPLINK_FORWARD_GUEST, UPLINK_HOST_SERVICE};
use anyhow::{bail, Context, Result};

use crate::mgmt_socket::Owned;

/// Size of a disk image xtask creates: 64 MiB, sparse (a fresh one takes
/// no space until dom0 writes to it).
pub const DISK_BYTES: u64 = 64 << 20;
/// Where the disk images live, under the workspace root.
pub const DISK_DIR: &str = "target/disks";
/// `cargo xtask up`'s image in [`DISK_DIR`]: kept from run to run.
pub const UP_DISK: &str = "dom0.img";
/// The management NIC's MAC: locally administered (QEMU's 52:54:00 prefix).
pub const MGMT_MAC: &str = "52:54:00:d0:00:01";
/// The uplink NIC's MAC.
pub const UPLINK_MAC: &str = "52:54:00:d0:00:02";
/// PCI slots on bus 0 (`abi::machine`): the management NIC first, so dom0
/// finds it first on the bus.
const MGMT_SLOT: u8 = 2;
const UPLINK_SLOT: u8 = 3;
const DISK_SLOT: u8 = 4;
/// The program QEMU runs for each guest connection to
/// [`UPLINK_HOST_SERVICE`] (under the workspace root): it relays the
/// connection to the host's service port.
pub const UPLINK_RELAY: &str = "xtask/uplink-relay.py";

/// The disk image and the host ports of one QEMU run.
pub struct MachineDevices {
    disk: PathBuf,
    mgmt_host_port: u16,
    /// Forwarded to [`UPLINK_FORWARD_GUEST`] through the uplink.
    uplink_host_port: u16,
    /// Where guests' connections to [`UPLINK_HOST_SERVICE`] arrive.
    host_service_port: u16,
    relay: PathBuf,
    /// A per-run image, removed when the run ends (also on Ctrl-C).
    _per_run: Option<Owned>,
}

impl MachineDevices {
    /// `cargo xtask up`: [`UP_DISK`], created sparse if missing and kept
    /// afterwards (what dom0 stores there survives a restart).
    pub fn persistent(root: &Path) -> Result<Self> {
        let disk = disk_dir(root)?.join(UP_DISK);
        if !disk.exists() {
            create_sparse(&disk)?;
        }
        Self::with_disk(root, disk, None)
    }

    /// A scenario or soak run: a fresh sparse image `NAME-PID.img` in
    /// [`DISK_DIR`], removed when this drops. Fresh so that every run
    /// starts from the same disk; per run because QEMU locks an image
    /// against a second writer.
    pub fn per_run(root: &Path, name: &str) -> Result<Self> {
        let disk = disk_dir(root)?.join(format!("{name}-{}.img", std::process::id()));
        let owned = Owned::new(disk.clone());
        if disk.exists() {
            std::fs::remove_file(&disk).with_context(|| format!("removing {}", disk.display()))?;
        }
        create_sparse(&disk)?;
        Self::with_disk(root, disk, Some(owned))
    }

    /// The same disk image for the next boot of a scenario (`[then]`),
    /// with newly picked host ports; `self` still owns the image.
    pub fn again(&self) -> Result<Self> {
        Self::with_ports(self.disk.clone(), self.relay.clone(), None)
    }

    fn with_disk(root: &Path, disk: PathBuf, per_run: Option<Owned>) -> Result<Self> {
        Self::with_ports(disk, root.join(UPLINK_RELAY), per_run)
    }

    fn with_ports(disk: PathBuf, relay: PathBuf, per_run: Option<Owned>) -> Result<Self> {
        let [mgmt_host_port, uplink_host_port, host_service_port] = free_loopback_ports()?;
        Ok(MachineDevices {
            disk,
            mgmt_host_port,
            uplink_host_port,
            host_service_port,
            relay,
            _per_run: per_run,
        })
    }

    /// The disk image QEMU gets.
    pub fn disk(&self) -> &Path {
        &self.disk
    }

    /// The host port on 127.0.0.1 that QEMU forwards to dom0's
    /// [`MGMT_TCP_PORT`] on the management NIC.
    pub fn mgmt_host_port(&self) -> u16 {
        self.mgmt_host_port
    }

    /// The host port on 127.0.0.1 that QEMU forwards through the uplink
    /// to [`UPLINK_FORWARD_GUEST`] (a guest's HTTP server).
    pub fn uplink_host_port(&self) -> u16 {
        self.uplink_host_port
    }

    /// The host port on 127.0.0.1 that guests reach at
    /// [`UPLINK_HOST_SERVICE`]: a host service listens there.
    pub fn host_service_port(&self) -> u16 {
        self.host_service_port
    }

    /// The QEMU arguments: the two NICs and the disk, at fixed slots.
    /// `restrict=on` keeps both NICs off the host's network: the guests
    /// reach nothing but the relayed service, and only the forwarded
    /// ports reach the guests.
    pub fn qemu_args(&self) -> Vec<String> {
        let port = self.mgmt_host_port;
        let disk = self.disk.display().to_string().replace(',', ",,");
        [
            "-netdev",
            &format!("user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{MGMT_TCP_PORT}"),
            "-device",
            &format!("virtio-net-pci,netdev=mgmt,mac={MGMT_MAC},addr={MGMT_SLOT:#x}"),
            "-netdev",
            &self.uplink_netdev(),
            "-device",
            &format!("virtio-net-pci,netdev=uplink,mac={UPLINK_MAC},addr={UPLINK_SLOT:#x}"),
            "-drive",
            &format!("file={disk},format=raw,if=none,id=disk"),
            "-device",
            &format!("virtio-blk-pci,drive=disk,addr={DISK_SLOT:#x}"),
        ]
        .map(String::from)
        .to_vec()
    }
}

impl MachineDevices {
    /// The uplink's user networking: loopback only, one port forwarded in,
    /// one guest address relayed out (per connection, by [`UPLINK_RELAY`]).
    fn uplink_netdev(&self) -> String {
        let ([a, b, c, d], guest_port) = UPLINK_FORWARD_GUEST;
        let ([e, f, g, h], service_port) = UPLINK_HOST_SERVICE;
        // QEMU's option syntax doubles a comma inside a value.
        let relay = self.relay.display().to_string().replace(',', ",,");
        format!(
            "user,id=uplink,restrict=on,\
             hostfwd=tcp:127.0.0.1:{}-{a}.{b}.{c}.{d}:{guest_port},\
             guestfwd=tcp:{e}.{f}.{g}.{h}:{service_port}-cmd:python3 {relay} {}",
            self.uplink_host_port, self.host_service_port
        )
    }
}

fn disk_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join(DISK_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A new file of [`DISK_BYTES`] with no data blocks (`set_len` on an empty
/// file makes a hole).
fn create_sparse(path: &Path) -> Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(DISK_BYTES)
        .with_context(|| format!("sizing {}", path.display()))
}

/// `N` distinct TCP ports on 127.0.0.1 free now: the kernel picks one for
/// each of `N` listeners open together, closed at once. Another program
/// could take one before QEMU binds it; QEMU then fails with "Could not
/// set up host forwarding rule" and the run fails visibly.
fn free_loopback_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
        if *port == 0 {
            bail!("the kernel gave port 0");
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_per_run_image_is_fresh_sparse_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let devices = MachineDevices::per_run(root.path(), "t").unwrap();
        let path = devices.disk().to_path_buf();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), DISK_BYTES);
        assert!(
            meta.blocks() * 512 < DISK_BYTES / 16,
            "sparse: {} blocks",
            meta.blocks()
        );
        drop(devices);
        assert!(!path.exists());
    }

    #[test]
    fn the_persistent_image_keeps_its_data() {
        let root = tempfile::tempdir().unwrap();
        let path = MachineDevices::persistent(root.path())
            .unwrap()
            .disk()
            .to_path_buf();
        assert_eq!(path, root.path().join(DISK_DIR).join(UP_DISK));
        std::fs::write(&path, b"data").unwrap();
        let again = MachineDevices::persistent(root.path()).unwrap();
        assert_eq!(std::fs::read(again.disk()).unwrap(), b"data");
    }

    #[test]
    fn a_next_boot_shares_the_image_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let first = MachineDevices::per_run(root.path(), "two").unwrap();
        std::fs::write(first.disk(), b"written by boot 1").unwrap();
        let second = first.again().unwrap();
        assert_eq!(second.disk(), first.disk());
        drop(second);
        assert_eq!(std::fs::read(first.disk()).unwrap(), b"written by boot 1");
        let path = first.disk().to_path_buf();
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn the_arguments_name_both_nics_and_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a,b");
        let devices = MachineDevices::per_run(&dir, "args").unwrap();
        let port = devices.mgmt_host_port();
        assert_ne!(port, 0);
        let args = devices.qemu_args().join(" ");
        assert!(args.contains(&format!(
            "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{MGMT_TCP_PORT}"
        )));
        assert!(args.contains("virtio-net-pci,netdev=mgmt,mac=52:54:00:d0:00:01,addr=0x2"));
        let uplink = format!(
            "-netdev user,id=uplink,restrict=on,hostfwd=tcp:127.0.0.1:{}-10.0.2.16:80,\
             guestfwd=tcp:10.0.2.100:8000-cmd:python3 {} {} ",
            devices.uplink_host_port(),
            dir.join(UPLINK_RELAY)
                .display()
                .to_string()
                .replace(',', ",,"),
            devices.host_service_port()
        );
        assert!(args.contains(&uplink), "{args}");
        assert!(args.contains("virtio-blk-pci,drive=disk,addr=0x4"));
        // QEMU's option syntax doubles a comma inside a value.
        assert!(args.contains("a,,b/target/disks/args-"), "{args}");
    }
}
