//! x86_64 bare-metal support: boot, CPU tables, devices, SVM.
//! Only built for the `x86_64-unknown-none` target.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod ecam;
pub mod exceptions;
pub mod fatal;
pub mod firmware;
pub mod heap;
pub mod ioapic;
pub mod machine;
pub mod mem;
pub mod pic;
pub mod prt;
pub mod rtc;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod svm;
pub mod tsc;

pub use apic::cpu_idle_until;
