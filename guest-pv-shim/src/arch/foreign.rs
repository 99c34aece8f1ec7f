//! One frame of another domain, mapped into this one with
//! [`Xen::map_foreign`] (`CONTROL_OP_MAP_FOREIGN`, dom0 only) and seen
//! only through [`SharedLayout`] types: how dom0's console backend reaches
//! the ring of a domain that granted it nothing, as xenconsoled maps the
//! console PFN by foreign mapping.

use abi::xen::domid::DomId;
use abi::xen::PAGE_SHIFT;

use super::control::ForeignFrames;
use super::hypercall::Xen;
use super::shared_page::{view_at, SharedLayout};
use crate::error::XenError;

/// A foreign frame mapped at one of our GFNs; unmap with
/// [`Xen::unmap_foreign_frame`].
#[derive(Debug)]
pub struct ForeignFrame {
    frame: ForeignFrames,
    /// Our GPA it is mapped at.
    gpa: u64,
}

impl ForeignFrame {
    /// The frame as `T` (borrowed from the mapping: gone with it).
    pub fn view<T: SharedLayout>(&self) -> &T {
        // SAFETY: `gpa` holds the foreign frame while `self` lives (only
        // `Xen::unmap_foreign_frame`, which consumes it, removes it); it
        // is page-aligned and inside the identity map (`map_foreign`
        // refuses other GFNs).
        unsafe { view_at(self.gpa) }
    }
}

impl Xen {
    /// Maps `domid`'s frame `gfn` at our unused GFN `at_gfn` (see
    /// [`Xen::map_foreign`] for the checks and errors).
    pub fn map_foreign_frame(
        &self,
        domid: DomId,
        gfn: u64,
        at_gfn: u64,
    ) -> Result<ForeignFrame, XenError> {
        let frame = self.map_foreign(domid, gfn, 1, at_gfn)?;
        Ok(ForeignFrame {
            frame,
            gpa: at_gfn << PAGE_SHIFT,
        })
    }

    /// Unmaps `frame`; on failure it is handed back (still mapped).
    pub fn unmap_foreign_frame(&self, frame: ForeignFrame) -> Result<(), (ForeignFrame, XenError)> {
        let gpa = frame.gpa;
        self.unmap_foreign(frame.frame)
            .map_err(|(frame, e)| (ForeignFrame { frame, gpa }, e))
    }
}
