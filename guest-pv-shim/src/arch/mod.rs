//! Everything that touches the CPU or raw memory: the PVH entry
//! (`entry.S`), exceptions, hypercalls, the shared-info page. The only
//! module of the shim with `unsafe`; each block says why it holds.

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

pub mod cpu;
pub mod entry;
pub mod hypercall;
pub mod phys;
pub mod shared_info;
pub mod trap;
