//! Memory: frame numbers, the frame pool and access to host physical memory.
//!
//! Portable code (domains, NPT builder, grant tables) talks to memory only
//! through [`FramePool`] and [`PhysMem`]; the bare-metal build implements
//! them over the identity map, host tests over a `Vec`.

pub mod frame;
// The one guest-memory helper with unsafe: atomics over frames a guest
// changes concurrently (each block carries its SAFETY argument).
#[allow(unsafe_code)]
pub mod shared_frame;
pub mod stacks;

use shared_frame::SharedFrame;

/// Size of a frame (4 KiB page) in bytes.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Machine frame number: host physical address >> 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(pub u64);

/// Guest frame number: guest physical address >> 12, in one domain's p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gfn(pub u64);

/// Guest physical address: a byte in one domain's p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

impl Gpa {
    /// The frame holding this byte.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }

    /// The byte's offset in its frame.
    pub const fn page_offset(self) -> usize {
        abi::convert::usize_from_u64(self.0 & (PAGE_SIZE as u64 - 1))
    }

    /// The address `off` bytes further on (wrapping: a wrapped address
    /// fails the p2m lookup).
    pub const fn add(self, off: u64) -> Gpa {
        Gpa(self.0.wrapping_add(off))
    }
}

impl core::fmt::Display for Mfn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl core::fmt::Display for Gfn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Mfn {
    /// Host physical address of the frame's first byte.
    pub const fn hpa(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl Gfn {
    /// Guest physical address of the frame's first byte.
    pub const fn gpa(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

/// A half-open range `[start, end)` of host physical addresses, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// The range of `size` bytes at `start`, or `None` if it wraps around.
    pub fn from_base_size(start: u64, size: u64) -> Option<Self> {
        Some(Self {
            start,
            end: start.checked_add(size)?,
        })
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains(&self, other: &PhysRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A source of free machine frames.
pub trait FramePool {
    /// Takes one free frame; its contents are unspecified (callers scrub).
    fn alloc(&mut self) -> Option<Mfn>;
    /// Returns a frame taken with [`FramePool::alloc`].
    fn free(&mut self, mfn: Mfn);
    /// Number of frames currently free.
    fn free_frames(&self) -> u64;
}

/// Byte access to host physical memory by machine frame. Frames are
/// page-aligned.
pub trait PhysMem {
    /// The 4 KiB contents of `mfn`.
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE];
    /// The 4 KiB contents of `mfn`, writable.
    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE];
    /// `mfn` as a frame a guest may change at any time: reached only
    /// through [`SharedFrame`]'s atomic operations. This default makes
    /// it from `frame_mut` (exact where no guest runs meanwhile: host
    /// tests, the simulator); the identity map makes it from the frame's
    /// address, as guests run on other pCPUs.
    fn shared_frame(&mut self, mfn: Mfn) -> SharedFrame<'_> {
        SharedFrame::new(self.frame_mut(mfn))
    }
    /// Copies bytes `src` of frame `from` to `dst_offset..` of frame `to`
    /// (`GNTTABOP_copy`); the two may be the same frame, the ranges may
    /// overlap (the copy is a memmove). `None`, copying nothing, if either
    /// range leaves its frame. This default goes through a page-sized
    /// buffer (the two frames cannot be borrowed at once through
    /// [`Self::frame`] and [`Self::frame_mut`]); the hypervisor's
    /// identity map moves the bytes once, frame to frame.
    fn copy_between_frames(
        &mut self,
        from: Mfn,
        src: core::ops::Range<usize>,
        to: Mfn,
        dst_offset: usize,
    ) -> Option<()> {
        let len = src.len();
        let mut buf = [0u8; PAGE_SIZE];
        let buf = buf.get_mut(..len)?;
        buf.copy_from_slice(self.frame(from).get(src)?);
        self.frame_mut(to)
            .get_mut(dst_offset..dst_offset.checked_add(len)?)?
            .copy_from_slice(buf);
        Some(())
    }
}
