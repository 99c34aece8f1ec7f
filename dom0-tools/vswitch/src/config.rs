//! What a port is: its kind (a guest's vif or the uplink), its VLAN
//! membership (802.1Q access or trunk) and the limits a configuration
//! must keep.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A MAC address, in the order it has on the wire.
pub type Mac = [u8; 6];

/// Lowest VLAN id a port may carry (IEEE 802.1Q: 0 means "priority tag
/// only, no VLAN").
pub const VLAN_MIN: u16 = 1;
/// Highest VLAN id a port may carry (IEEE 802.1Q reserves 4095).
pub const VLAN_MAX: u16 = 4094;
/// The VLAN a vif joins when its config names none, and the uplink's:
/// guests reach the host unless told otherwise (Linux's bridge's default
/// PVID is 1 too).
pub const DEFAULT_VLAN: u16 = 1;
/// Most VLANs one trunk port carries (keeps a port's static learning
/// entries and the `vswitch show` reply bounded).
pub const MAX_TRUNK_VLANS: usize = 8;
/// Most ports on the switch.
pub const MAX_PORTS: usize = 32;
/// Longest port name, bytes.
pub const MAX_PORT_NAME: usize = 32;

/// A port's handle, unique for the switch's lifetime (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A port's 802.1Q membership.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum VlanMode {
    /// Untagged frames, all in this one VLAN: tagged frames arriving are
    /// dropped, frames leaving have their tag removed.
    Access(u16),
    /// Tagged frames of these VLANs only (no native VLAN): untagged frames
    /// and frames of other VLANs arriving are dropped, frames leaving
    /// carry their VLAN's tag.
    Trunk(Vec<u16>),
}

impl VlanMode {
    /// Whether the port is a member of `vlan`.
    pub fn carries(&self, vlan: u16) -> bool {
        match self {
            Self::Access(v) => *v == vlan,
            Self::Trunk(list) => list.contains(&vlan),
        }
    }

    /// The VLANs the port is a member of.
    pub fn vlans(&self) -> &[u16] {
        match self {
            Self::Access(v) => core::slice::from_ref(v),
            Self::Trunk(list) => list,
        }
    }

    /// Checks the VLAN ids ([`VLAN_MIN`]..=[`VLAN_MAX`]) and a trunk's
    /// list (1..=[`MAX_TRUNK_VLANS`] ids, none twice).
    pub fn validate(&self) -> Result<(), SwitchError> {
        let vlans = self.vlans();
        if let Some(&bad) = vlans.iter().find(|v| !(VLAN_MIN..=VLAN_MAX).contains(*v)) {
            return Err(SwitchError::InvalidVlan(bad));
        }
        if let Self::Trunk(list) = self {
            if list.is_empty() || list.len() > MAX_TRUNK_VLANS {
                return Err(SwitchError::TrunkSize(list.len()));
            }
            if list.iter().enumerate().any(|(i, v)| list[..i].contains(v)) {
                return Err(SwitchError::DuplicateVlan);
            }
        }
        Ok(())
    }
}

impl fmt::Display for VlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Access(v) => write!(f, "access {v}"),
            Self::Trunk(list) => {
                f.write_str("trunk ")?;
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}

/// What is behind a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PortKind {
    /// A guest's netfront, served by netback (Xen's `vif<domid>.<devid>`).
    /// It may send only from `mac` (anti-spoofing).
    Vif {
        /// The guest's domid.
        domid: u16,
        /// The vif's device id (`device/vif/<devid>`).
        devid: u32,
        /// The MAC the vif was given (xenstore `mac`).
        mac: Mac,
    },
    /// dom0's uplink NIC: the way north (to the host, other machines).
    Uplink,
}

impl PortKind {
    /// Whether this is a guest's vif.
    pub fn is_vif(&self) -> bool {
        matches!(self, Self::Vif { .. })
    }
}

/// A port as it is added to the switch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortConfig {
    /// Its name for the operator (e.g. Xen's `vif3.0`, or `uplink`), at
    /// most [`MAX_PORT_NAME`] bytes.
    pub name: String,
    /// What is behind it.
    pub kind: PortKind,
    /// Its VLAN membership.
    pub vlan: VlanMode,
}

/// Why the switch refused a port.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SwitchError {
    /// A VLAN id outside 1..=4094.
    InvalidVlan(u16),
    /// A trunk with no VLAN or more than [`MAX_TRUNK_VLANS`].
    TrunkSize(usize),
    /// A trunk listing one VLAN twice.
    DuplicateVlan,
    /// The switch already has [`MAX_PORTS`] ports.
    TooManyPorts,
    /// A name longer than [`MAX_PORT_NAME`] bytes, or empty.
    InvalidName,
    /// Another vif already has this MAC in one of the port's VLANs.
    MacInUse {
        /// The MAC.
        mac: Mac,
        /// The VLAN both would be in.
        vlan: u16,
    },
    /// A vif's MAC that no netfront may send from: a group (multicast or
    /// broadcast) address or all zeros.
    InvalidMac(Mac),
    /// No port with this id.
    NoSuchPort(PortId),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidVlan(v) => {
                write!(f, "VLAN {v} is not a VLAN id ({VLAN_MIN} to {VLAN_MAX})")
            }
            Self::TrunkSize(n) => {
                write!(f, "a trunk carries 1 to {MAX_TRUNK_VLANS} VLANs, not {n}")
            }
            Self::DuplicateVlan => f.write_str("a trunk lists the same VLAN twice"),
            Self::TooManyPorts => write!(f, "the switch has its {MAX_PORTS} ports already"),
            Self::InvalidName => write!(f, "a port name is 1 to {MAX_PORT_NAME} bytes"),
            Self::MacInUse { mac, vlan } => write!(
                f,
                "MAC {} is already another vif's in VLAN {vlan}",
                MacDisplay(mac)
            ),
            Self::InvalidMac(mac) => write!(
                f,
                "MAC {} is a group or zero address; a vif needs a unicast MAC",
                MacDisplay(mac)
            ),
            Self::NoSuchPort(id) => write!(f, "no switch port {id}"),
        }
    }
}

/// Shows a MAC as `00:16:3e:01:02:03`.
pub struct MacDisplay<'a>(pub &'a Mac);

impl fmt::Display for MacDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Reads a MAC written as six two-digit hex bytes separated by `:`
/// (`00:16:3e:01:02:03`, either case). `None` if it is not one.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether `mac` is a group address (I/G bit set: multicast, broadcast).
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// Whether a station may send from `mac`: unicast and not all zeros.
pub fn is_valid_source(mac: &Mac) -> bool {
    !is_group(mac) && *mac != [0; 6]
}

/// Xen's OUI (`00:16:3e`), the first half of every MAC xl makes up.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The default MAC of a domain's vif, stable across runs: Xen's OUI
/// followed by the low 23 bits of the FNV-1a hash of the domain's name and
/// the vif's devid (the name's bytes, a `/`, the devid in decimal). The
/// top bit of the fourth byte stays 0, as xl keeps it for random MACs, so
/// a derived MAC never looks like an operator's chosen one above
/// `00:16:3e:80:00:00`.
pub fn default_mac(domain_name: &str, devid: u32) -> Mac {
    const FNV_OFFSET: u32 = 0x811c_9dc5;
    const FNV_PRIME: u32 = 0x0100_0193;
    let mut hash = FNV_OFFSET;
    let mut feed = |b: u8| hash = (hash ^ u32::from(b)).wrapping_mul(FNV_PRIME);
    domain_name.bytes().for_each(&mut feed);
    feed(b'/');
    let mut digits = [0u8; 10];
    let mut n = devid;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[..len].iter().rev().copied().for_each(&mut feed);
    let low = hash.to_be_bytes();
    [
        XEN_OUI[0],
        XEN_OUI[1],
        XEN_OUI[2],
        low[1] & 0x7f,
        low[2],
        low[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    #[test]
    fn mac_text_round_trips() {
        let mac = [0x00, 0x16, 0x3e, 0xab, 0x0c, 0xff];
        assert_eq!(format!("{}", MacDisplay(&mac)), "00:16:3e:ab:0c:ff");
        assert_eq!(parse_mac("00:16:3E:AB:0c:ff"), Some(mac));
        for bad in [
            "",
            "00:16:3e:ab:0c",
            "00:16:3e:ab:0c:ff:00",
            "0:16:3e:ab:0c:ff",
            "zz:16:3e:ab:0c:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_mac_is_xen_oui_stable_and_distinct() {
        let a = default_mac("web", 0);
        assert_eq!(a[..3], XEN_OUI);
        assert_eq!(a[3] & 0x80, 0);
        assert_eq!(a, default_mac("web", 0));
        assert_ne!(a, default_mac("web", 1));
        assert_ne!(a, default_mac("db", 0));
        assert!(is_valid_source(&a));
        // Pinned: operators may have written it down (FNV-1a of "web/0"
        // is 0x01bd0f1e; its low 23 bits are 3d:0f:1e).
        assert_eq!(format!("{}", MacDisplay(&a)), "00:16:3e:3d:0f:1e");
    }

    #[test]
    fn vlan_modes_are_checked() {
        assert_eq!(VlanMode::Access(1).validate(), Ok(()));
        assert_eq!(
            VlanMode::Access(0).validate(),
            Err(SwitchError::InvalidVlan(0))
        );
        assert_eq!(
            VlanMode::Access(4095).validate(),
            Err(SwitchError::InvalidVlan(4095))
        );
        assert_eq!(
            VlanMode::Trunk(vec![]).validate(),
            Err(SwitchError::TrunkSize(0))
        );
        assert_eq!(
            VlanMode::Trunk(vec![1; MAX_TRUNK_VLANS + 1]).validate(),
            Err(SwitchError::TrunkSize(MAX_TRUNK_VLANS + 1))
        );
        assert_eq!(
            VlanMode::Trunk(vec![10, 20, 10]).validate(),
            Err(SwitchError::DuplicateVlan)
        );
        assert_eq!(VlanMode::Trunk(vec![10, 20]).validate(), Ok(()));
        assert_eq!(format!("{}", VlanMode::Trunk(vec![10, 20])), "trunk 10,20");
    }
}
