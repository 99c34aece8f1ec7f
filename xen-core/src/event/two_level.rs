//! The 2-level event ABI (Xen's `xen/common/event_2l.c`): a port's
//! pending and mask bits live in the domain's shared-info page
//! (`evtchn_pending`, `evtchn_mask`, one bit per port), and each vCPU's
//! `vcpu_info` holds `evtchn_pending_sel` (bit `w`: word `w` of the pending
//! bitmap may hold news) and `evtchn_upcall_pending`.
//!
//! The guest writes these words too, on other pCPUs once there are
//! several: every bit is tested, set or cleared with one atomic operation
//! on its 64-bit word through the shared-frame accessor
//! ([`crate::domain::shared::Place`]), as Xen's `guest_test_and_set_bit`
//! and `guest_test_bit` are.

use core::mem::offset_of;

use abi::xen::event_channel::EvtchnPort;
use abi::xen::shared_info::{SharedInfo, VcpuInfo};

use crate::domain::shared::{current_vcpu_info, Place};
use crate::domain::Domain;
use crate::mm::PhysMem;

/// Ports per bitmap word (`BITS_PER_EVTCHN_WORD` for a 64-bit guest).
const BITS_PER_WORD: u32 = u64::BITS;

/// One of the two bitmaps in shared info.
#[derive(Clone, Copy, Debug)]
enum Bitmap {
    Pending,
    Mask,
}

/// The word of shared info holding `port`'s bit in `bitmap`.
fn shared(bitmap: Bitmap, port: EvtchnPort) -> Place {
    let array = match bitmap {
        Bitmap::Pending => offset_of!(SharedInfo, evtchn_pending),
        Bitmap::Mask => offset_of!(SharedInfo, evtchn_mask),
    };
    Place::SharedInfo(array + (port / BITS_PER_WORD) as usize * 8)
}

/// `port`'s bit in `bitmap`, one fetch of its word.
fn test_bit<M: PhysMem>(domain: &Domain, mem: &mut M, bitmap: Bitmap, port: EvtchnPort) -> bool {
    shared(bitmap, port)
        .with(domain, mem, 8, false, |f, off| f.load_u64(off))
        .is_ok_and(|word| word & (1 << (port % BITS_PER_WORD)) != 0)
}

/// Where vCPU `vcpu`'s `vcpu_info` field at `offset` is, if it has one.
fn vcpu_info_field(domain: &Domain, vcpu: u32, offset: usize) -> Option<Place> {
    current_vcpu_info(domain, vcpu).map(|p| p.at(offset))
}

/// Sets (or clears) bit `bit` of the word at `at` with one locked
/// operation; returns its old value. A word the hypervisor cannot reach
/// (a registered `vcpu_info` the guest took away) reads as all ones:
/// nothing is signalled through it.
fn update_bit<M: PhysMem>(domain: &Domain, mem: &mut M, at: Place, bit: u32, set: bool) -> bool {
    let mask = 1u64 << (bit % BITS_PER_WORD);
    at.with(domain, mem, 8, true, |f, off| {
        if set {
            f.fetch_or_u64(off, mask)
        } else {
            f.fetch_and_u64(off, !mask)
        }
    })
    .map_or(true, |old| old & mask != 0)
}

/// Whether `port` is pending (`evtchn_port_is_pending`).
pub fn is_pending<M: PhysMem>(domain: &Domain, mem: &mut M, port: EvtchnPort) -> bool {
    test_bit(domain, mem, Bitmap::Pending, port)
}

/// Whether `port` is masked.
pub(super) fn is_masked<M: PhysMem>(domain: &Domain, mem: &mut M, port: EvtchnPort) -> bool {
    test_bit(domain, mem, Bitmap::Mask, port)
}

/// Sets `port`'s pending bit; returns whether it was set already.
pub(super) fn test_and_set_pending<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    port: EvtchnPort,
) -> bool {
    update_bit(domain, mem, shared(Bitmap::Pending, port), port, true)
}

/// Clears `port`'s pending bit (Xen's `evtchn_2l_clear_pending`, when a
/// port is freed, so that a re-bound port starts quiet).
pub(super) fn clear_pending<M: PhysMem>(domain: &Domain, mem: &mut M, port: EvtchnPort) {
    update_bit(domain, mem, shared(Bitmap::Pending, port), port, false);
}

/// Clears `port`'s mask bit; returns whether it was set.
pub(super) fn test_and_clear_mask<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    port: EvtchnPort,
) -> bool {
    update_bit(domain, mem, shared(Bitmap::Mask, port), port, false)
}

/// Sets the selector bit of `port`'s word in `vcpu`'s `vcpu_info`;
/// returns whether it was set already.
pub(super) fn test_and_set_selector<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    vcpu: u32,
    port: EvtchnPort,
) -> bool {
    match vcpu_info_field(domain, vcpu, offset_of!(VcpuInfo, evtchn_pending_sel)) {
        Some(at) => update_bit(domain, mem, at, port / BITS_PER_WORD, true),
        None => true,
    }
}

/// Sets `vcpu`'s `evtchn_upcall_pending` (bit 0, one locked `or`, as
/// Xen's `guest_test_and_set_bit(0, ...)`); returns whether it was set.
pub(super) fn test_and_set_upcall<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> bool {
    let Some(at) = vcpu_info_field(domain, vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending))
    else {
        return true;
    };
    at.with(domain, mem, 1, true, |f, off| f.fetch_or_u8(off, 1))
        .map_or(true, |old| old & 1 != 0)
}

/// `vcpu`'s `evtchn_upcall_pending` and `evtchn_upcall_mask`, as the guest
/// left them, in one fetch; an unreachable `vcpu_info` reads as (false,
/// true).
pub(super) fn upcall_state<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> (bool, bool) {
    let both = vcpu_info_field(domain, vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending))
        .map(|at| at.with(domain, mem, 2, false, |f, off| f.load_u16(off)));
    match both {
        Some(Ok(word)) => (word & 0xff != 0, word >> 8 != 0),
        _ => (false, true),
    }
}

const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
