use super::acpi_tables::inti_flags;
use super::*;

fn ecam() -> EcamRegion {
    EcamRegion {
        segment: 0,
        base: 0xb000_0000,
        bus_start: 0,
        bus_end: 0xff,
    }
}

#[test]
fn isa_irq_without_override_is_identity_edge_high() {
    let p = Platform::new();
    let o = p.isa_irq(4).unwrap();
    assert_eq!(
        (o.gsi, o.trigger, o.polarity),
        (4, Trigger::Edge, Polarity::ActiveHigh)
    );
    assert_eq!(p.isa_irq(16), None);
}

#[test]
fn isa_override_replaces_default_and_earlier_override() {
    let mut p = Platform::new();
    let timer = |gsi| IsaOverride {
        isa_irq: 0,
        gsi,
        trigger: Trigger::Edge,
        polarity: Polarity::ActiveHigh,
    };
    p.add_isa_override(timer(9)).unwrap();
    p.add_isa_override(timer(2)).unwrap();
    assert_eq!(p.isa_irq(0).unwrap().gsi, 2);
    assert_eq!(p.isa_overrides().len(), 1);
    assert_eq!(
        p.add_isa_override(IsaOverride {
            isa_irq: 16,
            ..timer(2)
        }),
        Err(PlatformError::BadIsaIrq(16))
    );
}

#[test]
fn inti_flags_follow_acpi_table_5_26() {
    assert_eq!(inti_flags(0), (Trigger::Edge, Polarity::ActiveHigh));
    assert_eq!(inti_flags(0b1101), (Trigger::Level, Polarity::ActiveHigh));
    assert_eq!(inti_flags(0b1111), (Trigger::Level, Polarity::ActiveLow));
    assert_eq!(inti_flags(0b0111), (Trigger::Edge, Polarity::ActiveLow));
}

#[test]
fn limits_are_errors_not_panics() {
    let mut p = Platform::new();
    for id in 0..MAX_IO_APICS {
        let io_apic = IoApic {
            id: u8::try_from(id).unwrap(),
            address: 0xfec0_0000,
            gsi_base: 0,
        };
        p.add_io_apic(io_apic).unwrap();
    }
    let extra = IoApic {
        id: 99,
        address: 0,
        gsi_base: 0,
    };
    assert_eq!(
        p.add_io_apic(extra),
        Err(PlatformError::TooMany("IO-APICs"))
    );
}

#[test]
fn ecam_addresses_follow_bus_device_function() {
    let r = ecam();
    assert_eq!(r.function_address(0, 0, 0), Some(0xb000_0000));
    assert_eq!(r.function_address(0, 3, 0), Some(0xb001_8000));
    assert_eq!(r.function_address(1, 0, 1), Some(0xb010_1000));
    assert_eq!(r.function_address(0, 32, 0), None);
    assert_eq!(r.function_address(0, 0, 8), None);
    assert_eq!(r.range(), (0xb000_0000, 0xc000_0000));
    let partial = EcamRegion {
        bus_start: 2,
        bus_end: 3,
        ..r
    };
    assert_eq!(partial.function_address(1, 0, 0), None);
    assert_eq!(partial.range(), (0xb020_0000, 0xb040_0000));
}

#[test]
fn ecam_that_wraps_or_is_empty_is_refused() {
    let mut p = Platform::new();
    let wraps = EcamRegion {
        base: u64::MAX - 0xfff,
        ..ecam()
    };
    assert_eq!(p.add_ecam(wraps), Err(PlatformError::BadEcam(0, 0xff)));
    let empty = EcamRegion {
        bus_start: 5,
        bus_end: 4,
        ..ecam()
    };
    assert!(p.add_ecam(empty).is_err());
    p.add_ecam(ecam()).unwrap();
    assert_eq!(p.ecam_for(0, 7), Some(&ecam()));
    assert_eq!(p.ecam_for(1, 7), None);
}

#[test]
fn gsi_maps_to_its_io_apic_pin() {
    let mut p = Platform::new();
    for (id, gsi_base) in [(0, 0), (1, 24)] {
        let io_apic = IoApic {
            id,
            address: 0xfec0_0000 + u64::from(id) * 0x1000,
            gsi_base,
        };
        p.add_io_apic(io_apic).unwrap();
    }
    let pins = |_: &IoApic| 24;
    assert_eq!(
        p.io_apic_for_gsi(23, pins).map(|(a, pin)| (a.id, pin)),
        Some((0, 23))
    );
    assert_eq!(
        p.io_apic_for_gsi(24, pins).map(|(a, pin)| (a.id, pin)),
        Some((1, 0))
    );
    assert_eq!(p.io_apic_for_gsi(48, pins), None);
}
