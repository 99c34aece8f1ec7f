//! The PV console ring of `xen/include/public/io/console.h`, both ends:
//! the frontend (a domU) produces `out` and consumes `in`; the backend
//! (dom0) consumes `out` and produces `in`. Indices are free-running u32;
//! a byte's slot is `index & (size - 1)`. Barriers as console.h's users
//! (Linux `hvc_xen`, xenconsoled): read the other side's index, then a
//! read barrier before the data; write the data, then a write barrier
//! before publishing our index.
//!
//! The other end is untrusted: each index is read once per operation, and
//! a ring claiming more bytes than it holds is reported, not followed.
//! Also the backend's bounded per-domain history and line splitting.
//!
//! Portable: the page is atomics laid out as `struct xencons_interface`.

use core::fmt;
use core::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};

use abi::convert::usize_from_u64;
use abi::xen::console::{mask_xencons_idx, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};

/// `struct xencons_interface`, 3088 bytes, as atomics.
#[repr(C)]
pub struct XenconsShared {
    /// `in`: backend to guest.
    pub input: [AtomicU8; XENCONS_IN_SIZE],
    /// `out`: guest to backend.
    pub output: [AtomicU8; XENCONS_OUT_SIZE],
    /// `in_cons` (guest).
    pub in_cons: AtomicU32,
    /// `in_prod` (backend).
    pub in_prod: AtomicU32,
    /// `out_cons` (backend).
    pub out_cons: AtomicU32,
    /// `out_prod` (guest).
    pub out_prod: AtomicU32,
}

/// The other end left the indices `prod - cons` further apart than the
/// ring's size: its state cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCorrupt {
    /// Producer index read.
    pub prod: u32,
    /// Consumer index read.
    pub cons: u32,
}

impl fmt::Display for RingCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "console ring corrupt: prod={:#x} cons={:#x}",
            self.prod, self.cons
        )
    }
}

/// One direction of the page: its bytes and indices.
struct Ring<'a> {
    data: &'a [AtomicU8],
    prod: &'a AtomicU32,
    cons: &'a AtomicU32,
}

impl Ring<'_> {
    fn used(&self, prod: u32, cons: u32) -> Result<usize, RingCorrupt> {
        let used = prod.wrapping_sub(cons) as usize;
        if used > self.data.len() {
            return Err(RingCorrupt { prod, cons });
        }
        Ok(used)
    }

    /// Producer: copies as much of `bytes` as fits; bytes written.
    fn produce(&self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        let cons = self.cons.load(Ordering::Acquire);
        let prod = self.prod.load(Ordering::Relaxed);
        // mb(): the consumer's index before we overwrite what it freed.
        fence(Ordering::SeqCst);
        let n = (self.data.len() - self.used(prod, cons)?).min(bytes.len());
        let mut index = prod;
        for &b in &bytes[..n] {
            let slot = mask_xencons_idx(index, self.data.len());
            self.data[slot].store(b, Ordering::Relaxed);
            index = index.wrapping_add(1);
        }
        // wmb(): the bytes before the index that publishes them.
        fence(Ordering::Release);
        self.prod.store(index, Ordering::Release);
        Ok(n)
    }

    /// Consumer: copies up to `buf.len()` available bytes; bytes read.
    fn consume(&self, buf: &mut [u8]) -> Result<usize, RingCorrupt> {
        let cons = self.cons.load(Ordering::Relaxed);
        let prod = self.prod.load(Ordering::Acquire);
        // rmb(): the producer's index before the bytes it published.
        fence(Ordering::Acquire);
        let n = self.used(prod, cons)?.min(buf.len());
        let mut index = cons;
        for b in &mut buf[..n] {
            let slot = mask_xencons_idx(index, self.data.len());
            *b = self.data[slot].load(Ordering::Relaxed);
            index = index.wrapping_add(1);
        }
        // mb(): done reading the bytes before the producer may reuse them.
        fence(Ordering::SeqCst);
        self.cons.store(index, Ordering::Release);
        Ok(n)
    }

    /// Drops whatever the producer claims to have written (recovery from
    /// a corrupt ring: consumer index := producer index).
    fn skip_all(&self) {
        let prod = self.prod.load(Ordering::Acquire);
        self.cons.store(prod, Ordering::Release);
    }
}

impl XenconsShared {
    fn out_ring(&self) -> Ring<'_> {
        Ring {
            data: &self.output,
            prod: &self.out_prod,
            cons: &self.out_cons,
        }
    }

    fn in_ring(&self) -> Ring<'_> {
        Ring {
            data: &self.input,
            prod: &self.in_prod,
            cons: &self.in_cons,
        }
    }

    /// Frontend: appends as much of `bytes` to `out` as fits; bytes written
    /// (0 when full: notify, wait for the backend, retry).
    pub fn write_output(&self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        self.out_ring().produce(bytes)
    }

    /// Frontend: bytes the backend has not consumed yet.
    pub fn output_pending(&self) -> Result<usize, RingCorrupt> {
        let ring = self.out_ring();
        ring.used(
            ring.prod.load(Ordering::Relaxed),
            ring.cons.load(Ordering::Acquire),
        )
    }

    /// Frontend: reads input from `in`; bytes read.
    pub fn read_input(&self, buf: &mut [u8]) -> Result<usize, RingCorrupt> {
        self.in_ring().consume(buf)
    }

    /// Backend: reads output from `out`; bytes read.
    pub fn read_output(&self, buf: &mut [u8]) -> Result<usize, RingCorrupt> {
        self.out_ring().consume(buf)
    }

    /// Backend: drops all output the guest claims (after [`RingCorrupt`]).
    pub fn discard_output(&self) {
        self.out_ring().skip_all();
    }

    /// Backend: appends as much of `bytes` to `in` as fits; bytes written.
    pub fn write_input(&self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        self.in_ring().produce(bytes)
    }
}

/// The last `N` bytes a domain printed (a bounded ring buffer).
pub struct History<const N: usize> {
    buf: [u8; N],
    /// Total bytes ever pushed; the next byte goes to `written % N`.
    written: u64,
}

impl<const N: usize> Default for History<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> History<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            written: 0,
        }
    }

    /// Appends `bytes`, forgetting the oldest beyond `N`.
    pub fn push(&mut self, bytes: &[u8]) {
        const { assert!(N > 0) };
        let skip = bytes.len().saturating_sub(N);
        self.written += skip as u64;
        for &b in &bytes[skip..] {
            self.buf[usize_from_u64(self.written % N as u64)] = b;
            self.written += 1;
        }
    }

    /// Total bytes ever pushed.
    pub fn total(&self) -> u64 {
        self.written
    }

    /// The kept bytes, oldest first, as two slices.
    pub fn contents(&self) -> (&[u8], &[u8]) {
        if self.written <= N as u64 {
            return (&self.buf[..usize_from_u64(self.written)], &[]);
        }
        let split = usize_from_u64(self.written % N as u64);
        (&self.buf[split..], &self.buf[..split])
    }
}

/// Splits a byte stream into lines of at most `N` bytes (a longer line is
/// cut into pieces); `\r` is dropped, the `\n` is not part of the line.
pub struct LineAssembler<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for LineAssembler<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineAssembler<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Feeds `bytes`, calling `line` for each complete (or full) line.
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' => {
                    line(&self.buf[..self.len]);
                    self.len = 0;
                }
                _ => {
                    if self.len == N {
                        line(&self.buf[..N]);
                        self.len = 0;
                    }
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
        }
    }

    /// Hands out a pending partial line, if any (e.g. when the domain is gone).
    pub fn flush(&mut self, line: impl FnOnce(&[u8])) {
        if self.len > 0 {
            line(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests;
