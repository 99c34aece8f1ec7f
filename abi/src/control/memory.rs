//! Building a domain's memory: populate its physmap, map its frames into
//! the caller (dom0's domain builder) and unmap them again.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ControlHeader;
use crate::xen::domid::DomId;

/// Most frames one populate call handles; callers loop on `nr_done`.
pub const POPULATE_MAX_FRAMES: u64 = 4096;
/// Most frames one map or unmap call handles (2 MiB).
pub const MAP_MAX_FRAMES: u32 = 512;

/// Populate request, 32 bytes: back `nr_frames` GFNs from `first_gfn`
/// with zeroed frames. Errors: `-ESRCH`, `-EINVAL` (range empty, beyond
/// [`POPULATE_MAX_FRAMES`] or overflowing), `-EEXIST` (a GFN is already
/// populated), `-ENOMEM` (over the domain's limit or out of host memory).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PopulateRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Target domain (not dying).
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: [u8; 6],
    /// First GFN to populate.
    pub first_gfn: u64,
    /// Number of frames, 1..=[`POPULATE_MAX_FRAMES`].
    pub nr_frames: u64,
}

impl PopulateRequest {
    /// A request for `nr_frames` frames of `domid` from `first_gfn`.
    pub const fn new(domid: DomId, first_gfn: u64, nr_frames: u64) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: [0; 6],
            first_gfn,
            nr_frames,
        }
    }
}

/// Set-max-mem request, 24 bytes (Xen's `XEN_DOMCTL_max_mem`,
/// `xen_domctl_max_mem`): the most memory the domain may own from now on,
/// in KiB (rounded down to whole 4 KiB frames). It may be below what the
/// domain holds: nothing is taken away, but it gets no more frames
/// (`XENMEM_populate_physmap`, `POPULATE_MEMORY`) until it is under the
/// limit again, as in Xen. Errors: `-ESRCH`, `-EINVAL` (above the
/// hypervisor's per-domain limit, 4 GiB).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SetMaxMemRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Target domain.
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: [u8; 6],
    /// The new limit in KiB (Xen's `max_memkb`).
    pub max_memkb: u64,
}

impl SetMaxMemRequest {
    /// A request setting `domid`'s limit to `max_memkb` KiB.
    pub const fn new(domid: DomId, max_memkb: u64) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: [0; 6],
            max_memkb,
        }
    }
}

/// Populate response, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PopulateResponse {
    /// Frames populated, from `first_gfn` on (all of them on success).
    pub nr_done: u64,
}

/// Map request, 32 bytes: map the target's GFNs `first_gfn..+nr_frames`
/// at the caller's GFNs `caller_gfn..+nr_frames`, writable. Errors:
/// `-ESRCH`, `-EINVAL` (range empty, beyond [`MAP_MAX_FRAMES`], target
/// is the caller, caller GFNs in use), `-ENOENT` (a target GFN is not
/// populated).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MapRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Domain whose frames are mapped.
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: u16,
    /// Number of frames, 1..=[`MAP_MAX_FRAMES`].
    pub nr_frames: u32,
    /// First GFN in the target domain.
    pub first_gfn: u64,
    /// First GFN in the caller's physmap to map them at (must be unused).
    pub caller_gfn: u64,
}

impl MapRequest {
    /// A request mapping `domid`'s GFNs `first_gfn..+nr_frames` at the
    /// caller's `caller_gfn`.
    pub const fn new(domid: DomId, first_gfn: u64, nr_frames: u32, caller_gfn: u64) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: 0,
            nr_frames,
            first_gfn,
            caller_gfn,
        }
    }
}

/// Unmap request, 24 bytes: remove `nr_frames` foreign mappings at the
/// caller's GFNs from `caller_gfn`. Errors: `-EINVAL` (range empty, too
/// long, or a GFN not holding a foreign mapping).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct UnmapRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Number of frames, 1..=[`MAP_MAX_FRAMES`].
    pub nr_frames: u32,
    /// Reserved; zero.
    pub pad: u32,
    /// First GFN in the caller's physmap given to a map request.
    pub caller_gfn: u64,
}

impl UnmapRequest {
    /// A request unmapping the caller's GFNs `caller_gfn..+nr_frames`.
    pub const fn new(caller_gfn: u64, nr_frames: u32) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            nr_frames,
            pad: 0,
            caller_gfn,
        }
    }
}
