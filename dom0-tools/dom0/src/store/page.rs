//! A domain's mapped `struct xenstore_domain_interface` as the store
//! crate's [`SharedPage`]: ring bytes through `AtomicU8`s, the indices
//! and fields through `AtomicU32`s with acquire loads and release stores
//! (`io/ring.h`'s barriers: the ring bytes a guest produced are read only
//! after its `req_prod`, ours are visible before our `rsp_prod`).

use core::sync::atomic::Ordering;

use guest_pv_shim::xenbus::ring::XenstoreInterface;
use xenstore::ring::{SharedPage, REQ_OFFSET, RSP_OFFSET, XENSTORE_RING_SIZE};

/// A view of a domain's store page.
pub struct RingPage<'a>(pub &'a XenstoreInterface);

impl RingPage<'_> {
    /// The ring byte at `offset`.
    fn byte(&self, offset: usize) -> Option<&core::sync::atomic::AtomicU8> {
        match offset {
            o if o < RSP_OFFSET => self.0.req.get(o - REQ_OFFSET),
            o if o < RSP_OFFSET + XENSTORE_RING_SIZE => self.0.rsp.get(o - RSP_OFFSET),
            _ => None,
        }
    }
}

impl SharedPage for RingPage<'_> {
    fn load(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self
                .byte(offset + i)
                .map_or(0, |a| a.load(Ordering::Relaxed));
        }
    }

    fn store(&mut self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(a) = self.byte(offset + i) {
                a.store(*b, Ordering::Relaxed);
            }
        }
    }

    fn load_u32(&self, offset: usize) -> u32 {
        self.0
            .field_at(offset)
            .map_or(0, |f| f.load(Ordering::Acquire))
    }

    fn store_u32(&mut self, offset: usize, value: u32) {
        if let Some(f) = self.0.field_at(offset) {
            f.store(value, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::ring::{self, ERROR, REQ_PROD, RSP_PROD};
    use xenstore::wire::{encode_message, MsgType};
    use xenstore::{ConnError, Store};

    fn guest_writes(page: &XenstoreInterface, bytes: &[u8]) {
        let prod = page.req_prod.load(Ordering::Relaxed);
        for (i, b) in bytes.iter().enumerate() {
            let at = (prod as usize + i) % XENSTORE_RING_SIZE;
            page.req[at].store(*b, Ordering::Relaxed);
        }
        page.req_prod.store(
            prod + u32::try_from(bytes.len()).unwrap(),
            Ordering::Release,
        );
    }

    #[test]
    fn a_guest_request_is_answered_through_the_page() {
        let mut store = Store::new();
        store.introduce(3, 0x201, 2).unwrap();
        let page = XenstoreInterface::default();
        ring::init_page(&mut RingPage(&page));
        guest_writes(
            &page,
            &encode_message(MsgType::Read, 5, 0, b"/local/domain/3\0"),
        );
        assert_eq!(ring::service(&mut store, 3, &mut RingPage(&page)), Ok(true));
        let prod = RingPage(&page).load_u32(RSP_PROD) as usize;
        assert!(prod > 16);
        let mut reply = alloc::vec![0u8; prod];
        RingPage(&page).load(RSP_OFFSET, &mut reply);
        assert_eq!(
            u32::from_le_bytes(reply[4..8].try_into().unwrap()),
            5,
            "req_id"
        );
        assert_eq!(
            page.req_cons.load(Ordering::Relaxed),
            page.req_prod.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn corrupted_indices_drop_the_connection_and_say_why() {
        let mut store = Store::new();
        store.introduce(3, 0x201, 2).unwrap();
        let page = XenstoreInterface::default();
        page.req_prod.store(5000, Ordering::Relaxed);
        assert_eq!(
            ring::service(&mut store, 3, &mut RingPage(&page)),
            Err(ConnError::RingIndex)
        );
        assert_ne!(RingPage(&page).load_u32(ERROR), 0);
        assert_eq!(RingPage(&page).load_u32(REQ_PROD), 5000);
    }
}
