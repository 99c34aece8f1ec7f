//! Hypercalls and sub-ops xen-core does not serve answer as Xen 4.17
//! answers a PVH guest (docs/abi.md, "Hypercalls Xen serves that we do
//! not").

use abi::xen::ctl::{XenCtlHeader, XENPF_INTERFACE_VERSION};
use abi::xen::domid::{DOMID_IO, DOMID_XEN};

use super::*;

#[test]
fn platform_op_answers_like_sysctl() {
    let mut w = World::new();
    assert_eq!(
        w.ret(DOMU, nr::PLATFORM_OP, [UNMAPPED, 0, 0, 0, 0]),
        e(Errno::EFAULT)
    );
    for (caller, answer) in [(DOMU, Errno::EPERM), (DOM0, Errno::ENOSYS)] {
        for (version, expected) in [
            (0x0300_0000, Errno::EACCES),
            (XENPF_INTERFACE_VERSION, answer),
        ] {
            let header = XenCtlHeader {
                cmd: 1,
                interface_version: version,
            };
            w.put(caller, BUF, &header);
            assert_eq!(
                w.ret(caller, nr::PLATFORM_OP, [BUF, 0, 0, 0, 0]),
                e(expected)
            );
        }
    }
}

#[test]
fn xenpmu_and_hypfs() {
    let mut w = World::new();
    for caller in [DOMU, DOM0] {
        assert_eq!(w.ret(caller, nr::XENPMU_OP, [0; 5]), e(Errno::EOPNOTSUPP));
    }
    assert_eq!(w.ret(DOMU, nr::HYPFS_OP, [0; 5]), e(Errno::EPERM));
    assert_eq!(w.ret(DOM0, nr::HYPFS_OP, [0; 5]), e(Errno::ENOSYS));
}

#[test]
fn mmuext_op_refuses_a_pvh_page_owner() {
    let mut w = World::new();
    let mmuext = |w: &mut World, caller, owner: u16| {
        w.ret(caller, nr::MMUEXT_OP, [BUF, 1, 0, owner.into(), 0])
    };
    assert_eq!(mmuext(&mut w, DOMU, DOMID_SELF), e(Errno::EINVAL));
    assert_eq!(mmuext(&mut w, DOMU, DOMU), e(Errno::ESRCH), "itself by id");
    assert_eq!(mmuext(&mut w, DOMU, DOM0), e(Errno::EINVAL), "not PV");
    assert_eq!(mmuext(&mut w, DOMU, 99), e(Errno::ESRCH));
    assert_eq!(mmuext(&mut w, DOMU, DOMID_IO), e(Errno::EPERM));
    assert_eq!(mmuext(&mut w, DOMU, DOMID_XEN), e(Errno::EPERM));
    // foreigndom is a domid_t: the upper bits are dropped.
    let high = (1u64 << 16) | u64::from(DOMID_SELF);
    assert_eq!(
        w.ret(DOMU, nr::MMUEXT_OP, [BUF, 1, 0, high, 0]),
        e(Errno::EINVAL)
    );
}

#[test]
fn dm_op_checks_in_xens_order() {
    let mut w = World::new();
    let dm = |w: &mut World, caller, domid: u16, nr_bufs: u64, bufs: u64| {
        w.ret(caller, nr::DM_OP, [domid.into(), nr_bufs, bufs, 0, 0])
    };
    w.put(DOMU, BUF, &[0u64; 4]);
    assert_eq!(dm(&mut w, DOMU, DOM0, 3, BUF), e(Errno::E2BIG));
    assert_eq!(dm(&mut w, DOMU, DOM0, 2, UNMAPPED), e(Errno::EFAULT));
    assert_eq!(dm(&mut w, DOMU, DOMID_SELF, 1, BUF), e(Errno::ESRCH));
    assert_eq!(dm(&mut w, DOMU, 99, 1, BUF), e(Errno::ESRCH));
    assert_eq!(dm(&mut w, DOMU, DOMU, 1, BUF), e(Errno::EPERM), "itself");
    assert_eq!(
        dm(&mut w, DOMU, DOM0, 2, BUF),
        e(Errno::EPERM),
        "not its device model"
    );
    w.put(DOM0, BUF, &[0u64; 4]);
    assert_eq!(dm(&mut w, DOM0, DOMU, 1, BUF), e(Errno::ENOSYS));
    assert_eq!(dm(&mut w, DOM0, DOM0, 1, BUF), e(Errno::EPERM));
}

#[test]
fn vcpu_get_physid_is_einval_and_unknown_vcpu_ops_nosys() {
    let mut w = World::new();
    let op = |w: &mut World, cmd: u32| w.ret(DOMU, nr::VCPU_OP, [cmd.into(), 0, BUF, 0, 0]);
    assert_eq!(op(&mut w, vc::VCPUOP_GET_PHYSID), e(Errno::EINVAL));
    assert_eq!(op(&mut w, 99), e(Errno::ENOSYS));
}

#[test]
fn hvm_pagetable_dying_get_time_and_vm_event() {
    let mut w = World::new();
    let hvm = |w: &mut World, op: u32, arg: u64| w.ret(DOMU, nr::HVM_OP, [op.into(), arg, 0, 0, 0]);
    // struct xen_hvm_pagetable_dying: domid u16, pad, gpa u64.
    let dying = |domid: u16| {
        let mut raw = [0u8; 16];
        raw[..2].copy_from_slice(&domid.to_le_bytes());
        raw[8..].copy_from_slice(&u64::MAX.to_le_bytes());
        raw
    };
    assert_eq!(
        hvm(&mut w, h::HVMOP_PAGETABLE_DYING, UNMAPPED),
        e(Errno::EFAULT)
    );
    for (domid, answer) in [
        (DOMID_SELF, Errno::EINVAL),
        (DOMU, Errno::EINVAL),
        (DOM0, Errno::EOPNOTSUPP),
        (99, Errno::ESRCH),
    ] {
        w.put(DOMU, BUF, &dying(domid));
        assert_eq!(
            hvm(&mut w, h::HVMOP_PAGETABLE_DYING, BUF),
            e(answer),
            "domid {domid}"
        );
    }
    w.put(DOMU, BUF, &0u64);
    assert_eq!(hvm(&mut w, h::HVMOP_GET_TIME, BUF), 0);
    assert_eq!(w.get::<u64>(DOMU, BUF), NOW);
    assert_eq!(hvm(&mut w, h::HVMOP_GET_TIME, UNMAPPED), e(Errno::EFAULT));
    assert_eq!(hvm(&mut w, h::HVMOP_GUEST_REQUEST_VM_EVENT, 0), 0);
    assert_eq!(
        hvm(&mut w, h::HVMOP_GUEST_REQUEST_VM_EVENT, BUF),
        e(Errno::EINVAL)
    );
}

#[test]
fn xen_version_command_line_and_build_id() {
    use abi::xen::version::{XENVER_BUILD_ID, XENVER_COMMANDLINE};
    let mut w = World::new();
    let ver = |w: &mut World, caller, cmd: u32, arg| {
        w.ret(caller, nr::XEN_VERSION, [cmd.into(), arg, 0, 0, 0])
    };
    assert_eq!(ver(&mut w, DOMU, XENVER_COMMANDLINE, BUF), 0);
    assert_eq!(w.bytes(DOMU, BUF, 9), b"<denied>\0");
    assert_eq!(
        ver(&mut w, DOMU, XENVER_COMMANDLINE, UNMAPPED),
        e(Errno::EFAULT)
    );
    assert_eq!(ver(&mut w, DOM0, XENVER_COMMANDLINE, BUF), e(Errno::ENOSYS));
    assert_eq!(ver(&mut w, DOMU, XENVER_BUILD_ID, BUF), e(Errno::EPERM));
    assert_eq!(ver(&mut w, DOM0, XENVER_BUILD_ID, 0), e(Errno::ENODATA));
    assert_eq!(
        ver(&mut w, DOM0, XENVER_BUILD_ID, UNMAPPED),
        e(Errno::EFAULT)
    );
    w.put(DOM0, BUF, &0u32);
    assert_eq!(ver(&mut w, DOM0, XENVER_BUILD_ID, BUF), e(Errno::EINVAL));
    w.put(DOM0, BUF, &64u32);
    assert_eq!(ver(&mut w, DOM0, XENVER_BUILD_ID, BUF), e(Errno::ENODATA));
}

#[test]
fn fifo_expand_array_and_set_priority_under_the_2_level_abi() {
    use abi::xen::event_channel::{EVTCHNOP_EXPAND_ARRAY, EVTCHNOP_SET_PRIORITY};
    let mut w = World::new();
    let ec = |w: &mut World, cmd: u32, arg| {
        w.ret(DOMU, nr::EVENT_CHANNEL_OP, [cmd.into(), arg, 0, 0, 0])
    };
    assert_eq!(
        ec(&mut w, EVTCHNOP_EXPAND_ARRAY, UNMAPPED),
        e(Errno::EFAULT)
    );
    assert_eq!(ec(&mut w, EVTCHNOP_EXPAND_ARRAY, BUF), e(Errno::EOPNOTSUPP));
    assert_eq!(
        ec(&mut w, EVTCHNOP_SET_PRIORITY, UNMAPPED),
        e(Errno::EFAULT)
    );
    w.put(DOMU, BUF, &[5000u32, 1]);
    assert_eq!(ec(&mut w, EVTCHNOP_SET_PRIORITY, BUF), e(Errno::EINVAL));
    w.put(DOMU, BUF, &[1u32, 1]);
    assert_eq!(ec(&mut w, EVTCHNOP_SET_PRIORITY, BUF), e(Errno::ENOSYS));
}

#[test]
fn sched_pin_override_is_the_hardware_domains() {
    use abi::xen::sched::SCHEDOP_PIN_OVERRIDE;
    let mut w = World::new();
    let pin = u64::from(SCHEDOP_PIN_OVERRIDE);
    assert_eq!(
        w.ret(DOMU, nr::SCHED_OP, [pin, BUF, 0, 0, 0]),
        e(Errno::EPERM)
    );
    assert_eq!(
        w.ret(DOM0, nr::SCHED_OP, [pin, BUF, 0, 0, 0]),
        e(Errno::ENOSYS)
    );
}

#[test]
fn grant_table_version_1_only() {
    use abi::xen::grant_table::{GNTTABOP_GET_VERSION, GNTTABOP_SET_VERSION};
    let mut w = World::new();
    let gnt = |w: &mut World, caller, cmd: u32| {
        w.ret(caller, nr::GRANT_TABLE_OP, [cmd.into(), BUF, 1, 0, 0])
    };
    for (wanted, answer) in [
        (1u32, 0),
        (2, e(Errno::ENOSYS)),
        (0, e(Errno::EINVAL)),
        (3, e(Errno::EINVAL)),
    ] {
        w.put(DOMU, BUF, &wanted);
        assert_eq!(
            gnt(&mut w, DOMU, GNTTABOP_SET_VERSION),
            answer,
            "version {wanted}"
        );
        assert_eq!(
            w.get::<u32>(DOMU, BUF),
            1,
            "the version in use is written back"
        );
    }
    assert_eq!(
        w.ret(
            DOMU,
            nr::GRANT_TABLE_OP,
            [GNTTABOP_SET_VERSION.into(), UNMAPPED, 1, 0, 0]
        ),
        e(Errno::EFAULT)
    );
    for (caller, dom, answer) in [
        (DOMU, DOMID_SELF, 0),
        (DOMU, DOMU, 0),
        (DOMU, DOM0, e(Errno::EPERM)),
        (DOMU, 99, e(Errno::ESRCH)),
        (DOM0, DOMU, 0),
    ] {
        w.put(caller, BUF, &[dom, 0, 0xffff, 0xffff]);
        assert_eq!(
            gnt(&mut w, caller, GNTTABOP_GET_VERSION),
            answer,
            "d{caller} on {dom}"
        );
        if answer == 0 {
            assert_eq!(w.get::<u32>(caller, BUF + 4), 1);
        }
    }
}
