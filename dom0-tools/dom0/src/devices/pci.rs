//! PCI enumeration over a configuration-space access (ECAM in dom0, a
//! table in the tests): which functions are virtio devices, their INTx
//! GSI, and which role each takes. Register offsets are PCI Local Bus 3.0
//! §6.1 (type 0 and type 1 headers).

use alloc::vec::Vec;
use core::fmt;
use core::ops::RangeInclusive;

use virtio_drivers::transport::pci::bus::{
    Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, HeaderType, PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;
use virtio_drivers::transport::DeviceType;

/// Vendor/device ID register; all ones where no function answers.
const ID_OFFSET: u8 = 0x00;
/// Command (low half) and status.
#[cfg(test)]
const STATUS_COMMAND_OFFSET: u8 = 0x04;
/// Revision, programming interface, subclass, class.
const CLASS_OFFSET: u8 = 0x08;
/// Cache line size, latency timer, header type (bits 23:16), BIST.
const HEADER_OFFSET: u8 = 0x0c;
/// Type 1 header: primary, secondary, subordinate bus numbers.
const BRIDGE_BUSES_OFFSET: u8 = 0x18;
/// Interrupt Line (bits 7:0) and Pin (15:8): xen-core writes the INTx
/// GSI into the line register at boot (docs/architecture.md).
const INTERRUPT_OFFSET: u8 = 0x3c;
/// What reads of an absent function return.
const ABSENT: u32 = 0xffff_ffff;
/// Interrupt Line value for "no interrupt".
const NO_LINE: u8 = 0xff;
/// Header type bit 7: the device has functions 1-7.
const MULTI_FUNCTION: u32 = 1 << 23;
/// Most buses a scan visits, whatever bridges claim (a malformed bridge
/// loop stops here).
const MAX_BUSES: usize = 256;

/// A PCI function's address, printed as Linux and Xen print it
/// (`0000:00:04.0`; segment 0, the only one q35 has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub DeviceFunction);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "0000:{}", self.0)
    }
}

/// A virtio function found on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioFunction {
    pub bdf: Bdf,
    pub device_type: DeviceType,
    /// The INTx GSI from the Interrupt Line register, `None` for 0xFF
    /// (xen-core found no route) or a function without an interrupt pin.
    pub gsi: Option<u8>,
}

/// The virtio functions dom0 drives, by role: the disk is the first
/// virtio-blk function, the management NIC the first virtio-net one and
/// the uplink the second (`abi::machine`); anything else is left alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub disk: Option<VirtioFunction>,
    pub mgmt_nic: Option<VirtioFunction>,
    pub uplink_nic: Option<VirtioFunction>,
    pub unused: Vec<VirtioFunction>,
}

impl Roles {
    /// Gives each function its role, in bus order.
    pub fn assign(found: Vec<VirtioFunction>) -> Self {
        let mut roles = Roles::default();
        for function in found {
            let slot = match function.device_type {
                DeviceType::Block => [&mut roles.disk].into_iter().find(|s| s.is_none()),
                DeviceType::Network => [&mut roles.mgmt_nic, &mut roles.uplink_nic]
                    .into_iter()
                    .find(|s| s.is_none()),
                _ => None,
            };
            match slot {
                Some(slot) => *slot = Some(function),
                None => roles.unused.push(function),
            }
        }
        roles
    }
}

/// Every virtio function reachable from the buses in `buses` (the ECAM
/// region's range): bus `buses.start()` and, through PCI-PCI bridges,
/// their secondary buses inside the range, each visited once.
pub fn scan_virtio<C: ConfigurationAccess>(
    access: &C,
    buses: RangeInclusive<u8>,
) -> Vec<VirtioFunction> {
    let mut found = Vec::new();
    let mut pending = Vec::from([*buses.start()]);
    let mut visited = Vec::new();
    while let Some(bus) = pending.pop() {
        if visited.contains(&bus) || visited.len() == MAX_BUSES {
            continue;
        }
        visited.push(bus);
        for bdf in present_functions(access, bus) {
            match header_type(access, bdf) {
                HeaderType::PciPciBridge => {
                    let secondary = bus_byte(access.read_word(bdf, BRIDGE_BUSES_OFFSET), 1);
                    if buses.contains(&secondary) {
                        pending.push(secondary);
                    }
                }
                HeaderType::Standard => found.extend(virtio_function(access, bdf)),
                _ => {}
            }
        }
    }
    found.sort_by_key(|f| (f.bdf.0.bus, f.bdf.0.device, f.bdf.0.function));
    found
}

/// The functions that answer on `bus` (function 0 of each device, and
/// 1-7 of multi-function devices).
fn present_functions<C: ConfigurationAccess>(
    access: &C,
    bus: u8,
) -> impl Iterator<Item = DeviceFunction> + '_ {
    (0..32u8).flat_map(move |device| {
        let first = DeviceFunction {
            bus,
            device,
            function: 0,
        };
        let functions = if access.read_word(first, ID_OFFSET) == ABSENT {
            0
        } else if access.read_word(first, HEADER_OFFSET) & MULTI_FUNCTION != 0 {
            8
        } else {
            1
        };
        (0..functions)
            .map(move |function| DeviceFunction {
                bus,
                device,
                function,
            })
            .filter(move |&bdf| access.read_word(bdf, ID_OFFSET) != ABSENT)
    })
}

fn header_type<C: ConfigurationAccess>(access: &C, bdf: DeviceFunction) -> HeaderType {
    HeaderType::from(bus_byte(access.read_word(bdf, HEADER_OFFSET), 2) & 0x7f)
}

/// Byte `index` (0 = bits 7:0) of a configuration word.
fn bus_byte(word: u32, index: u32) -> u8 {
    word.to_le_bytes()[(index & 3) as usize]
}

/// The function as a virtio device, if it is one.
fn virtio_function<C: ConfigurationAccess>(
    access: &C,
    bdf: DeviceFunction,
) -> Option<VirtioFunction> {
    let id = access.read_word(bdf, ID_OFFSET);
    let class = access.read_word(bdf, CLASS_OFFSET);
    let [revision, prog_if, subclass, class] = class.to_le_bytes();
    let [vendor_lo, vendor_hi, device_lo, device_hi] = id.to_le_bytes();
    let info = DeviceFunctionInfo {
        vendor_id: u16::from_le_bytes([vendor_lo, vendor_hi]),
        device_id: u16::from_le_bytes([device_lo, device_hi]),
        class,
        subclass,
        prog_if,
        revision,
        header_type: HeaderType::Standard,
    };
    let device_type = virtio_device_type(&info)?;
    let line = bus_byte(access.read_word(bdf, INTERRUPT_OFFSET), 0);
    let pin = bus_byte(access.read_word(bdf, INTERRUPT_OFFSET), 1);
    Some(VirtioFunction {
        bdf: Bdf(bdf),
        device_type,
        gsi: (pin != 0 && line != NO_LINE).then_some(line),
    })
}

/// Lets the function decode its memory BARs, master the bus (its
/// virtqueues are DMA) and raise INTx (dom0 takes it as a pirq), keeping
/// the other command bits.
pub fn enable_memory_dma_intx<C: ConfigurationAccess>(root: &mut PciRoot<C>, bdf: DeviceFunction) {
    let (_status, command) = root.get_status_command(bdf);
    let enabled =
        (command | Command::MEMORY_SPACE | Command::BUS_MASTER) - Command::INTERRUPT_DISABLE;
    // PciRoot writes the status half as zeros (its bits are write-1-to-clear).
    root.set_command(bdf, enabled);
}

/// The ECAM region named on dom0's command line by xen-core,
/// `pci-ecam=BASE:FIRST-LAST` (BASE in hex with `0x`, the bus numbers in
/// decimal): bus 0's configuration-space address and the buses decoded.
pub fn parse_ecam_arg(arg: &str) -> Option<(u64, RangeInclusive<u8>)> {
    let (base, buses) = arg.split_once(':')?;
    let base = u64::from_str_radix(base.strip_prefix("0x")?, 16).ok()?;
    let (first, last) = buses.split_once('-')?;
    let (first, last): (u8, u8) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((base, first..=last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    /// A configuration space as a table of words; absent words read as
    /// all ones, as on a real bus. Clones share the table (as clones of
    /// an ECAM accessor share the hardware).
    #[derive(Clone, Default)]
    struct Table(Rc<RefCell<Words>>);

    /// Words by (bus, device, function, offset).
    type Words = BTreeMap<(u8, u8, u8, u8), u32>;

    impl Table {
        fn set(&self, (b, d, f): (u8, u8, u8), offset: u8, value: u32) {
            self.0.borrow_mut().insert((b, d, f, offset), value);
        }

        fn function(&self, bdf: (u8, u8, u8), id: u32, header: u32, interrupt: u32) {
            self.set(bdf, ID_OFFSET, id);
            self.set(bdf, STATUS_COMMAND_OFFSET, 0x0010_0003);
            self.set(bdf, CLASS_OFFSET, 0x0200_0000);
            self.set(bdf, HEADER_OFFSET, header << 16);
            self.set(bdf, INTERRUPT_OFFSET, interrupt);
        }
    }

    impl ConfigurationAccess for Table {
        fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
            let key = (df.bus, df.device, df.function, offset);
            self.0.borrow().get(&key).copied().unwrap_or(ABSENT)
        }
        fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
            self.set((df.bus, df.device, df.function), offset, data);
        }
        // The trait's method is unsafe; a shared table needs no care.
        #[allow(unsafe_code)]
        unsafe fn unsafe_clone(&self) -> Self {
            self.clone()
        }
    }

    const NET: u32 = 0x1000_1af4; // transitional virtio-net
    const BLK: u32 = 0x1001_1af4; // transitional virtio-blk
    const NET_MODERN: u32 = 0x1041_1af4;
    const OTHER: u32 = 0x29c0_8086; // q35's host bridge

    fn df(bus: u8, device: u8, function: u8) -> DeviceFunction {
        DeviceFunction {
            bus,
            device,
            function,
        }
    }

    /// QEMU's q35 as xtask starts it: host bridge, VGA, two NICs, disk.
    fn q35() -> Table {
        let t = Table::default();
        t.function((0, 0, 0), OTHER, 0, 0);
        t.function((0, 1, 0), 0x1111_1234, 0, 0);
        t.function((0, 2, 0), NET, 0, 0x0116); // pin A, GSI 22
        t.function((0, 3, 0), NET, 0, 0x0117);
        t.function((0, 4, 0), BLK, 0, 0x0110);
        t.function((0, 31, 0), 0x2918_8086, 0x80, 0); // multi-function
        t.function((0, 31, 2), 0x2922_8086, 0, 0x010a);
        t
    }

    #[test]
    fn q35_gives_disk_and_both_nics_with_their_gsis() {
        let roles = Roles::assign(scan_virtio(&q35(), 0..=255));
        let disk = roles.disk.unwrap();
        assert_eq!(disk.bdf.to_string(), "0000:00:04.0");
        assert_eq!(disk.gsi, Some(16));
        let mgmt = roles.mgmt_nic.unwrap();
        assert_eq!(mgmt.bdf.to_string(), "0000:00:02.0");
        assert_eq!(mgmt.gsi, Some(22));
        assert_eq!(roles.uplink_nic.unwrap().bdf.0, df(0, 3, 0));
        assert!(roles.unused.is_empty());
    }

    #[test]
    fn no_line_or_no_pin_means_no_gsi() {
        let t = Table::default();
        t.function((0, 2, 0), NET, 0, 0x01ff);
        t.function((0, 3, 0), NET_MODERN, 0, 0x0005);
        let found = scan_virtio(&t, 0..=0);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].gsi, None);
        assert_eq!(found[1].gsi, None);
        assert_eq!(found[1].device_type, DeviceType::Network);
    }

    #[test]
    fn functions_behind_a_bridge_are_found_once_and_bridge_loops_end() {
        let t = Table::default();
        t.function((0, 1, 0), OTHER, 1, 0);
        t.set((0, 1, 0), BRIDGE_BUSES_OFFSET, 0x0002_0200); // secondary 2
        t.function((2, 0, 0), OTHER, 1, 0);
        t.set((2, 0, 0), BRIDGE_BUSES_OFFSET, 0x0000_0002); // back to 0
        t.function((2, 5, 0), BLK, 0, 0x0113);
        t.function((0, 6, 0), NET, 0, 0x0114);
        let found = scan_virtio(&t, 0..=255);
        let bdfs: Vec<_> = found.iter().map(|f| f.bdf.to_string()).collect();
        assert_eq!(bdfs, ["0000:00:06.0", "0000:02:05.0"]);
        // A bridge to a bus outside the ECAM range is not followed.
        assert_eq!(scan_virtio(&t, 0..=1).len(), 1);
    }

    #[test]
    fn extra_devices_are_unused_and_functions_of_single_function_devices_skipped() {
        let t = q35();
        t.function((0, 5, 0), BLK, 0, 0x0111);
        t.function((0, 6, 0), NET, 0, 0x0112);
        // Function 1 of a device whose function 0 is not multi-function.
        t.function((0, 2, 1), BLK, 0, 0x0112);
        let roles = Roles::assign(scan_virtio(&t, 0..=0));
        let unused: Vec<_> = roles.unused.iter().map(|f| f.bdf.to_string()).collect();
        assert_eq!(unused, ["0000:00:05.0", "0000:00:06.0"]);
    }

    #[test]
    fn enabling_sets_memory_bus_master_and_intx_and_clears_no_status_bit() {
        let t = q35();
        t.set((0, 2, 0), STATUS_COMMAND_OFFSET, 0xffff_0501);
        let mut root = PciRoot::new(t.clone());
        enable_memory_dma_intx(&mut root, df(0, 2, 0));
        // I/O and SERR# kept, INTERRUPT_DISABLE cleared; zeros in the
        // (write-1-to-clear) status half.
        assert_eq!(t.read_word(df(0, 2, 0), STATUS_COMMAND_OFFSET), 0x0000_0107);
    }

    #[test]
    fn the_ecam_argument_parses_as_xen_core_writes_it() {
        assert_eq!(
            parse_ecam_arg("0xb0000000:0-255"),
            Some((0xb000_0000, 0..=255))
        );
        assert_eq!(
            parse_ecam_arg("0xe0000000:16-31"),
            Some((0xe000_0000, 16..=31))
        );
        for bad in [
            "",
            "b0000000:0-255",
            "0xb0000000",
            "0xb0000000:0",
            "0xb0000000:5-4",
            "0xb0000000:0-256",
            "0xzz:0-1",
            "0xb0000000:-1-2",
        ] {
            assert_eq!(parse_ecam_arg(bad), None, "{bad:?}");
        }
    }
}
