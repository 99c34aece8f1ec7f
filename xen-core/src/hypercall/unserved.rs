//! Hypercalls Xen serves for a PVH guest (`xen/include/hypercall-defs.c`,
//! the hvm64 column) that xen-core does not, each answered with the error
//! Xen 4.17 gives the caller in the same case, so a guest that probes
//! them takes the path it takes under Xen (`vm_assist` (21) is served:
//! [`super::vm_assist`]):
//! - `mmuext_op` (26), `do_mmuext_op`: the page owner `foreigndom` (its
//!   low 16 bits) is `DOMID_SELF`: `-EINVAL` (not a PV domain); the
//!   caller's own id, a domain that does not exist: `-ESRCH`
//!   (`get_pg_owner`); another domain: `-EINVAL`; `DOMID_IO` or
//!   `DOMID_XEN`: `-EPERM` (XSM) for a domU.
//! - `xenpmu_op` (40): `-EOPNOTSUPP` (`do_xenpmu_op`: any domain with a
//!   local APIC, and with the vPMU off, Xen's default).
//! - `dm_op` (41), `do_dm_op` then `dm_op`: more than 2 buffers:
//!   `-E2BIG`; the buffer array unreadable: `-EFAULT`; no such domain
//!   (`DOMID_SELF` included): `-ESRCH`; the caller itself: `-EPERM`
//!   (`rcu_lock_remote_domain_by_id`); another domain from a domU:
//!   `-EPERM` (XSM: not its device model).
//! - `hypfs_op` (42): `-EPERM` for a domU (XSM, checked first).
//!
//! Where Xen would go on to serve the privileged domain, dom0 gets
//! `-ENOSYS`.

use abi::xen::domid::{DomId, DOMID_IO, DOMID_SELF, DOMID_XEN};
use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// `dm_op` takes at most this many buffers (Xen's `dmop_args.buf`).
const DM_OP_MAX_BUFS: u32 = 2;
/// A `xen_dm_op_buf_t`: handle and size, 16 bytes (8 from 32-bit code).
const DM_OP_BUF_BYTES: u64 = 16;
const DM_OP_BUF_BYTES_COMPAT: u64 = 8;

/// An unserved hypercall and the arguments its answer depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Xen's hypercall names, which all end in `_op`.
#[allow(clippy::enum_variant_names)]
pub(crate) enum Unserved {
    MmuextOp {
        /// The page owner (`foreigndom`, truncated to `domid_t` as Xen's
        /// `get_pg_owner` takes it).
        foreigndom: DomId,
    },
    XenpmuOp,
    DmOp {
        domid: DomId,
        nr_bufs: u32,
        bufs: u64,
    },
    HypfsOp,
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let low16 = |i| (a.u32(i) & 0xffff) as u16;
    Request::Unserved(match a.nr {
        nr::MMUEXT_OP => Unserved::MmuextOp {
            foreigndom: low16(3),
        },
        nr::XENPMU_OP => Unserved::XenpmuOp,
        nr::DM_OP => Unserved::DmOp {
            domid: low16(0),
            nr_bufs: a.u32(1),
            bufs: a.arg[2],
        },
        _ => Unserved::HypfsOp,
    })
}

/// Xen's error for `call` from the caller in `ctx`.
pub(crate) fn answer<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    call: Unserved,
) -> Errno {
    let privileged = match ctx.domain() {
        Ok(d) => d.privilege().is_some(),
        Err(e) => return e,
    };
    match call {
        Unserved::XenpmuOp => Errno::EOPNOTSUPP,
        Unserved::HypfsOp if privileged => Errno::ENOSYS,
        Unserved::HypfsOp => Errno::EPERM,
        Unserved::MmuextOp { foreigndom } => mmuext_owner(ctx, foreigndom, privileged),
        Unserved::DmOp {
            domid,
            nr_bufs,
            bufs,
        } => dm_op(ctx, domid, nr_bufs, bufs, privileged),
    }
}

fn mmuext_owner<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &Ctx<'_, P, M, E>,
    owner: DomId,
    privileged: bool,
) -> Errno {
    if owner == DOMID_SELF {
        return Errno::EINVAL;
    }
    if owner == DOMID_IO || owner == DOMID_XEN {
        return if privileged {
            Errno::ENOSYS
        } else {
            Errno::EPERM
        };
    }
    if owner == ctx.caller.domid || ctx.domains.get(owner).is_none() {
        return Errno::ESRCH;
    }
    Errno::EINVAL
}

fn dm_op<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    domid: DomId,
    nr_bufs: u32,
    bufs: u64,
    privileged: bool,
) -> Errno {
    if nr_bufs > DM_OP_MAX_BUFS {
        return Errno::E2BIG;
    }
    let stride = if ctx.compat {
        DM_OP_BUF_BYTES_COMPAT
    } else {
        DM_OP_BUF_BYTES
    };
    for i in 0..u64::from(nr_bufs) {
        let at = bufs.wrapping_add(i * stride);
        let readable = if ctx.compat {
            ctx.read::<[u8; 8]>(at).map(|_| ())
        } else {
            ctx.read::<[u8; 16]>(at).map(|_| ())
        };
        if let Err(e) = readable {
            return e;
        }
    }
    if ctx.domains.get(domid).is_none() {
        return Errno::ESRCH;
    }
    if domid == ctx.caller.domid || !privileged {
        return Errno::EPERM;
    }
    Errno::ENOSYS
}
