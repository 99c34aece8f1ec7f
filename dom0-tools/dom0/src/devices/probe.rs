//! Taking the devices over at boot: scan, start each driver, bind its
//! interrupt, read the disk's first sector, log what was found.

use guest_pv_shim::arch::physdev::DeviceIrq;
use guest_pv_shim::{println, Events, StartInfo};
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;

use super::disk::Disk;
use super::hal::{DomainHal, Ecam};
use super::irq::{self, Irqs};
use super::nic::{Nic, Role};
use super::pci::{self, Roles, VirtioFunction};
use super::sectors::SECTOR_BYTES;

/// How long dom0 waits for the disk's interrupt after its boot read
/// (the device raised it with the completion; this only bounds a broken
/// route): 5 s of system time.
const DISK_IRQ_WAIT_NS: u64 = 5_000_000_000;

/// The devices dom0 drives.
#[allow(dead_code)] // the uplink NIC waits for the vswitch (issue 13)
pub struct Devices {
    pub disk: Option<Disk>,
    pub mgmt_nic: Option<Nic>,
    pub uplink_nic: Option<Nic>,
}

impl Devices {
    fn none() -> Self {
        Devices {
            disk: None,
            mgmt_nic: None,
            uplink_nic: None,
        }
    }
}

/// Finds the ECAM region on the command line (`pci-ecam=`), takes over
/// the disk and the NICs, binds their interrupts to ports of `events`,
/// reads the disk's first sector. Needs the heap.
pub fn start(events: &Events, start_info: &StartInfo) -> Devices {
    let Some(arg) = start_info.cmdline_arg("pci-ecam") else {
        println!("dom0: devices: no ECAM region (no pci-ecam= from xen-core): no PCI devices");
        return Devices::none();
    };
    let Some(ecam) = pci::parse_ecam_arg(arg).and_then(|(base, buses)| Ecam::new(base, buses))
    else {
        println!("dom0: devices: unusable ECAM region pci-ecam={arg}: no PCI devices");
        return Devices::none();
    };
    let roles = Roles::assign(pci::scan_virtio(&ecam, ecam.buses()));
    for f in &roles.unused {
        println!("dom0: pci: {} {:?}: not used", f.bdf, f.device_type);
    }
    let mut root = PciRoot::new(ecam);
    let mut irqs = Irqs::new(*events.xen());
    let disk = roles
        .disk
        .and_then(|f| start_disk(&mut root, &mut irqs, events, &f));
    let mgmt_nic = start_nic(&mut root, &mut irqs, roles.mgmt_nic, Role::Mgmt);
    let uplink_nic = start_nic(&mut root, &mut irqs, roles.uplink_nic, Role::Uplink);
    Devices {
        disk,
        mgmt_nic,
        uplink_nic,
    }
}

/// The virtio transport of `f`, with memory decoding, bus mastering and
/// INTx on.
fn transport(root: &mut PciRoot<Ecam>, f: &VirtioFunction) -> Option<PciTransport> {
    pci::enable_memory_dma_intx(root, f.bdf.0);
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

/// The port for the function's GSI, if it has one and it binds (logged
/// if not).
fn bind(irqs: &mut Irqs, f: &VirtioFunction) -> Option<DeviceIrq> {
    let gsi = f.gsi?;
    irqs.bind(gsi)
        .inspect_err(|e| println!("dom0: pci: {}: gsi {gsi}: no event channel: {e}", f.bdf))
        .ok()
}

fn start_disk(
    root: &mut PciRoot<Ecam>,
    irqs: &mut Irqs,
    events: &Events,
    f: &VirtioFunction,
) -> Option<Disk> {
    let transport = transport(root, f)?;
    let mut disk = match Disk::new(transport, f.bdf, f.gsi, bind(irqs, f)) {
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
        irq::describe(disk.gsi(), disk.irq().as_ref())
    );
    let mode = if disk.read_only() {
        "read-only"
    } else {
        "read-write"
    };
    // A read only: the disk holds the volumes, and boot must not write it.
    let mut sector = [0u8; SECTOR_BYTES];
    match disk.read_blocks(0, &mut sector) {
        Ok(()) => println!("dom0: disk: {found}, {mode}; sector 0 read ok"),
        Err(e) => println!("dom0: disk: {found}, {mode}; reading sector 0 FAILED: {e}"),
    }
    take_disk_interrupt(&mut disk, events);
    Some(disk)
}

/// The boot read's completion raised the disk's INTx: wait for its port,
/// acknowledge (ISR read, then EOI) and log it, which shows the whole
/// route (INTx, GSI, IO-APIC, pirq, event) works.
fn take_disk_interrupt(disk: &mut Disk, events: &Events) {
    let Some(irq) = disk.irq() else { return };
    let deadline = events.now().map(|now| now + DISK_IRQ_WAIT_NS);
    match events.wait_any(&[irq.port], deadline) {
        Ok(Some(_)) => match disk.ack_interrupt(events.xen()) {
            Ok(isr) => println!(
                "dom0: disk: interrupt on port {} (isr {isr:#x}), acknowledged",
                irq.port
            ),
            Err(e) => println!(
                "dom0: disk: interrupt on port {}: eoi failed: {e}",
                irq.port
            ),
        },
        Ok(None) => println!("dom0: disk: no interrupt on port {} within 5 s", irq.port),
        Err(e) => println!("dom0: disk: waiting for the interrupt failed: {e}"),
    }
}

fn start_nic(
    root: &mut PciRoot<Ecam>,
    irqs: &mut Irqs,
    f: Option<VirtioFunction>,
    role: Role,
) -> Option<Nic> {
    let Some(f) = f else {
        println!("dom0: nic {role}: none found");
        return None;
    };
    let transport = transport(root, &f)?;
    match Nic::new(transport, f.bdf, bind(irqs, &f)) {
        Ok(nic) => {
            let [a, b, c, d, e, g] = nic.mac();
            println!(
                "dom0: nic {role}: virtio-net {} mac {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}, {}, {}",
                nic.bdf(),
                nic.link(),
                irq::describe(f.gsi, nic.irq().as_ref())
            );
            Some(nic)
        }
        Err(e) => {
            println!("dom0: nic {role}: virtio-net {}: {e}", f.bdf);
            None
        }
    }
}
