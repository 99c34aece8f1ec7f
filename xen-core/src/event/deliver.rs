//! Marking a port pending and getting the news to a vCPU (Xen's
//! `evtchn_2l_set_pending`, `evtchn_2l_unmask`, `vcpu_mark_events_pending`
//! and `evtchn_check_pollers`).
//!
//! A port that becomes pending while unmasked sets its word's bit in the
//! notified vCPU's `evtchn_pending_sel`; the first such bit sets
//! `evtchn_upcall_pending` and wakes the vCPU if it is blocked (Xen's
//! `vcpu_kick`). A port already pending changes nothing: no second
//! delivery. The run loop turns `evtchn_upcall_pending` into a virtual
//! interrupt ([`super::upcall_for_entry`]).

use abi::xen::event_channel::EvtchnPort;

use super::two_level as l2;
use crate::domain::Domain;
use crate::mm::PhysMem;

/// `evtchn_port_set_pending` for valid port `port` of `domain`, delivered
/// to the vCPU the port notifies.
pub(super) fn set_pending<M: PhysMem>(domain: &mut Domain, mem: &mut M, port: EvtchnPort) {
    let Some(vcpu) = domain.events().ports().get(port).map(|c| c.notify_vcpu) else {
        return;
    };
    if l2::test_and_set_pending(domain, mem, port) {
        return;
    }
    domain.record_event(vcpu);
    if !l2::is_masked(domain, mem, port) && !l2::test_and_set_selector(domain, mem, vcpu, port) {
        mark_events_pending(domain, mem, vcpu);
    }
    wake_pollers(domain, port);
}

/// `evtchn_2l_unmask`: clears the mask bit; a port that was masked and is
/// pending is delivered now.
pub(super) fn unmask<M: PhysMem>(domain: &mut Domain, mem: &mut M, port: EvtchnPort) {
    let Some(vcpu) = domain.events().ports().get(port).map(|c| c.notify_vcpu) else {
        return;
    };
    if l2::test_and_clear_mask(domain, mem, port)
        && l2::is_pending(domain, mem, port)
        && !l2::test_and_set_selector(domain, mem, vcpu, port)
    {
        mark_events_pending(domain, mem, vcpu);
    }
}

/// `vcpu_mark_events_pending`: the first pending event raises the upcall
/// and wakes the vCPU.
fn mark_events_pending<M: PhysMem>(domain: &mut Domain, mem: &mut M, vcpu: u32) {
    if !l2::test_and_set_upcall(domain, mem, vcpu) {
        if let Some(v) = domain.vcpu_mut(vcpu) {
            v.wake();
        }
    }
}

/// `evtchn_check_pollers`: wakes each vCPU polling on `port` or on several
/// ports (it re-checks them itself).
fn wake_pollers(domain: &mut Domain, port: EvtchnPort) {
    for vcpu in domain.events_mut().take_pollers(port) {
        if let Some(v) = domain.vcpu_mut(vcpu) {
            v.wake();
        }
    }
}
