//! The PV network device, the subset of `xen/include/public/io/netif.h`
//! served by dom0's netback and used by the shim's netfront.
//!
//! Two shared rings, each one granted page (`io/ring.h`, see
//! [`super::ring`]): the **tx** ring carries frames from the frontend
//! (requests name a granted buffer, offset and size; a frame may span
//! several requests chained with [`NETTXF_MORE_DATA`], the first holding
//! the whole frame's size), the **rx** ring carries empty granted pages
//! the frontend posts ([`NetifRxRequest`]) which the backend fills by
//! grant copy (`feature-rx-copy`) and answers with [`NetifRxResponse`]
//! (status = bytes written, or a negative `NETIF_RSP_*`).
//!
//! Not in the subset: `NETTXF_extra_info` (GSO, multicast control,
//! hashing: the backend advertises none of them), rx flipping, multiple
//! queues, the control ring.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::grant_table::GrantRef;

/// `_NETTXF_csum_blank`: the protocol checksum is not yet filled in.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `_NETTXF_data_validated`: the packet's checksums were checked.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `_NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `_NETTXF_extra_info`: a `netif_extra_info` follows (not served).
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `_NETRXF_data_validated`: the packet's checksums were checked.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `_NETRXF_csum_blank`: the protocol checksum is not yet filled in.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `_NETRXF_more_data`: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `_NETRXF_extra_info`: a `netif_extra_info` follows (never sent here).
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETIF_RSP_DROPPED`: the backend dropped the packet.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`: the request was malformed or could not be served.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: a response slot without meaning (after an extra-info slot).
pub const NETIF_RSP_NULL: i16 = 1;

/// `XEN_NETIF_NR_SLOTS_MIN`: slots per packet every backend must accept.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: the largest packet a tx request can announce.
pub const XEN_NETIF_MAX_TX_SIZE: u16 = 0xffff;

/// `struct netif_tx_request`, 12 bytes: one buffer of a packet to send.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxRequest {
    /// The frontend's grant of the buffer's page.
    pub gref: GrantRef,
    /// Byte offset of the data in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Bytes in this buffer; in a packet's first request, the whole
    /// packet's size.
    pub size: u16,
}

/// `struct netif_tx_response`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxResponse {
    /// The request's `id`.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request`, 8 bytes: an empty page for the backend to fill.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Implicit C padding; zero.
    pub pad: u16,
    /// The frontend's grant of the page (writable).
    pub gref: GrantRef,
}

/// `struct netif_rx_response`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxResponse {
    /// The request's `id`.
    pub id: u16,
    /// Byte offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes written (> 0), or a negative `NETIF_RSP_*`.
    pub status: i16,
}

/// `NET_TX_RING_SIZE` for one page: 256 slots of 12 bytes.
pub const NET_TX_RING_SIZE: u32 = 256;
/// `NET_RX_RING_SIZE` for one page: 256 slots of 8 bytes.
pub const NET_RX_RING_SIZE: u32 = 256;

/// `ETH_HLEN + ETH_DATA_LEN`: the largest untagged Ethernet frame
/// without FCS (the MTU 1500 netfront uses without `feature-sg`).
pub const ETH_FRAME_MAX: usize = 1514;
/// `VLAN_ETH_HLEN + ETH_DATA_LEN`: the largest frame with one 802.1Q tag.
pub const VLAN_ETH_FRAME_MAX: usize = ETH_FRAME_MAX + 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::ring::ring_size;
    use crate::xen::PAGE_SIZE;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_netif_h() {
        assert_eq!(size_of::<NetifTxRequest>(), 12);
        assert_eq!(offset_of!(NetifTxRequest, offset), 4);
        assert_eq!(offset_of!(NetifTxRequest, flags), 6);
        assert_eq!(offset_of!(NetifTxRequest, id), 8);
        assert_eq!(offset_of!(NetifTxRequest, size), 10);
        assert_eq!(size_of::<NetifTxResponse>(), 4);
        assert_eq!(offset_of!(NetifTxResponse, status), 2);
        assert_eq!(size_of::<NetifRxRequest>(), 8);
        assert_eq!(offset_of!(NetifRxRequest, gref), 4);
        assert_eq!(size_of::<NetifRxResponse>(), 8);
        assert_eq!(offset_of!(NetifRxResponse, offset), 2);
        assert_eq!(offset_of!(NetifRxResponse, flags), 4);
        assert_eq!(offset_of!(NetifRxResponse, status), 6);
    }

    #[test]
    fn one_page_ring_sizes_match_netif_h() {
        // The slot is the union of request and response.
        assert_eq!(ring_size(PAGE_SIZE, 12), NET_TX_RING_SIZE);
        assert_eq!(ring_size(PAGE_SIZE, 8), NET_RX_RING_SIZE);
    }

    #[test]
    fn flag_values_match_netif_h() {
        assert_eq!(NETTXF_MORE_DATA, 4);
        assert_eq!(NETTXF_EXTRA_INFO, 8);
        assert_eq!(NETRXF_DATA_VALIDATED, 1);
        assert_eq!(NETRXF_MORE_DATA, 4);
        assert_eq!(NETIF_RSP_DROPPED, -2);
        assert_eq!(NETIF_RSP_NULL, 1);
    }
}
