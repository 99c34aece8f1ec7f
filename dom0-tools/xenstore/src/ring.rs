//! The shared ring page, `struct xenstore_domain_interface`
//! (`io/xs_wire.h`): a 1 KiB request ring the guest produces into and a
//! 1 KiB response ring the store produces into, with free-running `u32`
//! indices masked by `XENSTORE_RING_SIZE - 1`. The store side here reads
//! each index once into a local, checks it, then uses the copy; indices a
//! guest corrupted (more than a ring's worth outstanding) fail that
//! connection only, and are reported in the page's `error` field.

use alloc::vec::Vec;

use crate::store::{ConnError, ConnId, Store};

/// `XENSTORE_RING_SIZE`: bytes in each ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Offset of `req[]`.
pub const REQ_OFFSET: usize = 0;
/// Offset of `rsp[]`.
pub const RSP_OFFSET: usize = XENSTORE_RING_SIZE;
/// Offset of `req_cons`.
pub const REQ_CONS: usize = 2 * XENSTORE_RING_SIZE;
/// Offset of `req_prod`.
pub const REQ_PROD: usize = REQ_CONS + 4;
/// Offset of `rsp_cons`.
pub const RSP_CONS: usize = REQ_CONS + 8;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = REQ_CONS + 12;
/// Offset of `server_features`.
pub const SERVER_FEATURES: usize = REQ_CONS + 16;
/// Offset of `connection`.
pub const CONNECTION: usize = REQ_CONS + 20;
/// Offset of `error`.
pub const ERROR: usize = REQ_CONS + 24;
/// Size of the structure (through `evtchn_port`).
pub const INTERFACE_SIZE: usize = REQ_CONS + 32;
/// Rounds of read-then-write one [`service`] call makes at most (ours):
/// enough to drain both rings a few times over.
pub const SERVICE_ROUNDS_MAX: usize = 8;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the store reports in `error`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_ERROR_RINGIDX`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// Byte access to a domain's ring page. dom0 implements it over its
/// mapping of the guest page: loads of an index must be followed by an
/// acquire fence before the ring bytes are read, and a release fence must
/// precede each store of an index (`io/ring.h`'s barriers); `[u8]`
/// implements it for tests. Offsets are within [`INTERFACE_SIZE`].
pub trait SharedPage {
    /// Copies `buf.len()` bytes at `offset` out of the page.
    fn load(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` into the page at `offset`.
    fn store(&mut self, offset: usize, data: &[u8]);

    /// Reads a little-endian `u32` field.
    fn load_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.load(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a little-endian `u32` field.
    fn store_u32(&mut self, offset: usize, value: u32) {
        self.store(offset, &value.to_le_bytes());
    }
}

impl SharedPage for [u8] {
    fn load(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self[offset..offset + buf.len()]);
    }

    fn store(&mut self, offset: usize, data: &[u8]) {
        self[offset..offset + data.len()].copy_from_slice(data);
    }
}

/// Prepares a fresh page for the store: features we serve, no error.
pub fn init_page(page: &mut (impl SharedPage + ?Sized)) {
    page.store_u32(SERVER_FEATURES, XENSTORE_SERVER_FEATURE_ERROR);
    page.store_u32(ERROR, 0);
}

/// Bytes outstanding between `cons` and `prod`, or an error if a guest
/// made them impossible.
fn outstanding(cons: u32, prod: u32) -> Result<usize, ConnError> {
    let n = prod.wrapping_sub(cons) as usize;
    if n > XENSTORE_RING_SIZE {
        return Err(ConnError::RingIndex);
    }
    Ok(n)
}

/// A byte count within one ring as an index step.
fn ring_len(n: usize) -> u32 {
    u32::try_from(n.min(XENSTORE_RING_SIZE)).unwrap_or(0)
}

/// Copies `len` bytes from the ring at `base` starting at index `idx`.
fn ring_read(page: &(impl SharedPage + ?Sized), base: usize, idx: u32, out: &mut [u8]) {
    let start = idx as usize & (XENSTORE_RING_SIZE - 1);
    let first = out.len().min(XENSTORE_RING_SIZE - start);
    page.load(base + start, &mut out[..first]);
    page.load(base, &mut out[first..]);
}

/// Copies `data` into the ring at `base` starting at index `idx`.
fn ring_write(page: &mut (impl SharedPage + ?Sized), base: usize, idx: u32, data: &[u8]) {
    let start = idx as usize & (XENSTORE_RING_SIZE - 1);
    let first = data.len().min(XENSTORE_RING_SIZE - start);
    page.store(base + start, &data[..first]);
    page.store(base, &data[first..]);
}

/// One pass over `domid`'s page: takes the guest's requests into the
/// store, then writes as many replies and events as the response ring
/// has room for. Returns whether anything moved (dom0 then notifies the
/// domain's event channel). A bad index or a protocol violation is
/// written to `error`, drops the connection, and is returned; dom0 stops
/// serving that ring.
pub fn service(
    store: &mut Store,
    domid: crate::DomId,
    page: &mut (impl SharedPage + ?Sized),
) -> Result<bool, ConnError> {
    let id = ConnId::Domain(domid);
    let result = service_once(store, id, page);
    let code = match result {
        Err(ConnError::PayloadTooLong) => XENSTORE_ERROR_PROTO,
        Err(ConnError::RingIndex) => XENSTORE_ERROR_RINGIDX,
        _ => return result,
    };
    page.store_u32(ERROR, code);
    store.disconnect(id);
    result
}

fn service_once(
    store: &mut Store,
    id: ConnId,
    page: &mut (impl SharedPage + ?Sized),
) -> Result<bool, ConnError> {
    if !store.is_connected(id) {
        return Err(ConnError::NoConnection);
    }
    let mut moved = false;
    // Bounded, though a guest may keep producing while we read: dom0
    // services each ring again on its next event, round-robin.
    for _ in 0..SERVICE_ROUNDS_MAX {
        let cons = page.load_u32(REQ_CONS);
        let prod = page.load_u32(REQ_PROD);
        let mut req = Vec::from([0u8; XENSTORE_RING_SIZE]);
        req.truncate(outstanding(cons, prod)?);
        ring_read(page, REQ_OFFSET, cons, &mut req);
        let taken = store.feed(id, &req)?;
        page.store_u32(REQ_CONS, cons.wrapping_add(ring_len(taken)));

        let rsp_cons = page.load_u32(RSP_CONS);
        let rsp_prod = page.load_u32(RSP_PROD);
        let free = XENSTORE_RING_SIZE - outstanding(rsp_cons, rsp_prod)?;
        let mut out = Vec::from([0u8; XENSTORE_RING_SIZE]);
        let n = store.drain_output(id, &mut out[..free]);
        ring_write(page, RSP_OFFSET, rsp_prod, &out[..n]);
        page.store_u32(RSP_PROD, rsp_prod.wrapping_add(ring_len(n)));

        if taken == 0 && n == 0 {
            break;
        }
        moved = true;
    }
    Ok(moved)
}
