//! `VCPUOP_get_runstate_info`, `VCPUOP_register_runstate_memory_area`
//! and `VCPUOP_stop_periodic_timer` (what Linux's `xen_time_init` asks).

use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::vcpu::{self as vc, VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo};

use super::super::sim::NOW;
use super::{e, World, BUF, BUF2, DOMU, UNMAPPED};

fn vcpu_op(w: &mut World, op: u32, vcpu: u64, arg: u64) -> i64 {
    w.ret(DOMU, nr::VCPU_OP, [op.into(), vcpu, arg, 0, 0])
}

#[test]
fn runstate_area_gets_the_callers_state_at_registration() {
    let mut w = World::new();
    w.put(DOMU, BUF, &VcpuRegisterRunstateMemoryArea { addr: BUF2 });
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, BUF),
        0
    );
    let info: VcpuRunstateInfo = w.get(DOMU, BUF2);
    assert_eq!(info.state, vc::RUNSTATE_RUNNING);
    assert_eq!(info.state_entry_time, NOW);
    assert_eq!(info.time[1..], [0, 0, 0]);
}

#[test]
fn runstate_of_another_vcpu_says_it_is_offline() {
    let mut w = World::new();
    assert_eq!(vcpu_op(&mut w, vc::VCPUOP_GET_RUNSTATE_INFO, 1, BUF), 0);
    let info: VcpuRunstateInfo = w.get(DOMU, BUF);
    assert_eq!(
        info.state,
        vc::RUNSTATE_OFFLINE,
        "vCPU 1 was never brought up"
    );
}

#[test]
fn runstate_32_bit_layout_is_44_bytes() {
    let mut w = World::new();
    // The compat struct ends exactly at the end of RAM: 48 bytes would fault.
    let at = UNMAPPED - 44;
    assert_eq!(
        w.ret32(DOMU, 24, [vc::VCPUOP_GET_RUNSTATE_INFO, 0, at as u32, 0, 0]),
        0
    );
    let words: [u32; 3] = w.get(DOMU, at);
    assert_eq!(words[0].cast_signed(), vc::RUNSTATE_RUNNING);
    assert_eq!(u64::from(words[1]) | u64::from(words[2]) << 32, NOW);
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_GET_RUNSTATE_INFO, 0, at),
        e(Errno::EFAULT),
        "the native 48 bytes do not fit"
    );
}

#[test]
fn hostile_runstate_requests_get_xens_answers() {
    let mut w = World::new();
    assert_eq!(
        vcpu_op(
            &mut w,
            vc::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            0,
            UNMAPPED
        ),
        e(Errno::EFAULT),
        "the argument itself is unreadable"
    );
    // An unmapped area is accepted, as Xen does (it may be mapped later).
    w.put(
        DOMU,
        BUF,
        &VcpuRegisterRunstateMemoryArea { addr: UNMAPPED },
    );
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, BUF),
        0
    );
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_GET_RUNSTATE_INFO, 0, UNMAPPED),
        e(Errno::EFAULT)
    );
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_GET_RUNSTATE_INFO, 99, BUF),
        e(Errno::ENOENT)
    );
}

#[test]
fn stopping_the_periodic_timer_succeeds_and_setting_it_is_unknown() {
    let mut w = World::new();
    assert_eq!(vcpu_op(&mut w, vc::VCPUOP_STOP_PERIODIC_TIMER, 0, 0), 0);
    assert_eq!(
        vcpu_op(&mut w, vc::VCPUOP_SET_PERIODIC_TIMER, 0, BUF),
        e(Errno::ENOSYS)
    );
}
