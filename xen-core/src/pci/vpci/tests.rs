use proptest::prelude::*;

use super::*;
use crate::pci::config::COMMAND;
use crate::pci::enumerate::enumerate;
use crate::pci::fake::{bdf, FakeConfig};
use crate::pci::tests::{ecam, q35};

const BASE: u64 = 0xb000_0000;

/// The GPA of `offset` in `0000:bus:device.function`.
fn gpa(bus: u8, device: u8, function: u8, offset: u16) -> u64 {
    BASE + (u64::from(bus) << 20)
        + (u64::from(device) << 15)
        + (u64::from(function) << 12)
        + u64::from(offset)
}

fn setup() -> (FakeConfig, PciDevices, [EcamRegion; 1]) {
    let cfg = q35();
    let regions = [ecam(0xff)];
    let (found, _) = enumerate(&cfg, &regions);
    (cfg, PciDevices::new(found), regions)
}

fn refused(outcome: [Option<WriteOutcome>; 2]) -> bool {
    matches!(outcome[0], Some(WriteOutcome::BarMoveRefused { .. }))
}

#[test]
fn decodes_gpa_to_function_and_offset() {
    let regions = [ecam(0xff)];
    let at = decode(&regions, gpa(1, 3, 2, 0x3c)).unwrap();
    assert_eq!(at.bdf, bdf(1, 3, 2));
    assert_eq!(at.offset, 0x3c);
    assert_eq!(decode(&regions, BASE - 1), None);
    assert_eq!(decode(&regions, BASE + (256 << 20)), None);
    let partial = [EcamRegion {
        bus_start: 1,
        ..ecam(1)
    }];
    assert_eq!(decode(&partial, gpa(0, 0, 0, 0)), None, "bus 0 not decoded");
    assert!(decode(&partial, gpa(1, 0, 0, 0)).is_some());
}

#[test]
fn owned_function_reads_reach_the_device() {
    let (cfg, devices, regions) = setup();
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    assert!(v.claims(gpa(0, 0, 0, 0)));
    assert_eq!(v.read(gpa(0, 0, 0, 0), 4), 0x29c0_8086);
    assert_eq!(v.read(gpa(0, 0, 0, 2), 2), 0x29c0);
    assert_eq!(v.read(gpa(0, 2, 0, 0x14), 4), 0xfeb8_0000);
    assert_eq!(
        v.read(gpa(0, 0, 0, 0), 8),
        0x0000_0007_29c0_8086,
        "two dwords"
    );
}

#[test]
fn absent_misaligned_or_foreign_reads_are_all_ones() {
    let (cfg, mut devices, regions) = setup();
    // A function not found at boot (even if the device appeared later).
    assert_eq!(
        Vpci {
            devices: &devices,
            regions: &regions,
            cfg: &cfg
        }
        .read(gpa(0, 9, 0, 0), 4),
        0xffff_ffff
    );
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    assert_eq!(v.read(gpa(0, 0, 0, 1), 2), 0xffff, "misaligned");
    assert_eq!(v.read(gpa(0, 0, 0, 0), 3), 0xff_ffff, "odd size");
    // A function xen-core keeps.
    let mut functions = devices.functions().to_vec();
    functions[0].owner = Owner::Hypervisor;
    devices = PciDevices::new(functions);
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    assert_eq!(v.read(gpa(0, 0, 0, 0), 4), 0xffff_ffff);
    assert_eq!(v.read(gpa(0, 0, 0, 0), 1), 0xff);
    let before = cfg.writes.borrow().len();
    assert_eq!(
        v.write(gpa(0, 0, 0, 4), 2, 0),
        [Some(WriteOutcome::Dropped), None]
    );
    assert_eq!(
        cfg.writes.borrow().len(),
        before,
        "nothing reached the device"
    );
}

#[test]
fn sizing_and_restoring_a_bar_pass() {
    let (cfg, devices, regions) = setup();
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    let bar1 = gpa(0, 2, 0, 0x14);
    assert_eq!(v.write(bar1, 4, 0xffff_ffff)[0], Some(WriteOutcome::Passed));
    assert_eq!(v.read(bar1, 4), 0xffff_f000, "the size mask");
    assert_eq!(v.write(bar1, 4, 0xfeb8_0000)[0], Some(WriteOutcome::Passed));
    assert_eq!(v.read(bar1, 4), 0xfeb8_0000);
    // I/O BAR: flag bits in the written value do not matter.
    let bar0 = gpa(0, 2, 0, 0x10);
    assert_eq!(v.write(bar0, 4, 0xffff_ffff)[0], Some(WriteOutcome::Passed));
    assert_eq!(v.write(bar0, 4, 0xc001)[0], Some(WriteOutcome::Passed));
}

#[test]
fn moving_a_bar_is_refused_and_leaves_it_in_place() {
    let (cfg, devices, regions) = setup();
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    let bar1 = gpa(0, 2, 0, 0x14);
    let outcome = v.write(bar1, 4, 0x0100_0000);
    assert_eq!(
        outcome[0],
        Some(WriteOutcome::BarMoveRefused {
            bdf: bdf(0, 2, 0),
            offset: 0x14,
            original: 0xfeb8_0000,
            value: 0x0100_0000
        })
    );
    assert_eq!(v.read(bar1, 4), 0xfeb8_0000);
    // Piecewise: a byte or word write to a BAR is refused even if it
    // matches firmware's bytes.
    assert!(refused(v.write(bar1 + 2, 2, 0xfeb8)));
    assert!(refused(v.write(bar1 + 3, 1, 0x01)));
    // The high dword of a 64-bit BAR.
    let bar4_high = gpa(0, 2, 0, 0x24);
    assert!(refused(v.write(bar4_high, 4, 1)));
    assert_eq!(
        v.write(bar4_high, 4, 0xffff_ffff)[0],
        Some(WriteOutcome::Passed)
    );
    assert_eq!(v.write(bar4_high, 4, 0)[0], Some(WriteOutcome::Passed));
    // The expansion ROM register and an unimplemented BAR register.
    assert!(refused(v.write(gpa(0, 2, 0, 0x30), 4, 0xfec0_0001)));
    assert!(refused(v.write(gpa(0, 2, 0, 0x18), 4, 0x1000)));
    assert_eq!(
        v.write(gpa(0, 2, 0, 0x18), 4, 0)[0],
        Some(WriteOutcome::Passed)
    );
}

#[test]
fn other_registers_pass() {
    let (cfg, devices, regions) = setup();
    let v = Vpci {
        devices: &devices,
        regions: &regions,
        cfg: &cfg,
    };
    let command = gpa(0, 2, 0, COMMAND);
    assert_eq!(v.write(command, 2, 0x3)[0], Some(WriteOutcome::Passed));
    assert_eq!(v.read(command, 2), 0x3);
    let both = v.write(gpa(0, 2, 0, 0x40), 8, 0x1234_5678_9abc_def0);
    assert_eq!(
        both,
        [Some(WriteOutcome::Passed), Some(WriteOutcome::Passed)]
    );
    assert_eq!(v.read(gpa(0, 2, 0, 0x44), 4), 0x1234_5678);
}

proptest! {
    /// Whatever dom0 writes, wherever in the function's first 0x40
    /// bytes, with whatever size: each BAR register afterwards holds
    /// firmware's address or the sizing pattern, never a new place.
    #[test]
    fn no_write_sequence_moves_a_bar(
        writes in prop::collection::vec((0u16..0x40, prop::sample::select(vec![1u8, 2, 4, 8]), any::<u64>()), 1..40)
    ) {
        let (cfg, devices, regions) = setup();
        let v = Vpci { devices: &devices, regions: &regions, cfg: &cfg };
        let net = devices.get(bdf(0, 2, 0)).unwrap();
        for (offset, size, value) in writes {
            v.write(gpa(0, 2, 0, offset), size, value);
        }
        for bar in &net.bars {
            let i = usize::from(bar.index);
            let low = cfg.read32(bdf(0, 2, 0), bar_offset(bar.index));
            let bits = if bar.kind == BarKind::Io { BAR_IO_ADDRESS & 0xffff } else { BAR_MEM_ADDRESS };
            let writable = !(u32::try_from(bar.size).unwrap() - 1) & bits;
            let now = low & writable;
            prop_assert!(now == net.bar_registers[i] & writable || now == writable,
                "BAR {} at {:#x}", bar.index, low);
        }
    }
}
