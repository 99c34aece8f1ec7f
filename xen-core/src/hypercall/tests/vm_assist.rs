//! `vm_assist` (Xen 4.17's `do_vm_assist` for an HVM/PVH guest) and the
//! runstate update flag it turns on.

use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::vcpu::{
    VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo, RUNSTATE_RUNNING,
    VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, XEN_RUNSTATE_UPDATE,
};
use abi::xen::vm_assist::{
    VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
};

use super::super::sim::NOW;
use super::{e, World, BUF, BUF2, DOM0, DOMU, UNMAPPED};

const FLAG: u64 = VMASST_TYPE_RUNSTATE_UPDATE_FLAG as u64;
const ENABLE: u64 = VMASST_CMD_ENABLE as u64;
const DISABLE: u64 = VMASST_CMD_DISABLE as u64;

fn vm_assist(w: &mut World, caller: u16, cmd: u64, kind: u64) -> i64 {
    w.ret(caller, nr::VM_ASSIST, [cmd, kind, 0, 0, 0])
}

fn register_runstate(w: &mut World, caller: u16, area: u64) -> i64 {
    w.put(caller, BUF, &VcpuRegisterRunstateMemoryArea { addr: area });
    let op = u64::from(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA);
    w.ret(caller, nr::VCPU_OP, [op, 0, BUF, 0, 0])
}

fn flag_on(w: &World, domid: u16) -> bool {
    w.domain(domid)
        .xen()
        .vm_assist(VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
}

#[test]
fn the_runstate_update_flag_is_granted_and_withdrawn() {
    let mut w = World::new();
    assert!(!flag_on(&w, DOMU), "off until asked for");
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
    assert!(flag_on(&w, DOMU));
    assert!(!flag_on(&w, DOM0), "per domain");
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0, "on already");
    assert_eq!(vm_assist(&mut w, DOMU, DISABLE, FLAG), 0);
    assert!(!flag_on(&w, DOMU));
    assert_eq!(vm_assist(&mut w, DOMU, DISABLE, FLAG), 0, "off already");
    // Both are C unsigned ints: the upper halves of the registers are
    // dropped.
    let high = 1 << 32;
    assert_eq!(vm_assist(&mut w, DOMU, high | ENABLE, high | FLAG), 0);
    assert!(flag_on(&w, DOMU));
    assert_eq!(vm_assist(&mut w, DOM0, ENABLE, FLAG), 0);
    assert!(flag_on(&w, DOM0));
}

#[test]
fn other_types_are_einval_before_the_command_is_looked_at() {
    let mut w = World::new();
    // The PV assists (0-4, m2p_strict 32), unassigned ones, and types
    // beyond the 64-bit assist word.
    for kind in [0, 1, 2, 3, 4, 6, 31, 32, 63, 64, 65, 0xffff_ffff] {
        for cmd in [ENABLE, DISABLE, 2, 0xffff_ffff] {
            assert_eq!(
                vm_assist(&mut w, DOMU, cmd, kind),
                e(Errno::EINVAL),
                "cmd {cmd} type {kind}"
            );
        }
    }
    assert!(!w.domain(DOMU).xen().vm_assist(0));
    assert!(!flag_on(&w, DOMU));
}

#[test]
fn an_unknown_command_on_the_valid_type_is_enosys() {
    let mut w = World::new();
    for cmd in [2, 3, 0xffff_ffff] {
        assert_eq!(
            vm_assist(&mut w, DOMU, cmd, FLAG),
            e(Errno::ENOSYS),
            "cmd {cmd}"
        );
    }
    assert!(!flag_on(&w, DOMU), "nothing changed");
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
    assert_eq!(vm_assist(&mut w, DOMU, 2, FLAG), e(Errno::ENOSYS));
    assert!(flag_on(&w, DOMU), "still on");
}

#[test]
fn from_32_bit_code_too() {
    let mut w = World::new();
    let call = |w: &mut World, cmd: u32| w.ret32(DOMU, 21, [cmd, 5, 0, 0, 0]);
    assert_eq!(call(&mut w, VMASST_CMD_ENABLE), 0);
    assert!(flag_on(&w, DOMU));
    assert_eq!(call(&mut w, 7), e(Errno::ENOSYS));
    assert_eq!(
        w.ret32(DOMU, 21, [VMASST_CMD_ENABLE, 32, 0, 0, 0]),
        e(Errno::EINVAL)
    );
}

#[test]
fn with_the_flag_on_the_area_ends_unflagged() {
    let mut w = World::new();
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
    assert_eq!(register_runstate(&mut w, DOMU, BUF2), 0);
    let info: VcpuRunstateInfo = w.get(DOMU, BUF2);
    assert_eq!(info.state, RUNSTATE_RUNNING);
    assert_eq!(info.state_entry_time & XEN_RUNSTATE_UPDATE, 0);
    assert_eq!(info.state_entry_time, NOW);
}

#[test]
fn with_the_flag_on_a_32_bit_area_ends_unflagged() {
    let mut w = World::new();
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
    w.put(DOMU, BUF, &VcpuRegisterRunstateMemoryArea { addr: BUF2 });
    w.put(DOMU, BUF2, &[0xaau8; 48]);
    assert_eq!(w.ret32(DOMU, 24, [5, 0, BUF as u32, 0, 0]), 0);
    let words: [u32; 3] = w.get(DOMU, BUF2);
    assert_eq!(words[0].cast_signed(), RUNSTATE_RUNNING);
    assert_eq!(u64::from(words[1]) | u64::from(words[2]) << 32, NOW);
    assert_eq!(w.bytes(DOMU, BUF2 + 44, 4), [0xaa; 4], "44 bytes only");
}

/// An area whose first 16 bytes are RAM and the rest beyond it: the
/// whole struct cannot be written (all or nothing), but the byte that
/// holds the flag (offset 15) can. Only the bracketing writes touch it,
/// and the last one leaves it clear.
#[test]
fn the_flag_byte_is_written_alone_around_the_struct() {
    let area = UNMAPPED - 16;
    for (on, byte_15) in [(false, 0xaa), (true, (NOW >> 56) as u8)] {
        let mut w = World::new();
        if on {
            assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
        }
        w.put(DOMU, area, &[0xaau8; 16]);
        assert_eq!(register_runstate(&mut w, DOMU, area), 0, "Xen ignores it");
        let seen = w.bytes(DOMU, area, 16);
        assert_eq!(
            seen[..15],
            [0xaa; 15],
            "flag {on}: the struct was not written"
        );
        assert_eq!(seen[15], byte_15, "flag {on}");
    }
}

/// An area 8 bytes below the top of the address space: its flag byte
/// (offset 15) would wrap to address 7, which is not part of it.
#[test]
fn an_area_at_the_top_of_the_address_space_writes_nothing() {
    let mut w = World::new();
    assert_eq!(vm_assist(&mut w, DOMU, ENABLE, FLAG), 0);
    w.put(DOMU, 0, &[0xaau8; 16]);
    assert_eq!(register_runstate(&mut w, DOMU, u64::MAX - 7), 0);
    assert_eq!(w.bytes(DOMU, 0, 16), [0xaa; 16]);
}
