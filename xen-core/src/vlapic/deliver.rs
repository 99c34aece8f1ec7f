//! Delivering an IPI a vCPU's APIC issued (Xen's `vlapic_ipi` and
//! `vlapic_accept_irq`) to the vCPUs of its own domain. A destination
//! no vCPU of the domain answers to reaches nobody: a guest cannot name
//! another domain's vCPU, and nothing goes to the real APIC.

use super::regs::{DM_FIXED, DM_INIT, DM_LOWEST, DM_STARTUP, INT_LEVELTRIG};
use super::Ipi;
use crate::domain::Domain;
use crate::logger::GUEST;

/// What an IPI did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiOutcome {
    /// Its vector was made pending on this many vCPUs (0: no vCPU of the
    /// domain matched the destination).
    Delivered(u32),
    /// INIT or STARTUP: not served (secondary vCPUs are started with
    /// `VCPUOP_initialise`/`VCPUOP_up`).
    StartupNotServed,
    /// A delivery mode xen-core does not emulate (NMI, SMI, ExtINT...).
    ModeNotServed,
}

/// Delivers `ipi` from vCPU `source` of `domain`.
pub fn deliver_ipi(domain: &mut Domain, source: u32, ipi: Ipi) -> IpiOutcome {
    let outcome = match ipi.delivery_mode() {
        DM_FIXED => IpiOutcome::Delivered(fixed(domain, source, ipi)),
        DM_LOWEST => IpiOutcome::Delivered(lowest(domain, source, ipi)),
        DM_INIT | DM_STARTUP => IpiOutcome::StartupNotServed,
        _ => IpiOutcome::ModeNotServed,
    };
    if outcome != IpiOutcome::Delivered(1) && ipi.icr & super::regs::SHORT_MASK == 0 {
        log::info!(
            target: GUEST,
            "d{}v{source}: IPI {:#x} to APIC id {:#x}: {outcome:?}",
            domain.domid(),
            ipi.icr,
            ipi.dest
        );
    }
    outcome
}

/// Fixed delivery: every matching vCPU gets the vector.
fn fixed(domain: &mut Domain, source: u32, ipi: Ipi) -> u32 {
    let level = ipi.icr & INT_LEVELTRIG != 0;
    let mut count = 0;
    for id in 0..domain.nr_vcpus() {
        let Some(vcpu) = domain.vcpu_mut(id) else {
            continue;
        };
        let Some(apic) = vcpu.vlapic_mut() else {
            continue;
        };
        if apic.matches(&ipi, id == source) {
            apic.set_irq(ipi.vector(), level);
            vcpu.wake();
            count += 1;
        }
    }
    count
}

/// Lowest-priority delivery: the enabled matching vCPU with the lowest
/// PPR (Xen's `vlapic_lowest_prio`, without its round-robin start); an
/// APIC never used is software-disabled, so never a target.
fn lowest(domain: &mut Domain, source: u32, ipi: Ipi) -> u32 {
    let target = domain
        .vcpus()
        .iter()
        .filter_map(|v| Some((v.id(), v.vlapic()?)))
        .filter(|(id, a)| a.enabled() && a.matches(&ipi, *id == source))
        .min_by_key(|(_, a)| a.ppr())
        .map(|(id, _)| id);
    let Some(vcpu) = target.and_then(|id| domain.vcpu_mut(id)) else {
        return 0;
    };
    if let Some(apic) = vcpu.vlapic_mut() {
        apic.set_irq(ipi.vector(), false);
    }
    vcpu.wake();
    1
}
