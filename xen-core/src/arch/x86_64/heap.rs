//! xen-core's heap: contiguous frames, a share of the machine's RAM
//! (see [`heap_bytes`]), managed by
//! `linked_list_allocator`. A failed allocation returns null, so fallible
//! users (`try_reserve`) see the error; infallible ones reach
//! `handle_alloc_error`, which panics, and the panic is fatal.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

use super::mem::FRAMES;
use crate::mm::frame::FrameError;
use crate::mm::{FramePool, PAGE_SIZE};

/// The smallest heap.
pub const HEAP_MIN_BYTES: u64 = 4 << 20;
/// The largest heap. The heap is carved first fit, so it lands below
/// dom0's 1:1 region at 16 MiB only while it fits in the ~15 MiB free
/// there: a 16 MiB heap (a 2 GiB machine, XTF's) took dom0's frames and
/// dom0 could not be built. A larger heap needs placing above dom0's
/// region first.
pub const HEAP_MAX_BYTES: u64 = 4 << 20;
/// The heap takes one part in this many of the free RAM: the per-domain
/// structures (the domain, its active grant entries, event channels,
/// about 8 KiB for a small domU) grow with the domains the RAM can hold,
/// 2 MiB each at the least.
pub const HEAP_RAM_SHARE: u64 = 128;

/// The heap's size for `free_bytes` of free RAM: its share, within
/// [`HEAP_MIN_BYTES`]..=[`HEAP_MAX_BYTES`], in whole frames.
pub fn heap_bytes(free_bytes: u64) -> u64 {
    let page = PAGE_SIZE as u64;
    (free_bytes / HEAP_RAM_SHARE).clamp(HEAP_MIN_BYTES, HEAP_MAX_BYTES) / page * page
}

struct LockedHeap(spin::Mutex<Heap>);

#[global_allocator]
static HEAP: LockedHeap = LockedHeap(spin::Mutex::new(Heap::empty()));

// SAFETY: `Heap` hands out disjoint blocks of the region given to `init`,
// each of at least the layout's size and alignment; the mutex serialises it.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            unsafe { self.0.lock().deallocate(block, layout) };
        }
    }
}

/// Takes [`heap_bytes`] of contiguous frames and makes them the heap
/// (once: later calls do nothing).
pub fn init() -> Result<(), FrameError> {
    let mut heap = HEAP.0.lock();
    if heap.size() != 0 {
        return Ok(());
    }
    let mut frames = FRAMES.lock();
    let bytes = heap_bytes(frames.free_frames() * PAGE_SIZE as u64);
    let len = usize::try_from(bytes).map_err(|_| FrameError::BadRequest)?;
    let first = frames.alloc_contiguous(bytes / PAGE_SIZE as u64, 1)?;
    // SAFETY: the frames were just taken from the allocator, are usable RAM
    // inside the identity map, and belong to the heap from now on; the heap
    // is empty (checked above), so this is its only region.
    unsafe { heap.init(first.hpa() as *mut u8, len) };
    Ok(())
}

/// Bytes of heap (0 before `init`).
pub fn size() -> usize {
    HEAP.0.lock().size()
}
