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
//! - The uplink NIC is QEMU user networking too (its own instance,
//!   `restrict=on`: nothing leaves the host), the vswitch's uplink port.
//!   Guests on the uplink's VLAN take static addresses in
//!   [`UPLINK_NET`]/[`UPLINK_PREFIX_LEN`] from [`UPLINK_GUEST_FIRST`] on
//!   (QEMU's own are .2 the gateway, .3 DNS, .15 its DHCP's first lease).
//!   A free host port on 127.0.0.1 is forwarded to
//!   [`UPLINK_FORWARD_GUEST`] (`hostfwd`), and a guest's connection to
//!   [`UPLINK_HOST_SERVICE`] is relayed to a host port on 127.0.0.1
//!   (`guestfwd`; `restrict=on` forbids reaching the host at .2).

/// The TCP port dom0's management agent listens on, on the management NIC
/// (the guest side of QEMU's `hostfwd`; the host side is picked free per
/// QEMU run).
pub const MGMT_TCP_PORT: u16 = 7000;

/// The uplink's IPv4 network (QEMU user networking's default).
pub const UPLINK_NET: [u8; 4] = [10, 0, 2, 0];
/// Its prefix length.
pub const UPLINK_PREFIX_LEN: u8 = 24;
/// QEMU's address on it: the gateway (unreachable with `restrict=on`).
pub const UPLINK_GATEWAY: [u8; 4] = [10, 0, 2, 2];
/// The first address guests on the uplink's VLAN take (static).
pub const UPLINK_GUEST_FIRST: [u8; 4] = [10, 0, 2, 16];
/// The guest address and TCP port QEMU forwards a host port to
/// (`hostfwd=tcp:127.0.0.1:HOSTPORT-10.0.2.16:80`): a guest serving
/// HTTP there is reachable from the host.
pub const UPLINK_FORWARD_GUEST: ([u8; 4], u16) = ([10, 0, 2, 16], 80);
/// The address and TCP port a guest connects to to reach a service on
/// the host's loopback (`guestfwd`; xtask relays it to a host port).
pub const UPLINK_HOST_SERVICE: ([u8; 4], u16) = ([10, 0, 2, 100], 8000);
