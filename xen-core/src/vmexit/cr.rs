//! Guest writes to CR0 and CR4. Every MOV to CR0/CR4, CLTS and LMSW
//! exits (CR write intercepts 0 and 4, APM vol. 2, §15.8.1). QEMU 7.2
//! has no decode assists, so the instruction is fetched and decoded here
//! ([`decode`], with iced-x86), and the new value checked as Xen's
//! `hvm_set_cr0` / `hvm_set_cr4` check it (xen/arch/x86/hvm/hvm.c): a bit
//! the guest may not set, or a transition the CPU forbids, gets #GP(0)
//! and the register keeps its value.
//!
//! Sources: AMD64 APM vol. 2, §3.1.1 (CR0), §3.1.3 (CR4), §14.6
//! (activating long mode); Xen's `hvm_cr4_guest_valid_bits`.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Register};

use super::cpuid::CpuidResult;
use super::dispatch::Gpr;
use super::insn::{reg_slot, Segment};
use super::msr::efer;
use crate::paging::guest_walk::GuestPaging;

/// CR0 bits (APM vol. 2, §3.1.1).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
    /// Every bit a guest's MOV to CR0 keeps; the other low 32 bits read
    /// as zero after any load (Xen's `HVM_CR0_GUEST_RESERVED_BITS`).
    pub const GUEST_BITS: u64 = PE | MP | EM | TS | ET | NE | WP | AM | NW | CD | PG;
}

/// CR4 bits (APM vol. 2, §3.1.3; Intel SDM vol. 3, §2.5 for VMXE/SMXE/PKS).
pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const VMXE: u64 = 1 << 13;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    pub const PKE: u64 = 1 << 22;
    pub const CET: u64 = 1 << 23;
    pub const PKS: u64 = 1 << 24;
}

/// Why a CR write is refused; the guest gets #GP(0) and nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrFault {
    /// CR0 bits 63:32 set.
    Cr0UpperBits,
    /// CR0.PG without CR0.PE.
    PagingWithoutProtection,
    /// CR0.NW without CR0.CD.
    NotWriteThroughWithoutCacheDisable,
    /// CR0.PG set with EFER.LME while CR4.PAE is clear.
    LongModeWithoutPae,
    /// CR0.PG cleared while running 64-bit code.
    PagingOffIn64BitMode,
    /// CR0.PG cleared while CR4.PCIDE is set.
    PagingOffWithPcide,
    /// CR4 bits the guest's CPUID does not offer (the set bits).
    Cr4BitsNotOffered(u64),
    /// CR4.PAE cleared while long mode is active.
    PaeOffInLongMode,
    /// CR4.PCIDE set outside long mode, or with CR3[11:0] non-zero.
    PcideNotAllowed,
}

/// The control registers a write leaves, and whether cached guest
/// translations must go (the CPU's own MOV to CR would flush them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrUpdate {
    /// The new CR0, CR3, CR4 and EFER (LMA follows CR0.PG).
    pub regs: GuestPaging,
    /// Flush the guest's TLB before it runs again.
    pub flush_tlb: bool,
}

/// CR4 bits a guest whose CPUID leaves 1 and 7.0 read `leaf1` and
/// `leaf7` may set (Xen's `hvm_cr4_guest_valid_bits`, without nested
/// virtualisation, so never VMXE).
pub fn cr4_guest_valid_bits(leaf1: CpuidResult, leaf7: CpuidResult) -> u64 {
    use cr4::*;
    let edx = |bit: u32| leaf1.edx & (1 << bit) != 0;
    let ecx = |bit: u32| leaf1.ecx & (1 << bit) != 0;
    let l7b = |bit: u32| leaf7.ebx & (1 << bit) != 0;
    let l7c = |bit: u32| leaf7.ecx & (1 << bit) != 0;
    let offered = [
        (edx(1), VME | PVI),
        (edx(4), TSD),
        (edx(2), DE),
        (edx(3), PSE),
        (edx(6), PAE),
        (edx(7) || edx(14), MCE),
        (edx(13), PGE),
        (true, PCE),
        (edx(24), OSFXSR),
        (edx(25), OSXMMEXCPT),
        (l7c(2), UMIP),
        (l7b(0), FSGSBASE),
        (ecx(17), PCIDE),
        (ecx(26), OSXSAVE),
        (l7b(7), SMEP),
        (l7b(20), SMAP),
        (l7c(3), PKE),
        (l7c(7) || leaf7.edx & (1 << 20) != 0, CET),
        (l7c(31), PKS),
    ];
    offered
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
}

/// A MOV to CR0 (or CLTS, LMSW) of `value` while the vCPU's control
/// registers are `old` and it runs 64-bit code if `in_64bit_mode`.
pub fn set_cr0(value: u64, old: GuestPaging, in_64bit_mode: bool) -> Result<CrUpdate, CrFault> {
    use cr0::*;
    if value >> 32 != 0 {
        return Err(CrFault::Cr0UpperBits);
    }
    // ET is reserved and always reads 1.
    let value = (value & GUEST_BITS) | ET;
    if value & (PE | PG) == PG {
        return Err(CrFault::PagingWithoutProtection);
    }
    if value & (NW | CD) == NW {
        return Err(CrFault::NotWriteThroughWithoutCacheDisable);
    }
    let mut regs = old;
    let enabling = value & PG != 0 && old.cr0 & PG == 0;
    let disabling = value & PG == 0 && old.cr0 & PG != 0;
    if enabling && old.efer & efer::LME != 0 {
        if old.cr4 & cr4::PAE == 0 {
            return Err(CrFault::LongModeWithoutPae);
        }
        regs.efer |= efer::LMA;
    }
    if disabling {
        if old.efer & efer::LME != 0 && in_64bit_mode {
            return Err(CrFault::PagingOffIn64BitMode);
        }
        if old.cr4 & cr4::PCIDE != 0 {
            return Err(CrFault::PagingOffWithPcide);
        }
        regs.efer &= !efer::LMA;
    }
    regs.cr0 = value;
    Ok(CrUpdate {
        regs,
        flush_tlb: (old.cr0 ^ value) & (PG | PE | WP) != 0,
    })
}

/// A MOV to CR4 of `value` while the vCPU's control registers are `old`;
/// `valid` from [`cr4_guest_valid_bits`].
pub fn set_cr4(value: u64, valid: u64, old: GuestPaging) -> Result<CrUpdate, CrFault> {
    use cr4::*;
    if value & !valid != 0 {
        return Err(CrFault::Cr4BitsNotOffered(value & !valid));
    }
    let long_mode = old.efer & efer::LMA != 0;
    if value & PAE == 0 && long_mode {
        return Err(CrFault::PaeOffInLongMode);
    }
    if value & PCIDE != 0 && old.cr4 & PCIDE == 0 && (!long_mode || old.cr3 & 0xfff != 0) {
        return Err(CrFault::PcideNotAllowed);
    }
    let changed = old.cr4 ^ value;
    let flush =
        changed & (PSE | PGE | PAE | SMEP) != 0 || (changed & PCIDE != 0 && value & PCIDE == 0);
    Ok(CrUpdate {
        regs: GuestPaging { cr4: value, ..old },
        flush_tlb: flush,
    })
}

/// A decoded instruction that writes a control register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWriteInsn {
    /// MOV CR`cr`, reg: the register's low `width` bytes.
    MovToCr { cr: u8, src: Gpr, width: usize },
    /// CLTS: clears CR0.TS.
    Clts,
    /// LMSW r16.
    LmswRegister(Gpr),
    /// LMSW m16: two bytes at a guest linear address.
    LmswMemory(MemoryOperand),
}

/// A memory operand's parts; the linear address is
/// `segment base + base + index * scale + displacement`, wrapped to the
/// address size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryOperand {
    /// Segment register (ES, CS, SS, DS, FS or GS).
    pub segment: Segment,
    /// Base register, if any (RIP-relative forms have none: iced folds
    /// RIP into the displacement).
    pub base: Option<(Gpr, usize)>,
    /// Index register and scale, if any.
    pub index: Option<(Gpr, usize, u32)>,
    /// Displacement (absolute target for RIP-relative forms).
    pub displacement: u64,
    /// Address-size mask (0xffff, 0xffff_ffff or all ones).
    pub address_mask: u64,
}

/// Why the instruction at the exit could not be taken as a CR write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are no valid instruction (or too few were readable).
    Invalid,
    /// A valid instruction, but not one that writes CR`cr` (the code
    /// changed under the exit).
    NotACrWrite,
}

/// Decodes the instruction in `bytes` (fetched at `rip`, code size
/// `bitness`) that caused a write exit for CR`cr`; also its length.
pub fn decode(
    bytes: &[u8],
    bitness: u32,
    rip: u64,
    cr: u8,
) -> Result<(CrWriteInsn, usize), DecodeError> {
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Err(DecodeError::Invalid);
    }
    let decoded = match insn.code() {
        Code::Mov_cr_r32 | Code::Mov_cr_r64 => {
            if control_register(insn.op0_register()) != Some(cr) {
                return Err(DecodeError::NotACrWrite);
            }
            let (src, width) = gpr(insn.op1_register()).ok_or(DecodeError::Invalid)?;
            CrWriteInsn::MovToCr { cr, src, width }
        }
        Code::Clts if cr == 0 => CrWriteInsn::Clts,
        Code::Lmsw_rm16 | Code::Lmsw_r32m16 | Code::Lmsw_r64m16 if cr == 0 => lmsw(&insn, bitness)?,
        _ => return Err(DecodeError::NotACrWrite),
    };
    Ok((decoded, insn.len()))
}

fn lmsw(insn: &Instruction, bitness: u32) -> Result<CrWriteInsn, DecodeError> {
    if insn.op0_kind() == iced_x86::OpKind::Register {
        return gpr(insn.op0_register())
            .map(|(g, _)| CrWriteInsn::LmswRegister(g))
            .ok_or(DecodeError::Invalid);
    }
    let base = match insn.memory_base() {
        Register::None | Register::RIP | Register::EIP => None,
        r => Some(gpr(r).ok_or(DecodeError::Invalid)?),
    };
    let index = match insn.memory_index() {
        Register::None => None,
        r => {
            let (g, size) = gpr(r).ok_or(DecodeError::Invalid)?;
            Some((g, size, insn.memory_index_scale()))
        }
    };
    let address_size = base
        .map(|(_, s)| s)
        .or(index.map(|(_, s, _)| s))
        .unwrap_or(bitness as usize / 8);
    let segment = Segment::of(insn.memory_segment()).unwrap_or(Segment::Ds);
    Ok(CrWriteInsn::LmswMemory(MemoryOperand {
        segment,
        base,
        index,
        displacement: insn.memory_displacement64(),
        address_mask: match address_size {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        },
    }))
}

/// The 16-, 32- or 64-bit general register `r`: which one, and its
/// width in bytes.
fn gpr(r: Register) -> Option<(Gpr, usize)> {
    reg_slot(r)
        .filter(|slot| slot.width >= 2)
        .map(|slot| (slot.gpr, usize::from(slot.width)))
}

/// The number of control register `r` (CR0..CR15), if it is one.
fn control_register(r: Register) -> Option<u8> {
    let n = (r as usize).checked_sub(Register::CR0 as usize)?;
    u8::try_from(n).ok().filter(|&n| n < 16)
}

/// The value LMSW writes: CR0's low four bits from `source`, except that
/// PE can be set but not cleared (APM vol. 3, LMSW).
pub fn lmsw_value(cr0: u64, source: u16) -> u64 {
    (cr0 & !0xe) | u64::from(source & 0xf)
}

#[cfg(test)]
mod tests;
