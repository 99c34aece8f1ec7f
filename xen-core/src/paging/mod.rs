//! Paging structures the hypervisor builds or reads, kept portable so they
//! run under `cargo test` on a simulated memory.
//!
//! - [`npt`]: a domain's nested page table (its p2m), AMD APM vol 2 §15.25.
//! - [`guest_walk`]: the guest's own page-table walk (GVA → GPA).
//! - [`asid`]: the TLB tags (ASIDs) each pCPU hands its vCPUs.

#![forbid(unsafe_code)]

pub mod asid;
pub mod guest_walk;
pub mod npt;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
