//! The guest end of `struct xenstore_domain_interface` (`io/xs_wire.h`):
//! the guest produces into `req` and consumes `rsp`; indices are
//! free-running `u32`s masked by `XENSTORE_RING_SIZE - 1`. Barriers as
//! Linux's `xenbus_comms.c`: read the other side's index, a read barrier,
//! then the bytes; write the bytes, a write barrier, then our index.
//!
//! The store is trusted less than Xen but more than a peer: indices it
//! left more than a ring apart are reported ([`RingCorrupt`]), not
//! followed. Portable: the page is atomics laid out as Xen's structure.

use core::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};

/// `XENSTORE_RING_SIZE`: bytes in each ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the store reports in `error`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_ERROR_NONE`.
pub const XENSTORE_ERROR_NONE: u32 = 0;

/// `struct xenstore_domain_interface`, as atomics.
#[repr(C)]
pub struct XenstoreInterface {
    /// `req`: guest to store.
    pub req: [AtomicU8; XENSTORE_RING_SIZE],
    /// `rsp`: store to guest.
    pub rsp: [AtomicU8; XENSTORE_RING_SIZE],
    /// `req_cons` (store).
    pub req_cons: AtomicU32,
    /// `req_prod` (guest).
    pub req_prod: AtomicU32,
    /// `rsp_cons` (guest).
    pub rsp_cons: AtomicU32,
    /// `rsp_prod` (store).
    pub rsp_prod: AtomicU32,
    /// `server_features`: `XENSTORE_SERVER_FEATURE_*` bits.
    pub server_features: AtomicU32,
    /// `connection`: `XENSTORE_CONNECTED` (0) or `XENSTORE_RECONNECT` (1).
    pub connection: AtomicU32,
    /// `error`: `XENSTORE_ERROR_*`, set by the store when it gave up on
    /// this ring (bad index, protocol violation).
    pub error: AtomicU32,
    /// `evtchn_port`: unused by the shim (it asks `HVM_PARAM_STORE_EVTCHN`).
    pub evtchn_port: AtomicU32,
}

impl Default for XenstoreInterface {
    fn default() -> Self {
        Self {
            req: [const { AtomicU8::new(0) }; XENSTORE_RING_SIZE],
            rsp: [const { AtomicU8::new(0) }; XENSTORE_RING_SIZE],
            req_cons: AtomicU32::new(0),
            req_prod: AtomicU32::new(0),
            rsp_cons: AtomicU32::new(0),
            rsp_prod: AtomicU32::new(0),
            server_features: AtomicU32::new(0),
            connection: AtomicU32::new(0),
            error: AtomicU32::new(0),
            evtchn_port: AtomicU32::new(0),
        }
    }
}

/// The store left `prod - cons` beyond the ring's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCorrupt {
    /// Producer index read.
    pub prod: u32,
    /// Consumer index read.
    pub cons: u32,
}

fn used(prod: u32, cons: u32) -> Result<usize, RingCorrupt> {
    let n = prod.wrapping_sub(cons) as usize;
    if n > XENSTORE_RING_SIZE {
        return Err(RingCorrupt { prod, cons });
    }
    Ok(n)
}

fn slot(index: u32) -> usize {
    index as usize & (XENSTORE_RING_SIZE - 1)
}

impl XenstoreInterface {
    /// The `u32` field at byte `offset` of the page: `req_cons` at
    /// `2 * XENSTORE_RING_SIZE`, then the others in `xs_wire.h`'s order
    /// to `evtchn_port`. `None` inside the rings, past the fields or off
    /// a field's first byte.
    pub fn field_at(&self, offset: usize) -> Option<&AtomicU32> {
        let fields = [
            &self.req_cons,
            &self.req_prod,
            &self.rsp_cons,
            &self.rsp_prod,
            &self.server_features,
            &self.connection,
            &self.error,
            &self.evtchn_port,
        ];
        let i = offset.checked_sub(2 * XENSTORE_RING_SIZE)?;
        (i % 4 == 0).then(|| fields.get(i / 4).copied()).flatten()
    }

    /// Appends as much of `bytes` to `req` as fits; bytes written (0:
    /// full, notify the store and wait).
    pub fn write_request(&self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        let cons = self.req_cons.load(Ordering::Acquire);
        let prod = self.req_prod.load(Ordering::Relaxed);
        // mb(): the store's consumer index before we overwrite what it freed.
        fence(Ordering::SeqCst);
        let n = (XENSTORE_RING_SIZE - used(prod, cons)?).min(bytes.len());
        for (i, &b) in bytes[..n].iter().enumerate() {
            let index = prod.wrapping_add(u32::try_from(i).unwrap_or(0));
            self.req[slot(index)].store(b, Ordering::Relaxed);
        }
        // wmb(): the bytes before the index that publishes them.
        fence(Ordering::Release);
        let step = u32::try_from(n).unwrap_or(0);
        self.req_prod
            .store(prod.wrapping_add(step), Ordering::Release);
        Ok(n)
    }

    /// Bytes of `rsp` the store has published and we have not consumed.
    pub fn response_available(&self) -> Result<usize, RingCorrupt> {
        let prod = self.rsp_prod.load(Ordering::Acquire);
        used(prod, self.rsp_cons.load(Ordering::Relaxed))
    }

    /// Copies the next `buf.len()` response bytes without consuming them;
    /// false if fewer are available.
    pub fn peek_response(&self, buf: &mut [u8]) -> Result<bool, RingCorrupt> {
        if self.response_available()? < buf.len() {
            return Ok(false);
        }
        // rmb(): the producer index (read above) before the bytes.
        fence(Ordering::Acquire);
        let cons = self.rsp_cons.load(Ordering::Relaxed);
        for (i, b) in buf.iter_mut().enumerate() {
            let index = cons.wrapping_add(u32::try_from(i).unwrap_or(0));
            *b = self.rsp[slot(index)].load(Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Consumes up to `buf.len()` response bytes; bytes read.
    pub fn read_response(&self, buf: &mut [u8]) -> Result<usize, RingCorrupt> {
        let n = self.response_available()?.min(buf.len());
        self.peek_response(&mut buf[..n])?;
        // mb(): done with the bytes before the store may reuse them.
        fence(Ordering::SeqCst);
        let cons = self.rsp_cons.load(Ordering::Relaxed);
        let step = u32::try_from(n).unwrap_or(0);
        self.rsp_cons
            .store(cons.wrapping_add(step), Ordering::Release);
        Ok(n)
    }

    /// The store's `error` report, if it set one (it has given up on
    /// this ring).
    pub fn store_error(&self) -> Option<u32> {
        if self.server_features.load(Ordering::Acquire) & XENSTORE_SERVER_FEATURE_ERROR == 0 {
            return None;
        }
        match self.error.load(Ordering::Acquire) {
            XENSTORE_ERROR_NONE => None,
            code => Some(code),
        }
    }
}
