//! `SET_VCPU_CONTEXT`: `SetVcpuContextRequest`: the 32-bit register set
//! a vCPU of a paused domain starts from (Xen's `vcpu_hvm_x86_32`), then
//! the vCPU is up ([`HypercallOutcome::VcpuStarted`]).
//!
//! Errors: `-ESRCH`; `-ENOENT` (no such vCPU); `-EBUSY` (the domain is not
//! paused, or the vCPU is up already: a context is set once, before the
//! vCPU first runs); `-EINVAL` for a register set that is not a PVH
//! entry state. The checks are Xen's `arch_set_info_hvm_guest` and
//! `check_segment` for a 32-bit start (present segments get their
//! accessed bit, TR its busy bit, then: attribute bits 12-15 clear; CS a
//! code segment, SS a writable data segment, DS/ES readable; TR a busy
//! 32-bit TSS; SS.DPL = CS.DPL; EFER.LMA only with LME; pads zero), plus
//! what PVH entry (Xen's `docs/misc/pvh.pandoc`) and our entry state
//! ([`VcpuEntryState`]) require:
//! - CR0.PE set, CR0.PG clear, CR0.NW only with CD, no undefined CR0 bit;
//!   CR3 0 (paging is off); CR4 within VME..OSXMMEXCPT; EFER within
//!   NXE | LME (LMA needs paging);
//! - EFLAGS without reserved bits or VM (bit 1 is set for the guest);
//! - CS, DS, ES, SS flat (base 0, limit 4 GiB − 1, bytes) with DPL 0, CS
//!   32-bit (D set, L clear); DS, ES and SS identical (the entry state
//!   has one data segment);
//! - every general register but EBX 0 (PVH defines only EBX).
//!
//! Selectors are not in Xen's layout; the vCPU gets those of
//! [`VcpuEntryState::pvh`] (CS 0x08, data 0x10, TR 0x18), as boot-time
//! domains do.

use abi::control::{SetVcpuContextRequest, VcpuHvmX86_32};
use abi::xen::errno::Errno;

use super::Dom0;
use crate::domain::hvm_context::{check_segment, SegKind};
use crate::domain::vcpu::{SegmentState, VcpuEntryState, VcpuRunState};
use crate::domain::DomainState;
use crate::hypercall::{Ctx, HypercallEnv, HypercallOutcome};
use crate::mm::{FramePool, PhysMem};

const CR0_PE: u32 = 1 << 0;
const CR0_ET: u32 = 1 << 4;
const CR0_NW: u32 = 1 << 29;
const CR0_CD: u32 = 1 << 30;
const CR0_PG: u32 = 1 << 31;
/// PE, MP, EM, TS, ET, NE, WP, AM, NW, CD, PG.
const CR0_DEFINED: u32 = 0x3f | (1 << 16) | (1 << 18) | CR0_NW | CR0_CD | CR0_PG;
/// VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT.
const CR4_VALID: u32 = 0x7ff;
const EFER_LME: u64 = 1 << 8;
const EFER_NXE: u64 = 1 << 11;
/// Bit 1 is always set.
const EFLAGS_FIXED: u32 = 1 << 1;
/// Bits 3, 5, 15 and 22-31.
const EFLAGS_RESERVED: u32 = (1 << 3) | (1 << 5) | (1 << 15) | 0xffc0_0000;
const EFLAGS_VM: u32 = 1 << 17;

/// Segment attribute bits (VMCB layout, AMD APM vol. 2 §15.5.1).
const AR_TYPE_ACCESSED: u16 = 1 << 0;
const AR_DPL_MASK: u16 = 3 << 5;
const AR_P: u16 = 1 << 7;
const AR_L: u16 = 1 << 9;
const AR_DB: u16 = 1 << 10;
const TSS_BUSY: u16 = 1 << 1;

pub(super) fn set<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
) -> Result<HypercallOutcome, Errno> {
    let req: SetVcpuContextRequest = ctx.read(request)?;
    req.header.check()?;
    if req.pad != 0 {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get_mut(req.domid).ok_or(Errno::ESRCH)?;
    let paused = domain.state() == DomainState::Paused;
    let vcpu = domain.vcpu_mut(req.vcpu).ok_or(Errno::ENOENT)?;
    if !paused || vcpu.run_state() != VcpuRunState::Down {
        return Err(Errno::EBUSY);
    }
    vcpu.start(entry_state(&req.regs)?);
    Ok(HypercallOutcome::VcpuStarted {
        domid: req.domid,
        vcpu_id: req.vcpu,
    })
}

/// The entry state `r` describes, if it is a valid PVH entry (`-EINVAL`).
fn entry_state(r: &VcpuHvmX86_32) -> Result<VcpuEntryState, Errno> {
    let others = [r.eax, r.ecx, r.edx, r.esp, r.ebp, r.esi, r.edi, r.cr3];
    if r.pad1 != 0 || r.pad2 != [0; 3] || others.iter().any(|v| *v != 0) {
        return Err(Errno::EINVAL);
    }
    check_control(r)?;
    let cs = segment(SegKind::Code, r.cs_ar, r.cs_base, r.cs_limit)?;
    let ss = segment(SegKind::Stack, r.ss_ar, r.ss_base, r.ss_limit)?;
    let ds = segment(SegKind::Data, r.ds_ar, r.ds_base, r.ds_limit)?;
    let es = segment(SegKind::Data, r.es_ar, r.es_base, r.es_limit)?;
    let tr = segment(SegKind::Task, r.tr_ar, r.tr_base, r.tr_limit)?;
    if cs.attrib & (AR_DB | AR_L) != AR_DB || ds != ss || es != ss {
        return Err(Errno::EINVAL);
    }
    let pvh = VcpuEntryState::pvh(r.eip, r.ebx);
    let with_selector = |s: SegmentState, of: SegmentState| SegmentState {
        selector: of.selector,
        ..s
    };
    Ok(VcpuEntryState {
        rflags: (r.eflags | EFLAGS_FIXED).into(),
        cr0: (r.cr0 | CR0_ET).into(),
        cr4: r.cr4.into(),
        efer: r.efer,
        cs: with_selector(cs, pvh.cs),
        ds: with_selector(ss, pvh.ds),
        es: with_selector(ss, pvh.es),
        ss: with_selector(ss, pvh.ss),
        tr: with_selector(tr, pvh.tr),
        ..pvh
    })
}

/// CR0, CR3, CR4, EFER and EFLAGS of a PVH entry.
fn check_control(r: &VcpuHvmX86_32) -> Result<(), Errno> {
    let cr0_ok = r.cr0 & CR0_PE != 0
        && r.cr0 & CR0_PG == 0
        && r.cr0 & !CR0_DEFINED == 0
        && (r.cr0 & CR0_NW == 0 || r.cr0 & CR0_CD != 0);
    let cr4_ok = r.cr4 & !CR4_VALID == 0;
    let efer_ok = r.efer & !(EFER_NXE | EFER_LME) == 0;
    let eflags_ok = r.eflags & (EFLAGS_RESERVED | EFLAGS_VM) == 0;
    if cr0_ok && cr4_ok && efer_ok && eflags_ok {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// One segment, checked as Xen's `check_segment` and for PVH flatness.
fn segment(kind: SegKind, attrib: u16, base: u32, limit: u32) -> Result<SegmentState, Errno> {
    let mut ar = attrib;
    if ar & AR_P != 0 {
        ar |= if kind == SegKind::Task {
            TSS_BUSY
        } else {
            AR_TYPE_ACCESSED
        };
    }
    check_segment(kind, ar)?;
    let flat = kind == SegKind::Task || (base == 0 && limit == u32::MAX && ar & AR_DPL_MASK == 0);
    if ar & AR_P == 0 || !flat {
        return Err(Errno::EINVAL);
    }
    Ok(SegmentState {
        selector: 0,
        attrib: ar,
        limit,
        base: base.into(),
    })
}
