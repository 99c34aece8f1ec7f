//! The MSR allow-list: the only MSRs a guest may read or write. Every
//! RDMSR/WRMSR exits (the MSR permission map is all ones); anything not
//! listed here, and any invalid value, is answered with #GP(0) as a CPU
//! would.
//!
//! Beyond the registers a 64-bit guest needs, the list gives the answers
//! Xen gives an HVM/PVH guest on AMD (`guest_rdmsr`/`guest_wrmsr` in
//! xen/arch/x86/msr.c, `hvm_msr_read_intercept` in hvm.c,
//! `svm_msr_read_intercept` in svm/svm.c) for the MSRs guests touch
//! without checking CPUID first: DEBUGCTL and the LBR registers, TSC,
//! the microcode revision, and the AMD configuration MSRs that read as
//! constants. `docs/architecture.md` ("Per-vCPU state") has the table.
//!
//! Sources: AMD64 APM vol. 2, §3.1.7 (EFER), §6.1.1 (STAR/LSTAR/CSTAR/
//! SFMASK), §7.8 (PAT types), §13.1.1 (DebugCtl, LBR MSRs); Xen's
//! `arch-x86/cpuid.h` (hypercall-page MSR at the base in leaf
//! 0x40000002, value = GPA | page index).

use abi::xen::cpuid::HYPERCALL_PAGE_MSR;

/// An MSR on the allow-list. Each is backed by a VMCB save-area field
/// (loaded by VMRUN or VMLOAD), except the write-only Xen MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMsr {
    /// EFER (0xC000_0080): SCE, LME, LMA, NXE are the guest's; SVME is
    /// always set underneath (VMRUN requires it) and hidden from reads.
    Efer,
    /// STAR (0xC000_0081): SYSCALL/SYSRET selectors and legacy EIP.
    Star,
    /// LSTAR (0xC000_0082): 64-bit SYSCALL target.
    Lstar,
    /// CSTAR (0xC000_0083): compatibility-mode SYSCALL target.
    Cstar,
    /// SFMASK (0xC000_0084): RFLAGS bits SYSCALL clears.
    Sfmask,
    /// FS.base (0xC000_0100).
    FsBase,
    /// GS.base (0xC000_0101).
    GsBase,
    /// KernelGSbase (0xC000_0102), swapped in by SWAPGS.
    KernelGsBase,
    /// SYSENTER_CS (0x174).
    SysenterCs,
    /// SYSENTER_ESP (0x175).
    SysenterEsp,
    /// SYSENTER_EIP (0x176).
    SysenterEip,
    /// PAT (0x277): the guest's G_PAT under nested paging.
    Pat,
    /// Xen's hypercall-page MSR (0x4000_0000): a write fills the page,
    /// a read returns 0 (Xen's `guest_rdmsr_xen`).
    XenHypercallPage,
    /// DEBUGCTL (0x1D9): LBR and BTF are accepted and read back; they
    /// have no effect, as in Xen on a CPU without LBR virtualisation.
    DebugCtl,
    /// LastBranchFromIP (0x1DB), kept in the VMCB as Xen's SVM does.
    LastBranchFromIp,
    /// LastBranchToIP (0x1DC).
    LastBranchToIp,
    /// LastExceptionFromIP (0x1DD).
    LastExceptionFromIp,
    /// LastExceptionToIP (0x1DE).
    LastExceptionToIp,
    /// TSC (0x10): reads the guest's TSC (host TSC + TSC offset).
    /// Writes are refused (Xen moves the guest's TSC; xen-core's pvclock
    /// assumes the offset never changes).
    Tsc,
    /// PATCH_LEVEL (0x8B): the host's microcode revision, read-only on
    /// AMD (Xen forwards it likewise).
    MicrocodeRevision,
    /// An MSR that reads as a constant (see [`FixedMsr`]).
    Fixed(FixedMsr),
}

/// An MSR Xen answers with a constant on AMD, and what writes do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMsr {
    /// The value every read returns.
    pub value: u64,
    /// What a write does.
    pub writes: FixedWrite,
}

/// Writes to a [`FixedMsr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedWrite {
    /// Accepted and dropped.
    Discard,
    /// #GP.
    Refuse,
    /// 0 is accepted and dropped, anything else is #GP.
    OnlyZero,
}

const fn fixed(value: u64, writes: FixedWrite) -> GuestMsr {
    GuestMsr::Fixed(FixedMsr { value, writes })
}

/// DEBUGCTL.LBR: record last branches.
pub const DEBUGCTL_LBR: u64 = 1 << 0;
/// DEBUGCTL.BTF: single-step on branches.
pub const DEBUGCTL_BTF: u64 = 1 << 1;
/// DE_CFG bit 1: LFENCE is dispatch-serialising (Xen always reports it).
const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;

/// The allow-list, with each MSR's index.
const ALLOW_LIST: [(u32, GuestMsr); 32] = [
    (0xc000_0080, GuestMsr::Efer),
    (0xc000_0081, GuestMsr::Star),
    (0xc000_0082, GuestMsr::Lstar),
    (0xc000_0083, GuestMsr::Cstar),
    (0xc000_0084, GuestMsr::Sfmask),
    (0xc000_0100, GuestMsr::FsBase),
    (0xc000_0101, GuestMsr::GsBase),
    (0xc000_0102, GuestMsr::KernelGsBase),
    (0x174, GuestMsr::SysenterCs),
    (0x175, GuestMsr::SysenterEsp),
    (0x176, GuestMsr::SysenterEip),
    (0x277, GuestMsr::Pat),
    (HYPERCALL_PAGE_MSR, GuestMsr::XenHypercallPage),
    (0x1d9, GuestMsr::DebugCtl),
    (0x1db, GuestMsr::LastBranchFromIp),
    (0x1dc, GuestMsr::LastBranchToIp),
    (0x1dd, GuestMsr::LastExceptionFromIp),
    (0x1de, GuestMsr::LastExceptionToIp),
    (0x10, GuestMsr::Tsc),
    (0x8b, GuestMsr::MicrocodeRevision),
    // EBC_FREQUENCY_ID: Intel-only, read as 0 (svm.c).
    (0x2c, fixed(0, FixedWrite::Refuse)),
    // PLATFORM_INFO: no CPUID faulting is offered (msr.c).
    (0xce, fixed(0, FixedWrite::Refuse)),
    // MISC_FEATURES_ENABLES: no feature to enable (msr.c).
    (0x140, fixed(0, FixedWrite::OnlyZero)),
    // SYSCFG, TOP_MEM1, TOP_MEM2, NB_CFG, VM_CR, EX_CFG: 0, writes
    // dropped (svm.c, hvm.c).
    (0xc001_0010, fixed(0, FixedWrite::Discard)),
    (0xc001_001a, fixed(0, FixedWrite::Discard)),
    (0xc001_001d, fixed(0, FixedWrite::Discard)),
    (0xc001_001f, fixed(0, FixedWrite::Discard)),
    (0xc001_0114, fixed(0, FixedWrite::Discard)),
    (0xc001_102c, fixed(0, FixedWrite::Discard)),
    // HWCR: 0, writes refused (msr.c, svm.c).
    (0xc001_0015, fixed(0, FixedWrite::Refuse)),
    // ENABLE_C1E: 0, writes refused (hvm.c, svm.c).
    (0xc001_0055, fixed(0, FixedWrite::Refuse)),
    // DE_CFG: LFENCE serialising, writes dropped (msr.c).
    (
        0xc001_1029,
        fixed(DE_CFG_LFENCE_SERIALISE, FixedWrite::Discard),
    ),
];

/// EFER bits (APM vol. 2, §3.1.7).
pub mod efer {
    /// System-call extensions.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active (set by the CPU).
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// Secure virtual machine enable: always set in a guest's VMCB.
    pub const SVME: u64 = 1 << 12;
}

/// CR0.PG: paging enabled.
const CR0_PG: u64 = 1 << 31;

/// Why an MSR access is refused; the guest gets #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrFault {
    /// The MSR is not on the allow-list.
    NotAllowed,
    /// The MSR is read-only.
    ReadOnly,
    /// A reserved bit is set.
    ReservedBits,
    /// An address that is not canonical.
    NonCanonical,
    /// A PAT entry with a reserved memory type.
    InvalidPatType,
    /// EFER.LME changed while paging is on.
    LongModeWithPaging,
    /// Hypercall-page MSR: only page index 0 exists.
    BadHypercallPageIndex,
    /// Hypercall-page MSR: the GPA is not the domain's writable RAM.
    HypercallPageNotRam,
}

/// What a permitted WRMSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrWrite {
    /// Store this value in the MSR's VMCB field.
    Store(u64),
    /// Fill the guest page at `gpa` with hypercall stubs.
    HypercallPage { gpa: u64 },
    /// Accept the write and drop the value.
    Discard,
}

impl GuestMsr {
    /// The allow-listed MSR with index `index`.
    pub fn from_index(index: u32) -> Result<GuestMsr, MsrFault> {
        ALLOW_LIST
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, msr)| *msr)
            .ok_or(MsrFault::NotAllowed)
    }

    /// The value RDMSR returns, given the MSR's stored value.
    pub fn read(self, stored: u64) -> Result<u64, MsrFault> {
        match self {
            GuestMsr::XenHypercallPage => Ok(0),
            GuestMsr::Efer => Ok(stored & !efer::SVME),
            GuestMsr::Fixed(f) => Ok(f.value),
            _ => Ok(stored),
        }
    }

    /// Checks a WRMSR of `value`, given the stored value and guest CR0.
    pub fn write(self, value: u64, stored: u64, cr0: u64) -> Result<MsrWrite, MsrFault> {
        let store = match self {
            GuestMsr::Efer => write_efer(value, stored, cr0)?,
            GuestMsr::Lstar
            | GuestMsr::Cstar
            | GuestMsr::FsBase
            | GuestMsr::GsBase
            | GuestMsr::KernelGsBase
            | GuestMsr::SysenterEsp
            | GuestMsr::SysenterEip => canonical(value)?,
            GuestMsr::Sfmask if value >> 32 != 0 => return Err(MsrFault::ReservedBits),
            GuestMsr::Pat => valid_pat(value)?,
            GuestMsr::XenHypercallPage => {
                if value & 0xfff != 0 {
                    return Err(MsrFault::BadHypercallPageIndex);
                }
                return Ok(MsrWrite::HypercallPage { gpa: value });
            }
            GuestMsr::DebugCtl if value & !(DEBUGCTL_LBR | DEBUGCTL_BTF) != 0 => {
                return Err(MsrFault::ReservedBits)
            }
            GuestMsr::Tsc | GuestMsr::MicrocodeRevision => return Err(MsrFault::ReadOnly),
            GuestMsr::Fixed(f) => return f.write(value),
            GuestMsr::Star
            | GuestMsr::Sfmask
            | GuestMsr::SysenterCs
            | GuestMsr::DebugCtl
            | GuestMsr::LastBranchFromIp
            | GuestMsr::LastBranchToIp
            | GuestMsr::LastExceptionFromIp
            | GuestMsr::LastExceptionToIp => value,
        };
        Ok(MsrWrite::Store(store))
    }
}

impl FixedMsr {
    fn write(self, value: u64) -> Result<MsrWrite, MsrFault> {
        match self.writes {
            FixedWrite::Discard => Ok(MsrWrite::Discard),
            FixedWrite::OnlyZero if value == 0 => Ok(MsrWrite::Discard),
            FixedWrite::OnlyZero => Err(MsrFault::ReservedBits),
            FixedWrite::Refuse => Err(MsrFault::ReadOnly),
        }
    }
}

fn write_efer(value: u64, stored: u64, cr0: u64) -> Result<u64, MsrFault> {
    use efer::*;
    if value & !(SCE | LME | LMA | NXE) != 0 {
        return Err(MsrFault::ReservedBits);
    }
    if cr0 & CR0_PG != 0 && (value ^ stored) & LME != 0 {
        return Err(MsrFault::LongModeWithPaging);
    }
    // LMA belongs to the CPU: keep the current one whatever was written.
    Ok((value & (SCE | LME | NXE)) | (stored & LMA) | SVME)
}

fn canonical(address: u64) -> Result<u64, MsrFault> {
    // 48-bit virtual addresses: bits 63..47 are copies of bit 47.
    let top = address.cast_signed() >> 47;
    if top == 0 || top == -1 {
        Ok(address)
    } else {
        Err(MsrFault::NonCanonical)
    }
}

fn valid_pat(value: u64) -> Result<u64, MsrFault> {
    // Types 2 and 3 and everything above 7 are reserved.
    if value
        .to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4..=7))
    {
        Ok(value)
    } else {
        Err(MsrFault::InvalidPatType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use efer::*;

    #[test]
    fn only_listed_msrs_are_allowed() {
        assert_eq!(GuestMsr::from_index(0xc000_0080), Ok(GuestMsr::Efer));
        assert_eq!(
            GuestMsr::from_index(0x4000_0000),
            Ok(GuestMsr::XenHypercallPage)
        );
        for denied in [
            0x11,
            0x1b,
            0xc001_0118,
            0xc001_0117,
            0x4000_0001,
            0xffff_ffff,
        ] {
            assert_eq!(
                GuestMsr::from_index(denied),
                Err(MsrFault::NotAllowed),
                "{denied:#x}"
            );
        }
    }

    #[test]
    fn efer_hides_and_keeps_svme() {
        assert_eq!(GuestMsr::Efer.read(SVME | LME | LMA), Ok(LME | LMA));
        assert_eq!(
            GuestMsr::Efer.write(LME | NXE, SVME, 0),
            Ok(MsrWrite::Store(SVME | LME | NXE))
        );
    }

    #[test]
    fn efer_refuses_reserved_bits_and_svme() {
        assert_eq!(
            GuestMsr::Efer.write(SVME, SVME, 0),
            Err(MsrFault::ReservedBits)
        );
        assert_eq!(
            GuestMsr::Efer.write(1 << 63, SVME, 0),
            Err(MsrFault::ReservedBits)
        );
    }

    #[test]
    fn efer_lme_is_frozen_while_paging() {
        let paging = CR0_PG | 1;
        assert_eq!(
            GuestMsr::Efer.write(LME, SVME, paging),
            Err(MsrFault::LongModeWithPaging)
        );
        let stored = SVME | LME | LMA;
        assert_eq!(
            GuestMsr::Efer.write(LME | LMA | NXE, stored, paging),
            Ok(MsrWrite::Store(stored | NXE))
        );
        assert_eq!(
            GuestMsr::Efer.write(LME, SVME | LME | LMA, paging),
            Ok(MsrWrite::Store(SVME | LME | LMA))
        );
    }

    #[test]
    fn address_msrs_must_be_canonical() {
        assert_eq!(
            GuestMsr::Lstar.write(0xffff_8000_0000_1000, 0, 0),
            Ok(MsrWrite::Store(0xffff_8000_0000_1000))
        );
        assert_eq!(
            GuestMsr::Lstar.write(0x0000_7fff_ffff_ffff, 0, 0),
            Ok(MsrWrite::Store(0x7fff_ffff_ffff))
        );
        assert_eq!(
            GuestMsr::FsBase.write(0x0000_8000_0000_0000, 0, 0),
            Err(MsrFault::NonCanonical)
        );
        assert_eq!(
            GuestMsr::GsBase.write(0x8000_0000_0000_0000, 0, 0),
            Err(MsrFault::NonCanonical)
        );
    }

    #[test]
    fn pat_types_are_checked() {
        let default_pat = 0x0007_0406_0007_0406;
        assert_eq!(
            GuestMsr::Pat.write(default_pat, 0, 0),
            Ok(MsrWrite::Store(default_pat))
        );
        assert_eq!(
            GuestMsr::Pat.write(0x02, 0, 0),
            Err(MsrFault::InvalidPatType)
        );
        assert_eq!(
            GuestMsr::Pat.write(0x08 << 56, 0, 0),
            Err(MsrFault::InvalidPatType)
        );
    }

    #[test]
    fn sfmask_upper_half_is_reserved() {
        assert_eq!(
            GuestMsr::Sfmask.write(0x4700, 0, 0),
            Ok(MsrWrite::Store(0x4700))
        );
        assert_eq!(
            GuestMsr::Sfmask.write(1 << 32, 0, 0),
            Err(MsrFault::ReservedBits)
        );
    }

    #[test]
    fn hypercall_page_msr_reads_zero_and_takes_index_zero() {
        let msr = GuestMsr::XenHypercallPage;
        assert_eq!(msr.read(0x5000), Ok(0));
        assert_eq!(
            msr.write(0x5000, 0, 0),
            Ok(MsrWrite::HypercallPage { gpa: 0x5000 })
        );
        assert_eq!(
            msr.write(0x5001, 0, 0),
            Err(MsrFault::BadHypercallPageIndex)
        );
    }

    #[test]
    fn debugctl_reads_zero_and_takes_lbr_and_btf() {
        let msr = GuestMsr::from_index(0x1d9).unwrap();
        assert_eq!(msr.read(0), Ok(0));
        assert_eq!(
            msr.write(DEBUGCTL_LBR | DEBUGCTL_BTF, 0, 0),
            Ok(MsrWrite::Store(3))
        );
        for bad in [1 << 2, 1 << 6, 1 << 63] {
            assert_eq!(msr.write(bad, 0, 0), Err(MsrFault::ReservedBits));
        }
        for lbr in 0x1db..=0x1de {
            let msr = GuestMsr::from_index(lbr).unwrap();
            assert_eq!(msr.write(0x1234, 0, 0), Ok(MsrWrite::Store(0x1234)));
        }
    }

    #[test]
    fn xen_constant_msrs() {
        let read = |i| GuestMsr::from_index(i).and_then(|m| m.read(0xdead));
        let write = |i, v| GuestMsr::from_index(i).and_then(|m| m.write(v, 0, 0));
        assert_eq!(read(0xc001_1029), Ok(DE_CFG_LFENCE_SERIALISE));
        assert_eq!(write(0xc001_1029, 0), Ok(MsrWrite::Discard));
        assert_eq!(read(0xc001_0015), Ok(0));
        assert_eq!(write(0xc001_0015, 0), Err(MsrFault::ReadOnly));
        assert_eq!(read(0xc001_0114), Ok(0));
        assert_eq!(write(0xc001_0114, 1 << 4), Ok(MsrWrite::Discard));
        assert_eq!(write(0x140, 0), Ok(MsrWrite::Discard));
        assert_eq!(write(0x140, 1), Err(MsrFault::ReservedBits));
        assert_eq!(write(0x10, 0), Err(MsrFault::ReadOnly));
        assert_eq!(write(0x8b, 0), Err(MsrFault::ReadOnly));
        assert_eq!(read(0x10), Ok(0xdead), "the guest's TSC, as stored");
    }

    #[test]
    fn every_index_is_listed_once() {
        for (i, (index, _)) in ALLOW_LIST.iter().enumerate() {
            assert!(
                ALLOW_LIST[i + 1..].iter().all(|(other, _)| other != index),
                "{index:#x}"
            );
        }
    }
}
