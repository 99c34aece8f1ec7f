//! What the QEMU machine xtask starts gives dom0, where both sides must
//! agree (xtask's `machine` module builds it, dom0's `devices` module
//! drives it; docs/architecture.md, "dom0's devices").
//!
//! - PCI device 00:02.0 is the management NIC (virtio-net, QEMU user
//!   networking, loopback only), 00:03.0 the uplink NIC for guests, 00:04.0
//!   the disk (virtio-blk). dom0 takes the NICs' roles from their order on
//!   the bus, as Linux names eth0 and eth1: the first virtio-net function
//!   is the management NIC.
//! - QEMU forwards a free host port on 127.0.0.1 to [`MGMT_TCP_PORT`] on the
//!   management NIC; dom0's management agent listens there.

/// The TCP port dom0's management agent listens on, on the management NIC
/// (the guest side of QEMU's `hostfwd`; the host side is picked free per
/// QEMU run).
pub const MGMT_TCP_PORT: u16 = 7000;
