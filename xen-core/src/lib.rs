//! xen-core: the hypervisor. Portable logic here is host-tested; `arch`
//! exists only in the bare-metal build.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(target_os = "none")]
pub mod arch;
pub mod boot_domains;
pub mod boot_info;
pub mod calendar;
pub mod domain;
pub mod event;
pub mod grant;
pub mod guest_mem;
pub mod hypercall;
pub mod logger;
pub mod mm;
pub mod paging;
pub mod ratelimit;
pub mod sched;
pub mod time;
pub mod vmexit;
