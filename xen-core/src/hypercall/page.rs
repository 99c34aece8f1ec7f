//! The hypercall page: a guest writes a GPA to the MSR CPUID leaf
//! 0x40000002 names (`abi::xen::cpuid::HYPERCALL_PAGE_MSR`), and xen-core
//! fills that page with Xen's stubs (`abi::xen::cpuid::hypercall_page`).

use abi::xen::cpuid::hypercall_page;

use crate::domain::Domain;
use crate::guest_mem::GuestPhys;
use crate::mm::{Gfn, PhysMem, PAGE_SHIFT};
use crate::vmexit::HypercallPageError;

/// Fills the page at `gpa` (its page offset is ignored; the MSR layer
/// refuses a non-zero page index) with the hypercall stubs. The page must
/// be the domain's own writable RAM; anything else is the guest's error
/// and it gets #GP (`vmexit`'s MSR path injects it on `Err`). This is the
/// body of `VcpuEnv::write_hypercall_page`.
pub fn write_hypercall_page<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    gpa: u64,
) -> Result<(), HypercallPageError> {
    let gfn = Gfn(gpa >> PAGE_SHIFT);
    if !domain.owns_writable(&*mem, gfn) {
        return Err(HypercallPageError);
    }
    GuestPhys::new(domain.p2m(), mem)
        .write(gfn.gpa(), &hypercall_page())
        .map_err(|_| HypercallPageError)
}
