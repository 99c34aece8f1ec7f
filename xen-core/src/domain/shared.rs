//! The structures a domain shares with the hypervisor, by place: its
//! shared-info page (`struct shared_info`, a hypervisor frame) and each
//! vCPU's `vcpu_info`, in its slot of shared info or, after
//! `VCPUOP_register_vcpu_info`, in a page of the guest's own RAM (reached
//! through its p2m only). The guest changes them while the hypervisor
//! uses them, so every access goes through [`SharedFrame`]'s atomic
//! operations (the event bitmaps in `crate::event::two_level`, the
//! pvclock in `crate::time::pvclock`).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use abi::xen::shared_info::{SharedInfo, VcpuInfo, XEN_LEGACY_MAX_VCPUS};

use super::Domain;
use crate::guest_mem::GuestFault;
use crate::mm::shared_frame::{BadOffset, SharedFrame};
use crate::mm::{Gpa, Mfn, PhysMem, PAGE_SIZE};
use crate::paging::npt::P2mEntry;

/// A byte position the hypervisor reads or writes for a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Offset in the domain's shared-info frame.
    SharedInfo(usize),
    /// An address in the domain's own memory.
    Guest(Gpa),
}

impl Place {
    /// The place `off` bytes further on.
    pub(crate) fn at(self, off: usize) -> Place {
        match self {
            Place::SharedInfo(o) => Place::SharedInfo(o + off),
            Place::Guest(gpa) => Place::Guest(gpa.add(off as u64)),
        }
    }

    /// The frame and offset of `len` bytes here: inside one frame (else
    /// `Misaligned`), mapped in the p2m (`NotInP2m`) and, for `write`,
    /// writable by the guest (`ReadOnly`).
    fn locate<M: PhysMem>(
        self,
        domain: &Domain,
        mem: &M,
        len: usize,
        write: bool,
    ) -> Result<(Mfn, usize), GuestFault> {
        let (mfn, off) = match self {
            Place::SharedInfo(off) => (domain.shared_info_mfn(), off),
            Place::Guest(gpa) => {
                let entry = domain
                    .p2m()
                    .translate(mem, gpa.gfn())
                    .filter(P2mEntry::is_memory)
                    .ok_or(GuestFault::NotInP2m)?;
                if write && !entry.access.write {
                    return Err(GuestFault::ReadOnly);
                }
                (entry.mfn, gpa.page_offset())
            }
        };
        match off.checked_add(len) {
            Some(end) if end <= PAGE_SIZE => Ok((mfn, off)),
            _ => Err(GuestFault::Misaligned),
        }
    }

    /// Runs `f` on the frame holding the `len` bytes here and their
    /// offset in it. `write`: `f` changes them.
    pub(crate) fn with<M: PhysMem, R>(
        self,
        domain: &Domain,
        mem: &mut M,
        len: usize,
        write: bool,
        f: impl FnOnce(&SharedFrame<'_>, usize) -> Result<R, BadOffset>,
    ) -> Result<R, GuestFault> {
        let (mfn, off) = self.locate(domain, mem, len, write)?;
        f(&mem.shared_frame(mfn), off).map_err(|_| GuestFault::Misaligned)
    }

    /// Copies `buf.len()` bytes from here.
    pub(crate) fn read<M: PhysMem>(
        self,
        domain: &Domain,
        mem: &mut M,
        buf: &mut [u8],
    ) -> Result<(), GuestFault> {
        self.with(domain, mem, buf.len(), false, |f, off| f.read(off, buf))
    }

    /// Copies `data` here, all or nothing.
    pub(crate) fn write<M: PhysMem>(
        self,
        domain: &Domain,
        mem: &mut M,
        data: &[u8],
    ) -> Result<(), GuestFault> {
        self.with(domain, mem, data.len(), true, |f, off| f.write(off, data))
    }
}

/// Writes `body` at `body_off` bytes after `at` under the u32 version
/// counter at `at`, as Xen's `version_update_begin`/`_end` do: the
/// version becomes odd before the body changes and even (one more)
/// after, so a reader that sees the same even version before and after
/// its read saw a consistent body. Release fences order the three stores
/// (x86 keeps stores in order; the fences stop the compiler from moving
/// them). Version and body lie in one frame (a `vcpu_info` may not cross
/// a page, shared info is one), found once: this runs at every vCPU
/// switch, and each lookup of a registered area walks the p2m.
pub(crate) fn seqlock_write<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    at: Place,
    body_off: usize,
    body: &[u8],
) -> Result<(), GuestFault> {
    let len = body_off.saturating_add(body.len()).max(4);
    at.with(domain, mem, len, true, |f, off| {
        let odd = f.load_u32(off)?.wrapping_add(1) | 1;
        f.store_u32(off, odd)?;
        fence(Ordering::Release);
        let written = f.write(off + body_off, body);
        fence(Ordering::Release);
        // Even again whatever happened, so no reader spins forever.
        f.store_u32(off, odd.wrapping_add(1))?;
        written
    })
}

/// vCPU `id`'s slot in shared info, if it has one (ids below 32).
fn legacy_slot(id: u32) -> Option<Place> {
    let id = usize::try_from(id)
        .ok()
        .filter(|i| *i < XEN_LEGACY_MAX_VCPUS)?;
    Some(Place::SharedInfo(
        offset_of!(SharedInfo, vcpu_info) + id * size_of::<VcpuInfo>(),
    ))
}

/// vCPU `id`'s registered `vcpu_info` area, if any.
fn registered(domain: &Domain, id: u32) -> Option<Place> {
    let area = domain
        .xen()
        .vcpu_info
        .get(usize::try_from(id).ok()?)
        .copied()
        .flatten()?;
    Some(Place::Guest(area.gpa()))
}

/// Where the guest reads vCPU `id`'s `vcpu_info` now: the registered area,
/// else its slot in shared info.
pub(crate) fn current_vcpu_info(domain: &Domain, id: u32) -> Option<Place> {
    registered(domain, id).or_else(|| legacy_slot(id))
}

/// Every place holding a copy of vCPU `id`'s `vcpu_info`: the slot in
/// shared info and the registered area (the time is kept current in both).
pub(crate) fn all_vcpu_infos(domain: &Domain, id: u32) -> impl Iterator<Item = Place> {
    legacy_slot(id).into_iter().chain(registered(domain, id))
}

/// Whether a `vcpu_info` at page offset `offset` may be registered (Xen's
/// `map_guest_area`): its `size_of::<VcpuInfo>()` bytes stay inside the
/// page, and it is aligned to `xen_ulong_t` (8 bytes), so that its words
/// can be reached atomically.
pub(crate) fn vcpu_info_fits(offset: u64) -> bool {
    offset.is_multiple_of(8)
        && offset
            .checked_add(size_of::<VcpuInfo>() as u64)
            .is_some_and(|end| end <= PAGE_SIZE as u64)
}
