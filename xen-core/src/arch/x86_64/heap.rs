//! xen-core's heap: [`HEAP_BYTES`] of contiguous frames managed by
//! `linked_list_allocator`. A failed allocation returns null, so fallible
//! users (`try_reserve`) see the error; infallible ones reach
//! `handle_alloc_error`, which panics, and the panic is fatal.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

use super::mem::FRAMES;
use crate::mm::frame::FrameError;
use crate::mm::PAGE_SIZE;

/// Size of the heap.
pub const HEAP_BYTES: usize = 4 << 20;

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

/// Takes [`HEAP_BYTES`] of contiguous frames and makes them the heap
/// (once: later calls do nothing).
pub fn init() -> Result<(), FrameError> {
    let mut heap = HEAP.0.lock();
    if heap.size() != 0 {
        return Ok(());
    }
    let first = FRAMES
        .lock()
        .alloc_contiguous((HEAP_BYTES / PAGE_SIZE) as u64, 1)?;
    // SAFETY: the frames were just taken from the allocator, are usable RAM
    // inside the identity map, and belong to the heap from now on; the heap
    // is empty (checked above), so this is its only region.
    unsafe { heap.init(first.hpa() as *mut u8, HEAP_BYTES) };
    Ok(())
}

/// Bytes of heap (0 before `init`).
pub fn size() -> usize {
    HEAP.0.lock().size()
}
