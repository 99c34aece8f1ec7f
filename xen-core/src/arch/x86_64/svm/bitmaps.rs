//! The permission maps VMRUN reads: which port accesses (IOPM) and MSR
//! accesses (MSRPM) exit. Built from the portable policies (dom0's once
//! at boot, with its I/O BARs; the others at compile time) and never
//! written afterwards, so every vCPU shares them.
//!
//! Source: AMD64 APM vol. 2, §15.10.1 (IOPM, 12 KiB) and §15.11 (MSRPM:
//! 8 KiB, two bits per MSR; MSRs outside its three ranges always exit).

use crate::vmexit::io::{allow_ports, iopm_bits, IoPortPolicy, PortRange, IOPM_BYTES};

/// Size of the MSR permission map in bytes.
const MSRPM_BYTES: usize = 2 * 4096;

/// An I/O permission map, page-aligned as VMRUN requires.
#[repr(C, align(4096))]
pub struct Iopm([u8; IOPM_BYTES]);

/// An MSR permission map, page-aligned as VMRUN requires.
#[repr(C, align(4096))]
pub struct Msrpm([u8; MSRPM_BYTES]);

static IOPM_NONE: Iopm = Iopm(iopm_bits(IoPortPolicy::None));
static IOPM_DOM0: spin::Once<Iopm> = spin::Once::new();

/// Builds dom0's I/O permission map: [`IoPortPolicy::Dom0`]'s ports plus
/// `io_bars` (its I/O BARs, checked by `pci::bars::plan_dom0_ports`).
/// Only the first call counts; a vCPU built before it gets the policy's
/// ports alone.
pub fn init_dom0_iopm(io_bars: &[PortRange]) {
    IOPM_DOM0.call_once(|| {
        let mut map = iopm_bits(IoPortPolicy::Dom0);
        for range in io_bars {
            allow_ports(&mut map, *range);
        }
        Iopm(map)
    });
}

/// Every MSR access exits and is decided by the allow-list
/// (`vmexit::msr`): guests use few MSRs, and an exit costs less than an
/// MSR that leaks or corrupts host state.
static MSRPM_ALL_EXIT: Msrpm = Msrpm([0xff; MSRPM_BYTES]);

/// Host physical address of the I/O permission map for `policy`.
pub fn iopm_pa(policy: IoPortPolicy) -> u64 {
    let map: &'static Iopm = match policy {
        IoPortPolicy::None => &IOPM_NONE,
        IoPortPolicy::Dom0 => IOPM_DOM0.call_once(|| Iopm(iopm_bits(IoPortPolicy::Dom0))),
    };
    // xen-core's image is identity-mapped (boot.S): address = HPA.
    map as *const Iopm as u64
}

/// Host physical address of the MSR permission map.
pub fn msrpm_pa() -> u64 {
    &MSRPM_ALL_EXIT as *const Msrpm as u64
}
