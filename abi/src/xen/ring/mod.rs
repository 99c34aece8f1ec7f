//! Shared rings for split drivers, binary compatible with
//! `xen/include/public/io/ring.h`.
//!
//! A shared ring (`sring`) fills one or more granted pages: a 64-byte
//! header (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`, private and
//! padding bytes) followed by a power-of-two number of slots, each the
//! size of the C union of request and response. Indices are free-running
//! u32 that wrap; a slot is `index & (size - 1)`.
//!
//! [`FrontRing`] (requests out, responses in) and [`BackRing`] (requests
//! in, responses out) keep each end's private indices and reach the
//! shared pages only through `&[AtomicU32]`, so they need no `unsafe`: a
//! guest turns its mapped page into that slice with one cast in its own
//! crate. Each end copies an entry out of the ring once and never
//! re-reads it, and checks the other end's producer index before use.

mod back;
mod front;
mod sring;
#[cfg(test)]
mod tests;

pub use back::BackRing;
pub use front::FrontRing;
pub use sring::{RingEntry, RingError};

/// `RING_IDX`: a free-running ring index.
pub type RingIdx = u32;

/// Byte offset of `req_prod` in the shared ring header.
pub const SRING_REQ_PROD_OFFSET: usize = 0;
/// Byte offset of `req_event`.
pub const SRING_REQ_EVENT_OFFSET: usize = 4;
/// Byte offset of `rsp_prod`.
pub const SRING_RSP_PROD_OFFSET: usize = 8;
/// Byte offset of `rsp_event`.
pub const SRING_RSP_EVENT_OFFSET: usize = 12;
/// Byte offset of the 4-byte private union `pvt` (netif smartpoll etc.).
pub const SRING_PVT_OFFSET: usize = 16;
/// Bytes before the first slot (`offsetof(struct x_sring, ring)`).
pub const SRING_HEADER_SIZE: usize = 64;

/// `__RD32`: `x` rounded down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// `__CONST_RING_SIZE`: slots in a ring of `ring_bytes` bytes whose slots
/// are `slot_size` bytes (0 if `slot_size` is 0 or nothing fits).
pub fn ring_size(ring_bytes: usize, slot_size: usize) -> u32 {
    if slot_size == 0 || ring_bytes <= SRING_HEADER_SIZE {
        return 0;
    }
    let n = (ring_bytes - SRING_HEADER_SIZE) / slot_size;
    round_down_pow2(u32::try_from(n).unwrap_or(u32::MAX))
}
