//! Event channels with Xen's semantics (`xen/common/event_channel.c`,
//! `xen/include/public/event_channel.h`) and the 2-level delivery ABI.
//!
//! Each domain holds an [`EventChannels`]: its port table (bounded by
//! [`MAX_EVTCHN_PORTS`]; a VIRQ binding is a port in it), each vCPU's
//! upcall vector (`HVMOP_set_evtchn_upcall_vector`) and `SCHEDOP_poll`
//! state. [`ops`] holds the `EVTCHNOP_*` operations over
//! the [`DomainTable`]; the hypercall layer decodes and checks arguments.
//!
//! What the run loop calls:
//! - [`upcall_for_entry`] before every VMRUN of a vCPU: the vector to put
//!   in V_IRQ, or `None` to clear it.
//! - [`raise_virq`] when the hypervisor fires a per-vCPU VIRQ
//!   (`VIRQ_TIMER` when a one-shot timer expires), [`raise_global_virq`]
//!   for dom0's global ones (`VIRQ_DOM_EXC` when a domain shuts down,
//!   crashes or dies; `VIRQ_CONSOLE`).
//! - [`raise_pirq`] for each device interrupt the host took.
//! - [`expire_polls`] with the scheduler's timers, for `SCHEDOP_poll`
//!   timeouts; a poll's deadline counts among its vCPU's timers
//!   ([`Events::poll_deadline`], `sched::next_timer_deadline`), so the
//!   pCPU that serves the vCPU wakes for it.
//!
//! Killing a domain ([`DomainTable::kill`]) closes all its ports
//! ([`ops::close_all`]), as Xen's `evtchn_destroy` does in `domain_kill`.

#![forbid(unsafe_code)]
// Indices here come from guests: `.get()` with an error path, never `[i]`.
#![warn(clippy::indexing_slicing)]

mod deliver;
pub mod ops;
mod port;
mod two_level;

#[cfg(test)]
// Tests index the fixtures they built and cast fixture constants chosen to
// fit; a bad index or value is a failed test.
#[allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
mod tests;

pub use port::{Channel, PortTable, MAX_EVTCHN_PORTS, PORTS_PER_BUCKET};
pub use two_level::is_pending;

use abi::convert::u32_const;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{
    EvtchnBinding, EvtchnPort, VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU,
};
use abi::xen::hvm::{CallbackVia, HVM_PARAM_CALLBACK_IRQ};
use heapless::Vec;

use crate::domain::table::{DomainTable, DOM0};
use crate::domain::{Domain, MAX_VCPUS};
use crate::mm::PhysMem;

/// Ports one `SCHEDOP_poll` may name (Xen's "fairly arbitrary limit").
pub const MAX_POLL_PORTS: u32 = 128;

/// A vCPU blocked in `SCHEDOP_poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// The one port polled, or `None` for several (any pending port of the
    /// domain wakes the vCPU, which checks its ports again: Xen's
    /// `poll_evtchn` of -1).
    pub port: Option<EvtchnPort>,
    /// System time (ns) the poll gives up at, if any.
    pub deadline_ns: Option<u64>,
}

/// One vCPU's event state.
#[derive(Clone, Copy, Debug, Default)]
struct VcpuEvents {
    /// From `HVMOP_set_evtchn_upcall_vector`.
    upcall_vector: Option<u8>,
    poll: Option<Poll>,
}

/// One domain's event-channel state. Everything but two vectors' headers
/// is on the heap, allocated on first use, so a [`Domain`] stays small.
#[derive(Clone, Debug, Default)]
pub struct EventChannels {
    ports: PortTable,
    /// Empty, or [`MAX_VCPUS`] entries once a vCPU needs one.
    vcpus: alloc::vec::Vec<VcpuEvents>,
}

impl EventChannels {
    /// No ports, no vector, nobody polling; no memory yet.
    pub const fn new() -> Self {
        Self {
            ports: PortTable::new(),
            vcpus: alloc::vec::Vec::new(),
        }
    }

    /// Heap bytes held (the port table and the per-vCPU vector).
    pub fn heap_bytes(&self) -> usize {
        self.ports.heap_bytes() + self.vcpus.capacity() * core::mem::size_of::<VcpuEvents>()
    }

    /// The port table.
    pub fn ports(&self) -> &PortTable {
        &self.ports
    }

    /// The port `virq` is bound to on `vcpu` (Xen's `virq_to_evtchn`).
    /// A global VIRQ is bound once, on vCPU 0, whatever vCPU
    /// `EVTCHNOP_bind_vcpu` later moved its port to (Xen keeps it in vCPU
    /// 0's `virq_to_evtchn`): it is found whatever `vcpu` says.
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<EvtchnPort> {
        self.ports
            .iter()
            .find(|(_, c)| {
                c.binding == EvtchnBinding::Virq(virq)
                    && (virq_is_global(virq) || c.notify_vcpu == vcpu)
            })
            .map(|(port, _)| port)
    }

    fn vcpu(&self, vcpu: u32) -> Option<&VcpuEvents> {
        self.vcpus.get(usize::try_from(vcpu).ok()?)
    }

    /// vCPU `vcpu`'s state, allocating all vCPUs' on first use:
    /// `-ENOENT` beyond [`MAX_VCPUS`], `-ENOMEM` if the heap is full.
    fn vcpu_mut(&mut self, vcpu: u32) -> Result<&mut VcpuEvents, Errno> {
        if self.vcpus.is_empty() {
            self.vcpus
                .try_reserve_exact(MAX_VCPUS)
                .map_err(|_| Errno::ENOMEM)?;
            self.vcpus.resize(MAX_VCPUS, VcpuEvents::default());
        }
        let i = usize::try_from(vcpu).map_err(|_| Errno::ENOENT)?;
        self.vcpus.get_mut(i).ok_or(Errno::ENOENT)
    }

    /// The vector `vcpu` registered with `HVMOP_set_evtchn_upcall_vector`.
    pub fn upcall_vector(&self, vcpu: u32) -> Option<u8> {
        self.vcpu(vcpu)?.upcall_vector
    }

    /// Records `vcpu`'s upcall vector.
    pub fn set_upcall_vector(&mut self, vcpu: u32, vector: u8) -> Result<(), Errno> {
        self.vcpu_mut(vcpu)?.upcall_vector = Some(vector);
        Ok(())
    }

    /// What `vcpu` polls, if it is in `SCHEDOP_poll`.
    pub fn poll(&self, vcpu: u32) -> Option<Poll> {
        self.vcpu(vcpu)?.poll
    }

    /// Records that `vcpu` polls (the caller blocks it).
    pub(crate) fn start_poll(&mut self, vcpu: u32, poll: Poll) -> Result<(), Errno> {
        self.vcpu_mut(vcpu)?.poll = Some(poll);
        Ok(())
    }

    /// Forgets `vcpu`'s poll.
    pub(crate) fn cancel_poll(&mut self, vcpu: u32) {
        if let Some(v) = usize::try_from(vcpu)
            .ok()
            .and_then(|i| self.vcpus.get_mut(i))
        {
            v.poll = None;
        }
    }

    /// Ends the polls `port` becoming pending may satisfy; returns the
    /// vCPUs to wake.
    fn take_pollers(&mut self, port: EvtchnPort) -> Vec<u32, MAX_VCPUS> {
        let mut woken = Vec::new();
        for (vcpu, v) in (0..).zip(self.vcpus.iter_mut()) {
            if v.poll.is_some_and(|p| p.port.is_none_or(|q| q == port)) {
                v.poll = None;
                // At most MAX_VCPUS entries: cannot fail.
                let _ = woken.push(vcpu);
            }
        }
        woken
    }

    /// The deadline of `vcpu`'s `SCHEDOP_poll`, if it polls with one.
    pub fn poll_deadline(&self, vcpu: u32) -> Option<u64> {
        let v = self.vcpus.get(usize::try_from(vcpu).ok()?)?;
        v.poll.and_then(|p| p.deadline_ns)
    }
}

/// Whether `virq` is global (Xen's `virq_is_global`): all but the
/// per-vCPU ones; x86's arch VIRQs are global.
pub fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// The run loop's check before each VMRUN of vCPU `vcpu` of `domain`: the
/// vector to inject as a virtual interrupt (SVM V_IRQ with
/// V_INTR_MASKING, so the guest takes it when its RFLAGS.IF allows), or
/// `None`, in which case any V_IRQ left from an earlier entry is to be
/// cleared.
///
/// `Some` while the vCPU's `evtchn_upcall_pending` is set and it has a
/// vector: its own from `HVMOP_set_evtchn_upcall_vector`, else the
/// domain's `HVM_PARAM_CALLBACK_IRQ` of type vector. Level-triggered, like
/// Xen's callback vector (`hvm_vcpu_has_pending_irq`): re-injected at each
/// entry until the guest clears `evtchn_upcall_pending`; as in Xen for
/// HVM guests, `evtchn_upcall_mask` does not gate it (RFLAGS.IF does).
/// Entering the vCPU also ends a `SCHEDOP_poll` it was woken from.
pub fn upcall_for_entry<M: PhysMem>(domain: &mut Domain, mem: &mut M, vcpu: u32) -> Option<u8> {
    upcall_at_entry(domain, mem, vcpu).1
}

/// [`upcall_for_entry`], with whether `evtchn_upcall_pending` was set
/// ([`upcall_pending`]) from the same read of the vCPU's `vcpu_info`:
/// the run loop needs both at each entry.
pub fn upcall_at_entry<M: PhysMem>(
    domain: &mut Domain,
    mem: &mut M,
    vcpu: u32,
) -> (bool, Option<u8>) {
    domain.events_mut().cancel_poll(vcpu);
    let (pending, _) = two_level::upcall_state(domain, mem, vcpu);
    if !pending {
        return (false, None);
    }
    let vector = domain.events().upcall_vector(vcpu).or_else(|| {
        let via = domain.xen().hvm_params.get(HVM_PARAM_CALLBACK_IRQ as usize);
        match CallbackVia::decode(via.copied().unwrap_or(0)) {
            Some(CallbackVia::Vector(v)) => Some(v),
            _ => None,
        }
    });
    (true, vector)
}

/// Whether `vcpu`'s `evtchn_upcall_pending` is set: the upcall would be
/// offered at its next entry ([`upcall_for_entry`] without its effects).
pub fn upcall_pending<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> bool {
    two_level::upcall_state(domain, mem, vcpu).0
}

/// Whether `vcpu` has events to take: `evtchn_upcall_pending` set and
/// `evtchn_upcall_mask` clear (Xen's `local_events_need_delivery` as for
/// PV vCPUs: xen-core does not see the guest's RFLAGS.IF here). A vCPU
/// about to block (HLT, `SCHEDOP_poll`) returns at once instead.
pub fn events_need_delivery<M: PhysMem>(domain: &Domain, mem: &mut M, vcpu: u32) -> bool {
    let (pending, masked) = two_level::upcall_state(domain, mem, vcpu);
    pending && !masked
}

/// Raises `virq` in `domain` (Xen's `send_guest_vcpu_virq` for a per-vCPU
/// VIRQ on `vcpu`, `send_guest_global_virq` for a global one, which uses
/// vCPU 0's binding and ignores `vcpu`). Nothing happens if the VIRQ is
/// not bound. Returns whether a port was made pending (or was already).
pub fn raise_virq<M: PhysMem>(domain: &mut Domain, mem: &mut M, virq: u32, vcpu: u32) -> bool {
    let bound_on = if virq_is_global(virq) { 0 } else { vcpu };
    match domain.events().virq_port(virq, bound_on) {
        Some(port) => {
            deliver::set_pending(domain, mem, port);
            true
        }
        None => false,
    }
}

/// Raises global `virq` in dom0, the handler of every global VIRQ (Xen's
/// `send_global_virq` with no handler set: the hardware domain). A
/// per-vCPU `virq` is ignored.
pub fn raise_global_virq<M: PhysMem>(domains: &mut DomainTable, mem: &mut M, virq: u32) -> bool {
    match domains.get_mut(DOM0) {
        Some(dom0) if virq_is_global(virq) => raise_virq(dom0, mem, virq, 0),
        _ => false,
    }
}

/// An interrupt of `gsi` arrived: makes the port its owner bound to
/// pending (waking the vCPU it notifies) through
/// [`crate::irq::Routing::interrupt`] (Xen's `send_guest_pirq`).
/// Returns whether a port was made pending (or was already).
pub fn raise_pirq<M: PhysMem>(domains: &mut DomainTable, mem: &mut M, gsi: u32) -> bool {
    let Some((dom, port)) = domains.irqs_mut().interrupt(gsi) else {
        return false;
    };
    match domains.get_mut(dom) {
        Some(domain) => {
            deliver::set_pending(domain, mem, port);
            true
        }
        None => false,
    }
}

/// Ends every poll whose timeout is due at `now_ns` (system time) and
/// wakes its vCPU (Xen's `poll_timer_fn`); the hypercall already returned
/// 0. Returns how many ended.
pub fn expire_polls(domains: &mut DomainTable, now_ns: u64) -> usize {
    let mut expired = 0;
    for d in domains.iter_mut() {
        for vcpu in 0..u32_const::<MAX_VCPUS>() {
            let due = d
                .events()
                .poll(vcpu)
                .and_then(|p| p.deadline_ns)
                .is_some_and(|t| t <= now_ns);
            if due {
                d.events_mut().cancel_poll(vcpu);
                if let Some(v) = d.vcpu_mut(vcpu) {
                    v.wake();
                }
                expired += 1;
            }
        }
    }
    expired
}
