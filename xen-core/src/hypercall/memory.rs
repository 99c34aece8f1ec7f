//! `memory_op(cmd, arg)`, `xen/include/public/memory.h`. Frame numbers of
//! a PVH guest are GFNs. Continuation bits (`cmd >> 6`, Xen's
//! `MEMOP_EXTENT_SHIFT`: the extent to start from) are taken by the
//! reservation sub-ops only; with any other `cmd` they are `-ENOSYS`.
//!
//! - `XENMEM_decrease_reservation` (`xen_memory_reservation`; 20-byte
//!   compat layout): balloons out `nr_extents` extents of `2^extent_order`
//!   frames (order at most [`DOMU_MAX_ORDER`]), each starting at the GFN
//!   read from `extent_start[i]`, from `DOMID_SELF`/own domid, or any
//!   domain for dom0. Returns the number of extents done: it stops at the
//!   first extent whose GFN cannot be read or one of whose frames is not
//!   the domain's own RAM or is mapped by another domain
//!   (`Domain::balloon_out`), as Xen's `decrease_reservation` does. As
//!   Xen's `do_memory_op`, it has no error code: an unreadable request,
//!   a domain that does not exist or that the caller may not change, an
//!   order too large or more extents than a 32-bit `cmd` can count
//!   return the start extent, changing nothing. At most [`SLICE_FRAMES`]
//!   frames per call: then the call continues itself (`cmd` | next
//!   extent << 6).
//! - `XENMEM_populate_physmap`: the same request and rules, the other
//!   way: fresh, zeroed frames at each extent's GFN (aligned to its
//!   order, unmapped, in the p2m's reach), within the domain's
//!   `max_pages`; `mem_flags` other than the address-bits field refuse
//!   the call. Nothing is written back (Xen writes MFNs for PV only).
//! - `XENMEM_current_reservation`, `XENMEM_maximum_reservation` (a
//!   `domid_t`): the domain's `tot_pages` or `max_pages`; own domain, or
//!   any for dom0 (`-EPERM`, `-ESRCH`, `-EFAULT`).
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
//! - `XENMEM_add_to_physmap_batch` (space `gmfn_foreign`) and
//!   `XENMEM_remove_from_physmap`: foreign mappings as Linux's privcmd
//!   makes them ([`foreign_batch`]).
//! - Other sub-ops: `-ENOSYS`.

mod foreign_batch;
#[cfg(test)]
pub(crate) use foreign_batch::BATCH_SLICE;

use abi::xen::errno::Errno;
use abi::xen::memory::{
    E820Entry, XenAddToPhysmap, XenForeignMemoryMap, XenMemoryMap, XenMemoryReservation,
    MAX_MEMMAP_ENTRIES, XENMAPSPACE_GMFN, XENMAPSPACE_GMFN_RANGE, XENMAPSPACE_GRANT_TABLE,
    XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP, XENMEM_ADD_TO_PHYSMAP_BATCH,
    XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_MAXIMUM_RESERVATION,
    XENMEM_MEMORY_MAP, XENMEM_POPULATE_PHYSMAP, XENMEM_REMOVE_FROM_PHYSMAP, XENMEM_SET_MEMORY_MAP,
};
use zerocopy::IntoBytes;

use super::args::RawArgs;
use super::compat::{CompatAddToPhysmap, CompatMemoryMap, CompatMemoryReservation};
use super::table::{Dom0, Dom0Request, Request};
use super::{fault, grant_table, Ctx, HypercallEnv, HypercallOutcome};
use crate::domain::{Domain, SLICE_FRAMES};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::NPT_MAX_GFN;
use crate::time::pvclock::{publish_wallclock, update_vcpu_time};

/// Xen's `MEMOP_CMD_MASK`: the sub-op bits of `cmd`.
const MEMOP_CMD_MASK: u64 = 0x3f;
/// Xen's `MEMOP_EXTENT_SHIFT`: where a continued call's start extent sits
/// in `cmd`.
const MEMOP_EXTENT_SHIFT: u32 = 6;
/// The largest `extent_order` a guest may balloon out or in in one extent
/// (2 MiB; Xen's default for domUs, `CONFIG_DOMU_MAX_ORDER`, is 9 too).
pub const DOMU_MAX_ORDER: u32 = 9;
/// `XENMEMF_address_bits(n)`: the low 8 bits of `mem_flags`, the widest
/// machine address the frames may have. Meaningless for a PVH guest, which
/// sees GFNs only; accepted and ignored. Any other flag
/// (`XENMEMF_populate_on_demand`, `XENMEMF_exact_node`, vNUMA) refuses the
/// call.
const XENMEMF_ADDRESS_BITS_MASK: u32 = 0xff;
/// The most extents a reservation request may have: what a continuation
/// can count in a 32-bit `cmd` (Xen's `UINT_MAX >> MEMOP_EXTENT_SHIFT`,
/// for 64-bit callers too).
const MAX_EXTENTS: u64 = (u32::MAX >> MEMOP_EXTENT_SHIFT) as u64;

/// A `memory_op` sub-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryOp {
    AddToPhysmap {
        arg: u64,
    },
    MemoryMap {
        arg: u64,
    },
    Reservation {
        arg: u64,
        start: u64,
        way: Reservation,
    },
    ReservationOf {
        arg: u64,
        maximum: bool,
    },
    AddToPhysmapBatch {
        arg: u64,
        start: u64,
    },
    RemoveFromPhysmap {
        arg: u64,
        start: u64,
    },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let arg = a.arg[1];
    let start = a.arg[0] >> MEMOP_EXTENT_SHIFT;
    let way = match u32::try_from(a.arg[0] & MEMOP_CMD_MASK) {
        Ok(XENMEM_DECREASE_RESERVATION) => Some(Reservation::Decrease),
        Ok(XENMEM_POPULATE_PHYSMAP) => Some(Reservation::Populate),
        _ => None,
    };
    if let Some(way) = way {
        return Request::MemoryOp(MemoryOp::Reservation { arg, start, way });
    }
    match u32::try_from(a.arg[0] & MEMOP_CMD_MASK) {
        Ok(XENMEM_ADD_TO_PHYSMAP_BATCH) => {
            return Request::MemoryOp(MemoryOp::AddToPhysmapBatch { arg, start })
        }
        Ok(XENMEM_REMOVE_FROM_PHYSMAP) => {
            return Request::MemoryOp(MemoryOp::RemoveFromPhysmap { arg, start })
        }
        _ => {}
    }
    if a.arg[0] & !MEMOP_CMD_MASK != 0 {
        return Request::NoSys;
    }
    Request::MemoryOp(match a.u32(0) {
        XENMEM_ADD_TO_PHYSMAP => MemoryOp::AddToPhysmap { arg },
        XENMEM_MEMORY_MAP => MemoryOp::MemoryMap { arg },
        XENMEM_CURRENT_RESERVATION => MemoryOp::ReservationOf {
            arg,
            maximum: false,
        },
        XENMEM_MAXIMUM_RESERVATION => MemoryOp::ReservationOf { arg, maximum: true },
        XENMEM_SET_MEMORY_MAP => return Request::Dom0Only(Dom0Request::SetMemoryMap { arg }),
        _ => return Request::NoSys,
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: MemoryOp,
) -> Result<HypercallOutcome, Errno> {
    let value = match op {
        MemoryOp::AddToPhysmap { arg } => add_to_physmap(ctx, arg)?,
        MemoryOp::MemoryMap { arg } => memory_map(ctx, arg)?,
        MemoryOp::ReservationOf { arg, maximum } => reservation_of(ctx, arg, maximum)?,
        MemoryOp::Reservation { arg, start, way } => return reservation(ctx, arg, start, way),
        MemoryOp::AddToPhysmapBatch { arg, start } => {
            return foreign_batch::add_to_physmap_batch(ctx, arg, start)
        }
        MemoryOp::RemoveFromPhysmap { arg, start } => {
            foreign_batch::remove_from_physmap(ctx, arg, start)?
        }
    };
    Ok(HypercallOutcome::Return(value))
}

/// Which way a reservation sub-op moves frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reservation {
    /// `XENMEM_decrease_reservation`: balloon out.
    Decrease,
    /// `XENMEM_populate_physmap`: balloon in.
    Populate,
}

impl Reservation {
    fn cmd(self) -> u32 {
        match self {
            Self::Decrease => XENMEM_DECREASE_RESERVATION,
            Self::Populate => XENMEM_POPULATE_PHYSMAP,
        }
    }
}

/// `XENMEM_decrease_reservation` or `XENMEM_populate_physmap` from extent
/// `start` (see the module doc).
fn reservation<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
    start: u64,
    way: Reservation,
) -> Result<HypercallOutcome, Errno> {
    let done = i64::try_from(start).map_err(|_| Errno::EINVAL)?;
    // As Xen's do_memory_op: a request that cannot be read, names no
    // domain or one the caller may not change, or is refused whole,
    // returns the start extent rather than an error.
    let Ok(r) = ctx.read_abi::<XenMemoryReservation, CompatMemoryReservation>(arg) else {
        return Ok(HypercallOutcome::Return(done));
    };
    let refused = start >= r.nr_extents
        || r.nr_extents > MAX_EXTENTS
        || r.extent_order > DOMU_MAX_ORDER
        || (way == Reservation::Populate && r.mem_flags & !XENMEMF_ADDRESS_BITS_MASK != 0);
    let target = ctx.target(r.domid);
    let Ok(target) = target.ok().filter(|_| !refused).ok_or(()) else {
        return Ok(HypercallOutcome::Return(done));
    };
    let frames = 1u64 << r.extent_order;
    let entry_size: u64 = if ctx.compat { 4 } else { 8 };
    let mut budget = SLICE_FRAMES;
    for i in start..r.nr_extents {
        if budget < frames {
            let cmd = u64::from(way.cmd()) | i << MEMOP_EXTENT_SHIFT;
            return Ok(HypercallOutcome::Continue(ctx.args.continue_with(0, cmd)));
        }
        budget -= frames;
        let extent = read_extent(ctx, r.extent_start, i, entry_size);
        let domain = ctx.domains.get_mut(target).ok_or(Errno::ESRCH)?;
        let ok = extent.is_some_and(|first| match way {
            Reservation::Decrease => (0..frames)
                .map_while(|j| first.checked_add(j))
                .all(|gfn| domain.balloon_out(ctx.pool, ctx.mem, Gfn(gfn)).is_ok()),
            Reservation::Populate => populate_extent(domain, ctx.pool, ctx.mem, first, frames),
        });
        if !ok {
            return Ok(HypercallOutcome::Return(
                i64::try_from(i).unwrap_or(i64::MAX),
            ));
        }
    }
    Ok(HypercallOutcome::Return(
        i64::try_from(r.nr_extents).unwrap_or(i64::MAX),
    ))
}

/// One extent of `XENMEM_populate_physmap`: `frames` fresh frames at GFNs
/// `first..`, all or nothing; `first` must be aligned to the extent, every
/// GFN unmapped and in the p2m's reach, and the domain under its maximum
/// with frames free in the pool.
fn populate_extent(
    domain: &mut Domain,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    first: u64,
    frames: u64,
) -> bool {
    first.is_multiple_of(frames)
        && domain.check_populate(pool, mem, Gfn(first), frames).is_ok()
        && domain.populate(pool, mem, Gfn(first), frames).is_ok()
}

/// `XENMEM_current_reservation` or `XENMEM_maximum_reservation`: the
/// pages the domain at `arg` (a `domid_t`) holds, or may hold.
fn reservation_of<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    arg: u64,
    maximum: bool,
) -> Result<i64, Errno> {
    let domid: u16 = ctx.read(arg)?;
    let target = ctx.target(domid)?;
    let domain = ctx.domains.get(target).ok_or(Errno::ESRCH)?;
    let pages = if maximum {
        domain.max_pages()
    } else {
        domain.tot_pages()
    };
    i64::try_from(pages).map_err(|_| Errno::EINVAL)
}

/// `extent_start[i]`, a GFN (`u64`, or `u32` from a 32-bit caller);
/// `None` if it cannot be read.
fn read_extent<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    extent_start: u64,
    i: u64,
    entry_size: u64,
) -> Option<u64> {
    let gva = extent_start.checked_add(i.checked_mul(entry_size)?)?;
    if entry_size == 4 {
        ctx.read::<u32>(gva).ok().map(u64::from)
    } else {
        ctx.read::<u64>(gva).ok()
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
