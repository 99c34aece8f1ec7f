//! The `hvm_op`s a PVH guest may make besides parameters and upcall
//! vectors, as Xen's `do_hvm_op` answers them:
//! - `HVMOP_pagetable_dying` (9), `xen_hvm_pagetable_dying` (16 bytes:
//!   domid u16 @0, pad, gpa u64 @8): a hint for shadow paging only.
//!   `-EFAULT` unreadable; `-ESRCH` no such domain; `-EOPNOTSUPP` another
//!   domain than the caller; `-EINVAL` otherwise (nested paging: Xen's
//!   answer without shadow paging, which guests take as "not supported").
//! - `HVMOP_get_time` (10), `xen_hvm_get_time` (8 bytes: now u64):
//!   system time in ns, as in `vcpu_time_info`; `-EFAULT`.
//! - `HVMOP_guest_request_vm_event` (24): a null `arg` is 0 (no monitor
//!   is listening: nothing happens), any other `-EINVAL`.

use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::errno::Errno;
use abi::xen::hvm as h;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// One of the sub-ops this module serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MiscOp {
    PagetableDying { arg: u64 },
    GetTime { arg: u64 },
    GuestRequestVmEvent { arg: u64 },
}

impl MiscOp {
    /// The sub-op `op` with argument `arg`, if it is one of these.
    pub(crate) fn decode(op: u64, arg: u64) -> Option<Self> {
        Some(match u32::try_from(op).ok()? {
            h::HVMOP_PAGETABLE_DYING => MiscOp::PagetableDying { arg },
            h::HVMOP_GET_TIME => MiscOp::GetTime { arg },
            h::HVMOP_GUEST_REQUEST_VM_EVENT => MiscOp::GuestRequestVmEvent { arg },
            _ => return None,
        })
    }
}

/// `struct xen_hvm_pagetable_dying`.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
struct PagetableDying {
    domid: DomId,
    pad: [u16; 3],
    gpa: u64,
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: MiscOp,
) -> Result<i64, Errno> {
    match op {
        MiscOp::PagetableDying { arg } => {
            let request: PagetableDying = ctx.read(arg)?;
            let own = request.domid == DOMID_SELF || request.domid == ctx.caller.domid;
            if !own && ctx.domains.get(request.domid).is_none() {
                return Err(Errno::ESRCH);
            }
            Err(if own {
                Errno::EINVAL
            } else {
                Errno::EOPNOTSUPP
            })
        }
        MiscOp::GetTime { arg } => {
            let now = ctx.now_ns();
            ctx.write(arg, &now)?;
            Ok(0)
        }
        MiscOp::GuestRequestVmEvent { arg: 0 } => Ok(0),
        MiscOp::GuestRequestVmEvent { .. } => Err(Errno::EINVAL),
    }
}
