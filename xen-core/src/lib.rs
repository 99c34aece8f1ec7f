//! xen-core: the hypervisor. Portable logic here is host-tested; `arch`
//! exists only in the bare-metal build.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
pub mod arch;
pub mod mm;
