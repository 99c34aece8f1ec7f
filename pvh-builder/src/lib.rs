//! The PVH domain builder, for boot-time domains (xen-core) and the dom0
//! toolstack.
//!
//! Loads a kernel ELF ([`elf_image`]) into a domain's memory, lays out the
//! boot information after it (`struct hvm_start_info`, module list, memory
//! map, command lines, modules; `xen/include/public/arch-x86/hvm/
//! start_info.h`) and returns the PVH entry facts ([`PvhEntry`]): vCPU 0
//! starts in 32-bit protected mode, paging off, EBX = start info GPA (Xen
//! `docs/misc/pvh.pandoc`).
//!
//! The builder never touches memory itself: it writes through a
//! [`GuestLoadTarget`] (xen-core: the domain's p2m; the toolstack: foreign
//! frames mapped into dom0).
//!
//! Boot information layout, from the first page boundary after the kernel:
//! start info, module list, memory map, NUL-terminated command lines, then
//! each module on its own page boundary.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "test-images"))]
extern crate alloc;

pub mod acpi;
mod boot_layout;
pub mod elf_image;
mod error;
mod scrubbed;
pub mod stream;
#[cfg(any(test, feature = "test-images"))]
pub mod test_images;
#[cfg(test)]
// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod tests;

use abi::xen::start_info::{HvmMemmapEntry, XEN_HVM_MEMMAP_TYPE_RAM};
use heapless::Vec;

use boot_layout::{BootLayout, ModuleSlot};
pub use error::{BuildError, LoadFault};
pub use scrubbed::{Scrubbed, MAX_TRACKED_WRITES};

/// Largest kernel image accepted, in bytes.
pub const MAX_IMAGE_SIZE: usize = 64 << 20;
/// Boot modules a domain may be given.
pub const MAX_MODULES: usize = 8;
/// The ABI limits the builder enforces, from [`abi`]: the command-line
/// length and the memory-map entry count.
pub use abi::xen::memory::MAX_MEMMAP_ENTRIES;
pub use abi::xen::start_info::MAX_CMDLINE;

/// Where the builder puts bytes: a domain's guest physical memory.
pub trait GuestLoadTarget {
    /// Copies `bytes` to `gpa`, all or nothing.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault>;
    /// Zeroes `len` bytes at `gpa`, all or nothing.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault>;
}

/// A half-open range `[start, end)` of guest physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl GpaRange {
    fn holds(&self, start: u64, end: u64) -> bool {
        self.start <= start && end <= self.end
    }
}

/// A boot module: its bytes and command line.
#[derive(Clone, Copy, Debug)]
pub struct BootModule<'a> {
    /// Contents.
    pub data: &'a [u8],
    /// Command line (may be empty).
    pub cmdline: &'a str,
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildConfig<'a> {
    /// The domain's RAM (populated GPA ranges), reported as RAM in the map.
    pub ram: &'a [GpaRange],
    /// Further memory-map entries (e.g. reserved regions).
    pub extra_memmap: &'a [HvmMemmapEntry],
    /// Kernel command line (may be empty).
    pub cmdline: &'a str,
    /// Boot modules.
    pub modules: &'a [BootModule<'a>],
    /// vCPUs to describe in ACPI tables ([`acpi`]), 0 for none. The
    /// tables are written only where RAM holds [`acpi::ACPI_AREA`] and no
    /// kernel segment does; the start info's `rsdp_paddr` says if they were.
    pub acpi_vcpus: u32,
}

/// How vCPU 0 enters the built kernel (Xen `docs/misc/pvh.pandoc`): 32-bit
/// protected mode, paging off, flat segments, at `entry` with EBX =
/// `start_info_gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvhEntry {
    /// EIP: the `XEN_ELFNOTE_PHYS32_ENTRY` note's value.
    pub entry: u32,
    /// EBX: GPA of the `hvm_start_info`.
    pub start_info_gpa: u32,
}

fn check_cmdline(s: &str) -> Result<(), BuildError> {
    if s.len() > MAX_CMDLINE || s.bytes().any(|b| b == 0) {
        return Err(BuildError::BadCmdline);
    }
    Ok(())
}

/// Loads `image` and its boot information into a domain through `target`;
/// returns vCPU 0's entry. Everything is checked before the first write, so
/// a refused image or configuration writes nothing; a [`LoadFault`] midway
/// may leave the domain's memory partly written.
pub fn build(
    image: &[u8],
    cfg: &BuildConfig,
    target: &mut impl GuestLoadTarget,
) -> Result<PvhEntry, BuildError> {
    if image.len() > MAX_IMAGE_SIZE {
        return Err(BuildError::ImageTooLarge);
    }
    let kernel = elf_image::parse(image)?;
    if cfg.modules.len() > MAX_MODULES {
        return Err(BuildError::TooManyModules);
    }
    // At most MAX_MODULES, checked above.
    let modules: Vec<ModuleSlot, MAX_MODULES> = cfg
        .modules
        .iter()
        .map(|m| ModuleSlot {
            len: m.data.len() as u64,
            cmdline: m.cmdline,
            data: Some(m.data),
        })
        .collect();
    let segments = kernel.segments.iter().map(|s| (s.gpa, s.end()));
    let (memmap, layout) = plan_boot_info(cfg, &modules, segments)?;
    for s in &kernel.segments {
        target.write(s.gpa, s.file)?;
        target.zero(s.gpa + s.file.len() as u64, s.memsz - s.file.len() as u64)?;
    }
    let segments = kernel.segments.iter().map(|s| (s.gpa, s.end()));
    let rsdp = acpi_tables(segments, cfg, target)?;
    layout.write(cfg, &modules, &memmap, rsdp, target)?;
    Ok(PvhEntry {
        entry: kernel.entry,
        start_info_gpa: layout.start_info_gpa(),
    })
}

/// Checks the command lines, the memory map and that every kernel
/// segment (`(start, end)` GPAs) lies in RAM; the memory map and where
/// the boot information goes.
fn plan_boot_info(
    cfg: &BuildConfig,
    modules: &[ModuleSlot],
    segments: impl Iterator<Item = (u64, u64)> + Clone,
) -> Result<(Vec<HvmMemmapEntry, MAX_MEMMAP_ENTRIES>, BootLayout), BuildError> {
    check_cmdline(cfg.cmdline)?;
    for m in modules {
        check_cmdline(m.cmdline)?;
    }
    let memmap = memory_map(cfg)?;
    for (start, end) in segments.clone() {
        if !cfg.ram.iter().any(|r| r.holds(start, end)) {
            return Err(BuildError::SegmentOutsideRam {
                gpa: start,
                memsz: end - start,
            });
        }
    }
    let kernel_end = segments.map(|(_, end)| end).max().unwrap_or(0);
    let layout = BootLayout::new(kernel_end, cfg, modules, memmap.len())?;
    Ok((memmap, layout))
}

/// Writes the ACPI tables if asked and there is room (no kernel segment,
/// `(start, end)` GPAs, in the way); the RSDP's GPA, or 0.
fn acpi_tables(
    mut segments: impl Iterator<Item = (u64, u64)>,
    cfg: &BuildConfig,
    target: &mut impl GuestLoadTarget,
) -> Result<u64, BuildError> {
    let (start, end) = (
        acpi::ACPI_AREA,
        acpi::ACPI_AREA + acpi::ACPI_AREA_SIZE as u64,
    );
    let in_ram = cfg.ram.iter().any(|r| r.holds(start, end));
    let taken = segments.any(|(s, e)| s < end && start < e);
    if cfg.acpi_vcpus == 0 || !in_ram || taken {
        return Ok(0);
    }
    target.write(start, &acpi::tables(cfg.acpi_vcpus))?;
    Ok(start)
}

/// The memory map [`build`] puts in the start info: RAM ranges and extra
/// entries, sorted by address. Store it in the domain too (xen-core:
/// `XenState::set_memory_map`) so `XENMEM_memory_map` returns it.
pub fn memory_map(
    cfg: &BuildConfig,
) -> Result<Vec<HvmMemmapEntry, MAX_MEMMAP_ENTRIES>, BuildError> {
    let ram = cfg.ram.iter().map(|r| HvmMemmapEntry {
        addr: r.start,
        size: r.end.saturating_sub(r.start),
        kind: XEN_HVM_MEMMAP_TYPE_RAM,
        reserved: 0,
    });
    let mut map = Vec::new();
    for e in ram.chain(cfg.extra_memmap.iter().copied()) {
        map.push(e).map_err(|_| BuildError::TooManyMemmapEntries)?;
    }
    map.sort_unstable_by_key(|e| e.addr);
    Ok(map)
}
