//! Hypervisor discovery through CPUID, `xen/include/public/arch-x86/cpuid.h`,
//! and the hypercall page a guest requests through an MSR.
//!
//! Leaves (base `0x40000000`; Xen may also appear at `+0x100` steps):
//! - base+0: EAX = last Xen leaf, EBX/ECX/EDX = "XenVMMXenVMM".
//! - base+1: EAX = `major << 16 | minor`.
//! - base+2: EAX = number of hypercall pages (1), EBX = MSR to write the
//!   hypercall page's guest physical address to ([`HYPERCALL_PAGE_MSR`]).
//! - base+3: TSC mode and frequency (sub-leaves 0-2).
//! - base+4: HVM features (`XEN_HVM_CPUID_*`), EBX = vCPU id, ECX = domid.

/// `XEN_CPUID_FIRST_LEAF`.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// `XEN_CPUID_MAX_NUM_LEAVES`: Xen leaves available after the first.
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;
/// `XEN_CPUID_SIGNATURE_EBX`: "XenV".
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// `XEN_CPUID_SIGNATURE_ECX`: "MMXe".
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// `XEN_CPUID_SIGNATURE_EDX`: "nVMM".
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;

/// `XEN_CPUID_LEAF(i)`.
pub const fn xen_cpuid_leaf(i: u32) -> u32 {
    XEN_CPUID_FIRST_LEAF + i
}

/// `XEN_HVM_CPUID_APIC_ACCESS_VIRT`.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// `XEN_HVM_CPUID_X2APIC_VIRT`.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// `XEN_HVM_CPUID_IOMMU_MAPPINGS`.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// `XEN_HVM_CPUID_VCPU_ID_PRESENT`: EBX of leaf base+4 is the vCPU id.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// `XEN_HVM_CPUID_DOMID_PRESENT`: ECX of leaf base+4 is the domid.
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// `XEN_HVM_CPUID_EXT_DEST_ID`.
pub const XEN_HVM_CPUID_EXT_DEST_ID: u32 = 1 << 5;
/// `XEN_HVM_CPUID_UPCALL_VECTOR`: `HVMOP_set_evtchn_upcall_vector` works.
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

/// MSR whose write of a page-aligned guest physical address fills that
/// page with hypercall stubs (the value Xen reports in EBX of base+2).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// Bytes per hypercall stub: hypercall `n` is at offset `n * 32`.
pub const HYPERCALL_PAGE_ENTRY_SIZE: usize = 32;

/// The hypercall page Xen writes for an AMD SVM guest: stub `n` is
/// `mov $n, %eax; vmmcall; ret`, the `iret` stub is `ud2` (not usable from
/// HVM), and every other byte is `int3`.
pub fn hypercall_page() -> [u8; super::PAGE_SIZE] {
    let mut page = [0xcc_u8; super::PAGE_SIZE];
    for (nr, stub) in (0_u32..).zip(page.chunks_exact_mut(HYPERCALL_PAGE_ENTRY_SIZE)) {
        if u64::from(nr) == super::hypercall::IRET {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8; // mov imm32, %eax
        stub[1..5].copy_from_slice(&nr.to_le_bytes());
        stub[5..8].copy_from_slice(&[0x0f, 0x01, 0xd9]); // vmmcall
        stub[8] = 0xc3; // ret
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_xenvmmxenvmm() {
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&XEN_CPUID_SIGNATURE_EBX.to_le_bytes());
        sig[4..8].copy_from_slice(&XEN_CPUID_SIGNATURE_ECX.to_le_bytes());
        sig[8..].copy_from_slice(&XEN_CPUID_SIGNATURE_EDX.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
    }

    #[test]
    fn hypercall_page_stubs() {
        let page = hypercall_page();
        let at = |nr: u64| {
            &page[crate::convert::usize_from_u64(nr) * HYPERCALL_PAGE_ENTRY_SIZE..]
                [..HYPERCALL_PAGE_ENTRY_SIZE]
        };
        let sched = at(super::super::hypercall::SCHED_OP);
        assert_eq!(
            &sched[..10],
            &[0xb8, 29, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3, 0xcc]
        );
        assert_eq!(&at(super::super::hypercall::IRET)[..3], &[0x0f, 0x0b, 0xcc]);
    }
}
