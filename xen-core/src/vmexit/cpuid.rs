//! What a guest's CPUID returns: the host's answer, filtered, plus Xen's
//! hypervisor leaves.
//!
//! Sources: Xen's `xen/include/public/arch-x86/cpuid.h` (leaves
//! 0x40000000..0x40000004) and the AMD64 APM vol. 3, appendix E (CPUID
//! feature bits).

use abi::xen::cpuid::{
    HYPERCALL_PAGE_MSR, XEN_CPUID_FIRST_LEAF, XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX,
    XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, XEN_HVM_CPUID_DOMID_PRESENT,
    XEN_HVM_CPUID_VCPU_ID_PRESENT,
};
use abi::xen::domid::DomId;
use abi::xen::version::{version_word, XEN_VERSION_MAJOR, XEN_VERSION_MINOR};

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Who is asking: the values leaf 0x40000004 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIdentity {
    /// The calling domain.
    pub domid: DomId,
    /// The calling vCPU's id within its domain.
    pub vcpu_id: u32,
}

/// Leaves reserved for hypervisors: xen-core answers all of them itself.
const HYPERVISOR_LEAVES: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

// Leaf 1 ECX.
const MONITOR: u32 = 1 << 3;
const VMX: u32 = 1 << 5;
const FMA: u32 = 1 << 12;
const X2APIC: u32 = 1 << 21;
const TSC_DEADLINE: u32 = 1 << 24;
const XSAVE: u32 = 1 << 26;
const OSXSAVE: u32 = 1 << 27;
const AVX: u32 = 1 << 28;
const F16C: u32 = 1 << 29;
const HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX (and the same bits of 0x80000001 EDX).
const MCE: u32 = 1 << 7;
const APIC: u32 = 1 << 9;
const MTRR: u32 = 1 << 12;
const MCA: u32 = 1 << 14;
// Leaf 7.0 EBX: AVX2 and the AVX-512 family, which need XSAVE state.
const LEAF7_XSAVE_DEPENDENT: u32 = (1 << 5)
    | (1 << 16)
    | (1 << 17)
    | (1 << 21)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 30)
    | (1 << 31);
// Leaf 0x80000001 ECX.
const SVM: u32 = 1 << 2;

/// The guest's view of CPUID `leaf`/`subleaf`, given the host's answer.
///
/// - 0x40000000..0x4fffffff: Xen's leaves (signature and max leaf
///   0x40000005 as in Xen 4.19, version, hypercall-page MSR, vCPU id and
///   domid); the rest of the range reads as zero.
/// - SVM is hidden (0x80000001 ECX.SVM, leaf 0x8000000A zeroed): guests
///   cannot nest, and SVM instructions raise #UD.
/// - XSAVE and everything built on it is hidden (XCR0 is not switched
///   between domains, so XSETBV is refused), as is MONITOR/MWAIT.
/// - The local APIC (`crate::vlapic`) is advertised with x2APIC and
///   TSC-deadline mode; the initial APIC id is twice the vCPU id, as Xen
///   numbers them (leaf 1 EBX[31:24], leaf 0xB EDX).
/// - Machine check (MCE, MCA) and MTRRs are hidden (leaf 1 and
///   0x80000001 EDX): xen-core has no virtual MCA banks or MTRRs, whose
///   MSRs a guest that sees the bits reads without a fault handler
///   (Linux panics on a #GP from MCG_CAP). Xen emulates both (vMCE, HVM
///   MTRRs); hiding them is the hardware-honest alternative.
/// - The hypervisor-present bit is set.
pub fn guest_cpuid(leaf: u32, subleaf: u32, host: CpuidResult, who: GuestIdentity) -> CpuidResult {
    if HYPERVISOR_LEAVES.contains(&leaf) {
        return xen_leaf(leaf, who);
    }
    let mut r = host;
    match leaf {
        1 => {
            r.ecx &= !(MONITOR | VMX | FMA | XSAVE | OSXSAVE | AVX | F16C);
            r.ecx |= HYPERVISOR | X2APIC | TSC_DEADLINE;
            r.edx = (r.edx & !(MCE | MTRR | MCA)) | APIC;
            r.ebx = (r.ebx & 0x00ff_ffff) | ((apic_id(who) & 0xff) << 24);
        }
        0xb => r.edx = apic_id(who),
        5 | 0xd | 0x8000_000a => r = CpuidResult::default(),
        7 if subleaf == 0 => r.ebx &= !LEAF7_XSAVE_DEPENDENT,
        0x8000_0001 => {
            r.ecx &= !SVM;
            r.edx &= !(MCE | MTRR | MCA);
        }
        _ => {}
    }
    r
}

/// The vCPU's initial APIC id (Xen's `vcpu_id * 2`, as `vlapic` uses).
fn apic_id(who: GuestIdentity) -> u32 {
    who.vcpu_id.wrapping_mul(2)
}

/// Xen's hypervisor leaves (`arch-x86/cpuid.h`).
fn xen_leaf(leaf: u32, who: GuestIdentity) -> CpuidResult {
    let zero = CpuidResult::default();
    match leaf.wrapping_sub(XEN_CPUID_FIRST_LEAF) {
        0 => CpuidResult {
            eax: XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES,
            ebx: XEN_CPUID_SIGNATURE_EBX,
            ecx: XEN_CPUID_SIGNATURE_ECX,
            edx: XEN_CPUID_SIGNATURE_EDX,
        },
        1 => CpuidResult {
            eax: version_word(XEN_VERSION_MAJOR, XEN_VERSION_MINOR),
            ..zero
        },
        // One hypercall page, requested through HYPERCALL_PAGE_MSR.
        2 => CpuidResult {
            eax: 1,
            ebx: HYPERCALL_PAGE_MSR,
            ..zero
        },
        4 => CpuidResult {
            eax: XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT,
            ebx: who.vcpu_id,
            ecx: u32::from(who.domid),
            edx: 0,
        },
        // base+3 (TSC): no information offered. base+5 (PV-only
        // parameters) is zero for HVM/PVH guests, as in Xen.
        _ => zero,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: GuestIdentity = GuestIdentity {
        domid: 3,
        vcpu_id: 1,
    };
    const ONES: CpuidResult = CpuidResult {
        eax: !0,
        ebx: !0,
        ecx: !0,
        edx: !0,
    };

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn xen_signature_and_max_leaf() {
        let r = guest_cpuid(0x4000_0000, 0, ONES, WHO);
        assert_eq!(r.eax, 0x4000_0005);
        assert_eq!(bytes(&[r.ebx, r.ecx, r.edx]), b"XenVMMXenVMM");
    }

    #[test]
    fn xen_version_is_4_19() {
        assert_eq!(
            guest_cpuid(0x4000_0001, 0, ONES, WHO),
            CpuidResult {
                eax: 0x0004_0013,
                ..Default::default()
            }
        );
    }

    #[test]
    fn hypercall_page_msr_is_advertised() {
        let r = guest_cpuid(0x4000_0002, 0, ONES, WHO);
        assert_eq!((r.eax, r.ebx, r.ecx, r.edx), (1, 0x4000_0000, 0, 0));
    }

    #[test]
    fn ids_leaf_reports_vcpu_and_domain() {
        let r = guest_cpuid(0x4000_0004, 0, ONES, WHO);
        assert_eq!((r.eax, r.ebx, r.ecx), (0x18, 1, 3));
    }

    #[test]
    fn other_hypervisor_leaves_are_zero() {
        for leaf in [
            0x4000_0003,
            0x4000_0005,
            0x4000_0006,
            0x4000_0100,
            0x4fff_ffff,
        ] {
            assert_eq!(
                guest_cpuid(leaf, 0, ONES, WHO),
                CpuidResult::default(),
                "leaf {leaf:#x}"
            );
        }
    }

    #[test]
    fn svm_is_hidden() {
        assert_eq!(guest_cpuid(0x8000_0001, 0, ONES, WHO).ecx & SVM, 0);
        assert_eq!(
            guest_cpuid(0x8000_000a, 0, ONES, WHO),
            CpuidResult::default()
        );
    }

    #[test]
    fn leaf1_marks_the_hypervisor_and_hides_what_is_not_virtualised() {
        let r = guest_cpuid(
            1,
            0,
            CpuidResult {
                ebx: 0x0700_0800,
                ..ONES
            },
            WHO,
        );
        assert_ne!(r.ecx & HYPERVISOR, 0);
        assert_eq!(r.ecx & (XSAVE | OSXSAVE | AVX | MONITOR), 0);
        assert_eq!(r.ebx, 0x0200_0800, "initial APIC id = 2 * vCPU id");
        assert_eq!(r.edx & (MCE | MCA | MTRR), 0);
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, ONES, WHO).edx & (MCE | MCA | MTRR),
            0
        );
        let r = guest_cpuid(1, 0, CpuidResult::default(), WHO);
        assert_eq!(r.ecx, HYPERVISOR | X2APIC | TSC_DEADLINE);
        assert_eq!(r.edx, APIC);
        assert_eq!(guest_cpuid(0xb, 0, ONES, WHO).edx, 2);
    }

    #[test]
    fn other_leaves_pass_through() {
        let host = CpuidResult {
            eax: 0xd,
            ebx: 0x6874_7541,
            ecx: 0x444d_4163,
            edx: 0x6974_6e65,
        };
        assert_eq!(guest_cpuid(0, 0, host, WHO), host);
        assert_eq!(guest_cpuid(7, 1, ONES, WHO), ONES);
        assert_eq!(guest_cpuid(7, 0, ONES, WHO).ebx & (1 << 5), 0);
    }
}
