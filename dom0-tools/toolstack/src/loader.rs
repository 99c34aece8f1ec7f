//! Where the PVH builder writes a new domain's memory from dom0.
//!
//! - [`CheckOnly`]: writes nothing, refuses what falls outside the
//!   domain's memory; `pvh_builder::build` over it checks an image and
//!   its layout before anything is created.
//! - [`ForeignLoader`]: the domain's frames mapped into dom0 one window
//!   of [`MAP_MAX_FRAMES`] frames at a time (GFN-aligned to the window
//!   size), as Xen's libxc maps a guest's memory in chunks while
//!   loading it; a write into another window unmaps the current one
//!   first. At most one mapping is held at any time.

use abi::control::MAP_MAX_FRAMES;
use abi::convert::usize_from_u64;
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::PAGE_SHIFT;
use pvh_builder::{GuestLoadTarget, LoadFault};

use crate::error::Op;
use crate::hypervisor::Hypervisor;

/// Frames per window.
const WINDOW_FRAMES: u64 = MAP_MAX_FRAMES as u64;

/// Accepts writes inside `[0, end)` and keeps nothing.
pub(crate) struct CheckOnly {
    /// One past the domain's last byte of memory.
    pub end: u64,
}

impl CheckOnly {
    fn check(&self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.end => Ok(()),
            _ => Err(LoadFault { gpa, len }),
        }
    }
}

impl GuestLoadTarget for CheckOnly {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        self.check(gpa, bytes.len() as u64)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        self.check(gpa, len)
    }
}

/// The mapped window: the domain's GFNs `first_gfn..+nr_frames`.
struct Window<M> {
    first_gfn: u64,
    mapping: M,
}

/// Writes domain `domid`'s populated GFNs `0..nr_frames` through
/// foreign mappings.
pub(crate) struct ForeignLoader<'h, H: Hypervisor> {
    hv: &'h mut H,
    domid: DomId,
    nr_frames: u64,
    window: Option<Window<H::Mapping>>,
    /// The hypervisor error behind the last [`LoadFault`].
    failure: Option<(Op, Errno)>,
}

impl<'h, H: Hypervisor> ForeignLoader<'h, H> {
    pub(crate) fn new(hv: &'h mut H, domid: DomId, nr_frames: u64) -> Self {
        Self {
            hv,
            domid,
            nr_frames,
            window: None,
            failure: None,
        }
    }

    /// What made the last write fail, if the hypervisor did.
    pub(crate) fn failure(&self) -> Option<(Op, Errno)> {
        self.failure
    }

    /// Unmaps the window, if one is mapped.
    pub(crate) fn finish(&mut self) -> Result<(), (Op, Errno)> {
        match self.window.take() {
            Some(w) => self
                .hv
                .unmap_foreign(w.mapping)
                .map_err(|e| (Op::UnmapForeign, e)),
            None => Ok(()),
        }
    }

    /// Maps the window starting at `first_gfn`, unless it is mapped.
    fn map_window(&mut self, first_gfn: u64) -> Result<(), (Op, Errno)> {
        if self.window.as_ref().map(|w| w.first_gfn) == Some(first_gfn) {
            return Ok(());
        }
        self.finish()?;
        // At most WINDOW_FRAMES, so the cast is exact.
        let nr = (self.nr_frames - first_gfn).min(WINDOW_FRAMES) as u32;
        let mapping = self
            .hv
            .map_foreign(self.domid, first_gfn, nr)
            .map_err(|e| (Op::MapForeign, e))?;
        self.window = Some(Window { first_gfn, mapping });
        Ok(())
    }

    /// Runs `op(hv, mapping, offset in the window, offset in the range,
    /// length)` on each window's piece of `gpa..gpa + len`.
    fn each_piece(
        &mut self,
        gpa: u64,
        len: u64,
        mut op: impl FnMut(&mut H, &H::Mapping, u64, u64, u64) -> Result<(), Errno>,
    ) -> Result<(), LoadFault> {
        let fault = LoadFault { gpa, len };
        let end = gpa
            .checked_add(len)
            .filter(|end| *end <= self.nr_frames << PAGE_SHIFT)
            .ok_or(fault)?;
        let mut at = gpa;
        while at < end {
            let first_gfn = (at >> PAGE_SHIFT) / WINDOW_FRAMES * WINDOW_FRAMES;
            let window_gpa = first_gfn << PAGE_SHIFT;
            let piece_end = end.min(window_gpa + (WINDOW_FRAMES << PAGE_SHIFT));
            if let Err(e) = self.map_window(first_gfn) {
                self.failure = Some(e);
                return Err(fault);
            }
            let Some(window) = self.window.as_ref() else {
                return Err(fault);
            };
            if let Err(e) = op(
                self.hv,
                &window.mapping,
                at - window_gpa,
                at - gpa,
                piece_end - at,
            ) {
                self.failure = Some((Op::WriteForeign, e));
                return Err(fault);
            }
            at = piece_end;
        }
        Ok(())
    }
}

impl<H: Hypervisor> GuestLoadTarget for ForeignLoader<'_, H> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        self.each_piece(gpa, bytes.len() as u64, |hv, m, offset, from, len| {
            // Both are within `bytes` (each_piece splits 0..bytes.len()).
            let piece = &bytes[usize_from_u64(from)..usize_from_u64(from + len)];
            hv.write_foreign(m, offset, piece)
        })
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        self.each_piece(gpa, len, |hv, m, offset, _, len| {
            hv.zero_foreign(m, offset, len)
        })
    }
}
