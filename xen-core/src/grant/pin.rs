//! Taking and dropping pins on a grant reference, for maps (held until
//! unmap) and copies (held during the copy): Xen's `_set_status_v1`, the
//! pin counts of `active_grant_entry`, and `gnttab_clear_flags` on release.

use abi::xen::domid::DomId;
use abi::xen::grant_table::{
    GrantRef, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK,
    GTF_WRITING,
};

use super::entry::{self, EntryLoc, Header};
use super::{GrantError, MAX_PINS, SET_STATUS_ATTEMPTS};
use crate::domain::Domain;
use crate::mm::{Gfn, Mfn, PhysMem};
use crate::paging::npt::P2mKind;

/// The status flags a pin of this kind keeps set.
fn status_bits(readonly: bool) -> u16 {
    if readonly {
        GTF_READING
    } else {
        GTF_READING | GTF_WRITING
    }
}

/// Pins `granter`'s grant reference `gref` for `grantee`, read-only or
/// writable, and returns the frame. Checks, in Xen's order: `gref` inside
/// the table (`GNTST_bad_gntref`); an existing pin belongs to `grantee`
/// and has room (`GNTST_general_error`); for the first pin, the entry
/// header (read once) permits access to `grantee`, writable unless
/// `readonly` (`GNTST_general_error`), and its `frame`, read once after
/// the status bits are set, names a GFN of RAM the granter owns
/// (`GNTST_bad_page`). Later pins reuse the first one's frame.
pub(super) fn acquire(
    granter: &mut Domain,
    mem: &mut impl PhysMem,
    gref: GrantRef,
    grantee: DomId,
    readonly: bool,
) -> Result<Mfn, GrantError> {
    let table = granter.grant();
    let at = table.locate(gref).ok_or(GrantError::BadGntref)?;
    let active = table.active(gref);
    let pinned = active.is_pinned();
    if pinned
        && (active.domid != grantee || active.readers >= MAX_PINS || active.writers >= MAX_PINS)
    {
        return Err(GrantError::GeneralError);
    }
    let mfn = if pinned {
        if !readonly && active.writers == 0 {
            set_status(mem, at, grantee, false, false)?;
        }
        active.raw_mfn()
    } else {
        let frame = set_status(mem, at, grantee, readonly, true)?;
        match owned_frame(granter, mem, frame) {
            Ok(mfn) => mfn,
            Err(e) => {
                entry::clear_flags(mem, at, status_bits(readonly));
                return Err(e);
            }
        }
    };
    granter.grant_mut().pin(gref, grantee, mfn, readonly);
    Ok(Mfn(mfn.into()))
}

/// Drops a pin taken with [`acquire`]: `GTF_writing` goes when the last
/// writable pin does, `GTF_reading` with the last pin.
pub(super) fn release(
    granter: &mut Domain,
    mem: &mut impl PhysMem,
    gref: GrantRef,
    readonly: bool,
) {
    let after = granter.grant_mut().unpin(gref, readonly);
    let mut clear = 0;
    if !readonly && after.writers == 0 {
        clear |= GTF_WRITING;
    }
    if !after.is_pinned() {
        clear |= GTF_READING;
    }
    if let Some(at) = granter.grant().locate(gref) {
        entry::clear_flags(mem, at, clear);
    }
}

/// Sets the status flags of a pin in the shared entry, as Xen's
/// `_set_status_v1`: fetches the (flags, domid) header once, checks (if
/// `check`) that it permits full-page access to `grantee`, and that it is
/// not read-only for a writable pin, then sets the bits with one locked
/// compare-and-exchange on the header; if the granter changed it
/// meanwhile, the new header is checked again. A granter that changes the
/// entry under every attempt gets `GNTST_general_error`. Returns the
/// entry's `frame`, read after the status bits are set (from then on the
/// granter may not change it).
fn set_status(
    mem: &mut impl PhysMem,
    at: EntryLoc,
    grantee: DomId,
    readonly: bool,
    check: bool,
) -> Result<u32, GrantError> {
    let mut seen = entry::read_header(mem, at);
    for _ in 0..SET_STATUS_ATTEMPTS {
        let kind = seen.flags & (GTF_TYPE_MASK | GTF_SUB_PAGE);
        if check && (kind != GTF_PERMIT_ACCESS || seen.domid != grantee) {
            return Err(GrantError::GeneralError);
        }
        if !readonly && seen.flags & GTF_READONLY != 0 {
            return Err(GrantError::GeneralError);
        }
        let new = Header {
            flags: seen.flags | status_bits(readonly),
            ..seen
        };
        match entry::compare_exchange_header(mem, at, seen, new) {
            Ok(()) => return Ok(entry::read_frame(mem, at)),
            Err(now) => seen = now,
        }
    }
    Err(GrantError::GeneralError)
}

/// The MFN behind the granter's GFN `frame`: RAM it owns, not a frame
/// shared with it or mapped from another domain (`GNTST_bad_page`).
fn owned_frame(granter: &Domain, mem: &impl PhysMem, frame: u32) -> Result<u32, GrantError> {
    match granter.p2m().translate(mem, Gfn(frame.into())) {
        Some(e) if e.kind == P2mKind::Owned => {
            u32::try_from(e.mfn.0).map_err(|_| GrantError::BadPage)
        }
        _ => Err(GrantError::BadPage),
    }
}
