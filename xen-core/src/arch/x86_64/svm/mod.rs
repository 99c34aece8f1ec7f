//! AMD SVM: running vCPUs in guest mode with nested paging.
//!
//! - [`enable_this_cpu`]: per-pCPU checks (SVM, NPT, VM_CR.SVMDIS), EFER.SVME,
//!   the host save area.
//! - [`SvmVcpu`]: a vCPU's VMCB, entry state, intercepts, and the run
//!   loop that hands exits to the portable dispatcher (`crate::vmexit`).
//!
//! Source: AMD64 APM vol. 2, chapter 15 (Secure Virtual Machine) and
//! appendix B (VMCB layout). QEMU 7.2 TCG quirks: docs/development.md, "QEMU and SVM facts".

mod bitmaps;
mod extstate;
mod guest;
mod pcpu;
mod vcpu;
mod vmcb;
mod vmrun;

pub use bitmaps::init_dom0_iopm;
pub use extstate::save_this_pcpu;
pub use guest::SvmGuest;
pub use pcpu::{enable_this_cpu, enable_this_cpu_or_die, host_cpuid, SvmError, SvmFeatures};
pub use vcpu::SvmVcpu;
