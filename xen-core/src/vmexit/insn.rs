//! What the two instruction decoders of the exit path share (CR writes in
//! `cr`, unclaimed MMIO in `mmio`): the longest instruction, segment
//! registers, and iced-x86's registers as the guest's GPRs.
//!
//! SVM under QEMU TCG has no decode assists and no NRIP, so both fetch the
//! bytes at CS:RIP themselves and decode them with `iced-x86`.

use iced_x86::Register;

use super::dispatch::Gpr;

/// The longest x86 instruction, in bytes (SDM vol. 2, 2.3.11).
pub const MAX_INSN_LEN: usize = 15;

/// A segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

impl Segment {
    /// The segment register iced names `r`, if `r` is one.
    pub fn of(r: Register) -> Option<Self> {
        Some(match r {
            Register::ES => Self::Es,
            Register::CS => Self::Cs,
            Register::SS => Self::Ss,
            Register::DS => Self::Ds,
            Register::FS => Self::Fs,
            Register::GS => Self::Gs,
            _ => return None,
        })
    }
}

/// A destination register as the instruction names it: which GPR, how
/// many bytes of it, and for AH/CH/DH/BH the second byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegSlot {
    /// The 64-bit register that holds it.
    pub gpr: Gpr,
    /// Bytes written: 1, 2, 4 or 8.
    pub width: u8,
    /// AH, CH, DH or BH: bits 15:8.
    pub high_byte: bool,
}

impl RegSlot {
    /// The register's new 64-bit value after writing `value` (its low
    /// `width` bytes) over `old`: a 4-byte write zero-extends, 1- and
    /// 2-byte writes leave the other bits as they were.
    pub fn merge(self, old: u64, value: u64) -> u64 {
        match (self.width, self.high_byte) {
            (8, _) => value,
            (4, _) => value & 0xffff_ffff,
            (2, _) => (old & !0xffff) | (value & 0xffff),
            (_, true) => (old & !0xff00) | ((value & 0xff) << 8),
            _ => (old & !0xff) | (value & 0xff),
        }
    }
}

/// GPRs in x86 encoding order (0 = rAX ... 15 = r15).
pub const GPR_BY_NUMBER: [Gpr; 16] = [
    Gpr::Rax,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::Rsi,
    Gpr::Rdi,
    Gpr::R8,
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

/// The GPR behind an iced register of any width. iced numbers its
/// registers AL..R15L (AH..BH in slots 4..7), AX..R15W, EAX..R15D,
/// RAX..R15, each group in encoding order; its `Register::number` needs
/// the `instr_info` feature, which xen-core does not build.
pub fn reg_slot(reg: Register) -> Option<RegSlot> {
    let n = reg as usize;
    let group = |first: Register, last: Register| (first as usize..=last as usize).contains(&n);
    let (first, width) = if group(Register::AL, Register::R15L) {
        (Register::AL, 1)
    } else if group(Register::AX, Register::R15W) {
        (Register::AX, 2)
    } else if group(Register::EAX, Register::R15D) {
        (Register::EAX, 4)
    } else if group(Register::RAX, Register::R15) {
        (Register::RAX, 8)
    } else {
        return None;
    };
    let index = n - first as usize;
    // Byte registers 4..7 are AH, CH, DH, BH (bits 15:8 of rAX..rBX);
    // SPL, BPL, SIL, DIL and R8L.. follow them in iced's order.
    let high_byte = width == 1 && (4..8).contains(&index);
    let number = if width == 1 && index >= 4 {
        index - 4
    } else {
        index
    };
    Some(RegSlot {
        gpr: *GPR_BY_NUMBER.get(number)?,
        width,
        high_byte,
    })
}
