//! Bytes in and out of a page shared with another domain, seen as
//! `[AtomicU8; 4096]` (a packet buffer the other side copies by grant).

use core::sync::atomic::{AtomicU8, Ordering};

/// A shared page, byte by byte.
pub type PageBytes = [AtomicU8; abi::xen::PAGE_SIZE];

/// Copies `buf.len()` bytes of `page` from `offset` into `buf` (relaxed
/// loads: the event or ring index that said the bytes are there ordered
/// them); `false`, copying nothing, if that runs past the page.
pub fn read_bytes(page: &PageBytes, offset: usize, buf: &mut [u8]) -> bool {
    let Some(src) = offset
        .checked_add(buf.len())
        .and_then(|end| page.get(offset..end))
    else {
        return false;
    };
    for (b, a) in buf.iter_mut().zip(src) {
        *b = a.load(Ordering::Relaxed);
    }
    true
}

/// Copies `bytes` into `page` at `offset` (relaxed stores: the ring
/// index or hypercall that hands the page over publishes them); `false`,
/// copying nothing, if that runs past the page.
pub fn write_bytes(page: &PageBytes, offset: usize, bytes: &[u8]) -> bool {
    let Some(dst) = offset
        .checked_add(bytes.len())
        .and_then(|end| page.get(offset..end))
    else {
        return false;
    };
    for (a, b) in dst.iter().zip(bytes) {
        a.store(*b, Ordering::Relaxed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_never_run_past_the_page() {
        let page: PageBytes = [const { AtomicU8::new(0) }; 4096];
        assert!(write_bytes(&page, 4090, b"abcdef"));
        let mut out = [0u8; 6];
        assert!(read_bytes(&page, 4090, &mut out));
        assert_eq!(&out, b"abcdef");
        assert!(!write_bytes(&page, 4091, b"abcdef"));
        assert!(!read_bytes(&page, usize::MAX, &mut out));
        assert_eq!(page[4095].load(Ordering::Relaxed), b'f');
    }
}
