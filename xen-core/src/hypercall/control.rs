//! Our control hypercall ([`abi::control`]), dom0 only: the door serves
//! it only with a [`Dom0`] proof, which it mints from the caller's
//! [`Privileged`] token (`-EPERM` for domUs), and every operation takes.
//!
//! `control(op, request, response)`: the request starts with a
//! `ControlHeader` (`-EACCES` for another major or a newer minor;
//! `-EINVAL` for non-zero reserved fields, here and in the request).
//! Every op is `-EFAULT` for an unreadable request or unwritable response
//! and `-ESRCH` for a domid with no domain; an op that changes state
//! checks that its response is writable first, so a fault changes nothing.
//! - `GETINFO`, `LIST`, `GET_STATS`, `PHYSINFO`, `READCONSOLE`: [`info`].
//! - `CREATE`, `DESTROY`, `PAUSE`, `UNPAUSE`: [`lifecycle`].
//! - `POPULATE_MEMORY`, `MAP_FOREIGN`, `UNMAP_FOREIGN`, `SET_MAX_MEM`:
//!   [`memory`].
//! - `SET_VCPU_CONTEXT`: [`vcpu_context`].
//! - `GET_VCPU_STATS`, `SCHED_CREDIT`, `SET_VCPU_AFFINITY`: [`sched`].
//! - Other ops: `-ENOSYS`.
//!
//! What the run loop must do after a control op: act on
//! [`HypercallOutcome::DomainDestroyed`] and
//! [`HypercallOutcome::VcpuStarted`], and flush the TLB of a vCPU whose
//! domain's `p2m_generation` moved (`UNMAP_FOREIGN`, and `DESTROY` of a
//! domain whose frames the caller had mapped).
//!
//! [`Privileged`]: crate::domain::Privileged

mod info;
mod lifecycle;
mod memory;
mod sched;
mod vcpu_context;

#[cfg(test)]
// Tests index the fixtures they built and cast fixture constants chosen to
// fit; a bad index or value is a failed test.
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
mod tests;

use abi::control::{
    CONTROL_OP_CREATE, CONTROL_OP_DESTROY, CONTROL_OP_GETINFO, CONTROL_OP_GET_STATS,
    CONTROL_OP_LIST, CONTROL_OP_MAP_FOREIGN, CONTROL_OP_PAUSE, CONTROL_OP_PHYSINFO,
    CONTROL_OP_POPULATE_MEMORY, CONTROL_OP_READCONSOLE, CONTROL_OP_SET_MAX_MEM,
    CONTROL_OP_SET_VCPU_CONTEXT, CONTROL_OP_UNMAP_FOREIGN, CONTROL_OP_UNPAUSE,
};
use abi::control::{
    CONTROL_OP_GET_VCPU_STATS, CONTROL_OP_SCHED_CREDIT, CONTROL_OP_SET_VCPU_AFFINITY,
};
use abi::xen::errno::Errno;

use super::args::RawArgs;
pub(crate) use super::table::Dom0;
use super::table::{Dom0Request, Request};
use super::{Ctx, HypercallEnv, HypercallOutcome};
use crate::mm::{FramePool, PhysMem, PAGE_SIZE};

/// KiB in a frame: the ABI's memory sizes are KiB.
const FRAME_KIB: u64 = (PAGE_SIZE / 1024) as u64;

/// A control operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ControlKind {
    GetInfo,
    List,
    Create,
    Destroy,
    Pause,
    Unpause,
    Populate,
    MapForeign,
    UnmapForeign,
    SetVcpuContext,
    GetStats,
    Physinfo,
    ReadConsole,
    SetMaxMem,
    GetVcpuStats,
    SchedCredit,
    SetVcpuAffinity,
}

/// A control operation with its request and response addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ControlOp {
    pub kind: ControlKind,
    pub request: u64,
    pub response: u64,
    /// How far a continued operation got (bits 31:8 of the op argument);
    /// 0 on a first call.
    pub progress: u32,
}

/// The op argument holds the `CONTROL_OP_*` number in bits 7:0 and, in a
/// continuation the hypervisor made, the progress in bits 31:8 (Xen's
/// `MEMOP_EXTENT_SHIFT` encoding for `memory_op`). Within 32 bits, so
/// that it survives a 32-bit caller's registers.
const PROGRESS_SHIFT: u32 = 8;

/// The op argument that continues `CONTROL_OP_*` `op` at `progress`.
fn continued(op: u32, progress: u32) -> u64 {
    u64::from(op | progress << PROGRESS_SHIFT)
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let progress = a.u32(0) >> PROGRESS_SHIFT;
    let kind = match a.u32(0) & ((1 << PROGRESS_SHIFT) - 1) {
        CONTROL_OP_GETINFO => ControlKind::GetInfo,
        CONTROL_OP_LIST => ControlKind::List,
        CONTROL_OP_CREATE => ControlKind::Create,
        CONTROL_OP_DESTROY => ControlKind::Destroy,
        CONTROL_OP_PAUSE => ControlKind::Pause,
        CONTROL_OP_UNPAUSE => ControlKind::Unpause,
        CONTROL_OP_POPULATE_MEMORY => ControlKind::Populate,
        CONTROL_OP_MAP_FOREIGN => ControlKind::MapForeign,
        CONTROL_OP_UNMAP_FOREIGN => ControlKind::UnmapForeign,
        CONTROL_OP_SET_VCPU_CONTEXT => ControlKind::SetVcpuContext,
        CONTROL_OP_GET_STATS => ControlKind::GetStats,
        CONTROL_OP_PHYSINFO => ControlKind::Physinfo,
        CONTROL_OP_READCONSOLE => ControlKind::ReadConsole,
        CONTROL_OP_SET_MAX_MEM => ControlKind::SetMaxMem,
        CONTROL_OP_GET_VCPU_STATS => ControlKind::GetVcpuStats,
        CONTROL_OP_SCHED_CREDIT => ControlKind::SchedCredit,
        CONTROL_OP_SET_VCPU_AFFINITY => ControlKind::SetVcpuAffinity,
        _ => return Request::NoSys,
    };
    if progress != 0 && kind != ControlKind::Populate {
        return Request::NoSys;
    }
    Request::Dom0Only(Dom0Request::Control(ControlOp {
        kind,
        request: a.arg[1],
        response: a.arg[2],
        progress,
    }))
}

/// Serves `op` for the privileged caller.
pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    dom0: Dom0,
    op: ControlOp,
) -> Result<HypercallOutcome, Errno> {
    let (request, response) = (op.request, op.response);
    let value = match op.kind {
        ControlKind::GetInfo => info::getinfo(ctx, dom0, request, response)?,
        ControlKind::List => info::list(ctx, dom0, request, response)?,
        ControlKind::GetStats => info::get_stats(ctx, dom0, request, response)?,
        ControlKind::Physinfo => info::physinfo(ctx, dom0, request, response)?,
        ControlKind::ReadConsole => info::readconsole(ctx, dom0, request, response)?,
        ControlKind::Create => lifecycle::create(ctx, dom0, request, response)?,
        ControlKind::Destroy => return lifecycle::destroy(ctx, dom0, request),
        ControlKind::Pause => lifecycle::pause(ctx, dom0, request)?,
        ControlKind::Unpause => lifecycle::unpause(ctx, dom0, request)?,
        ControlKind::Populate => return memory::populate(ctx, dom0, op),
        ControlKind::MapForeign => memory::map_foreign(ctx, dom0, request)?,
        ControlKind::UnmapForeign => memory::unmap_foreign(ctx, dom0, request)?,
        ControlKind::SetMaxMem => memory::set_max_mem(ctx, dom0, request)?,
        ControlKind::SetVcpuContext => return vcpu_context::set(ctx, dom0, request),
        ControlKind::GetVcpuStats => sched::get_vcpu_stats(ctx, dom0, request, response)?,
        ControlKind::SchedCredit => sched::sched_credit(ctx, dom0, request, response)?,
        ControlKind::SetVcpuAffinity => sched::set_vcpu_affinity(ctx, dom0, request, response)?,
    };
    Ok(HypercallOutcome::Return(value))
}

/// `-EINVAL` unless every byte of a reserved field is zero.
fn zero(pad: &[u8]) -> Result<(), Errno> {
    if pad.iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}
