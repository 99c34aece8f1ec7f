//! Decoding real encodings (as assembled by GNU as) into accesses.

use proptest::prelude::*;

use super::*;
use crate::vmexit::insn::GPR_BY_NUMBER;

/// Registers hold `0x1000 * (n + 1)` for GPR number n (RAX = 0x1000, RCX =
/// 0x2000 ...); segment bases are fixed per segment.
struct Regs;

impl OperandState for Regs {
    fn gpr(&self, reg: Gpr) -> u64 {
        let n = GPR_BY_NUMBER.iter().position(|g| *g == reg).unwrap() as u64;
        0x1000 * (n + 1)
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        match seg {
            Segment::Fs => 0x7000_0000,
            Segment::Gs => 0x8000_0000,
            Segment::Ds => 0x10_0000,
            _ => 0x20_0000,
        }
    }
}

const RIP: u64 = 0x40_0000;

fn decode64(bytes: &[u8]) -> Result<MemAccess, DecodeError> {
    decode(bytes, 64, RIP, &Regs)
}

fn slot(gpr: Gpr, width: u8) -> RegSlot {
    RegSlot {
        gpr,
        width,
        high_byte: false,
    }
}

fn load(dest: RegSlot, extend: Widen, size: u8, linear: u64, insn_len: usize) -> MemAccess {
    MemAccess {
        op: MemOp::Load { dest, extend },
        size,
        linear,
        insn_len,
    }
}

fn store(size: u8, linear: u64, insn_len: usize) -> MemAccess {
    MemAccess {
        op: MemOp::Store,
        size,
        linear,
        insn_len,
    }
}

#[test]
fn mov_loads_of_every_size() {
    // mov eax, [rdx]
    assert_eq!(
        decode64(&[0x8b, 0x02]),
        Ok(load(slot(Gpr::Rax, 4), Widen::Zero, 4, 0x3000, 2))
    );
    // mov rax, [rdi]
    assert_eq!(
        decode64(&[0x48, 0x8b, 0x07]),
        Ok(load(slot(Gpr::Rax, 8), Widen::Zero, 8, 0x8000, 3))
    );
    // mov cx, [rsi+0x10]
    assert_eq!(
        decode64(&[0x66, 0x8b, 0x4e, 0x10]),
        Ok(load(slot(Gpr::Rcx, 2), Widen::Zero, 2, 0x7010, 4))
    );
    // mov r9b, [r12+r13*4-8]
    assert_eq!(
        decode64(&[0x47, 0x8a, 0x4c, 0xac, 0xf8]),
        Ok(load(
            slot(Gpr::R9, 1),
            Widen::Zero,
            1,
            0xd000 + 0xe000 * 4 - 8,
            5
        ))
    );
}

#[test]
fn high_byte_and_rex_byte_registers() {
    // mov ah, [rbx+0x10]
    let high = RegSlot {
        gpr: Gpr::Rax,
        width: 1,
        high_byte: true,
    };
    assert_eq!(
        decode64(&[0x8a, 0x63, 0x10]),
        Ok(load(high, Widen::Zero, 1, 0x4010, 3))
    );
    // mov sil, [rbx] (REX: SIL, not DH)
    assert_eq!(
        decode64(&[0x40, 0x8a, 0x33]),
        Ok(load(slot(Gpr::Rsi, 1), Widen::Zero, 1, 0x4000, 3))
    );
}

#[test]
fn moffs_forms_take_the_absolute_address() {
    // movabs rax, [0xfec00000]
    let bytes = [0x48, 0xa1, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0];
    assert_eq!(
        decode64(&bytes),
        Ok(load(slot(Gpr::Rax, 8), Widen::Zero, 8, 0xfec0_0000, 10))
    );
    // movabs [0xfed00000], al
    let bytes = [0xa2, 0x00, 0x00, 0xd0, 0xfe, 0, 0, 0, 0];
    assert_eq!(decode64(&bytes), Ok(store(1, 0xfed0_0000, 9)));
}

#[test]
fn movzx_movsx_movsxd() {
    // movzx eax, byte [rsi]
    assert_eq!(
        decode64(&[0x0f, 0xb6, 0x06]),
        Ok(load(slot(Gpr::Rax, 4), Widen::Zero, 1, 0x7000, 3))
    );
    // movsx rcx, word [rsi]
    assert_eq!(
        decode64(&[0x48, 0x0f, 0xbf, 0x0e]),
        Ok(load(slot(Gpr::Rcx, 8), Widen::Sign, 2, 0x7000, 4))
    );
    // movsxd rdx, dword [rdi]
    assert_eq!(
        decode64(&[0x48, 0x63, 0x17]),
        Ok(load(slot(Gpr::Rdx, 8), Widen::Sign, 4, 0x8000, 3))
    );
}

#[test]
fn stores_from_registers_and_immediates() {
    // mov [rdi], ax
    assert_eq!(decode64(&[0x66, 0x89, 0x07]), Ok(store(2, 0x8000, 3)));
    // mov dword [rdi], 0x12345678
    assert_eq!(
        decode64(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12]),
        Ok(store(4, 0x8000, 6))
    );
    // mov qword [rax+8], -1
    assert_eq!(
        decode64(&[0x48, 0xc7, 0x40, 0x08, 0xff, 0xff, 0xff, 0xff]),
        Ok(store(8, 0x1008, 8))
    );
    // mov byte [rcx], 0x5a
    assert_eq!(decode64(&[0xc6, 0x01, 0x5a]), Ok(store(1, 0x2000, 3)));
}

#[test]
fn rip_relative_and_fs_gs_addresses() {
    // mov r8d, [rip+0xff9]
    assert_eq!(
        decode64(&[0x44, 0x8b, 0x05, 0xf9, 0x0f, 0x00, 0x00]),
        Ok(load(slot(Gpr::R8, 4), Widen::Zero, 4, RIP + 7 + 0xff9, 7))
    );
    // mov eax, gs:[0x10]
    assert_eq!(
        decode64(&[0x65, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0]),
        Ok(load(slot(Gpr::Rax, 4), Widen::Zero, 4, 0x8000_0010, 8))
    );
}

#[test]
fn segment_bases_count_outside_64_bit_mode() {
    // mov eax, [ebx] in a 32-bit code segment: DS base + EBX.
    assert_eq!(
        decode(&[0x8b, 0x03], 32, 0x1000, &Regs),
        Ok(load(
            slot(Gpr::Rax, 4),
            Widen::Zero,
            4,
            0x10_0000 + 0x4000,
            2
        ))
    );
    // ... and ignored in 64-bit mode.
    assert_eq!(
        decode64(&[0x8b, 0x03]),
        Ok(load(slot(Gpr::Rax, 4), Widen::Zero, 4, 0x4000, 2))
    );
}

#[test]
fn other_instructions_are_not_emulated() {
    // add [rdi], eax: a read-modify-write.
    assert_eq!(decode64(&[0x01, 0x07]), Err(DecodeError::Unhandleable));
    // mov eax, eax: no memory operand.
    assert_eq!(decode64(&[0x8b, 0xc0]), Err(DecodeError::Unhandleable));
    // rep stosb: string forms are not emulated.
    assert_eq!(decode64(&[0xf3, 0xaa]), Err(DecodeError::Unhandleable));
    // A truncated MOV: fewer bytes than it needs.
    assert_eq!(decode64(&[0x8b]), Err(DecodeError::Unhandleable));
}

#[test]
fn invalid_bytes_are_unrecognized() {
    // push es does not exist in 64-bit mode (padded, as a fetch is).
    assert_eq!(
        decode64(&[0x06, 0x90, 0x90, 0x90]),
        Err(DecodeError::Unrecognized)
    );
    // LOCK on a MOV.
    assert_eq!(
        decode64(&[0xf0, 0x89, 0x07, 0x90]),
        Err(DecodeError::Unrecognized)
    );
}

#[test]
fn load_results_extend_as_the_instruction_says() {
    let movzx = load(slot(Gpr::Rax, 4), Widen::Zero, 1, 0, 3);
    assert_eq!(movzx.load_result(!0), Some((slot(Gpr::Rax, 4), 0xff)));
    let movsx = load(slot(Gpr::Rcx, 8), Widen::Sign, 2, 0, 4);
    assert_eq!(movsx.load_result(!0), Some((slot(Gpr::Rcx, 8), u64::MAX)));
    assert_eq!(movsx.load_result(0x7fff), Some((slot(Gpr::Rcx, 8), 0x7fff)));
    let mov64 = load(slot(Gpr::Rdx, 8), Widen::Zero, 8, 0, 3);
    assert_eq!(mov64.load_result(!0), Some((slot(Gpr::Rdx, 8), u64::MAX)));
    assert_eq!(store(4, 0, 2).load_result(!0), None);
}

#[test]
fn register_writes_merge_or_zero_extend() {
    let old = 0x1122_3344_5566_7788;
    assert_eq!(slot(Gpr::Rax, 8).merge(old, !0), !0);
    assert_eq!(slot(Gpr::Rax, 4).merge(old, !0), 0xffff_ffff);
    assert_eq!(slot(Gpr::Rax, 2).merge(old, !0), 0x1122_3344_5566_ffff);
    assert_eq!(slot(Gpr::Rax, 1).merge(old, !0), 0x1122_3344_5566_77ff);
    let high = RegSlot {
        gpr: Gpr::Rax,
        width: 1,
        high_byte: true,
    };
    assert_eq!(high.merge(old, 0xab), 0x1122_3344_5566_ab88);
}

#[test]
fn every_gpr_name_maps_to_its_register() {
    let cases = [
        (Register::AL, Gpr::Rax, 1, false),
        (Register::BH, Gpr::Rbx, 1, true),
        (Register::DIL, Gpr::Rdi, 1, false),
        (Register::R15L, Gpr::R15, 1, false),
        (Register::SP, Gpr::Rsp, 2, false),
        (Register::R8W, Gpr::R8, 2, false),
        (Register::EBP, Gpr::Rbp, 4, false),
        (Register::R12D, Gpr::R12, 4, false),
        (Register::RCX, Gpr::Rcx, 8, false),
        (Register::R15, Gpr::R15, 8, false),
    ];
    for (reg, gpr, width, high_byte) in cases {
        assert_eq!(
            reg_slot(reg),
            Some(RegSlot {
                gpr,
                width,
                high_byte
            }),
            "{reg:?}"
        );
    }
    assert_eq!(reg_slot(Register::RIP), None);
    assert_eq!(reg_slot(Register::DS), None);
}

proptest! {
    /// A write changes exactly the bytes the register name covers (all 8
    /// for a 4-byte write, which zero-extends).
    #[test]
    fn merge_keeps_the_bytes_outside_the_slot(old: u64, value: u64, pick in 0usize..5) {
        let (width, high_byte) = [(1, false), (1, true), (2, false), (4, false), (8, false)][pick];
        let slot = RegSlot { gpr: Gpr::Rbx, width, high_byte };
        let new = slot.merge(old, value);
        let (shift, bits) = if high_byte { (8, 8) } else { (0, u32::from(width) * 8) };
        let mask = if bits == 64 { u64::MAX } else { ((1u64 << bits) - 1) << shift };
        let kept = if width == 4 { 0 } else { old & !mask };
        prop_assert_eq!(new & !mask, kept);
        prop_assert_eq!((new & mask) >> shift, value & (mask >> shift));
    }

    /// Arbitrary bytes never panic the decoder, and what it accepts is a
    /// MOV-family access of at most 15 bytes.
    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..16), bits in 0usize..3) {
        let bitness = [16, 32, 64][bits];
        if let Ok(access) = decode(&bytes, bitness, RIP, &Regs) {
            prop_assert!(access.insn_len <= MAX_INSN_LEN && access.insn_len <= bytes.len());
            prop_assert!([1, 2, 4, 8].contains(&access.size));
        }
    }
}

#[test]
fn store_values_from_registers_and_immediates() {
    let value = |bytes: &[u8]| store_value(bytes, 64, RIP, &Regs);
    // mov [rdi], ax: RAX holds 0x1000.
    assert_eq!(value(&[0x66, 0x89, 0x07]), Ok(0x1000));
    // mov [rdi], bh: bits 15:8 of RBX (0x4000).
    assert_eq!(value(&[0x88, 0x3f]), Ok(0x40));
    // mov dword [rdi], 0x12345678
    assert_eq!(
        value(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12]),
        Ok(0x1234_5678)
    );
    // mov qword [rax+8], -1: the imm32 is sign-extended.
    let bytes = [0x48, 0xc7, 0x40, 0x08, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(value(&bytes), Ok(u64::MAX));
    // movabs [0xfed00000], al
    assert_eq!(
        value(&[0xa2, 0x00, 0x00, 0xd0, 0xfe, 0, 0, 0, 0]),
        Ok(0x1000)
    );
    // A load has no stored value.
    assert_eq!(value(&[0x8b, 0x07]), Err(DecodeError::Unhandleable));
}

fn bit_test(bit: u8, size: u8, linear: u64, insn_len: usize) -> MemAccess {
    MemAccess {
        op: MemOp::BitTest { bit },
        size,
        linear,
        insn_len,
    }
}

#[test]
fn bt_with_a_register_offset_moves_the_operand() {
    // bt [rdi], rax: RDI = 0x8000, RAX = 0x1000 = 4096 bits, 64 qwords on.
    assert_eq!(
        decode64(&[0x48, 0x0f, 0xa3, 0x07]),
        Ok(bit_test(0, 8, 0x8000 + 64 * 8, 4))
    );
    // bt [rdi], cx: CX = 0x2000 bits = 512 words on.
    assert_eq!(
        decode64(&[0x66, 0x0f, 0xa3, 0x0f]),
        Ok(bit_test(0, 2, 0x8000 + 512 * 2, 4))
    );
}

#[test]
fn bt_with_an_immediate_offset_stays_in_its_operand() {
    // bt dword [rdi], 37: bit 5 of the dword at RDI.
    assert_eq!(
        decode64(&[0x0f, 0xba, 0x27, 37]),
        Ok(bit_test(5, 4, 0x8000, 4))
    );
    // BTS writes: not a plain access.
    assert_eq!(
        decode64(&[0x0f, 0xba, 0x2f, 1]),
        Err(DecodeError::Unhandleable)
    );
}

#[test]
fn carry_is_the_tested_bit() {
    let access = bit_test(5, 4, 0, 4);
    assert_eq!(access.carry(1 << 5), Some(true));
    assert_eq!(access.carry(!(1 << 5)), Some(false));
    assert_eq!(access.load_result(u64::MAX), None);
    assert!(!access.is_write());
}
