//! Structures the hypervisor writes for a guest: its shared-info page
//! (`struct shared_info`, a hypervisor frame) and each vCPU's `vcpu_info`,
//! in its slot of shared info or, after `VCPUOP_register_vcpu_info`, in a
//! page of the guest's own RAM (reached through its p2m only).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use abi::xen::shared_info::{SharedInfo, VcpuInfo, XEN_LEGACY_MAX_VCPUS};

use crate::domain::Domain;
use crate::guest_mem::{GuestFault, GuestPhys};
use crate::mm::{PhysMem, PAGE_SIZE};

/// A byte position the hypervisor writes for a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Offset in the domain's shared-info frame.
    SharedInfo(usize),
    /// Guest physical address in the domain's own memory.
    Guest(u64),
}

impl Place {
    /// The place `off` bytes further on.
    pub(crate) fn at(self, off: usize) -> Place {
        match self {
            Place::SharedInfo(o) => Place::SharedInfo(o + off),
            Place::Guest(gpa) => Place::Guest(gpa.wrapping_add(off as u64)),
        }
    }

    /// Copies `buf.len()` bytes from here.
    pub(crate) fn read<M: PhysMem>(
        self,
        domain: &Domain,
        mem: &mut M,
        buf: &mut [u8],
    ) -> Result<(), GuestFault> {
        match self {
            Place::SharedInfo(off) => {
                let frame = mem.frame(domain.shared_info_mfn());
                let src = frame
                    .get(off..off + buf.len())
                    .ok_or(GuestFault::NotInP2m)?;
                buf.copy_from_slice(src);
                Ok(())
            }
            Place::Guest(gpa) => GuestPhys::new(domain.p2m(), mem).read(gpa, buf),
        }
    }

    /// Copies `data` here, all or nothing.
    pub(crate) fn write<M: PhysMem>(
        self,
        domain: &Domain,
        mem: &mut M,
        data: &[u8],
    ) -> Result<(), GuestFault> {
        match self {
            Place::SharedInfo(off) => {
                let frame = mem.frame_mut(domain.shared_info_mfn());
                let dst = frame
                    .get_mut(off..off + data.len())
                    .ok_or(GuestFault::NotInP2m)?;
                dst.copy_from_slice(data);
                Ok(())
            }
            Place::Guest(gpa) => GuestPhys::new(domain.p2m(), mem).write(gpa, data),
        }
    }
}

/// Writes `body` at `body_at` under the u32 version counter at
/// `version_at`, as Xen's `version_update_begin`/`_end` do: the version
/// becomes odd before the body changes and even (one more) after, so a
/// reader that sees the same even version before and after its read saw a
/// consistent body. Release fences order the three stores (x86 keeps
/// stores in order; the fences stop the compiler from moving them).
pub(crate) fn seqlock_write<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    version_at: Place,
    body_at: Place,
    body: &[u8],
) -> Result<(), GuestFault> {
    let mut old = [0u8; 4];
    version_at.read(domain, mem, &mut old)?;
    let odd = u32::from_le_bytes(old).wrapping_add(1) | 1;
    version_at.write(domain, mem, &odd.to_le_bytes())?;
    fence(Ordering::Release);
    let written = body_at.write(domain, mem, body);
    fence(Ordering::Release);
    // Even again whatever happened, so no reader spins forever.
    version_at.write(domain, mem, &odd.wrapping_add(1).to_le_bytes())?;
    written
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

/// Whether a `vcpu_info` of `size_of::<VcpuInfo>()` bytes at `offset`
/// stays inside its page.
pub(crate) fn vcpu_info_fits(offset: u64) -> bool {
    offset
        .checked_add(size_of::<VcpuInfo>() as u64)
        .is_some_and(|end| end <= PAGE_SIZE as u64)
}
