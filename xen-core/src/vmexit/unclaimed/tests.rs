//! The null handler over a fake vCPU: real instruction bytes at RIP, the
//! NPF error codes QEMU reports.

use super::npf_error::*;
use super::*;
use crate::vmexit::dispatch::tests::{
    guest_at, FakeEnv, FakeGuest, FAKE_DEVICE, FAKE_DEVICE_DATA, FAKE_MEMMAP_END,
};
use crate::vmexit::{handle_exit, VmExit};

const HPET: u64 = 0xfed0_0000;
const RIP: u64 = 0x1000;
/// A read of unmapped memory (final translation, not present).
const READ_FAULT: u64 = FINAL_TRANSLATION | 0x4;
const WRITE_FAULT: u64 = FINAL_TRANSLATION | WRITE | 0x4;
const OLD: u64 = 0x1122_3344_5566_7788;

/// A 64-bit vCPU at [`RIP`] running `code`, with RDX = RDI = `addr`.
fn vcpu(code: &[u8], addr: u64) -> (FakeGuest, FakeEnv) {
    let mut g = guest_at(RIP);
    g.long_mode = true;
    g.gprs = [OLD; 16];
    g.gprs[Gpr::Rdx as usize] = addr;
    g.gprs[Gpr::Rdi as usize] = addr;
    let env = FakeEnv {
        code: code.to_vec(),
        code_at: RIP,
        ..FakeEnv::default()
    };
    (g, env)
}

fn npf(gpa: u64, error_code: u64, g: &mut FakeGuest, env: &mut FakeEnv) -> ExitAction {
    handle_exit(VmExit::NestedPageFault { gpa, error_code }, g, env)
}

#[test]
fn unclaimed_loads_read_all_ones() {
    // mov eax, [rdx]: zero-extends.
    let (mut g, mut env) = vcpu(&[0x8b, 0x02], HPET + 0xf0);
    assert_eq!(
        npf(HPET + 0xf0, READ_FAULT, &mut g, &mut env),
        ExitAction::Resume
    );
    assert_eq!(g.gprs[Gpr::Rax as usize], 0xffff_ffff);
    assert_eq!(g.rip, RIP + 2);
    assert!(g.injected.is_empty());
    // mov ah, [rdx]: only bits 15:8 change.
    let (mut g, mut env) = vcpu(&[0x8a, 0x22], HPET);
    npf(HPET, READ_FAULT, &mut g, &mut env);
    assert_eq!(g.gprs[Gpr::Rax as usize], 0x1122_3344_5566_ff88);
    // movsx rcx, word [rdx]: sign-extends the ones.
    let (mut g, mut env) = vcpu(&[0x48, 0x0f, 0xbf, 0x0a], HPET);
    npf(HPET, READ_FAULT, &mut g, &mut env);
    assert_eq!(g.gprs[Gpr::Rcx as usize], u64::MAX);
    assert_eq!(g.rip, RIP + 4);
}

#[test]
fn unclaimed_stores_are_dropped() {
    // mov dword [rdi], 0x12345678
    let (mut g, mut env) = vcpu(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], HPET);
    let before = g.gprs;
    assert_eq!(npf(HPET, WRITE_FAULT, &mut g, &mut env), ExitAction::Resume);
    assert_eq!(g.gprs, before);
    assert_eq!(g.rip, RIP + 6);
    assert!(g.injected.is_empty());
}

#[test]
fn a_claimed_device_completes_loads_and_stores() {
    // mov ax, [rdx]: the device's data, 2 bytes, merged into RAX.
    let (mut g, mut env) = vcpu(&[0x66, 0x8b, 0x02], FAKE_DEVICE + 2);
    assert_eq!(
        npf(FAKE_DEVICE + 2, READ_FAULT, &mut g, &mut env),
        ExitAction::Resume
    );
    assert_eq!(env.device_reads, [(FAKE_DEVICE + 2, 2)]);
    assert_eq!(
        g.gprs[Gpr::Rax as usize],
        (OLD & !0xffff) | (FAKE_DEVICE_DATA & 0xffff)
    );
    assert_eq!(g.rip, RIP + 3);
    // mov dword [rdi], 0x12345678: the device gets the value.
    let (mut g, mut env) = vcpu(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], FAKE_DEVICE);
    assert_eq!(
        npf(FAKE_DEVICE, WRITE_FAULT, &mut g, &mut env),
        ExitAction::Resume
    );
    assert_eq!(env.device_writes, [(FAKE_DEVICE, 4, 0x1234_5678)]);
    assert_eq!(g.rip, RIP + 6);
    assert!(g.injected.is_empty());
    // A claimed GPA is not null-handled: an instruction that cannot be
    // emulated still gets #GP, and nothing reaches the device.
    let (mut g, mut env) = vcpu(&[0xf3, 0xa5], FAKE_DEVICE);
    npf(FAKE_DEVICE, WRITE_FAULT, &mut g, &mut env);
    assert_eq!(g.injected, [Event::general_protection()]);
    assert!(env.device_writes.is_empty());
}

#[test]
fn claimed_or_mapped_addresses_still_crash() {
    let crash = |gpa| ExitAction::Crash(CrashReason::NptFault { gpa });
    // A hole inside the domain's memory map.
    let hole = FAKE_MEMMAP_END - 0x1000;
    let (mut g, mut env) = vcpu(&[0x8b, 0x02], hole);
    assert_eq!(npf(hole, READ_FAULT, &mut g, &mut env), crash(hole));
    // A permission fault on a mapped page.
    let (mut g, mut env) = vcpu(&[0x89, 0x02], HPET);
    let before = g.gprs;
    assert_eq!(
        npf(HPET, WRITE_FAULT | PRESENT, &mut g, &mut env),
        crash(HPET)
    );
    // The guest's own page tables live there.
    assert_eq!(
        npf(HPET, GUEST_PAGE_WALK | 0x4, &mut g, &mut env),
        crash(HPET)
    );
    assert_eq!(g.gprs, before);
    assert_eq!(g.rip, RIP);
}

#[test]
fn instructions_that_cannot_be_emulated_get_gp_or_ud() {
    let cases: [(&[u8], u64, u64, Event); 6] = [
        // add [rdx], eax: read-modify-write.
        (
            &[0x01, 0x02],
            HPET,
            WRITE_FAULT,
            Event::general_protection(),
        ),
        // A load where the fault says write.
        (
            &[0x8b, 0x02],
            HPET,
            WRITE_FAULT,
            Event::general_protection(),
        ),
        // The operand is not at the faulting offset.
        (
            &[0x8b, 0x42, 0x08],
            HPET,
            READ_FAULT,
            Event::general_protection(),
        ),
        // mov rax, [rdx] runs past the end of the page.
        (
            &[0x48, 0x8b, 0x02],
            HPET + 0xffc,
            READ_FAULT,
            Event::general_protection(),
        ),
        // Nothing can be fetched at RIP.
        (&[], HPET, READ_FAULT, Event::general_protection()),
        // Not an instruction (push es in 64-bit mode).
        (&[0x06, 0x90], HPET, READ_FAULT, Event::invalid_opcode()),
    ];
    for (code, gpa, error_code, event) in cases {
        let (mut g, mut env) = vcpu(code, gpa);
        assert_eq!(npf(gpa, error_code, &mut g, &mut env), ExitAction::Resume);
        assert_eq!(g.injected, [event], "{code:x?}");
        assert_eq!(g.rip, RIP, "{code:x?}");
        assert_eq!(g.gprs[Gpr::Rax as usize], OLD);
    }
}

#[test]
fn fetching_from_unclaimed_memory_gets_gp() {
    let (mut g, mut env) = vcpu(&[0x90], HPET);
    npf(HPET, READ_FAULT | FETCH, &mut g, &mut env);
    assert_eq!(g.injected, [Event::general_protection()]);
}

#[test]
fn eip_wraps_outside_64_bit_mode() {
    let mut g = guest_at(0xffff_ffff);
    g.gprs[Gpr::Rdx as usize] = HPET;
    let mut env = FakeEnv {
        code: vec![0x8b, 0x02],
        code_at: 0xffff_ffff,
        ..FakeEnv::default()
    };
    npf(HPET, READ_FAULT, &mut g, &mut env);
    assert_eq!(g.rip, 1);
    assert_eq!(g.gprs[Gpr::Rax as usize], 0xffff_ffff);
}

fn port(port: u16, size_bit: u64, extra: u64) -> VmExit {
    VmExit::decode(0x7b, (u64::from(port) << 16) | size_bit | extra, RIP + 1)
}

#[test]
fn port_reads_are_all_ones_of_their_size() {
    const IN: u64 = 1;
    for (size_bit, rax) in [
        (1 << 4, 0x1122_3344_5566_77ff),
        (1 << 5, 0x1122_3344_5566_ffff),
        (1 << 6, 0xffff_ffff),
    ] {
        let (mut g, mut env) = vcpu(&[], 0);
        let exit = port(0x61, size_bit, IN);
        assert_eq!(handle_exit(exit, &mut g, &mut env), ExitAction::Resume);
        assert_eq!(g.gprs[Gpr::Rax as usize], rax);
        assert_eq!(g.rip, RIP + 1);
    }
}

#[test]
fn port_writes_are_dropped_and_string_forms_get_gp() {
    let (mut g, mut env) = vcpu(&[], 0);
    let before = g.gprs;
    handle_exit(port(0xf4, 1 << 4, 0), &mut g, &mut env);
    assert_eq!(g.gprs, before);
    assert_eq!(g.rip, RIP + 1);
    // REP OUTSB
    let (mut g, mut env) = vcpu(&[], 0);
    handle_exit(port(0x3f8, 1 << 4, (1 << 2) | (1 << 3)), &mut g, &mut env);
    assert_eq!(g.injected, [Event::general_protection()]);
    assert_eq!(g.rip, RIP);
}

/// XSA-195's probe: `bt [rdx], rax` with a large negative bit offset in
/// RAX hits the qword `offset DIV 64` qwords below RDX; the null handler
/// reads all ones, so CF is set and nothing else changes.
#[test]
fn bt_with_a_negative_offset_reads_all_ones_into_cf() {
    let mem = (1u64 << 47) - 8;
    let idx: u64 = 0xfffd_0000_0000_0000;
    let linear = mem - 0x6000_0000_0000;
    let gpa = HPET + linear % 4096;
    let (mut g, mut env) = vcpu(&[0x48, 0x0f, 0xa3, 0x02], mem);
    g.gprs[Gpr::Rax as usize] = idx;
    g.rflags = 0x2;
    assert_eq!(npf(gpa, READ_FAULT, &mut g, &mut env), ExitAction::Resume);
    assert_eq!(g.rflags, 0x3);
    assert_eq!(g.rip, RIP + 4);
    assert!(g.injected.is_empty());
    assert_eq!(g.gprs[Gpr::Rax as usize], idx);
    // Faulting elsewhere in the page than the adjusted operand: #GP.
    let (mut g, mut env) = vcpu(&[0x48, 0x0f, 0xa3, 0x02], mem);
    g.gprs[Gpr::Rax as usize] = idx;
    npf(HPET + 0x10, READ_FAULT, &mut g, &mut env);
    assert_eq!(g.injected, vec![Event::general_protection()]);
}
