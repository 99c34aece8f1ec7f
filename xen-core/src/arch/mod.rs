//! Architecture support, re-exported flat so portable code calls `arch::…`.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
