//! netback: dom0's end of the PV network device (`io/netif.h`), one vif
//! per guest NIC, each a port of the vswitch.
//!
//! - [`xenbus`]: the store handshake (libxl's and Linux netback's keys).
//! - [`tx`]: a packet assembled from the frontend's tx requests, and
//!   every malformed one refused (oversize, runt, a slot crossing its
//!   page, too many slots, sizes that do not add up, extra info).
//! - [`csum`]: the TCP/UDP checksum of a packet sent `NETTXF_csum_blank`
//!   (the guest's checksum offload), filled before the switch sees it.
//! - [`limits`]: the transmit credit (the backend's `rate` key, as
//!   Linux's) and the rate of log lines per vif.
//! - `live` (dom0 only): [`NetBackends`]: attach/detach/list, and `serve`,
//!   called from the agent loop: connects vifs whose frontend is ready
//!   (maps both rings by grant, binds the event channel), copies each
//!   tx packet out of the guest with `GNTTABOP_copy` and hands it to
//!   the switch (`crate::switch::Vswitch::forward`), copies the frames
//!   the switch queued for a vif into the guest's posted rx buffers
//!   (`feature-rx-copy`).
//!
//! A frontend is hostile: every bad request is dropped, answered
//! `NETIF_RSP_ERROR`, counted and logged at a limited rate, for that vif
//! only; ring indices that run ahead of the ring disconnect that vif.
//! Work is bounded: [`TX_BUDGET`] requests per vif per pass, vifs taken
//! round robin; the switch bounds the frames queued for each vif.
#![cfg_attr(test, allow(dead_code))] // host tests build only the portable half

pub mod boot;
pub mod csum;
pub mod limits;
pub mod tx;
pub mod xenbus;

#[cfg(target_os = "none")]
mod live;
#[cfg(target_os = "none")]
pub use live::{NetBackends, NetEnv};

use vswitch::{Mac, VlanMode};

/// Tx requests one vif may have served per pass before the others get
/// their turn (Linux netback's NAPI budget is 64 too).
pub const TX_BUDGET: usize = 64;
/// Vifs at once, at most.
pub const MAX_VIFS: usize = 32;
/// Vifs per domain, at most (devids 0..).
pub const MAX_VIFS_PER_DOMAIN: u32 = 8;

/// A vif to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifSpec {
    /// Its MAC (the only source the switch lets it send from).
    pub mac: Mac,
    /// Its switch port's VLAN membership.
    pub vlan: VlanMode,
}

/// Why a vif could not be attached or detached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The domain has [`MAX_VIFS_PER_DOMAIN`] vifs, or dom0 [`MAX_VIFS`].
    TooManyVifs,
    /// The switch refused the port.
    Switch(vswitch::SwitchError),
    /// The store refused a node (Xen's error string).
    Store(alloc::string::String),
    /// No such vif.
    NoSuchVif {
        /// Its domain.
        domid: u16,
        /// Its devid.
        devid: u32,
    },
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyVifs => write!(
                f,
                "too many vifs ({MAX_VIFS_PER_DOMAIN} per domain, {MAX_VIFS} in all)"
            ),
            Self::Switch(e) => write!(f, "vswitch: {e}"),
            Self::Store(e) => write!(f, "xenstore: {e}"),
            Self::NoSuchVif { domid, devid } => write!(f, "no vif{domid}.{devid}"),
        }
    }
}

/// One vif's counters (the switch counts what it forwards; these count
/// what the ring carried and what netback refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VifCounters {
    /// Packets the guest sent that went to the switch.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Tx packets dropped, by [`tx::TxDrop::index`].
    pub tx_dropped: [u64; 8],
    /// Times a tx packet waited for credit (`rate`).
    pub tx_throttled: u64,
    /// Frames copied into the guest's rx buffers.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames for the guest dropped because the copy into its buffer
    /// failed (a full queue is the switch's `tx_dropped`).
    pub rx_dropped: u64,
    /// Times the frontend's ring indices ran ahead (the vif was disconnected).
    pub ring_errors: u64,
}

impl core::fmt::Display for VifCounters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "tx {} packets {} bytes, rx {} packets {} bytes, rx-dropped {}, throttled {}, ring-errors {}, tx-dropped",
            self.tx_packets,
            self.tx_bytes,
            self.rx_packets,
            self.rx_bytes,
            self.rx_dropped,
            self.tx_throttled,
            self.ring_errors
        )?;
        for (name, n) in tx::TxDrop::NAMES.iter().zip(self.tx_dropped) {
            write!(f, " {name}={n}")?;
        }
        Ok(())
    }
}

/// A vif as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifInfo {
    /// The guest's domid.
    pub domid: u16,
    /// The vif's devid.
    pub devid: u32,
    /// Its MAC.
    pub mac: Mac,
    /// Its VLAN membership.
    pub vlan: VlanMode,
    /// Its switch port.
    pub port: vswitch::PortId,
    /// The backend's `XenbusState`.
    pub state: u32,
    /// Its counters.
    pub counters: VifCounters,
}
