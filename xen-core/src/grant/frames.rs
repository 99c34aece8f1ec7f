//! A domain's view of its own grant-table frames: mapping frame `idx` at a
//! GFN (`XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`, Xen's
//! `gnttab_map_frame`), which grows the table up to that frame.

use abi::xen::errno::Errno;
use displaydoc::Display;

use super::table::GrowError;
use super::GRANT_TABLE_FRAMES;
use crate::domain::{Domain, DomainError};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::P2mAccess;

/// Why a table frame could not be mapped. Each variant's doc comment is
/// its message; [`Errno::from`] is its one Xen errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Display)]
pub enum MapFrameError {
    /// grant-table frame index not below {GRANT_TABLE_FRAMES}
    BadIndex,
    /// no frame for the grant table or the NPT, or no heap for its state
    OutOfFrames,
    /// {0}
    Domain(DomainError),
}

impl From<MapFrameError> for Errno {
    /// Xen's `gnttab_map_frame` answers: `-EINVAL` for a bad index,
    /// `-ENOMEM`, else the p2m's answer.
    fn from(e: MapFrameError) -> Self {
        match e {
            MapFrameError::BadIndex => Errno::EINVAL,
            MapFrameError::OutOfFrames => Errno::ENOMEM,
            MapFrameError::Domain(e) => e.into(),
        }
    }
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
