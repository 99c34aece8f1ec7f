//! `GNTTABOP_map_grant_ref` and `GNTTABOP_unmap_grant_ref` for HVM/PVH
//! callers (`xen/common/grant_table.c`: `map_grant_ref`, `unmap_common`;
//! the p2m side of `create_grant_p2m_mapping`).
//!
//! Map, in Xen's order of checks: no `GNTMAP_host_map`/`device_map` →
//! `GNTST_bad_gntref`; `device_map`, `application_map` or `contains_pte`
//! (meaningless for a translated guest) → `GNTST_general_error`; the
//! granter `dom` unknown or dying → `GNTST_bad_domain` (`DOMID_SELF` is
//! not resolved, as in Xen); maptrack full → `GNTST_no_device_space`;
//! then the pin ([`super::pin::acquire`]: bad_gntref, general_error,
//! bad_page). The frame goes into the caller's p2m at GFN `host_addr >>
//! 12`, read-only with `GNTMAP_readonly`, else read-write, never
//! executable. That GFN must be empty: xen-core does not replace RAM or
//! another mapping with a grant (`GNTST_general_error`; Linux maps
//! grants over ballooned-out GFNs, which are empty). `dev_bus_addr` is
//! not given out (0): it would be a host physical address.
//!
//! Unmap: an unknown handle → `GNTST_bad_handle`; a `dev_bus_addr` other
//! than 0 → `GNTST_general_error` (none was given out); `host_addr` 0
//! does nothing (Xen's rule), another GFN than the mapping's →
//! `GNTST_general_error`. Removing the p2m entry bumps the caller's
//! [`Domain::p2m_generation`](crate::domain::Domain::p2m_generation): its
//! vCPUs must flush their nested TLB before they run again.

use abi::xen::domid::DomId;
use abi::xen::grant_table::{
    GrantHandle, GrantRef, GNTMAP_APPLICATION_MAP, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP,
    GNTMAP_HOST_MAP, GNTMAP_READONLY,
};

use super::maptrack::{Mapping, Source};
use super::{check_live, pin, release, GrantError};
use crate::domain::table::DomainTable;
use crate::domain::Domain;
use crate::mm::{FramePool, Gfn, PhysMem, PAGE_SHIFT};
use crate::paging::npt::P2mAccess;

/// The inputs of one `gnttab_map_grant_ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// Guest physical address to map at (its GFN; low bits ignored).
    pub host_addr: u64,
    /// `GNTMAP_*`.
    pub flags: u32,
    /// The granter's grant reference.
    pub gref: GrantRef,
    /// The granting domain.
    pub dom: DomId,
}

/// Maps `req.dom`'s grant `req.gref` into `mapper`'s p2m; returns the
/// maptrack handle.
pub fn map_grant_ref(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    req: &MapRequest,
) -> Result<GrantHandle, GrantError> {
    if req.flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) == 0 {
        return Err(GrantError::BadGntref);
    }
    if req.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(GrantError::GeneralError);
    }
    let readonly = req.flags & GNTMAP_READONLY != 0;
    check_live(domains, req.dom)?;
    let me = domains.get_mut(mapper).ok_or(GrantError::GeneralError)?;
    me.grant_mut()
        .reserve()
        .map_err(|_| GrantError::NoDeviceSpace)?;
    if !me.grant().maptrack().has_room() {
        return Err(GrantError::NoDeviceSpace);
    }
    let granter = domains.get_mut(req.dom).ok_or(GrantError::BadDomain)?;
    let mfn = pin::acquire(granter, mem, req.gref, mapper, readonly)?;
    let mapping = Mapping {
        source: Source::Grant {
            domid: req.dom,
            gref: req.gref,
        },
        mfn,
        gfn: Gfn(req.host_addr >> PAGE_SHIFT),
        readonly,
    };
    let placed = domains
        .get_mut(mapper)
        .ok_or(GrantError::GeneralError)
        .and_then(|me| place(me, pool, mem, &mapping));
    if placed.is_err() {
        if let Some(granter) = domains.get_mut(req.dom) {
            pin::release(granter, mem, req.gref, readonly);
        }
    }
    placed
}

/// Maps the frame at an empty GFN of `me` and records it.
fn place(
    me: &mut Domain,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    m: &Mapping,
) -> Result<GrantHandle, GrantError> {
    if me.p2m().translate(mem, m.gfn).is_some() {
        return Err(GrantError::GeneralError);
    }
    let access = if m.readonly {
        P2mAccess::R
    } else {
        P2mAccess::RW
    };
    me.map_shared(pool, mem, m.gfn, m.mfn, access)
        .map_err(|_| GrantError::GeneralError)?;
    match me.grant_mut().maptrack_mut().and_then(|t| t.insert(*m)) {
        Some(handle) => Ok(handle),
        None => {
            me.unmap_shared(pool, mem, m.gfn, m.mfn);
            Err(GrantError::NoDeviceSpace)
        }
    }
}

/// Removes `mapper`'s mapping `handle` (checked against `host_addr` and
/// `dev_bus_addr` as described above) and drops its pin or, for an
/// orphan, its hold on the frame.
pub fn unmap_grant_ref(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    mapper: DomId,
    host_addr: u64,
    dev_bus_addr: u64,
    handle: GrantHandle,
) -> Result<(), GrantError> {
    let me = domains.get_mut(mapper).ok_or(GrantError::BadHandle)?;
    let m = *me
        .grant()
        .maptrack()
        .get(handle)
        .ok_or(GrantError::BadHandle)?;
    if dev_bus_addr != 0 {
        return Err(GrantError::GeneralError);
    }
    if host_addr == 0 {
        return Ok(());
    }
    if host_addr >> PAGE_SHIFT != m.gfn.0 {
        return Err(GrantError::GeneralError);
    }
    me.unmap_shared(pool, mem, m.gfn, m.mfn);
    if let Some(t) = me.grant_mut().maptrack_mut() {
        t.remove(handle);
    }
    release::put_mapping(domains, pool, mem, &m, None);
    Ok(())
}
