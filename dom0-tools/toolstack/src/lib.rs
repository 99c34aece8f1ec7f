//! The dom0 toolstack library: creates domains from PVH kernels over the
//! hypervisor's control operations, all or nothing ([`create_domain`]),
//! and lists them ([`list_domains`]). It talks to the hypervisor only
//! through the [`Hypervisor`] trait: hypercalls in dom0
//! (`dom0-tools/dom0/src/hv.rs`), a fake in the tests.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod create;
mod error;
mod hypervisor;
mod list;
mod loader;
mod stream;
#[cfg(test)]
mod tests;

pub use create::{build_domain, create_domain, pvh_vcpu_context, undo, DomainSpec, SchedSpec};
pub use error::{CreateError, Op};
pub use hypervisor::Hypervisor;
pub use list::list_domains;
pub use stream::{StreamSpec, StreamedDomain};
