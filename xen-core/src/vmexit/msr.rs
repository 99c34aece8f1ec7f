//! The MSR allow-list: the only MSRs a guest may read or write. Every
//! RDMSR/WRMSR exits (the MSR permission map is all ones); anything not
//! listed here, and any invalid value, is answered with #GP(0) as a CPU
//! would.
//!
//! Sources: AMD64 APM vol. 2, §3.1.7 (EFER), §6.1.1 (STAR/LSTAR/CSTAR/
//! SFMASK), §7.8 (PAT types); Xen's `arch-x86/cpuid.h` (hypercall-page
//! MSR at the base in leaf 0x40000002, value = GPA | page index).

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
    /// Xen's hypercall-page MSR (0x4000_0000): write-only.
    XenHypercallPage,
}

/// The allow-list, with each MSR's index.
const ALLOW_LIST: [(u32, GuestMsr); 13] = [
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
    /// The MSR is write-only.
    WriteOnly,
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
            GuestMsr::XenHypercallPage => Err(MsrFault::WriteOnly),
            GuestMsr::Efer => Ok(stored & !efer::SVME),
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
            GuestMsr::Star | GuestMsr::Sfmask | GuestMsr::SysenterCs => value,
        };
        Ok(MsrWrite::Store(store))
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
    let top = (address as i64) >> 47;
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
            0x10,
            0x1b,
            0xc001_0114,
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
    fn hypercall_page_msr_is_write_only_with_index_zero() {
        let msr = GuestMsr::XenHypercallPage;
        assert_eq!(msr.read(0), Err(MsrFault::WriteOnly));
        assert_eq!(
            msr.write(0x5000, 0, 0),
            Ok(MsrWrite::HypercallPage { gpa: 0x5000 })
        );
        assert_eq!(
            msr.write(0x5001, 0, 0),
            Err(MsrFault::BadHypercallPageIndex)
        );
    }
}
