//! `VCPUOP_get_runstate_info`, `VCPUOP_register_runstate_memory_area`
//! and `VCPUOP_stop_periodic_timer` (what Linux's `xen_time_init` asks).

use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::vcpu::{self as vc, VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo};

use abi::xen::vm_assist::{VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG};

use super::super::runstate_area::update_runstate_area;
use super::super::sim::NOW;
use super::{e, World, BUF, BUF2, DOMU, UNMAPPED};
use crate::paging::guest_walk::GuestPaging;

fn vcpu_op(w: &mut World, op: u32, vcpu: u64, arg: u64) -> i64 {
    w.ret(DOMU, nr::VCPU_OP, [op.into(), vcpu, arg, 0, 0])
}

/// Registers vCPU 0's runstate area at `addr`, which succeeds whether
/// or not anything is mapped there (as Xen).
fn register_area(w: &mut World, addr: u64) {
    w.put(DOMU, BUF, &VcpuRegisterRunstateMemoryArea { addr });
    assert_eq!(
        vcpu_op(w, vc::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, BUF),
        0
    );
}

#[test]
fn runstate_area_gets_the_callers_state_at_registration() {
    let mut w = World::new();
    register_area(&mut w, BUF2);
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

/// Xen's `vcpu_runstate_get`: the times the scheduler kept, the current
/// state's brought up to now; a vCPU no pCPU runs is first brought to
/// Xen's state for it (vCPU 1 is down: offline).
#[test]
fn get_runstate_info_counts_the_time_in_each_state() {
    let mut w = World::new();
    let r =
        w.t.get_mut(DOMU)
            .unwrap()
            .vcpu_mut(1)
            .unwrap()
            .runstate_mut();
    r.change(vc::RUNSTATE_RUNNING, NOW - 500);
    r.change(vc::RUNSTATE_RUNNABLE, NOW - 300);
    assert_eq!(vcpu_op(&mut w, vc::VCPUOP_GET_RUNSTATE_INFO, 1, BUF), 0);
    let info: VcpuRunstateInfo = w.get(DOMU, BUF);
    assert_eq!(info.state, vc::RUNSTATE_OFFLINE);
    assert_eq!(info.state_entry_time, NOW);
    assert_eq!(info.time, [200, 300, 0, 0]);
}

/// Xen's `update_runstate_area` at a switch: the registered area gets
/// the runstate as last changed, bracketed when the flag is on; an area
/// that is not mapped is left alone.
#[test]
fn a_switch_writes_the_registered_area() {
    let mut w = World::new();
    let enable = u64::from(VMASST_CMD_ENABLE);
    let flag = u64::from(VMASST_TYPE_RUNSTATE_UPDATE_FLAG);
    assert_eq!(w.ret(DOMU, nr::VM_ASSIST, [enable, flag, 0, 0, 0]), 0);
    register_area(&mut w, BUF2);
    let d = w.t.get_mut(DOMU).unwrap();
    d.vcpu_mut(0)
        .unwrap()
        .runstate_mut()
        .change(vc::RUNSTATE_RUNNABLE, NOW + 50);
    assert!(update_runstate_area(
        w.t.get(DOMU).unwrap(),
        &mut w.mem,
        0,
        || Some(GuestPaging::default())
    ));
    let info: VcpuRunstateInfo = w.get(DOMU, BUF2);
    assert_eq!(info.state, vc::RUNSTATE_RUNNABLE);
    assert_eq!(info.state_entry_time, NOW + 50, "flag cleared");
    assert_eq!(info.time, [50, 0, 0, 0]);
    // Moved where nothing is mapped: nothing written, no failure.
    register_area(&mut w, UNMAPPED);
    let before = w.ram(DOMU);
    assert!(!update_runstate_area(
        w.t.get(DOMU).unwrap(),
        &mut w.mem,
        0,
        || Some(GuestPaging::default())
    ));
    assert_eq!(w.ram(DOMU), before);
    // vCPU 1 registered none.
    assert!(!update_runstate_area(
        w.t.get(DOMU).unwrap(),
        &mut w.mem,
        1,
        || Some(GuestPaging::default())
    ));
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
    register_area(&mut w, UNMAPPED);
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
