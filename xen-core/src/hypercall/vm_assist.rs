//! `vm_assist(cmd, type)`, `xen/include/public/xen.h`, as Xen 4.17's
//! `do_vm_assist` (`xen/common/domain.c`) serves an HVM or PVH guest.
//!
//! Both arguments are C `unsigned int`s (the upper 32 bits of a 64-bit
//! register are dropped). In Xen's order:
//! - a type of 64 or more (beyond the assist word), or one not valid for
//!   the caller: `-EINVAL`. An HVM/PVH domain may only use
//!   `VMASST_TYPE_runstate_update_flag` (5), Xen's `HVM_VM_ASSIST_MASK`
//!   (`xen/arch/x86/include/asm/domain.h`);
//! - `VMASST_CMD_enable` (0) turns it on for the caller's whole domain,
//!   `VMASST_CMD_disable` (1) off, each returning 0 (also when it was on,
//!   or off, already);
//! - any other command: `-ENOSYS`.
//!
//! With the runstate update flag on, a registered runstate area is
//! written bracketed by `XEN_RUNSTATE_UPDATE` (see [`super::vcpu`]).

use abi::xen::errno::Errno;
use abi::xen::vm_assist::{
    VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
};

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// The assists an HVM/PVH domain may turn on (Xen's `HVM_VM_ASSIST_MASK`).
const HVM_VM_ASSIST_MASK: u64 = 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG;

pub(crate) fn decode(a: &RawArgs) -> Request {
    Request::VmAssist {
        cmd: a.u32(0),
        kind: a.u32(1),
    }
}

/// `vm_assist(cmd, kind)` for the caller's domain.
pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    cmd: u32,
    kind: u32,
) -> Result<i64, Errno> {
    let valid = HVM_VM_ASSIST_MASK
        .checked_shr(kind)
        .is_some_and(|bits| bits & 1 != 0);
    if !valid {
        return Err(Errno::EINVAL);
    }
    let on = match cmd {
        VMASST_CMD_ENABLE => true,
        VMASST_CMD_DISABLE => false,
        _ => return Err(Errno::ENOSYS),
    };
    ctx.domain_mut()?.xen_mut().set_vm_assist(kind, on);
    Ok(0)
}
