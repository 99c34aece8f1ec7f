//! `GNTTABOP_copy` (`xen/common/grant_table.c`: `gnttab_copy_one`): copies
//! `len` bytes between two frames, each named either by a grant reference
//! of some domain (`GNTCOPY_source_gref` / `GNTCOPY_dest_gref`) or by a
//! GFN of the caller.
//!
//! Checks, in Xen's order: a side given by GFN must say `DOMID_SELF`
//! (`GNTST_permission_denied`); each side's domain exists and is not
//! dying (`GNTST_bad_domain`); the source grant is pinned read-only, the
//! destination grant writable ([`super::pin::acquire`]: bad_gntref,
//! general_error for a read-only or foreign grant, bad_page), a GFN must
//! be RAM the caller owns (`GNTST_bad_page`); then both ranges must stay
//! inside their page (`GNTST_bad_copy_arg`). The pins last only for the
//! copy: the entries' `GTF_reading`/`GTF_writing` are as before after it.

use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::grant_table::GrantRef;

use super::{check_live, pin, GrantError};
use crate::domain::table::DomainTable;
use crate::mm::{Gfn, Mfn, PhysMem, PAGE_SIZE};
use crate::paging::npt::P2mKind;

/// One side of a copy (`struct gnttab_copy_ptr` and its flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySide {
    /// The union `u`: a grant reference (low 32 bits) or a GFN.
    pub u: u64,
    /// The domain (`DOMID_SELF` for a GFN).
    pub domid: DomId,
    /// Byte offset in the frame.
    pub offset: u16,
    /// `u` is a grant reference.
    pub is_gref: bool,
}

/// A claimed side: the frame and, for a grant, the pin to drop.
struct Claim {
    mfn: Mfn,
    pin: Option<(DomId, GrantRef)>,
}

/// Copies `len` bytes from `src` to `dst` for `caller`.
pub fn copy(
    domains: &mut DomainTable,
    mem: &mut impl PhysMem,
    caller: DomId,
    src: &CopySide,
    dst: &CopySide,
    len: u16,
) -> Result<(), GrantError> {
    let src_dom = side_domain(domains, caller, src)?;
    let dst_dom = side_domain(domains, caller, dst)?;
    let from = claim(domains, mem, caller, src_dom, src, true)?;
    let to = match claim(domains, mem, caller, dst_dom, dst, false) {
        Ok(to) => to,
        Err(e) => {
            unclaim(domains, mem, &from, true);
            return Err(e);
        }
    };
    let result = copy_bytes(mem, &from, src.offset, &to, dst.offset, len);
    unclaim(domains, mem, &to, false);
    unclaim(domains, mem, &from, true);
    result
}

/// The domain a side names.
fn side_domain(domains: &DomainTable, caller: DomId, side: &CopySide) -> Result<DomId, GrantError> {
    if !side.is_gref && side.domid != DOMID_SELF {
        return Err(GrantError::PermissionDenied);
    }
    let domid = if side.domid == DOMID_SELF {
        caller
    } else {
        side.domid
    };
    check_live(domains, domid)?;
    Ok(domid)
}

fn claim(
    domains: &mut DomainTable,
    mem: &mut impl PhysMem,
    caller: DomId,
    domid: DomId,
    side: &CopySide,
    readonly: bool,
) -> Result<Claim, GrantError> {
    let d = domains.get_mut(domid).ok_or(GrantError::BadDomain)?;
    if side.is_gref {
        let gref = (side.u & 0xffff_ffff) as GrantRef;
        let mfn = pin::acquire(d, mem, gref, caller, readonly)?;
        return Ok(Claim {
            mfn,
            pin: Some((domid, gref)),
        });
    }
    match d.p2m().translate(mem, Gfn(side.u)) {
        Some(e) if e.kind == P2mKind::Owned => Ok(Claim {
            mfn: e.mfn,
            pin: None,
        }),
        _ => Err(GrantError::BadPage),
    }
}

fn unclaim(domains: &mut DomainTable, mem: &mut impl PhysMem, c: &Claim, readonly: bool) {
    if let Some((domid, gref)) = c.pin {
        if let Some(d) = domains.get_mut(domid) {
            pin::release(d, mem, gref, readonly);
        }
    }
}

/// The copy itself, frame to frame ([`PhysMem::copy_between_frames`];
/// source and destination may be the same frame).
fn copy_bytes(
    mem: &mut impl PhysMem,
    from: &Claim,
    src_off: u16,
    to: &Claim,
    dst_off: u16,
    len: u16,
) -> Result<(), GrantError> {
    let (src_off, dst_off, len) = (usize::from(src_off), usize::from(dst_off), usize::from(len));
    if src_off + len > PAGE_SIZE || dst_off + len > PAGE_SIZE {
        return Err(GrantError::BadCopyArg);
    }
    mem.copy_between_frames(from.mfn, src_off..src_off + len, to.mfn, dst_off)
        .ok_or(GrantError::BadCopyArg)
}
