//! dom0's devices (issue 10): dom0 is the hardware domain and drives the
//! machine's PCI devices itself, with the `virtio-drivers` crate.
//!
//! - [`pci`]: enumeration through ECAM (which xen-core mediates), the
//!   virtio functions' roles and INTx GSIs (Interrupt Line, written by
//!   xen-core); the ECAM region comes from dom0's command line
//!   (`pci-ecam=`, written by xen-core from the MCFG).
//! - `hal`: virtio-drivers' `Hal` on dom0's 1:1 memory and the ECAM
//!   accessor (the only `unsafe` in dom0).
//! - `irq`: each GSI as a pirq bound to an event channel.
//! - `disk`: the virtio-blk disk (bounds-checked sector reads, writes
//!   and flushes; [`sectors`]: the checks).
//! - `nic`: the virtio-net NICs; the management NIC's API for the TCP
//!   stack is documented there.
//! - `probe`: [`start`] finds and takes over the devices and logs one
//!   line per device (`dom0: disk: ...`, `dom0: nic mgmt: ...`,
//!   `dom0: nic uplink: ...`); a device that fails to start is logged and
//!   left out.
#![cfg_attr(test, allow(dead_code))] // host tests build only the portable half

pub mod pci;
pub mod sectors;

#[cfg(target_os = "none")]
pub mod disk;
#[cfg(target_os = "none")]
pub use disk::Disk;
#[cfg(target_os = "none")]
mod hal;
#[cfg(target_os = "none")]
mod irq;
#[cfg(target_os = "none")]
pub mod nic;
#[cfg(target_os = "none")]
pub mod probe;

#[cfg(target_os = "none")]
pub use probe::start;
// The management NIC's API at the path the TCP agent imports it from.
#[cfg(target_os = "none")]
#[allow(unused_imports)] // used by the TCP agent (branch `tcp`)
pub use nic::{Nic, MAX_FRAME_BYTES};
