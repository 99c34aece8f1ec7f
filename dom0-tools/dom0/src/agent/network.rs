//! The network requests (mgmt 2.5): `NetworkAttach`, `NetworkDetach`,
//! `NetworkList`, and the vifs a new domain's config asks for, served
//! by netback ([`crate::netback::NetBackends`]) on the vswitch.

use alloc::format;
use alloc::vec::Vec;

use abi::control::DomainInfo;
use guest_pv_shim::println;
use mgmt::network::{Mac, VifInfo, VifRef, VlanMode};
use mgmt::{DomainRef, MgmtError, Reply};
use toolstack::Hypervisor;

use super::domains::{find, is_dom0, name_of};
use super::session::Ctx;
use crate::netback::{self, NetEnv, VifSpec};

fn env<'a, H>(
    ctx: &'a mut Ctx<'_, H>,
) -> (
    NetEnv<'a>,
    &'a mut crate::switch::Vswitch,
    &'a mut netback::NetBackends,
) {
    let now = ctx.backend.now().unwrap_or(0);
    (
        NetEnv {
            events: ctx.backend.events(),
            grants: ctx.backend.grants(),
            store: &mut *ctx.store,
            now,
        },
        &mut *ctx.vswitch,
        &mut *ctx.netback,
    )
}

fn info(v: netback::VifInfo) -> VifInfo {
    VifInfo {
        domid: v.domid,
        devid: v.devid,
        mac: v.mac,
        vlan: v.vlan,
        backend_state: v.state,
        switch_port: v.port.0,
    }
}

fn refused(domid: u16, e: impl core::fmt::Display) -> MgmtError {
    MgmtError::NetworkRefused {
        domid,
        reason: format!("{e}"),
    }
}

/// Attaches one vif to `target` (its MAC derived from the name and the
/// devid when `mac` is `None`).
fn attach_to(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    target: &DomainInfo,
    mac: Option<Mac>,
    vlan: VlanMode,
) -> Result<VifInfo, MgmtError> {
    let domid = target.domid;
    let devid = ctx
        .netback
        .next_devid(domid)
        .ok_or_else(|| refused(domid, netback::NetError::TooManyVifs))?;
    let spec = VifSpec {
        mac: mac.unwrap_or_else(|| vswitch::default_mac(name_of(target), devid)),
        vlan,
    };
    let devid = ctx
        .netback
        .attach(ctx.store, ctx.vswitch, domid, spec)
        .map_err(|e| refused(domid, e))?;
    ctx.netback
        .list()
        .into_iter()
        .find(|v| v.domid == domid && v.devid == devid)
        .map(info)
        .ok_or_else(|| refused(domid, "the vif vanished"))
}

/// `NetworkAttach`.
pub fn attach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    mac: Option<Mac>,
    vlan: VlanMode,
) -> Result<Reply, MgmtError> {
    let target = find(ctx.hv, domain)?;
    if is_dom0(&target) {
        return Err(refused(0, "dom0 has no vifs; its NICs are its own"));
    }
    attach_to(ctx, &target, mac, vlan).map(Reply::VifAttached)
}

/// `NetworkDetach`.
pub fn detach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    vif: &VifRef,
) -> Result<Reply, MgmtError> {
    let domid = find(ctx.hv, domain)?.domid;
    let devid = ctx
        .netback
        .list()
        .into_iter()
        .find(|v| v.domid == domid && vif.matches(v.devid, &v.mac))
        .map(|v| v.devid)
        .ok_or_else(|| MgmtError::NoSuchVif {
            domid,
            vif: vif.clone(),
        })?;
    let (mut env, switch, net) = env(ctx);
    net.detach(&mut env, switch, domid, devid)
        .map_err(|e| refused(domid, e))?;
    Ok(Reply::Done)
}

/// `NetworkList`.
pub fn list(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: Option<&DomainRef>,
) -> Result<Reply, MgmtError> {
    let only = domain
        .map(|d| find(ctx.hv, d))
        .transpose()?
        .map(|d| d.domid);
    let mut vifs: Vec<VifInfo> = ctx
        .netback
        .list()
        .into_iter()
        .filter(|v| only.is_none_or(|d| v.domid == d))
        .map(info)
        .collect();
    vifs.sort_by_key(|v| (v.domid, v.devid));
    Ok(Reply::Vifs(vifs))
}

/// A new domain's `vifs = [...]`, in order (devids 0, 1, ...). A vif
/// that cannot be attached is logged; the domain stays.
pub fn attach_config_vifs(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    target: &DomainInfo,
    vifs: &[mgmt::network::VifSpec],
) {
    for vif in vifs {
        if let Err(e) = attach_to(ctx, target, vif.mac, vif.vlan.clone()) {
            println!("dom0: mgmt: d{}: vif not attached: {e}", target.domid);
        }
    }
}

/// The vifs of a domain going away.
pub fn domain_destroyed(ctx: &mut Ctx<'_, impl Hypervisor>, domid: u16) {
    let (mut env, switch, net) = env(ctx);
    net.domain_destroyed(&mut env, switch, domid);
}
