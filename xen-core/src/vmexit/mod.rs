//! VM exits, the portable part: decoding exit codes, advancing RIP past
//! intercepted instructions, and the policies for what a guest sees —
//! CPUID (Xen's leaves, no SVM), the MSR allow-list, port I/O, injected
//! events. The arch layer (`arch::x86_64::svm`) runs the guest and calls
//! [`handle_exit`]; everything here is host-tested.
#![forbid(unsafe_code)]

pub mod cpuid;
pub mod cr;
pub mod cr_write;
mod dispatch;
pub mod event;
mod exit;
pub mod insn;
pub mod io;
mod lapic;
pub mod mmio;
pub mod msr;
mod unclaimed;

pub use dispatch::{
    completes_alone, handle_exit, ExitAction, Gpr, GuestState, HypercallPageError, VcpuEnv,
};
pub use exit::{code, code_name, MsrDirection, RefusedInstruction, VmExit};
pub use lapic::X2APIC_OFFERED;
