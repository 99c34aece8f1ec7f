//! Finding Xen through CPUID (`xen/include/public/arch-x86/cpuid.h`): the
//! leaves start at 0x40000000 or, when another hypervisor interface sits
//! there (viridian), at a later multiple of 0x100.

use abi::xen::cpuid::{
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX,
};

/// Distance between candidate base leaves.
const BASE_STRIDE: u32 = 0x100;
/// Candidate base leaves scanned (0x40000000..0x40010000, as Linux and XTF).
const MAX_BASES: u32 = 0x100;

/// What Xen's CPUID leaves say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCpuid {
    /// The base leaf ("XenVMMXenVMM" in EBX, ECX, EDX).
    pub base: u32,
    /// Last Xen leaf (EAX of the base leaf).
    pub max_leaf: u32,
    /// Major version (leaf base+1, EAX 31:16).
    pub major: u16,
    /// Minor version (leaf base+1, EAX 15:0).
    pub minor: u16,
    /// Number of hypercall pages (leaf base+2, EAX).
    pub hypercall_pages: u32,
    /// MSR to write the hypercall page's GPA to (leaf base+2, EBX).
    pub hypercall_msr: u32,
}

/// Scans the candidate base leaves with `cpuid(leaf) -> [eax, ebx, ecx,
/// edx]`; `None` without a Xen signature whose leaves reach base+2.
pub fn find_xen(mut cpuid: impl FnMut(u32) -> [u32; 4]) -> Option<XenCpuid> {
    (0..MAX_BASES)
        .map(|i| XEN_CPUID_FIRST_LEAF + i * BASE_STRIDE)
        .find_map(|base| {
            let [max_leaf, ebx, ecx, edx] = cpuid(base);
            let signed = [ebx, ecx, edx]
                == [
                    XEN_CPUID_SIGNATURE_EBX,
                    XEN_CPUID_SIGNATURE_ECX,
                    XEN_CPUID_SIGNATURE_EDX,
                ];
            if !signed || max_leaf < base + 2 {
                return None;
            }
            let [version, ..] = cpuid(base + 1);
            let [hypercall_pages, hypercall_msr, ..] = cpuid(base + 2);
            Some(XenCpuid {
                base,
                max_leaf,
                major: (version >> 16) as u16,
                minor: (version & 0xffff) as u16,
                hypercall_pages,
                hypercall_msr,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const XEN_SIG: [u32; 3] = [
        XEN_CPUID_SIGNATURE_EBX,
        XEN_CPUID_SIGNATURE_ECX,
        XEN_CPUID_SIGNATURE_EDX,
    ];
    /// "Microsoft Hv", what Hyper-V (or Xen's viridian) puts at 0x40000000.
    const HV_SIG: [u32; 3] = [0x7263_694d, 0x666f_736f, 0x7648_2074];

    /// A CPU whose hypervisor leaves are `leaves` (base, signature,
    /// max_leaf); Xen's version 4.19 and MSR 0x40000000 after each Xen base.
    fn cpu(leaves: &[(u32, [u32; 3], u32)]) -> impl FnMut(u32) -> [u32; 4] + '_ {
        move |leaf| {
            for &(base, [b, c, d], max) in leaves {
                if leaf == base {
                    return [max, b, c, d];
                }
                if sig_is_xen([b, c, d]) && leaf == base + 1 {
                    return [0x0004_0013, 0, 0, 0];
                }
                if sig_is_xen([b, c, d]) && leaf == base + 2 {
                    return [1, 0x4000_0000, 0, 0];
                }
            }
            [0; 4]
        }
    }

    fn sig_is_xen(sig: [u32; 3]) -> bool {
        sig == XEN_SIG
    }

    #[test]
    fn finds_xen_at_the_first_base() {
        let found = find_xen(cpu(&[(0x4000_0000, XEN_SIG, 0x4000_0005)])).unwrap();
        assert_eq!(
            found,
            XenCpuid {
                base: 0x4000_0000,
                max_leaf: 0x4000_0005,
                major: 4,
                minor: 19,
                hypercall_pages: 1,
                hypercall_msr: 0x4000_0000
            }
        );
    }

    #[test]
    fn finds_xen_behind_viridian() {
        let leaves = [
            (0x4000_0000, HV_SIG, 0x4000_0006),
            (0x4000_0100, XEN_SIG, 0x4000_0104),
        ];
        assert_eq!(find_xen(cpu(&leaves)).map(|x| x.base), Some(0x4000_0100));
    }

    #[test]
    fn no_xen_without_signature_or_leaves() {
        assert_eq!(find_xen(cpu(&[])), None);
        assert_eq!(find_xen(cpu(&[(0x4000_0000, HV_SIG, 0x4000_0006)])), None);
        // Signature, but the hypercall-page leaf is missing.
        assert_eq!(find_xen(cpu(&[(0x4000_0000, XEN_SIG, 0x4000_0001)])), None);
    }
}
