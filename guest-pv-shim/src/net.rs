//! TCP/IP for shim guests: `smoltcp` over netfront. The guest's address
//! comes from its command line, `ip=10.0.0.2/24` and optionally
//! `gw=10.0.0.1` ([`IpConfig::from_cmdline`]); `NetDevice` (bare metal)
//! is smoltcp's `Device` for a connected `Netfront`, and `NetStack` puts
//! the interface, the sockets and the sleeping between polls together.
//! No allocation: socket storage is the caller's.

use core::fmt;

use smoltcp::wire::{IpCidr, Ipv4Address, Ipv4Cidr};

/// A static IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Address and prefix.
    pub cidr: Ipv4Cidr,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

/// Why the command line's network settings were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfigError {
    /// No `ip=`.
    Missing,
    /// `ip=` is not `a.b.c.d/len` (len 0..=32).
    BadAddress,
    /// `gw=` is not `a.b.c.d`.
    BadGateway,
}

impl fmt::Display for IpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no ip=a.b.c.d/len on the command line"),
            Self::BadAddress => write!(f, "ip= is not a.b.c.d/len"),
            Self::BadGateway => write!(f, "gw= is not a.b.c.d"),
        }
    }
}

impl IpConfig {
    /// From the values of `ip=` and `gw=` (each `None` if absent).
    pub fn parse(ip: Option<&str>, gw: Option<&str>) -> Result<Self, IpConfigError> {
        let (addr, len) = ip
            .ok_or(IpConfigError::Missing)?
            .split_once('/')
            .ok_or(IpConfigError::BadAddress)?;
        let addr: Ipv4Address = addr.parse().map_err(|_| IpConfigError::BadAddress)?;
        let len: u8 = len.parse().map_err(|_| IpConfigError::BadAddress)?;
        if len > 32 {
            return Err(IpConfigError::BadAddress);
        }
        let gateway = gw
            .map(|g| g.parse().map_err(|_| IpConfigError::BadGateway))
            .transpose()?;
        Ok(IpConfig {
            cidr: Ipv4Cidr::new(addr, len),
            gateway,
        })
    }

    /// From a start info's command line.
    pub fn from_cmdline(start_info: &crate::StartInfo) -> Result<Self, IpConfigError> {
        Self::parse(start_info.cmdline_arg("ip"), start_info.cmdline_arg("gw"))
    }

    /// The address as smoltcp's interface takes it.
    pub fn ip_cidr(&self) -> IpCidr {
        IpCidr::Ipv4(self.cidr)
    }
}

/// Whether `frame` (Ethernet, untagged) carries TCP or UDP over IPv4:
/// the frames whose checksum a frontend may leave to the backend
/// (`NETTXF_csum_blank`; netback fills it).
pub fn checksum_offloadable(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00][..]) && matches!(frame.get(23), Some(6 | 17))
}

/// Parses `a.b.c.d:port` (a peer on the command line).
pub fn parse_endpoint(text: &str) -> Option<(Ipv4Address, u16)> {
    let (addr, port) = text.split_once(':')?;
    Some((addr.parse().ok()?, port.parse().ok()?))
}

#[cfg(target_os = "none")]
pub use live::{up, NetDevice, NetStack, Up, UpError};

#[cfg(target_os = "none")]
mod live {
    use abi::xen::netif::NETTXF_CSUM_BLANK;
    use smoltcp::iface::{Config, Interface, PollResult, SocketSet, SocketStorage};
    use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
    use smoltcp::time::Instant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress};

    use super::{IpConfig, IpConfigError};
    use crate::arch::netfront::{ConnectError, Netfront};
    use crate::arch::xenbus_front::{self, StoreRing};
    use crate::netfront::MTU_FRAME;
    use crate::xenbus::Client;
    use crate::{Events, Grants, StartInfo, Xen};

    /// Why [`up`] failed.
    #[derive(Clone, Copy, Debug)]
    pub enum UpError {
        /// The command line's address.
        Ip(IpConfigError),
        /// Event channels, grant tables or the store are unavailable.
        Setup(&'static str),
        /// The vif did not connect.
        Connect(ConnectError),
    }

    impl core::fmt::Display for UpError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::Ip(e) => write!(f, "{e}"),
                Self::Setup(what) => write!(f, "{what} unavailable"),
                Self::Connect(e) => write!(f, "vif 0: {e}"),
            }
        }
    }

    /// What a network guest does first: reads `ip=`/`gw=`, starts event
    /// channels and grants, reaches the store and connects vif 0 (waiting
    /// for the toolstack to attach it).
    pub fn up(xen: &Xen, start_info: &StartInfo) -> Result<Up, UpError> {
        let ip = IpConfig::from_cmdline(start_info).map_err(UpError::Ip)?;
        let events = Events::init(xen).map_err(|_| UpError::Setup("event channels"))?;
        let grants =
            Grants::init(xen, start_info.ram_end()).map_err(|_| UpError::Setup("grant tables"))?;
        let mut xs = xenbus_front::connect(&events).map_err(|_| UpError::Setup("xenstore"))?;
        let front = Netfront::connect(&mut xs, &events, &grants, 0).map_err(UpError::Connect)?;
        Ok(Up { front, ip, xs })
    }

    /// A connected vif, its address and the store client.
    pub struct Up {
        /// The vif.
        pub front: Netfront,
        /// The address from the command line.
        pub ip: IpConfig,
        /// The store.
        pub xs: Client<StoreRing>,
    }

    /// System time (ns) as smoltcp's clock (µs).
    fn instant(ns: u64) -> Instant {
        Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
    }

    /// smoltcp's `Device` over a connected [`Netfront`].
    pub struct NetDevice {
        front: Netfront,
        rx_buf: [u8; MTU_FRAME],
        /// TCP/UDP checksums left to the backend ([`NetStack::set_csum_offload`]).
        csum_offload: bool,
    }

    /// A received frame.
    pub struct RxToken<'a>(&'a [u8]);
    /// Room for a frame to send, and whether TCP/UDP checksums are left
    /// to the backend.
    pub struct TxToken<'a>(&'a mut Netfront, bool);

    impl phy::RxToken for RxToken<'_> {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(self.0)
        }
    }

    impl phy::TxToken for TxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = [0u8; MTU_FRAME];
            let len = len.min(MTU_FRAME);
            let r = f(&mut frame[..len]);
            let flags = if self.1 && super::checksum_offloadable(&frame[..len]) {
                NETTXF_CSUM_BLANK
            } else {
                0
            };
            // A frame smoltcp built while a buffer was free: the send
            // fails only if the backend broke the ring; TCP resends.
            let _ = self.0.send_with_flags(&frame[..len], flags);
            r
        }
    }

    impl phy::Device for NetDevice {
        type RxToken<'a> = RxToken<'a>;
        type TxToken<'a> = TxToken<'a>;

        fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
            let n = self.front.recv(&mut self.rx_buf).ok().flatten()?;
            let offload = self.csum_offload;
            Some((
                RxToken(&self.rx_buf[..n]),
                TxToken(&mut self.front, offload),
            ))
        }

        fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
            let offload = self.csum_offload;
            self.front
                .can_send()
                .then_some(TxToken(&mut self.front, offload))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = MTU_FRAME;
            if self.csum_offload {
                // Verified on receipt, left blank on send (netback fills them).
                caps.checksum.tcp = Checksum::Rx;
                caps.checksum.udp = Checksum::Rx;
            }
            caps
        }
    }

    impl NetDevice {
        /// The frontend.
        pub fn front(&mut self) -> &mut Netfront {
            &mut self.front
        }
    }

    /// An interface, its sockets and its device.
    pub struct NetStack<'s> {
        /// The device.
        pub dev: NetDevice,
        /// The interface.
        pub iface: Interface,
        /// The sockets.
        pub sockets: SocketSet<'s>,
    }

    impl<'s> NetStack<'s> {
        /// An interface with `front`'s MAC and `ip`, sockets in `storage`.
        pub fn new(front: Netfront, ip: &IpConfig, storage: &'s mut [SocketStorage<'s>]) -> Self {
            let mac = front.mac();
            let mut dev = NetDevice {
                front,
                rx_buf: [0; MTU_FRAME],
                csum_offload: false,
            };
            let now = instant(dev.front.now());
            let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
            let mut iface = Interface::new(config, &mut dev, now);
            iface.update_ip_addrs(|addrs| {
                // One address: the list has room.
                let _ = addrs.push(ip.ip_cidr());
            });
            if let Some(gw) = ip.gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
            }
            NetStack {
                dev,
                iface,
                sockets: SocketSet::new(storage),
            }
        }

        /// Leaves the TCP and UDP checksums of IPv4 frames sent from now
        /// on to the backend (`NETTXF_csum_blank`, as Linux's netfront
        /// does); received ones are still verified.
        pub fn set_csum_offload(&mut self, on: bool) {
            self.dev.csum_offload = on;
        }

        /// smoltcp's clock: system time.
        pub fn now(&self) -> Instant {
            instant(self.dev.front.now())
        }

        /// Lets the interface process what arrived and send what is due;
        /// true if any socket may have changed.
        pub fn poll(&mut self) -> bool {
            let now = self.now();
            self.iface.poll(now, &mut self.dev, &mut self.sockets) == PollResult::SocketStateChanged
        }

        /// Polls, then sleeps until the backend sends an event or the
        /// interface's next timer, at most `max_ns`.
        pub fn poll_wait(&mut self, max_ns: u64) {
            if self.poll() || self.dev.front.rx_pending() {
                return;
            }
            let now = self.now();
            let delay_ns = self
                .iface
                .poll_delay(now, &self.sockets)
                .map_or(max_ns, |d| d.total_micros().saturating_mul(1000))
                .min(max_ns);
            if delay_ns == 0 {
                return;
            }
            let deadline = self.dev.front.now().saturating_add(delay_ns);
            self.dev.front.wait(Some(deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_gateway_parse_from_the_command_line_values() {
        let c = IpConfig::parse(Some("10.0.0.2/24"), Some("10.0.0.1")).unwrap();
        assert_eq!(c.cidr, Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24));
        assert_eq!(c.gateway, Some(Ipv4Address::new(10, 0, 0, 1)));
        assert_eq!(
            IpConfig::parse(Some("10.0.0.2/24"), None).unwrap().gateway,
            None
        );
        assert_eq!(IpConfig::parse(None, None), Err(IpConfigError::Missing));
        assert_eq!(
            IpConfig::parse(Some("10.0.0.2"), None),
            Err(IpConfigError::BadAddress)
        );
        assert_eq!(
            IpConfig::parse(Some("10.0.0.2/33"), None),
            Err(IpConfigError::BadAddress)
        );
        assert_eq!(
            IpConfig::parse(Some("10.0.0.2/24"), Some("x")),
            Err(IpConfigError::BadGateway)
        );
        assert_eq!(
            parse_endpoint("10.0.0.3:7"),
            Some((Ipv4Address::new(10, 0, 0, 3), 7))
        );
        assert_eq!(parse_endpoint("10.0.0.3"), None);
    }

    #[test]
    fn only_tcp_and_udp_over_ipv4_may_go_out_with_a_blank_checksum() {
        let mut frame = [0u8; 60];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        for (proto, offloadable) in [(6, true), (17, true), (1, false)] {
            frame[23] = proto;
            assert_eq!(checksum_offloadable(&frame), offloadable, "{proto}");
        }
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        frame[23] = 6;
        assert!(!checksum_offloadable(&frame), "ARP");
        assert!(!checksum_offloadable(&frame[..20]));
    }
}
