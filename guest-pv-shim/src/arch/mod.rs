//! Everything that touches the CPU or raw memory: the PVH entry
//! (`entry.S`), exceptions, the event upcall, hypercalls, the shared-info
//! page, grant-table frames and other shared pages, the PV console page. The only
//! module of the shim with `unsafe`; each block says why it holds.

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

pub mod blkfront;
pub mod console_front;
pub mod control;
pub mod cpu;
pub mod entry;
pub mod evtchn;
pub mod foreign;
pub mod fpu;
pub mod gnttab;
pub mod hypercall;
pub mod lapic;
pub mod netfront;
pub mod phys;
pub mod physdev;
pub mod probe;
pub mod reservation;
pub mod shared_info;
pub mod shared_page;
pub mod sipi;
pub mod smp;
pub mod trap;
pub mod uart;
pub mod upcall;
pub mod xenbus_front;
