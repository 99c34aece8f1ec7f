//! The hypercall ABI shared by xen-core, the toolstack and guests.
//!
//! - [`xen`]: the Xen guest-ABI subset (Xen's numbers and layouts).
//! - [`control`]: our versioned control ABI (dom0 only).
//! - [`bundle`]: the boot bundle format (built by xtask, read by xen-core).
//! - [`debug_exit`]: the status codes xen-core ends a QEMU run with.
//! - [`machine`]: the devices xtask's QEMU machine gives dom0.
//! - [`svm_exit`]: SVM exit codes and their names.
//! - [`convert`]: lossless integer conversions for 64-bit targets.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod bundle;
pub mod control;
#[cfg(target_pointer_width = "64")]
pub mod convert;
pub mod debug_exit;
pub mod machine;
pub mod svm_exit;
pub mod xen;
