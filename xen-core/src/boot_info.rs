//! What the boot loader tells xen-core: `struct hvm_start_info` with its
//! memory map, module list and command line
//! (`xen/include/public/arch-x86/hvm/start_info.h`), read and checked.
//!
//! The loader is trusted less than it looks: every count is bounded, every
//! address range checked for wrap-around, modules must lie in RAM and not
//! overlap. Parsing reads through [`PhysReader`], so host tests feed it a
//! fake memory image.

use core::fmt;
use core::mem::{offset_of, size_of};

use abi::xen::start_info::{
    HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_ACPI,
    XEN_HVM_MEMMAP_TYPE_DISABLED, XEN_HVM_MEMMAP_TYPE_NVS, XEN_HVM_MEMMAP_TYPE_PMEM,
    XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, XEN_HVM_MEMMAP_TYPE_UNUSABLE,
};

use crate::mm::PhysRange;

/// Most memory map entries accepted (QEMU gives 4-6).
pub const MAX_MEMMAP_ENTRIES: usize = 128;
/// Most boot modules accepted (QEMU's `-initrd` gives one).
pub const MAX_BOOT_MODULES: usize = 8;
/// Longest command line accepted, in bytes without the NUL.
pub const MAX_CMDLINE_LEN: usize = 1024;
/// Memory below 1 MiB (real-mode vectors, BIOS data, option ROMs) is never
/// given out by xen-core.
pub const LOW_MEMORY: PhysRange = PhysRange {
    start: 0,
    end: 1 << 20,
};

/// Byte access to host physical memory during boot.
pub trait PhysReader {
    /// Copies `buf.len()` bytes starting at host physical address `pa`;
    /// fails if any of them lies outside readable memory.
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreadable>;
}

/// A [`PhysReader`] was asked for bytes outside readable memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable;

/// Why the start info was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// A structure lies (partly) outside readable memory.
    Unreadable { what: &'static str, pa: u64 },
    /// `magic` is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// Version 0 has no memory map.
    NoMemoryMap(u32),
    /// More memory map entries than [`MAX_MEMMAP_ENTRIES`].
    TooManyMemmapEntries(u32),
    /// More modules than [`MAX_BOOT_MODULES`].
    TooManyModules(u32),
    /// Memory map entry `index` wraps around the address space.
    MemmapEntryWraps { index: usize },
    /// Memory map entries `a` and `b` overlap.
    MemmapOverlap { a: usize, b: usize },
    /// Module `index` wraps around the address space.
    ModuleWraps { index: usize },
    /// Module `index` does not lie inside one RAM region.
    ModuleOutsideRam { index: usize },
    /// Modules `a` and `b` overlap.
    ModulesOverlap { a: usize, b: usize },
    /// No NUL within [`MAX_CMDLINE_LEN`] bytes.
    CmdlineTooLong,
    /// The command line is not UTF-8.
    CmdlineNotUtf8,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { what, pa } => write!(f, "{what} at {pa:#x} is outside memory"),
            Self::BadMagic(m) => write!(f, "bad magic {m:#x}"),
            Self::NoMemoryMap(v) => write!(f, "version {v} has no memory map"),
            Self::TooManyMemmapEntries(n) => {
                write!(f, "{n} memory map entries (at most {MAX_MEMMAP_ENTRIES})")
            }
            Self::TooManyModules(n) => write!(f, "{n} modules (at most {MAX_BOOT_MODULES})"),
            Self::MemmapEntryWraps { index } => {
                write!(f, "memory map entry {index} wraps around")
            }
            Self::MemmapOverlap { a, b } => write!(f, "memory map entries {a} and {b} overlap"),
            Self::ModuleWraps { index } => write!(f, "module {index} wraps around"),
            Self::ModuleOutsideRam { index } => write!(f, "module {index} is not inside RAM"),
            Self::ModulesOverlap { a, b } => write!(f, "modules {a} and {b} overlap"),
            Self::CmdlineTooLong => {
                write!(f, "command line longer than {MAX_CMDLINE_LEN} bytes")
            }
            Self::CmdlineNotUtf8 => f.write_str("command line is not UTF-8"),
        }
    }
}

/// Type of a memory map region (`XEN_HVM_MEMMAP_TYPE_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemKind {
    /// Usable RAM.
    Ram,
    /// Reserved by firmware or hardware.
    #[default]
    Reserved,
    /// ACPI tables, reclaimable after reading them.
    Acpi,
    /// ACPI non-volatile storage.
    Nvs,
    /// Memory with errors.
    Unusable,
    /// Disabled memory.
    Disabled,
    /// Persistent memory.
    Pmem,
    /// A type number start_info.h does not define.
    Other(u32),
}

impl MemKind {
    fn from_raw(kind: u32) -> Self {
        match kind {
            XEN_HVM_MEMMAP_TYPE_RAM => Self::Ram,
            XEN_HVM_MEMMAP_TYPE_RESERVED => Self::Reserved,
            XEN_HVM_MEMMAP_TYPE_ACPI => Self::Acpi,
            XEN_HVM_MEMMAP_TYPE_NVS => Self::Nvs,
            XEN_HVM_MEMMAP_TYPE_UNUSABLE => Self::Unusable,
            XEN_HVM_MEMMAP_TYPE_DISABLED => Self::Disabled,
            XEN_HVM_MEMMAP_TYPE_PMEM => Self::Pmem,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ram => f.write_str("RAM"),
            Self::Reserved => f.write_str("reserved"),
            Self::Acpi => f.write_str("ACPI"),
            Self::Nvs => f.write_str("ACPI NVS"),
            Self::Unusable => f.write_str("unusable"),
            Self::Disabled => f.write_str("disabled"),
            Self::Pmem => f.write_str("persistent"),
            Self::Other(n) => write!(f, "type {n}"),
        }
    }
}

/// One memory map region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    /// Its bytes (never empty: empty entries are dropped).
    pub range: PhysRange,
    /// What the memory is.
    pub kind: MemKind,
}

/// The checked boot information.
#[derive(Clone, Debug)]
pub struct BootInfo {
    memmap: [MemRegion; MAX_MEMMAP_ENTRIES],
    memmap_len: usize,
    modules: [PhysRange; MAX_BOOT_MODULES],
    modules_len: usize,
    cmdline: [u8; MAX_CMDLINE_LEN],
    cmdline_len: usize,
    /// The start info, memory map, module list and command line themselves.
    tables: [PhysRange; 4],
    /// Physical address of the ACPI RSDP, 0 if the loader gave none.
    rsdp_paddr: u64,
}

impl BootInfo {
    /// Reads and checks the start info at `start_info_pa`.
    pub fn parse(mem: &impl PhysReader, start_info_pa: u64) -> Result<Self, BootInfoError> {
        let si = read_start_info(mem, start_info_pa)?;
        if si.magic != HVM_START_MAGIC_VALUE {
            return Err(BootInfoError::BadMagic(si.magic));
        }
        if si.version < 1 {
            return Err(BootInfoError::NoMemoryMap(si.version));
        }
        let mut info = Self {
            memmap: [MemRegion::default(); MAX_MEMMAP_ENTRIES],
            memmap_len: 0,
            modules: [PhysRange { start: 0, end: 0 }; MAX_BOOT_MODULES],
            modules_len: 0,
            cmdline: [0; MAX_CMDLINE_LEN],
            cmdline_len: 0,
            tables: [PhysRange { start: 0, end: 0 }; 4],
            rsdp_paddr: si.rsdp_paddr,
        };
        info.tables[0] = table_range(start_info_pa, 1, size_of::<HvmStartInfo>(), "start info")?;
        info.read_memmap(mem, &si)?;
        info.read_modules(mem, &si)?;
        info.read_cmdline(mem, si.cmdline_paddr)?;
        Ok(info)
    }

    /// The memory map, in the loader's order, without empty entries.
    pub fn memmap(&self) -> &[MemRegion] {
        &self.memmap[..self.memmap_len]
    }

    /// The RAM regions of the memory map.
    pub fn ram(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.memmap()
            .iter()
            .filter(|r| r.kind == MemKind::Ram)
            .map(|r| r.range)
    }

    /// The boot modules, each inside RAM, none overlapping another.
    pub fn modules(&self) -> &[PhysRange] {
        &self.modules[..self.modules_len]
    }

    /// The command line (`-append`), empty if none.
    pub fn cmdline(&self) -> &str {
        // Checked to be UTF-8 in `read_cmdline`.
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Physical address of the ACPI RSDP (`rsdp_paddr`; QEMU's PVH option
    /// ROM finds it in the BIOS area), `None` if the loader gave none.
    pub fn rsdp(&self) -> Option<u64> {
        (self.rsdp_paddr != 0).then_some(self.rsdp_paddr)
    }

    /// The value of `key=value` in the command line (the last one wins).
    pub fn cmdline_option(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .rev()
            .filter_map(|word| word.split_once('='))
            .find(|&(k, _)| k == key)
            .map(|(_, value)| value)
    }

    /// Everything the frame allocator must never hand out, given xen-core's
    /// own image: low memory, the image, the boot tables and the modules.
    pub fn reserved(&self, image: PhysRange) -> impl Iterator<Item = PhysRange> + '_ {
        [LOW_MEMORY, image]
            .into_iter()
            .chain(self.tables.iter().copied())
            .chain(self.modules().iter().copied())
    }

    fn read_memmap(
        &mut self,
        mem: &impl PhysReader,
        si: &HvmStartInfo,
    ) -> Result<(), BootInfoError> {
        let count = bounded(si.memmap_entries, MAX_MEMMAP_ENTRIES)
            .ok_or(BootInfoError::TooManyMemmapEntries(si.memmap_entries))?;
        let entry_size = size_of::<HvmMemmapEntry>();
        self.tables[1] = table_range(si.memmap_paddr, count, entry_size, "memory map")?;
        for index in 0..count {
            let pa = si.memmap_paddr + (index * entry_size) as u64;
            let entry = read_memmap_entry(mem, pa)?;
            let range = PhysRange::from_base_size(entry.addr, entry.size)
                .ok_or(BootInfoError::MemmapEntryWraps { index })?;
            if range.is_empty() {
                continue;
            }
            if let Some(a) = self.memmap().iter().position(|r| r.range.overlaps(&range)) {
                return Err(BootInfoError::MemmapOverlap { a, b: index });
            }
            self.memmap[self.memmap_len] = MemRegion {
                range,
                kind: MemKind::from_raw(entry.kind),
            };
            self.memmap_len += 1;
        }
        Ok(())
    }

    fn read_modules(
        &mut self,
        mem: &impl PhysReader,
        si: &HvmStartInfo,
    ) -> Result<(), BootInfoError> {
        let count = bounded(si.nr_modules, MAX_BOOT_MODULES)
            .ok_or(BootInfoError::TooManyModules(si.nr_modules))?;
        let entry_size = size_of::<HvmModlistEntry>();
        self.tables[2] = table_range(si.modlist_paddr, count, entry_size, "module list")?;
        for index in 0..count {
            let pa = si.modlist_paddr + (index * entry_size) as u64;
            let entry = read_modlist_entry(mem, pa)?;
            let range = PhysRange::from_base_size(entry.paddr, entry.size)
                .ok_or(BootInfoError::ModuleWraps { index })?;
            if !self.ram().any(|ram| ram.contains(&range)) {
                return Err(BootInfoError::ModuleOutsideRam { index });
            }
            if let Some(a) = self.modules().iter().position(|m| m.overlaps(&range)) {
                return Err(BootInfoError::ModulesOverlap { a, b: index });
            }
            self.modules[self.modules_len] = range;
            self.modules_len += 1;
        }
        Ok(())
    }

    fn read_cmdline(&mut self, mem: &impl PhysReader, pa: u64) -> Result<(), BootInfoError> {
        if pa == 0 {
            return Ok(());
        }
        let unreadable = BootInfoError::Unreadable {
            what: "command line",
            pa,
        };
        for len in 0..=MAX_CMDLINE_LEN {
            let mut byte = [0u8];
            let byte_pa = pa.checked_add(len as u64).ok_or(unreadable)?;
            mem.read(byte_pa, &mut byte).map_err(|_| unreadable)?;
            if byte[0] == 0 {
                core::str::from_utf8(&self.cmdline[..len])
                    .map_err(|_| BootInfoError::CmdlineNotUtf8)?;
                self.cmdline_len = len;
                self.tables[3] = PhysRange {
                    start: pa,
                    end: byte_pa + 1,
                };
                return Ok(());
            }
            if let Some(slot) = self.cmdline.get_mut(len) {
                *slot = byte[0];
            }
        }
        Err(BootInfoError::CmdlineTooLong)
    }
}

/// `count` as a `usize` if it is at most `max`.
fn bounded(count: u32, max: usize) -> Option<usize> {
    usize::try_from(count).ok().filter(|&n| n <= max)
}

/// The bytes of `count` records of `size` bytes at `pa`.
fn table_range(
    pa: u64,
    count: usize,
    size: usize,
    what: &'static str,
) -> Result<PhysRange, BootInfoError> {
    PhysRange::from_base_size(pa, (count * size) as u64)
        .ok_or(BootInfoError::Unreadable { what, pa })
}

fn read_bytes<const N: usize>(
    mem: &impl PhysReader,
    pa: u64,
    what: &'static str,
) -> Result<[u8; N], BootInfoError> {
    let mut buf = [0u8; N];
    let end_ok = pa.checked_add(N as u64).is_some();
    match end_ok && mem.read(pa, &mut buf).is_ok() {
        true => Ok(buf),
        false => Err(BootInfoError::Unreadable { what, pa }),
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(b)
}

fn read_start_info(mem: &impl PhysReader, pa: u64) -> Result<HvmStartInfo, BootInfoError> {
    let b: [u8; size_of::<HvmStartInfo>()] = read_bytes(mem, pa, "start info")?;
    Ok(HvmStartInfo {
        magic: u32_at(&b, offset_of!(HvmStartInfo, magic)),
        version: u32_at(&b, offset_of!(HvmStartInfo, version)),
        flags: u32_at(&b, offset_of!(HvmStartInfo, flags)),
        nr_modules: u32_at(&b, offset_of!(HvmStartInfo, nr_modules)),
        modlist_paddr: u64_at(&b, offset_of!(HvmStartInfo, modlist_paddr)),
        cmdline_paddr: u64_at(&b, offset_of!(HvmStartInfo, cmdline_paddr)),
        rsdp_paddr: u64_at(&b, offset_of!(HvmStartInfo, rsdp_paddr)),
        memmap_paddr: u64_at(&b, offset_of!(HvmStartInfo, memmap_paddr)),
        memmap_entries: u32_at(&b, offset_of!(HvmStartInfo, memmap_entries)),
        reserved: u32_at(&b, offset_of!(HvmStartInfo, reserved)),
    })
}

fn read_memmap_entry(mem: &impl PhysReader, pa: u64) -> Result<HvmMemmapEntry, BootInfoError> {
    let b: [u8; size_of::<HvmMemmapEntry>()] = read_bytes(mem, pa, "memory map")?;
    Ok(HvmMemmapEntry {
        addr: u64_at(&b, offset_of!(HvmMemmapEntry, addr)),
        size: u64_at(&b, offset_of!(HvmMemmapEntry, size)),
        kind: u32_at(&b, offset_of!(HvmMemmapEntry, kind)),
        reserved: u32_at(&b, offset_of!(HvmMemmapEntry, reserved)),
    })
}

fn read_modlist_entry(mem: &impl PhysReader, pa: u64) -> Result<HvmModlistEntry, BootInfoError> {
    let b: [u8; size_of::<HvmModlistEntry>()] = read_bytes(mem, pa, "module list")?;
    Ok(HvmModlistEntry {
        paddr: u64_at(&b, offset_of!(HvmModlistEntry, paddr)),
        size: u64_at(&b, offset_of!(HvmModlistEntry, size)),
        cmdline_paddr: u64_at(&b, offset_of!(HvmModlistEntry, cmdline_paddr)),
        reserved: u64_at(&b, offset_of!(HvmModlistEntry, reserved)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::convert::{u32_const, usize_from_u64};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const SI: u64 = 0x1000;
    const MEMMAP: u64 = 0x2000;
    const MODLIST: u64 = 0x3000;
    const CMDLINE: u64 = 0x4000;

    /// The first `bytes.len()` bytes of physical memory.
    struct FakeMemory {
        bytes: Vec<u8>,
    }

    impl PhysReader for FakeMemory {
        fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
            let start = usize::try_from(pa).map_err(|_| Unreadable)?;
            let end = start.checked_add(buf.len()).ok_or(Unreadable)?;
            buf.copy_from_slice(self.bytes.get(start..end).ok_or(Unreadable)?);
            Ok(())
        }
    }

    impl FakeMemory {
        fn put(&mut self, pa: u64, data: &[u8]) {
            let at = usize_from_u64(pa);
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }
        fn put_u32(&mut self, pa: u64, v: u32) {
            self.put(pa, &v.to_le_bytes());
        }
        fn put_u64(&mut self, pa: u64, v: u64) {
            self.put(pa, &v.to_le_bytes());
        }
        fn set_memmap(&mut self, entries: &[(u64, u64, u32)]) {
            for (i, &(addr, size, kind)) in entries.iter().enumerate() {
                let pa = MEMMAP + 24 * i as u64;
                self.put_u64(pa, addr);
                self.put_u64(pa + 8, size);
                self.put_u32(pa + 16, kind);
            }
            self.put_u32(SI + 48, u32::try_from(entries.len()).unwrap());
        }
        fn set_modules(&mut self, modules: &[(u64, u64)]) {
            for (i, &(addr, size)) in modules.iter().enumerate() {
                self.put_u64(MODLIST + 32 * i as u64, addr);
                self.put_u64(MODLIST + 32 * i as u64 + 8, size);
            }
            self.put_u32(SI + 12, u32::try_from(modules.len()).unwrap());
        }
    }

    /// What QEMU's PVH loader builds for `-m 16 -initrd <64 KiB> -append`.
    fn qemu_like() -> FakeMemory {
        let mut m = FakeMemory {
            bytes: vec![0; 0x10000],
        };
        m.put_u32(SI, HVM_START_MAGIC_VALUE);
        m.put_u32(SI + 4, 1);
        m.put_u64(SI + 16, MODLIST);
        m.put_u64(SI + 24, CMDLINE);
        m.put_u64(SI + 40, MEMMAP);
        m.set_memmap(&[
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (MIB, 15 * MIB, 1),
            (0xfffc_0000, 0x40000, 2),
        ]);
        m.set_modules(&[(15 * MIB, 0x10000)]);
        m.put(CMDLINE, b"loglvl=debug\0");
        m
    }

    #[test]
    fn parses_what_qemu_gives() {
        let info = BootInfo::parse(&qemu_like(), SI).unwrap();
        assert_eq!(info.memmap().len(), 5);
        assert_eq!(info.memmap()[1].kind, MemKind::Reserved);
        assert_eq!(info.ram().map(|r| r.len()).sum::<u64>(), 0x9fc00 + 15 * MIB);
        assert_eq!(
            info.modules(),
            &[PhysRange {
                start: 15 * MIB,
                end: 15 * MIB + 0x10000
            }]
        );
        assert_eq!(info.cmdline(), "loglvl=debug");
    }

    #[test]
    fn reserved_covers_low_memory_image_tables_and_modules() {
        let info = BootInfo::parse(&qemu_like(), SI).unwrap();
        let image = PhysRange {
            start: MIB,
            end: 2 * MIB,
        };
        let reserved: Vec<_> = info.reserved(image).collect();
        for must in [
            LOW_MEMORY,
            image,
            PhysRange {
                start: SI,
                end: SI + 56,
            },
            PhysRange {
                start: MEMMAP,
                end: MEMMAP + 5 * 24,
            },
            PhysRange {
                start: MODLIST,
                end: MODLIST + 32,
            },
            PhysRange {
                start: CMDLINE,
                end: CMDLINE + 13,
            },
            PhysRange {
                start: 15 * MIB,
                end: 15 * MIB + 0x10000,
            },
        ] {
            assert!(reserved.contains(&must), "{must:x?} missing");
        }
    }

    #[test]
    fn cmdline_options() {
        let mut m = qemu_like();
        m.put(CMDLINE, b"loglvl=warn quiet loglvl=debug x=\0");
        let info = BootInfo::parse(&m, SI).unwrap();
        assert_eq!(info.cmdline_option("loglvl"), Some("debug"));
        assert_eq!(info.cmdline_option("x"), Some(""));
        assert_eq!(info.cmdline_option("quiet"), None);
        assert_eq!(info.cmdline_option("log"), None);
    }

    #[test]
    fn no_cmdline_and_no_modules_are_fine() {
        let mut m = qemu_like();
        m.put_u64(SI + 24, 0);
        m.set_modules(&[]);
        let info = BootInfo::parse(&m, SI).unwrap();
        assert_eq!(info.cmdline(), "");
        assert!(info.modules().is_empty());
    }

    fn parse_err(m: &FakeMemory) -> BootInfoError {
        BootInfo::parse(m, SI).unwrap_err()
    }

    #[test]
    fn rejects_bad_header() {
        let mut m = qemu_like();
        m.put_u32(SI, 0x1234);
        assert_eq!(parse_err(&m), BootInfoError::BadMagic(0x1234));
        let mut m = qemu_like();
        m.put_u32(SI + 4, 0);
        assert_eq!(parse_err(&m), BootInfoError::NoMemoryMap(0));
        assert_eq!(
            BootInfo::parse(&m, 0xfff0).unwrap_err(),
            BootInfoError::Unreadable {
                what: "start info",
                pa: 0xfff0
            }
        );
        assert!(matches!(
            BootInfo::parse(&m, u64::MAX - 8).unwrap_err(),
            BootInfoError::Unreadable { .. }
        ));
    }

    #[test]
    fn rejects_huge_counts_before_reading() {
        let mut m = qemu_like();
        m.put_u32(SI + 48, u32::MAX);
        assert_eq!(parse_err(&m), BootInfoError::TooManyMemmapEntries(u32::MAX));
        let mut m = qemu_like();
        m.put_u32(SI + 12, u32_const::<MAX_BOOT_MODULES>() + 1);
        assert_eq!(parse_err(&m), BootInfoError::TooManyModules(9));
    }

    #[test]
    fn rejects_tables_beyond_memory() {
        let mut m = qemu_like();
        m.put_u64(SI + 40, 0xfff0);
        assert!(matches!(
            parse_err(&m),
            BootInfoError::Unreadable {
                what: "memory map",
                ..
            }
        ));
        let mut m = qemu_like();
        m.put_u64(SI + 16, u64::MAX - 16);
        assert!(matches!(
            parse_err(&m),
            BootInfoError::Unreadable {
                what: "module list",
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_memory_maps() {
        let mut m = qemu_like();
        m.set_memmap(&[(0, MIB, 1), (u64::MAX - 10, 20, 1)]);
        assert_eq!(parse_err(&m), BootInfoError::MemmapEntryWraps { index: 1 });
        let mut m = qemu_like();
        m.set_memmap(&[(0, 2 * MIB, 1), (MIB, 16 * MIB, 1)]);
        assert_eq!(parse_err(&m), BootInfoError::MemmapOverlap { a: 0, b: 1 });
    }

    #[test]
    fn rejects_bad_modules() {
        let mut m = qemu_like();
        m.set_modules(&[(u64::MAX - 10, 20)]);
        assert_eq!(parse_err(&m), BootInfoError::ModuleWraps { index: 0 });
        let mut m = qemu_like();
        m.set_modules(&[(64 * MIB, 0x1000)]);
        assert_eq!(parse_err(&m), BootInfoError::ModuleOutsideRam { index: 0 });
        let mut m = qemu_like();
        m.set_modules(&[(0x9f000, 0x2000)]);
        assert_eq!(parse_err(&m), BootInfoError::ModuleOutsideRam { index: 0 });
        let mut m = qemu_like();
        m.set_modules(&[(2 * MIB, 0x2000), (3 * MIB, 0x10), (2 * MIB + 0x1fff, 1)]);
        assert_eq!(parse_err(&m), BootInfoError::ModulesOverlap { a: 0, b: 2 });
    }

    #[test]
    fn rejects_bad_cmdlines() {
        let mut m = qemu_like();
        m.put(CMDLINE, &[b'x'; MAX_CMDLINE_LEN + 1]);
        assert_eq!(parse_err(&m), BootInfoError::CmdlineTooLong);
        m.put(CMDLINE + MAX_CMDLINE_LEN as u64, b"\0");
        assert_eq!(
            BootInfo::parse(&m, SI).unwrap().cmdline().len(),
            MAX_CMDLINE_LEN
        );
        let mut m = qemu_like();
        m.put(CMDLINE, b"\xff\xfe\0");
        assert_eq!(parse_err(&m), BootInfoError::CmdlineNotUtf8);
        let mut m = qemu_like();
        m.put_u64(SI + 24, 0xfffe);
        m.put(0xfffe, b"ab");
        assert!(matches!(
            parse_err(&m),
            BootInfoError::Unreadable {
                what: "command line",
                ..
            }
        ));
    }

    proptest! {
        /// Any bytes at all: an error or a result whose invariants hold.
        #[test]
        fn hostile_images_never_panic(
            header in proptest::collection::vec(any::<u8>(), 56),
            tables in proptest::collection::vec(any::<u8>(), 0..0x300),
            small_counts in any::<bool>(),
        ) {
            let mut m = qemu_like();
            m.put(SI, &header);
            m.put(MEMMAP, &tables);
            if small_counts {
                m.put_u32(SI, HVM_START_MAGIC_VALUE);
                m.put_u32(SI + 4, 1);
                m.put_u64(SI + 16, MODLIST);
                m.put_u64(SI + 40, MEMMAP);
                m.put_u32(SI + 12, header[12] as u32 % 3);
                m.put_u32(SI + 48, header[48] as u32 % 8);
            }
            if let Ok(info) = BootInfo::parse(&m, SI) {
                let regions = info.memmap();
                for (i, a) in regions.iter().enumerate() {
                    prop_assert!(!a.range.is_empty());
                    prop_assert!(regions[i + 1..].iter().all(|b| !a.range.overlaps(&b.range)));
                }
                for (i, module) in info.modules().iter().enumerate() {
                    prop_assert!(info.ram().any(|r| r.contains(module)));
                    prop_assert!(info.modules()[i + 1..].iter().all(|b| !module.overlaps(b)));
                }
            }
        }
    }
}
