//! The network requests (`network-attach`, `-detach`, `-list`) and the
//! vifs of a new domain's config, on netback's [`NetBackends`] and the
//! [`crate::switch::Vswitch`].

use alloc::format;
use alloc::vec::Vec;

use mgmt::network::{Mac, VlanMode};
use mgmt::{DomId, DomainOperation, DomainRef, MgmtError, Reply, VifInfo, VifRef, VifSpec};
use toolstack::Hypervisor;

use super::domains::{check_operable, find, name_of};
use super::session::Ctx;
use crate::netback::{self, NetBackends, NetEnv, NetError};

/// `NetworkAttach`: a vif for a running domain.
pub fn attach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    mac: Option<Mac>,
    vlan: VlanMode,
) -> Result<Reply, MgmtError> {
    let info = find(ctx.hv, domain)?;
    check_operable(&info, DomainOperation::AttachNetwork)?;
    let spec = VifSpec { mac, vlan };
    spec.validate()?;
    let devid = attach_one(ctx, info.domid, name_of(&info), spec)?;
    vif_info(ctx.netback, info.domid, devid).map(Reply::VifAttached)
}

/// The vifs of a new, still paused domain `domid` named `name`, in order
/// (devids 0, 1, ...). On error the ones attached stay: the caller
/// destroys the domain, which takes them.
pub fn attach_vifs(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domid: DomId,
    name: &str,
    vifs: &[VifSpec],
) -> Result<(), MgmtError> {
    for spec in vifs {
        attach_one(ctx, domid, name, spec.clone())?;
    }
    Ok(())
}

/// `NetworkDetach`: by devid or MAC.
pub fn detach(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    vif: &VifRef,
) -> Result<Reply, MgmtError> {
    let domid = find(ctx.hv, domain)?.domid;
    let devid = ctx
        .netback
        .list()
        .iter()
        .find(|v| v.domid == domid && vif.matches(v.devid, &v.mac))
        .map(|v| v.devid)
        .ok_or_else(|| MgmtError::NoSuchVif {
            domid,
            vif: vif.clone(),
        })?;
    let mut env = NetEnv {
        events: ctx.backend.events(),
        grants: ctx.backend.grants(),
        store: &mut *ctx.store,
        now: ctx.backend.now().unwrap_or(0),
    };
    ctx.netback
        .detach(&mut env, ctx.vswitch, domid, devid)
        .map_err(|e| refused(domid, &e))?;
    Ok(Reply::Done)
}

/// Takes every vif of a domain that goes away (destroyed, or a create
/// that failed).
pub fn domain_destroyed(ctx: &mut Ctx<'_, impl Hypervisor>, domid: DomId) {
    let mut env = NetEnv {
        events: ctx.backend.events(),
        grants: ctx.backend.grants(),
        store: &mut *ctx.store,
        now: ctx.backend.now().unwrap_or(0),
    };
    ctx.netback.domain_destroyed(&mut env, ctx.vswitch, domid);
}

/// `NetworkList`: one domain's vifs or all, by domid then devid.
pub fn list(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: Option<&DomainRef>,
) -> Result<Reply, MgmtError> {
    let only = domain
        .map(|d| find(ctx.hv, d))
        .transpose()?
        .map(|i| i.domid);
    let mut vifs: Vec<VifInfo> = ctx
        .netback
        .list()
        .into_iter()
        .filter(|v| only.is_none_or(|d| d == v.domid))
        .map(to_protocol)
        .collect();
    vifs.sort_by_key(|v| (v.domid, v.devid));
    Ok(Reply::Vifs(vifs))
}

/// Attaches one vif; its MAC, if the spec names none, is
/// [`vswitch::default_mac`] of the domain's name and the devid netback
/// will give it (the lowest free).
fn attach_one(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domid: DomId,
    name: &str,
    spec: VifSpec,
) -> Result<u32, MgmtError> {
    let next = ctx
        .netback
        .next_devid(domid)
        .ok_or_else(|| refused(domid, &NetError::TooManyVifs))?;
    let mac = spec.mac.unwrap_or_else(|| vswitch::default_mac(name, next));
    let spec = netback::VifSpec {
        mac,
        vlan: spec.vlan,
    };
    ctx.netback
        .attach(ctx.store, ctx.vswitch, domid, spec)
        .map_err(|e| refused(domid, &e))
}

fn vif_info(netback: &NetBackends, domid: DomId, devid: u32) -> Result<VifInfo, MgmtError> {
    netback
        .list()
        .into_iter()
        .find(|v| v.domid == domid && v.devid == devid)
        .map(to_protocol)
        .ok_or(MgmtError::NoSuchVif {
            domid,
            vif: VifRef::Devid(devid),
        })
}

fn to_protocol(v: netback::VifInfo) -> VifInfo {
    VifInfo {
        domid: v.domid,
        devid: v.devid,
        mac: v.mac,
        vlan: v.vlan,
        backend_state: v.state,
        switch_port: v.port.0,
    }
}

fn refused(domid: DomId, e: &NetError) -> MgmtError {
    MgmtError::NetworkRefused {
        domid,
        reason: format!("{e}"),
    }
}
