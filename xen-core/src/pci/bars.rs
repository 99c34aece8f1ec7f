//! Which memory BARs dom0 gets mapped 1:1 (GPA = HPA) into its NPT.
//!
//! Every memory BAR of a function dom0 owns, rounded out to whole pages,
//! unless the range touches something that is not device memory for dom0
//! to have: any region of the firmware memory map (RAM with xen-core and
//! every domain's frames, ACPI tables, reserved firmware areas), low
//! memory, ECAM (dom0's configuration accesses must trap), the IO-APICs
//! and the local APIC. Such a BAR is refused (and logged by the caller):
//! firmware placed it, dom0 cannot move it, so it stays unmapped.
//! I/O BARs are not mapped here (see docs/architecture.md).

use alloc::vec::Vec;

use crate::boot_info::{MemKind, MemRegion, LOW_MEMORY};
use crate::mm::{Mfn, PhysRange, PAGE_SHIFT, PAGE_SIZE};
use crate::paging::npt::NPT_MAX_GFN;
use crate::platform::Platform;

use super::config::Bdf;
use super::{Owner, PciDevices};

/// Most pages of BARs mapped into dom0 (1 GiB): bounds the NPT frames
/// the mappings take.
pub const MAX_BAR_PAGES: u64 = 1 << 18;

/// A BAR range to map 1:1 into dom0's NPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMapping {
    /// The function.
    pub bdf: Bdf,
    /// Its BAR index.
    pub index: u8,
    /// First frame (GFN = MFN).
    pub first: Mfn,
    /// Number of pages.
    pub pages: u64,
}

/// Why a memory BAR is not mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, displaydoc::Display)]
pub enum BarRefusal {
    /// it overlaps {what} [{start:#x}, {end:#x})
    Overlaps {
        /// What it overlaps.
        what: &'static str,
        /// That range's first byte.
        start: u64,
        /// One past that range's last byte.
        end: u64,
    },
    /// it lies beyond the NPT's reach or wraps around
    OutOfReach,
    /// dom0's BARs would exceed {MAX_BAR_PAGES} pages
    OverBudget,
}

/// A refused BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedBar {
    /// The function.
    pub bdf: Bdf,
    /// Its BAR index.
    pub index: u8,
    /// Where firmware placed it.
    pub base: u64,
    /// Its size.
    pub size: u64,
    /// Why.
    pub reason: BarRefusal,
}

/// What no BAR mapping may touch: low memory, every region of the
/// firmware memory map, the ECAM regions, the IO-APICs' and the local
/// APIC's register pages.
pub fn forbidden_ranges(
    memmap: &[MemRegion],
    platform: &Platform,
) -> Vec<(PhysRange, &'static str)> {
    let page = |address: u64| PhysRange {
        start: address & !(PAGE_SIZE as u64 - 1),
        end: (address & !(PAGE_SIZE as u64 - 1)).saturating_add(PAGE_SIZE as u64),
    };
    let mut ranges = alloc::vec![(LOW_MEMORY, "low memory")];
    ranges.extend(memmap.iter().map(|r| {
        let what = match r.kind {
            MemKind::Ram => "RAM",
            MemKind::Acpi | MemKind::Nvs => "ACPI memory",
            _ => "firmware-reserved memory",
        };
        (r.range, what)
    }));
    ranges.extend(platform.ecam_regions().iter().map(|r| {
        let (start, end) = r.range();
        (PhysRange { start, end }, "ECAM")
    }));
    ranges.extend(
        platform
            .io_apics()
            .iter()
            .map(|a| (page(a.address), "an IO-APIC")),
    );
    ranges.push((page(platform.local_apic_address()), "the local APIC"));
    ranges
}

/// dom0's BAR mappings and the refused BARs. `forbidden`: the ranges no
/// BAR mapping may touch, each with a name for the log.
pub fn plan_dom0_bars(
    devices: &PciDevices,
    forbidden: &[(PhysRange, &'static str)],
) -> (Vec<BarMapping>, Vec<RefusedBar>) {
    let mut mapped = Vec::new();
    let mut refused = Vec::new();
    let mut budget = MAX_BAR_PAGES;
    let dom0_bars = devices
        .functions()
        .iter()
        .filter(|f| f.owner == Owner::Dom0)
        .flat_map(|f| {
            f.bars
                .iter()
                .filter(|b| b.is_memory())
                .map(move |b| (f.bdf, b))
        });
    for (bdf, bar) in dom0_bars {
        let refuse = |reason| RefusedBar {
            bdf,
            index: bar.index,
            base: bar.base,
            size: bar.size,
            reason,
        };
        match check(bar.base, bar.size, forbidden) {
            Err(reason) => refused.push(refuse(reason)),
            Ok((_, pages)) if pages > budget => refused.push(refuse(BarRefusal::OverBudget)),
            Ok((first, pages)) => {
                budget -= pages;
                mapped.push(BarMapping {
                    bdf,
                    index: bar.index,
                    first,
                    pages,
                });
            }
        }
    }
    (mapped, refused)
}

/// The whole pages `[base, base + size)` covers, if none is forbidden.
fn check(
    base: u64,
    size: u64,
    forbidden: &[(PhysRange, &'static str)],
) -> Result<(Mfn, u64), BarRefusal> {
    let page = PAGE_SIZE as u64;
    let start = base & !(page - 1);
    let end = base
        .checked_add(size)
        .and_then(|e| e.checked_next_multiple_of(page))
        .ok_or(BarRefusal::OutOfReach)?;
    if size == 0 || (end >> PAGE_SHIFT) - 1 > NPT_MAX_GFN {
        return Err(BarRefusal::OutOfReach);
    }
    let range = PhysRange { start, end };
    if let Some((r, what)) = forbidden.iter().find(|(r, _)| r.overlaps(&range)) {
        return Err(BarRefusal::Overlaps {
            what,
            start: r.start,
            end: r.end,
        });
    }
    Ok((Mfn(start >> PAGE_SHIFT), (end - start) >> PAGE_SHIFT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::enumerate::enumerate;
    use crate::pci::fake::{bdf, FakeConfig, FakeFunction};
    use crate::pci::tests::{ecam, q35};

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    /// q35 with 256 MiB: RAM, ECAM, the IO-APIC and the local APIC.
    fn forbidden() -> [(PhysRange, &'static str); 4] {
        [
            (range(0, 0x1000_0000), "RAM"),
            (range(0xb000_0000, 0xc000_0000), "ECAM"),
            (range(0xfec0_0000, 0xfec0_1000), "IO-APIC"),
            (range(0xfee0_0000, 0xfee0_1000), "local APIC"),
        ]
    }

    fn devices(cfg: &FakeConfig) -> PciDevices {
        PciDevices::new(enumerate(cfg, &[ecam(1)]).0)
    }

    #[test]
    fn forbidden_ranges_cover_memory_map_ecam_and_apics() {
        let memmap = [
            MemRegion {
                range: range(0x10_0000, 0x1000_0000),
                kind: MemKind::Ram,
            },
            MemRegion {
                range: range(0xfeff_c000, 0xff00_0000),
                kind: MemKind::Reserved,
            },
        ];
        let mut platform = Platform::new();
        platform.add_ecam(ecam(0xff)).unwrap();
        let io_apic = crate::platform::IoApic {
            id: 0,
            address: 0xfec0_0000,
            gsi_base: 0,
        };
        platform.add_io_apic(io_apic).unwrap();
        let names: Vec<&str> = forbidden_ranges(&memmap, &platform)
            .iter()
            .map(|(_, what)| *what)
            .collect();
        assert_eq!(
            names,
            [
                "low memory",
                "RAM",
                "firmware-reserved memory",
                "ECAM",
                "an IO-APIC",
                "the local APIC"
            ]
        );
        let ranges = forbidden_ranges(&memmap, &platform);
        assert_eq!(ranges[5].0, range(0xfee0_0000, 0xfee0_1000));
    }

    #[test]
    fn every_memory_bar_of_dom0_is_mapped_io_bars_are_not() {
        let cfg = q35();
        let (mapped, refused) = plan_dom0_bars(&devices(&cfg), &forbidden());
        let got: Vec<(Bdf, u8, u64, u64)> = mapped
            .iter()
            .map(|m| (m.bdf, m.index, m.first.0, m.pages))
            .collect();
        assert_eq!(
            got,
            [
                (bdf(0, 2, 0), 1, 0xfeb80, 1),
                (bdf(0, 2, 0), 4, 0xfe000, 4),
                (bdf(0, 0x1f, 2), 5, 0xfeb81, 1),
                (bdf(1, 0, 0), 4, 0x800000, 4),
            ]
        );
        assert!(refused.is_empty());
    }

    #[test]
    fn bars_over_ram_ecam_or_apics_are_refused() {
        let cfg = FakeConfig::default();
        let evil = FakeFunction::endpoint(0x1af4, 0x1041, 2, 0, 1)
            .mem32(0, 0x0010_0000, 0x1000)
            .mem32(1, 0xb000_0000, 0x1000)
            .mem32(2, 0xfee0_0000, 0x1000)
            .mem32(3, 0xfebf_f000, 0x2000);
        cfg.add(bdf(0, 4, 0), evil);
        let (mapped, refused) = plan_dom0_bars(&devices(&cfg), &forbidden());
        assert_eq!(mapped.len(), 1, "only BAR3, in the hole");
        let reasons: Vec<(u8, &str)> = refused
            .iter()
            .map(|r| match r.reason {
                BarRefusal::Overlaps { what, .. } => (r.index, what),
                _ => (r.index, "other"),
            })
            .collect();
        assert_eq!(reasons, [(0, "RAM"), (1, "ECAM"), (2, "local APIC")]);
    }

    #[test]
    fn a_small_bar_is_rounded_to_its_page_and_checked_as_such() {
        let cfg = FakeConfig::default();
        // 16 bytes, but its page touches the IO-APIC's.
        let f = FakeFunction::endpoint(0x8086, 0x1234, 2, 0, 0).mem32(0, 0xfec0_0ff0, 0x10);
        cfg.add(bdf(0, 5, 0), f);
        let (mapped, refused) = plan_dom0_bars(&devices(&cfg), &forbidden());
        assert!(mapped.is_empty());
        assert_eq!(refused.len(), 1);
    }

    #[test]
    fn functions_xen_core_keeps_get_no_mapping_and_the_budget_holds() {
        let cfg = q35();
        let mut functions = devices(&cfg).functions().to_vec();
        for f in &mut functions {
            f.owner = Owner::Hypervisor;
        }
        let (mapped, _) = plan_dom0_bars(&PciDevices::new(functions), &forbidden());
        assert!(mapped.is_empty());
        let huge = FakeConfig::default();
        let f = FakeFunction::endpoint(0x8086, 0x1234, 3, 0, 0)
            .mem64(0, 0x100_0000_0000, 1 << 31)
            .mem64(2, 0x200_0000_0000, 1 << 20);
        huge.add(bdf(0, 1, 0), f);
        let (mapped, refused) = plan_dom0_bars(&devices(&huge), &forbidden());
        assert_eq!(refused[0].reason, BarRefusal::OverBudget);
        assert_eq!(mapped.len(), 1, "the smaller BAR still fits");
    }
}
