//! Simulated machine memory for host tests, fuzz targets and contract
//! tests (feature `sim`): a [`FramePool`] and a
//! [`PhysMem`] over a `Vec` of frames.
//!
//! Frames start filled with [`DIRTY`] so tests see whether code scrubs.
//! MFNs start at [`FIRST_MFN`], not 0, so a GFN used as an MFN shows up.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

use abi::convert::usize_from_u64;

use crate::mm::shared_frame::{AtomicPage, SharedFrame};
use crate::mm::{FramePool, Mfn, PhysMem, PAGE_SIZE};

/// Byte every simulated frame holds before anyone writes it.
pub const DIRTY: u8 = 0xa5;
/// MFN of the first simulated frame.
pub const FIRST_MFN: u64 = 0x1000;

/// One simulated frame, page-aligned as real ones are.
#[derive(Clone)]
#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

/// The contents of the simulated frames.
pub struct SimPhys {
    frames: Vec<Page>,
}

/// The free list over [`SimPhys`]'s frames; catches double frees.
pub struct SimPool {
    free: Vec<Mfn>,
    free_set: BTreeSet<Mfn>,
}

/// A machine with `frames` frames, all free and dirty.
pub fn machine(frames: u64) -> (SimPool, SimPhys) {
    let free: Vec<Mfn> = (0..frames).rev().map(|i| Mfn(FIRST_MFN + i)).collect();
    let free_set = free.iter().copied().collect();
    let phys = SimPhys {
        frames: vec![Page([DIRTY; PAGE_SIZE]); usize_from_u64(frames)],
    };
    (SimPool { free, free_set }, phys)
}

impl SimPhys {
    fn index(&self, mfn: Mfn) -> usize {
        let i = mfn
            .0
            .checked_sub(FIRST_MFN)
            .expect("MFN below simulated RAM");
        assert!(i < self.frames.len() as u64, "MFN above simulated RAM");
        usize_from_u64(i)
    }
}

impl PhysMem for SimPhys {
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE] {
        &self.frames[self.index(mfn)].0
    }

    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE] {
        let i = self.index(mfn);
        &mut self.frames[i].0
    }
}

impl SimPool {
    /// Takes `mfn` out of the free list, as an `alloc_range` would.
    pub fn take(&mut self, mfn: Mfn) {
        assert!(self.free_set.remove(&mfn), "{mfn:?} is not free");
        self.free.retain(|m| *m != mfn);
    }
}

impl FramePool for SimPool {
    fn alloc(&mut self) -> Option<Mfn> {
        let mfn = self.free.pop()?;
        self.free_set.remove(&mfn);
        Some(mfn)
    }

    fn free(&mut self, mfn: Mfn) {
        assert!(self.free_set.insert(mfn), "double free of {mfn:?}");
        self.free.push(mfn);
    }

    fn free_frames(&self) -> u64 {
        self.free.len() as u64
    }
}

/// Machine memory in which frame `mfn` is `page`, which other host
/// threads change at the same time (the guest on its own pCPU, in tests
/// of the atomic accesses). That frame is reached only through
/// [`PhysMem::shared_frame`]: a plain access to it is a bug (it would
/// race), so it panics.
pub struct WithShared<'a, M> {
    inner: &'a mut M,
    mfn: Mfn,
    page: &'a AtomicPage,
}

impl<'a, M: PhysMem> WithShared<'a, M> {
    /// `inner`, with `mfn` replaced by `page`.
    pub fn new(inner: &'a mut M, mfn: Mfn, page: &'a AtomicPage) -> Self {
        Self { inner, mfn, page }
    }
}

impl<M: PhysMem> PhysMem for WithShared<'_, M> {
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE] {
        assert_ne!(mfn, self.mfn, "plain read of a concurrently shared frame");
        self.inner.frame(mfn)
    }

    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE] {
        assert_ne!(mfn, self.mfn, "plain write of a concurrently shared frame");
        self.inner.frame_mut(mfn)
    }

    fn shared_frame(&mut self, mfn: Mfn) -> SharedFrame<'_> {
        if mfn == self.mfn {
            SharedFrame::of_atomic(self.page)
        } else {
            self.inner.shared_frame(mfn)
        }
    }
}

/// Sets its flag when dropped, also when the test panics: the thread
/// racing the test's own stops, so a failing test fails instead of
/// hanging in `std::thread::scope`.
pub struct StopOnDrop<'a>(pub &'a core::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, core::sync::atomic::Ordering::Release);
    }
}
