//! The fixed dispatch table: hypercall number → typed decoder, and the
//! dispatch of typed requests to handlers. A number without an entry, and
//! a sub-op a decoder does not know, become [`Request::NoSys`].

use abi::control::HYPERVISOR_CONTROL_OP;
use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;

use super::args::RawArgs;
use super::{
    console, control, ctl, event_channel, grant_table, hvm, memory, physdev, sched_op, unserved,
    vcpu, version, vm_assist, Ctx, HypercallEnv, HypercallOutcome,
};
use crate::domain::{Hardware, Privileged};
use crate::mm::{FramePool, PhysMem};

/// A decoded hypercall: its sub-op and arguments, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `xen_version`.
    XenVersion(version::VersionOp),
    /// `CONSOLEIO_write`.
    ConsoleWrite {
        /// Bytes (a C `int`).
        count: u32,
        /// Their guest virtual address.
        buf: u64,
    },
    /// `sched_op`.
    SchedOp(sched_op::SchedOp),
    /// `set_timer_op`: absolute system time in ns, 0 to stop.
    SetTimerOp {
        /// Xen's `s_time_t`: signed.
        timeout: i64,
    },
    /// `vcpu_op` on vCPU `vcpu_id` of the caller.
    VcpuOp {
        /// The sub-op.
        op: vcpu::VcpuOp,
        /// Target vCPU (checked by the handler: `-ENOENT`).
        vcpu_id: u32,
    },
    /// `vm_assist`.
    VmAssist {
        /// `VMASST_CMD_*` (checked after the type: `-ENOSYS`).
        cmd: u32,
        /// `VMASST_TYPE_*` (`-EINVAL` unless valid for the caller).
        kind: u32,
    },
    /// `memory_op`.
    MemoryOp(memory::MemoryOp),
    /// `hvm_op`.
    HvmOp(hvm::HvmOp),
    /// `event_channel_op`.
    EventChannelOp(event_channel::EvtchnOp),
    /// `grant_table_op`.
    GrantTableOp(grant_table::GrantTableOp),
    /// `sysctl`, `domctl` or `platform_op`: none served, answered as Xen
    /// does.
    Ctl {
        /// Which of the two.
        which: ctl::Ctl,
        /// The guest address of its struct.
        arg: u64,
    },
    /// A hypercall Xen serves for HVM guests and xen-core does not,
    /// answered with Xen's error for the case.
    Unserved(unserved::Unserved),
    /// `physdev_op`, the sub-ops any domain may call.
    PhysdevOp(physdev::PhysdevOp),
    /// A request only a control domain may make: served with a [`Dom0`]
    /// proof.
    Dom0Only(Dom0Request),
    /// A request only the hardware domain may make: served with a
    /// [`HardwareDomain`] proof.
    HardwareOnly(physdev::PhysdevDom0Op),
    /// No such hypercall or sub-op: `-ENOSYS`.
    NoSys,
}

/// Proof, for one hypercall, that the caller is a control domain (dom0,
/// or a domU given control by its boot entry): every handler of a
/// control request takes one (Tock's capability
/// pattern). Only this module, the door, mints it ([`mint`]), from the
/// caller's [`Privileged`] token; unlike the token's borrow, it leaves
/// the domain table free to change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dom0 {
    _private: (),
}

/// A [`Dom0`] proof if the caller holds the [`Privileged`] token,
/// `-EPERM` otherwise.
fn mint<P: FramePool, M: PhysMem, E: HypercallEnv>(ctx: &Ctx<'_, P, M, E>) -> Result<Dom0, Errno> {
    let _: &Privileged = ctx.domain()?.privilege().ok_or(Errno::EPERM)?;
    Ok(Dom0 { _private: () })
}

/// Proof, for one hypercall, that the caller is the hardware domain
/// (dom0): the pirq requests take one. Minted only here, from the
/// caller's [`Hardware`] token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HardwareDomain {
    _private: (),
}

/// A [`HardwareDomain`] proof if the caller holds the [`Hardware`]
/// token, `-EPERM` otherwise (a control domU too).
fn mint_hardware<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &Ctx<'_, P, M, E>,
) -> Result<HardwareDomain, Errno> {
    let _: &Hardware = ctx.domain()?.hardware().ok_or(Errno::EPERM)?;
    Ok(HardwareDomain { _private: () })
}

/// The requests only a control domain may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dom0Request {
    /// `CONSOLEIO_read`.
    ConsoleRead {
        /// Bytes wanted (a C `int`).
        count: u32,
        /// Where to, a guest virtual address.
        buf: u64,
    },
    /// `SCHEDOP_remote_shutdown`.
    RemoteShutdown {
        /// Its `sched_remote_shutdown`.
        arg: u64,
    },
    /// `XENMEM_set_memory_map`.
    SetMemoryMap {
        /// Its `xen_foreign_memory_map`.
        arg: u64,
    },
    /// Our control hypercall, every op.
    Control(control::ControlOp),
}

type Decoder = fn(&RawArgs) -> Request;

/// The decoder for hypercall number `nr` (`xen/include/public/xen.h`
/// numbering); `None` for a number we do not serve (`-ENOSYS`).
const fn decoder(nr: u64) -> Option<Decoder> {
    Some(match nr {
        nr::MEMORY_OP => memory::decode,
        nr::SET_TIMER_OP => vcpu::decode_set_timer_op,
        nr::XEN_VERSION => version::decode,
        nr::CONSOLE_IO => console::decode,
        nr::VCPU_OP => vcpu::decode,
        nr::SCHED_OP => sched_op::decode,
        nr::HVM_OP => hvm::decode,
        nr::EVENT_CHANNEL_OP => event_channel::decode,
        nr::GRANT_TABLE_OP => grant_table::decode,
        nr::SYSCTL | nr::DOMCTL | nr::PLATFORM_OP => ctl::decode,
        nr::VM_ASSIST => vm_assist::decode,
        nr::MMUEXT_OP | nr::XENPMU_OP | nr::DM_OP | nr::HYPFS_OP => unserved::decode,
        nr::PHYSDEV_OP => physdev::decode,
        HYPERVISOR_CONTROL_OP => control::decode,
        _ => return None,
    })
}

/// The typed request for `args`.
pub(crate) fn decode(args: &RawArgs) -> Request {
    decoder(args.nr).map_or(Request::NoSys, |decoder| decoder(args))
}

/// Runs `request` for the caller in `ctx`. Requests only a control
/// domain may make (every control op, `CONSOLEIO_read`,
/// `SCHEDOP_remote_shutdown`, `XENMEM_set_memory_map`) are served only
/// with a [`Dom0`] proof minted here, those only the hardware domain may
/// make (`PHYSDEVOP_map_pirq`/`unmap_pirq`) with a [`HardwareDomain`]
/// proof (`-EPERM` for everyone else). Requests that name another domain
/// are checked by [`Ctx::target`].
pub(crate) fn dispatch<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    request: Request,
) -> Result<HypercallOutcome, Errno> {
    let value = match request {
        Request::XenVersion(op) => version::handle(ctx, op)?,
        Request::ConsoleWrite { count, buf } => return console::write(ctx, count, buf),
        Request::Dom0Only(request) => return dispatch_dom0(ctx, mint(ctx)?, request),
        Request::HardwareOnly(op) => physdev::handle_dom0(ctx, mint_hardware(ctx)?, op)?,
        Request::SchedOp(op) => return sched_op::handle(ctx, op),
        Request::SetTimerOp { timeout } => vcpu::set_timer_op(ctx, timeout)?,
        Request::VcpuOp { op, vcpu_id } => return vcpu::handle(ctx, op, vcpu_id),
        Request::VmAssist { cmd, kind } => vm_assist::handle(ctx, cmd, kind)?,
        Request::MemoryOp(op) => return memory::handle(ctx, op),
        Request::HvmOp(op) => hvm::handle(ctx, op)?,
        Request::EventChannelOp(op) => event_channel::handle(ctx, op)?,
        Request::GrantTableOp(op) => return grant_table::handle(ctx, op),
        Request::Ctl { which, arg } => return Err(ctl::handle(ctx, which, arg)),
        Request::PhysdevOp(op) => physdev::handle(ctx, op)?,
        Request::Unserved(call) => return Err(unserved::answer(ctx, call)),
        Request::NoSys => return Err(Errno::ENOSYS),
    };
    Ok(HypercallOutcome::Return(value))
}

/// Runs a dom0-only request, with the proof that the caller is dom0.
fn dispatch_dom0<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    dom0: Dom0,
    request: Dom0Request,
) -> Result<HypercallOutcome, Errno> {
    let value = match request {
        Dom0Request::ConsoleRead { count, buf } => console::read(ctx, dom0, count, buf)?,
        Dom0Request::RemoteShutdown { arg } => return sched_op::remote_shutdown(ctx, dom0, arg),
        Dom0Request::SetMemoryMap { arg } => memory::set_memory_map(ctx, dom0, arg)?,
        Dom0Request::Control(op) => return control::handle(ctx, dom0, op),
    };
    Ok(HypercallOutcome::Return(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nr: u64, arg: [u64; 5]) -> RawArgs {
        RawArgs {
            nr,
            arg,
            compat: false,
        }
    }

    /// Whether the door serves sub-op `sub` of hypercall `nr` (`vcpu_op`
    /// decodes its vCPU id first and refuses an unknown sub-op later).
    fn served(nr: u64, sub: u64) -> bool {
        !matches!(
            decode(&args(nr, [sub, 0, 0, 0, 0])),
            Request::NoSys
                | Request::VcpuOp {
                    op: vcpu::VcpuOp::Unknown,
                    ..
                }
        )
    }

    /// The sub-ops docs/abi.md lists as served: every table row whose
    /// first cell names `` `NAME` NUMBER `` pairs, under the nearest
    /// `###` heading that ends in a hypercall number, e.g.
    /// `### memory_op (12)`.
    fn documented() -> std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>> {
        let text = include_str!("../../../docs/abi.md");
        let mut served = std::collections::BTreeMap::<u64, std::collections::BTreeSet<u64>>::new();
        let mut hypercall = None;
        for line in text.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                // The last "(N)" in the heading: "set_timer_op (15) and vcpu_op (24)".
                hypercall = heading
                    .split('(')
                    .filter_map(|part| part.split(')').next()?.trim().parse::<u64>().ok())
                    .next_back();
                continue;
            }
            let (Some(nr), Some(row)) = (hypercall, line.strip_prefix("| ")) else {
                continue;
            };
            let first_cell = row.split(" |").next().unwrap_or("");
            // "`NAME` 7", "`PAUSE` 5 / `UNPAUSE` 6", "`READCONSOLE` 13 (since 1.1)".
            for pair in first_cell.split('`').skip(1).collect::<Vec<_>>().chunks(2) {
                let number = pair.get(1).and_then(|rest| rest.split_whitespace().next());
                if let Some(sub) = number.and_then(|n| n.parse::<u64>().ok()) {
                    served.entry(nr).or_default().insert(sub);
                }
            }
        }
        served
    }

    #[test]
    fn docs_abi_md_lists_exactly_the_served_sub_ops() {
        let documented = documented();
        for nr in 0..nr::NR_HYPERCALLS {
            let no_sub_ops = [
                nr::SET_TIMER_OP,
                nr::SYSCTL,
                nr::DOMCTL,
                nr::PLATFORM_OP,
                nr::VM_ASSIST,
                nr::MMUEXT_OP,
                nr::XENPMU_OP,
                nr::DM_OP,
                nr::HYPFS_OP,
            ];
            if decoder(nr).is_none() || no_sub_ops.contains(&nr) {
                // No sub-ops in the arguments: set_timer_op's is a time;
                // sysctl's, domctl's and platform_op's are inside their
                // struct; vm_assist checks its type before its command;
                // the others serve none (docs/abi.md says how each is
                // answered).
                continue;
            }
            let listed = documented
                .get(&nr)
                .unwrap_or_else(|| panic!("docs/abi.md has no table for hypercall {nr}"));
            for sub in 0..64 {
                assert_eq!(
                    served(nr, sub),
                    listed.contains(&sub),
                    "hypercall {nr} sub-op {sub}: docs/abi.md and the dispatch table disagree"
                );
            }
        }
        let known: Vec<u64> = documented.keys().copied().collect();
        for nr in known {
            assert!(
                decoder(nr).is_some(),
                "docs/abi.md documents hypercall {nr}, which has no decoder"
            );
        }
    }

    #[test]
    fn numbers_without_a_handler_are_nosys() {
        for n in [0, 1, 13, 63, 64, 1 << 32, u64::MAX] {
            assert_eq!(decode(&args(n, [0; 5])), Request::NoSys, "hypercall {n}");
        }
    }

    #[test]
    fn unknown_sub_ops_are_nosys() {
        let cases = [
            (nr::XEN_VERSION, 99),
            (nr::CONSOLE_IO, 2),
            (nr::SCHED_OP, abi::xen::sched::SCHEDOP_SHUTDOWN_CODE.into()),
            (
                nr::EVENT_CHANNEL_OP,
                abi::xen::event_channel::EVTCHNOP_RESET.into(),
            ),
            (nr::PHYSDEV_OP, 6),
            (nr::HVM_OP, abi::xen::hvm::HVMOP_FLUSH_TLBS.into()),
            (nr::MEMORY_OP, abi::xen::memory::XENMEM_EXCHANGE.into()),
            (HYPERVISOR_CONTROL_OP, 0),
            (HYPERVISOR_CONTROL_OP, 18),
        ];
        for (n, sub) in cases {
            assert_eq!(
                decode(&args(n, [sub, 0, 0, 0, 0])),
                Request::NoSys,
                "{n}/{sub}"
            );
        }
        // vcpu_op checks the vCPU id before the sub-op, as Xen does.
        assert!(matches!(
            decode(&args(nr::VCPU_OP, [77, 0, 0, 0, 0])),
            Request::VcpuOp {
                op: vcpu::VcpuOp::Unknown,
                ..
            }
        ));
    }
}
