//! Grant tables, version 1 (`xen/include/public/grant_table.h`; the
//! semantics follow `xen/common/grant_table.c`).
//!
//! A domain grants another domain access to one of its frames by writing a
//! [`GrantEntryV1`](abi::xen::grant_table::GrantEntryV1) (`GTF_permit_access`,
//! the grantee's domid, the frame's GFN) into its grant table: up to
//! [`GRANT_TABLE_FRAMES`] frames that the hypervisor allocates (scrubbed) and
//! owns, and that the guest maps with `XENMEM_add_to_physmap`
//! (`XENMAPSPACE_grant_table`). The grantee then maps the frame into its
//! own p2m (`GNTTABOP_map_grant_ref`) or copies to or from it
//! (`GNTTABOP_copy`).
//!
//! - [`entry`]: the shared entries in the granter's table frames: read once
//!   into a local copy, updated with a compare-and-set of the flags.
//! - [`table`]: a domain's [`GrantTable`](table::GrantTable): its frames, an
//!   active entry per grant reference (pin counts, as Xen's
//!   `active_grant_entry`) and its [`maptrack`] of mappings it holds.
//! - [`frames`]: mapping the table frames into the domain's p2m.
//! - [`map`]: map and unmap across domains, [`copy`]: grant copy,
//!   [`release`]: what happens when a domain is destroyed.
//!
//! Frame lifetime: a granted frame is pinned while mapped. Its owner
//! cannot replace it in its p2m (`-EBUSY`), and destroying the owner does
//! not free it: the mappings become orphans that keep the frame, which is
//! scrubbed and freed when the last of them is unmapped (Xen keeps the
//! page referenced in the same way). Destroying a mapping domain drops all
//! its mappings and clears `GTF_reading`/`GTF_writing` in the granters'
//! entries. No domain ever reaches a frame that went back to the pool.

#![forbid(unsafe_code)]
// Indices here come from guests: `.get()` with an error path, never `[i]`.
#![warn(clippy::indexing_slicing)]

pub mod copy;
pub mod entry;
pub mod frames;
pub mod map;
pub mod maptrack;
mod pin;
pub mod release;
pub mod table;

#[cfg(test)]
// Tests index the fixtures they built and cast fixture constants chosen to
// fit; a bad index or value is a failed test.
#[allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
mod tests;

use abi::xen::grant_table::{
    GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_BAD_PAGE,
    GNTST_BAD_VIRT_ADDR, GNTST_GENERAL_ERROR, GNTST_NO_DEVICE_SPACE, GNTST_PERMISSION_DENIED,
    GRANT_ENTRIES_V1_PER_FRAME,
};

use abi::convert::{u32_const, usize_from_u64};
use abi::xen::domid::DomId;

use crate::domain::table::DomainTable;
use crate::domain::{DomainState, MAX_SHARED_PAGES};

/// Grant-table frames per domain, allocated on demand up to this many
/// (`GNTTABOP_setup_table`, `XENMAPSPACE_grant_table`): 4 frames of 512
/// v1 entries, 2048 grant references (Xen's default is 32 frames for a
/// domU; 4 is plenty for a console, a store and a few rings).
pub const GRANT_TABLE_FRAMES: usize = 4;
/// Grant references of a full table.
pub const NR_GRANT_ENTRIES: u32 = u32_const::<GRANT_TABLE_FRAMES>() * GRANT_ENTRIES_V1_PER_FRAME;
/// Grant mappings one domain may hold at once (its maptrack). With the
/// shared-info frame and the grant-table frames they stay within
/// [`MAX_SHARED_PAGES`], so a full maptrack, not the p2m, is what a
/// mapper runs into (`GNTST_no_device_space`, as Xen).
/// 496: a block backend's 352 persistent grants (blkif's 32 requests of
/// 11 pages, Linux blkback keeps them mapped) and the rings of the
/// domains it serves. The table is allocated with a domain's first grant
/// map, so only mappers (backends) pay its 16 KiB.
pub const MAPTRACK_ENTRIES: usize = 496;
const _: () =
    assert!(MAPTRACK_ENTRIES + 1 + GRANT_TABLE_FRAMES <= usize_from_u64(MAX_SHARED_PAGES));
/// Most mappings of one grant reference of each kind (read-only,
/// writable): Xen's 8-bit pin counters refuse the next one once the top
/// bit would be set.
pub const MAX_PINS: u8 = 0x7f;
/// Compare-and-set attempts on a shared entry the granter keeps changing
/// before the operation fails with `GNTST_general_error` (Xen: 5).
pub const SET_STATUS_ATTEMPTS: u32 = 5;

/// Why a grant operation failed: a `GNTST_*` status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// `GNTST_general_error`: the entry does not grant this (wrong type or
    /// domid, read-only, unstable), or the mapping could not be made.
    GeneralError,
    /// `GNTST_bad_domain`: no such domain, or it is dying.
    BadDomain,
    /// `GNTST_bad_gntref`: reference beyond the table, or no map flags.
    BadGntref,
    /// `GNTST_bad_handle`: no such mapping handle.
    BadHandle,
    /// `GNTST_bad_virt_addr`: the frame list of `setup_table` is not
    /// writable.
    BadVirtAddr,
    /// `GNTST_no_device_space`: the maptrack is full.
    NoDeviceSpace,
    /// `GNTST_permission_denied`: a copy names another domain's GFN, or
    /// a domain acts on another's table without privilege.
    PermissionDenied,
    /// `GNTST_bad_page`: the granted GFN is not RAM the granter owns.
    BadPage,
    /// `GNTST_bad_copy_arg`: a copy would leave its page.
    BadCopyArg,
}

impl GrantError {
    /// The `GNTST_*` code.
    pub fn status(self) -> i16 {
        match self {
            Self::GeneralError => GNTST_GENERAL_ERROR,
            Self::BadDomain => GNTST_BAD_DOMAIN,
            Self::BadGntref => GNTST_BAD_GNTREF,
            Self::BadHandle => GNTST_BAD_HANDLE,
            Self::BadVirtAddr => GNTST_BAD_VIRT_ADDR,
            Self::NoDeviceSpace => GNTST_NO_DEVICE_SPACE,
            Self::PermissionDenied => GNTST_PERMISSION_DENIED,
            Self::BadPage => GNTST_BAD_PAGE,
            Self::BadCopyArg => GNTST_BAD_COPY_ARG,
        }
    }
}

/// Checks that `domid` names a domain that may take part in a grant
/// operation: it exists and is not dying (`GNTST_bad_domain`).
pub(crate) fn check_live(domains: &DomainTable, domid: DomId) -> Result<(), GrantError> {
    match domains.get(domid) {
        Some(d) if d.state() != DomainState::Dying => Ok(()),
        _ => Err(GrantError::BadDomain),
    }
}
