//! The 2-level event ABI (Xen's `xen/common/event_2l.c`): a port's
//! pending and mask bits live in the domain's shared-info page
//! (`evtchn_pending`, `evtchn_mask`, one bit per port), and each vCPU's
//! `vcpu_info` holds `evtchn_pending_sel` (bit `w`: word `w` of the pending
//! bitmap may hold news) and `evtchn_upcall_pending`.
//!
//! The guest writes these words too. xen-core runs one pCPU, so no vCPU
//! runs while the hypervisor updates them and plain read-modify-write is
//! atomic with respect to the guest; with several pCPUs these become
//! locked bit operations, as Xen's `guest_test_and_set_bit`.

use core::mem::offset_of;

use abi::xen::event_channel::EvtchnPort;
use abi::xen::shared_info::{SharedInfo, VcpuInfo};

use crate::domain::Domain;
use crate::hypercall::shared::{current_vcpu_info, Place};
use crate::mm::PhysMem;

/// Ports per bitmap word (`BITS_PER_EVTCHN_WORD` for a 64-bit guest).
const BITS_PER_WORD: u32 = u64::BITS;

/// One of the two bitmaps in shared info.
#[derive(Clone, Copy, Debug)]
enum Bitmap {
    Pending,
    Mask,
}

/// Byte offset in shared info of the word holding `port`'s bit.
fn bitmap_word(bitmap: Bitmap, port: EvtchnPort) -> usize {
    let array = match bitmap {
        Bitmap::Pending => offset_of!(SharedInfo, evtchn_pending),
        Bitmap::Mask => offset_of!(SharedInfo, evtchn_mask),
    };
    array + (port / BITS_PER_WORD) as usize * 8
}

/// `port`'s bit in `bitmap`, read from the shared-info frame.
fn test_bit<M: PhysMem>(domain: &Domain, mem: &M, bitmap: Bitmap, port: EvtchnPort) -> bool {
    let at = bitmap_word(bitmap, port);
    let frame = mem.frame(domain.shared_info_mfn());
    frame.get(at..at + 8).is_some_and(|w| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        u64::from_le_bytes(bytes) & (1 << (port % BITS_PER_WORD)) != 0
    })
}

fn shared(bitmap: Bitmap, port: EvtchnPort) -> Place {
    Place::SharedInfo(bitmap_word(bitmap, port))
}

/// Where vCPU `vcpu`'s `vcpu_info` field at `offset` is, if it has one.
fn vcpu_info_field(domain: &Domain, vcpu: u32, offset: usize) -> Option<Place> {
    current_vcpu_info(domain, vcpu).map(|p| p.at(offset))
}

fn read_word<M: PhysMem>(domain: &Domain, mem: &mut M, at: Place) -> Option<u64> {
    let mut bytes = [0u8; 8];
    at.read(domain, mem, &mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Sets (or clears) bit `bit` of the word at `at`; returns its old value.
/// A word the hypervisor cannot reach (a registered `vcpu_info` the guest
/// took away) reads as all ones: nothing is signalled through it.
fn update_bit<M: PhysMem>(domain: &Domain, mem: &mut M, at: Place, bit: u32, set: bool) -> bool {
    let Some(word) = read_word(domain, mem, at) else {
        return true;
    };
    let mask = 1u64 << (bit % BITS_PER_WORD);
    let new = if set { word | mask } else { word & !mask };
    if new != word && at.write(domain, mem, &new.to_le_bytes()).is_err() {
        return true;
    }
    word & mask != 0
}

/// Whether `port` is pending (`evtchn_port_is_pending`).
pub fn is_pending<M: PhysMem>(domain: &Domain, mem: &M, port: EvtchnPort) -> bool {
    test_bit(domain, mem, Bitmap::Pending, port)
}

/// Whether `port` is masked.
pub(super) fn is_masked<M: PhysMem>(domain: &Domain, mem: &M, port: EvtchnPort) -> bool {
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

/// Sets `vcpu`'s `evtchn_upcall_pending`; returns whether it was set.
pub(super) fn test_and_set_upcall<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> bool {
    let Some(at) = vcpu_info_field(domain, vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending))
    else {
        return true;
    };
    let mut old = [0u8];
    if at.read(domain, mem, &mut old).is_err() {
        return true;
    }
    if old[0] == 0 && at.write(domain, mem, &[1]).is_err() {
        return true;
    }
    old[0] != 0
}

/// `vcpu`'s `evtchn_upcall_pending` and `evtchn_upcall_mask`, as the guest
/// left them; an unreachable `vcpu_info` reads as (false, true).
pub(super) fn upcall_state<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> (bool, bool) {
    let mut two = [0u8; 2];
    match vcpu_info_field(domain, vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending)) {
        Some(at) if at.read(domain, mem, &mut two).is_ok() => (two[0] != 0, two[1] != 0),
        _ => (false, true),
    }
}

const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
