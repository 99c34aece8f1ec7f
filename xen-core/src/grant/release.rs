//! Giving up mappings: one at unmap, all of a domain's at its
//! destruction, and the orphaning of mappings whose granter is destroyed.
//!
//! Destroying domain D ([`release_domain`], called by
//! [`DomainTable::destroy`] before D's memory is freed):
//! 1. every mapping D holds is dropped: the granter's pin goes and its
//!    entry loses `GTF_reading`/`GTF_writing` (Xen's
//!    `gnttab_release_mappings`); an orphan frame D was the last to hold
//!    is scrubbed and freed;
//! 2. every mapping other domains hold of D's grants becomes an orphan:
//!    it stays in their p2m and keeps its frame, which D's release then
//!    skips (its pins remain) and which is freed when the last orphan
//!    mapping of it is unmapped or its holder destroyed.
//!
//! D's p2m changes no other domain's p2m, so no other vCPU needs a TLB
//! flush; D's own vCPUs no longer run.

use super::maptrack::{Mapping, Maptrack, Source};
use super::pin;
use crate::domain::table::DomainTable;
use crate::domain::Domain;
use crate::mm::{FramePool, Mfn, PhysMem};

/// Drops what mapping `m` (already out of its holder's maptrack) held:
/// its pin on a live granter, or its hold on an orphan frame. `extra` is
/// a maptrack outside `domains` (a domain being destroyed) that may still
/// hold the same orphan frame.
pub(super) fn put_mapping(
    domains: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
    m: &Mapping,
    extra: Option<&Maptrack>,
) {
    match m.source {
        Source::Grant { domid, gref } => {
            if let Some(granter) = domains.get_mut(domid) {
                pin::release(granter, mem, gref, m.readonly);
            }
        }
        Source::Orphan => {
            let held = domains
                .iter()
                .map(Domain::grant)
                .map(|g| g.maptrack())
                .chain(extra)
                .any(|t| t.holds_orphan(m.mfn));
            if !held {
                free_frame(pool, mem, m.mfn);
            }
        }
    }
}

/// Releases the grant state of `d`, which has been taken out of `others`
/// (the remaining domains), as described above.
pub fn release_domain(
    d: &mut Domain,
    others: &mut DomainTable,
    pool: &mut impl FramePool,
    mem: &mut impl PhysMem,
) {
    let domid = d.domid();
    while let Some(m) = d.grant_mut().maptrack_mut().and_then(Maptrack::pop) {
        match m.source {
            Source::Grant { domid: g, gref } if g == domid => {
                pin::release(d, mem, gref, m.readonly);
            }
            _ => put_mapping(others, pool, mem, &m, Some(d.grant().maptrack())),
        }
    }
    for other in others.iter_mut() {
        if let Some(t) = other.grant_mut().maptrack_mut() {
            t.orphan(domid);
        }
    }
}

/// Scrubs a frame no one holds any more and returns it to the pool.
fn free_frame(pool: &mut impl FramePool, mem: &mut impl PhysMem, mfn: Mfn) {
    mem.frame_mut(mfn).fill(0);
    pool.free(mfn);
}
