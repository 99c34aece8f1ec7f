//! The machine frame allocator: two bitmaps over the first
//! [`MAX_PHYS_MEM`] bytes of host physical memory.
//!
//! `usable` marks frames of RAM that xen-core may hand out (set once at
//! boot: RAM from the memory map minus everything reserved), `free` marks
//! those not handed out now. A frame that is not usable can never become
//! free, so a bad `free` cannot inject a reserved frame into the pool.

use abi::convert::usize_from_u64;

use super::{FramePool, Mfn, PhysRange, PAGE_SHIFT, PAGE_SIZE};

/// Host physical memory xen-core manages: the 4 GiB that `boot.S`
/// identity-maps. RAM above it is ignored (the boot log warns).
pub const MAX_PHYS_MEM: u64 = 4 << 30;
/// Words of each bitmap needed for [`MAX_PHYS_MEM`] (128 KiB per bitmap).
pub const BITMAP_WORDS: usize = (MAX_PHYS_MEM >> PAGE_SHIFT) as usize / WORD_BITS;
/// The allocator sized for [`MAX_PHYS_MEM`].
pub type MachineFrames = FrameAllocator<BITMAP_WORDS>;

const WORD_BITS: usize = 64;
const FRAME_BYTES: u64 = PAGE_SIZE as u64;

/// Why a frame request was refused; the doc comment is the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, displaydoc::Display)]
pub enum FrameError {
    /// frame beyond managed memory
    OutOfRange,
    /// frame is not usable RAM
    NotUsable,
    /// frame already allocated
    InUse,
    /// frame is not allocated
    NotAllocated,
    /// out of free frames
    Exhausted,
    /// zero count or alignment not a power of two
    BadRequest,
}

/// What [`FrameAllocator::init`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Bytes of RAM at or above the allocator's limit, left unused.
    pub ignored_bytes: u64,
}

/// A frame allocator over the first `WORDS * 64` frames.
pub struct FrameAllocator<const WORDS: usize> {
    usable: [u64; WORDS],
    free: [u64; WORDS],
    free_frames: u64,
    /// No word below this one has a free frame (search start for `alloc`).
    first_free_word: usize,
}

impl<const WORDS: usize> Default for FrameAllocator<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> FrameAllocator<WORDS> {
    /// Number of frames the allocator covers.
    pub const FRAMES: u64 = (WORDS * WORD_BITS) as u64;

    /// An allocator with no usable frame; see [`FrameAllocator::init`].
    pub const fn new() -> Self {
        Self {
            usable: [0; WORDS],
            free: [0; WORDS],
            free_frames: 0,
            first_free_word: 0,
        }
    }

    /// Makes every whole frame inside `ram` usable and free, except the
    /// frames touched by any of `reserved`. Forgets all earlier state.
    pub fn init(
        &mut self,
        ram: impl IntoIterator<Item = PhysRange>,
        reserved: impl IntoIterator<Item = PhysRange>,
    ) -> InitReport {
        // In place: the bitmaps are too large for the boot stack.
        self.usable.fill(0);
        self.first_free_word = 0;
        let limit = Self::FRAMES * FRAME_BYTES;
        let mut report = InitReport::default();
        for range in ram {
            report.ignored_bytes += range.end.max(limit) - range.start.max(limit);
            let first = range.start.div_ceil(FRAME_BYTES);
            let end = range.end.min(limit) / FRAME_BYTES;
            self.set_bits(first, end, true);
        }
        for range in reserved {
            let first = (range.start / FRAME_BYTES).min(Self::FRAMES);
            let end = range.end.div_ceil(FRAME_BYTES).min(Self::FRAMES);
            self.set_bits(first, end, false);
        }
        self.free.copy_from_slice(&self.usable);
        self.free_frames = self.usable_frames();
        report
    }

    /// Number of frames that may ever be handed out.
    pub fn usable_frames(&self) -> u64 {
        self.usable.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Whether `mfn` is usable RAM and free now.
    pub fn is_free(&self, mfn: Mfn) -> bool {
        Self::bit(&self.free, mfn.0)
    }

    /// Takes exactly the frames `first .. first + count` (dom0's 1:1 RAM);
    /// takes none if any of them is not free.
    pub fn alloc_range(&mut self, first: Mfn, count: u64) -> Result<(), FrameError> {
        let end = Self::range_end(first, count)?;
        for frame in first.0..end {
            if !Self::bit(&self.usable, frame) {
                return Err(FrameError::NotUsable);
            }
            if !Self::bit(&self.free, frame) {
                return Err(FrameError::InUse);
            }
        }
        self.take(first.0, end);
        Ok(())
    }

    /// Takes `count` free frames in a row whose first MFN is a multiple of
    /// `align` (in frames, a power of two); returns the first.
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Result<Mfn, FrameError> {
        if count == 0 || !align.is_power_of_two() {
            return Err(FrameError::BadRequest);
        }
        let mut start = (self.first_free_word * WORD_BITS) as u64;
        start = start.next_multiple_of(align);
        while start
            .checked_add(count)
            .is_some_and(|end| end <= Self::FRAMES)
        {
            match (start..start + count).find(|&f| !Self::bit(&self.free, f)) {
                None => {
                    self.take(start, start + count);
                    return Ok(Mfn(start));
                }
                Some(busy) => start = (busy + 1).next_multiple_of(align),
            }
        }
        Err(FrameError::Exhausted)
    }

    /// Returns the frames `first .. first + count`; returns none of them if
    /// any is not an allocated usable frame.
    pub fn free_range(&mut self, first: Mfn, count: u64) -> Result<(), FrameError> {
        let end = Self::range_end(first, count)?;
        for frame in first.0..end {
            if !Self::bit(&self.usable, frame) {
                return Err(FrameError::NotUsable);
            }
            if Self::bit(&self.free, frame) {
                return Err(FrameError::NotAllocated);
            }
        }
        for frame in first.0..end {
            Self::put_bit(&mut self.free, frame, true);
        }
        self.free_frames += end - first.0;
        self.first_free_word = self
            .first_free_word
            .min(usize_from_u64(first.0) / WORD_BITS);
        Ok(())
    }

    /// End frame of `first .. first + count`, checked against the limit.
    fn range_end(first: Mfn, count: u64) -> Result<u64, FrameError> {
        if count == 0 {
            return Err(FrameError::BadRequest);
        }
        match first.0.checked_add(count) {
            Some(end) if end <= Self::FRAMES => Ok(end),
            _ => Err(FrameError::OutOfRange),
        }
    }

    /// Marks the (free) frames `first .. end` allocated.
    fn take(&mut self, first: u64, end: u64) {
        for frame in first..end {
            Self::put_bit(&mut self.free, frame, false);
        }
        self.free_frames -= end - first;
    }

    fn set_bits(&mut self, first: u64, end: u64, value: bool) {
        for frame in first..end {
            Self::put_bit(&mut self.usable, frame, value);
        }
    }

    fn bit(map: &[u64; WORDS], frame: u64) -> bool {
        let (word, bit) = Self::locate(frame);
        map.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn put_bit(map: &mut [u64; WORDS], frame: u64, value: bool) {
        let (word, bit) = Self::locate(frame);
        if let Some(w) = map.get_mut(word) {
            if value {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
    }

    fn locate(frame: u64) -> (usize, u32) {
        (
            usize_from_u64(frame) / WORD_BITS,
            // Below WORD_BITS: the conversion cannot fail.
            u32::try_from(frame % WORD_BITS as u64).unwrap_or(0),
        )
    }
}

impl<const WORDS: usize> FramePool for FrameAllocator<WORDS> {
    fn alloc(&mut self) -> Option<Mfn> {
        let word = (self.first_free_word..WORDS).find(|&w| self.free[w] != 0)?;
        self.first_free_word = word;
        let frame = (word * WORD_BITS) as u64 + u64::from(self.free[word].trailing_zeros());
        self.take(frame, frame + 1);
        Some(Mfn(frame))
    }

    /// A refused free (double free, reserved frame) is a hypervisor bug:
    /// it is logged and the frame stays where it is.
    fn free(&mut self, mfn: Mfn) {
        if let Err(e) = self.free_range(mfn, 1) {
            log::error!("frame allocator: free of MFN {:#x} refused: {e}", mfn.0);
        }
    }

    fn free_frames(&self) -> u64 {
        self.free_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// 512 frames (2 MiB) are enough to exercise every path.
    type Small = FrameAllocator<8>;
    const MIB: u64 = 1 << 20;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    fn small() -> Box<Small> {
        let mut a = Box::new(Small::new());
        // RAM 4 KiB..1.5 MiB with a partial frame at each end; 64 KiB reserved.
        a.init([range(0x800, 0x18_0800)], [range(0x10_0000, 0x11_0000)]);
        a
    }

    #[test]
    fn init_rounds_ram_inward_and_reservations_outward() {
        let mut a = Small::new();
        a.init([range(0x800, 0x3800)], [range(0x2fff, 0x3000)]);
        assert!(!a.is_free(Mfn(0)), "partial first frame");
        assert!(a.is_free(Mfn(1)));
        assert!(!a.is_free(Mfn(2)), "reserved byte at its end");
        assert!(!a.is_free(Mfn(3)), "partial last frame");
        assert_eq!(a.free_frames(), 1);
    }

    #[test]
    fn ram_beyond_the_limit_is_reported_and_ignored() {
        let mut a = Small::new();
        let report = a.init([range(MIB, 3 * MIB)], []);
        assert_eq!(report.ignored_bytes, MIB);
        assert_eq!(a.free_frames(), 256);
        let report = a.init([range(4 * MIB, u64::MAX)], []);
        assert_eq!(report.ignored_bytes, u64::MAX - 4 * MIB);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn alloc_takes_every_usable_frame_once_then_stops() {
        let mut a = small();
        let usable = a.usable_frames();
        assert_eq!(usable, 383 - 16);
        let mut seen = BTreeSet::new();
        while let Some(mfn) = a.alloc() {
            assert!(!(0x100..0x110).contains(&mfn.0), "reserved {mfn:?}");
            assert!(seen.insert(mfn), "twice: {mfn:?}");
        }
        assert_eq!(seen.len() as u64, usable);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn alloc_range_is_all_or_nothing() {
        let mut a = small();
        assert_eq!(a.alloc_range(Mfn(0xf0), 0x20), Err(FrameError::NotUsable));
        assert!(a.is_free(Mfn(0xf0)), "nothing taken on failure");
        a.alloc_range(Mfn(0x110), 0x10).unwrap();
        assert_eq!(a.alloc_range(Mfn(0x11f), 2), Err(FrameError::InUse));
        assert!(a.is_free(Mfn(0x120)));
        assert_eq!(a.alloc_range(Mfn(0x1ff), 2), Err(FrameError::OutOfRange));
        assert_eq!(a.alloc_range(Mfn(u64::MAX), 2), Err(FrameError::OutOfRange));
        assert_eq!(a.alloc_range(Mfn(0x120), 0), Err(FrameError::BadRequest));
    }

    #[test]
    fn alloc_contiguous_respects_alignment_and_holes() {
        let mut a = small();
        a.alloc_range(Mfn(0x40), 1).unwrap();
        let mfn = a.alloc_contiguous(0x40, 0x40).unwrap();
        assert_eq!(
            mfn,
            Mfn(0x80),
            "0x40 is busy, so the first aligned run is at 0x80"
        );
        let mfn = a.alloc_contiguous(0x20, 1).unwrap();
        assert_eq!(mfn, Mfn(1));
        assert_eq!(a.alloc_contiguous(0x100, 1), Err(FrameError::Exhausted));
        assert_eq!(a.alloc_contiguous(1, 3), Err(FrameError::BadRequest));
        assert_eq!(a.alloc_contiguous(u64::MAX, 1), Err(FrameError::Exhausted));
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut a = small();
        let before = a.free_frames();
        assert_eq!(a.free_range(Mfn(0x105), 1), Err(FrameError::NotUsable));
        assert_eq!(a.free_range(Mfn(0x20), 1), Err(FrameError::NotAllocated));
        assert_eq!(a.free_range(Mfn(0x1000), 1), Err(FrameError::OutOfRange));
        a.free(Mfn(0x105));
        assert!(
            !a.is_free(Mfn(0x105)),
            "a reserved frame never becomes free"
        );
        assert_eq!(a.free_frames(), before);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        Free(usize),
        AllocRange(u64, u64),
        AllocContiguous(u64, u32),
        FreeRange(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Alloc),
            3 => any::<usize>().prop_map(Op::Free),
            1 => (0u64..600, 0u64..40).prop_map(|(f, n)| Op::AllocRange(f, n)),
            1 => (0u64..70, 0u32..7).prop_map(|(n, a)| Op::AllocContiguous(n, a)),
            1 => (0u64..600, 0u64..8).prop_map(|(f, n)| Op::FreeRange(f, n)),
        ]
    }

    proptest! {
        /// Against a model: a frame is never handed out twice, never a
        /// reserved one, and the free count is always exact.
        #[test]
        fn never_twice_never_reserved_count_exact(
            reserved in proptest::collection::vec((0u64..0x20_0000, 0u64..0x4_0000), 0..4),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let reserved: Vec<_> = reserved.iter().map(|&(s, n)| range(s, s + n)).collect();
            let mut a = Box::new(Small::new());
            a.init([range(0, 2 * MIB)], reserved.iter().copied());
            let usable: BTreeSet<u64> = (0..512)
                .filter(|f| !reserved.iter().any(|r| r.overlaps(&range(f * 4096, (f + 1) * 4096))))
                .collect();
            prop_assert_eq!(a.usable_frames(), usable.len() as u64);
            let mut taken: BTreeSet<u64> = BTreeSet::new();
            let take = |first: u64, n: u64, taken: &mut BTreeSet<u64>| -> Result<(), TestCaseError> {
                for f in first..first + n {
                    prop_assert!(usable.contains(&f), "reserved frame {:#x} handed out", f);
                    prop_assert!(taken.insert(f), "frame {:#x} handed out twice", f);
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Alloc => if let Some(m) = a.alloc() { take(m.0, 1, &mut taken)? },
                    Op::Free(i) => if !taken.is_empty() {
                        let f = *taken.iter().nth(i % taken.len()).unwrap();
                        taken.remove(&f);
                        prop_assert_eq!(a.free_range(Mfn(f), 1), Ok(()));
                    },
                    Op::AllocRange(f, n) => {
                        let ok = n > 0 && (f..f + n).all(|x| usable.contains(&x) && !taken.contains(&x));
                        prop_assert_eq!(a.alloc_range(Mfn(f), n).is_ok(), ok);
                        if ok { take(f, n, &mut taken)? }
                    }
                    Op::AllocContiguous(n, align) => {
                        if let Ok(m) = a.alloc_contiguous(n, 1 << align) {
                            prop_assert_eq!(m.0 % (1 << align), 0);
                            take(m.0, n, &mut taken)?;
                        }
                    }
                    Op::FreeRange(f, n) => {
                        let ok = n > 0 && (f..f + n).all(|x| taken.contains(&x));
                        prop_assert_eq!(a.free_range(Mfn(f), n).is_ok(), ok);
                        if ok { (f..f + n).for_each(|x| { taken.remove(&x); }) }
                    }
                }
                prop_assert_eq!(a.free_frames(), usable.len() as u64 - taken.len() as u64);
            }
        }
    }
}
