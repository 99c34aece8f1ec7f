//! Vifs for the boot-time domUs, which xen-core builds before dom0's
//! toolstack runs: dom0's command line `boot-vifs=NAME:VLAN,...` gives
//! each named domain one vif, an access port of VLAN (default
//! `vswitch::DEFAULT_VLAN` when `:VLAN` is left out), with the stable
//! default MAC `vswitch::default_mac(NAME, 0)`. Domains created later
//! get theirs from their config (`vifs = [...]`).

use alloc::string::String;
use alloc::vec::Vec;

/// Most entries `boot-vifs=` may list.
pub const BOOT_VIFS_MAX: usize = 16;

/// The VLAN of a vif whose entry names none.
pub const BOOT_VIF_DEFAULT_VLAN: u16 = 1;

/// One `NAME:VLAN` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootVif {
    /// The domain's name.
    pub name: String,
    /// Its access VLAN.
    pub vlan: u16,
}

/// Parses `boot-vifs=`'s value; malformed entries are returned apart
/// (to be logged), the rest are kept. At most [`BOOT_VIFS_MAX`].
pub fn parse_boot_vifs(text: &str) -> (Vec<BootVif>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for entry in text.split(',').filter(|e| !e.is_empty()) {
        let (name, vlan) = match entry.split_once(':') {
            Some((name, vlan)) => (name, vlan.parse().ok()),
            None => (entry, Some(BOOT_VIF_DEFAULT_VLAN)),
        };
        match vlan {
            Some(vlan) if !name.is_empty() && good.len() < BOOT_VIFS_MAX => good.push(BootVif {
                name: name.into(),
                vlan,
            }),
            _ => bad.push(entry.into()),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_the_default_vlan_and_bad_ones_apart() {
        let (good, bad) = parse_boot_vifs("web:10,db,x:y,:5,,cache:20");
        let names: Vec<(&str, u16)> = good.iter().map(|v| (v.name.as_str(), v.vlan)).collect();
        assert_eq!(names, [("web", 10), ("db", 1), ("cache", 20)]);
        assert_eq!(bad, ["x:y", ":5"]);
        assert_eq!(parse_boot_vifs(""), (Vec::new(), Vec::new()));
    }
}
