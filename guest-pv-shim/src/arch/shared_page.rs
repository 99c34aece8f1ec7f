//! Pages shared with other domains or the hypervisor, seen only through
//! types made of atomics: a frame of our image we grant ([`SharedFrame`]),
//! or a page of another domain mapped at a GFN we reserve
//! ([`super::gnttab::ForeignMapping`]).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

use super::hypercall::Frame;
use crate::grant::GrantEntryCell;
use crate::pvconsole::XenconsShared;
use crate::xenbus::ring::XenstoreInterface;

/// A layout that may be laid over a shared page.
///
/// # Safety
/// Implementors consist only of atomics (any bit pattern valid, and
/// concurrent writes by another domain are no data race in Rust's
/// sense), fit in a page and need at most page alignment.
pub unsafe trait SharedLayout {}

// SAFETY: only atomics; 3088 bytes; 4-byte alignment.
unsafe impl SharedLayout for XenconsShared {}
// SAFETY: only atomics; 2080 bytes; 4-byte alignment.
unsafe impl SharedLayout for XenstoreInterface {}
// SAFETY: only atomics; exactly a page; 8-byte alignment.
unsafe impl SharedLayout for [AtomicU64; 512] {}
// SAFETY: only atomics; exactly a page; 4-byte alignment (a shared ring).
unsafe impl SharedLayout for [AtomicU32; 1024] {}
// SAFETY: only atomics; 512 * 8 bytes = a page; 4-byte alignment.
unsafe impl SharedLayout for [GrantEntryCell; 512] {}
// SAFETY: only atomics; exactly a page; no alignment (a packet buffer).
unsafe impl SharedLayout for [AtomicU8; 4096] {}

/// Views the page at `gpa` as `T`.
///
/// # Safety
/// `gpa` is page-aligned, identity-mapped and stays mapped to a page this
/// domain may access for the returned lifetime.
pub(super) unsafe fn view_at<'a, T: SharedLayout>(gpa: u64) -> &'a T {
    const { assert!(core::mem::size_of::<T>() <= abi::xen::PAGE_SIZE) };
    // SAFETY: the caller vouches for the page; SharedLayout for the type.
    unsafe { &*(gpa as *const T) }
}

/// A page-aligned frame of this image to share (grant) with another domain.
pub struct SharedFrame(Frame);

impl Default for SharedFrame {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedFrame {
    /// A zeroed frame (place it in a `static`).
    pub const fn new() -> Self {
        SharedFrame(Frame::new())
    }

    /// Its GFN (= GPA >> 12 under the identity map).
    pub fn gfn(&self) -> u64 {
        self.0.gpa() >> abi::xen::PAGE_SHIFT
    }

    /// The frame as `T`.
    pub fn view<T: SharedLayout>(&self) -> &T {
        // SAFETY: a frame of this image: page-aligned, identity-mapped and
        // ours for as long as `self` lives.
        unsafe { view_at(self.0.gpa()) }
    }
}
