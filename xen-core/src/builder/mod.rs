//! The PVH domain builder, for dom0, boot-time domUs and the toolstack.
//!
//! Loads a kernel ELF ([`elf_image`]) into a domain's memory, lays out the
//! boot information after it (`struct hvm_start_info`, module list, memory
//! map, command lines, modules; `xen/include/public/arch-x86/hvm/
//! start_info.h`) and returns the PVH entry state: 32-bit protected mode,
//! paging off, EBX = start info GPA (Xen `docs/misc/pvh.pandoc`).
//!
//! Boot information layout, from the first page boundary after the kernel:
//! start info, module list, memory map, NUL-terminated command lines, then
//! each module on its own page boundary.

#![forbid(unsafe_code)]

pub mod elf_image;

use abi::xen::start_info::{
    HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_RAM,
};
use heapless::Vec;
use zerocopy::{Immutable, IntoBytes};

use crate::domain::vcpu::VcpuEntryState;
use crate::guest_mem::{GuestFault, GuestPhys};
use crate::mm::{PhysMem, PAGE_SIZE};

/// Largest kernel image accepted, in bytes.
pub const MAX_IMAGE_SIZE: usize = 64 << 20;
/// Boot modules a domain may be given.
pub const MAX_MODULES: usize = 8;
/// Longest command line (kernel or module), in bytes without the NUL
/// (Xen's `MAX_GUEST_CMDLINE`).
pub const MAX_CMDLINE: usize = 1024;
/// Entries in the memory map handed to the guest.
pub const MAX_MEMMAP_ENTRIES: usize = 16;

/// Where the builder puts bytes: a domain's guest physical memory.
pub trait GuestLoadTarget {
    /// Copies `bytes` to `gpa`, all or nothing.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestFault>;
    /// Zeroes `len` bytes at `gpa`, all or nothing.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestFault>;
}

impl<M: PhysMem> GuestLoadTarget for GuestPhys<'_, M> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestFault> {
        GuestPhys::write(self, gpa, bytes)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestFault> {
        GuestPhys::zero(self, gpa, len)
    }
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
}

/// Why a build failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The image is not a little-endian ELF file.
    NotElf,
    /// The ELF machine is neither x86 (3) nor x86-64 (62).
    WrongMachine(u16),
    /// The ELF is not an executable (ET_EXEC).
    NotExecutable,
    /// The image has no XEN_ELFNOTE_PHYS32_ENTRY note.
    NoPvhNote,
    /// The PVH entry note is not 4 or 8 bytes, or not below 4 GiB.
    BadPvhNote,
    /// The entry point is not inside a loaded segment.
    EntryOutsideImage,
    /// The image has no non-empty PT_LOAD segment.
    NoLoadSegment,
    /// More PT_LOAD segments than [`elf_image::MAX_LOAD_SEGMENTS`].
    TooManySegments,
    /// A segment's file bytes lie beyond the end of the file.
    SegmentTruncated,
    /// A segment's p_filesz exceeds its p_memsz.
    FileSizeAboveMemSize,
    /// A segment's address plus size wraps around.
    SegmentWraps,
    /// Two segments overlap.
    SegmentsOverlap,
    /// A segment is not inside the domain's RAM.
    SegmentOutsideRam {
        /// Segment start.
        gpa: u64,
        /// Segment size in memory.
        memsz: u64,
    },
    /// The image is larger than [`MAX_IMAGE_SIZE`].
    ImageTooLarge,
    /// A command line is too long or contains a NUL.
    BadCmdline,
    /// More modules than [`MAX_MODULES`].
    TooManyModules,
    /// More memory-map entries than [`MAX_MEMMAP_ENTRIES`].
    TooManyMemmapEntries,
    /// The boot information and modules do not fit in RAM after the
    /// kernel, or the start info would be above 4 GiB.
    NoRoomForBootInfo,
    /// Writing the domain's memory failed.
    GuestWrite(GuestFault),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotElf => f.write_str("not a little-endian ELF image"),
            Self::WrongMachine(m) => write!(f, "ELF machine {m} is not x86"),
            Self::NotExecutable => f.write_str("ELF is not an executable"),
            Self::NoPvhNote => f.write_str("no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel"),
            Self::BadPvhNote => f.write_str("PVH entry note is malformed or above 4 GiB"),
            Self::EntryOutsideImage => f.write_str("PVH entry point outside the loaded image"),
            Self::NoLoadSegment => f.write_str("no loadable segment"),
            Self::TooManySegments => {
                write!(
                    f,
                    "more than {} loadable segments",
                    elf_image::MAX_LOAD_SEGMENTS
                )
            }
            Self::SegmentTruncated => f.write_str("segment extends beyond the file"),
            Self::FileSizeAboveMemSize => f.write_str("segment p_filesz > p_memsz"),
            Self::SegmentWraps => f.write_str("segment wraps around the address space"),
            Self::SegmentsOverlap => f.write_str("segments overlap"),
            Self::SegmentOutsideRam { gpa, memsz } => {
                write!(
                    f,
                    "segment at {gpa:#x} ({memsz:#x} bytes) outside the domain's RAM"
                )
            }
            Self::ImageTooLarge => write!(f, "image larger than {MAX_IMAGE_SIZE} bytes"),
            Self::BadCmdline => write!(f, "command line longer than {MAX_CMDLINE} or with NUL"),
            Self::TooManyModules => write!(f, "more than {MAX_MODULES} modules"),
            Self::TooManyMemmapEntries => {
                write!(f, "more than {MAX_MEMMAP_ENTRIES} memory-map entries")
            }
            Self::NoRoomForBootInfo => {
                f.write_str("no room in RAM below 4 GiB for the boot information")
            }
            Self::GuestWrite(e) => write!(f, "writing the domain's memory: {e}"),
        }
    }
}

impl From<GuestFault> for BuildError {
    fn from(e: GuestFault) -> Self {
        Self::GuestWrite(e)
    }
}

fn check_cmdline(s: &str) -> Result<(), BuildError> {
    if s.len() > MAX_CMDLINE || s.bytes().any(|b| b == 0) {
        return Err(BuildError::BadCmdline);
    }
    Ok(())
}

fn align_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE_SIZE as u64 - 1)? & !(PAGE_SIZE as u64 - 1))
}

/// Loads `image` and its boot information into a domain through `target`;
/// returns vCPU 0's entry state.
pub fn build(
    image: &[u8],
    cfg: &BuildConfig,
    target: &mut impl GuestLoadTarget,
) -> Result<VcpuEntryState, BuildError> {
    if image.len() > MAX_IMAGE_SIZE {
        return Err(BuildError::ImageTooLarge);
    }
    let kernel = elf_image::parse(image)?;
    check_cmdline(cfg.cmdline)?;
    if cfg.modules.len() > MAX_MODULES {
        return Err(BuildError::TooManyModules);
    }
    for m in cfg.modules {
        check_cmdline(m.cmdline)?;
    }
    let memmap = memory_map(cfg)?;
    for s in &kernel.segments {
        if !cfg.ram.iter().any(|r| r.holds(s.gpa, s.end())) {
            return Err(BuildError::SegmentOutsideRam {
                gpa: s.gpa,
                memsz: s.memsz,
            });
        }
    }
    let kernel_end = kernel.segments.iter().map(|s| s.end()).max().unwrap_or(0);
    let layout = BootLayout::new(kernel_end, cfg, memmap.len())?;
    for s in &kernel.segments {
        target.write(s.gpa, s.file)?;
        target.zero(s.gpa + s.file.len() as u64, s.memsz - s.file.len() as u64)?;
    }
    layout.write(cfg, &memmap, target)?;
    // Both fit in 32 bits: checked by elf_image and BootLayout.
    Ok(VcpuEntryState::pvh(kernel.entry, layout.start_info as u32))
}

/// The memory map [`build`] puts in the start info: RAM ranges and extra
/// entries, sorted by address. Store it in the domain too
/// (`XenState::set_memory_map`) so `XENMEM_memory_map` returns it.
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

/// Guest physical addresses of the boot information.
struct BootLayout {
    start_info: u64,
    modlist: u64,
    memmap: u64,
    /// First command line; the others follow, each NUL-terminated.
    strings: u64,
    /// First module, page-aligned; the others follow page-aligned.
    modules: u64,
}

impl BootLayout {
    /// Places everything after `kernel_end`, in the RAM range holding it,
    /// below 4 GiB.
    fn new(kernel_end: u64, cfg: &BuildConfig, memmap_len: usize) -> Result<Self, BuildError> {
        let no_room = BuildError::NoRoomForBootInfo;
        // EBX is 32 bits; the sums below stay far from overflowing.
        let start_info = align_up(kernel_end)
            .filter(|a| *a < 1 << 32)
            .ok_or(no_room)?;
        let modlist = start_info + size_of::<HvmStartInfo>() as u64;
        let memmap = modlist + (cfg.modules.len() * size_of::<HvmModlistEntry>()) as u64;
        let strings = memmap + (memmap_len * size_of::<HvmMemmapEntry>()) as u64;
        let strings_len: u64 = core::iter::once(cfg.cmdline)
            .chain(cfg.modules.iter().map(|m| m.cmdline))
            .map(|s| s.len() as u64 + 1)
            .sum();
        let modules = align_up(strings + strings_len).ok_or(no_room)?;
        let mut end = modules;
        for m in cfg.modules {
            end = end
                .checked_add(m.data.len() as u64)
                .and_then(align_up)
                .ok_or(no_room)?;
        }
        let fits = cfg.ram.iter().any(|r| r.holds(start_info, end));
        if !fits {
            return Err(no_room);
        }
        Ok(Self {
            start_info,
            modlist,
            memmap,
            strings,
            modules,
        })
    }

    fn write(
        &self,
        cfg: &BuildConfig,
        memmap: &[HvmMemmapEntry],
        target: &mut impl GuestLoadTarget,
    ) -> Result<(), BuildError> {
        let mut strings = StringArea { next: self.strings };
        let cmdline_paddr = strings.put(target, cfg.cmdline)?;
        let mut module_gpa = self.modules;
        for (i, m) in cfg.modules.iter().enumerate() {
            target.write(module_gpa, m.data)?;
            let entry = HvmModlistEntry {
                paddr: module_gpa,
                size: m.data.len() as u64,
                cmdline_paddr: strings.put(target, m.cmdline)?,
                reserved: 0,
            };
            write_struct(
                target,
                self.modlist + (i * size_of::<HvmModlistEntry>()) as u64,
                &entry,
            )?;
            module_gpa = align_up(module_gpa + m.data.len() as u64).unwrap_or(module_gpa);
        }
        target.write(self.memmap, memmap.as_bytes())?;
        let info = HvmStartInfo {
            magic: HVM_START_MAGIC_VALUE,
            version: 1,
            flags: 0,
            nr_modules: cfg.modules.len() as u32,
            modlist_paddr: if cfg.modules.is_empty() {
                0
            } else {
                self.modlist
            },
            cmdline_paddr,
            rsdp_paddr: 0,
            memmap_paddr: self.memmap,
            memmap_entries: memmap.len() as u32,
            reserved: 0,
        };
        write_struct(target, self.start_info, &info)
    }
}

/// Where the next NUL-terminated string goes.
struct StringArea {
    next: u64,
}

impl StringArea {
    /// Writes `s` with its NUL; returns its GPA, or 0 for an empty string.
    fn put(&mut self, target: &mut impl GuestLoadTarget, s: &str) -> Result<u64, BuildError> {
        if s.is_empty() {
            return Ok(0);
        }
        let gpa = self.next;
        target.write(gpa, s.as_bytes())?;
        target.write(gpa + s.len() as u64, &[0])?;
        self.next += s.len() as u64 + 1;
        Ok(gpa)
    }
}

fn write_struct<T: IntoBytes + Immutable>(
    target: &mut impl GuestLoadTarget,
    gpa: u64,
    value: &T,
) -> Result<(), BuildError> {
    Ok(target.write(gpa, value.as_bytes())?)
}

#[cfg(test)]
pub(crate) mod tests;
