//! The subset of Xen's public guest ABI (`xen/include/public/`) that
//! xen-core implements for x86_64 PVH guests. Numbers, layouts, flags and
//! error codes are Xen's (checked against Xen 4.17's headers; we claim
//! 4.19, whose layouts for this subset are the same); `docs/abi.md` lists
//! where behaviour differs.
//!
//! Every struct here is `#[repr(C)]` with any C padding spelled out as a
//! `pad*` field, and derives zerocopy's `FromBytes`/`IntoBytes`, so it can
//! be copied from and to guest memory without `unsafe`. Guest pointers
//! (`XEN_GUEST_HANDLE`) are `u64` guest virtual addresses.

pub mod blkif;
pub mod console;
pub mod console_io;
pub mod cpuid;
pub mod ctl;
pub mod domid;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod netif;
pub mod physdev;
pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod vcpu;
pub mod version;
pub mod vm_assist;
pub mod xs_wire;

/// Size of a guest frame (`XEN_PAGE_SIZE`): 4 KiB on x86.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`] (`XEN_PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
