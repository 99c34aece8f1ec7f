//! The one accessor for frames a guest changes while the hypervisor uses
//! them: its shared-info page (event bitmaps, `vcpu_info`, pvclock, wall
//! clock), a `vcpu_info` registered in its RAM, its grant-table frames.
//!
//! Such memory is never reached through `&[u8]`/`&mut [u8]` (which
//! promise that nothing else changes it): every access is one atomic
//! operation of the field's size at an aligned offset, so a value the
//! guest may change is fetched once (no torn read, no second fetch to be
//! raced: XSA-155) and a read-modify-write is one locked instruction, as
//! Xen's `guest_cmpxchg`, `guest_test_and_set_bit` and
//! `guest_clear_mask16` are. On the host (tests) the same code runs over
//! the simulated frames.
//!
//! This module holds all the `unsafe` the atomics need; callers stay
//! `forbid(unsafe_code)`.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::PAGE_SIZE;

/// An access outside the frame or at an offset not aligned to its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadOffset;

/// A page that several host threads change at once (tests: the
/// hypervisor on one thread, the guest on another), page-aligned as
/// frames are; reached only through atomics.
#[cfg(any(test, feature = "sim"))]
#[repr(C, align(4096))]
pub struct AtomicPage([AtomicU64; PAGE_SIZE / 8]);

#[cfg(any(test, feature = "sim"))]
impl AtomicPage {
    /// A page holding `bytes`.
    pub fn new(bytes: &[u8; PAGE_SIZE]) -> Self {
        Self(core::array::from_fn(|i| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            AtomicU64::new(u64::from_le_bytes(word))
        }))
    }
}

/// One 4 KiB frame shared with a guest, for the lifetime of the exclusive
/// borrow it was made from (so no Rust reference to it exists meanwhile),
/// or of a shared borrow of an [`AtomicPage`] (whose bytes are atomics).
pub struct SharedFrame<'a> {
    base: NonNull<u8>,
    _frame: PhantomData<&'a [AtomicU8; PAGE_SIZE]>,
}

impl<'a> SharedFrame<'a> {
    /// The frame behind `frame`, which must be page-aligned, as every
    /// [`super::PhysMem`] frame is: a misaligned frame is a hypervisor bug.
    pub fn new(frame: &'a mut [u8; PAGE_SIZE]) -> Self {
        // SAFETY: the exclusive borrow keeps the 4 KiB mapped and writable
        // for 'a and excludes every other reference meanwhile; alignment
        // is checked by `from_raw`.
        unsafe { Self::from_raw(NonNull::from(frame).cast::<u8>()) }
    }

    /// The frame at `base`, which guests on other pCPUs may change at any
    /// time (the identity map's view of guest RAM on a machine where
    /// guests run while the hypervisor does). A misaligned `base` is a
    /// hypervisor bug: it panics.
    ///
    /// # Safety
    ///
    /// `base` is page-aligned, the 4 KiB behind it stay mapped and
    /// writable for `'a`, and no Rust reference to them exists for `'a`
    /// (every access goes through a `SharedFrame`'s atomics).
    pub unsafe fn from_raw(base: NonNull<u8>) -> Self {
        assert!(
            base.as_ptr().align_offset(PAGE_SIZE) == 0,
            "shared frame not page-aligned"
        );
        Self {
            base,
            _frame: PhantomData,
        }
    }

    /// `page` as a shared frame: the host's model of a frame the guest
    /// changes on another pCPU (its other threads reach `page` through
    /// its atomics, or through their own `SharedFrame` of it).
    #[cfg(any(test, feature = "sim"))]
    pub fn of_atomic(page: &'a AtomicPage) -> Self {
        Self {
            base: NonNull::from(page).cast::<u8>(),
            _frame: PhantomData,
        }
    }

    /// The address of the `size` bytes at `off`, if inside the frame and
    /// aligned to `size` (a power of two).
    fn at(&self, off: usize, size: usize) -> Result<*mut u8, BadOffset> {
        if !off.is_multiple_of(size) || off.checked_add(size).is_none_or(|end| end > PAGE_SIZE) {
            return Err(BadOffset);
        }
        // `off + size <= PAGE_SIZE`: inside the frame.
        Ok(self.base.as_ptr().wrapping_add(off))
    }

    fn u8_at(&self, off: usize) -> Result<&AtomicU8, BadOffset> {
        let p = self.at(off, 1)?;
        // SAFETY: `p` lies in the frame `self` borrows for 'a, either
        // exclusively (so no Rust reference aliases it) or as an
        // `AtomicPage` (whose every byte is inside an atomic), and is
        // aligned for the type (`at` checked the offset; the frame is
        // page-aligned). Every access the hypervisor makes to the frame
        // meanwhile goes through these atomics; the guest's own accesses
        // are the hardware's (or, on the host, other threads' atomics).
        Ok(unsafe { AtomicU8::from_ptr(p) })
    }

    fn u16_at(&self, off: usize) -> Result<&AtomicU16, BadOffset> {
        let p = self.at(off, 2)?;
        // SAFETY: as in `u8_at`; `at` checked 2-byte alignment.
        Ok(unsafe { AtomicU16::from_ptr(p.cast()) })
    }

    fn u32_at(&self, off: usize) -> Result<&AtomicU32, BadOffset> {
        let p = self.at(off, 4)?;
        // SAFETY: as in `u8_at`; `at` checked 4-byte alignment.
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    fn u64_at(&self, off: usize) -> Result<&AtomicU64, BadOffset> {
        let p = self.at(off, 8)?;
        // SAFETY: as in `u8_at`; `at` checked 8-byte alignment.
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// One fetch of the byte at `off`.
    pub fn load_u8(&self, off: usize) -> Result<u8, BadOffset> {
        Ok(self.u8_at(off)?.load(Ordering::Acquire))
    }

    /// One fetch of the little-endian u16 at `off` (2-aligned).
    pub fn load_u16(&self, off: usize) -> Result<u16, BadOffset> {
        Ok(self.u16_at(off)?.load(Ordering::Acquire))
    }

    /// One fetch of the u32 at `off` (4-aligned).
    pub fn load_u32(&self, off: usize) -> Result<u32, BadOffset> {
        Ok(self.u32_at(off)?.load(Ordering::Acquire))
    }

    /// One fetch of the u64 at `off` (8-aligned).
    pub fn load_u64(&self, off: usize) -> Result<u64, BadOffset> {
        Ok(self.u64_at(off)?.load(Ordering::Acquire))
    }

    /// Stores the u32 at `off` (4-aligned).
    pub fn store_u32(&self, off: usize, value: u32) -> Result<(), BadOffset> {
        self.u32_at(off)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Locked OR into the byte at `off`; returns the old byte.
    pub fn fetch_or_u8(&self, off: usize, bits: u8) -> Result<u8, BadOffset> {
        Ok(self.u8_at(off)?.fetch_or(bits, Ordering::SeqCst))
    }

    /// Locked AND into the u16 at `off`; returns the old value (Xen's
    /// `guest_clear_mask16` with `!bits`).
    pub fn fetch_and_u16(&self, off: usize, bits: u16) -> Result<u16, BadOffset> {
        Ok(self.u16_at(off)?.fetch_and(bits, Ordering::SeqCst))
    }

    /// Locked OR into the u64 at `off`; returns the old value (Xen's
    /// `guest_test_and_set_bit` on a bitmap word).
    pub fn fetch_or_u64(&self, off: usize, bits: u64) -> Result<u64, BadOffset> {
        Ok(self.u64_at(off)?.fetch_or(bits, Ordering::SeqCst))
    }

    /// Locked AND into the u64 at `off`; returns the old value.
    pub fn fetch_and_u64(&self, off: usize, bits: u64) -> Result<u64, BadOffset> {
        Ok(self.u64_at(off)?.fetch_and(bits, Ordering::SeqCst))
    }

    /// Locked compare-and-exchange of the u32 at `off` (Xen's
    /// `guest_cmpxchg`): `Ok(Ok(()))` if it held `current` and now holds
    /// `new`, else `Ok(Err(what it holds))`.
    pub fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<(), u32>, BadOffset> {
        let word = self.u32_at(off)?;
        Ok(word
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ()))
    }

    /// Copies `buf.len()` bytes from `off`, one atomic byte load each:
    /// for a structure whose fields are then checked as one copy.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), BadOffset> {
        self.span(off, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.u8_at(off + i)?.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies `data` to `off`, one atomic byte store each; all or nothing.
    pub fn write(&self, off: usize, data: &[u8]) -> Result<(), BadOffset> {
        self.span(off, data.len())?;
        for (i, b) in data.iter().enumerate() {
            self.u8_at(off + i)?.store(*b, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Checks that `len` bytes at `off` lie inside the frame.
    fn span(&self, off: usize, len: usize) -> Result<(), BadOffset> {
        match off.checked_add(len) {
            Some(end) if end <= PAGE_SIZE => Ok(()),
            _ => Err(BadOffset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::{Mfn, PhysMem};
    use crate::paging::sim::{machine, FIRST_MFN};

    #[test]
    fn words_are_little_endian_and_checked() {
        let (_, mut mem) = machine(1);
        let f = mem.shared_frame(Mfn(FIRST_MFN));
        f.write(8, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(f.load_u64(8), Ok(0x0807_0605_0403_0201));
        assert_eq!(f.load_u32(12), Ok(0x0807_0605));
        assert_eq!(f.load_u16(8), Ok(0x0201));
        assert_eq!(f.fetch_or_u64(8, 1 << 63), Ok(0x0807_0605_0403_0201));
        assert_eq!(f.fetch_and_u64(8, !0xff), Ok(0x8807_0605_0403_0201));
        assert_eq!(f.fetch_and_u16(10, 0x00ff), Ok(0x0403));
        assert_eq!(f.fetch_or_u8(15, 0x01), Ok(0x88));
        let mut back = [0u8; 8];
        f.read(8, &mut back).unwrap();
        assert_eq!(back, [0, 2, 3, 0, 5, 6, 7, 0x89]);
        assert_eq!(f.load_u64(4), Err(BadOffset), "misaligned");
        assert_eq!(f.load_u32(PAGE_SIZE), Err(BadOffset), "outside");
        assert_eq!(f.load_u8(usize::MAX), Err(BadOffset));
        assert_eq!(f.write(PAGE_SIZE - 1, &[0, 0]), Err(BadOffset));
        assert_eq!(f.load_u8(PAGE_SIZE - 1), Ok(crate::paging::sim::DIRTY));
    }

    #[test]
    fn compare_exchange_sees_the_current_word() {
        let (_, mut mem) = machine(1);
        let f = mem.shared_frame(Mfn(FIRST_MFN));
        f.store_u32(0, 7).unwrap();
        assert_eq!(f.compare_exchange_u32(0, 6, 9), Ok(Err(7)));
        assert_eq!(f.compare_exchange_u32(0, 7, 9), Ok(Ok(())));
        assert_eq!(f.load_u32(0), Ok(9));
        assert_eq!(f.compare_exchange_u32(2, 9, 1), Err(BadOffset));
        assert_eq!(f.load_u32(0), Ok(9));
    }
}
