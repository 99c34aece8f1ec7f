//! The `EVTCHNOP_*` operations on already-decoded, already-authorised
//! arguments (the hypercall layer resolves `DOMID_SELF` and checks who may
//! act for whom). Semantics and error codes of Xen's
//! `xen/common/event_channel.c`; any `port` and `vcpu` value is fine.
//!
//! Invariant: port `p` of domain `a` is `Interdomain { dom: b, port: q }`
//! exactly when port `q` of `b` is `Interdomain { dom: a, port: p }`, and
//! both domains exist. Closing either end, or killing either domain,
//! leaves the other end unbound and offered to the closer, as Xen does; no
//! port is ever interdomain with a domain that is gone.

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnBinding, EvtchnPort, NR_VIRQS};

use super::{deliver, two_level, virq_is_global, Channel, EventChannels};
use crate::domain::table::DomainTable;
use crate::domain::{Domain, DomainState};
use crate::mm::PhysMem;

/// A free port of `domain` (Xen's `get_free_port`): `-EINVAL` once it is
/// dying, `-ENOSPC` when full, `-ENOMEM` when the heap is.
fn free_port(domain: &mut Domain) -> Result<EvtchnPort, Errno> {
    if domain.state() == DomainState::Dying {
        return Err(Errno::EINVAL);
    }
    domain.events_mut().ports.free_port()
}

/// Valid port `port` of `domain`: `-EINVAL` otherwise.
fn channel(domain: &Domain, port: EvtchnPort) -> Result<Channel, Errno> {
    domain
        .events()
        .ports()
        .get(port)
        .copied()
        .ok_or(Errno::EINVAL)
}

fn domain_mut(domains: &mut DomainTable, domid: DomId) -> Result<&mut Domain, Errno> {
    domains.get_mut(domid).ok_or(Errno::ESRCH)
}

/// `EVTCHNOP_alloc_unbound`: a port of `dom` that `remote` may bind.
/// `remote` need not exist (Xen does not check it).
pub fn alloc_unbound(
    domains: &mut DomainTable,
    dom: DomId,
    remote: DomId,
) -> Result<EvtchnPort, Errno> {
    let d = domain_mut(domains, dom)?;
    let port = free_port(d)?;
    let channel = Channel {
        binding: EvtchnBinding::Unbound { dom: remote },
        notify_vcpu: 0,
    };
    d.events_mut().ports.bind(port, channel);
    Ok(port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new port of `local` to
/// `remote`'s port `remote_port`, which must be unbound and offered to
/// `local` (`-EINVAL`); `-ESRCH` if `remote` does not exist. As Xen does,
/// the new local port starts pending: notifications sent to the unbound
/// end were dropped.
pub fn bind_interdomain<M: PhysMem>(
    domains: &mut DomainTable,
    mem: &mut M,
    local: DomId,
    remote: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, Errno> {
    if domains.get(remote).is_none() {
        return Err(Errno::ESRCH);
    }
    let local_port = free_port(domain_mut(domains, local)?)?;
    let offered = channel(domain_mut(domains, remote)?, remote_port)?;
    if offered.binding != (EvtchnBinding::Unbound { dom: local }) {
        return Err(Errno::EINVAL);
    }
    let local_end = Channel {
        binding: EvtchnBinding::Interdomain {
            dom: remote,
            port: remote_port,
        },
        notify_vcpu: 0,
    };
    domain_mut(domains, local)?
        .events_mut()
        .ports
        .bind(local_port, local_end);
    let remote_end = Channel {
        binding: EvtchnBinding::Interdomain {
            dom: local,
            port: local_port,
        },
        ..offered
    };
    domain_mut(domains, remote)?
        .events_mut()
        .ports
        .bind(remote_port, remote_end);
    deliver::set_pending(domain_mut(domains, local)?, mem, local_port);
    Ok(local_port)
}

/// `EVTCHNOP_bind_virq`: a port for `virq` delivered to `vcpu`. `-EINVAL`
/// for `virq` ≥ `NR_VIRQS` or a global VIRQ on a vCPU other than 0,
/// `-ENOENT` for no such vCPU, `-EEXIST` if bound already.
pub fn bind_virq(domain: &mut Domain, virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
    if virq >= NR_VIRQS || (virq_is_global(virq) && vcpu != 0) {
        return Err(Errno::EINVAL);
    }
    if domain.vcpu(vcpu).is_none() {
        return Err(Errno::ENOENT);
    }
    if domain.events().virq_port(virq, vcpu).is_some() {
        return Err(Errno::EEXIST);
    }
    let port = free_port(domain)?;
    let channel = Channel {
        binding: EvtchnBinding::Virq(virq),
        notify_vcpu: vcpu,
    };
    domain.events_mut().ports.bind(port, channel);
    Ok(port)
}

/// `EVTCHNOP_bind_pirq`: a port of `dom` for its pirq `pirq` (Xen's
/// `evtchn_bind_pirq` with `pirq_guest_bind`), notifying vCPU 0.
/// `-EINVAL` beyond `MAX_PIRQS` or for a pirq not mapped, `-EEXIST` if
/// it is bound already, `-ENOSPC`/`-ENOMEM` for no free port. The GSI's
/// pin is unmasked. The sharing flag is accepted and has no effect: a
/// GSI belongs to one domain.
pub fn bind_pirq(domains: &mut DomainTable, dom: DomId, pirq: u32) -> Result<EvtchnPort, Errno> {
    domains.irqs().check_bind(dom, pirq)?;
    let port = free_port(domain_mut(domains, dom)?)?;
    domains.irqs_mut().bind(dom, pirq, port)?;
    let channel = Channel {
        binding: EvtchnBinding::Pirq(pirq),
        notify_vcpu: 0,
    };
    domain_mut(domains, dom)?
        .events_mut()
        .ports
        .bind(port, channel);
    Ok(port)
}

/// `EVTCHNOP_bind_ipi`: a port that notifies `vcpu` of its own domain
/// (`-ENOENT` for no such vCPU).
pub fn bind_ipi(domain: &mut Domain, vcpu: u32) -> Result<EvtchnPort, Errno> {
    if domain.vcpu(vcpu).is_none() {
        return Err(Errno::ENOENT);
    }
    let port = free_port(domain)?;
    let channel = Channel {
        binding: EvtchnBinding::Ipi,
        notify_vcpu: vcpu,
    };
    domain.events_mut().ports.bind(port, channel);
    Ok(port)
}

/// `EVTCHNOP_bind_vcpu` (Xen's `evtchn_bind_vcpu`): `domain`'s port
/// `port` notifies `vcpu` from now on. Checked in Xen's order: no such
/// vCPU is `-ENOENT`, a port beyond the table `-EINVAL`; then only an
/// unbound, interdomain, global-VIRQ or pirq port may move, anything else
/// (free, IPI, per-vCPU VIRQ) is `-EINVAL`. A pirq port's host interrupt
/// keeps its routing: delivery goes through the port's notify vCPU and
/// the run loop kicks that vCPU's pCPU. An event already pending stays
/// where it was signalled (the old vCPU's selector), as in Xen's 2-level
/// ABI; Linux masks the port around the rebind, and the unmask delivers
/// it to the new vCPU ([`deliver::unmask`]).
pub fn bind_vcpu(domain: &mut Domain, port: EvtchnPort, vcpu: u32) -> Result<(), Errno> {
    if domain.vcpu(vcpu).is_none() {
        return Err(Errno::ENOENT);
    }
    match channel(domain, port)?.binding {
        EvtchnBinding::Unbound { .. }
        | EvtchnBinding::Interdomain { .. }
        | EvtchnBinding::Pirq(_) => {}
        EvtchnBinding::Virq(virq) if virq_is_global(virq) => {}
        _ => return Err(Errno::EINVAL),
    }
    if let Some(c) = domain.events_mut().ports.get_mut(port) {
        c.notify_vcpu = vcpu;
    }
    Ok(())
}

/// `EVTCHNOP_send` on `dom`'s port `port`: an interdomain port makes its
/// remote end pending, an IPI port itself; on an unbound port the
/// notification is silently dropped (returns 0, as Xen's `evtchn_send`);
/// any other port is `-EINVAL`.
pub fn send<M: PhysMem>(
    domains: &mut DomainTable,
    mem: &mut M,
    dom: DomId,
    port: EvtchnPort,
) -> Result<(), Errno> {
    let (target, target_port) = match channel(domains.get(dom).ok_or(Errno::ESRCH)?, port)?.binding
    {
        EvtchnBinding::Interdomain { dom: r, port: p } => (r, p),
        EvtchnBinding::Ipi => (dom, port),
        EvtchnBinding::Unbound { .. } => return Ok(()),
        _ => return Err(Errno::EINVAL),
    };
    deliver::set_pending(domain_mut(domains, target)?, mem, target_port);
    Ok(())
}

/// `EVTCHNOP_close` of `dom`'s port `port`: `-EINVAL` if it is not bound.
/// The remote end of an interdomain port becomes unbound, offered to
/// `dom`; a VIRQ port unbinds the VIRQ; a pirq port unbinds the pirq
/// (its pin masked, no EOI awaited). The port's pending bit is cleared
/// (Xen's `free_evtchn`).
pub fn close<M: PhysMem>(
    domains: &mut DomainTable,
    mem: &mut M,
    dom: DomId,
    port: EvtchnPort,
) -> Result<(), Errno> {
    let binding = channel(domains.get(dom).ok_or(Errno::ESRCH)?, port)?.binding;
    if binding == EvtchnBinding::Closed {
        return Err(Errno::EINVAL);
    }
    unlink(domains, dom, binding);
    if let EvtchnBinding::Pirq(pirq) = binding {
        domains.irqs_mut().unbind(dom, pirq);
    }
    if let Some(d) = domains.get_mut(dom) {
        two_level::clear_pending(d, mem, port);
        d.events_mut().ports.free(port);
    }
    Ok(())
}

/// The peer of a port of `dom` bound to `binding`, if interdomain, becomes
/// unbound toward `dom`.
fn unlink(domains: &mut DomainTable, dom: DomId, binding: EvtchnBinding) {
    if let EvtchnBinding::Interdomain { dom: r, port: p } = binding {
        if let Some(c) = domains
            .get_mut(r)
            .and_then(|peer| peer.events_mut().ports.get_mut(p))
        {
            c.binding = EvtchnBinding::Unbound { dom };
        }
    }
}

/// `EVTCHNOP_status`: what `dom`'s port `port` is bound to (`Closed` for a
/// free port and for port 0) and the vCPU it notifies; `-EINVAL` beyond
/// the table.
pub fn status(domains: &DomainTable, dom: DomId, port: EvtchnPort) -> Result<Channel, Errno> {
    channel(domains.get(dom).ok_or(Errno::ESRCH)?, port)
}

/// `EVTCHNOP_unmask` of `domain`'s port `port` (any valid port, bound or
/// not, as in Xen): clears its mask bit and delivers it if it is pending.
pub fn unmask<M: PhysMem>(domain: &mut Domain, mem: &mut M, port: EvtchnPort) -> Result<(), Errno> {
    channel(domain, port)?;
    deliver::unmask(domain, mem, port);
    Ok(())
}

/// Closes every port of `dom` (Xen's `evtchn_destroy`): interdomain peers
/// become unbound toward `dom`, and `dom`'s table is freed. Its own
/// shared-info bits are left alone: the domain is going away.
pub fn close_all(domains: &mut DomainTable, dom: DomId) {
    let Some(d) = domains.get_mut(dom) else {
        return;
    };
    let events = core::mem::replace(d.events_mut(), EventChannels::new());
    for (_, c) in events.ports().iter() {
        unlink(domains, dom, c.binding);
    }
}
