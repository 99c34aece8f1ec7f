use super::*;

/// Long mode, paging on, PAE: what a 64-bit PVH guest runs with.
const LONG: GuestPaging = GuestPaging {
    cr0: cr0::PE | cr0::ET | cr0::WP | cr0::PG,
    cr3: 0x1000,
    cr4: cr4::PAE,
    efer: efer::LME | efer::LMA | efer::SVME,
};

/// The PVH entry state: 32-bit protected mode, paging off.
const PVH_ENTRY: GuestPaging = GuestPaging {
    cr0: cr0::PE | cr0::ET,
    cr3: 0,
    cr4: 0,
    efer: efer::SVME,
};

/// qemu64's leaf 1 (EDX: FPU..SSE2; ECX: SSE3, CX16, POPCNT ...) and an
/// empty leaf 7.
fn qemu64() -> (CpuidResult, CpuidResult) {
    let leaf1 = CpuidResult {
        eax: 0x663,
        ebx: 0,
        ecx: 0x8080_2001,
        edx: 0x0781_abfd,
    };
    (leaf1, CpuidResult::default())
}

#[test]
fn decodes_mov_to_cr_in_both_modes() {
    assert_eq!(
        decode(&[0x0f, 0x22, 0xe0], 64, 0x1000, 4),
        Ok((
            CrWriteInsn::MovToCr {
                cr: 4,
                src: Gpr::Rax,
                width: 8
            },
            3
        ))
    );
    assert_eq!(
        decode(&[0x0f, 0x22, 0xc0, 0x90], 32, 0x1000, 0),
        Ok((
            CrWriteInsn::MovToCr {
                cr: 0,
                src: Gpr::Rax,
                width: 4
            },
            3
        ))
    );
    assert_eq!(
        decode(&[0x41, 0x0f, 0x22, 0xe1], 64, 0, 4),
        Ok((
            CrWriteInsn::MovToCr {
                cr: 4,
                src: Gpr::R9,
                width: 8
            },
            4
        ))
    );
}

#[test]
fn decodes_clts_and_lmsw() {
    assert_eq!(decode(&[0x0f, 0x06], 64, 0, 0), Ok((CrWriteInsn::Clts, 2)));
    assert_eq!(
        decode(&[0x0f, 0x01, 0xf0], 64, 0, 0),
        Ok((CrWriteInsn::LmswRegister(Gpr::Rax), 3))
    );
    let Ok((CrWriteInsn::LmswMemory(m), 4)) = decode(&[0x0f, 0x01, 0x73, 0x08], 64, 0, 0) else {
        panic!("lmsw [rbx+8] not decoded");
    };
    assert_eq!(m.base, Some((Gpr::Rbx, 8)));
    assert_eq!(m.index, None);
    assert_eq!(m.displacement, 8);
    assert_eq!(m.segment, Segment::Ds);
    assert_eq!(m.address_mask, u64::MAX);
}

#[test]
fn refuses_what_is_not_the_exit_s_write() {
    // MOV CR4, RAX at a CR0 exit; MOV CR8 (REX.R) at a CR0 exit.
    assert_eq!(
        decode(&[0x0f, 0x22, 0xe0], 64, 0, 0),
        Err(DecodeError::NotACrWrite)
    );
    assert_eq!(
        decode(&[0x44, 0x0f, 0x22, 0xc0], 64, 0, 0),
        Err(DecodeError::NotACrWrite)
    );
    assert_eq!(
        decode(&[0x0f, 0x06], 64, 0, 4),
        Err(DecodeError::NotACrWrite)
    );
    assert_eq!(decode(&[0x90], 64, 0, 4), Err(DecodeError::NotACrWrite));
    assert_eq!(decode(&[0x0f, 0x22], 64, 0, 4), Err(DecodeError::Invalid));
    assert_eq!(decode(&[], 64, 0, 4), Err(DecodeError::Invalid));
}

#[test]
fn enabling_paging_with_lme_activates_long_mode() {
    let before = GuestPaging {
        cr4: cr4::PAE,
        efer: efer::LME | efer::SVME,
        ..PVH_ENTRY
    };
    let value = before.cr0 | cr0::PG | cr0::WP;
    let update = set_cr0(value, before, false).expect("valid");
    assert_eq!(update.regs.cr0, value);
    assert_eq!(update.regs.efer, efer::LME | efer::LMA | efer::SVME);
    assert!(update.flush_tlb);
    let no_pae = GuestPaging { cr4: 0, ..before };
    assert_eq!(
        set_cr0(value, no_pae, false),
        Err(CrFault::LongModeWithoutPae)
    );
}

#[test]
fn cr0_reserved_and_inconsistent_values_fault() {
    assert_eq!(
        set_cr0(PVH_ENTRY.cr0 | 1 << 32, PVH_ENTRY, false),
        Err(CrFault::Cr0UpperBits)
    );
    assert_eq!(
        set_cr0(cr0::PG, PVH_ENTRY, false),
        Err(CrFault::PagingWithoutProtection)
    );
    assert_eq!(
        set_cr0(cr0::PE | cr0::NW, PVH_ENTRY, false),
        Err(CrFault::NotWriteThroughWithoutCacheDisable)
    );
    // Reserved low bits read as zero; ET reads as one.
    let update = set_cr0(cr0::PE | 1 << 7 | 1 << 20, PVH_ENTRY, false).expect("valid");
    assert_eq!(update.regs.cr0, cr0::PE | cr0::ET);
    assert!(!update.flush_tlb);
}

#[test]
fn clearing_paging_leaves_long_mode_only_outside_64_bit_code() {
    let off = LONG.cr0 & !cr0::PG;
    assert_eq!(set_cr0(off, LONG, true), Err(CrFault::PagingOffIn64BitMode));
    let update = set_cr0(off, LONG, false).expect("compatibility mode may");
    assert_eq!(update.regs.efer & efer::LMA, 0);
    let pcid = GuestPaging {
        cr4: LONG.cr4 | cr4::PCIDE,
        ..LONG
    };
    assert_eq!(set_cr0(off, pcid, false), Err(CrFault::PagingOffWithPcide));
}

#[test]
fn cr0_ts_toggles_without_flush() {
    let update = set_cr0(LONG.cr0 | cr0::TS, LONG, true).expect("valid");
    assert_eq!(update.regs.cr0, LONG.cr0 | cr0::TS);
    assert_eq!(update.regs.efer, LONG.efer);
    assert!(!update.flush_tlb);
}

#[test]
fn cr4_valid_bits_follow_cpuid() {
    let (leaf1, leaf7) = qemu64();
    let valid = cr4_guest_valid_bits(leaf1, leaf7);
    for bit in [
        cr4::DE,
        cr4::PSE,
        cr4::PAE,
        cr4::MCE,
        cr4::PGE,
        cr4::PCE,
        cr4::OSFXSR,
        cr4::OSXMMEXCPT,
    ] {
        assert_ne!(valid & bit, 0, "{bit:#x}");
    }
    for bit in [
        cr4::VME,
        cr4::UMIP,
        cr4::VMXE,
        cr4::OSXSAVE,
        cr4::SMEP,
        cr4::FSGSBASE,
        cr4::PCIDE,
    ] {
        assert_eq!(valid & bit, 0, "{bit:#x}");
    }
    let umip = CpuidResult {
        ecx: 1 << 2,
        ..leaf7
    };
    assert_ne!(cr4_guest_valid_bits(leaf1, umip) & cr4::UMIP, 0);
    // VMXE never: there is no nested virtualisation.
    let all = CpuidResult {
        eax: !0,
        ebx: !0,
        ecx: !0,
        edx: !0,
    };
    assert_eq!(cr4_guest_valid_bits(all, all) & cr4::VMXE, 0);
}

#[test]
fn hidden_cr4_bits_fault() {
    let (leaf1, leaf7) = qemu64();
    let valid = cr4_guest_valid_bits(leaf1, leaf7);
    assert_eq!(
        set_cr4(LONG.cr4 | cr4::VMXE, valid, LONG),
        Err(CrFault::Cr4BitsNotOffered(cr4::VMXE))
    );
    assert_eq!(
        set_cr4(LONG.cr4 | cr4::UMIP, valid, LONG),
        Err(CrFault::Cr4BitsNotOffered(cr4::UMIP))
    );
    assert_eq!(
        set_cr4(LONG.cr4 | 1 << 40, valid, LONG),
        Err(CrFault::Cr4BitsNotOffered(1 << 40))
    );
    let update = set_cr4(LONG.cr4 | cr4::OSFXSR | cr4::OSXMMEXCPT, valid, LONG).expect("valid");
    assert_eq!(update.regs.cr4, cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT);
    assert!(!update.flush_tlb);
}

#[test]
fn cr4_paging_rules() {
    let all = !0;
    assert_eq!(set_cr4(0, all, LONG), Err(CrFault::PaeOffInLongMode));
    assert!(set_cr4(0, all, PVH_ENTRY).is_ok());
    assert_eq!(
        set_cr4(cr4::PCIDE, all, PVH_ENTRY),
        Err(CrFault::PcideNotAllowed)
    );
    let dirty_cr3 = GuestPaging {
        cr3: 0x1001,
        ..LONG
    };
    assert_eq!(
        set_cr4(LONG.cr4 | cr4::PCIDE, all, dirty_cr3),
        Err(CrFault::PcideNotAllowed)
    );
    assert!(!set_cr4(LONG.cr4 | cr4::PCIDE, all, LONG).unwrap().flush_tlb);
    // Toggling PGE flushes, as the CPU's MOV to CR4 would.
    let pge = set_cr4(LONG.cr4 | cr4::PGE, all, LONG).unwrap();
    assert!(pge.flush_tlb);
    assert!(set_cr4(LONG.cr4, all, pge.regs).unwrap().flush_tlb);
}

#[test]
fn lmsw_sets_but_never_clears_pe() {
    assert_eq!(lmsw_value(cr0::PE | cr0::PG, 0), cr0::PE | cr0::PG);
    assert_eq!(lmsw_value(cr0::PG | cr0::TS, 0x1), cr0::PG | cr0::PE);
    assert_eq!(lmsw_value(0, 0xffff), 0xf);
}

#[test]
fn register_tables_match_iced() {
    assert_eq!(gpr(Register::AX), Some((Gpr::Rax, 2)));
    assert_eq!(gpr(Register::R15W), Some((Gpr::R15, 2)));
    assert_eq!(gpr(Register::ESP), Some((Gpr::Rsp, 4)));
    assert_eq!(gpr(Register::R9D), Some((Gpr::R9, 4)));
    assert_eq!(gpr(Register::RDI), Some((Gpr::Rdi, 8)));
    assert_eq!(gpr(Register::R15), Some((Gpr::R15, 8)));
    assert_eq!(gpr(Register::AL), None);
    assert_eq!(gpr(Register::EIP), None);
    assert_eq!(control_register(Register::CR0), Some(0));
    assert_eq!(control_register(Register::CR4), Some(4));
    assert_eq!(control_register(Register::CR15), Some(15));
    assert_eq!(control_register(Register::DR0), None);
    assert_eq!(control_register(Register::RAX), None);
}
