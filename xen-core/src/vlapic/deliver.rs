//! Delivering an IPI a vCPU's APIC issued (Xen's `vlapic_ipi` and
//! `vlapic_accept_irq`) to the vCPUs of its own domain. A destination
//! no vCPU of the domain answers to reaches nobody: a guest cannot name
//! another domain's vCPU, and nothing goes to the real APIC.
//!
//! INIT and STARTUP (Xen's `vlapic_init_sipi_action`) reach every
//! matching vCPU of the domain, the sender included, whatever the state
//! of their APICs: INIT takes an initialised vCPU down into
//! wait-for-SIPI ([`Domain::vcpu_init`]); STARTUP starts a vCPU that
//! waits for one in real mode at `vector << 12` ([`Domain::vcpu_sipi`])
//! and is ignored by any other, so INIT-SIPI-SIPI starts it once. A
//! level-triggered INIT de-assert does nothing (Xen: "no work on INIT
//! de-assert for P4-type APIC").
//!
//! NMI (Xen's `vlapic_accept_irq`, `APIC_DM_NMI`) reaches every
//! matching vCPU whatever its APIC's state, as INIT does: it is latched
//! in [`Vcpu::accept_nmi`] (one at a time) and injected at the vCPU's
//! next entry, before any maskable interrupt; the vector field is
//! ignored (Linux writes 0).

use super::regs::{DM_FIXED, DM_INIT, DM_LOWEST, DM_NMI, DM_STARTUP, INT_ASSERT, INT_LEVELTRIG};
use super::Ipi;
use crate::domain::vcpu::Vcpu;
use crate::domain::Domain;
use crate::logger::GUEST;

/// What an IPI did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiOutcome {
    /// Its vector was made pending on this many vCPUs (0: no vCPU of the
    /// domain matched the destination).
    Delivered(u32),
    /// NMI: this many vCPUs matched (each has one latched now, new or
    /// merged into one that waited).
    Nmi(u32),
    /// INIT: this many vCPUs were reset into wait-for-SIPI (0: none
    /// matched, or all were reset already, or it was a de-assert).
    InitReset(u32),
    /// STARTUP: this many vCPUs waiting for SIPI were started (0: none
    /// matched or waited, e.g. the second SIPI of INIT-SIPI-SIPI).
    Started(u32),
    /// A delivery mode xen-core drops: SMI and remote read (Xen ignores
    /// them too), ExtINT and the reserved one (Xen crashes the domain).
    ModeNotServed,
}

/// Delivers `ipi` from vCPU `source` of `domain`.
pub fn deliver_ipi(domain: &mut Domain, source: u32, ipi: Ipi) -> IpiOutcome {
    let outcome = match ipi.delivery_mode() {
        DM_FIXED => IpiOutcome::Delivered(fixed(domain, source, ipi)),
        DM_LOWEST => IpiOutcome::Delivered(lowest(domain, source, ipi)),
        DM_INIT => IpiOutcome::InitReset(init(domain, source, ipi)),
        DM_STARTUP => IpiOutcome::Started(startup(domain, source, ipi)),
        DM_NMI => IpiOutcome::Nmi(nmi(domain, source, ipi)),
        _ => IpiOutcome::ModeNotServed,
    };
    let one = matches!(
        outcome,
        IpiOutcome::Delivered(1)
            | IpiOutcome::InitReset(1)
            | IpiOutcome::Started(1)
            | IpiOutcome::Nmi(1)
    );
    if !one && ipi.icr & super::regs::SHORT_MASK == 0 {
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

/// Runs `act` on each vCPU of `domain` that `ipi` from `source` names,
/// in id order as Xen's `for_each_vcpu` (a match reads the vCPU's APIC
/// id, so its APIC is allocated if need be); counts those it acted on.
fn each_target(
    domain: &mut Domain,
    source: u32,
    ipi: Ipi,
    mut act: impl FnMut(&mut Domain, u32) -> bool,
) -> u32 {
    let mut count = 0;
    for id in 0..domain.nr_vcpus() {
        let hit = domain
            .vcpu_mut(id)
            .and_then(Vcpu::vlapic_mut)
            .is_some_and(|apic| apic.matches(&ipi, id == source));
        if hit && act(domain, id) {
            count += 1;
        }
    }
    count
}

/// INIT: each matching initialised vCPU is reset to wait for SIPI.
fn init(domain: &mut Domain, source: u32, ipi: Ipi) -> u32 {
    if ipi.icr & (INT_LEVELTRIG | INT_ASSERT) == INT_LEVELTRIG {
        return 0;
    }
    each_target(domain, source, ipi, |d, id| {
        matches!(d.vcpu_init(id), Ok(Some(_)))
    })
}

/// NMI: each matching vCPU gets one latched ([`Vcpu::accept_nmi`]).
fn nmi(domain: &mut Domain, source: u32, ipi: Ipi) -> u32 {
    each_target(domain, source, ipi, |d, id| {
        d.vcpu_mut(id).map(Vcpu::accept_nmi).is_some()
    })
}

/// STARTUP: each matching vCPU that waits for SIPI starts at the page
/// the vector names.
fn startup(domain: &mut Domain, source: u32, ipi: Ipi) -> u32 {
    each_target(domain, source, ipi, |d, id| {
        d.vcpu_sipi(id, ipi.vector()) == Ok(true)
    })
}

#[cfg(test)]
mod tests;
