//! Setting a vCPU's initial register state before the first unpause.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ControlHeader;
use crate::xen::domid::DomId;

/// The 32-bit protected-mode register set a PVH vCPU starts with, 120
/// bytes; the same layout as Xen's `struct vcpu_hvm_x86_32`
/// (`xen/include/public/hvm/hvm_vcpu.h`). Segment attributes (`*_ar`)
/// are in VMCB format: type, S, DPL, P in bits 0-7, AVL, L, D/B, G in
/// bits 8-11. Bases and limits are bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuHvmX86_32 {
    /// EAX.
    pub eax: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
    /// EBX (PVH: guest physical address of `hvm_start_info`).
    pub ebx: u32,
    /// ESP.
    pub esp: u32,
    /// EBP.
    pub ebp: u32,
    /// ESI.
    pub esi: u32,
    /// EDI.
    pub edi: u32,
    /// EIP: the entry point.
    pub eip: u32,
    /// EFLAGS (bit 1 is forced on).
    pub eflags: u32,
    /// CR0 (PVH: PE set, PG clear).
    pub cr0: u32,
    /// CR3.
    pub cr3: u32,
    /// CR4.
    pub cr4: u32,
    /// Padding; zero.
    pub pad1: u32,
    /// EFER; only NXE, LME, LMA may be set.
    pub efer: u64,
    /// CS base.
    pub cs_base: u32,
    /// DS base.
    pub ds_base: u32,
    /// SS base.
    pub ss_base: u32,
    /// ES base.
    pub es_base: u32,
    /// TR base.
    pub tr_base: u32,
    /// CS limit.
    pub cs_limit: u32,
    /// DS limit.
    pub ds_limit: u32,
    /// SS limit.
    pub ss_limit: u32,
    /// ES limit.
    pub es_limit: u32,
    /// TR limit.
    pub tr_limit: u32,
    /// CS attributes.
    pub cs_ar: u16,
    /// DS attributes.
    pub ds_ar: u16,
    /// SS attributes.
    pub ss_ar: u16,
    /// ES attributes.
    pub es_ar: u16,
    /// TR attributes.
    pub tr_ar: u16,
    /// Padding; zero.
    pub pad2: [u16; 3],
}

impl VcpuHvmX86_32 {
    /// The registers at PVH entry (Xen `docs/misc/pvh.pandoc`), with the
    /// values Xen's libxc gives (`xc_dom_x86.c`, `vcpu_hvm`): 32-bit
    /// protected mode, paging off, flat 4 GiB code and data segments
    /// (0xc9b code, 0xc93 data), a busy 32-bit TSS (0x8b, limit 0x67),
    /// EFLAGS 0x2, EIP = `eip`, EBX = `ebx` (the start info's GPA for a
    /// kernel's first vCPU).
    pub fn pvh_entry(eip: u32, ebx: u32) -> Self {
        const CR0_PE: u32 = 1 << 0;
        const CR0_ET: u32 = 1 << 4;
        const EFLAGS_FIXED: u32 = 1 << 1;
        const FLAT_CODE_AR: u16 = 0xc9b;
        const FLAT_DATA_AR: u16 = 0xc93;
        const TSS32_BUSY_AR: u16 = 0x8b;
        const TSS32_LIMIT: u32 = 0x67;
        Self {
            ebx,
            eip,
            eflags: EFLAGS_FIXED,
            cr0: CR0_PE | CR0_ET,
            cs_limit: u32::MAX,
            ds_limit: u32::MAX,
            ss_limit: u32::MAX,
            es_limit: u32::MAX,
            tr_limit: TSS32_LIMIT,
            cs_ar: FLAT_CODE_AR,
            ds_ar: FLAT_DATA_AR,
            ss_ar: FLAT_DATA_AR,
            es_ar: FLAT_DATA_AR,
            tr_ar: TSS32_BUSY_AR,
            ..Self::default()
        }
    }
}

/// Set-vCPU-context request, 136 bytes. Allowed only while the domain is
/// paused and the vCPU has not run. Errors: `-ESRCH`, `-ENOENT` (no such
/// vCPU), `-EBUSY` (domain not paused or vCPU already started),
/// `-EINVAL` (inconsistent register state).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SetVcpuContextRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Target domain.
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: u16,
    /// vCPU index, below the domain's `nr_vcpus`.
    pub vcpu: u32,
    /// The register state.
    pub regs: VcpuHvmX86_32,
}

impl SetVcpuContextRequest {
    /// A request starting `domid`'s `vcpu` from `regs`.
    pub const fn new(domid: DomId, vcpu: u32, regs: VcpuHvmX86_32) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: 0,
            vcpu,
            regs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn register_set_matches_hvm_vcpu_h() {
        assert_eq!(size_of::<VcpuHvmX86_32>(), 120);
        assert_eq!(offset_of!(VcpuHvmX86_32, efer), 56);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_base), 64);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_limit), 84);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_ar), 104);
        assert_eq!(offset_of!(VcpuHvmX86_32, pad2), 114);
    }
}
