//! Physical interrupts as event channels: Xen's pirqs
//! (`xen/arch/x86/irq.c`, `physdev.c`; `public/physdev.h`).
//!
//! A GSI (global system interrupt: an IO-APIC input) is mapped into a
//! domain's pirq space (`PHYSDEVOP_map_pirq`), the pirq bound to a port
//! (`EVTCHNOP_bind_pirq`), and each interrupt of the GSI then makes that
//! port pending. A level-triggered GSI stays masked at its IO-APIC pin
//! from the interrupt until the domain acknowledges it
//! (`PHYSDEVOP_eoi`, Xen's `ACKTYPE_UNMASK`); an edge-triggered one is
//! acknowledged at once and never masked (`ACKTYPE_NONE`).
//!
//! [`Routing`] is the machine's whole interrupt state, portable and
//! host-tested: which domain's pirq each GSI is mapped to, which port
//! each pirq is bound to, which level GSI waits for its EOI. It decides
//! what every IO-APIC pin should hold ([`PinState`]); the arch layer
//! programs the pins it marks changed ([`Routing::take_changed`]) and
//! masks a level pin itself when it fires (in the interrupt handler,
//! before the run loop hears of it), which [`Routing::interrupt`] then
//! records. A pin is unmasked exactly while its GSI is mapped, bound and
//! not waiting for an EOI.
//!
//! Only the hardware domain maps GSIs, and only into its own pirq space
//! (the hypercall layer checks); the state is kept per domain all the
//! same, so a domain's operations can never reach another's pirqs.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

#[cfg(test)]
// Tests index the fixtures they built and cast fixture constants chosen
// to fit; a bad index or value is a failed test.
#[allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::physdev::XENIRQSTAT_NEEDS_EOI;

use crate::platform::{IoApic, Platform};

/// ISA IRQs 0-15: GSIs 0-15 unless an interrupt source override moves
/// them (Xen's `NR_ISA_IRQS`). Edge-triggered, active high by default.
pub const NR_ISA_IRQS: u32 = 16;
/// GSIs xen-core routes, each to a vector of its own: the 24 inputs of
/// an 82093AA plus room for a second IO-APIC.
pub const MAX_GSIS: u32 = 48;
/// Pirqs per domain (Xen's `nr_pirqs`): a pirq is `0..MAX_PIRQS`.
pub const MAX_PIRQS: u32 = 256;

pub use crate::platform::{Polarity, Trigger};

/// A GSI's signalling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsiConfig {
    /// Edge or level.
    pub trigger: Trigger,
    /// High or low.
    pub polarity: Polarity,
}

impl GsiConfig {
    /// The signalling of `gsi` when no override says otherwise: ISA IRQs
    /// (below [`NR_ISA_IRQS`]) edge, active high; the others (PCI INTx)
    /// level, active low (ACPI spec., "Interrupt Source Override").
    pub fn default_for(gsi: u32) -> Self {
        if gsi < NR_ISA_IRQS {
            Self {
                trigger: Trigger::Edge,
                polarity: Polarity::ActiveHigh,
            }
        } else {
            Self {
                trigger: Trigger::Level,
                polarity: Polarity::ActiveLow,
            }
        }
    }
}

/// The signalling of every GSI the platform's IO-APICs have, by GSI
/// (`None` for a GSI no IO-APIC serves), at most [`MAX_GSIS`]:
/// [`GsiConfig::default_for`], then what `intx_mode(gsi)` says for a GSI
/// a PCI function's INTx is routed to (the DSDT's `_PRT` link), then each
/// ISA interrupt source override applied to the GSI it names.
/// `pins(io_apic)` is its input count.
pub fn platform_gsis(
    platform: &Platform,
    pins: impl Fn(&IoApic) -> u32,
    intx_mode: impl Fn(u32) -> Option<(Trigger, Polarity)>,
) -> Vec<Option<GsiConfig>> {
    let nr = platform
        .io_apics()
        .iter()
        .map(|a| a.gsi_base.saturating_add(pins(a)))
        .max()
        .unwrap_or(0)
        .min(MAX_GSIS);
    let mut gsis: Vec<Option<GsiConfig>> = (0..nr)
        .map(|gsi| {
            platform.io_apic_for_gsi(gsi, &pins)?;
            Some(match intx_mode(gsi) {
                Some((trigger, polarity)) => GsiConfig { trigger, polarity },
                None => GsiConfig::default_for(gsi),
            })
        })
        .collect();
    for o in platform.isa_overrides() {
        if let Some(Some(config)) = usize::try_from(o.gsi).ok().and_then(|i| gsis.get_mut(i)) {
            *config = GsiConfig {
                trigger: o.trigger,
                polarity: o.polarity,
            };
        }
    }
    gsis
}

/// What an IO-APIC pin should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinState {
    /// The GSI.
    pub gsi: u32,
    /// Its signalling.
    pub config: GsiConfig,
    /// Masked: nobody takes its interrupts now.
    pub masked: bool,
}

/// One GSI's state (Xen's `irq_desc` with its `irq_guest_action_t`).
#[derive(Clone, Copy, Debug, Default)]
struct Gsi {
    /// `None` for a GSI the platform does not have.
    config: Option<GsiConfig>,
    /// The domain and pirq it is mapped to.
    owner: Option<(DomId, u32)>,
    /// The owner's pirq is bound to a port (Xen: a guest action exists).
    bound: bool,
    /// Level-triggered, delivered, masked until the owner's EOI.
    in_flight: bool,
    /// The pin must be reprogrammed.
    changed: bool,
}

impl Gsi {
    fn masked(&self) -> bool {
        !(self.owner.is_some() && self.bound && !self.in_flight)
    }

    fn level(&self) -> bool {
        self.config.is_some_and(|c| c.trigger == Trigger::Level)
    }
}

/// One pirq of a domain (Xen's `struct pirq`): what it is mapped to and
/// bound to. It exists while either is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pirq {
    gsi: Option<u32>,
    port: Option<EvtchnPort>,
}

/// The machine's physical-interrupt routing.
#[derive(Debug, Default)]
pub struct Routing {
    gsis: Vec<Gsi>,
    /// By (domain, pirq); at most [`MAX_PIRQS`] per domain by construction.
    pirqs: BTreeMap<(DomId, u32), Pirq>,
    /// A pin may have been marked changed since the last
    /// [`Self::take_changed`] (set on every write access to a pin): the
    /// run loop asks on each scheduling pass, and the walk over every
    /// GSI is skipped while nothing was written.
    maybe_changed: bool,
}

impl Routing {
    /// No GSIs until [`Self::set_platform`].
    pub const fn new() -> Self {
        Self {
            gsis: Vec::new(),
            pirqs: BTreeMap::new(),
            maybe_changed: false,
        }
    }

    /// Declares the platform's GSIs `0..configs.len()` (at most
    /// [`MAX_GSIS`]; `None` for one that does not exist), all masked.
    /// Every pin is marked changed, so the first programming masks them.
    pub fn set_platform(&mut self, configs: &[Option<GsiConfig>]) {
        self.gsis = configs
            .iter()
            .take(MAX_GSIS as usize)
            .map(|&config| Gsi {
                config,
                changed: config.is_some(),
                ..Gsi::default()
            })
            .collect();
        self.maybe_changed = true;
        self.pirqs.clear();
    }

    /// GSIs `0..nr_gsis()` may exist (Xen's `nr_irqs_gsi`).
    pub fn nr_gsis(&self) -> u32 {
        u32::try_from(self.gsis.len()).unwrap_or(MAX_GSIS)
    }

    fn gsi(&self, gsi: u32) -> Option<&Gsi> {
        self.gsis.get(usize::try_from(gsi).ok()?)
    }

    fn gsi_mut(&mut self, gsi: u32) -> Option<&mut Gsi> {
        self.maybe_changed = true;
        self.gsis.get_mut(usize::try_from(gsi).ok()?)
    }

    /// What the pin of `gsi` should hold, if the GSI exists.
    pub fn pin(&self, gsi: u32) -> Option<PinState> {
        let g = self.gsi(gsi)?;
        Some(PinState {
            gsi,
            config: g.config?,
            masked: g.masked(),
        })
    }

    /// The pins changed since the last call, to program; each is then
    /// considered programmed (the caller takes them all).
    pub fn take_changed(&mut self) -> impl Iterator<Item = PinState> + '_ {
        let pins = if core::mem::take(&mut self.maybe_changed) {
            &mut self.gsis[..]
        } else {
            &mut []
        };
        (0..).zip(pins.iter_mut()).filter_map(|(gsi, g)| {
            let changed = core::mem::take(&mut g.changed);
            Some(PinState {
                gsi,
                config: g.config.filter(|_| changed)?,
                masked: g.masked(),
            })
        })
    }

    /// The GSI `dom`'s pirq `pirq` is mapped to.
    pub fn pirq_gsi(&self, dom: DomId, pirq: u32) -> Option<u32> {
        self.pirqs.get(&(dom, pirq))?.gsi
    }

    /// The port `dom`'s pirq `pirq` is bound to.
    pub fn pirq_port(&self, dom: DomId, pirq: u32) -> Option<EvtchnPort> {
        self.pirqs.get(&(dom, pirq))?.port
    }

    /// The pirqs of `dom` that exist, in order.
    pub fn pirqs_of(&self, dom: DomId) -> impl Iterator<Item = u32> + '_ {
        self.pirqs
            .range((dom, 0)..=(dom, u32::MAX))
            .map(|(k, _)| k.1)
    }

    /// `PHYSDEVOP_map_pirq` of type GSI for `dom` (already authorised):
    /// maps GSI `index` to pirq `pirq`, or to a free pirq for -1 (Xen's
    /// `allocate_and_map_gsi_pirq`, `allocate_pirq`, `map_domain_pirq`).
    /// Returns the pirq. Errors: `-EINVAL` for a GSI the platform lacks
    /// or a pirq out of range, `-EEXIST` if the GSI is mapped to another
    /// pirq of `dom`, `-EBUSY` if another domain has it, `-ENOSPC` if no
    /// pirq is free. As in Xen, asking for a pirq that is mapped to
    /// another GSI succeeds and changes nothing.
    pub fn map_gsi(&mut self, dom: DomId, index: i32, pirq: i32) -> Result<u32, Errno> {
        let gsi = u32::try_from(index).map_err(|_| Errno::EINVAL)?;
        let g = *self
            .gsi(gsi)
            .filter(|g| g.config.is_some())
            .ok_or(Errno::EINVAL)?;
        let current = match g.owner {
            Some((owner, p)) if owner == dom => Some(p),
            Some(_) => return Err(Errno::EBUSY),
            None => None,
        };
        let pirq = match (u32::try_from(pirq), current) {
            (Err(_), Some(p)) => p,
            (Err(_), None) => self.free_pirq(dom).ok_or(Errno::ENOSPC)?,
            (Ok(p), Some(c)) if p != c => return Err(Errno::EEXIST),
            (Ok(p), _) => p,
        };
        if pirq >= MAX_PIRQS {
            return Err(Errno::EINVAL);
        }
        let entry = self.pirqs.entry((dom, pirq)).or_default();
        if entry.gsi.is_some() {
            // Mapped already: to this GSI (nothing to do) or, as Xen's
            // map_domain_pirq tolerates, to another one.
            return Ok(pirq);
        }
        entry.gsi = Some(gsi);
        let bound = entry.port.is_some();
        if let Some(g) = self.gsi_mut(gsi) {
            g.owner = Some((dom, pirq));
            g.bound = bound;
            g.in_flight = false;
            g.changed = true;
        }
        Ok(pirq)
    }

    /// Xen's `get_free_pirq` for a GSI: the first pirq from
    /// [`NR_ISA_IRQS`] up to the GSI count not mapped, else the highest
    /// one above the GSIs.
    fn free_pirq(&self, dom: DomId) -> Option<u32> {
        let free = |p: &u32| self.pirq_gsi(dom, *p).is_none();
        (NR_ISA_IRQS..self.nr_gsis())
            .find(free)
            .or_else(|| (self.nr_gsis()..MAX_PIRQS).rev().find(free))
    }

    /// `PHYSDEVOP_unmap_pirq` for `dom` (already authorised): `-EINVAL`
    /// for a pirq out of range or not mapped. A bound pirq is unbound
    /// from its GSI first (Xen's `pirq_guest_force_unbind`): its port
    /// stays bound to the pirq but hears nothing more; the pin is masked
    /// and waits for no EOI.
    pub fn unmap(&mut self, dom: DomId, pirq: i32) -> Result<(), Errno> {
        let pirq = u32::try_from(pirq)
            .ok()
            .filter(|&p| p < MAX_PIRQS)
            .ok_or(Errno::EINVAL)?;
        let entry = self.pirqs.get_mut(&(dom, pirq)).ok_or(Errno::EINVAL)?;
        let gsi = entry.gsi.take().ok_or(Errno::EINVAL)?;
        if entry.port.is_none() {
            self.pirqs.remove(&(dom, pirq));
        }
        self.release_gsi(gsi);
        Ok(())
    }

    fn release_gsi(&mut self, gsi: u32) {
        if let Some(g) = self.gsi_mut(gsi) {
            g.owner = None;
            g.bound = false;
            g.in_flight = false;
            g.changed = true;
        }
    }

    /// The checks of `EVTCHNOP_bind_pirq` before a port is taken:
    /// `-EINVAL` beyond [`MAX_PIRQS`], `-EEXIST` if the pirq is bound.
    pub fn check_bind(&self, dom: DomId, pirq: u32) -> Result<(), Errno> {
        if pirq >= MAX_PIRQS {
            return Err(Errno::EINVAL);
        }
        if self.pirq_port(dom, pirq).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Binds `dom`'s pirq to `port` (Xen's `pirq_guest_bind`): `-EINVAL`
    /// if it is not mapped (or [`Self::check_bind`] fails). The pin is
    /// unmasked.
    pub fn bind(&mut self, dom: DomId, pirq: u32, port: EvtchnPort) -> Result<(), Errno> {
        self.check_bind(dom, pirq)?;
        let entry = self.pirqs.get_mut(&(dom, pirq)).ok_or(Errno::EINVAL)?;
        let gsi = entry.gsi.ok_or(Errno::EINVAL)?;
        entry.port = Some(port);
        if let Some(g) = self.gsi_mut(gsi) {
            g.bound = true;
            g.in_flight = false;
            g.changed = true;
        }
        Ok(())
    }

    /// The port bound to `dom`'s pirq is closed (Xen's
    /// `pirq_guest_unbind`): an interrupt waiting for its EOI is
    /// forgotten and the pin masked (nobody takes it now).
    pub fn unbind(&mut self, dom: DomId, pirq: u32) {
        let Some(entry) = self.pirqs.get_mut(&(dom, pirq)) else {
            return;
        };
        entry.port = None;
        let gsi = entry.gsi;
        match gsi.and_then(|gsi| self.gsi_mut(gsi)) {
            Some(g) => {
                g.bound = false;
                g.in_flight = false;
                g.changed = true;
            }
            None => {
                self.pirqs.remove(&(dom, pirq));
            }
        }
    }

    /// `PHYSDEVOP_eoi` of `dom`'s pirq: `-EINVAL` beyond [`MAX_PIRQS`] or
    /// for a pirq that does not exist. A level GSI waiting for this EOI is
    /// unmasked; otherwise nothing changes (Xen's `pirq_guest_eoi`).
    pub fn eoi(&mut self, dom: DomId, pirq: u32) -> Result<(), Errno> {
        if pirq >= MAX_PIRQS {
            return Err(Errno::EINVAL);
        }
        let entry = *self.pirqs.get(&(dom, pirq)).ok_or(Errno::EINVAL)?;
        if let Some(g) = entry.gsi.and_then(|gsi| self.gsi_mut(gsi)) {
            if g.in_flight {
                g.in_flight = false;
                g.changed = true;
            }
        }
        Ok(())
    }

    /// `PHYSDEVOP_irq_status_query` of `dom`'s pirq: the `XENIRQSTAT_*`
    /// flags; `-EINVAL` beyond [`MAX_PIRQS`] or if it is not mapped.
    /// `XENIRQSTAT_needs_eoi` is set for a level-triggered GSI only (what
    /// Xen's EOI map tells a guest per IRQ: its `ACKTYPE_UNMASK`; Xen's
    /// status query sets it for every IRQ, for guests without the map).
    /// Never shared.
    pub fn status_query(&self, dom: DomId, pirq: u32) -> Result<u32, Errno> {
        if pirq >= MAX_PIRQS {
            return Err(Errno::EINVAL);
        }
        let gsi = self.pirq_gsi(dom, pirq).ok_or(Errno::EINVAL)?;
        Ok(if self.gsi(gsi).is_some_and(Gsi::level) {
            XENIRQSTAT_NEEDS_EOI
        } else {
            0
        })
    }

    /// An interrupt of `gsi` arrived (the arch layer masked a level pin
    /// already): the port to make pending in which domain, if any. A
    /// level GSI then waits for its owner's EOI. An interrupt nobody is
    /// bound to (one raised before its unbind took effect) is dropped and
    /// the pin reprogrammed as it should be.
    pub fn interrupt(&mut self, gsi: u32) -> Option<(DomId, EvtchnPort)> {
        let g = *self.gsi(gsi)?;
        let target = g
            .owner
            .filter(|_| g.bound)
            .and_then(|(dom, pirq)| Some((dom, self.pirq_port(dom, pirq)?)));
        let g = self.gsi_mut(gsi)?;
        match target {
            Some(_) if g.level() => g.in_flight = true,
            Some(_) => {}
            None => g.changed = true,
        }
        target
    }

    /// Everything of `dom` goes (its death; Xen's `free_domain_pirqs`):
    /// every pirq unmapped and unbound, their pins masked.
    pub fn release_domain(&mut self, dom: DomId) {
        let pirqs: Vec<(u32, Pirq)> = self
            .pirqs
            .range((dom, 0)..=(dom, u32::MAX))
            .map(|(k, v)| (k.1, *v))
            .collect();
        for (pirq, entry) in pirqs {
            self.pirqs.remove(&(dom, pirq));
            if let Some(gsi) = entry.gsi {
                self.release_gsi(gsi);
            }
        }
    }
}
