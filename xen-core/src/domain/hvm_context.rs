//! `VCPUOP_initialise` for a PVH/HVM vCPU: Xen's `vcpu_hvm_context`
//! (`xen/include/public/hvm/hvm_vcpu.h`) checked and turned into the
//! [`VcpuEntryState`] the vCPU starts from.
//!
//! The checks are those of Xen's `arch_set_info_hvm_guest` and
//! `check_segment` (`xen/arch/x86/hvm/domain.c`), each failing `-EINVAL`:
//! - `pad` not zero, `mode` neither `VCPU_HVM_MODE_32B` nor `_64B`;
//! - 32-bit: the pads not zero; a segment with attribute bits 12-15 set;
//!   CS, SS or TR null; TR not a (busy) 32-bit TSS; CS, SS, DS or ES a
//!   system segment or not present (DS/ES may be null); CS not code; SS
//!   code or read-only; DS/ES execute-only code; EIP above CS's limit
//!   (scaled by G as Xen scales it); SS.DPL ≠ CS.DPL; DS/ES.DPL > CS.DPL;
//!   EFER.LMA without LME. Present segments get their accessed bit, TR
//!   its busy bit; selectors are 0 (the structure has none);
//! - 64-bit: RIP not canonical; CR0.PG, CR4.PAE or EFER.LME clear. The
//!   segments are Xen's: flat 64-bit CS, flat data DS/ES/SS, busy TSS;
//! - both: EFER.LME gets LMA; CR4 bits the guest's CPUID does not offer
//!   (Xen's `hvm_cr4_guest_valid_bits`); EFER bits other than SCE, LME,
//!   LMA and NXE (Xen's `hvm_efer_valid`: SVME needs nested
//!   virtualisation, FFXSE and AutoIBRS are not offered here).
//!
//! RFLAGS keeps only its architectural bits, with bit 1 set, as Xen's.
//!
//! Beyond Xen: Xen loads CR0 and CR3 unchecked and a state the CPU
//! refuses fails at the vCPU's first VMRUN, crashing the domain. Here the
//! VMRUN consistency checks of AMD APM vol. 2 §15.5.1 that these fields
//! can break are `-EINVAL` up front: CR0 bits 63:32, CR0.NW without CD,
//! CR0.PG without PE, CR3 bits 63:52, and with EFER.LME and CR0.PG:
//! CR4.PAE clear or CS.L and CS.D both set.

use abi::control::VcpuHvmX86_32;
use abi::xen::errno::Errno;
use abi::xen::vcpu::{VcpuHvmContext, VcpuHvmX86_64, VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B};

use super::vcpu::{EntryGprs, SegmentState, VcpuEntryState};
use crate::vmexit::cr::{cr0, cr4};
use crate::vmexit::msr::efer;

/// Architectural RFLAGS bits (Xen's `X86_EFLAGS_ALL`): CF, PF, AF, ZF,
/// SF, TF, IF, DF, OF, IOPL, NT, RF, VM, AC, VIF, VIP, ID.
const RFLAGS_ALL: u64 = 0x003f_7fd5;
/// Bit 1 of RFLAGS, always set (Xen's `X86_EFLAGS_MBS`).
const RFLAGS_MBS: u64 = 1 << 1;
/// EFER bits a guest may start with.
const EFER_ALLOWED: u64 = efer::SCE | efer::LME | efer::LMA | efer::NXE;
/// CR3 bits 63:52 must be zero (APM vol. 2, §15.5.1).
const CR3_MBZ_SHIFT: u32 = 52;
/// Virtual-address bits of a 4-level canonical address.
const VADDR_BITS: u32 = 48;

/// Segment attributes (VMCB layout, APM vol. 2 §15.5.1).
const AR_ACCESSED: u16 = 1 << 0;
const AR_RW: u16 = 1 << 1;
const AR_CODE: u16 = 1 << 3;
const AR_TYPE: u16 = 0xf;
const AR_S: u16 = 1 << 4;
const AR_DPL_SHIFT: u16 = 5;
const AR_P: u16 = 1 << 7;
const AR_L: u16 = 1 << 9;
const AR_DB: u16 = 1 << 10;
const AR_G: u16 = 1 << 11;
const AR_PAD_SHIFT: u16 = 12;
const TSS_BUSY: u16 = 1 << 1;
const TYPE_TSS32_BUSY: u16 = 0xb;

/// Xen's 64-bit-mode segments: 64-bit code, flat read/write data, a busy
/// TSS of 0x68 bytes.
const CS_64: u16 = 0xa9b;
const DATA_FLAT: u16 = 0xc93;
const TSS_64: u16 = 0x8b;
const TSS_LIMIT: u32 = 0x67;

/// The segment registers Xen's `check_segment` tells apart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegKind {
    /// CS.
    Code,
    /// SS.
    Stack,
    /// DS or ES.
    Data,
    /// TR.
    Task,
}

/// The entry state `ctx` describes for a guest whose CPUID offers the
/// CR4 bits `cr4_valid`, or `-EINVAL` (the module doc lists why).
pub fn entry_state(ctx: &VcpuHvmContext, cr4_valid: u64) -> Result<VcpuEntryState, Errno> {
    if ctx.pad != 0 {
        return Err(Errno::EINVAL);
    }
    let mut entry = match ctx.mode {
        VCPU_HVM_MODE_32B => entry_32(&ctx.regs_32())?,
        VCPU_HVM_MODE_64B => entry_64(&ctx.regs_64())?,
        _ => return Err(Errno::EINVAL),
    };
    if entry.efer & efer::LME != 0 {
        entry.efer |= efer::LMA;
    }
    check_control(&entry, cr4_valid)?;
    Ok(entry)
}

fn entry_32(r: &VcpuHvmX86_32) -> Result<VcpuEntryState, Errno> {
    if r.pad1 != 0 || r.pad2 != [0; 3] {
        return Err(Errno::EINVAL);
    }
    let seg = |kind, ar: u16, base: u32, limit| {
        let ar = if kind == SegKind::Task {
            ar | TSS_BUSY
        } else if ar & AR_P != 0 {
            ar | AR_ACCESSED
        } else {
            ar
        };
        check_segment(kind, ar).map(|()| SegmentState {
            selector: 0,
            attrib: ar,
            limit,
            base: base.into(),
        })
    };
    let cs = seg(SegKind::Code, r.cs_ar, r.cs_base, r.cs_limit)?;
    let ds = seg(SegKind::Data, r.ds_ar, r.ds_base, r.ds_limit)?;
    let ss = seg(SegKind::Stack, r.ss_ar, r.ss_base, r.ss_limit)?;
    let es = seg(SegKind::Data, r.es_ar, r.es_base, r.es_limit)?;
    let tr = seg(SegKind::Task, r.tr_ar, r.tr_base, r.tr_limit)?;
    // Xen scales the limit by G once more, in 32 bits.
    let limit = if cs.attrib & AR_G != 0 {
        cs.limit.wrapping_shl(12) | 0xfff
    } else {
        cs.limit
    };
    let dpl = |s: &SegmentState| (s.attrib >> AR_DPL_SHIFT) & 3;
    let present = |s: &SegmentState| s.attrib & AR_P != 0;
    if r.eip > limit
        || dpl(&ss) != dpl(&cs)
        || (present(&ds) && dpl(&ds) > dpl(&cs))
        || (present(&es) && dpl(&es) > dpl(&cs))
        || (r.efer & efer::LMA != 0 && r.efer & efer::LME == 0)
    {
        return Err(Errno::EINVAL);
    }
    Ok(VcpuEntryState {
        rip: r.eip.into(),
        gprs: EntryGprs {
            rax: r.eax.into(),
            rbx: r.ebx.into(),
            rcx: r.ecx.into(),
            rdx: r.edx.into(),
            rsp: r.esp.into(),
            rbp: r.ebp.into(),
            rsi: r.esi.into(),
            rdi: r.edi.into(),
        },
        rflags: (u64::from(r.eflags) & RFLAGS_ALL) | RFLAGS_MBS,
        cr0: r.cr0.into(),
        cr3: r.cr3.into(),
        cr4: r.cr4.into(),
        efer: r.efer,
        cs,
        ds,
        es,
        ss,
        tr,
    })
}

fn entry_64(r: &VcpuHvmX86_64) -> Result<VcpuEntryState, Errno> {
    let canonical = (r.rip.cast_signed() << (64 - VADDR_BITS)) >> (64 - VADDR_BITS);
    if canonical.cast_unsigned() != r.rip
        || r.cr0 & cr0::PG == 0
        || r.cr4 & cr4::PAE == 0
        || r.efer & efer::LME == 0
    {
        return Err(Errno::EINVAL);
    }
    let flat = |attrib| SegmentState {
        selector: 0,
        attrib,
        limit: u32::MAX,
        base: 0,
    };
    Ok(VcpuEntryState {
        rip: r.rip,
        gprs: EntryGprs {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsp: r.rsp,
            rbp: r.rbp,
            rsi: r.rsi,
            rdi: r.rdi,
        },
        rflags: (r.rflags & RFLAGS_ALL) | RFLAGS_MBS,
        cr0: r.cr0,
        cr3: r.cr3,
        cr4: r.cr4,
        efer: r.efer,
        cs: flat(CS_64),
        ds: flat(DATA_FLAT),
        es: flat(DATA_FLAT),
        ss: flat(DATA_FLAT),
        tr: SegmentState {
            attrib: TSS_64,
            limit: TSS_LIMIT,
            ..flat(0)
        },
    })
}

/// Xen's `check_segment`: whether attributes `ar` (accessed or busy bit
/// already applied) suit the segment register `kind`.
pub(crate) fn check_segment(kind: SegKind, ar: u16) -> Result<(), Errno> {
    if ar >> AR_PAD_SHIFT != 0 {
        return Err(Errno::EINVAL);
    }
    if ar == 0 {
        return match kind {
            SegKind::Data => Ok(()),
            _ => Err(Errno::EINVAL),
        };
    }
    let system_ok = match kind {
        SegKind::Task => ar & AR_S == 0 && ar & AR_TYPE == TYPE_TSS32_BUSY,
        _ => ar & AR_S != 0,
    };
    let code = ar & AR_CODE != 0;
    let rw = ar & AR_RW != 0;
    let type_ok = match kind {
        SegKind::Code => code,
        SegKind::Stack => !code && rw,
        SegKind::Data => !code || rw,
        SegKind::Task => true,
    };
    if system_ok && ar & AR_P != 0 && type_ok {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// CR0, CR3, CR4 and EFER: Xen's CR4 and EFER checks and the VMRUN
/// consistency checks (module doc).
fn check_control(e: &VcpuEntryState, cr4_valid: u64) -> Result<(), Errno> {
    let long_paging = e.efer & efer::LME != 0 && e.cr0 & cr0::PG != 0;
    let cs_l_and_d = e.cs.attrib & (AR_L | AR_DB) == AR_L | AR_DB;
    let bad = e.cr4 & !cr4_valid != 0
        || e.efer & !EFER_ALLOWED != 0
        || e.cr0 >> 32 != 0
        || e.cr0 & (cr0::NW | cr0::CD) == cr0::NW
        || e.cr0 & (cr0::PG | cr0::PE) == cr0::PG
        || e.cr3 >> CR3_MBZ_SHIFT != 0
        || (long_paging && (e.cr4 & cr4::PAE == 0 || cs_l_and_d));
    if bad {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
