//! Decoding the instruction behind an MMIO nested page fault into the one
//! access a null handler needs, and writing a load's result back to the
//! guest's registers.
//!
//! SVM under QEMU TCG has no decode assists and no NRIP (TOOLCHAIN.md), so
//! the instruction bytes are fetched from the guest at RIP and decoded with
//! `iced-x86`. Only the forms Xen's emulator would send to a null handler
//! as one plain access are taken: MOV loads and stores of 1/2/4/8 bytes
//! (register, immediate and moffs forms), MOVZX, MOVSX and MOVSXD loads,
//! and BT with a memory operand (a load that sets CF; with a register bit
//! offset the operand moves by `offset DIV size`, as the CPU and Xen's
//! emulator do, XSA-195). Anything else that touches unclaimed memory is
//! [`DecodeError::Unhandleable`]; bytes that are no instruction are
//! [`DecodeError::Unrecognized`] (Xen's `X86EMUL_UNHANDLEABLE` and
//! `X86EMUL_UNRECOGNIZED`).
//!
//! Sources: Intel SDM vol. 2 (MOV, MOVZX, MOVSX/MOVSXD, BT); AMD APM vol. 1
//! §3.1.2.3 (32-bit results zero-extend, 8/16-bit results merge).

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind, Register};

use super::dispatch::Gpr;

use super::insn::reg_slot;
pub use super::insn::{RegSlot, Segment, MAX_INSN_LEN};

/// How a load widens the bytes it read to its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Widen {
    /// MOV and MOVZX: zero-extend.
    Zero,
    /// MOVSX and MOVSXD: sign-extend.
    Sign,
}

/// What the instruction does with the memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    /// Reads the operand into `dest`.
    Load { dest: RegSlot, extend: Widen },
    /// Writes the operand (from a register or an immediate).
    Store,
    /// BT: reads the operand and copies bit `bit` of it to CF.
    BitTest { bit: u8 },
}

/// One decoded memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAccess {
    /// Load or store.
    pub op: MemOp,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// Linear address of the operand (segment base included).
    pub linear: u64,
    /// Length of the instruction in bytes, to move RIP past it.
    pub insn_len: usize,
}

impl MemAccess {
    /// Whether the access writes memory.
    pub fn is_write(&self) -> bool {
        self.op == MemOp::Store
    }

    /// The destination's value after a load that read `data` (its low
    /// `size` bytes), extended as the instruction says; `None` for a store.
    pub fn load_result(&self, data: u64) -> Option<(RegSlot, u64)> {
        let MemOp::Load { dest, extend } = self.op else {
            return None;
        };
        let bits = u32::from(self.size) * 8;
        let data = if bits == 64 {
            data
        } else {
            data & ((1u64 << bits) - 1)
        };
        let value = match extend {
            Widen::Zero => data,
            Widen::Sign => sign_extend(data, bits),
        };
        Some((dest, value))
    }

    /// CF after a BT that read `data`; `None` for any other access.
    pub fn carry(&self, data: u64) -> Option<bool> {
        let MemOp::BitTest { bit } = self.op else {
            return None;
        };
        Some((data >> bit) & 1 == 1)
    }
}

/// `data`'s low `bits` bits, sign-extended to 64.
fn sign_extend(data: u64, bits: u32) -> u64 {
    let shift = 64 - bits;
    ((data << shift).cast_signed() >> shift).cast_unsigned()
}

/// Why an instruction cannot be completed as one plain access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are no valid instruction: the CPU would raise #UD.
    Unrecognized,
    /// A valid instruction outside the emulated forms, or fewer bytes than
    /// it needs could be fetched.
    Unhandleable,
}

/// What the decoder needs of the vCPU: its registers and segment bases.
pub trait OperandState {
    /// A general-purpose register's 64-bit value.
    fn gpr(&self, reg: Gpr) -> u64;
    /// A segment's base (0 for ES, CS, SS and DS in 64-bit mode).
    fn segment_base(&self, seg: Segment) -> u64;
}

/// Decodes `bytes` (fetched at `rip`, in a `bitness`-bit code segment:
/// 16, 32 or 64) into the memory access it makes.
pub fn decode(
    bytes: &[u8],
    bitness: u32,
    rip: u64,
    state: &impl OperandState,
) -> Result<MemAccess, DecodeError> {
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Err(match decoder.last_error() {
            iced_x86::DecoderError::NoMoreBytes => DecodeError::Unhandleable,
            _ => DecodeError::Unrecognized,
        });
    }
    let (shape, size) = shape(insn.code()).ok_or(DecodeError::Unhandleable)?;
    let (mem_operand, mut op) = match shape {
        Shape::Store => (0, MemOp::Store),
        Shape::Load(extend) => {
            let dest = reg_slot(insn.op0_register()).ok_or(DecodeError::Unhandleable)?;
            (1, MemOp::Load { dest, extend })
        }
        Shape::BitTest => (0, MemOp::BitTest { bit: 0 }),
    };
    if insn.op_kind(mem_operand) != OpKind::Memory {
        return Err(DecodeError::Unhandleable);
    }
    let mut linear = linear_address(&insn, mem_operand, bitness, state)?;
    if shape == Shape::BitTest {
        let (bit, displacement) = bit_offset(&insn, size, state)?;
        op = MemOp::BitTest { bit };
        linear = linear.wrapping_add(displacement);
        if bitness != 64 {
            linear &= 0xffff_ffff;
        }
    }
    Ok(MemAccess {
        op,
        size,
        linear,
        insn_len: insn.len(),
    })
}

/// The value a store decoded by [`decode`] writes (its low `size` bytes
/// count): the source register (AH..BH: bits 15:8) or the immediate,
/// sign-extended as the instruction does. For a handler that forwards
/// the write (dom0's ECAM); the null handler drops stores unread.
pub fn store_value(
    bytes: &[u8],
    bitness: u32,
    rip: u64,
    state: &impl OperandState,
) -> Result<u64, DecodeError> {
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    match insn.op_kind(1) {
        OpKind::Register => {
            let slot = reg_slot(insn.op1_register()).ok_or(DecodeError::Unhandleable)?;
            let value = state.gpr(slot.gpr);
            Ok(if slot.high_byte { value >> 8 } else { value })
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate32to64 => Ok(insn.immediate(1)),
        _ => Err(DecodeError::Unhandleable),
    }
}

/// BT's bit within the `size`-byte operand it reads, and how far that
/// operand lies from the memory operand's address: an immediate offset is
/// taken modulo the operand's bits; a register offset is signed (of the
/// operand's width) and moves the operand by `size * (offset DIV bits)`
/// bytes, rounding down (Intel SDM vol. 2, BT).
fn bit_offset(
    insn: &Instruction,
    size: u8,
    state: &impl OperandState,
) -> Result<(u8, u64), DecodeError> {
    let bits = u32::from(size) * 8;
    // 15, 31 or 63: the bit within the operand.
    let mask = u8::try_from(bits - 1).map_err(|_| DecodeError::Unhandleable)?;
    let offset = match insn.op_kind(1) {
        OpKind::Register => {
            let slot = reg_slot(insn.op1_register()).ok_or(DecodeError::Unhandleable)?;
            let shift = 64 - bits;
            (state.gpr(slot.gpr) << shift).cast_signed() >> shift
        }
        OpKind::Immediate8 => return Ok((insn.immediate8() & mask, 0)),
        _ => return Err(DecodeError::Unhandleable),
    };
    // Two's complement: the low bits are the offset modulo `bits` and the
    // arithmetic shift is the division rounding down.
    let bit = offset.to_le_bytes()[0] & mask;
    let units = offset >> bits.trailing_zeros();
    Ok((bit, units.wrapping_mul(i64::from(size)).cast_unsigned()))
}

/// The emulated forms: whether they load (and how they extend), store or
/// test a bit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Load(Widen),
    Store,
    BitTest,
}

/// The shape and operand size in bytes of an emulated instruction.
fn shape(code: Code) -> Option<(Shape, u8)> {
    use Code::*;
    use Widen::{Sign, Zero};
    let load = Shape::Load;
    Some(match code {
        Mov_r8_rm8 | Mov_AL_moffs8 => (load(Zero), 1),
        Mov_r16_rm16 | Mov_AX_moffs16 => (load(Zero), 2),
        Mov_r32_rm32 | Mov_EAX_moffs32 => (load(Zero), 4),
        Mov_r64_rm64 | Mov_RAX_moffs64 => (load(Zero), 8),
        Movzx_r16_rm8 | Movzx_r32_rm8 | Movzx_r64_rm8 => (load(Zero), 1),
        Movzx_r16_rm16 | Movzx_r32_rm16 | Movzx_r64_rm16 => (load(Zero), 2),
        Movsx_r16_rm8 | Movsx_r32_rm8 | Movsx_r64_rm8 => (load(Sign), 1),
        Movsx_r16_rm16 | Movsx_r32_rm16 | Movsx_r64_rm16 | Movsxd_r16_rm16 => (load(Sign), 2),
        Movsxd_r32_rm32 | Movsxd_r64_rm32 => (load(Sign), 4),
        Mov_rm8_r8 | Mov_moffs8_AL | Mov_rm8_imm8 => (Shape::Store, 1),
        Mov_rm16_r16 | Mov_moffs16_AX | Mov_rm16_imm16 => (Shape::Store, 2),
        Mov_rm32_r32 | Mov_moffs32_EAX | Mov_rm32_imm32 => (Shape::Store, 4),
        Mov_rm64_r64 | Mov_moffs64_RAX | Mov_rm64_imm32 => (Shape::Store, 8),
        Bt_rm16_r16 | Bt_rm16_imm8 => (Shape::BitTest, 2),
        Bt_rm32_r32 | Bt_rm32_imm8 => (Shape::BitTest, 4),
        Bt_rm64_r64 | Bt_rm64_imm8 => (Shape::BitTest, 8),
        _ => return None,
    })
}

/// The operand's linear address, from the guest's registers and segment
/// bases; wraps at 4 GiB outside 64-bit mode.
fn linear_address(
    insn: &Instruction,
    operand: u32,
    bitness: u32,
    state: &impl OperandState,
) -> Result<u64, DecodeError> {
    let long = bitness == 64;
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let Some(seg) = Segment::of(reg) else {
            return reg_slot(reg).map(|slot| state.gpr(slot.gpr));
        };
        Some(match seg {
            Segment::Fs | Segment::Gs => state.segment_base(seg),
            _ if long => 0,
            _ => state.segment_base(seg),
        })
    };
    let linear = insn
        .virtual_address(operand, 0, value)
        .ok_or(DecodeError::Unhandleable)?;
    Ok(if long { linear } else { linear & 0xffff_ffff })
}

#[cfg(test)]
mod tests;
