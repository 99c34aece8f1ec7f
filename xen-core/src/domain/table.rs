//! The domain table: every domain, by domid, with bounded capacity.
//!
//! domid 0 is dom0, the hardware domain and a control domain (a boot-time
//! domU may be a control domain too, [`Privileges::CONTROL`]). domUs get the lowest domid
//! from 1 below `DOMID_FIRST_RESERVED` that is neither in use nor in
//! quarantine: a destroyed domid comes back only after
//! [`DOMID_REUSE_DELAY`] further domains were created, so a stale domid
//! held by the toolstack or a backend does not silently name a new domain.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use abi::convert::usize_from_u64;
use abi::xen::domid::{DomId, DOMID_FIRST_RESERVED};

use super::{
    Domain, DomainConfig, DomainError, DomainState, Privileges, DOMAIN_NAME_MAX, MAX_DOMAIN_PAGES,
    MAX_VCPUS, SLICE_FRAMES,
};
use crate::domain_cell::DomainCell;
use crate::irq::Routing;
use crate::mm::{FramePool, PhysMem};

/// Domains that can exist at once, dom0 included. The table grows with the
/// domains in use (one heap block per domain, a dense list of them and a
/// domid index), so this is a limit, not a reservation: memory usually
/// runs out first.
pub const MAX_DOMAINS: usize = 8192;
/// Domain creations a destroyed domid waits before it may be reused.
pub const DOMID_REUSE_DELAY: u64 = 16;
/// Quarantine entries: enough that an entry is only evicted once expired
/// (at most `MAX_DOMAINS + DOMID_REUSE_DELAY` domains are destroyed within
/// any `DOMID_REUSE_DELAY` creations).
const QUARANTINE_LEN: usize = MAX_DOMAINS + usize_from_u64(DOMID_REUSE_DELAY);
/// dom0's domid.
pub const DOM0: DomId = 0;
/// An index entry naming no domain.
const ABSENT: u16 = u16::MAX;

// Every position in the dense list fits an index entry, and every domid
// has one.
const _: () = assert!(MAX_DOMAINS < ABSENT as usize);
const _: () = assert!(MAX_DOMAINS < DOMID_FIRST_RESERVED as usize);

/// A destroyed domid and the creation count when it was destroyed.
#[derive(Clone, Copy, Debug)]
struct Quarantined {
    domid: DomId,
    created_before: u64,
}

/// A domain in a heap block of its own, allocated fallibly: a
/// one-element boxed slice, as `Box::try_new` is not stable. Its cell
/// lets a reader section of the machine lock change it while other
/// readers change theirs ([`DomainCell`]).
#[derive(Debug)]
struct Slot(Box<[DomainCell]>);

impl Slot {
    /// `d` on the heap; when the heap has no room, `d` is released
    /// (its frames back to the pool).
    fn new(
        d: Domain,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<Self, DomainError> {
        let mut v = Vec::new();
        if v.try_reserve_exact(1).is_err() {
            d.release(pool, mem);
            return Err(DomainError::OutOfHeap);
        }
        v.push(DomainCell::new(d));
        Ok(Self(v.into_boxed_slice()))
    }

    fn into_inner(self) -> Domain {
        let mut v = self.0.into_vec();
        // Made with exactly one element.
        v.swap_remove(0).into_inner()
    }
}

impl core::ops::Deref for Slot {
    type Target = Domain;
    fn deref(&self) -> &Domain {
        self.0[0].get()
    }
}

impl core::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut Domain {
        self.0[0].get_mut()
    }
}

/// All domains.
#[derive(Debug)]
pub struct DomainTable {
    /// The domains in use, densely, in no particular order: walks cost
    /// what the domains in use cost.
    domains: Vec<Slot>,
    /// By domid: the domain's position in `domains`, or [`ABSENT`]. Grows
    /// to the highest domid used (below `DOMID_FIRST_RESERVED`, so at most
    /// 64 KiB), so a lookup is one index.
    index: Vec<u16>,
    quarantine: VecDeque<Quarantined>,
    created: u64,
    /// The machine's physical-interrupt routing (pirqs of every domain).
    irqs: Routing,
}

impl Default for DomainTable {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainTable {
    /// An empty table (const, so it can be a `static`).
    pub const fn new() -> Self {
        Self {
            domains: Vec::new(),
            index: Vec::new(),
            quarantine: VecDeque::new(),
            created: 0,
            irqs: Routing::new(),
        }
    }

    /// The domain with `domid` (any value a guest passes is fine).
    pub fn get(&self, domid: DomId) -> Option<&Domain> {
        self.position(domid).map(|p| &*self.domains[p])
    }

    /// The domain with `domid`, writable.
    pub fn get_mut(&mut self, domid: DomId) -> Option<&mut Domain> {
        self.position(domid).map(|p| &mut *self.domains[p])
    }

    /// The cell of the domain with `domid`, for a reader section of the
    /// machine lock, which locks the domain before it reaches it
    /// ([`DomainCell::get_locked`]).
    pub fn cell(&self, domid: DomId) -> Option<&DomainCell> {
        self.position(domid).map(|p| &self.domains[p].0[0])
    }

    /// Where `domid` sits in the dense list.
    fn position(&self, domid: DomId) -> Option<usize> {
        match self.index.get(usize::from(domid)) {
            Some(&p) if p != ABSENT => Some(usize::from(p)),
            _ => None,
        }
    }

    /// All domains, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.domains.iter().map(|d| &**d)
    }

    /// All domains, writable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Domain> {
        self.domains.iter_mut().map(|d| &mut **d)
    }

    /// Adds `d` (whose domid is free) to the list and the index; `d` back
    /// when the heap has no room for it (nothing changed then).
    fn put(&mut self, d: Slot) -> Result<(), Slot> {
        let id = usize::from(d.domid);
        let grow = (id + 1).saturating_sub(self.index.len());
        if self.domains.try_reserve(1).is_err() || self.index.try_reserve(grow).is_err() {
            return Err(d);
        }
        if grow > 0 {
            self.index.resize(id + 1, ABSENT);
        }
        // Below MAX_DOMAINS (checked by the callers), so below ABSENT.
        self.index[id] = u16::try_from(self.domains.len()).unwrap_or(ABSENT);
        self.domains.push(d);
        Ok(())
    }

    /// Puts back a domain just [`Self::take`]n: the list has room for it
    /// (taking did not shrink it) and the index covers its domid.
    fn restore(&mut self, d: Slot) {
        let id = usize::from(d.domid);
        if let Some(e) = self.index.get_mut(id) {
            // Below MAX_DOMAINS, so below ABSENT.
            *e = u16::try_from(self.domains.len()).unwrap_or(ABSENT);
        }
        self.domains.push(d);
    }

    /// Takes `domid` out of the list and the index.
    fn take(&mut self, domid: DomId) -> Option<Slot> {
        let p = self.position(domid)?;
        let d = self.domains.swap_remove(p);
        self.index[usize::from(domid)] = ABSENT;
        if let Some(moved) = self.domains.get(p) {
            // p < len ≤ MAX_DOMAINS, below ABSENT.
            self.index[usize::from(moved.domid)] = u16::try_from(p).unwrap_or(ABSENT);
        }
        Some(d)
    }

    /// The physical-interrupt routing.
    pub fn irqs(&self) -> &Routing {
        &self.irqs
    }

    /// The physical-interrupt routing, writable.
    pub fn irqs_mut(&mut self) -> &mut Routing {
        &mut self.irqs
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether there is no domain.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates dom0 (domid 0, privileged), paused with an empty p2m.
    pub fn create_dom0(
        &mut self,
        cfg: &DomainConfig,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<DomId, DomainError> {
        if self.get(DOM0).is_some() {
            return Err(DomainError::Dom0Exists);
        }
        self.insert(DOM0, cfg, Privileges::DOM0, pool, mem)
    }

    /// Creates an unprivileged domain, paused with an empty p2m.
    pub fn create_domu(
        &mut self,
        cfg: &DomainConfig,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<DomId, DomainError> {
        self.create_domu_with(cfg, Privileges::NONE, pool, mem)
    }

    /// Creates a domU with `privileges` (a boot-time control domain:
    /// [`Privileges::CONTROL`]), paused with an empty p2m. The hardware
    /// privilege stays dom0's ([`DomainError::NotPrivileged`]).
    pub fn create_domu_with(
        &mut self,
        cfg: &DomainConfig,
        privileges: Privileges,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<DomId, DomainError> {
        if privileges.hardware {
            return Err(DomainError::NotPrivileged);
        }
        let created = self.created;
        while let Some(q) = self.quarantine.front() {
            if created - q.created_before < DOMID_REUSE_DELAY {
                break;
            }
            self.quarantine.pop_front();
        }
        let domid = (1..DOMID_FIRST_RESERVED)
            .find(|id| self.get(*id).is_none() && !self.quarantine.iter().any(|q| q.domid == *id))
            .ok_or(DomainError::NoFreeDomid)?;
        self.insert(domid, cfg, privileges, pool, mem)
    }

    fn insert(
        &mut self,
        domid: DomId,
        cfg: &DomainConfig,
        privileges: Privileges,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<DomId, DomainError> {
        check_config(cfg)?;
        if self.iter().any(|d| d.name() == cfg.name) {
            return Err(DomainError::NameInUse);
        }
        if self.domains.len() >= MAX_DOMAINS {
            return Err(DomainError::TableFull);
        }
        let d = Domain::new(domid, cfg, privileges, pool, mem)?;
        let d = Slot::new(d, pool, mem)?;
        self.put(d).map_err(|d| {
            d.into_inner().release(pool, mem);
            DomainError::OutOfHeap
        })?;
        self.created += 1;
        Ok(domid)
    }

    /// First step of destruction: the domain becomes dying, none of its
    /// vCPUs runs again and all its event channels are closed (peers'
    /// ports become unbound, as Xen's `domain_kill`) and its pirqs
    /// unmapped (their pins masked). Once no pCPU uses it, call
    /// [`Self::destroy`].
    pub fn kill(&mut self, domid: DomId) -> Result<(), DomainError> {
        self.get_mut(domid).ok_or(DomainError::NoSuchDomain)?.kill();
        crate::event::ops::close_all(self, domid);
        self.irqs.release_domain(domid);
        Ok(())
    }

    /// One bounded slice of the destruction of a dying domain (Xen's
    /// `domain_kill` / `domain_relinquish_resources`, which return
    /// `-ERESTART` until done). The first slice drops the grant mappings
    /// it holds and orphans other domains' mappings of its grants
    /// ([`crate::grant::release`]), removes foreign mappings of its frames
    /// and gives back those it held ([`super::foreign::release_domain`]).
    /// Every slice then scrubs and frees up to `budget` of its frames
    /// (except those still mapped through grants). The last one frees its
    /// shared-info, grant-table and NPT frames, removes it from the table
    /// and puts its domid in quarantine. Until then it stays in the table,
    /// dying: visible, but no new operation applies to it.
    pub fn destroy_slice(
        &mut self,
        domid: DomId,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
        budget: u64,
    ) -> Result<Destruction, DomainError> {
        let mut d = self.take(domid).ok_or(DomainError::NoSuchDomain)?;
        if d.state != DomainState::Dying {
            let state = d.state;
            self.restore(d);
            return Err(DomainError::BadState(state));
        }
        if !d.mappings_released {
            crate::grant::release::release_domain(&mut d, self, pool, mem);
            super::foreign::release_domain(&mut d, self, pool, mem);
            d.mappings_released = true;
        }
        if !d.relinquish(pool, mem, budget) {
            self.restore(d);
            return Ok(Destruction::Continues);
        }
        // Its heap block goes back before the quarantine may need room.
        d.into_inner().release(pool, mem);
        if self.quarantine.len() >= QUARANTINE_LEN || self.quarantine.try_reserve(1).is_err() {
            self.quarantine.pop_front();
        }
        self.quarantine.push_back(Quarantined {
            domid,
            created_before: self.created,
        });
        Ok(Destruction::Done)
    }

    /// Destroys a dying domain in one go: [`Self::destroy_slice`] until it
    /// is done. For the hypervisor's own use (a boot domain that failed,
    /// power-off), where no guest waits; a guest's request goes slice by
    /// slice through a hypercall continuation.
    pub fn destroy(
        &mut self,
        domid: DomId,
        pool: &mut impl FramePool,
        mem: &mut impl PhysMem,
    ) -> Result<(), DomainError> {
        while self.destroy_slice(domid, pool, mem, SLICE_FRAMES)? == Destruction::Continues {}
        Ok(())
    }
}

/// Where a destruction stands after a [`DomainTable::destroy_slice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destruction {
    /// The domain is still dying: call again.
    Continues,
    /// The domain is gone and all its memory is back in the pool.
    Done,
}

fn check_config(cfg: &DomainConfig) -> Result<(), DomainError> {
    if cfg.name.is_empty() || cfg.name.len() > DOMAIN_NAME_MAX {
        return Err(DomainError::BadName);
    }
    if cfg.vcpus == 0 || cfg.vcpus as usize > MAX_VCPUS {
        return Err(DomainError::BadVcpuCount);
    }
    if cfg.max_pages > MAX_DOMAIN_PAGES {
        return Err(DomainError::TooMuchMemory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Gfn;
    use crate::paging::sim::machine;
    use abi::convert::u32_const;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn cfg(name: &str) -> DomainConfig<'_> {
        DomainConfig {
            name,
            max_pages: 64,
            vcpus: 1,
        }
    }

    #[test]
    fn dom0_is_privileged_and_unique() {
        let (mut pool, mut mem) = machine(64);
        let mut t = DomainTable::new();
        assert_eq!(t.create_dom0(&cfg("dom0"), &mut pool, &mut mem), Ok(0));
        assert_eq!(
            t.create_dom0(&cfg("again"), &mut pool, &mut mem),
            Err(DomainError::Dom0Exists)
        );
        assert_eq!(t.create_domu(&cfg("u"), &mut pool, &mut mem), Ok(1));
        assert!(t.get(0).unwrap().privilege().is_some());
        assert!(t.get(1).unwrap().privilege().is_none());
        assert_eq!(
            t.create_domu(&cfg("u"), &mut pool, &mut mem),
            Err(DomainError::NameInUse)
        );
    }

    #[test]
    fn configs_are_checked() {
        let (mut pool, mut mem) = machine(64);
        let mut t = DomainTable::new();
        let long = "x".repeat(DOMAIN_NAME_MAX + 1);
        let bad = [
            (
                DomainConfig {
                    name: "",
                    ..cfg("")
                },
                DomainError::BadName,
            ),
            (cfg(&long), DomainError::BadName),
            (
                DomainConfig {
                    vcpus: 0,
                    ..cfg("a")
                },
                DomainError::BadVcpuCount,
            ),
            (
                DomainConfig {
                    vcpus: u32_const::<MAX_VCPUS>() + 1,
                    ..cfg("a")
                },
                DomainError::BadVcpuCount,
            ),
            (
                DomainConfig {
                    max_pages: MAX_DOMAIN_PAGES + 1,
                    ..cfg("a")
                },
                DomainError::TooMuchMemory,
            ),
        ];
        for (c, e) in bad {
            assert_eq!(t.create_domu(&c, &mut pool, &mut mem), Err(e));
        }
        assert!(t.is_empty());
        assert_eq!(pool.free_frames(), 64);
    }

    #[test]
    fn a_cell_holds_the_domain_of_its_domid_and_follows_it_when_others_go() {
        let (mut pool, mut mem) = machine(64);
        let mut t = DomainTable::new();
        for name in ["a", "b", "c"] {
            t.create_domu(&cfg(name), &mut pool, &mut mem).unwrap();
        }
        assert!(t.cell(0).is_none() && t.cell(4).is_none());
        // Destroying d1 moves the last domain into its place in the list.
        t.kill(1).unwrap();
        t.destroy(1, &mut pool, &mut mem).unwrap();
        assert!(t.cell(1).is_none());
        for (domid, name) in [(2, "b"), (3, "c")] {
            let cell = t.cell(domid).unwrap();
            assert_eq!((cell.get().domid(), cell.get().name()), (domid, name));
        }
    }

    #[test]
    fn table_is_bounded() {
        // Each domain takes an NPT root and a shared-info frame.
        let (mut pool, mut mem) = machine(2 * MAX_DOMAINS as u64 + 8);
        let mut t = DomainTable::new();
        for i in 0..MAX_DOMAINS {
            t.create_domu(&cfg(&format!("d{i}")), &mut pool, &mut mem)
                .unwrap();
        }
        assert_eq!(
            t.create_domu(&cfg("one more"), &mut pool, &mut mem),
            Err(DomainError::TableFull)
        );
        assert_eq!(t.len(), MAX_DOMAINS);
    }

    #[test]
    fn destroy_needs_kill_first() {
        let (mut pool, mut mem) = machine(64);
        let mut t = DomainTable::new();
        let id = t.create_domu(&cfg("u"), &mut pool, &mut mem).unwrap();
        assert_eq!(
            t.destroy(id, &mut pool, &mut mem),
            Err(DomainError::BadState(DomainState::Paused))
        );
        assert_eq!(
            t.destroy(77, &mut pool, &mut mem),
            Err(DomainError::NoSuchDomain)
        );
        t.kill(id).unwrap();
        t.destroy(id, &mut pool, &mut mem).unwrap();
        assert!(t.get(id).is_none());
        assert_eq!(pool.free_frames(), 64);
    }

    #[test]
    fn destroyed_domid_waits_in_quarantine() {
        let (mut pool, mut mem) = machine(256);
        let mut t = DomainTable::new();
        let first = t.create_domu(&cfg("a"), &mut pool, &mut mem).unwrap();
        t.kill(first).unwrap();
        t.destroy(first, &mut pool, &mut mem).unwrap();
        for i in 0..DOMID_REUSE_DELAY {
            let id = t
                .create_domu(&cfg(&format!("n{i}")), &mut pool, &mut mem)
                .unwrap();
            assert_ne!(id, first);
            t.kill(id).unwrap();
            t.destroy(id, &mut pool, &mut mem).unwrap();
        }
        assert_eq!(t.create_domu(&cfg("back"), &mut pool, &mut mem), Ok(first));
    }

    #[test]
    fn destruction_goes_in_slices_and_returns_every_frame() {
        let (mut pool, mut mem) = machine(3 * SLICE_FRAMES + 64);
        let start = pool.free_frames();
        let mut t = DomainTable::new();
        let big = DomainConfig {
            max_pages: 2 * SLICE_FRAMES + 7,
            ..cfg("big")
        };
        let id = t.create_domu(&big, &mut pool, &mut mem).unwrap();
        let d = t.get_mut(id).unwrap();
        // Spread over two top-level tables, so the walk crosses a gap.
        d.populate(&mut pool, &mut mem, Gfn(0), SLICE_FRAMES)
            .unwrap();
        d.populate(&mut pool, &mut mem, Gfn(1 << 27), SLICE_FRAMES + 7)
            .unwrap();
        t.kill(id).unwrap();
        let mut slices = 0;
        loop {
            let free = pool.free_frames();
            slices += 1;
            match t
                .destroy_slice(id, &mut pool, &mut mem, SLICE_FRAMES)
                .unwrap()
            {
                Destruction::Done => break,
                Destruction::Continues => {
                    let d = t.get_mut(id).expect("still in the table");
                    assert_eq!(d.state(), DomainState::Dying);
                    assert!(pool.free_frames() - free >= SLICE_FRAMES);
                    assert_eq!(
                        d.populate(&mut pool, &mut mem, Gfn(1), 1),
                        Err(DomainError::BadState(DomainState::Dying)),
                        "no new memory for a dying domain"
                    );
                }
            }
        }
        assert_eq!(slices, 3);
        assert!(t.get(id).is_none());
        assert_eq!(pool.free_frames(), start);
        assert_eq!(
            t.destroy_slice(id, &mut pool, &mut mem, 1),
            Err(DomainError::NoSuchDomain)
        );
    }

    #[derive(Clone, Debug)]
    enum TableOp {
        Create,
        /// Destroys the live domain at this index (mod the live count).
        Destroy(usize),
        Lookup(DomId),
    }

    fn table_op() -> impl Strategy<Value = TableOp> {
        prop_oneof![
            3 => Just(TableOp::Create),
            2 => any::<usize>().prop_map(TableOp::Destroy),
            1 => any::<DomId>().prop_map(TableOp::Lookup),
        ]
    }

    proptest! {
        /// The growing table against a model (a map by domid): the same
        /// domains, each found by its domid and by no other, walks that
        /// visit each domain in use once.
        #[test]
        fn table_matches_a_model(ops in prop::collection::vec(table_op(), 1..400)) {
            let (mut pool, mut mem) = machine(2 * 400 + 8);
            let mut t = DomainTable::new();
            let mut model: BTreeMap<DomId, String> = BTreeMap::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    TableOp::Create => {
                        let name = format!("d{n}");
                        let id = t.create_domu(&cfg(&name), &mut pool, &mut mem).unwrap();
                        prop_assert!(model.insert(id, name).is_none());
                    }
                    TableOp::Destroy(i) if !model.is_empty() => {
                        let id = *model.keys().nth(i % model.len()).unwrap();
                        t.kill(id).unwrap();
                        t.destroy(id, &mut pool, &mut mem).unwrap();
                        model.remove(&id);
                    }
                    TableOp::Lookup(id) => {
                        prop_assert_eq!(t.get(id).map(|d| d.name()), model.get(&id).map(String::as_str));
                    }
                    TableOp::Destroy(_) => {}
                }
                prop_assert_eq!(t.len(), model.len());
                let mut walked: Vec<DomId> = t.iter().map(Domain::domid).collect();
                walked.sort_unstable();
                prop_assert_eq!(&walked, &model.keys().copied().collect::<Vec<_>>());
                for (id, name) in &model {
                    prop_assert_eq!(t.get(*id).map(|d| d.domid()), Some(*id));
                    prop_assert_eq!(t.get_mut(*id).map(|d| d.name().to_owned()), Some(name.clone()));
                }
            }
        }
    }

    #[test]
    fn grows_past_a_thousand_domains() {
        let (mut pool, mut mem) = machine(2 * 1100 + 8);
        let mut t = DomainTable::new();
        for i in 0..1100 {
            t.create_domu(&cfg(&format!("d{i}")), &mut pool, &mut mem)
                .unwrap();
        }
        assert_eq!(t.len(), 1100);
        assert_eq!(t.get(1100).map(Domain::domid), Some(1100));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(u64),
        Destroy(usize),
        /// One slice of a destruction, of at most this many frames.
        DestroySlice(usize, u64),
        Populate(usize, u64, u64),
        Crash(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..80).prop_map(Op::Create),
            any::<usize>().prop_map(Op::Destroy),
            (any::<usize>(), 1u64..6).prop_map(|(i, n)| Op::DestroySlice(i, n)),
            (any::<usize>(), 0u64..2048, 1u64..40).prop_map(|(i, g, n)| Op::Populate(i, g, n)),
            any::<usize>().prop_map(Op::Crash),
        ]
    }

    proptest! {
        #[test]
        fn no_leaks_and_domids_rest(ops in prop::collection::vec(op(), 1..80)) {
            let (mut pool, mut mem) = machine(1024);
            let start = pool.free_frames();
            let mut t = DomainTable::new();
            let mut live: Vec<DomId> = Vec::new();
            let mut destroyed_at: BTreeMap<DomId, u64> = BTreeMap::new();
            let mut created = 0u64;
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Create(pages) => {
                        let c = DomainConfig { name: &format!("d{n}"), max_pages: pages, vcpus: 1 };
                        if let Ok(id) = t.create_domu(&c, &mut pool, &mut mem) {
                            if let Some(at) = destroyed_at.remove(&id) {
                                prop_assert!(created - at >= DOMID_REUSE_DELAY, "domid {} reused early", id);
                            }
                            prop_assert!(!live.contains(&id));
                            live.push(id);
                            created += 1;
                        }
                    }
                    Op::Destroy(i) if !live.is_empty() => {
                        let id = live.remove(i % live.len());
                        if t.get(id).unwrap().state() != DomainState::Dying {
                            t.kill(id).unwrap();
                        }
                        t.destroy(id, &mut pool, &mut mem).unwrap();
                        destroyed_at.insert(id, created);
                    }
                    Op::DestroySlice(i, budget) if !live.is_empty() => {
                        let id = live[i % live.len()];
                        let d = t.get(id).unwrap();
                        let held = d.tot_pages();
                        if d.state() != DomainState::Dying {
                            t.kill(id).unwrap();
                        }
                        match t.destroy_slice(id, &mut pool, &mut mem, budget).unwrap() {
                            Destruction::Continues => {
                                let d = t.get(id).unwrap();
                                prop_assert_eq!(d.tot_pages(), held - budget);
                            }
                            Destruction::Done => {
                                prop_assert!(held <= budget);
                                live.retain(|d| *d != id);
                                destroyed_at.insert(id, created);
                            }
                        }
                    }
                    Op::Populate(i, g, n) if !live.is_empty() => {
                        let d = t.get_mut(live[i % live.len()]).unwrap();
                        let before = d.tot_pages();
                        let dying = d.state() == DomainState::Dying;
                        let r = d.populate(&mut pool, &mut mem, Gfn(g), n);
                        prop_assert!(!(dying && r.is_ok()), "populated a dying domain");
                        prop_assert_eq!(d.tot_pages(), before + if r.is_ok() { n } else { 0 });
                        prop_assert!(d.tot_pages() <= d.max_pages());
                    }
                    Op::Crash(i) if !live.is_empty() => {
                        t.get_mut(live[i % live.len()]).unwrap().crash(crate::domain::CrashReason::TripleFault);
                    }
                    _ => {}
                }
                // Owned frames, NPT frames and one shared-info frame each.
                let used: u64 = t.iter().map(|d| d.tot_pages() + d.p2m().table_frames() + 1).sum();
                prop_assert_eq!(start - pool.free_frames(), used);
            }
            for id in live {
                if t.get(id).unwrap().state() != DomainState::Dying {
                    t.kill(id).unwrap();
                }
                t.destroy(id, &mut pool, &mut mem).unwrap();
            }
            prop_assert_eq!(pool.free_frames(), start);
        }
    }
}
