//! XenStore's portable logic for dom0: Xen's wire protocol
//! (`io/xs_wire.h`), the node tree with Xen's permission model, watches,
//! transactions, xenstored's quotas, and the store side of the shared
//! ring. dom0 owns one [`Store`], feeds it each connection's requests
//! (a domain's ring through [`ring::service`], its own clients through
//! [`Store::feed`]) and sends back what it produces.
//!
//! Semantics follow xenstored (`tools/xenstored/`), with the differences
//! listed in `docs/abi.md`.
//!
//! dom0's loop, in short:
//!
//! ```
//! use xenstore::wire::{encode_message, MsgType};
//! use xenstore::{ring, ConnId, Effect, Store};
//!
//! let mut store = Store::new();
//! // The toolstack is a local, privileged client; it introduces domain 1.
//! store.connect_local(0);
//! let toolstack = ConnId::Local(0);
//! let introduce = encode_message(MsgType::Introduce, 1, 0, b"1\04660\05\0");
//! store.feed(toolstack, &introduce).unwrap();
//! let mut reply = [0u8; 64];
//! let n = store.drain_output(toolstack, &mut reply);
//! assert_eq!(&reply[n - 3..n], b"OK\0");
//! // dom0 maps the ring page and binds the port the effect names...
//! assert_eq!(store.take_effects(), [Effect::Introduced { domid: 1, gfn: 4660, port: 5 }]);
//! let mut page = vec![0u8; 4096];
//! ring::init_page(&mut page[..]);
//! // ...and on each event from the domain services its ring, notifying
//! // it back when something moved.
//! let moved = ring::service(&mut store, 1, &mut page[..]).unwrap();
//! assert!(!moved);
//! ```

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod db;
pub mod ops;
pub mod path;
pub mod perms;
pub mod quota;
pub mod ring;
mod store;
pub mod watch;
pub mod wire;

#[cfg(test)]
mod tests;

pub use store::{ConnError, ConnId, Effect, Store};

/// A domain id (`domid_t`).
pub type DomId = u16;
