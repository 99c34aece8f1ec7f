//! `grant_table_op(cmd, uop, count)`, `xen/include/public/grant_table.h`
//! (v1), following `do_grant_table_op` in `xen/common/grant_table.c`.
//! `uop` is the guest virtual address of `count` structures of the
//! sub-op's type; each one's outcome is its `status` (`GNTST_*`), the
//! call returns 0 or a negative errno.
//!
//! - Whole call: `count` negative as a C `int`, or bits above Xen's
//!   `GNTTABOP_CMD_MASK` (0xfff) in `cmd` → `-EINVAL`; an unreadable or
//!   unwritable structure → `-EFAULT` (earlier ones stay done).
//! - `GNTTABOP_map_grant_ref`, `unmap_grant_ref`, `copy`: an array,
//!   [`GNTTAB_BATCH`] entries per call; the rest goes through a
//!   continuation (RIP back on the VMMCALL, `uop` and `count` advanced),
//!   as Xen does at a preemption check. Semantics in
//!   [`crate::grant::map`] and [`crate::grant::copy`]. Map writes the
//!   whole structure back (`handle`; `dev_bus_addr` 0: no host physical
//!   address is given out); unmap and copy write only `status`.
//! - `GNTTABOP_setup_table` (`count` 1 or `-EINVAL`): `dom` (`DOMID_SELF`,
//!   itself, or any domain for dom0: `GNTST_bad_domain`,
//!   `GNTST_permission_denied`) gets at least `nr_frames` table frames
//!   (more than [`GRANT_TABLE_FRAMES`] → `GNTST_general_error`); for a
//!   translated (PVH) guest `frame_list[i]` receives the GFN where frame
//!   `i` is mapped, or Xen's `INVALID_GFN` (all ones) if it is not
//!   (Xen's `gnttab_shared_gfn` on x86); an unwritable list gives
//!   `GNTST_bad_virt_addr`. Only `status` is written back.
//! - `GNTTABOP_query_size` (`count` 1): `nr_frames` now, `max_nr_frames`
//!   = [`GRANT_TABLE_FRAMES`]; same domain rules.
//! - `GNTTABOP_set_version` (`gnttab_set_version`, 4 bytes: version
//!   u32): version 1 is 0; 2 is `-ENOSYS` (Xen's answer when v2 is not
//!   offered: "behave as before set_version was introduced"); others
//!   `-EINVAL`. Whatever the result, the table's version (1) is written
//!   back (`-EFAULT` if it cannot be).
//! - `GNTTABOP_get_version` (`gnttab_get_version`, 8 bytes: dom u16 @0,
//!   version u32 @4 out): same domain rules as query_size (`-ESRCH`,
//!   `-EPERM`, as Xen's return codes, not statuses); writes 1.
//! - Other sub-ops (transfer, swap, ...): `-ENOSYS`.
//!
//! 32-bit callers: `setup_table` and `copy` have compat layouts (4-byte
//! `xen_pfn_t` and handles); the others are the same in both.

use abi::convert::u32_const;
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTST_OKAY, GNTTABOP_COPY,
    GNTTABOP_GET_VERSION, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE,
    GNTTABOP_SET_VERSION, GNTTABOP_UNMAP_GRANT_REF,
};
use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv, HypercallOutcome};
use crate::grant::copy::{copy, CopySide};
use crate::grant::frames::map_table_frame;
use crate::grant::map::{map_grant_ref, unmap_grant_ref, MapRequest};
use crate::grant::{check_live, GrantError, GRANT_TABLE_FRAMES};
use crate::mm::{FramePool, Gfn, PhysMem};
use crate::paging::npt::NPT_MAX_GFN;

/// Array entries served per call before a continuation (Xen's unmap
/// batch, `GNTTAB_UNMAP_BATCH_SIZE`, is 32 too).
pub const GNTTAB_BATCH: u32 = 32;
/// Xen's `GNTTABOP_CMD_MASK`: the sub-op bits of `cmd`.
const GNTTABOP_CMD_MASK: u32 = 0xfff;
/// Xen's `INVALID_GFN` as a `xen_pfn_t`.
const INVALID_GFN: u64 = u64::MAX;

/// A `grant_table_op` sub-op with its array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrantTableOp {
    MapGrantRef {
        uop: u64,
        count: u32,
    },
    UnmapGrantRef {
        uop: u64,
        count: u32,
    },
    SetupTable {
        uop: u64,
        count: u32,
    },
    Copy {
        uop: u64,
        count: u32,
    },
    QuerySize {
        uop: u64,
        count: u32,
    },
    SetVersion {
        uop: u64,
    },
    GetVersion {
        uop: u64,
    },
    /// Negative `count` or continuation bits in `cmd`: `-EINVAL`.
    Invalid,
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let (cmd, uop, count) = (a.u32(0), a.arg[1], a.u32(2));
    if count.cast_signed() < 0 || cmd & !GNTTABOP_CMD_MASK != 0 {
        return Request::GrantTableOp(GrantTableOp::Invalid);
    }
    Request::GrantTableOp(match cmd {
        GNTTABOP_MAP_GRANT_REF => GrantTableOp::MapGrantRef { uop, count },
        GNTTABOP_UNMAP_GRANT_REF => GrantTableOp::UnmapGrantRef { uop, count },
        GNTTABOP_SETUP_TABLE => GrantTableOp::SetupTable { uop, count },
        GNTTABOP_COPY => GrantTableOp::Copy { uop, count },
        GNTTABOP_QUERY_SIZE => GrantTableOp::QuerySize { uop, count },
        GNTTABOP_SET_VERSION => GrantTableOp::SetVersion { uop },
        GNTTABOP_GET_VERSION => GrantTableOp::GetVersion { uop },
        _ => return Request::NoSys,
    })
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: GrantTableOp,
) -> Result<HypercallOutcome, Errno> {
    let (uop, count, size, each): (u64, u32, usize, Each<P, M, E>) = match op {
        GrantTableOp::Invalid => return Err(Errno::EINVAL),
        GrantTableOp::SetupTable { uop, count } => return single(ctx, uop, count, setup_table),
        GrantTableOp::QuerySize { uop, count } => return single(ctx, uop, count, query_size),
        GrantTableOp::SetVersion { uop } => return set_version(ctx, uop),
        GrantTableOp::GetVersion { uop } => return get_version(ctx, uop),
        GrantTableOp::MapGrantRef { uop, count } => {
            (uop, count, size_of::<GnttabMapGrantRef>(), map_one)
        }
        GrantTableOp::UnmapGrantRef { uop, count } => {
            (uop, count, size_of::<GnttabUnmapGrantRef>(), unmap_one)
        }
        GrantTableOp::Copy { uop, count } => {
            let size = if ctx.compat {
                size_of::<CompatGnttabCopy>()
            } else {
                size_of::<GnttabCopy>()
            };
            (uop, count, size, copy_one)
        }
    };
    let batch = count.min(GNTTAB_BATCH);
    for i in 0..u64::from(batch) {
        each(ctx, uop.wrapping_add(i * size as u64))?;
    }
    if batch == count {
        return Ok(HypercallOutcome::Return(0));
    }
    let rest = ctx
        .args
        .continue_with(1, uop.wrapping_add(u64::from(batch) * size as u64))
        .with_arg(2, u64::from(count - batch));
    Ok(HypercallOutcome::Continue(rest))
}

/// The only grant table version xen-core offers.
const GRANT_TABLE_VERSION: u32 = 1;

/// `GNTTABOP_set_version`: Xen's `gnttab_set_version` with v2 not
/// offered.
fn set_version<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    uop: u64,
) -> Result<HypercallOutcome, Errno> {
    let wanted: u32 = ctx.read(uop)?;
    let result = match wanted {
        GRANT_TABLE_VERSION => Ok(HypercallOutcome::Return(0)),
        2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    ctx.write(uop, &GRANT_TABLE_VERSION)?;
    result
}

/// `GNTTABOP_get_version` (`dom` u16 @0, version u32 @4).
fn get_version<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    uop: u64,
) -> Result<HypercallOutcome, Errno> {
    let [dom, _pad]: [DomId; 2] = ctx.read(uop)?;
    ctx.target(dom)?;
    ctx.write(uop.wrapping_add(4), &GRANT_TABLE_VERSION)?;
    Ok(HypercallOutcome::Return(0))
}

/// Serves one array entry at the given address.
type Each<P, M, E> = fn(&mut Ctx<'_, P, M, E>, u64) -> Result<(), Errno>;

/// A sub-op on exactly one structure.
fn single<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    uop: u64,
    count: u32,
    f: Each<P, M, E>,
) -> Result<HypercallOutcome, Errno> {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    f(ctx, uop)?;
    Ok(HypercallOutcome::Return(0))
}

fn status_of(r: Result<(), GrantError>) -> i16 {
    r.map_or_else(GrantError::status, |()| GNTST_OKAY)
}

fn map_one<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    at: u64,
) -> Result<(), Errno> {
    let mut op: GnttabMapGrantRef = ctx.read(at)?;
    let req = MapRequest {
        host_addr: op.host_addr,
        flags: op.flags,
        gref: op.r#ref,
        dom: op.dom,
    };
    match map_grant_ref(ctx.domains, ctx.pool, ctx.mem, ctx.caller.domid, &req) {
        Ok(handle) => {
            op.status = GNTST_OKAY;
            op.handle = handle;
            op.dev_bus_addr = 0;
        }
        Err(e) => op.status = e.status(),
    }
    ctx.write(at, &op)
}

fn unmap_one<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    at: u64,
) -> Result<(), Errno> {
    let op: GnttabUnmapGrantRef = ctx.read(at)?;
    let done = unmap_grant_ref(
        ctx.domains,
        ctx.pool,
        ctx.mem,
        ctx.caller.domid,
        op.host_addr,
        op.dev_bus_addr,
        op.handle,
    );
    let status_at = at.wrapping_add(offset_of!(GnttabUnmapGrantRef, status) as u64);
    ctx.write(status_at, &status_of(done))
}

fn copy_one<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    at: u64,
) -> Result<(), Errno> {
    let op: GnttabCopy = ctx.read_abi::<_, CompatGnttabCopy>(at)?;
    let side = |p: &GnttabCopyPtr, flag: u16| CopySide {
        u: p.u,
        domid: p.domid,
        offset: p.offset,
        is_gref: op.flags & flag != 0,
    };
    let (src, dst) = (
        side(&op.source, GNTCOPY_SOURCE_GREF),
        side(&op.dest, GNTCOPY_DEST_GREF),
    );
    let done = copy(ctx.domains, ctx.mem, ctx.caller.domid, &src, &dst, op.len);
    let offset = if ctx.compat {
        offset_of!(CompatGnttabCopy, status)
    } else {
        offset_of!(GnttabCopy, status)
    };
    ctx.write(at.wrapping_add(offset as u64), &status_of(done))
}

/// The domain a setup_table/query_size names: `GNTST_bad_domain`,
/// `GNTST_permission_denied` (Xen's `XSM_TARGET`).
fn table_target<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &Ctx<'_, P, M, E>,
    dom: DomId,
) -> Result<DomId, GrantError> {
    let target = ctx.target(dom).map_err(|e| match e {
        Errno::EPERM => GrantError::PermissionDenied,
        _ => GrantError::BadDomain,
    })?;
    check_live(ctx.domains, target)?;
    Ok(target)
}

fn setup_table<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    at: u64,
) -> Result<(), Errno> {
    let op: GnttabSetupTable = ctx.read_abi::<_, CompatGnttabSetupTable>(at)?;
    let status = status_of(setup(ctx, &op));
    ctx.write(
        at.wrapping_add(offset_of!(GnttabSetupTable, status) as u64),
        &status,
    )
}

/// Grows the table and fills the frame list.
fn setup<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: &GnttabSetupTable,
) -> Result<(), GrantError> {
    let target = table_target(ctx, op.dom)?;
    let nr = usize::try_from(op.nr_frames)
        .ok()
        .filter(|n| *n <= GRANT_TABLE_FRAMES)
        .ok_or(GrantError::GeneralError)?;
    let domain = ctx.domains.get_mut(target).ok_or(GrantError::BadDomain)?;
    domain
        .grant_mut()
        .grow(ctx.pool, ctx.mem, nr)
        .map_err(|_| GrantError::GeneralError)?;
    let gfns: [u64; GRANT_TABLE_FRAMES] =
        core::array::from_fn(|i| domain.grant().frame_gfn(i).map_or(INVALID_GFN, |g| g.0));
    let mut result = Ok(());
    for (i, gfn) in gfns.iter().take(nr).enumerate() {
        let written = if ctx.compat {
            // A 32-bit xen_pfn_t: INVALID_GFN and GFNs truncate as in Xen.
            ctx.write(
                op.frame_list.wrapping_add(4 * i as u64),
                &((*gfn & 0xffff_ffff) as u32),
            )
        } else {
            ctx.write(op.frame_list.wrapping_add(8 * i as u64), gfn)
        };
        if written.is_err() {
            result = Err(GrantError::BadVirtAddr);
        }
    }
    result
}

fn query_size<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    at: u64,
) -> Result<(), Errno> {
    let mut op: GnttabQuerySize = ctx.read(at)?;
    match table_target(ctx, op.dom) {
        Ok(target) => {
            let domain = ctx.domains.get(target).ok_or(Errno::ESRCH)?;
            op.nr_frames = domain.grant().nr_frames();
            op.max_nr_frames = u32_const::<GRANT_TABLE_FRAMES>();
            op.status = GNTST_OKAY;
        }
        Err(e) => op.status = e.status(),
    }
    ctx.write(at, &op)
}

/// `XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table` for `target`:
/// maps table frame `idx` at `gpfn` ([`map_table_frame`]). `-EINVAL` for
/// an index beyond [`GRANT_TABLE_FRAMES`] (v2 status frames included) or
/// a GFN beyond the p2m, `-ENOMEM` without frames, `-EBUSY` if a grant
/// mapping holds the GFN.
pub(crate) fn add_to_physmap<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    target: DomId,
    idx: u64,
    gpfn: u64,
) -> Result<i64, Errno> {
    if gpfn > NPT_MAX_GFN {
        return Err(Errno::EINVAL);
    }
    let domain = ctx.domains.get_mut(target).ok_or(Errno::ESRCH)?;
    map_table_frame(domain, ctx.pool, ctx.mem, idx, Gfn(gpfn)).map_err(Errno::from)?;
    Ok(0)
}

/// `struct compat_gnttab_setup_table`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct CompatGnttabSetupTable {
    dom: u16,
    pad0: u16,
    nr_frames: u32,
    status: i16,
    pad1: u16,
    frame_list: u32,
}

impl From<CompatGnttabSetupTable> for GnttabSetupTable {
    fn from(c: CompatGnttabSetupTable) -> Self {
        Self {
            dom: c.dom,
            nr_frames: c.nr_frames,
            status: c.status,
            frame_list: c.frame_list.into(),
            ..Self::default()
        }
    }
}

/// `struct compat_gnttab_copy_ptr`, 8 bytes (`xen_pfn_t` is 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct CompatGnttabCopyPtr {
    u: u32,
    domid: u16,
    offset: u16,
}

/// `struct compat_gnttab_copy`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct CompatGnttabCopy {
    source: CompatGnttabCopyPtr,
    dest: CompatGnttabCopyPtr,
    len: u16,
    flags: u16,
    status: i16,
    pad0: u16,
}

impl From<CompatGnttabCopyPtr> for GnttabCopyPtr {
    fn from(c: CompatGnttabCopyPtr) -> Self {
        Self {
            u: c.u.into(),
            domid: c.domid,
            offset: c.offset,
            pad0: 0,
        }
    }
}

impl From<CompatGnttabCopy> for GnttabCopy {
    fn from(c: CompatGnttabCopy) -> Self {
        Self {
            source: c.source.into(),
            dest: c.dest.into(),
            len: c.len,
            flags: c.flags,
            status: c.status,
            pad0: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: u64, count: u64) -> RawArgs {
        RawArgs {
            nr: abi::xen::hypercall::GRANT_TABLE_OP,
            arg: [cmd, 0x1000, count, 0, 0],
            compat: false,
        }
    }

    #[test]
    fn compat_layouts_match_x86_32() {
        assert_eq!(size_of::<CompatGnttabSetupTable>(), 16);
        assert_eq!(offset_of!(CompatGnttabSetupTable, status), 8);
        assert_eq!(offset_of!(CompatGnttabSetupTable, frame_list), 12);
        assert_eq!(size_of::<CompatGnttabCopy>(), 24);
        assert_eq!(offset_of!(CompatGnttabCopy, len), 16);
        assert_eq!(offset_of!(CompatGnttabCopy, status), 20);
    }

    #[test]
    fn decoding_follows_do_grant_table_op() {
        let op = |cmd, count| decode(&args(cmd, count));
        assert_eq!(
            op(0, 3),
            Request::GrantTableOp(GrantTableOp::MapGrantRef {
                uop: 0x1000,
                count: 3
            })
        );
        // count is a C int: the upper half of the register is ignored.
        assert_eq!(
            op(6, 0xffff_ffff_0000_0001),
            Request::GrantTableOp(GrantTableOp::QuerySize {
                uop: 0x1000,
                count: 1
            })
        );
        assert_eq!(
            op(0, 0x8000_0000),
            Request::GrantTableOp(GrantTableOp::Invalid)
        );
        assert_eq!(op(1 << 12, 1), Request::GrantTableOp(GrantTableOp::Invalid));
        for unsupported in [3, 4, 7, 9, 11, 12, 13, 0xfff] {
            assert_eq!(op(unsupported, 1), Request::NoSys, "cmd {unsupported}");
        }
    }
}
