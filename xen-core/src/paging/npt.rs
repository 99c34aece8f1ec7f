//! A domain's nested page table (NPT): its p2m, GFN → MFN.
//!
//! AMD nested paging uses the 4-level long-mode page-table format (AMD APM
//! vol 2 §15.25.5, entry layout §5.3.3). The hardware walks it with the
//! root in the VMCB's nCR3 ([`Npt::root`]). Only 4 KiB leaves are built.
//!
//! Every table frame comes from a [`FramePool`], is zeroed on allocation and
//! returns to the pool when it becomes empty ([`Npt::unmap`]) or the table
//! is destroyed ([`Npt::destroy`]): the number of table frames is at most
//! `1 + 3 × mapped GFNs`, so the caller bounds the NPT by bounding the GFNs
//! it maps.

use abi::convert::usize_from_u64;

use crate::mm::{FramePool, Gfn, Mfn, PhysMem, PAGE_SIZE};

/// Highest GFN an NPT can map: 48-bit guest physical addresses.
pub const NPT_MAX_GFN: u64 = (1 << 36) - 1;

const ENTRIES: usize = PAGE_SIZE / 8;
const PRESENT: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
/// Nested entries need U, or the guest's own table walk faults (docs/development.md, QEMU and SVM facts).
const USER: u64 = 1 << 2;
/// Page-level write-through and cache-disable: with PAT index 3 (UC in
/// the power-on PAT) the nested memory type is UC, which wins over the
/// guest's own type (AMD APM vol. 2 §15.25.8).
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const NO_EXEC: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Software-available bits 9..=11 hold the [`P2mKind`].
const KIND_SHIFT: u32 = 9;
const KIND_MASK: u64 = 0b111 << KIND_SHIFT;
const KIND_SHARED: u64 = 1 << KIND_SHIFT;
const KIND_MMIO: u64 = 2 << KIND_SHIFT;
/// Flags of an entry that points to a lower-level table.
const TABLE_FLAGS: u64 = PRESENT | WRITE | USER;

/// What a domain may do with a mapped GFN. Present implies readable: the
/// NPT format cannot express write-only or execute-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2mAccess {
    /// The guest may write the frame.
    pub write: bool,
    /// The guest may execute from the frame. Clearing it sets NX, which
    /// needs EFER.NXE in the host.
    pub exec: bool,
}

impl P2mEntry {
    /// Whether the entry is memory xen-core may read and write for the
    /// guest (copy to/from guest, page walks): not device memory.
    pub fn is_memory(&self) -> bool {
        self.kind != P2mKind::Mmio
    }
}

impl P2mAccess {
    /// Read, write and execute: ordinary guest RAM.
    pub const RWX: Self = Self {
        write: true,
        exec: true,
    };
    /// Read and write, no execute.
    pub const RW: Self = Self {
        write: true,
        exec: false,
    };
    /// Read only.
    pub const R: Self = Self {
        write: false,
        exec: false,
    };
}

/// Who owns the frame behind a GFN; decides what happens at release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mKind {
    /// The domain owns the frame: scrubbed and freed when the domain dies.
    Owned,
    /// Someone else's frame (hypervisor-shared or granted): never freed
    /// through this domain.
    Shared,
    /// Device memory (a PCI BAR given to dom0): mapped uncached, never
    /// freed, and never accessed by xen-core as guest memory.
    Mmio,
}

/// One GFN's p2m entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2mEntry {
    /// The machine frame.
    pub mfn: Mfn,
    /// What the domain may do with it.
    pub access: P2mAccess,
    /// Whose frame it is.
    pub kind: P2mKind,
}

/// Why an NPT update failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// The GFN is above [`NPT_MAX_GFN`].
    GfnOutOfRange(Gfn),
    /// The GFN is already mapped; unmap it first.
    AlreadyMapped(Gfn),
    /// The frame pool ran out of frames for a table.
    OutOfFrames,
}

impl core::fmt::Display for NptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::GfnOutOfRange(g) => write!(f, "GFN {:#x} is beyond the NPT's reach", g.0),
            Self::AlreadyMapped(g) => write!(f, "GFN {:#x} is already mapped", g.0),
            Self::OutOfFrames => f.write_str("no free frame for a nested page table"),
        }
    }
}

/// A 4-level nested page table.
#[derive(Debug)]
pub struct Npt {
    root: Mfn,
    table_frames: u64,
    mapped: u64,
}

/// Index of `gfn` in a table of `level` (4 = PML4 … 1 = PT).
fn index(gfn: Gfn, level: usize) -> usize {
    usize_from_u64((gfn.0 >> (9 * (level - 1))) & (ENTRIES as u64 - 1))
}

fn read_entry(mem: &impl PhysMem, table: Mfn, idx: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&mem.frame(table)[idx * 8..idx * 8 + 8]);
    u64::from_le_bytes(bytes)
}

fn write_entry(mem: &mut impl PhysMem, table: Mfn, idx: usize, entry: u64) {
    mem.frame_mut(table)[idx * 8..idx * 8 + 8].copy_from_slice(&entry.to_le_bytes());
}

fn entry_mfn(entry: u64) -> Mfn {
    Mfn((entry & ADDR_MASK) >> 12)
}

fn encode_leaf(e: &P2mEntry) -> u64 {
    let mut bits = PRESENT | USER | (e.mfn.hpa() & ADDR_MASK);
    if e.access.write {
        bits |= WRITE;
    }
    if !e.access.exec {
        bits |= NO_EXEC;
    }
    match e.kind {
        P2mKind::Owned => {}
        P2mKind::Shared => bits |= KIND_SHARED,
        P2mKind::Mmio => bits |= KIND_MMIO | PCD | PWT,
    }
    bits
}

fn decode_leaf(bits: u64) -> P2mEntry {
    P2mEntry {
        mfn: entry_mfn(bits),
        access: P2mAccess {
            write: bits & WRITE != 0,
            exec: bits & NO_EXEC == 0,
        },
        kind: match bits & KIND_MASK {
            KIND_SHARED => P2mKind::Shared,
            KIND_MMIO => P2mKind::Mmio,
            _ => P2mKind::Owned,
        },
    }
}

fn alloc_table(pool: &mut impl FramePool, mem: &mut impl PhysMem) -> Option<Mfn> {
    let mfn = pool.alloc()?;
    mem.frame_mut(mfn).fill(0);
    Some(mfn)
}

fn table_is_empty(mem: &impl PhysMem, table: Mfn) -> bool {
    mem.frame(table).iter().all(|b| *b == 0)
}

impl Npt {
    /// An empty NPT: one zeroed root frame.
    pub fn new(pool: &mut impl FramePool, mem: &mut impl PhysMem) -> Result<Self, NptError> {
        let root = alloc_table(pool, mem).ok_or(NptError::OutOfFrames)?;
        Ok(Self {
            root,
            table_frames: 1,
            mapped: 0,
        })
    }

    /// The PML4 frame; the VMCB's nCR3 is `root().hpa()`.
    pub fn root(&self) -> Mfn {
        self.root
    }

    /// Frames used by the tables themselves.
    pub fn table_frames(&self) -> u64 {
        self.table_frames
    }

    /// Number of mapped GFNs.
    pub fn mapped(&self) -> u64 {
        self.mapped
    }

    /// Tables from the root down to the PT covering `gfn`, as far as they exist.
    fn path(&self, mem: &impl PhysMem, gfn: Gfn) -> [Option<Mfn>; 4] {
        let mut path = [Some(self.root), None, None, None];
        for depth in 1..4 {
            let Some(table) = path[depth - 1] else { break };
            let entry = read_entry(mem, table, index(gfn, 5 - depth));
            if entry & PRESENT != 0 {
                path[depth] = Some(entry_mfn(entry));
            }
        }
        path
    }

    /// Maps `gfn` to `entry`. Fails without change if `gfn` is mapped,
    /// out of range, or a table frame cannot be had.
    pub fn map(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
        entry: P2mEntry,
    ) -> Result<(), NptError> {
        if gfn.0 > NPT_MAX_GFN {
            return Err(NptError::GfnOutOfRange(gfn));
        }
        let mut table = self.root;
        for level in (2..=4).rev() {
            let idx = index(gfn, level);
            let e = read_entry(mem, table, idx);
            table = if e & PRESENT != 0 {
                entry_mfn(e)
            } else {
                let Some(new) = alloc_table(pool, mem) else {
                    self.prune(pool, mem, gfn);
                    return Err(NptError::OutOfFrames);
                };
                write_entry(mem, table, idx, new.hpa() | TABLE_FLAGS);
                self.table_frames += 1;
                new
            };
        }
        let idx = index(gfn, 1);
        if read_entry(mem, table, idx) & PRESENT != 0 {
            return Err(NptError::AlreadyMapped(gfn));
        }
        write_entry(mem, table, idx, encode_leaf(&entry));
        self.mapped += 1;
        Ok(())
    }

    /// Removes `gfn`'s mapping and frees tables it leaves empty. Returns
    /// the old entry; the caller decides what becomes of its frame.
    pub fn unmap(
        &mut self,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        gfn: Gfn,
    ) -> Option<P2mEntry> {
        if gfn.0 > NPT_MAX_GFN {
            return None;
        }
        let pt = self.path(mem, gfn)[3]?;
        let bits = read_entry(mem, pt, index(gfn, 1));
        if bits & PRESENT == 0 {
            return None;
        }
        write_entry(mem, pt, index(gfn, 1), 0);
        self.mapped -= 1;
        self.prune(pool, mem, gfn);
        Some(decode_leaf(bits))
    }

    /// Frees the empty tables on `gfn`'s path, lowest first (never the root).
    fn prune(&mut self, pool: &mut impl FramePool, mem: &mut impl PhysMem, gfn: Gfn) {
        let path = self.path(mem, gfn);
        for depth in (1..4).rev() {
            let (Some(table), Some(parent)) = (path[depth], path[depth - 1]) else {
                continue;
            };
            if !table_is_empty(mem, table) {
                return;
            }
            write_entry(mem, parent, index(gfn, 5 - depth), 0);
            pool.free(table);
            self.table_frames -= 1;
        }
    }

    /// The entry for `gfn`, if mapped.
    pub fn translate(&self, mem: &impl PhysMem, gfn: Gfn) -> Option<P2mEntry> {
        if gfn.0 > NPT_MAX_GFN {
            return None;
        }
        let pt = self.path(mem, gfn)[3]?;
        let bits = read_entry(mem, pt, index(gfn, 1));
        (bits & PRESENT != 0).then(|| decode_leaf(bits))
    }

    /// The lowest mapped GFN at or above `from`, with its entry. Visits
    /// only tables that exist, so it costs at most 4 × 512 entry reads.
    pub fn next_mapped(&self, mem: &impl PhysMem, from: Gfn) -> Option<(Gfn, P2mEntry)> {
        if from.0 > NPT_MAX_GFN {
            return None;
        }
        find_from(mem, self.root, 4, 0, from.0)
    }

    /// Tears the table down: calls `on_leaf` for every mapped GFN (to
    /// scrub and free owned frames), then frees every table frame.
    pub fn destroy<P: FramePool, M: PhysMem>(
        self,
        pool: &mut P,
        mem: &mut M,
        mut on_leaf: impl FnMut(&mut P, &mut M, Gfn, P2mEntry),
    ) {
        free_table(pool, mem, self.root, 4, 0, &mut on_leaf);
    }
}

/// The first mapped GFN at or above `from` in `table` of `level`, which
/// covers GFNs from `base` (`from >= base`). Recursion depth is at most 4.
fn find_from(
    mem: &impl PhysMem,
    table: Mfn,
    level: u32,
    base: u64,
    from: u64,
) -> Option<(Gfn, P2mEntry)> {
    let shift = 9 * (level - 1);
    let start = usize_from_u64((from - base) >> shift) & (ENTRIES - 1);
    for idx in start..ENTRIES {
        let bits = read_entry(mem, table, idx);
        if bits & PRESENT == 0 {
            continue;
        }
        let gfn = base | ((idx as u64) << shift);
        if level == 1 {
            return Some((Gfn(gfn), decode_leaf(bits)));
        }
        let sub_from = if idx == start { from.max(gfn) } else { gfn };
        if let Some(found) = find_from(mem, entry_mfn(bits), level - 1, gfn, sub_from) {
            return Some(found);
        }
    }
    None
}

/// Frees `table` of `level` covering GFNs from `base`, and all below it.
/// Recursion depth is at most 4.
fn free_table<P: FramePool, M: PhysMem>(
    pool: &mut P,
    mem: &mut M,
    table: Mfn,
    level: u32,
    base: u64,
    on_leaf: &mut impl FnMut(&mut P, &mut M, Gfn, P2mEntry),
) {
    for idx in 0..ENTRIES {
        let bits = read_entry(mem, table, idx);
        if bits & PRESENT == 0 {
            continue;
        }
        let gfn = base | ((idx as u64) << (9 * (level - 1)));
        if level == 1 {
            on_leaf(pool, mem, Gfn(gfn), decode_leaf(bits));
        } else {
            free_table(pool, mem, entry_mfn(bits), level - 1, gfn, on_leaf);
        }
    }
    pool.free(table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::sim::machine;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ram(mfn: u64) -> P2mEntry {
        P2mEntry {
            mfn: Mfn(mfn),
            access: P2mAccess::RWX,
            kind: P2mKind::Owned,
        }
    }

    #[test]
    fn device_memory_is_uncached_and_kept_apart() {
        let e = P2mEntry {
            mfn: Mfn(0xfebd2),
            access: P2mAccess::RW,
            kind: P2mKind::Mmio,
        };
        let bits = encode_leaf(&e);
        assert_eq!(bits & (PCD | PWT), PCD | PWT, "UC through PAT index 3");
        assert_eq!(bits & NO_EXEC, NO_EXEC);
        assert_eq!(decode_leaf(bits), e);
        assert!(!e.is_memory());
        assert_eq!(
            encode_leaf(&ram(5)) & (PCD | PWT),
            0,
            "RAM stays write-back"
        );
        assert!(ram(5).is_memory());
    }

    #[test]
    fn map_translate_unmap() {
        let (mut pool, mut mem) = machine(64);
        let start = pool.free_frames();
        let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
        let e = P2mEntry {
            mfn: Mfn(0x1234),
            access: P2mAccess::R,
            kind: P2mKind::Shared,
        };
        npt.map(&mut pool, &mut mem, Gfn(0x8_0000), e).unwrap();
        assert_eq!(npt.table_frames(), 4);
        assert_eq!(npt.translate(&mem, Gfn(0x8_0000)), Some(e));
        assert_eq!(npt.translate(&mem, Gfn(0x8_0001)), None);
        assert_eq!(
            npt.map(&mut pool, &mut mem, Gfn(0x8_0000), ram(1)),
            Err(NptError::AlreadyMapped(Gfn(0x8_0000)))
        );
        assert_eq!(npt.unmap(&mut pool, &mut mem, Gfn(0x8_0000)), Some(e));
        assert_eq!(npt.table_frames(), 1, "empty tables are freed");
        assert_eq!(npt.unmap(&mut pool, &mut mem, Gfn(0x8_0000)), None);
        npt.destroy(&mut pool, &mut mem, |_, _, _, _| panic!("nothing mapped"));
        assert_eq!(pool.free_frames(), start);
    }

    #[test]
    fn leaf_bits_follow_amd_format() {
        let (mut pool, mut mem) = machine(8);
        let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
        npt.map(&mut pool, &mut mem, Gfn(3), ram(0x42)).unwrap();
        let pml4e = read_entry(&mem, npt.root(), 0);
        assert_eq!(pml4e & 0xfff, PRESENT | WRITE | USER);
        let pt = npt.path(&mem, Gfn(3))[3].unwrap();
        assert_eq!(read_entry(&mem, pt, 3), 0x42_000 | PRESENT | WRITE | USER);
        npt.map(
            &mut pool,
            &mut mem,
            Gfn(4),
            P2mEntry {
                access: P2mAccess::R,
                ..ram(0x43)
            },
        )
        .unwrap();
        assert_eq!(read_entry(&mem, pt, 4), 0x43_000 | PRESENT | USER | NO_EXEC);
    }

    #[test]
    fn out_of_range_gfn_is_refused() {
        let (mut pool, mut mem) = machine(8);
        let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
        let gfn = Gfn(NPT_MAX_GFN + 1);
        assert_eq!(
            npt.map(&mut pool, &mut mem, gfn, ram(1)),
            Err(NptError::GfnOutOfRange(gfn))
        );
        assert_eq!(npt.translate(&mem, gfn), None);
        assert_eq!(npt.unmap(&mut pool, &mut mem, gfn), None);
        assert_eq!(npt.translate(&mem, Gfn(u64::MAX)), None);
    }

    #[test]
    fn running_out_of_frames_leaves_no_table_behind() {
        let (mut pool, mut mem) = machine(3);
        let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
        assert_eq!(
            npt.map(&mut pool, &mut mem, Gfn(0), ram(1)),
            Err(NptError::OutOfFrames)
        );
        assert_eq!(npt.table_frames(), 1);
        assert_eq!(pool.free_frames(), 2);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Map(u64, u64),
        Unmap(u64),
    }

    /// GFNs spread over several tables at every level, with collisions.
    fn gfn() -> impl Strategy<Value = u64> {
        (0u64..4, 0u64..3, 0u64..3, 0u64..4)
            .prop_map(|(a, b, c, d)| (a << 27) | (b << 18) | (c << 9) | d)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (gfn(), 1u64..1000).prop_map(|(g, m)| Op::Map(g, m)),
            gfn().prop_map(Op::Unmap),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_map_model(ops in prop::collection::vec(op(), 1..120)) {
            let (mut pool, mut mem) = machine(512);
            let start = pool.free_frames();
            let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Map(g, m) => {
                        let r = npt.map(&mut pool, &mut mem, Gfn(g), ram(m));
                        if let std::collections::btree_map::Entry::Vacant(slot) = model.entry(g) {
                            prop_assert_eq!(r, Ok(()));
                            slot.insert(m);
                        } else {
                            prop_assert_eq!(r, Err(NptError::AlreadyMapped(Gfn(g))));
                        }
                    }
                    Op::Unmap(g) => {
                        let old = npt.unmap(&mut pool, &mut mem, Gfn(g)).map(|e| e.mfn.0);
                        prop_assert_eq!(old, model.remove(&g));
                    }
                }
                prop_assert_eq!(npt.mapped(), model.len() as u64);
                prop_assert!(npt.table_frames() <= 1 + 3 * npt.mapped());
                prop_assert_eq!(start - pool.free_frames(), npt.table_frames());
            }
            for (g, m) in &model {
                prop_assert_eq!(npt.translate(&mem, Gfn(*g)).map(|e| e.mfn.0), Some(*m));
            }
            for from in [0, 1, 511, 512, 513, 1 << 18, (1 << 27) + 5, 3 << 27] {
                let next = npt.next_mapped(&mem, Gfn(from)).map(|(g, e)| (g.0, e.mfn.0));
                let want = model.range(from..).next().map(|(g, m)| (*g, *m));
                prop_assert_eq!(next, want, "next_mapped from {:#x}", from);
            }
            let mut leaves = BTreeMap::new();
            npt.destroy(&mut pool, &mut mem, |_, _, g, e| { leaves.insert(g.0, e.mfn.0); });
            prop_assert_eq!(leaves, model);
            prop_assert_eq!(pool.free_frames(), start);
        }
    }
}
