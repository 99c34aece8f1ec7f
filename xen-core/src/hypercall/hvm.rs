//! `hvm_op(op, arg)`: `HVMOP_get_param` / `HVMOP_set_param` over the
//! domain's table of `HVM_NR_PARAMS` parameters,
//! `xen/include/public/hvm/hvm_op.h` and `hvm/params.h`.
//!
//! Order of checks (Xen's `hvmop_{get,set}_param`): `-EFAULT` (the
//! `xen_hvm_param` is unreadable), `-EINVAL` (index ≥ `HVM_NR_PARAMS`,
//! or `pad` ≠ 0), `-ESRCH` (no such domain), `-EPERM` (another domain
//! without the privilege token, or a parameter the domain may not touch).
//! An unset parameter reads as 0 with success.
//!
//! Who may touch what (Xen's `hvm_allow_{get,set}_param`): a domain acting
//! on itself — dom0 included — reads only [`GUEST_READABLE`] and sets only
//! [`GUEST_WRITABLE`]; dom0 acting on another domain reads and sets any.
//! Values checked: `HVM_PARAM_CALLBACK_IRQ` must be 0 or a vector (type
//! 2) of at least 0x10, as upcalls go only by vector (`-EINVAL`);
//! `HVM_PARAM_X87_FIP_WIDTH` 0, 2, 4 or 8. Setting a parameter stores it;
//! a vector callback is where event upcalls go
//! ([`crate::event::upcall_for_entry`]).
//!
//! `HVMOP_set_evtchn_upcall_vector` (Xen's
//! `hvmop_set_evtchn_upcall_vector`): reads `xen_hvm_evtchn_upcall_vector`
//! (`-EFAULT`); a vector below 0x10 is `-EINVAL`, a vCPU the caller does
//! not have `-ENOENT`. That vCPU's upcalls then use this vector instead of
//! the callback parameter's. `pagetable_dying`, `get_time` and
//! `guest_request_vm_event`: [`misc`]. Other hvm_ops: `-ENOSYS`.

mod misc;

use abi::xen::errno::Errno;
use abi::xen::hvm::{self as h, CallbackVia, XenHvmEvtchnUpcallVector, XenHvmParam, HVM_NR_PARAMS};

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// Parameters a domain may read about itself.
pub const GUEST_READABLE: &[u32] = &[
    h::HVM_PARAM_CALLBACK_IRQ,
    h::HVM_PARAM_VM86_TSS,
    h::HVM_PARAM_VM86_TSS_SIZED,
    h::HVM_PARAM_ACPI_IOPORTS_LOCATION,
    h::HVM_PARAM_VM_GENERATION_ID_ADDR,
    h::HVM_PARAM_STORE_PFN,
    h::HVM_PARAM_STORE_EVTCHN,
    h::HVM_PARAM_CONSOLE_PFN,
    h::HVM_PARAM_CONSOLE_EVTCHN,
    h::HVM_PARAM_ALTP2M,
    h::HVM_PARAM_X87_FIP_WIDTH,
];

/// Parameters a domain may set on itself.
pub const GUEST_WRITABLE: &[u32] = &[
    h::HVM_PARAM_CALLBACK_IRQ,
    h::HVM_PARAM_VM86_TSS,
    h::HVM_PARAM_VM86_TSS_SIZED,
    h::HVM_PARAM_ACPI_IOPORTS_LOCATION,
    h::HVM_PARAM_VM_GENERATION_ID_ADDR,
    h::HVM_PARAM_STORE_EVTCHN,
    h::HVM_PARAM_CONSOLE_EVTCHN,
    h::HVM_PARAM_X87_FIP_WIDTH,
];

/// Lowest vector an upcall may use (0..15 are exceptions).
const MIN_UPCALL_VECTOR: u8 = 0x10;

/// An `hvm_op` sub-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HvmOp {
    SetParam { arg: u64 },
    GetParam { arg: u64 },
    SetEvtchnUpcallVector { arg: u64 },
    Misc(misc::MiscOp),
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[1];
    Request::HvmOp(match a.arg[0] {
        op if op == u64::from(h::HVMOP_SET_PARAM) => HvmOp::SetParam { arg },
        op if op == u64::from(h::HVMOP_GET_PARAM) => HvmOp::GetParam { arg },
        op if op == u64::from(h::HVMOP_SET_EVTCHN_UPCALL_VECTOR) => {
            HvmOp::SetEvtchnUpcallVector { arg }
        }
        op => match misc::MiscOp::decode(op, arg) {
            Some(misc) => HvmOp::Misc(misc),
            None => return Request::NoSys,
        },
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: HvmOp,
) -> Result<i64, Errno> {
    let arg = match op {
        HvmOp::SetEvtchnUpcallVector { arg } => return set_evtchn_upcall_vector(ctx, arg),
        HvmOp::Misc(op) => return misc::handle(ctx, op),
        HvmOp::SetParam { arg } | HvmOp::GetParam { arg } => arg,
    };
    let mut param: XenHvmParam = ctx.read(arg)?;
    if param.index >= HVM_NR_PARAMS || param.pad != 0 {
        return Err(Errno::EINVAL);
    }
    let target = ctx.target(param.domid)?;
    let on_self = target == ctx.caller.domid;
    let index = param.index as usize;
    let domain = ctx.domains.get_mut(target).ok_or(Errno::ESRCH)?;
    let slot = domain
        .xen_mut()
        .hvm_params
        .get_mut(index)
        .ok_or(Errno::EINVAL)?;
    if let HvmOp::SetParam { .. } = op {
        if on_self && !GUEST_WRITABLE.contains(&param.index) {
            return Err(Errno::EPERM);
        }
        check_value(param.index, param.value)?;
        *slot = param.value;
        return Ok(0);
    }
    if on_self && !GUEST_READABLE.contains(&param.index) {
        return Err(Errno::EPERM);
    }
    param.value = *slot;
    ctx.write(arg, &param)?;
    Ok(0)
}

fn set_evtchn_upcall_vector<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
) -> Result<i64, Errno> {
    let request: XenHvmEvtchnUpcallVector = ctx.read(arg)?;
    if request.vector < MIN_UPCALL_VECTOR {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domain_mut()?;
    if domain.vcpu(request.vcpu).is_none() {
        return Err(Errno::ENOENT);
    }
    domain
        .events_mut()
        .set_upcall_vector(request.vcpu, request.vector)?;
    Ok(0)
}

/// Refuses values xen-core cannot honour.
fn check_value(index: u32, value: u64) -> Result<(), Errno> {
    let ok = match index {
        h::HVM_PARAM_CALLBACK_IRQ => match CallbackVia::decode(value) {
            Some(CallbackVia::Disabled) => true,
            Some(CallbackVia::Vector(v)) => {
                v >= MIN_UPCALL_VECTOR && value == CallbackVia::Vector(v).encode()
            }
            _ => false,
        },
        h::HVM_PARAM_X87_FIP_WIDTH => matches!(value, 0 | 2 | 4 | 8),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}
