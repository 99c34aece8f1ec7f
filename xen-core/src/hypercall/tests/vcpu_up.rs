//! VCPUOP_initialise, up, down and is_up through the hypercall door.

use abi::control::VcpuHvmX86_32;
use abi::xen::vcpu::{VcpuHvmContext, VcpuHvmX86_64};

use super::*;

const X86_64: VcpuHvmX86_64 = VcpuHvmX86_64 {
    rax: 0,
    rcx: 0,
    rdx: 0,
    rbx: 0,
    rsp: 0x7000,
    rbp: 0,
    rsi: 0,
    rdi: 0,
    rip: 0x1000,
    rflags: 2,
    cr0: 0x8000_0011,
    cr3: 0x2000,
    cr4: 0x20,
    efer: 0x100,
};

fn op(w: &mut World, cmd: u32, vcpu: u64, arg: u64) -> i64 {
    w.ret(DOMU, nr::VCPU_OP, [cmd.into(), vcpu, arg, 0, 0])
}

fn initialise(w: &mut World, vcpu: u64, ctx: &VcpuHvmContext) -> i64 {
    w.put(DOMU, BUF, ctx);
    op(w, vc::VCPUOP_INITIALISE, vcpu, BUF)
}

#[test]
fn a_guest_brings_its_second_vcpu_up_and_down() {
    let mut w = World::new();
    let ctx = VcpuHvmContext::x86_64(&X86_64);
    assert_eq!(initialise(&mut w, 1, &ctx), 0);
    assert_eq!(
        op(&mut w, vc::VCPUOP_IS_UP, 1, 0),
        0,
        "initialise leaves it down"
    );
    assert_eq!(initialise(&mut w, 1, &ctx), e(Errno::EEXIST));
    assert_eq!(op(&mut w, vc::VCPUOP_UP, 1, 0), 0);
    assert_eq!(op(&mut w, vc::VCPUOP_IS_UP, 1, 0), 1);
    assert_eq!(
        w.domain(DOMU).vcpu(1).unwrap().run_state(),
        VcpuRunState::Runnable
    );
    assert_eq!(op(&mut w, vc::VCPUOP_UP, 1, 0), 0, "up twice");
    assert_eq!(op(&mut w, vc::VCPUOP_DOWN, 1, 0), 0);
    assert_eq!(op(&mut w, vc::VCPUOP_IS_UP, 1, 0), 0);
    assert_eq!(w.domain(DOMU).state(), DomainState::Running);
}

#[test]
fn the_last_vcpu_going_down_powers_the_domain_off() {
    let mut w = World::new();
    let out = w.call64(DOMU, nr::VCPU_OP, [vc::VCPUOP_DOWN.into(), 0, 0, 0, 0]);
    assert_eq!(out, HypercallOutcome::Shutdown(ShutdownReason::Poweroff));
    assert_eq!(
        w.domain(DOMU).state(),
        DomainState::Shutdown(ShutdownReason::Poweroff)
    );
}

#[test]
fn hostile_vcpu_ops_get_xens_errors_and_change_nothing() {
    let mut w = World::new();
    let good = VcpuHvmContext::x86_64(&X86_64);
    let bad_rip = VcpuHvmContext::x86_64(&VcpuHvmX86_64 {
        rip: 1 << 47,
        ..X86_64
    });
    let no_pae = VcpuHvmContext::x86_64(&VcpuHvmX86_64 { cr4: 0, ..X86_64 });
    let cr4_not_offered = VcpuHvmContext::x86_64(&VcpuHvmX86_64 {
        cr4: 0x20 | 1 << 21,
        ..X86_64
    });
    let null_cs = VcpuHvmContext::x86_32(&VcpuHvmX86_32::default());
    let mut bad_mode = good;
    bad_mode.mode = 7;
    for (what, ctx) in [
        ("non-canonical RIP", bad_rip),
        ("CR4.PAE clear", no_pae),
        ("CR4.SMAP not offered", cr4_not_offered),
        ("null CS", null_cs),
        ("mode", bad_mode),
    ] {
        assert_eq!(initialise(&mut w, 1, &ctx), e(Errno::EINVAL), "{what}");
    }
    assert_eq!(
        op(&mut w, vc::VCPUOP_INITIALISE, 1, UNMAPPED),
        e(Errno::EFAULT)
    );
    assert_eq!(
        op(&mut w, vc::VCPUOP_UP, 1, 0),
        e(Errno::EINVAL),
        "nothing stuck"
    );
    for id in [2u64, 8, u64::from(u32::MAX)] {
        for cmd in [vc::VCPUOP_INITIALISE, vc::VCPUOP_UP, vc::VCPUOP_DOWN] {
            assert_eq!(op(&mut w, cmd, id, BUF), e(Errno::ENOENT), "{cmd} {id}");
        }
    }
    // vCPU 0 runs: a second context for it is refused.
    assert_eq!(initialise(&mut w, 0, &good), e(Errno::EEXIST));
    // dom0's vCPU 1 is untouched by the guest's calls on "its" vCPU 1.
    assert_eq!(initialise(&mut w, 1, &good), 0);
    assert!(!w.domain(DOM0).vcpu(1).unwrap().is_initialised());
    assert_eq!(w.domain(DOMU).state(), DomainState::Running);
}

#[test]
fn a_32_bit_caller_initialises_a_32_bit_vcpu() {
    let mut w = World::new();
    let regs = VcpuHvmX86_32 {
        esp: 0x7000,
        ..VcpuHvmX86_32::pvh_entry(0x1000, 0)
    };
    w.put(DOMU, BUF, &VcpuHvmContext::x86_32(&regs));
    let init = [vc::VCPUOP_INITIALISE, 1, BUF as u32, 0, 0];
    assert_eq!(w.ret32(DOMU, nr::VCPU_OP as u32, init), 0);
    let entry = w.domain(DOMU).vcpu(1).unwrap().pending_context().copied();
    assert_eq!(entry.map(|e| (e.rip, e.gprs.rsp)), Some((0x1000, 0x7000)));
}

#[test]
fn send_nmi_latches_one_and_checks_its_argument() {
    let mut w = World::new();
    let ctx = VcpuHvmContext::x86_64(&X86_64);
    assert_eq!(initialise(&mut w, 1, &ctx), 0);
    assert_eq!(op(&mut w, vc::VCPUOP_UP, 1, 0), 0);
    w.t.get_mut(DOMU).unwrap().vcpu_mut(1).unwrap().block();
    // Xen's arch_do_vcpu_op: the argument must be a NULL handle.
    assert_eq!(op(&mut w, vc::VCPUOP_SEND_NMI, 1, BUF), e(Errno::EINVAL));
    assert!(!w.domain(DOMU).vcpu(1).unwrap().nmi_pending());
    assert_eq!(op(&mut w, vc::VCPUOP_SEND_NMI, 1, 0), 0);
    let v = w.domain(DOMU).vcpu(1).unwrap();
    assert!(v.nmi_pending());
    assert_eq!(v.run_state(), VcpuRunState::Runnable, "vcpu_kick unblocks");
    assert_eq!(op(&mut w, vc::VCPUOP_SEND_NMI, 1, 0), 0, "merges");
    assert_eq!(op(&mut w, vc::VCPUOP_SEND_NMI, 99, 0), e(Errno::ENOENT));
    // A down vCPU gets it latched but stays down (vcpu_kick only
    // unblocks).
    assert_eq!(op(&mut w, vc::VCPUOP_DOWN, 1, 0), 0);
    w.t.get_mut(DOMU).unwrap().vcpu_mut(1).unwrap().ack_nmi();
    assert_eq!(op(&mut w, vc::VCPUOP_SEND_NMI, 1, 0), 0);
    let v = w.domain(DOMU).vcpu(1).unwrap();
    assert!(v.nmi_pending());
    assert_eq!(v.run_state(), VcpuRunState::Down);
}
