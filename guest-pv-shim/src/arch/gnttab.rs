//! Grant tables, v1 (`xen/include/public/grant_table.h`): our own table
//! (mapped at frames of this image with `XENMEM_add_to_physmap`
//! `XENMAPSPACE_grant_table`, as Xen PVH guests do, after
//! `GNTTABOP_query_size` / `GNTTABOP_setup_table`), and the other side's
//! operations: `GNTTABOP_map_grant_ref`, `unmap_grant_ref`, `copy`.
//!
//! Foreign pages are mapped at GFNs in a hole the shim reserves,
//! [`FOREIGN_MAP_GPA`] .. + [`FOREIGN_MAP_SLOTS`] pages (past RAM, inside
//! the boot identity map), as Linux PVH maps grants into unpopulated
//! ranges rather than over its own RAM. After it lies the
//! persistent-grant window ([`window`]).

pub mod window;

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use abi::convert::u32_const;
use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::grant_table::{
    self as gt, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GrantHandle, GrantRef,
};
use abi::xen::hypercall as nr;
use abi::xen::memory::XENMAPSPACE_GRANT_TABLE;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::hypercall::{call, Frame, Xen};
use super::phys::IdentityMap;
use super::shared_page::{view_at, SharedFrame, SharedLayout};
use crate::error::{check, XenError};
use crate::grant::{GrantEntryCell, GrantError, GrantStatus, GrantTable, GRANT_FRAMES};

/// First GPA of the foreign-mapping hole (2 GiB).
pub const FOREIGN_MAP_GPA: u64 = 0x8000_0000;
/// Pages in the hole: at most this many foreign pages mapped at once.
pub const FOREIGN_MAP_SLOTS: usize = 64;

static TABLE_FRAMES: [Frame; GRANT_FRAMES] = [const { Frame::new() }; GRANT_FRAMES];
static TABLE: spin::Once<GrantTable<'static>> = spin::Once::new();
/// Bit `i`: slot `i` of the hole holds a mapping.
static SLOTS_USED: AtomicU64 = AtomicU64::new(0);

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOpError {
    /// The hypercall itself failed (negative errno).
    Hypercall(XenError),
    /// The hypervisor refused this operation (`GNTST_*`).
    Status(GrantStatus),
    /// Our side refused (table full, still in use...).
    Local(GrantError),
    /// All [`FOREIGN_MAP_SLOTS`] slots hold mappings.
    NoSlot,
    /// The domain's RAM reaches into the foreign-mapping hole.
    HoleInRam { ram_end: u64 },
}

impl fmt::Display for GrantOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hypercall(e) => write!(f, "{e}"),
            Self::Status(s) => write!(f, "{s}"),
            Self::Local(e) => write!(f, "{e}"),
            Self::NoSlot => write!(f, "no free foreign-mapping slot"),
            Self::HoleInRam { ram_end } => {
                write!(
                    f,
                    "RAM up to {ram_end:#x} overlaps the hole at {FOREIGN_MAP_GPA:#x}"
                )
            }
        }
    }
}

impl From<XenError> for GrantOpError {
    fn from(e: XenError) -> Self {
        Self::Hypercall(e)
    }
}

impl From<GrantStatus> for GrantOpError {
    fn from(s: GrantStatus) -> Self {
        Self::Status(s)
    }
}

impl From<GrantError> for GrantOpError {
    fn from(e: GrantError) -> Self {
        Self::Local(e)
    }
}

/// One side of a `GNTTABOP_copy`.
#[derive(Clone, Copy)]
pub enum CopySide {
    /// Page `gref` granted to us by `dom`, at byte `offset`.
    Grant {
        dom: DomId,
        gref: GrantRef,
        offset: u16,
    },
    /// Our own frame, at byte `offset`.
    Local {
        frame: &'static SharedFrame,
        offset: u16,
    },
}

impl CopySide {
    /// One `gnttab_copy` of `len` bytes from `source` to `dest`.
    pub fn op(source: CopySide, dest: CopySide, len: u16) -> GnttabCopy {
        let (source, source_gref) = source.encode();
        let (dest, dest_gref) = dest.encode();
        let flags = if source_gref {
            gt::GNTCOPY_SOURCE_GREF
        } else {
            0
        } | if dest_gref { gt::GNTCOPY_DEST_GREF } else { 0 };
        GnttabCopy {
            source,
            dest,
            len,
            flags,
            ..Default::default()
        }
    }

    fn encode(self) -> (GnttabCopyPtr, bool) {
        match self {
            CopySide::Grant { dom, gref, offset } => (
                GnttabCopyPtr {
                    u: gref.into(),
                    domid: dom,
                    offset,
                    pad0: 0,
                },
                true,
            ),
            CopySide::Local { frame, offset } => (
                GnttabCopyPtr {
                    u: frame.gfn(),
                    domid: DOMID_SELF,
                    offset,
                    pad0: 0,
                },
                false,
            ),
        }
    }
}

impl Xen {
    /// `GNTTABOP_*` over `ops` (count = its length); the per-op statuses
    /// are the caller's to read.
    fn gnttab_op<T: IntoBytes + FromBytes + Immutable>(
        &self,
        cmd: u32,
        ops: &mut [T],
    ) -> Result<(), XenError> {
        let (argp, count) = (ops.as_mut_bytes().as_mut_ptr() as u64, ops.len() as u64);
        // SAFETY: Xen reads and writes `count` sub-op structs at `argp`, a
        // live exclusive slice of exactly that many. Sub-ops that name
        // memory (setup_table's frame_list, map's host_addr) are checked
        // by their callers below.
        check(unsafe { call(nr::GRANT_TABLE_OP, [cmd.into(), argp, count, 0, 0]) }).map(|_| ())
    }

    /// `GNTTABOP_query_size` of this domain: `(nr_frames, max_nr_frames)`.
    pub fn gnttab_query_size(&self) -> Result<(u32, u32), GrantOpError> {
        let mut q = [GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        }];
        self.gnttab_op(gt::GNTTABOP_QUERY_SIZE, &mut q)?;
        GrantStatus::check(q[0].status)?;
        Ok((q[0].nr_frames, q[0].max_nr_frames))
    }

    /// `GNTTABOP_setup_table`: grows this domain's table to `nr_frames`.
    fn gnttab_setup_table(&self, nr_frames: u32) -> Result<(), GrantOpError> {
        let mut list = [0u64; GRANT_FRAMES];
        let mut s = [GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: nr_frames.min(u32_const::<GRANT_FRAMES>()),
            frame_list: list.as_mut_ptr() as u64,
            ..Default::default()
        }];
        self.gnttab_op(gt::GNTTABOP_SETUP_TABLE, &mut s)?;
        Ok(GrantStatus::check(s[0].status)?)
    }
}

/// This domain's grant table and the other side's grant operations.
#[derive(Clone, Copy)]
pub struct Grants {
    xen: Xen,
    table: &'static GrantTable<'static>,
}

/// A foreign page mapped at a slot of the hole; unmap with [`Grants::unmap`].
#[derive(Debug)]
pub struct ForeignMapping {
    slot: usize,
    handle: GrantHandle,
}

impl ForeignMapping {
    /// GPA the page is mapped at.
    pub fn gpa(&self) -> u64 {
        slot_gpa(self.slot)
    }

    /// The page as `T` (borrowed from the mapping: gone with it).
    pub fn view<T: SharedLayout>(&self) -> &T {
        // SAFETY: the slot's GFN holds the granted page while `self`
        // lives (only `Grants::unmap`, which consumes it, removes it); it
        // is page-aligned and inside the identity map (checked at init).
        unsafe { view_at(self.gpa()) }
    }
}

fn slot_gpa(slot: usize) -> u64 {
    FOREIGN_MAP_GPA + (slot as u64) * abi::xen::PAGE_SIZE as u64
}

impl Grants {
    /// Sets up and maps this domain's grant table ([`GRANT_FRAMES`]
    /// frames); `ram_end` (from the start info) must leave the hole free.
    pub fn init(xen: &Xen, ram_end: u64) -> Result<Grants, GrantOpError> {
        let hole_len = window::GRANT_HOLE_END - FOREIGN_MAP_GPA;
        if ram_end > FOREIGN_MAP_GPA || !IdentityMap::covers(FOREIGN_MAP_GPA, hole_len) {
            return Err(GrantOpError::HoleInRam { ram_end });
        }
        let (nr_frames, max_frames) = xen.gnttab_query_size()?;
        let wanted = u32_const::<GRANT_FRAMES>().min(max_frames.max(1));
        if nr_frames < wanted {
            xen.gnttab_setup_table(wanted)?;
        }
        for (idx, frame) in TABLE_FRAMES.iter().enumerate().take(wanted as usize) {
            xen.add_to_physmap(XENMAPSPACE_GRANT_TABLE, idx as u64, frame)?;
        }
        let table = TABLE.call_once(|| {
            // SAFETY: the frames are static and page-aligned, now the
            // hypervisor's grant-table frames at their GFNs; viewed only
            // as atomics (GrantEntryCell).
            let first: &'static [GrantEntryCell; 512] = unsafe { view_at(TABLE_FRAMES[0].gpa()) };
            GrantTable::new(first)
        });
        Ok(Grants { xen: *xen, table })
    }

    /// The granting side: `grant_access`, `end_access`, `rewrite`.
    pub fn table(&self) -> &'static GrantTable<'static> {
        self.table
    }

    /// Grants `domid` access to our frame `frame`.
    pub fn grant_frame(
        &self,
        domid: DomId,
        frame: &SharedFrame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        self.table.grant_access(domid, frame.gfn(), readonly)
    }

    /// `GNTTABOP_map_grant_ref` of `dom`'s `gref` at a free slot of the hole.
    pub fn map(
        &self,
        dom: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<ForeignMapping, GrantOpError> {
        let slot = claim_slot().ok_or(GrantOpError::NoSlot)?;
        match self.map_at(dom, gref, readonly, slot_gpa(slot)) {
            Ok(handle) => Ok(ForeignMapping { slot, handle }),
            Err(e) => {
                release_slot(slot);
                Err(e)
            }
        }
    }

    /// `GNTTABOP_map_grant_ref` at `gpa` (any value: for checks of the
    /// hypervisor's validation; Rust never touches the page); the handle.
    pub fn map_at(
        &self,
        dom: DomId,
        gref: GrantRef,
        readonly: bool,
        gpa: u64,
    ) -> Result<GrantHandle, GrantOpError> {
        let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
        let mut op = [GnttabMapGrantRef {
            host_addr: gpa,
            flags,
            r#ref: gref,
            dom,
            ..Default::default()
        }];
        self.xen.gnttab_op(gt::GNTTABOP_MAP_GRANT_REF, &mut op)?;
        GrantStatus::check(op[0].status)?;
        Ok(op[0].handle)
    }

    /// `GNTTABOP_unmap_grant_ref` of `mapping`; on failure the mapping is
    /// handed back (it is still in place).
    pub fn unmap(&self, mapping: ForeignMapping) -> Result<(), (ForeignMapping, GrantOpError)> {
        match self.unmap_at(mapping.gpa(), mapping.handle) {
            Ok(()) => {
                release_slot(mapping.slot);
                Ok(())
            }
            Err(e) => Err((mapping, e)),
        }
    }

    /// `GNTTABOP_unmap_grant_ref` of `handle` at `gpa` (any values).
    pub fn unmap_at(&self, gpa: u64, handle: GrantHandle) -> Result<(), GrantOpError> {
        let mut op = [GnttabUnmapGrantRef {
            host_addr: gpa,
            handle,
            ..Default::default()
        }];
        self.xen.gnttab_op(gt::GNTTABOP_UNMAP_GRANT_REF, &mut op)?;
        Ok(GrantStatus::check(op[0].status)?)
    }

    /// `GNTTABOP_copy` of every op of `ops` in one hypercall (Xen serves
    /// them in order; a batch past its per-call limit continues; build them
    /// with [`CopySide::op`]). Each op's `status` says how it went: the
    /// caller reads them.
    pub fn copy_batch(&self, ops: &mut [GnttabCopy]) -> Result<(), XenError> {
        self.xen.gnttab_op(gt::GNTTABOP_COPY, ops)
    }

    /// `GNTTABOP_copy` of `len` bytes from `source` to `dest`.
    pub fn copy(&self, source: CopySide, dest: CopySide, len: u16) -> Result<(), GrantOpError> {
        let mut op = [CopySide::op(source, dest, len)];
        self.xen.gnttab_op(gt::GNTTABOP_COPY, &mut op)?;
        Ok(GrantStatus::check(op[0].status)?)
    }
}

fn claim_slot() -> Option<usize> {
    (0..FOREIGN_MAP_SLOTS).find(|&i| SLOTS_USED.fetch_or(1 << i, Ordering::SeqCst) & (1 << i) == 0)
}

fn release_slot(slot: usize) {
    SLOTS_USED.fetch_and(!(1 << slot), Ordering::SeqCst);
}
