//! XenStore's portable logic for dom0: Xen's wire protocol
//! (`io/xs_wire.h`), the node tree with Xen's permission model, watches,
//! transactions, xenstored's quotas, and the store side of the shared
//! ring. dom0 owns one [`Store`], feeds it each connection's requests
//! (a domain's ring through [`ring::service`], its own clients through
//! [`Store::feed`]) and sends back what it produces.
//!
//! Semantics follow xenstored (`tools/xenstored/`), with the differences
//! listed in `docs/abi.md`.

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
