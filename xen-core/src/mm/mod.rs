//! Memory: frame numbers, the frame pool and access to host physical memory.
//!
//! Portable code (domains, NPT builder, grant tables) talks to memory only
//! through [`FramePool`] and [`PhysMem`]; the bare-metal build implements
//! them over the identity map, host tests over a `Vec`.

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

/// A source of free machine frames.
pub trait FramePool {
    /// Takes one free frame; its contents are unspecified (callers scrub).
    fn alloc(&mut self) -> Option<Mfn>;
    /// Returns a frame taken with [`FramePool::alloc`].
    fn free(&mut self, mfn: Mfn);
    /// Number of frames currently free.
    fn free_frames(&self) -> u64;
}

/// Byte access to host physical memory by machine frame.
pub trait PhysMem {
    /// The 4 KiB contents of `mfn`.
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE];
    /// The 4 KiB contents of `mfn`, writable.
    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE];
}
