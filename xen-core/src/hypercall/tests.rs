//! Every handler against simulated guest memory: two domains (dom0 and a
//! domU) with 32 pages of RAM at GFN 0, paging off (a pointer is its GPA
//! below 4 GiB), called through the door with either convention.

use crate::paging::npt::NPT_MAX_GFN;
use core::mem::offset_of;

use abi::control::{
    self as ctl, ControlHeader, DomainInfo, DomainRequest, ListRequest, ListResponse,
};
use abi::xen::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use abi::xen::domid::{DOMID_INVALID, DOMID_SELF};
use abi::xen::errno::Errno;
use abi::xen::hvm::{self as h, CallbackVia, XenHvmParam};
use abi::xen::hypercall as nr;
use abi::xen::memory::{self as m, E820Entry, XenAddToPhysmap, XenMemoryMap};
use abi::xen::sched::{
    SchedRemoteShutdown, SchedShutdown, SCHEDOP_BLOCK, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN,
    SCHEDOP_YIELD,
};
use abi::xen::shared_info::{SharedInfo, VcpuInfo, XEN_PVCLOCK_TSC_STABLE_BIT};
use abi::xen::start_info::HvmMemmapEntry;
use abi::xen::vcpu::{self as vc, VcpuRegisterVcpuInfo, VcpuSetSingleshotTimer};
use abi::xen::version::{self as ver, XenCompileInfo, XenFeatureInfo};
use zerocopy::{Immutable, IntoBytes};

use super::*;
use crate::domain::vcpu::{VcpuEntryState, VcpuRunState};
use crate::domain::xen_state::{VcpuInfoArea, DOMU_CONSOLE_BURST_BYTES};
use crate::domain::{DomainConfig, DomainState};
use crate::mm::Gfn;
use crate::paging::npt::P2mKind;
use crate::ratelimit::RateLimit;
use crate::vmexit::Gpr;

mod control_domain;
mod evtchn;
mod foreign_batch;
mod runstate;
mod unserved;
mod vcpu_up;
mod vm_assist;

use super::sim::NOW;
pub(super) use super::sim::{e, World, BUF, BUF2, DOM0, DOMU, RAM_PAGES, TOTAL_FRAMES, UNMAPPED};

fn cstr(field: &[u8]) -> &str {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).unwrap()
}

/// Calls control op `op` from `caller` with `request` at `BUF` and the
/// response at `BUF2`, followed through its continuations.
pub(super) fn control_call<T: IntoBytes + Immutable + ?Sized>(
    w: &mut World,
    caller: DomId,
    op: u32,
    request: &T,
) -> HypercallOutcome {
    w.put(caller, BUF, request);
    let out = w.call64(
        caller,
        ctl::HYPERVISOR_CONTROL_OP,
        [op.into(), BUF, BUF2, 0, 0],
    );
    w.follow(caller, out, true).0
}

/// The value a control op returned (0 for the outcomes that carry news).
pub(super) fn control_rc<T: IntoBytes + Immutable + ?Sized>(
    w: &mut World,
    caller: DomId,
    op: u32,
    request: &T,
) -> i64 {
    match control_call(w, caller, op, request) {
        HypercallOutcome::Return(v) => v,
        HypercallOutcome::DomainDestroyed(_) | HypercallOutcome::VcpuStarted { .. } => 0,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// [`control_rc`] of control op `op` on `domid` ([`DomainRequest`]).
pub(super) fn domain_op(w: &mut World, caller: DomId, op: u32, domid: DomId) -> i64 {
    control_rc(w, caller, op, &DomainRequest::new(domid))
}

// ---- the door ----

#[test]
fn sysctl_and_domctl_answer_in_xens_order() {
    use abi::xen::ctl::{XenCtlHeader, XEN_DOMCTL_INTERFACE_VERSION, XEN_SYSCTL_INTERFACE_VERSION};
    let mut w = World::new();
    for (n, version) in [
        (nr::SYSCTL, XEN_SYSCTL_INTERFACE_VERSION),
        (nr::DOMCTL, XEN_DOMCTL_INTERFACE_VERSION),
    ] {
        assert_eq!(w.ret(DOMU, n, [UNMAPPED, 0, 0, 0, 0]), e(Errno::EFAULT));
        for (caller, right_version) in [(DOMU, Errno::EPERM), (DOM0, Errno::ENOSYS)] {
            for wrong in [0, version - 1, version + 1, u32::MAX] {
                let header = XenCtlHeader {
                    cmd: 0,
                    interface_version: wrong,
                };
                w.put(caller, BUF, &header);
                assert_eq!(w.ret(caller, n, [BUF, 0, 0, 0, 0]), e(Errno::EACCES));
            }
            // XTF's livepatch-priv-check: any cmd, the right version.
            for cmd in [0, 1, 27, u32::MAX] {
                let header = XenCtlHeader {
                    cmd,
                    interface_version: version,
                };
                w.put(caller, BUF, &header);
                assert_eq!(w.ret(caller, n, [BUF, 0, 0, 0, 0]), e(right_version));
            }
        }
    }
}

#[test]
fn unknown_hypercalls_are_nosys_and_counted() {
    let mut w = World::new();
    for n in [nr::SET_TRAP_TABLE, nr::PHYSDEV_OP, 63, 64, u64::MAX] {
        assert_eq!(w.ret(DOMU, n, [0; 5]), e(Errno::ENOSYS), "hypercall {n}");
    }
    let counted: Vec<_> = w.domain(DOMU).hypercalls().iter().collect();
    assert_eq!(counted, [(0, 1), (33, 1), (63, 1)]);
    assert_eq!(w.domain(DOMU).hypercalls().other(), 2);
}

#[test]
fn user_mode_callers_get_eperm() {
    let mut w = World::new();
    let regs = HypercallRegs {
        rax: nr::XEN_VERSION,
        long_mode: true,
        cpl: 3,
        ..HypercallRegs::default()
    };
    assert_eq!(
        w.call(DOMU, regs),
        HypercallOutcome::Return(e(Errno::EPERM))
    );
    assert_eq!(
        w.domain(DOMU).hypercalls().iter().collect::<Vec<_>>(),
        [(17, 1)]
    );
}

#[test]
fn an_unknown_caller_is_esrch() {
    let mut w = World::new();
    assert_eq!(w.ret(77, nr::XEN_VERSION, [0; 5]), e(Errno::ESRCH));
}

#[test]
fn outcome_rax() {
    assert_eq!(HypercallOutcome::Return(-38).rax(), (-38i64) as u64);
    assert_eq!(HypercallOutcome::Block.rax(), 0);
}

// ---- xen_version ----

#[test]
fn xen_version_sub_ops() {
    let mut w = World::new();
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [0; 5]), 0x0004_0013);
    assert_eq!(
        w.ret32(DOMU, 17, [ver::XENVER_VERSION, 0, 0, 0, 0]),
        0x0004_0013
    );
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [7, 0, 0, 0, 0]), 4096);
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [1, BUF, 0, 0, 0]), 0);
    assert_eq!(cstr(&w.bytes(DOMU, BUF, 16)), ".0-xen-core");
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [2, BUF, 0, 0, 0]), 0);
    let info: XenCompileInfo = w.get(DOMU, BUF);
    assert_eq!(cstr(&info.compiler), "rustc");
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [3, BUF2, 0, 0, 0]), 0);
    assert!(cstr(&w.bytes(DOMU, BUF2, 1024)).starts_with("hvm-3.0-x86_64"));
    // Changeset, platform parameters and guest handle, as Xen's kernel.c.
    w.put(DOMU, BUF, &[0xffu8; 64]);
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [4, BUF, 0, 0, 0]), 0);
    let changeset = w.bytes(DOMU, BUF, 64);
    assert_eq!(cstr(&changeset), "unavailable");
    assert!(changeset[11..].iter().all(|b| *b == 0), "NUL-padded");
    w.put(DOMU, BUF, &[0xffu8; 24]);
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [5, BUF, 0, 0, 0]), 0);
    assert_eq!(w.bytes(DOMU, BUF, 9), [0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    w.put(DOMU, BUF, &[0xffu8; 24]);
    assert_eq!(w.ret32(DOMU, 17, [5, BUF as u32, 0, 0, 0]), 0);
    let compat = w.bytes(DOMU, BUF, 5);
    assert_eq!(compat, [0, 0, 0, 0, 0xff], "4 bytes for a 32-bit caller");
    assert_eq!(w.ret(DOMU, nr::XEN_VERSION, [8, BUF, 0, 0, 0]), 0);
    assert_eq!(w.bytes(DOMU, BUF, 17), [&[0u8; 16][..], &[0xff]].concat());
    for cmd in [11u64, 12, 13, 14, 99] {
        assert_eq!(
            w.ret(DOMU, nr::XEN_VERSION, [cmd, BUF, 0, 0, 0]),
            e(Errno::ENOSYS),
            "cmd {cmd}"
        );
    }
    // `cmd` is a C int: the upper bits are dropped.
    assert_eq!(
        w.ret(DOMU, nr::XEN_VERSION, [1 << 32, 0, 0, 0, 0]),
        0x0004_0013
    );
}

#[test]
fn features_are_honest_and_dom0_is_marked() {
    let mut w = World::new();
    let ask = |w: &mut World, domid, idx| {
        w.put(
            domid,
            BUF,
            &XenFeatureInfo {
                submap_idx: idx,
                submap: 0xffff_ffff,
            },
        );
        let r = w.ret(domid, nr::XEN_VERSION, [6, BUF, 0, 0, 0]);
        (r, w.get::<XenFeatureInfo>(domid, BUF).submap)
    };
    let base = 1 << ver::XENFEAT_AUTO_TRANSLATED_PHYSMAP
        | 1 << ver::XENFEAT_HVM_SAFE_PVCLOCK
        | 1 << ver::XENFEAT_HVM_CALLBACK_VECTOR;
    assert_eq!(ask(&mut w, DOMU, 0), (0, base));
    assert_eq!(ask(&mut w, DOM0, 0), (0, base | 1 << ver::XENFEAT_DOM0));
    assert_eq!(
        ask(&mut w, DOMU, 1),
        (e(Errno::EINVAL), 0xffff_ffff),
        "unchanged"
    );
}

#[test]
fn xen_version_bad_pointers_fault_and_change_nothing() {
    let mut w = World::new();
    let before = w.ram(DOMU);
    // Crosses from the last RAM page into nothing.
    let edge = UNMAPPED - 8;
    for (cmd, at) in [
        (1u64, edge),
        (2, edge),
        (3, UNMAPPED),
        (6, u64::MAX - 3),
        (1, 1 << 40),
        (4, edge),
        (5, UNMAPPED - 4),
        (8, edge),
    ] {
        assert_eq!(
            w.ret(DOMU, nr::XEN_VERSION, [cmd, at, 0, 0, 0]),
            e(Errno::EFAULT),
            "cmd {cmd} at {at:#x}"
        );
    }
    assert!(w.ram(DOMU) == before);
}

// ---- console_io ----

#[test]
fn console_write_prints_whole_lines_tagged_with_the_domain() {
    let mut w = World::new();
    let msg = b"hello\nwor\x1b[2J\r\tx";
    w.phys(DOMU).write(BUF, msg).unwrap();
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [0, msg.len() as u64, BUF, 0, 0]),
        0
    );
    w.phys(DOMU).write(BUF2, b"ld\n").unwrap();
    // 32-bit: EBX = cmd, ECX = count, EDX = buffer.
    assert_eq!(
        w.ret32(DOMU, 18, [CONSOLEIO_WRITE, 3, BUF2 as u32, 0, 0]),
        0
    );
    assert_eq!(
        w.env.lines,
        [
            (DOMU, "guest".to_string(), "hello".to_string()),
            (DOMU, "guest".to_string(), "wor?[2J\txld".to_string())
        ]
    );
    assert_eq!(
        w.ret(DOM0, nr::CONSOLE_IO, [0, 0, 0, 0, 0]),
        0,
        "empty write"
    );
}

#[test]
fn console_write_splits_long_lines() {
    let mut w = World::new();
    let long = vec![b'a'; CONSOLE_WRITE_MAX as usize];
    w.phys(DOMU).write(BUF, &long).unwrap();
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [0, long.len() as u64, BUF, 0, 0]),
        0
    );
    let max = crate::domain::xen_state::CONSOLE_LINE_MAX;
    assert_eq!(w.env.lines.len(), long.len() / max - 1);
    assert!(w.env.lines.iter().all(|(_, _, l)| l.len() == max));
    assert_eq!(
        w.domain(DOMU).xen().console_line.len(),
        max,
        "the rest waits for a newline"
    );
}

#[test]
fn long_console_writes_continue_in_pieces() {
    let mut w = World::new();
    // This test is about pieces, not the output budget.
    w.t.get_mut(DOMU).unwrap().xen_mut().console_limit = RateLimit::new(u64::MAX, 0);
    let max = u64::from(CONSOLE_WRITE_MAX);
    let text: Vec<u8> = (0..2 * max + 10)
        .map(|i| if i % 64 == 63 { b'\n' } else { b'a' })
        .collect();
    w.phys(DOMU).write(BUF, &text).unwrap();
    let count = text.len() as u64;
    let HypercallOutcome::Continue(c) = w.call64(DOMU, nr::CONSOLE_IO, [0, count, BUF, 0, 0])
    else {
        panic!("a write longer than CONSOLE_WRITE_MAX continues");
    };
    let regs = c.registers();
    assert_eq!(regs[0], (Gpr::Rax, nr::CONSOLE_IO));
    assert_eq!(regs[2], (Gpr::Rsi, count - max));
    assert_eq!(regs[3], (Gpr::Rdx, BUF + max));
    assert_eq!(
        w.env.lines.len() as u64,
        max / 64,
        "the first piece is printed"
    );
    assert_eq!(w.ret(DOMU, nr::CONSOLE_IO, [0, count, BUF, 0, 0]), 0);
    // `count` is 32 bits: a huge write prints pieces up to the end of RAM,
    // then faults, as Xen's guest_console_write does.
    let before = w.env.lines.len();
    let from = UNMAPPED - 2 * max;
    w.phys(DOMU).write(from, b"tail\n").unwrap();
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [0, u64::from(u32::MAX), from, 0, 0]),
        e(Errno::EFAULT)
    );
    // The first write's last 10 bytes were an unfinished line.
    let line = (DOMU, "guest".into(), "aaaaaaaaaatail".into());
    assert_eq!(w.env.lines[before..], [line]);
}

#[test]
fn domu_console_output_is_bounded_per_time_window() {
    let mut w = World::new();
    // 100 lines of 99 bytes + newline: the burst allows 81 of them.
    let text: Vec<u8> = (0..100 * 100)
        .map(|i| if i % 100 == 99 { b'\n' } else { b'x' })
        .collect();
    w.phys(DOMU).write(BUF, &text).unwrap();
    w.phys(DOM0).write(BUF, &text).unwrap();
    let count = text.len() as u64;
    let write = |w: &mut World, domid| {
        for piece in text.chunks(CONSOLE_WRITE_MAX as usize).enumerate() {
            let at = BUF + (piece.0 * CONSOLE_WRITE_MAX as usize) as u64;
            let args = [0, piece.1.len() as u64, at, 0, 0];
            assert_eq!(w.ret(domid, nr::CONSOLE_IO, args), 0);
        }
    };
    write(&mut w, DOMU);
    let burst = (DOMU_CONSOLE_BURST_BYTES / 100) as usize;
    assert_eq!(w.env.lines.len(), burst);
    // dom0 is not limited.
    write(&mut w, DOM0);
    assert_eq!(w.env.lines.len(), burst + 100);
    // A second later, 1 000 more bytes: 10 lines.
    w.env.tsc += 1_000_000_000;
    w.phys(DOMU).write(BUF, &text[..count as usize]).unwrap();
    write(&mut w, DOMU);
    assert_eq!(w.env.lines.len(), burst + 100 + 10);
}

#[test]
fn console_write_refuses_bad_buffers_before_printing() {
    let mut w = World::new();
    w.phys(DOMU).write(UNMAPPED - 4, b"ok\nX").unwrap();
    let cases = [
        (8, UNMAPPED - 4, Errno::EFAULT),  // runs off the end of RAM
        (16, u64::MAX - 8, Errno::EFAULT), // wraps
        (4, 1 << 40, Errno::EFAULT),       // beyond 4 GiB with paging off
    ];
    for (count, buf, want) in cases {
        assert_eq!(
            w.ret(DOMU, nr::CONSOLE_IO, [0, count, buf, 0, 0]),
            e(want),
            "{count} at {buf:#x}"
        );
    }
    assert!(w.env.lines.is_empty());
    assert!(w.domain(DOMU).xen().console_line.is_empty());
    // `count` is a C unsigned int: upper bits are dropped.
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [0, 1 << 32 | 3, UNMAPPED - 4, 0, 0]),
        0
    );
    assert_eq!(w.env.lines, [(DOMU, "guest".into(), "ok".into())]);
}

#[test]
fn console_read_is_dom0_only() {
    let mut w = World::new();
    w.env.input = b"abc".to_vec();
    let before = w.ram(DOMU);
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [1, 16, BUF, 0, 0]),
        e(Errno::EPERM)
    );
    assert_eq!(
        w.ret32(DOMU, 18, [CONSOLEIO_READ, 16, BUF as u32, 0, 0]),
        e(Errno::EPERM)
    );
    assert!(w.ram(DOMU) == before);
    // A bad buffer takes no input.
    assert_eq!(
        w.ret(DOM0, nr::CONSOLE_IO, [1, 16, UNMAPPED - 2, 0, 0]),
        e(Errno::EFAULT)
    );
    assert_eq!(w.env.input, b"abc");
    assert_eq!(w.ret(DOM0, nr::CONSOLE_IO, [1, 2, BUF, 0, 0]), 2);
    assert_eq!(w.bytes(DOM0, BUF, 3), b"ab\0");
    assert_eq!(w.ret(DOM0, nr::CONSOLE_IO, [1, 16, BUF, 0, 0]), 1);
    assert_eq!(w.ret(DOM0, nr::CONSOLE_IO, [1, 16, BUF, 0, 0]), 0);
    assert_eq!(
        w.ret(DOM0, nr::CONSOLE_IO, [2, 16, BUF, 0, 0]),
        e(Errno::ENOSYS)
    );
    assert_eq!(
        w.ret(DOMU, nr::CONSOLE_IO, [2, 16, BUF, 0, 0]),
        e(Errno::ENOSYS)
    );
}

// ---- sched_op ----

#[test]
fn yield_and_block() {
    let mut w = World::new();
    assert_eq!(
        w.call64(DOMU, nr::SCHED_OP, [SCHEDOP_YIELD.into(), 0, 0, 0, 0]),
        HypercallOutcome::Yield
    );
    // The guest masked upcalls; blocking unmasks them.
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[1] = 1;
    assert_eq!(
        w.call64(DOMU, nr::SCHED_OP, [SCHEDOP_BLOCK.into(), 0, 0, 0, 0]),
        HypercallOutcome::Block
    );
    let d = w.domain(DOMU);
    assert_eq!(d.vcpu(0).unwrap().run_state(), VcpuRunState::Blocked);
    assert_eq!(
        w.mem.frame(d.shared_info_mfn())[1],
        0,
        "evtchn_upcall_mask cleared"
    );
}

#[test]
fn block_with_an_upcall_pending_returns_at_once() {
    let mut w = World::new();
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[0] = 1;
    assert_eq!(
        w.call32(DOMU, 29, [SCHEDOP_BLOCK, 0, 0, 0, 0]),
        HypercallOutcome::Return(0)
    );
    assert_eq!(
        w.domain(DOMU).vcpu(0).unwrap().run_state(),
        VcpuRunState::Runnable
    );
}

#[test]
fn dom0_shuts_a_domu_down_remotely() {
    let mut w = World::new();
    w.put(
        DOM0,
        BUF,
        &SchedRemoteShutdown {
            domain_id: 77,
            reason: 0,
            ..Default::default()
        },
    );
    let op = [SCHEDOP_REMOTE_SHUTDOWN.into(), BUF, 0, 0, 0];
    assert_eq!(w.ret(DOM0, nr::SCHED_OP, op), e(Errno::ESRCH));
    w.put(
        DOM0,
        BUF,
        &SchedRemoteShutdown {
            domain_id: DOMU,
            reason: 0,
            ..Default::default()
        },
    );
    assert_eq!(w.ret(DOM0, nr::SCHED_OP, op), 0);
    assert_eq!(
        w.domain(DOMU).state(),
        DomainState::Shutdown(ShutdownReason::Poweroff)
    );
}

#[test]
fn shutdown_reads_the_reason() {
    let mut w = World::new();
    w.put(DOMU, BUF, &SchedShutdown { reason: 9 });
    assert_eq!(
        w.ret(DOMU, nr::SCHED_OP, [SCHEDOP_SHUTDOWN.into(), BUF, 0, 0, 0]),
        e(Errno::EINVAL)
    );
    assert_eq!(
        w.ret(
            DOMU,
            nr::SCHED_OP,
            [SCHEDOP_SHUTDOWN.into(), UNMAPPED, 0, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert_eq!(w.domain(DOMU).state(), DomainState::Running);
    assert_eq!(
        w.ret(
            DOMU,
            nr::SCHED_OP,
            [SCHEDOP_REMOTE_SHUTDOWN.into(), BUF, 0, 0, 0]
        ),
        e(Errno::EPERM),
        "dom0 only"
    );
    w.put(DOMU, BUF, &SchedShutdown { reason: 3 });
    assert_eq!(
        w.call32(DOMU, 29, [SCHEDOP_SHUTDOWN, BUF as u32, 0, 0, 0]),
        HypercallOutcome::Shutdown(ShutdownReason::Crash)
    );
    assert_eq!(
        w.domain(DOMU).state(),
        DomainState::Shutdown(ShutdownReason::Crash)
    );
    w.put(DOM0, BUF, &SchedShutdown { reason: 0 });
    assert_eq!(
        w.call64(DOM0, nr::SCHED_OP, [SCHEDOP_SHUTDOWN.into(), BUF, 0, 0, 0]),
        HypercallOutcome::Shutdown(ShutdownReason::Poweroff)
    );
}

// ---- timers ----

fn deadline(w: &World, domid: DomId, vcpu: u32) -> Option<u64> {
    w.domain(domid).vcpu(vcpu).unwrap().timer_deadline_ns()
}

#[test]
fn set_timer_op() {
    let mut w = World::new();
    assert_eq!(w.ret(DOMU, nr::SET_TIMER_OP, [NOW + 500, 0, 0, 0, 0]), 0);
    assert_eq!(deadline(&w, DOMU, 0), Some(NOW + 500));
    assert_eq!(w.ret(DOMU, nr::SET_TIMER_OP, [0; 5]), 0);
    assert_eq!(deadline(&w, DOMU, 0), None);
    // Negative, or 2^50 ns ahead: fires now (Xen's Linux workaround).
    for t in [(-5i64) as u64, NOW + (1 << 50)] {
        w.ret(DOMU, nr::SET_TIMER_OP, [t, 0, 0, 0, 0]);
        assert_eq!(deadline(&w, DOMU, 0), Some(NOW));
    }
    // 32-bit: EBX low half, ECX high half.
    let at: u64 = 0x1_0000_0005;
    assert_eq!(
        w.ret32(DOMU, 15, [at as u32, (at >> 32) as u32, 0, 0, 0]),
        0
    );
    assert_eq!(deadline(&w, DOMU, 0), Some(at));
}

#[test]
fn singleshot_timer() {
    let mut w = World::new();
    let set = |w: &mut World, at, flags| {
        w.put(
            DOMU,
            BUF,
            &VcpuSetSingleshotTimer {
                timeout_abs_ns: at,
                flags,
                pad0: 0,
            },
        );
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_SET_SINGLESHOT_TIMER.into(), 0, BUF, 0, 0],
        )
    };
    assert_eq!(
        set(&mut w, NOW - 1, vc::VCPU_SSHOTTMR_FUTURE),
        e(Errno::ETIME)
    );
    assert_eq!(deadline(&w, DOMU, 0), None);
    assert_eq!(
        set(&mut w, NOW - 1, 0),
        0,
        "a past timer without the flag fires"
    );
    assert_eq!(deadline(&w, DOMU, 0), Some(NOW - 1));
    assert_eq!(set(&mut w, NOW + 9, vc::VCPU_SSHOTTMR_FUTURE), 0);
    assert_eq!(deadline(&w, DOMU, 0), Some(NOW + 9));
    // Only on the caller's own vCPU.
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_SET_SINGLESHOT_TIMER.into(), 1, BUF, 0, 0]
        ),
        e(Errno::EINVAL)
    );
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_STOP_SINGLESHOT_TIMER.into(), 1, 0, 0, 0]
        ),
        e(Errno::EINVAL)
    );
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_SET_SINGLESHOT_TIMER.into(), 0, UNMAPPED, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert_eq!(deadline(&w, DOMU, 0), Some(NOW + 9));
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_STOP_SINGLESHOT_TIMER.into(), 0, 0, 0, 0]
        ),
        0
    );
    assert_eq!(deadline(&w, DOMU, 0), None);
}

#[test]
fn singleshot_timer_from_32_bit_code_reads_12_bytes() {
    let mut w = World::new();
    // The compat struct ends exactly at the end of RAM: 16 bytes would fault.
    let at = UNMAPPED - 12;
    let t = NOW + 0x1_0000_0000;
    let words = [t as u32, (t >> 32) as u32, 0];
    w.phys(DOMU).write(at, words.as_bytes()).unwrap();
    assert_eq!(
        w.ret32(
            DOMU,
            24,
            [vc::VCPUOP_SET_SINGLESHOT_TIMER, 0, at as u32, 0, 0]
        ),
        0
    );
    assert_eq!(deadline(&w, DOMU, 0), Some(t));
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_SET_SINGLESHOT_TIMER.into(), 0, at, 0, 0]
        ),
        e(Errno::EFAULT)
    );
}

// ---- vcpu_op ----

#[test]
fn vcpu_ids_are_checked_before_sub_ops() {
    let mut w = World::new();
    assert_eq!(
        w.ret(DOMU, nr::VCPU_OP, [vc::VCPUOP_IS_UP.into(), 0, 0, 0, 0]),
        1
    );
    assert_eq!(
        w.ret(DOMU, nr::VCPU_OP, [vc::VCPUOP_IS_UP.into(), 1, 0, 0, 0]),
        0
    );
    for id in [2u64, 8, u64::from(u32::MAX)] {
        assert_eq!(
            w.ret(DOMU, nr::VCPU_OP, [vc::VCPUOP_IS_UP.into(), id, 0, 0, 0]),
            e(Errno::ENOENT)
        );
        assert_eq!(
            w.ret(DOMU, nr::VCPU_OP, [99, id, 0, 0, 0]),
            e(Errno::ENOENT)
        );
    }
    assert_eq!(w.ret(DOMU, nr::VCPU_OP, [99, 0, 0, 0, 0]), e(Errno::ENOSYS));
    assert_eq!(
        w.ret(DOMU, nr::VCPU_OP, [vc::VCPUOP_UP.into(), 1, 0, 0, 0]),
        e(Errno::EINVAL),
        "up before initialise"
    );
}

fn register(w: &mut World, vcpu: u64, mfn: u64, offset: u32, rsvd: u32) -> i64 {
    w.put(DOMU, BUF, &VcpuRegisterVcpuInfo { mfn, offset, rsvd });
    w.ret(
        DOMU,
        nr::VCPU_OP,
        [vc::VCPUOP_REGISTER_VCPU_INFO.into(), vcpu, BUF, 0, 0],
    )
}

#[test]
fn register_vcpu_info_validates_and_moves_the_area() {
    let mut w = World::new();
    // Give the guest its shared info at GFN 20 (a Shared frame, not RAM).
    let xatp = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: m::XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: 20,
    };
    w.put(DOMU, BUF2, &xatp);
    assert_eq!(
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [m::XENMEM_ADD_TO_PHYSMAP.into(), BUF2, 0, 0, 0]
        ),
        0
    );
    let before = w.ram(DOMU);
    for (mfn, offset, rsvd, errno) in [
        (7, 4040, 0, Errno::ENXIO),
        (7, 4, 0, Errno::ENXIO),
        (7, 4096, 0, Errno::EINVAL),
        (7, u32::MAX, 0, Errno::EINVAL),
        (7, 0, 1, Errno::EINVAL),
        (RAM_PAGES, 0, 0, Errno::EINVAL),
        (20, 0, 0, Errno::EINVAL),
        (u64::MAX, 0, 0, Errno::EINVAL),
    ] {
        assert_eq!(
            register(&mut w, 0, mfn, offset, rsvd),
            e(errno),
            "{mfn} {offset} {rsvd}"
        );
    }
    assert_eq!(
        w.ret(
            DOMU,
            nr::VCPU_OP,
            [vc::VCPUOP_REGISTER_VCPU_INFO.into(), 0, UNMAPPED, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert!(
        w.ram(DOMU)[..BUF as usize] == before[..BUF as usize]
            && w.ram(DOMU)[BUF as usize + 16..] == before[BUF as usize + 16..]
    );
    // The guest had masked upcalls in its old slot: the mask moves along.
    let si = w.domain(DOMU).shared_info_mfn();
    w.mem.frame_mut(si)[1] = 1;
    assert_eq!(register(&mut w, 0, 7, 4032, 0), 0);
    assert_eq!(
        w.domain(DOMU).xen().vcpu_info[0],
        Some(VcpuInfoArea {
            gfn: Gfn(7),
            offset: 4032
        })
    );
    let info: VcpuInfo = w.get(DOMU, 7 * 4096 + 4032);
    assert_eq!(info.evtchn_upcall_mask, 1);
    // Copied at version 2 (published when shared info was mapped), then updated.
    assert_eq!(
        (
            info.time.version,
            info.time.system_time,
            info.time.tsc_timestamp
        ),
        (4, NOW, NOW)
    );
    assert_eq!(info.time.flags, XEN_PVCLOCK_TSC_STABLE_BIT);
    assert_eq!(
        register(&mut w, 0, 8, 0, 0),
        e(Errno::EBUSY),
        "already registered"
    );
    // Blocking now clears the mask in the new area.
    assert_eq!(
        w.call64(DOMU, nr::SCHED_OP, [SCHEDOP_BLOCK.into(), 0, 0, 0, 0]),
        HypercallOutcome::Block
    );
    assert_eq!(
        w.get::<VcpuInfo>(DOMU, 7 * 4096 + 4032).evtchn_upcall_mask,
        0
    );
}

#[test]
fn register_vcpu_info_for_other_vcpus_only_while_down() {
    let mut w = World::new();
    assert_eq!(register(&mut w, 1, 9, 64, 0), 0, "vCPU 1 is down");
    w.t.get_mut(DOMU)
        .unwrap()
        .vcpu_mut(1)
        .unwrap()
        .start(VcpuEntryState::default());
    w.t.get_mut(DOMU).unwrap().xen_mut().vcpu_info[1] = None;
    assert_eq!(
        register(&mut w, 1, 9, 64, 0),
        e(Errno::EINVAL),
        "vCPU 1 runs"
    );
}

// ---- memory_op ----

/// `XENMEM_decrease_reservation` of `gfns` (extents of `order`) for
/// `domid`, called by `caller`: its return value. The list sits at BUF2.
fn decrease(w: &mut World, caller: DomId, domid: DomId, order: u32, gfns: &[u64]) -> i64 {
    reservation(
        w,
        m::XENMEM_DECREASE_RESERVATION,
        caller,
        domid,
        order,
        0,
        gfns,
    )
}

/// A `memory_op` reservation sub-op `cmd` of `gfns` (extents of `order`,
/// `mem_flags` = `flags`) for `domid`, called by `caller`.
fn reservation(
    w: &mut World,
    cmd: u32,
    caller: DomId,
    domid: DomId,
    order: u32,
    flags: u32,
    gfns: &[u64],
) -> i64 {
    w.put(caller, BUF2, gfns);
    let r = m::XenMemoryReservation {
        extent_start: BUF2,
        nr_extents: gfns.len() as u64,
        extent_order: order,
        mem_flags: flags,
        domid,
        ..Default::default()
    };
    w.put(caller, BUF, &r);
    w.ret(caller, nr::MEMORY_OP, [cmd.into(), BUF, 0, 0, 0])
}

/// `XENMEM_populate_physmap` of `gfns` in extents of `order` for the
/// domU itself.
fn populate(w: &mut World, order: u32, flags: u32, gfns: &[u64]) -> i64 {
    let cmd = m::XENMEM_POPULATE_PHYSMAP;
    reservation(w, cmd, DOMU, DOMID_SELF, order, flags, gfns)
}

#[test]
fn populate_physmap_balloons_back_in_within_the_maximum() {
    let mut w = World::new();
    let free = w.pool.free_frames();
    w.put(DOMU, 20 << 12, &0x5a5a_5a5a_u64);
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[20]), 1);
    // Back in: a fresh, zeroed frame; the pool and the count follow.
    assert_eq!(populate(&mut w, 0, 0, &[20]), 1);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES);
    assert_eq!(w.pool.free_frames(), free);
    assert_eq!(w.get::<u64>(DOMU, 20 << 12), 0);
    // Populated already, beyond the p2m, unaligned for its order: the
    // extents before it are done, then it stops.
    assert_eq!(populate(&mut w, 0, 0, &[RAM_PAGES, 3]), 1);
    assert_eq!(populate(&mut w, 0, 0, &[NPT_MAX_GFN + 1]), 0);
    assert_eq!(populate(&mut w, 0, 0, &[u64::MAX]), 0);
    assert_eq!(populate(&mut w, 1, 0, &[RAM_PAGES + 3]), 0);
    assert_eq!(populate(&mut w, 1, 0, &[RAM_PAGES + 2]), 1);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES + 3);
    // Past max_pages (64): nothing of the extent that does not fit.
    assert_eq!(populate(&mut w, 5, 0, &[64]), 0);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES + 3);
    // Address bits are accepted; populate-on-demand is not served.
    assert_eq!(populate(&mut w, 0, 32, &[RAM_PAGES + 8]), 1);
    assert_eq!(populate(&mut w, 0, 1 << 16, &[RAM_PAGES + 9]), 0);
    let big = crate::hypercall::memory::DOMU_MAX_ORDER + 1;
    assert_eq!(populate(&mut w, big, 0, &[1 << big]), 0);
    // Another domain: dom0 may, a domU may not.
    let cmd = m::XENMEM_POPULATE_PHYSMAP;
    assert_eq!(reservation(&mut w, cmd, DOMU, DOM0, 0, 0, &[9000]), 0);
    assert_eq!(reservation(&mut w, cmd, DOM0, DOMU, 0, 0, &[41]), 1);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES + 5);
}

#[test]
fn current_and_maximum_reservation() {
    let mut w = World::new();
    let ask = |w: &mut World, caller, cmd: u32, domid: DomId| {
        w.put(caller, BUF, &domid);
        w.ret(caller, nr::MEMORY_OP, [cmd.into(), BUF, 0, 0, 0])
    };
    let (current, maximum) = (m::XENMEM_CURRENT_RESERVATION, m::XENMEM_MAXIMUM_RESERVATION);
    assert_eq!(
        ask(&mut w, DOMU, current, DOMID_SELF),
        RAM_PAGES.cast_signed()
    );
    assert_eq!(ask(&mut w, DOMU, maximum, DOMID_SELF), 64);
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[7]), 1);
    assert_eq!(
        ask(&mut w, DOM0, current, DOMU),
        RAM_PAGES.cast_signed() - 1
    );
    assert_eq!(ask(&mut w, DOMU, current, DOM0), e(Errno::EPERM));
    assert_eq!(ask(&mut w, DOMU, maximum, 77), e(Errno::ESRCH));
    let cmd = [u64::from(maximum), UNMAPPED, 0, 0, 0];
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, cmd), e(Errno::EFAULT));
}

#[test]
fn decrease_reservation_balloons_out_own_ram_only() {
    let mut w = World::new();
    let free = w.pool.free_frames();
    // XTF's xsa-277: once is 1 extent, the same GFN again is 0.
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[20]), 1);
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[20]), 0);
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[20]), 0);
    assert!(w.domain(DOMU).p2m().translate(&w.mem, Gfn(20)).is_none());
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES - 1);
    assert_eq!(w.pool.free_frames(), free + 1);
    // Stops at the first extent it cannot do: returns the extents done.
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[21, 22, 20, 23]), 2);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES - 3);
    // Beyond RAM, beyond the p2m, the shared-info frame: not its RAM.
    assert_eq!(decrease(&mut w, DOMU, DOMU, 0, &[RAM_PAGES + 5]), 0);
    assert_eq!(decrease(&mut w, DOMU, DOMU, 0, &[u64::MAX]), 0);
    w.put(
        DOMU,
        BUF,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: m::XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: 25,
        },
    );
    let add = [m::XENMEM_ADD_TO_PHYSMAP.into(), BUF, 0, 0, 0];
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, add), 0);
    let pages = w.domain(DOMU).tot_pages();
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 0, &[25]), 0);
    assert_eq!(w.domain(DOMU).shared_info_gfn(), Some(Gfn(25)));
    // Order 1 from GFN 26: two frames in one extent; too large an order
    // is refused whole (the start extent, 0, comes back).
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, 1, &[26]), 1);
    assert_eq!(w.domain(DOMU).tot_pages(), pages - 2);
    let big = crate::hypercall::memory::DOMU_MAX_ORDER + 1;
    assert_eq!(decrease(&mut w, DOMU, DOMID_SELF, big, &[0]), 0);
    assert_eq!(w.domain(DOMU).tot_pages(), pages - 2);
    // Another domain's memory: dom0 may, a domU may not. Refused, or no
    // such domain: the start extent comes back, as in Xen.
    assert_eq!(decrease(&mut w, DOMU, DOM0, 0, &[3]), 0);
    assert_eq!(decrease(&mut w, DOMU, 77, 0, &[3]), 0);
    let dom0_pages = w.domain(DOM0).tot_pages();
    assert_eq!(w.domain(DOM0).tot_pages(), dom0_pages);
    assert_eq!(decrease(&mut w, DOM0, DOMU, 0, &[3]), 1);
    // An unreadable list stops at once; an unreadable request faults.
    let r = m::XenMemoryReservation {
        extent_start: UNMAPPED,
        nr_extents: 3,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w.put(DOMU, BUF, &r);
    let cmd = [m::XENMEM_DECREASE_RESERVATION.into(), BUF, 0, 0, 0];
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, cmd), 0);
    let cmd = [m::XENMEM_DECREASE_RESERVATION.into(), UNMAPPED, 0, 0, 0];
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, cmd), 0);
    // Too many extents to count in a 32-bit cmd, from 64-bit code too.
    let r = m::XenMemoryReservation {
        extent_start: BUF2,
        nr_extents: (u64::from(u32::MAX) >> 6) + 1,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w.put(DOMU, BUF, &r);
    let cmd = [m::XENMEM_DECREASE_RESERVATION.into(), BUF, 0, 0, 0];
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, cmd), 0);
}

#[test]
fn decrease_reservation_resumes_from_the_extent_in_cmd() {
    let mut w = World::new();
    // How a continued call resumes (the slice limit itself needs more
    // RAM than this World's domains have). A start extent at or past
    // nr_extents: nothing to do.
    w.put(DOMU, BUF2, &[5u64, 6]);
    let r = m::XenMemoryReservation {
        extent_start: BUF2,
        nr_extents: 2,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w.put(DOMU, BUF, &r);
    let cmd = |start: u64| u64::from(m::XENMEM_DECREASE_RESERVATION) | start << 6;
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, [cmd(2), BUF, 0, 0, 0]), 2);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES);
    // From extent 1: only GFN 6 goes.
    assert_eq!(w.ret(DOMU, nr::MEMORY_OP, [cmd(1), BUF, 0, 0, 0]), 2);
    assert!(w.domain(DOMU).p2m().translate(&w.mem, Gfn(5)).is_some());
    assert!(w.domain(DOMU).p2m().translate(&w.mem, Gfn(6)).is_none());
}

#[test]
fn decrease_reservation_from_32_bit_code() {
    let mut w = World::new();
    w.put(DOMU, BUF2, &[7u32, 8]);
    let r = super::compat::CompatMemoryReservation {
        extent_start: BUF2 as u32,
        nr_extents: 2,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w.put(DOMU, BUF, &r);
    let ret = w.ret32(
        DOMU,
        nr::MEMORY_OP as u32,
        [m::XENMEM_DECREASE_RESERVATION, BUF as u32, 0, 0, 0],
    );
    assert_eq!(ret, 2);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES - 2);
}

#[test]
fn shared_info_mapping() {
    let mut w = World::new();
    let si_mfn = w.domain(DOMU).shared_info_mfn();
    let map = |w: &mut World, caller, domid, space, idx, gpfn| {
        w.put(
            caller,
            BUF,
            &XenAddToPhysmap {
                domid,
                size: 0,
                space,
                idx,
                gpfn,
            },
        );
        w.ret(
            caller,
            nr::MEMORY_OP,
            [m::XENMEM_ADD_TO_PHYSMAP.into(), BUF, 0, 0, 0],
        )
    };
    let sinfo = m::XENMAPSPACE_SHARED_INFO;
    assert_eq!(
        map(&mut w, DOMU, DOMID_SELF, sinfo, 1, 20),
        e(Errno::EINVAL)
    );
    assert_eq!(
        map(&mut w, DOMU, DOMID_SELF, sinfo, 0, 1 << 40),
        e(Errno::EINVAL)
    );
    assert_eq!(map(&mut w, DOMU, DOMID_SELF, 9, 0, 20), e(Errno::EINVAL));
    assert_eq!(
        map(&mut w, DOMU, DOMID_SELF, m::XENMAPSPACE_GRANT_TABLE, 4, 20),
        e(Errno::EINVAL)
    );
    assert_eq!(map(&mut w, DOMU, DOM0, sinfo, 0, 20), e(Errno::EPERM));
    assert_eq!(map(&mut w, DOMU, 77, sinfo, 0, 20), e(Errno::ESRCH));
    assert_eq!(w.domain(DOMU).shared_info_gfn(), None);
    assert_eq!(w.domain(DOMU).tot_pages(), RAM_PAGES);
    assert_eq!(map(&mut w, DOMU, DOMU, sinfo, 0, 20), 0);
    let e20 = w.domain(DOMU).p2m().translate(&w.mem, Gfn(20)).unwrap();
    assert_eq!(
        (e20.mfn, e20.kind, e20.access.write),
        (si_mfn, P2mKind::Shared, true)
    );
    assert_eq!(
        w.domain(DOMU).tot_pages(),
        RAM_PAGES - 1,
        "the RAM frame there was freed"
    );
    // The guest sees the wall clock and its pvclock through the mapping.
    let si: SharedInfo = w.get(DOMU, 20 << 12);
    assert_eq!(
        (si.wc_version, si.wc_sec, si.wc_nsec, si.wc_sec_hi),
        (2, 1_700_000_000, 250, 0)
    );
    assert_eq!(
        (
            si.vcpu_info[0].time.version,
            si.vcpu_info[0].time.system_time
        ),
        (2, NOW)
    );
    // Mapping it again elsewhere moves it.
    assert_eq!(map(&mut w, DOMU, DOMID_SELF, sinfo, 0, UNMAPPED >> 12), 0);
    assert!(w.domain(DOMU).p2m().translate(&w.mem, Gfn(20)).is_none());
    assert_eq!(w.domain(DOMU).shared_pages(), 1);
    // dom0 may map another domain's.
    assert_eq!(map(&mut w, DOM0, DOMU, sinfo, 0, 21), 0);
    assert_eq!(w.domain(DOMU).shared_info_gfn(), Some(Gfn(21)));
    // Continuation bits in cmd are refused.
    assert_eq!(
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [1 << 6 | u64::from(m::XENMEM_ADD_TO_PHYSMAP), BUF, 0, 0, 0]
        ),
        e(Errno::ENOSYS)
    );
    assert_eq!(
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [m::XENMEM_EXCHANGE.into(), BUF, 0, 0, 0]
        ),
        e(Errno::ENOSYS)
    );
}

#[test]
fn shared_info_mapping_from_32_bit_code() {
    let mut w = World::new();
    // compat_add_to_physmap: domid, size, space, idx u32, gpfn u32.
    let mut raw = [0u8; 16];
    raw[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    raw[12..16].copy_from_slice(&22u32.to_le_bytes());
    w.phys(DOMU).write(UNMAPPED - 16, &raw).unwrap();
    assert_eq!(
        w.ret32(
            DOMU,
            12,
            [m::XENMEM_ADD_TO_PHYSMAP, (UNMAPPED - 16) as u32, 0, 0, 0]
        ),
        0
    );
    assert_eq!(w.domain(DOMU).shared_info_gfn(), Some(Gfn(22)));
}

fn e820(addr: u64, size: u64, kind: u32) -> E820Entry {
    E820Entry { addr, size, kind }
}

#[test]
fn memory_map() {
    let mut w = World::new();
    let ask = |w: &mut World, cap| {
        w.put(
            DOMU,
            BUF,
            &XenMemoryMap {
                nr_entries: cap,
                pad0: 0,
                buffer: BUF2,
            },
        );
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [m::XENMEM_MEMORY_MAP.into(), BUF, 0, 0, 0],
        )
    };
    assert_eq!(ask(&mut w, 8), e(Errno::ENOSYS), "no map stored");
    let map = [
        HvmMemmapEntry {
            addr: 0,
            size: RAM_PAGES << 12,
            kind: 1,
            reserved: 0,
        },
        HvmMemmapEntry {
            addr: 0xfee0_0000,
            size: 0x1000,
            kind: 2,
            reserved: 0,
        },
    ];
    w.t.get_mut(DOMU)
        .unwrap()
        .xen_mut()
        .set_memory_map(&map)
        .unwrap();
    assert_eq!(ask(&mut w, 8), 0);
    assert_eq!(w.get::<XenMemoryMap>(DOMU, BUF).nr_entries, 2);
    let got: [E820Entry; 2] = w.get(DOMU, BUF2);
    assert_eq!(
        got,
        [e820(0, RAM_PAGES << 12, 1), e820(0xfee0_0000, 0x1000, 2)]
    );
    w.phys(DOMU).zero(BUF2, 64).unwrap();
    assert_eq!(ask(&mut w, 1), 0);
    assert_eq!(w.get::<XenMemoryMap>(DOMU, BUF).nr_entries, 1);
    assert_eq!(
        w.bytes(DOMU, BUF2 + 20, 4),
        [0; 4],
        "only one entry written"
    );
    // A bad buffer: nothing changes, not even nr_entries.
    w.put(
        DOMU,
        BUF,
        &XenMemoryMap {
            nr_entries: 8,
            pad0: 0,
            buffer: UNMAPPED - 20,
        },
    );
    let before = w.ram(DOMU);
    assert_eq!(
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [m::XENMEM_MEMORY_MAP.into(), BUF, 0, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert!(w.ram(DOMU) == before);
    // 32-bit: compat_memory_map is { u32 nr_entries, u32 buffer }.
    w.phys(DOMU)
        .write(BUF, &[8, 0, 0, 0, 0, 0x80, 0, 0])
        .unwrap();
    assert_eq!(
        w.ret32(DOMU, 12, [m::XENMEM_MEMORY_MAP, BUF as u32, 0, 0, 0]),
        0
    );
    assert_eq!(w.bytes(DOMU, BUF, 8), [2, 0, 0, 0, 0, 0x80, 0, 0]);
    assert_eq!(
        w.get::<[E820Entry; 2]>(DOMU, BUF2)[1],
        e820(0xfee0_0000, 0x1000, 2)
    );
}

// ---- hvm_op ----

fn hvm(w: &mut World, caller: DomId, op: u32, domid: DomId, index: u32, value: u64) -> (i64, u64) {
    w.put(
        caller,
        BUF,
        &XenHvmParam {
            domid,
            pad: 0,
            index,
            value,
        },
    );
    let r = w.ret(caller, nr::HVM_OP, [op.into(), BUF, 0, 0, 0]);
    (r, w.get::<XenHvmParam>(caller, BUF).value)
}

#[test]
fn hvm_params_follow_xens_rules() {
    let mut w = World::new();
    let (get, set) = (h::HVMOP_GET_PARAM, h::HVMOP_SET_PARAM);
    assert_eq!(
        hvm(&mut w, DOMU, get, DOMID_SELF, h::HVM_PARAM_STORE_PFN, 99),
        (0, 0),
        "unset reads 0"
    );
    assert_eq!(
        hvm(&mut w, DOMU, set, DOMID_SELF, h::HVM_PARAM_STORE_PFN, 5).0,
        e(Errno::EPERM)
    );
    assert_eq!(hvm(&mut w, DOM0, set, DOMU, h::HVM_PARAM_STORE_PFN, 5).0, 0);
    assert_eq!(
        hvm(&mut w, DOMU, get, DOMU, h::HVM_PARAM_STORE_PFN, 0),
        (0, 5)
    );
    assert_eq!(
        hvm(&mut w, DOMU, get, DOMID_SELF, h::HVM_PARAM_IDENT_PT, 0).0,
        e(Errno::EPERM)
    );
    assert_eq!(
        hvm(&mut w, DOM0, get, DOMU, h::HVM_PARAM_IDENT_PT, 7),
        (0, 0)
    );
    assert_eq!(
        hvm(&mut w, DOMU, get, DOM0, h::HVM_PARAM_STORE_PFN, 0).0,
        e(Errno::EPERM)
    );
    assert_eq!(
        hvm(&mut w, DOMU, set, DOM0, h::HVM_PARAM_STORE_EVTCHN, 1).0,
        e(Errno::EPERM)
    );
    assert_eq!(hvm(&mut w, DOMU, get, 77, 1, 0).0, e(Errno::ESRCH));
    assert_eq!(
        hvm(&mut w, DOMU, get, DOMID_SELF, h::HVM_NR_PARAMS, 0).0,
        e(Errno::EINVAL)
    );
    assert_eq!(
        hvm(&mut w, DOMU, get, DOMID_SELF, u32::MAX, 0).0,
        e(Errno::EINVAL)
    );
    // The callback: off, or a vector of at least 0x10.
    let cb = h::HVM_PARAM_CALLBACK_IRQ;
    assert_eq!(
        hvm(
            &mut w,
            DOMU,
            set,
            DOMID_SELF,
            cb,
            CallbackVia::Vector(0xf3).encode()
        )
        .0,
        0
    );
    assert_eq!(w.domain(DOMU).xen().hvm_params[0], 0x0200_0000_0000_00f3);
    for bad in [
        CallbackVia::Gsi(28).encode(),
        CallbackVia::Vector(5).encode(),
        0x0200_0000_0000_01f3,
        0x0300_0000_0000_0000,
    ] {
        assert_eq!(
            hvm(&mut w, DOMU, set, DOMID_SELF, cb, bad).0,
            e(Errno::EINVAL),
            "{bad:#x}"
        );
    }
    assert_eq!(hvm(&mut w, DOMU, set, DOMID_SELF, cb, 0).0, 0);
    assert_eq!(
        hvm(&mut w, DOMU, set, DOMID_SELF, h::HVM_PARAM_X87_FIP_WIDTH, 3).0,
        e(Errno::EINVAL)
    );
    // dom0 is bound by the guest rules on itself, as in Xen.
    assert_eq!(
        hvm(&mut w, DOM0, set, DOMID_SELF, h::HVM_PARAM_STORE_PFN, 5).0,
        e(Errno::EPERM)
    );
}

#[test]
fn hvm_op_bad_input() {
    let mut w = World::new();
    w.put(
        DOMU,
        BUF,
        &XenHvmParam {
            domid: DOMID_SELF,
            pad: 1,
            index: 1,
            value: 0,
        },
    );
    assert_eq!(
        w.ret(DOMU, nr::HVM_OP, [h::HVMOP_GET_PARAM.into(), BUF, 0, 0, 0]),
        e(Errno::EINVAL)
    );
    assert_eq!(
        w.ret(
            DOMU,
            nr::HVM_OP,
            [h::HVMOP_GET_PARAM.into(), UNMAPPED - 8, 0, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert_eq!(
        w.ret(DOMU, nr::HVM_OP, [h::HVMOP_FLUSH_TLBS.into(), BUF, 0, 0, 0]),
        e(Errno::ENOSYS)
    );
    assert_eq!(
        w.ret(DOMU, nr::HVM_OP, [1 << 32, BUF, 0, 0, 0]),
        e(Errno::ENOSYS)
    );
    // From 32-bit code the layout is the same.
    w.put(
        DOMU,
        BUF,
        &XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index: h::HVM_PARAM_CONSOLE_EVTCHN,
            value: 3,
        },
    );
    assert_eq!(
        w.ret32(DOMU, 34, [h::HVMOP_SET_PARAM, BUF as u32, 0, 0, 0]),
        0
    );
    assert_eq!(
        w.domain(DOMU).xen().hvm_params[h::HVM_PARAM_CONSOLE_EVTCHN as usize],
        3
    );
}

// ---- control ----

fn getinfo(w: &mut World, caller: DomId, req: DomainRequest) -> (i64, DomainInfo) {
    w.put(caller, BUF, &req);
    let r = w.ret(
        caller,
        ctl::HYPERVISOR_CONTROL_OP,
        [ctl::CONTROL_OP_GETINFO.into(), BUF, BUF2, 0, 0],
    );
    (r, w.get(caller, BUF2))
}

#[test]
fn control_is_dom0_only_and_versioned() {
    let mut w = World::new();
    let before = w.ram(DOMU);
    assert_eq!(
        getinfo(&mut w, DOMU, DomainRequest::new(DOMU)).0,
        e(Errno::EPERM)
    );
    let after = w.ram(DOMU);
    assert!(after[BUF2 as usize..] == before[BUF2 as usize..]);
    let old = DomainRequest {
        header: ControlHeader {
            interface_version: 2 << 16,
            pad: 0,
        },
        ..DomainRequest::new(DOMU)
    };
    assert_eq!(getinfo(&mut w, DOM0, old).0, e(Errno::EACCES));
    assert_eq!(
        getinfo(
            &mut w,
            DOM0,
            DomainRequest {
                pad: [1, 0, 0, 0, 0, 0],
                ..DomainRequest::new(DOMU)
            }
        )
        .0,
        e(Errno::EINVAL)
    );
    assert_eq!(
        getinfo(&mut w, DOM0, DomainRequest::new(77)).0,
        e(Errno::ESRCH)
    );
    assert_eq!(
        w.ret(
            DOM0,
            ctl::HYPERVISOR_CONTROL_OP,
            [ctl::CONTROL_OP_GETINFO.into(), UNMAPPED, BUF2, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    assert_eq!(
        w.ret(DOM0, ctl::HYPERVISOR_CONTROL_OP, [99, BUF, BUF2, 0, 0]),
        e(Errno::ENOSYS)
    );
    w.put(DOM0, BUF, &DomainRequest::new(DOMU));
    assert_eq!(
        w.ret(
            DOM0,
            ctl::HYPERVISOR_CONTROL_OP,
            [ctl::CONTROL_OP_GETINFO.into(), BUF, UNMAPPED - 8, 0, 0]
        ),
        e(Errno::EFAULT)
    );
}

#[test]
fn getinfo_reports_the_domain() {
    let mut w = World::new();
    w.t.get_mut(DOMU)
        .unwrap()
        .vcpu_mut(0)
        .unwrap()
        .account(1234);
    let (r, info) = getinfo(&mut w, DOM0, DomainRequest::new(DOMU));
    assert_eq!(r, 0);
    assert_eq!((info.domid, info.flags, info.nr_vcpus), (DOMU, 0, 2));
    assert_eq!(
        (info.memory_kib, info.max_memory_kib, info.cpu_time_ns),
        (RAM_PAGES * 4, 256, 1234)
    );
    assert_eq!(ctl::parse_domain_name(&info.name), Some("guest"));
    assert_eq!(
        getinfo(&mut w, DOM0, DomainRequest::new(DOMID_SELF)).0,
        e(Errno::ESRCH),
        "control ops name domains"
    );
    let (_, me) = getinfo(&mut w, DOM0, DomainRequest::new(DOM0));
    assert_eq!(
        me.flags,
        ctl::DOMAIN_FLAG_RUNNING | ctl::DOMAIN_FLAG_PRIVILEGED
    );
    w.t.get_mut(DOMU).unwrap().vcpu_mut(0).unwrap().block();
    assert_eq!(
        getinfo(&mut w, DOM0, DomainRequest::new(DOMU)).1.flags,
        ctl::DOMAIN_FLAG_BLOCKED
    );
    w.t.get_mut(DOMU)
        .unwrap()
        .crash(crate::domain::CrashReason::TripleFault);
    let (_, crashed) = getinfo(&mut w, DOM0, DomainRequest::new(DOMU));
    assert_eq!(
        (crashed.flags, crashed.shutdown_reason),
        (ctl::DOMAIN_FLAG_SHUTDOWN, 3)
    );
}

#[test]
fn list_goes_in_domid_order_and_batches() {
    let mut w = World::new();
    for i in 0..20 {
        let cfg = DomainConfig {
            name: &format!("extra{i}"),
            max_pages: 1,
            vcpus: 1,
        };
        w.t.create_domu(&cfg, &mut w.pool, &mut w.mem).unwrap();
    }
    let list = |w: &mut World, start| {
        w.put(DOM0, BUF, &ListRequest::new(start));
        let r = w.ret(
            DOM0,
            ctl::HYPERVISOR_CONTROL_OP,
            [ctl::CONTROL_OP_LIST.into(), BUF, BUF2, 0, 0],
        );
        assert_eq!(r, 0);
        w.get::<ListResponse>(DOM0, BUF2)
    };
    let first = list(&mut w, 0);
    assert_eq!((first.nr_entries, first.next_domid), (16, 16));
    let ids: Vec<DomId> = first.domains.iter().map(|d| d.domid).collect();
    assert_eq!(ids, (0..16).collect::<Vec<_>>());
    let rest = list(&mut w, first.next_domid);
    assert_eq!((rest.nr_entries, rest.next_domid), (6, DOMID_INVALID));
    assert_eq!(rest.domains[5].domid, 21);
    assert_eq!(rest.domains[6], DomainInfo::default());
    assert_eq!(list(&mut w, 500).nr_entries, 0);
}

// ---- the hypercall page ----

#[test]
fn hypercall_page_goes_only_into_own_ram() {
    let mut w = World::new();
    let d = w.t.get(DOMU).unwrap();
    assert_eq!(write_hypercall_page(d, &mut w.mem, 0x5000), Ok(()));
    assert_eq!(
        write_hypercall_page(d, &mut w.mem, UNMAPPED),
        Err(crate::vmexit::HypercallPageError)
    );
    assert_eq!(
        w.bytes(DOMU, 0x5000 + 29 * 32, 9),
        [0xb8, 29, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]
    );
    // Not over the shared-info page.
    let xatp = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 0,
        idx: 0,
        gpfn: 3,
    };
    w.put(DOMU, BUF, &xatp);
    assert_eq!(
        w.ret(
            DOMU,
            nr::MEMORY_OP,
            [m::XENMEM_ADD_TO_PHYSMAP.into(), BUF, 0, 0, 0]
        ),
        0
    );
    let d = w.t.get(DOMU).unwrap();
    assert_eq!(
        write_hypercall_page(d, &mut w.mem, 0x3000),
        Err(crate::vmexit::HypercallPageError)
    );
    let stub = offset_of!(SharedInfo, vcpu_info) + 29 * 32;
    assert_eq!(w.mem.frame(d.shared_info_mfn())[stub], 0);
}

#[test]
fn dom0_sets_a_domains_memory_map() {
    let mut w = World::new();
    let entries = [
        E820Entry {
            addr: 0,
            size: RAM_PAGES << 12,
            kind: 1,
        },
        E820Entry {
            addr: RAM_PAGES << 12,
            size: 4096,
            kind: 2,
        },
    ];
    w.put(DOM0, BUF2, &entries);
    let set = |w: &mut World, caller, domid, nr_entries| {
        let request = m::XenForeignMemoryMap {
            domid,
            pad0: [0; 6],
            map: XenMemoryMap {
                nr_entries,
                pad0: 0,
                buffer: BUF2,
            },
        };
        w.put(caller, BUF, &request);
        let op = [m::XENMEM_SET_MEMORY_MAP.into(), BUF, 0, 0, 0];
        w.ret(caller, nr::MEMORY_OP, op)
    };
    assert_eq!(set(&mut w, DOMU, DOMU, 2), e(Errno::EPERM));
    assert_eq!(set(&mut w, DOM0, 99, 2), e(Errno::ESRCH));
    assert_eq!(set(&mut w, DOM0, DOMU, 17), e(Errno::EINVAL));
    assert!(w.domain(DOMU).xen().memory_map().is_empty(), "unchanged");
    assert_eq!(set(&mut w, DOM0, DOMU, 2), 0);
    assert_eq!(w.domain(DOMU).xen().memory_map(), &entries);
}

// ---- dom0-only requests ----

/// Every request the door serves only with a `Dom0` proof, found by
/// decoding every hypercall number and sub-op: (number, sub-op).
fn dom0_only_requests() -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for number in 0..nr::NR_HYPERCALLS {
        for sub in 0..256 {
            let args = args::RawArgs {
                nr: number,
                arg: [sub, BUF, BUF2, 0, 0],
                compat: false,
            };
            if matches!(
                table::decode(&args),
                table::Request::Dom0Only(_) | table::Request::HardwareOnly(_)
            ) {
                found.push((number, sub));
            }
        }
    }
    found
}

/// A request each dom0-only sub-op would carry out for dom0: aimed at
/// dom0, so that a domU that got through would show.
fn dom0_only_argument(w: &mut World, number: u64, sub: u64) {
    let mut buf = [0u8; 256];
    let control = DomainRequest::new(DOM0);
    let request: &[u8] = match (number, sub as u32) {
        (nr::SCHED_OP, abi::xen::sched::SCHEDOP_REMOTE_SHUTDOWN) => SchedRemoteShutdown {
            domain_id: DOM0,
            pad0: 0,
            reason: 0,
        }
        .as_bytes(),
        (nr::MEMORY_OP, m::XENMEM_SET_MEMORY_MAP) => m::XenForeignMemoryMap {
            domid: DOM0,
            pad0: [0; 6],
            map: XenMemoryMap {
                nr_entries: 0,
                pad0: 0,
                buffer: BUF2,
            },
        }
        .as_bytes(),
        (nr::PHYSDEV_OP, _) => abi::xen::physdev::PhysdevMapPirq {
            domid: DOM0,
            map_type: abi::xen::physdev::MAP_PIRQ_TYPE_GSI,
            index: 3,
            pirq: -1,
            pad0: 0,
            bus: 0,
            devfn: 0,
            entry_nr: 0,
            pad1: 0,
            table_base: 0,
        }
        .as_bytes(),
        _ => control.as_bytes(),
    };
    buf[..request.len()].copy_from_slice(request);
    w.put(DOMU, BUF, &buf);
}

#[test]
fn every_dom0_only_request_is_eperm_for_a_domu_and_changes_nothing() {
    let found = dom0_only_requests();
    let control = abi::control::HYPERVISOR_CONTROL_OP;
    let want: Vec<(u64, u64)> = [
        (nr::CONSOLE_IO, CONSOLEIO_READ.into()),
        (nr::MEMORY_OP, m::XENMEM_SET_MEMORY_MAP.into()),
        (
            nr::SCHED_OP,
            abi::xen::sched::SCHEDOP_REMOTE_SHUTDOWN.into(),
        ),
        (nr::PHYSDEV_OP, abi::xen::physdev::PHYSDEVOP_MAP_PIRQ.into()),
        (
            nr::PHYSDEV_OP,
            abi::xen::physdev::PHYSDEVOP_UNMAP_PIRQ.into(),
        ),
    ]
    .into_iter()
    .chain((1..=17).map(|op| (control, op)))
    .collect();
    for request in &want {
        assert!(found.contains(request), "{request:?} is not dom0-only");
    }
    assert_eq!(found.len(), want.len(), "dom0-only requests: {found:?}");
    let mut w = World::new();
    w.env.input = b"secret".to_vec();
    let frames = w.pool.free_frames();
    let dom0_ram = w.ram(DOM0);
    for (number, sub) in found {
        dom0_only_argument(&mut w, number, sub);
        let domu_ram = w.ram(DOMU);
        let r = w.ret(DOMU, number, [sub, BUF, BUF2, 0, 0]);
        assert_eq!(r, e(Errno::EPERM), "hypercall {number} sub-op {sub}");
        assert_eq!(w.ram(DOMU), domu_ram, "{number}/{sub} wrote nothing");
        assert_eq!(w.ram(DOM0), dom0_ram, "{number}/{sub}");
        assert_eq!((w.pool.free_frames(), w.t.len()), (frames, 2));
        assert_eq!(w.domain(DOM0).state(), DomainState::Running);
    }
    assert_eq!(w.env.input, b"secret", "console input not consumed");
}

/// Sub-ops that are dom0-only when they name another domain: the door's
/// `Ctx::target` refuses them to a domU (`-EPERM`, or
/// `GNTST_permission_denied` in a grant op's status).
#[test]
fn naming_another_domain_is_dom0_only() {
    use abi::xen::event_channel::{self as ec, EvtchnAllocUnbound, EvtchnStatus};
    use abi::xen::grant_table::{self as gt, GnttabQuerySize, GnttabSetupTable};
    let mut w = World::new();
    let dom0_ram = w.ram(DOM0);
    let alloc = EvtchnAllocUnbound {
        dom: DOM0,
        remote_dom: DOMU,
        port: 0,
    };
    let status = EvtchnStatus {
        dom: DOM0,
        port: 1,
        ..EvtchnStatus::default()
    };
    let param = XenHvmParam {
        domid: DOM0,
        pad: 0,
        index: h::HVM_PARAM_CONSOLE_PFN,
        value: 5,
    };
    let xatp = XenAddToPhysmap {
        domid: DOM0,
        size: 0,
        space: m::XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: 20,
    };
    let cases: [(u64, u64, Vec<u8>); 5] = [
        (
            nr::EVENT_CHANNEL_OP,
            ec::EVTCHNOP_ALLOC_UNBOUND.into(),
            alloc.as_bytes().to_vec(),
        ),
        (
            nr::EVENT_CHANNEL_OP,
            ec::EVTCHNOP_STATUS.into(),
            status.as_bytes().to_vec(),
        ),
        (
            nr::HVM_OP,
            h::HVMOP_SET_PARAM.into(),
            param.as_bytes().to_vec(),
        ),
        (
            nr::HVM_OP,
            h::HVMOP_GET_PARAM.into(),
            param.as_bytes().to_vec(),
        ),
        (
            nr::MEMORY_OP,
            m::XENMEM_ADD_TO_PHYSMAP.into(),
            xatp.as_bytes().to_vec(),
        ),
    ];
    for (number, sub, request) in cases {
        w.put(DOMU, BUF, request.as_slice());
        let r = w.ret(DOMU, number, [sub, BUF, 0, 0, 0]);
        assert_eq!(r, e(Errno::EPERM), "hypercall {number} sub-op {sub}");
    }
    let setup = GnttabSetupTable {
        dom: DOM0,
        nr_frames: 1,
        frame_list: BUF2,
        ..GnttabSetupTable::default()
    };
    let query = GnttabQuerySize {
        dom: DOM0,
        ..GnttabQuerySize::default()
    };
    for (cmd, request) in [
        (gt::GNTTABOP_SETUP_TABLE, setup.as_bytes().to_vec()),
        (gt::GNTTABOP_QUERY_SIZE, query.as_bytes().to_vec()),
    ] {
        w.put(DOMU, BUF, request.as_slice());
        let r = w.ret(DOMU, nr::GRANT_TABLE_OP, [cmd.into(), BUF, 1, 0, 0]);
        assert_eq!(r, 0, "grant op {cmd}: per-entry status");
        let status_at = if cmd == gt::GNTTABOP_SETUP_TABLE {
            offset_of!(GnttabSetupTable, status)
        } else {
            offset_of!(GnttabQuerySize, status)
        };
        let status = w.bytes(DOMU, BUF + status_at as u64, 2);
        assert_eq!(
            i16::from_le_bytes([status[0], status[1]]),
            gt::GNTST_PERMISSION_DENIED,
            "grant op {cmd}"
        );
    }
    assert_eq!(w.ram(DOM0), dom0_ram);
    assert_eq!(
        w.domain(DOM0).xen().hvm_params[h::HVM_PARAM_CONSOLE_PFN as usize],
        0
    );
}

#[test]
fn only_calls_that_leave_scheduling_alone_return_directly() {
    use abi::xen::hypercall as n;
    let ret = HypercallOutcome::Return(0);
    for nr in [
        n::XEN_VERSION,
        n::EVENT_CHANNEL_OP,
        n::GRANT_TABLE_OP,
        n::CONSOLE_IO,
    ] {
        assert!(super::returns_directly(nr, &ret), "{nr}");
    }
    for nr in [
        n::SCHED_OP,
        n::SET_TIMER_OP,
        n::VCPU_OP,
        n::DOMCTL,
        n::SYSCTL,
    ] {
        assert!(!super::returns_directly(nr, &ret), "{nr}");
    }
    for outcome in [
        HypercallOutcome::Yield,
        HypercallOutcome::Block,
        HypercallOutcome::DomainDestroyed(1),
    ] {
        assert!(!super::returns_directly(n::EVENT_CHANNEL_OP, &outcome));
    }
}
