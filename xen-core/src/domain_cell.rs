//! A domain in a cell that the machine lock's reader sections lock one
//! domain at a time (docs/architecture.md, "Locks").
//!
//! The domain table is shared by every pCPU. A pCPU holding the machine
//! lock as writer reaches any domain through `&mut DomainTable`, or
//! reads them all through `&DomainTable` ([`DomainCell::get`]). A pCPU
//! holding it as a reader completes an exit of one vCPU: it changes that
//! vCPU's domain, and only that one, while other readers change theirs.
//! So the domain sits in an `UnsafeCell`, and a reader's `&mut Domain`
//! comes from [`DomainCell::get_locked`], whose contract (the caller
//! holds the reader side and the domain's lock) is what keeps every
//! `&Domain` from `get` and every other `&mut Domain` away meanwhile.
//!
//! This module holds the `unsafe` that needs; the table stays
//! `deny(unsafe_code)`.

use core::cell::UnsafeCell;

use crate::domain::Domain;

/// One domain, reached shared or exclusively through the table, or
/// exclusively under its lock ([`Self::get_locked`]).
#[derive(Debug)]
pub struct DomainCell(UnsafeCell<Domain>);

impl DomainCell {
    /// `d` in a cell.
    pub fn new(d: Domain) -> Self {
        Self(UnsafeCell::new(d))
    }

    /// The domain, out of its cell (it leaves the table).
    pub fn into_inner(self) -> Domain {
        self.0.into_inner()
    }

    /// The domain, shared.
    pub fn get(&self) -> &Domain {
        // SAFETY: the only `&mut Domain` made from a shared cell is
        // `get_locked`'s, whose caller promised that no `&DomainTable`
        // user reads this cell while it lives (`get_locked`'s contract).
        unsafe { &*self.0.get() }
    }

    /// The domain, exclusively: `&mut self` proves nobody else holds it.
    pub fn get_mut(&mut self) -> &mut Domain {
        self.0.get_mut()
    }

    /// The domain, exclusively, from a shared table.
    ///
    /// # Safety
    ///
    /// For as long as the returned borrow lives, no other reference to
    /// this domain may exist or be made: nobody calls [`Self::get`] or
    /// [`Self::get_mut`] on this cell (the caller holds the machine lock's
    /// reader side, which excludes every holder of the table itself), and
    /// no other `get_locked` borrow of it is live (the caller holds the
    /// domain's lock).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_locked(&self) -> &mut Domain {
        // SAFETY: the caller's contract makes this the only reference.
        unsafe { &mut *self.0.get() }
    }
}
