use super::config::{Bdf, ConfigAccess, COMMAND, INTERRUPT_LINE};
use super::enumerate::enumerate;
use super::fake::{bdf, FakeConfig, FakeFunction};
use super::*;
use crate::platform::EcamRegion;

/// A q35-like machine: host bridge, a virtio-net, the multi-function
/// ICH9 device 31 (LPC, SATA, SMBus) and a virtio-blk on bus 1.
pub(crate) fn q35() -> FakeConfig {
    let cfg = FakeConfig::default();
    cfg.add(
        bdf(0, 0, 0),
        FakeFunction::endpoint(0x8086, 0x29c0, 6, 0, 0),
    );
    let net = FakeFunction::endpoint(0x1af4, 0x1000, 2, 0, 1)
        .io(0, 0xc000, 0x20)
        .mem32(1, 0xfeb8_0000, 0x1000)
        .mem64(4, 0xfe00_0000, 0x4000);
    cfg.add(bdf(0, 2, 0), net);
    let lpc = FakeFunction::endpoint(0x8086, 0x2918, 6, 1, 0).header_type(0x80);
    cfg.add(bdf(0, 0x1f, 0), lpc);
    let sata = FakeFunction::endpoint(0x8086, 0x2922, 1, 6, 1)
        .io(4, 0xc040, 0x20)
        .mem32(5, 0xfeb8_1000, 0x1000);
    cfg.add(bdf(0, 0x1f, 2), sata);
    cfg.add(
        bdf(0, 0x1f, 3),
        FakeFunction::endpoint(0x8086, 0x2930, 0xc, 5, 1),
    );
    let blk = FakeFunction::endpoint(0x1af4, 0x1042, 1, 0, 1).mem64(4, 0x8_0000_0000, 0x4000);
    cfg.add(bdf(1, 0, 0), blk);
    cfg
}

pub(crate) fn ecam(bus_end: u8) -> EcamRegion {
    EcamRegion {
        segment: 0,
        base: 0xb000_0000,
        bus_start: 0,
        bus_end,
    }
}

#[test]
fn finds_every_function_including_multifunction_and_other_buses() {
    let cfg = q35();
    let (found, dropped) = enumerate(&cfg, &[ecam(0xff)]);
    let bdfs: Vec<Bdf> = found.iter().map(|f| f.bdf).collect();
    assert_eq!(
        bdfs,
        [
            bdf(0, 0, 0),
            bdf(0, 2, 0),
            bdf(0, 0x1f, 0),
            bdf(0, 0x1f, 2),
            bdf(0, 0x1f, 3),
            bdf(1, 0, 0)
        ]
    );
    assert_eq!(dropped, 0);
    assert!(found.iter().all(|f| f.owner == Owner::Dom0));
}

#[test]
fn only_buses_the_region_decodes_are_scanned() {
    let (found, _) = enumerate(&q35(), &[ecam(0)]);
    assert_eq!(found.len(), 5);
}

#[test]
fn bars_are_sized_and_firmware_values_kept() {
    let cfg = q35();
    let (found, _) = enumerate(&cfg, &[ecam(0)]);
    let net = found.iter().find(|f| f.bdf == bdf(0, 2, 0)).unwrap();
    let bars: Vec<(u8, BarKind, u64, u64)> = net
        .bars
        .iter()
        .map(|b| (b.index, b.kind, b.base, b.size))
        .collect();
    assert_eq!(
        bars,
        [
            (0, BarKind::Io, 0xc000, 0x20),
            (1, BarKind::Mem32, 0xfeb8_0000, 0x1000),
            (4, BarKind::Mem64, 0xfe00_0000, 0x4000)
        ]
    );
    assert!(net.bars[2].prefetchable);
    // Sizing restored every register and the command register.
    assert_eq!(cfg.read32(bdf(0, 2, 0), 0x14), 0xfeb8_0000);
    assert_eq!(cfg.read(bdf(0, 2, 0), COMMAND, 2), 0x7);
    assert_eq!(net.bar_registers[1], 0xfeb8_0000);
}

#[test]
fn sizing_happens_with_decoding_off() {
    let cfg = q35();
    enumerate(&cfg, &[ecam(0)]);
    let writes = cfg.writes.borrow();
    let net: Vec<_> = writes.iter().filter(|w| w.0 == bdf(0, 2, 0)).collect();
    assert_eq!((net[0].1, net[0].3), (COMMAND, 0x4), "decode off first");
    let last = net.last().unwrap();
    assert_eq!((last.1, last.3), (COMMAND, 0x7), "decode restored last");
}

#[test]
fn sixty_four_bit_bar_above_4g() {
    let (found, _) = enumerate(&q35(), &[ecam(1)]);
    let blk = found.iter().find(|f| f.bdf == bdf(1, 0, 0)).unwrap();
    assert_eq!(blk.bars[0].base, 0x8_0000_0000);
    assert_eq!(blk.bars[0].size, 0x4000);
}

#[test]
fn routing_writes_the_gsi_into_interrupt_line() {
    let cfg = q35();
    let (found, _) = enumerate(&cfg, &[ecam(0)]);
    let mut devices = PciDevices::new(found);
    let route = |gsi| IntxRoute {
        gsi,
        trigger: Trigger::Level,
        polarity: Polarity::ActiveHigh,
    };
    devices.route_intx(&cfg, |f| match f.bdf.device {
        2 => Some(route(22)),
        0x1f => Some(route(300)),
        _ => None,
    });
    assert_eq!(devices.get(bdf(0, 2, 0)).unwrap().intx, Some(route(22)));
    assert_eq!(
        devices.intx_mode(22),
        Some((Trigger::Level, Polarity::ActiveHigh))
    );
    assert_eq!(devices.intx_mode(23), None);
    assert_eq!(cfg.read(bdf(0, 2, 0), INTERRUPT_LINE, 1), 22);
    // No pin: no GSI, line 0xFF.
    assert_eq!(devices.get(bdf(0, 0, 0)).unwrap().intx, None);
    assert_eq!(cfg.read(bdf(0, 0, 0), INTERRUPT_LINE, 1), 0xff);
    // A GSI the 8-bit register cannot hold reads as none there.
    assert_eq!(cfg.read(bdf(0, 0x1f, 2), INTERRUPT_LINE, 1), 0xff);
}

#[test]
fn names_virtio_by_device_id_and_others_by_class() {
    let (found, _) = enumerate(&q35(), &[ecam(1)]);
    let names: Vec<String> = found.iter().map(|f| function_name(f).to_string()).collect();
    assert_eq!(names[1], "virtio-net");
    assert_eq!(names[5], "virtio-blk");
    assert_eq!(names[0], "HostBridge");
}

#[test]
fn absent_everything_finds_nothing() {
    let (found, dropped) = enumerate(&FakeConfig::default(), &[ecam(0xff)]);
    assert!(found.is_empty());
    assert_eq!(dropped, 0);
}
