//! `memory_op(cmd, arg)`, `xen/include/public/memory.h`. Frame numbers of
//! a PVH guest are GFNs. A `cmd` with continuation bits (`cmd >> 6`, Xen's
//! `MEMOP_EXTENT_SHIFT`) is `-ENOSYS`: no memory_op here is long enough
//! to need a continuation.
//!
//! - `XENMEM_add_to_physmap` (`xen_add_to_physmap`; 16-byte compat layout
//!   from 32-bit callers): for `DOMID_SELF`/own domid, or any domain for
//!   dom0 (`-EPERM`, `-ESRCH`). Space `XENMAPSPACE_shared_info`, `idx` 0
//!   (`-EINVAL` otherwise): maps the domain's shared-info frame read-write
//!   at `gpfn` (`-EINVAL` beyond the p2m's reach), moving it from an
//!   earlier GFN; a RAM frame there is freed, as in Xen. `-ENOMEM` when
//!   the domain has too many shared frames or the NPT cannot grow. The
//!   wall clock and every vCPU's pvclock are published then. `-EBUSY`
//!   if the GFN holds a grant mapping or a frame another domain maps
//!   through a grant. Space `XENMAPSPACE_grant_table`: grant-table frame
//!   `idx` (`grant_table::add_to_physmap`). Spaces `gmfn` and
//!   `gmfn_range`: `-ENOSYS` for now; others `-EINVAL`.
//! - `XENMEM_memory_map` (`xen_memory_map`; 8-byte compat layout): copies
//!   up to `nr_entries` entries of the domain's E820 map (the one in its
//!   start info) to `buffer` and sets `nr_entries` to the number copied.
//!   `-ENOSYS` if the domain has no stored map (as Xen). Nothing is
//!   written unless all of it can be.
//! - `XENMEM_set_memory_map` (`xen_foreign_memory_map`), dom0 only
//!   (`-EPERM`; Xen: the toolstack's device-model privilege): replaces the
//!   E820 map of `domid` (`-ESRCH`) with `nr_entries` entries from
//!   `buffer`; more than the domain can hold (16) is `-EINVAL`. 64-bit
//!   callers only (`-ENOSYS` from 32-bit code).
//! - Other sub-ops: `-ENOSYS`.

use abi::xen::errno::Errno;
use abi::xen::memory::{
    E820Entry, XenAddToPhysmap, XenForeignMemoryMap, XenMemoryMap, MAX_MEMMAP_ENTRIES,
    XENMAPSPACE_GMFN, XENMAPSPACE_GMFN_RANGE, XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO,
    XENMEM_ADD_TO_PHYSMAP, XENMEM_MEMORY_MAP, XENMEM_SET_MEMORY_MAP,
};
use zerocopy::IntoBytes;

use super::args::RawArgs;
use super::compat::{CompatAddToPhysmap, CompatMemoryMap};
use super::table::{Dom0, Dom0Request, Request};
use super::{fault, grant_table, Ctx, HypercallEnv};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::NPT_MAX_GFN;
use crate::time::pvclock::{publish_wallclock, update_vcpu_time};

/// Xen's `MEMOP_CMD_MASK`: the sub-op bits of `cmd`.
const MEMOP_CMD_MASK: u64 = 0x3f;

/// A `memory_op` sub-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryOp {
    AddToPhysmap { arg: u64 },
    MemoryMap { arg: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[1];
    if a.arg[0] & !MEMOP_CMD_MASK != 0 {
        return Request::NoSys;
    }
    Request::MemoryOp(match a.u32(0) {
        XENMEM_ADD_TO_PHYSMAP => MemoryOp::AddToPhysmap { arg },
        XENMEM_MEMORY_MAP => MemoryOp::MemoryMap { arg },
        XENMEM_SET_MEMORY_MAP => return Request::Dom0Only(Dom0Request::SetMemoryMap { arg }),
        _ => return Request::NoSys,
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: MemoryOp,
) -> Result<i64, Errno> {
    match op {
        MemoryOp::AddToPhysmap { arg } => add_to_physmap(ctx, arg),
        MemoryOp::MemoryMap { arg } => memory_map(ctx, arg),
    }
}

pub(crate) fn set_memory_map<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    arg: u64,
) -> Result<i64, Errno> {
    if ctx.compat {
        return Err(Errno::ENOSYS);
    }
    let request: XenForeignMemoryMap = ctx.read(arg)?;
    let n = request.map.nr_entries as usize;
    if n > MAX_MEMMAP_ENTRIES {
        return Err(Errno::EINVAL);
    }
    let mut entries = [E820Entry::default(); MAX_MEMMAP_ENTRIES];
    let entries = entries.get_mut(..n).ok_or(Errno::EINVAL)?;
    ctx.guest(|g| g.copy_from_guest(request.map.buffer, entries.as_mut_bytes()))?
        .map_err(fault)?;
    let domain = ctx.domains.get_mut(request.domid).ok_or(Errno::ESRCH)?;
    domain
        .xen_mut()
        .set_e820(entries)
        .map_err(|_| Errno::EINVAL)?;
    Ok(0)
}

fn add_to_physmap<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
) -> Result<i64, Errno> {
    let xatp: XenAddToPhysmap = ctx.read_abi::<_, CompatAddToPhysmap>(arg)?;
    let target = ctx.target(xatp.domid)?;
    match xatp.space {
        XENMAPSPACE_SHARED_INFO => {}
        XENMAPSPACE_GRANT_TABLE => {
            return grant_table::add_to_physmap(ctx, target, xatp.idx, xatp.gpfn)
        }
        XENMAPSPACE_GMFN | XENMAPSPACE_GMFN_RANGE => return Err(Errno::ENOSYS),
        _ => return Err(Errno::EINVAL),
    }
    if xatp.idx != 0 || xatp.gpfn > NPT_MAX_GFN {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get_mut(target).ok_or(Errno::ESRCH)?;
    domain
        .map_shared_info(ctx.pool, ctx.mem, Gfn(xatp.gpfn))
        .map_err(Errno::from)?;
    let clock = ctx.env.clock();
    let tsc = ctx.env.tsc();
    publish_wallclock(domain, ctx.mem, clock);
    for id in 0..domain.nr_vcpus() {
        // A registered area the guest unmapped is skipped.
        let _ = update_vcpu_time(domain, ctx.mem, id, clock, tsc);
    }
    Ok(0)
}

fn memory_map<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
) -> Result<i64, Errno> {
    let request: XenMemoryMap = ctx.read_abi::<_, CompatMemoryMap>(arg)?;
    let mut entries = [E820Entry::default(); MAX_MEMMAP_ENTRIES];
    let stored = ctx.domain()?.xen().memory_map();
    if stored.is_empty() {
        return Err(Errno::ENOSYS);
    }
    let mut nr_entries = 0;
    for (entry, stored) in entries
        .iter_mut()
        .zip(stored)
        .take(request.nr_entries as usize)
    {
        *entry = *stored;
        nr_entries += 1;
    }
    let n = nr_entries as usize;
    // Rewrite the request unchanged first: fails before the buffer changes
    // if the structure is not writable.
    write_memory_map(ctx, arg, &request)?;
    ctx.write_bytes(
        request.buffer,
        entries.get(..n).ok_or(Errno::EINVAL)?.as_bytes(),
    )?;
    let done = XenMemoryMap {
        nr_entries,
        ..request
    };
    write_memory_map(ctx, arg, &done)?;
    Ok(0)
}

/// Writes `map` at `arg` in the caller's layout.
fn write_memory_map<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
    map: &XenMemoryMap,
) -> Result<(), Errno> {
    if ctx.compat {
        let compat = CompatMemoryMap {
            nr_entries: map.nr_entries,
            // Came from a 32-bit field.
            buffer: (map.buffer & 0xffff_ffff) as u32,
        };
        ctx.write(arg, &compat)
    } else {
        ctx.write(arg, map)
    }
}
