//! Filling the checksum of a packet a frontend sent `NETTXF_csum_blank`
//! (netif.h: "protocol checksum field is blank", the guest's checksum
//! offload). Linux's xen-netfront offloads the checksum of every TCP and
//! UDP packet over IPv4, and no backend key turns that off
//! (`feature-no-csum-offload` is the frontend's key, for what the backend
//! sends it; Linux netback: "there is no mechanism to insist that a guest
//! always generates a packet with good checksum"). So netback completes
//! the checksum before the packet reaches the switch, as Linux netback's
//! `checksum_setup` followed by the stack's software checksum. The whole
//! checksum is computed again (pseudo-header and segment), so it does not
//! matter whether the frontend left the field zero or seeded it with the
//! pseudo-header sum (Linux's `CHECKSUM_PARTIAL` convention).
//!
//! Served: IPv4 (untagged or with one 802.1Q tag), not a fragment, TCP or
//! UDP (a UDP result of 0 is sent as 0xffff, RFC 768). Anything else
//! flagged blank is refused ([`CsumError`]) and the packet dropped, as
//! Linux drops a packet whose checksum it cannot set up. IPv6 checksum
//! offload is not offered (`feature-ipv6-csum-offload` = 0).

use core::fmt;

use mgmt_net::smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of an 802.1Q tag.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// Bytes of an Ethernet header without a tag.
const ETH_HLEN: usize = 14;
/// Bytes of one 802.1Q tag.
const VLAN_HLEN: usize = 4;

/// Why a blank checksum could not be filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumError {
    /// Not IPv4 (the EtherType after any tag).
    NotIpv4(u16),
    /// The IPv4 header or its total length does not fit the frame.
    Truncated,
    /// An IPv4 fragment: the checksum covers the whole datagram.
    Fragment,
    /// Neither TCP nor UDP (the IPv4 protocol number).
    Protocol(u8),
}

impl fmt::Display for CsumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotIpv4(t) => write!(f, "EtherType {t:#06x} is not IPv4"),
            Self::Truncated => write!(f, "IPv4 header or length past the frame"),
            Self::Fragment => write!(f, "an IPv4 fragment"),
            Self::Protocol(p) => write!(f, "IP protocol {p} is neither TCP nor UDP"),
        }
    }
}

/// Computes and writes the TCP or UDP checksum of the IPv4 packet in
/// `frame` (an Ethernet frame, destination MAC first, no FCS). Bytes
/// after the IPv4 total length (Ethernet padding) are not covered.
pub fn fill(frame: &mut [u8]) -> Result<(), CsumError> {
    let ethertype = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut l3 = ETH_HLEN;
    let mut kind = ethertype(12).ok_or(CsumError::Truncated)?;
    if kind == ETHERTYPE_VLAN {
        l3 += VLAN_HLEN;
        kind = ethertype(16).ok_or(CsumError::Truncated)?;
    }
    if kind != ETHERTYPE_IPV4 {
        return Err(CsumError::NotIpv4(kind));
    }
    let ip = Ipv4Packet::new_checked(&mut frame[l3..]).map_err(|_| CsumError::Truncated)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(CsumError::Fragment);
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let (protocol, header_len) = (ip.next_header(), usize::from(ip.header_len()));
    let end = l3 + usize::from(ip.total_len());
    // new_checked: the total length is at least the header's and fits.
    let segment = &mut frame[l3 + header_len..end];
    match protocol {
        IpProtocol::Tcp => {
            let mut tcp = TcpPacket::new_checked(segment).map_err(|_| CsumError::Truncated)?;
            tcp.fill_checksum(&src, &dst);
        }
        IpProtocol::Udp => {
            let mut udp = UdpPacket::new_checked(segment).map_err(|_| CsumError::Truncated)?;
            udp.fill_checksum(&src, &dst);
        }
        other => return Err(CsumError::Protocol(other.into())),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
