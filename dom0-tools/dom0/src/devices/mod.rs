//! dom0's devices (issue 10): dom0 is the hardware domain and drives the
//! machine's PCI devices itself, with the `virtio-drivers` crate.
//!
//! - [`pci`]: enumeration through ECAM (which xen-core mediates), the
//!   virtio functions' roles and INTx GSIs (Interrupt Line, written by
//!   xen-core).
//! - `hal`: virtio-drivers' `Hal` on dom0's 1:1 memory and the ECAM
//!   accessor (the only `unsafe` in dom0).
//! - `disk`: the virtio-blk disk; [`scratch`]: its boot-time
//!   read-after-write of the last sector.
//! - `nic`: the virtio-net NICs; the management NIC's API for the TCP
//!   stack is documented there.
//!
//! [`probe`] finds and takes over the devices and logs one line per
//! device (`dom0: disk: ...`, `dom0: nic mgmt: ...`, `dom0: nic uplink:
//! ...`); a device that fails to start is logged and left out.
#![cfg_attr(test, allow(dead_code))] // host tests build only the portable half

pub mod pci;
pub mod scratch;

#[cfg(target_os = "none")]
mod disk;
#[cfg(target_os = "none")]
mod hal;
#[cfg(target_os = "none")]
mod nic;

#[cfg(target_os = "none")]
pub use self::{
    disk::Disk,
    hal::Ecam,
    nic::{Interrupt, Link, Nic, NicError, Role, MAX_FRAME_BYTES},
};

#[cfg(target_os = "none")]
mod take_over {
    use guest_pv_shim::println;
    use virtio_drivers::transport::pci::bus::PciRoot;
    use virtio_drivers::transport::pci::PciTransport;

    use super::hal::{DomainHal, Ecam};
    use super::pci::{self, Roles, VirtioFunction};
    use super::{Disk, Nic, Role};

    /// The devices dom0 drives.
    pub struct Devices {
        pub disk: Option<Disk>,
        pub mgmt_nic: Option<Nic>,
        pub uplink_nic: Option<Nic>,
    }

    /// Scans the buses `ecam` decodes, takes over the disk and the NICs,
    /// checks the disk and logs what it found. Needs the heap.
    pub fn probe(ecam: Ecam) -> Devices {
        let roles = Roles::assign(pci::scan_virtio(&ecam, ecam.buses()));
        let mut root = PciRoot::new(ecam);
        for f in &roles.unused {
            println!("dom0: pci: {} {:?}: not used", f.bdf, f.device_type);
        }
        let disk = roles.disk.and_then(|f| start_disk(&mut root, &f));
        let mgmt_nic = start_nic(&mut root, roles.mgmt_nic, Role::Mgmt);
        let uplink_nic = start_nic(&mut root, roles.uplink_nic, Role::Uplink);
        Devices {
            disk,
            mgmt_nic,
            uplink_nic,
        }
    }

    /// The virtio transport of `f`, with memory decoding and bus mastering on.
    fn transport(root: &mut PciRoot<Ecam>, f: &VirtioFunction) -> Option<PciTransport> {
        pci::enable_memory_and_dma(root, f.bdf.0);
        match PciTransport::new::<DomainHal, Ecam>(root, f.bdf.0) {
            Ok(t) => Some(t),
            Err(e) => {
                println!(
                    "dom0: pci: {} {:?}: no virtio transport: {e}",
                    f.bdf, f.device_type
                );
                None
            }
        }
    }

    fn start_disk(root: &mut PciRoot<Ecam>, f: &VirtioFunction) -> Option<Disk> {
        let mut disk = match Disk::new(transport(root, f)?, f.bdf, f.gsi) {
            Ok(disk) => disk,
            Err(e) => {
                println!("dom0: disk: virtio-blk {}: {e}", f.bdf);
                return None;
            }
        };
        let found = alloc::format!(
            "virtio-blk {} {} bytes ({} sectors), {}",
            disk.bdf(),
            disk.bytes(),
            disk.sectors(),
            gsi_text(disk.gsi())
        );
        if disk.read_only() {
            println!("dom0: disk: {found}; read-only: no scratch check");
        } else {
            match disk.check_scratch() {
                Ok(sector) => {
                    println!("dom0: disk: {found}; scratch sector {sector} read-after-write ok")
                }
                Err(e) => println!("dom0: disk: {found}; read-after-write FAILED: {e}"),
            }
        }
        Some(disk)
    }

    fn start_nic(root: &mut PciRoot<Ecam>, f: Option<VirtioFunction>, role: Role) -> Option<Nic> {
        let Some(f) = f else {
            println!("dom0: nic {role}: none found");
            return None;
        };
        match Nic::new(transport(root, &f)?, f.bdf, f.gsi, role) {
            Ok(nic) => {
                let [a, b, c, d, e, g] = nic.mac();
                println!(
                    "dom0: nic {role}: virtio-net {} mac {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}, {}, {}",
                    nic.bdf(),
                    nic.link(),
                    gsi_text(nic.gsi())
                );
                Some(nic)
            }
            Err(e) => {
                println!("dom0: nic {role}: virtio-net {}: {e}", f.bdf);
                None
            }
        }
    }

    fn gsi_text(gsi: Option<u8>) -> alloc::string::String {
        gsi.map_or_else(|| "no gsi".into(), |g| alloc::format!("gsi {g}"))
    }
}

#[cfg(target_os = "none")]
pub use take_over::{probe, Devices};
