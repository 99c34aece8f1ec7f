//! xen-core: the hypervisor. Portable logic here is host-tested; `arch`
//! exists only in the bare-metal build.
#![cfg_attr(not(test), no_std)]
// Unsafe code lives in `arch` only (hardware, page tables, the VMRUN
// stub); portable code, which handles guest input, cannot opt out.
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(target_os = "none")]
// The one exception: port and MSR access, page tables and the world switch
// need raw pointers and inline assembly; each block has a `// SAFETY:`.
#[allow(unsafe_code)]
pub mod arch;
pub mod boot_domains;
pub mod boot_info;
pub mod calendar;
pub mod domain;
// A reader section's `&mut Domain` from the shared domain table: the
// one `unsafe` outside `arch` besides `mm::shared_frame` (each block
// carries its SAFETY argument).
#[allow(unsafe_code)]
pub mod domain_cell;
pub mod event;
pub mod grant;
pub mod guest_mem;
pub mod hypercall;
pub mod irq;
pub mod logger;
pub mod mm;
pub mod paging;
pub mod pci;
pub mod platform;
pub mod ratelimit;
pub mod sched;
pub mod ticket;
pub mod time;
pub mod vlapic;
pub mod vmexit;
