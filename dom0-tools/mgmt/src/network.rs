//! What the protocol says about guests' networks (issue 13, protocol
//! 2.5): a domain's vifs, as its config asks for them and as
//! `network-list` reports them, and the vswitch's view.

use alloc::format;
use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};
pub use vswitch::{Mac, MacDisplay, Snapshot as VswitchSnapshot, VlanMode};

use crate::{DomId, MgmtError};

/// Most vifs one domain has (xl has no fixed limit; this bounds the work
/// and the store entries one config or client can cause).
pub const MAX_VIFS_PER_DOMAIN: usize = 8;

/// A vif a domain is to have: `vifs = [{ mac = "00:16:3e:..", vlan = 10 }]`
/// in its config, or `network-attach`'s options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifSpec {
    /// Its MAC; `None`: [`vswitch::default_mac`] of the domain's name and
    /// the vif's devid (Xen's OUI 00:16:3e, stable across runs).
    pub mac: Option<Mac>,
    /// Its VLAN membership on the vswitch.
    pub vlan: VlanMode,
}

impl VifSpec {
    /// Checks the MAC (unicast, not zero) and the VLANs (1..=4094; a trunk
    /// lists 1..=`vswitch::MAX_TRUNK_VLANS`, none twice).
    pub fn validate(&self) -> Result<(), MgmtError> {
        if let Some(mac) = &self.mac {
            if !vswitch::is_valid_source(mac) {
                return Err(invalid_vif(format!(
                    "MAC {} is a multicast or zero address; a vif needs a unicast MAC \
                     (e.g. 00:16:3e:xx:xx:xx)",
                    MacDisplay(mac)
                )));
            }
        }
        self.vlan
            .validate()
            .map_err(|e| invalid_vif(format!("{e}")))
    }
}

fn invalid_vif(reason: String) -> MgmtError {
    MgmtError::InvalidConfig {
        field: "vifs".into(),
        reason,
    }
}

/// How `network-detach` names a vif, as xl does: by devid or by MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VifRef {
    /// Its devid (`device/vif/<devid>`).
    Devid(u32),
    /// Its MAC.
    Mac(Mac),
}

impl VifRef {
    /// Reads an operator's argument: a MAC (`00:16:3e:..`) or a devid.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(mac) = vswitch::parse_mac(text) {
            return Some(Self::Mac(mac));
        }
        text.parse().ok().map(Self::Devid)
    }

    /// Whether the vif with `devid` and `mac` is this one.
    pub fn matches(&self, devid: u32, mac: &Mac) -> bool {
        match self {
            Self::Devid(d) => *d == devid,
            Self::Mac(m) => m == mac,
        }
    }
}

impl fmt::Display for VifRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Devid(devid) => write!(f, "vif {devid}"),
            Self::Mac(mac) => write!(f, "the vif with MAC {}", MacDisplay(mac)),
        }
    }
}

/// One vif, as `network-list` shows it (xl's Idx, Mac Addr, state, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifInfo {
    /// The guest.
    pub domid: DomId,
    /// Its devid (xl's "Idx").
    pub devid: u32,
    /// Its MAC.
    pub mac: Mac,
    /// Its VLAN membership.
    pub vlan: VlanMode,
    /// The backend's `XenbusState` (`io/xenbus.h`: 1 Initialising,
    /// 2 InitWait, 4 Connected, 5 Closing, 6 Closed).
    pub backend_state: u32,
    /// Its port on the vswitch (`vswitch show`).
    pub switch_port: u32,
}

/// `XenbusState`'s name (`io/xenbus.h`), for tables.
pub fn xenbus_state_name(state: u32) -> &'static str {
    match state {
        0 => "Unknown",
        1 => "Initialising",
        2 => "InitWait",
        3 => "Initialised",
        4 => "Connected",
        5 => "Closing",
        6 => "Closed",
        7 => "Reconfiguring",
        8 => "Reconfigured",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn vif_refs_read_as_xl_reads_them() {
        assert_eq!(VifRef::parse("0"), Some(VifRef::Devid(0)));
        assert_eq!(
            VifRef::parse("00:16:3e:00:00:01"),
            Some(VifRef::Mac([0, 0x16, 0x3e, 0, 0, 1]))
        );
        assert_eq!(VifRef::parse("eth0"), None);
    }

    #[test]
    fn vif_specs_are_checked() {
        let ok = VifSpec {
            mac: Some([0, 0x16, 0x3e, 1, 2, 3]),
            vlan: VlanMode::Trunk(vec![10, 20]),
        };
        assert_eq!(ok.validate(), Ok(()));
        let multicast = VifSpec {
            mac: Some([1, 0, 0x5e, 0, 0, 1]),
            ..ok.clone()
        };
        assert!(matches!(
            multicast.validate(),
            Err(MgmtError::InvalidConfig { .. })
        ));
        let bad_vlan = VifSpec {
            mac: None,
            vlan: VlanMode::Access(4095),
        };
        let err = bad_vlan.validate().unwrap_err();
        assert!(
            format!("{err}").contains("VLAN 4095 is not a VLAN id"),
            "{err}"
        );
    }
}
