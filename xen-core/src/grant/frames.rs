//! A domain's view of its own grant-table frames: mapping frame `idx` at a
//! GFN (`XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`, Xen's
//! `gnttab_map_frame`), which grows the table up to that frame.

use super::table::GrowError;
use super::GRANT_TABLE_FRAMES;
use crate::domain::{Domain, DomainError};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::P2mAccess;

/// Why a table frame could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFrameError {
    /// `idx` is not below [`GRANT_TABLE_FRAMES`] (v2 status frames
    /// included): Xen's `-EINVAL`.
    BadIndex,
    /// No frame for the table or the NPT, or no heap for its state.
    OutOfFrames,
    /// The p2m refused the GFN.
    Domain(DomainError),
}

/// Maps table frame `idx` read-write at `gfn`, growing the table to
/// `idx + 1` frames if needed and moving the frame from an earlier GFN
/// (a table frame has one GFN, as in Xen).
pub fn map_table_frame(
    domain: &mut Domain,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    idx: u64,
    gfn: Gfn,
) -> Result<(), MapFrameError> {
    let idx = usize::try_from(idx)
        .ok()
        .filter(|i| *i < GRANT_TABLE_FRAMES)
        .ok_or(MapFrameError::BadIndex)?;
    domain
        .grant_mut()
        .grow(pool, mem, idx + 1)
        .map_err(|e| match e {
            GrowError::TooLarge => MapFrameError::BadIndex,
            GrowError::OutOfFrames | GrowError::OutOfMemory => MapFrameError::OutOfFrames,
        })?;
    let mfn = domain.grant().frame(idx).ok_or(MapFrameError::BadIndex)?;
    if let Some(old) = domain.grant().frame_gfn(idx).filter(|old| *old != gfn) {
        domain.unmap_shared(pool, mem, old, mfn);
        domain.grant_mut().set_frame_gfn(idx, None);
    }
    domain
        .map_shared(pool, mem, gfn, mfn, P2mAccess::RW)
        .map_err(MapFrameError::Domain)?;
    domain.grant_mut().set_frame_gfn(idx, Some(gfn));
    Ok(())
}
