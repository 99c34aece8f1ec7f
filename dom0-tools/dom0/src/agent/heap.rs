//! dom0's heap: [`HEAP_BYTES`] of this image's `.bss`, managed by
//! `linked_list_allocator`. The management protocol (postcard messages,
//! the buffered kernel upload) and the toolstack allocate; a failed
//! allocation returns null, so fallible users (`try_reserve`, as the
//! upload buffer uses) see the error.

use core::mem::MaybeUninit;

use linked_list_allocator::LockedHeap;

/// Size of the heap: room for the largest kernel image an operator is
/// likely to upload (debug builds of the example guests are ~5 MiB) next
/// to the protocol's buffers. dom0 gets 64 MiB in the bundles.
pub const HEAP_BYTES: usize = 24 << 20;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// The heap's memory, handed out once (the lock is leaked to do that).
static HEAP: spin::Mutex<[MaybeUninit<u8>; HEAP_BYTES]> =
    spin::Mutex::new([MaybeUninit::uninit(); HEAP_BYTES]);

/// Gives the allocator its memory; later calls do nothing.
pub fn init() {
    if let Some(guard) = HEAP.try_lock() {
        let memory: &'static mut [MaybeUninit<u8>; HEAP_BYTES] = spin::MutexGuard::leak(guard);
        ALLOCATOR.lock().init_from_slice(memory);
    }
}
