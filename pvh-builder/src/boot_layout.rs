//! Where the boot information goes and how it is written: `hvm_start_info`,
//! module list, memory map, command lines and modules
//! (`xen/include/public/arch-x86/hvm/start_info.h`).

use abi::xen::start_info::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC_VALUE};
use abi::xen::PAGE_SIZE;
use zerocopy::{Immutable, IntoBytes};

use crate::{BuildConfig, BuildError, GuestLoadTarget};

/// A boot module as the layout sees it: its length and command line,
/// and its bytes unless they are streamed into place separately
/// ([`crate::stream`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModuleSlot<'a> {
    /// Length in bytes.
    pub len: u64,
    /// Command line (may be empty).
    pub cmdline: &'a str,
    /// The bytes to write, or `None` if they arrive another way.
    pub data: Option<&'a [u8]>,
}

fn align_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE_SIZE as u64 - 1)? & !(PAGE_SIZE as u64 - 1))
}

/// Guest physical addresses of the boot information.
#[derive(Debug)]
pub(crate) struct BootLayout {
    /// Below 4 GiB: the guest gets it in EBX.
    start_info: u32,
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
    pub(crate) fn new(
        kernel_end: u64,
        cfg: &BuildConfig,
        modules: &[ModuleSlot],
        memmap_len: usize,
    ) -> Result<Self, BuildError> {
        let no_room = BuildError::NoRoomForBootInfo;
        let start_info = align_up(kernel_end)
            .and_then(|a| u32::try_from(a).ok())
            .ok_or(no_room)?;
        // Below 4 GiB plus bounded sizes: the sums cannot overflow.
        let modlist = u64::from(start_info) + size_of::<HvmStartInfo>() as u64;
        let memmap = modlist + (modules.len() * size_of::<HvmModlistEntry>()) as u64;
        let strings = memmap + (memmap_len * size_of::<HvmMemmapEntry>()) as u64;
        let strings_len: u64 = core::iter::once(cfg.cmdline)
            .chain(modules.iter().map(|m| m.cmdline))
            .map(|s| s.len() as u64 + 1)
            .sum();
        let first_module = align_up(strings + strings_len).ok_or(no_room)?;
        let mut end = first_module;
        for m in modules {
            end = end.checked_add(m.len).and_then(align_up).ok_or(no_room)?;
        }
        let fits = cfg.ram.iter().any(|r| r.holds(u64::from(start_info), end));
        if !fits {
            return Err(no_room);
        }
        Ok(Self {
            start_info,
            modlist,
            memmap,
            strings,
            modules: first_module,
        })
    }

    /// GPA of the `hvm_start_info`.
    pub(crate) fn start_info_gpa(&self) -> u32 {
        self.start_info
    }

    /// GPA of the first module (page-aligned).
    pub(crate) fn first_module_gpa(&self) -> u64 {
        self.modules
    }

    pub(crate) fn write(
        &self,
        cfg: &BuildConfig,
        modules: &[ModuleSlot],
        memmap: &[HvmMemmapEntry],
        rsdp_paddr: u64,
        target: &mut impl GuestLoadTarget,
    ) -> Result<(), BuildError> {
        let mut strings = StringArea { next: self.strings };
        let cmdline_paddr = strings.put(target, cfg.cmdline)?;
        let mut module_gpa = self.modules;
        for (i, m) in modules.iter().enumerate() {
            if let Some(data) = m.data {
                target.write(module_gpa, data)?;
            }
            let entry = HvmModlistEntry {
                paddr: module_gpa,
                size: m.len,
                cmdline_paddr: strings.put(target, m.cmdline)?,
                reserved: 0,
            };
            write_struct(
                target,
                self.modlist + (i * size_of::<HvmModlistEntry>()) as u64,
                &entry,
            )?;
            module_gpa = align_up(module_gpa + m.len).unwrap_or(module_gpa);
        }
        target.write(self.memmap, memmap.as_bytes())?;
        let info = HvmStartInfo {
            magic: HVM_START_MAGIC_VALUE,
            version: 1,
            flags: 0,
            nr_modules: u32::try_from(modules.len()).map_err(|_| BuildError::TooManyModules)?,
            modlist_paddr: if modules.is_empty() { 0 } else { self.modlist },
            cmdline_paddr,
            rsdp_paddr,
            memmap_paddr: self.memmap,
            memmap_entries: u32::try_from(memmap.len())
                .map_err(|_| BuildError::TooManyMemmapEntries)?,
            reserved: 0,
        };
        write_struct(target, self.start_info.into(), &info)
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
