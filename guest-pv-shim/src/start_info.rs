//! The PVH start info (`struct hvm_start_info`), read once from guest
//! memory at entry, checked, and copied into bounded arrays so the kernel
//! never goes back to memory the domain builder wrote.

use core::fmt;

use abi::xen::start_info::{
    HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_RAM,
};
use zerocopy::{FromBytes, IntoBytes};

/// Longest accepted kernel command line, in bytes without the NUL.
pub const MAX_CMDLINE: usize = 1024;
/// Longest accepted module command line, in bytes without the NUL.
pub const MAX_MODULE_CMDLINE: usize = 256;
/// Most memory-map entries accepted.
pub const MAX_MEMMAP_ENTRIES: usize = 64;
/// Most boot modules accepted.
pub const MAX_MODULES: usize = 8;

/// Read access to guest-physical memory, as the shim has it at entry.
pub trait PhysMemory {
    /// Fills `buf` from `gpa..gpa + buf.len()`; false if any byte of that
    /// range is not readable.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
}

/// Why the start info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// A structure or string lies outside readable memory.
    Unreadable { what: &'static str, gpa: u64 },
    /// `magic` is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// More modules than [`MAX_MODULES`], or modules without a list.
    BadModules(u32),
    /// More memory-map entries than [`MAX_MEMMAP_ENTRIES`].
    BadMemmap(u32),
    /// A memory-map region or module whose end overflows 64 bits.
    RegionOverflows { addr: u64, size: u64 },
    /// A command line without a NUL within its limit.
    StringTooLong { what: &'static str, limit: usize },
    /// A command line that is not UTF-8.
    NotUtf8 { what: &'static str },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { what, gpa } => write!(f, "{what} at GPA {gpa:#x} is not readable"),
            Self::BadMagic(m) => write!(f, "bad magic {m:#x}"),
            Self::BadModules(n) => write!(f, "bad module list ({n} modules)"),
            Self::BadMemmap(n) => write!(f, "bad memory map ({n} entries)"),
            Self::RegionOverflows { addr, size } => {
                write!(f, "region {addr:#x}+{size:#x} overflows")
            }
            Self::StringTooLong { what, limit } => write!(f, "{what} longer than {limit} bytes"),
            Self::NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
        }
    }
}

/// A NUL-free string of at most `N` bytes, copied out of guest memory.
#[derive(Clone, Copy)]
pub struct BoundedStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> BoundedStr<N> {
    const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// Reads the NUL-terminated string at `gpa` (0: empty string).
    fn read(mem: &impl PhysMemory, gpa: u64, what: &'static str) -> Result<Self, StartInfoError> {
        let mut s = Self::EMPTY;
        if gpa == 0 {
            return Ok(s);
        }
        loop {
            let mut byte = [0u8];
            let at = gpa.checked_add(s.len as u64);
            if !at.is_some_and(|at| mem.read(at, &mut byte)) {
                return Err(StartInfoError::Unreadable { what, gpa });
            }
            if byte[0] == 0 {
                break;
            }
            if s.len == N {
                return Err(StartInfoError::StringTooLong { what, limit: N });
            }
            s.bytes[s.len] = byte[0];
            s.len += 1;
        }
        core::str::from_utf8(&s.bytes[..s.len]).map_err(|_| StartInfoError::NotUtf8 { what })?;
        Ok(s)
    }

    /// The string (checked to be UTF-8 when read).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// One boot module (`struct hvm_modlist_entry`).
#[derive(Clone, Copy)]
pub struct Module {
    /// GPA of the module's first byte.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    cmdline: BoundedStr<MAX_MODULE_CMDLINE>,
}

impl Module {
    /// The module's command line ("" if none).
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_str()
    }
}

/// The checked start info.
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// GPA the start info was read from (EBX at entry).
    pub gpa: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// GPA of the ACPI RSDP, 0 if none.
    pub rsdp_paddr: u64,
    cmdline: BoundedStr<MAX_CMDLINE>,
    memmap: [HvmMemmapEntry; MAX_MEMMAP_ENTRIES],
    memmap_len: usize,
    modules: [Module; MAX_MODULES],
    modules_len: usize,
}

impl StartInfo {
    /// Reads and checks the start info at `gpa`. Version 0, or version 1
    /// with no entries, has no memory map: Xen's PVH dom0 gets none (as
    /// Linux's `init_pvh_bootparams` does, the kernel then asks
    /// `XENMEM_memory_map` and hands the answer to [`Self::set_memmap`]).
    pub fn read(mem: &impl PhysMemory, gpa: u64) -> Result<Self, StartInfoError> {
        let raw: HvmStartInfo = read_struct(mem, gpa, "start info")?;
        if raw.magic != HVM_START_MAGIC_VALUE {
            return Err(StartInfoError::BadMagic(raw.magic));
        }
        let nr_memmap = if raw.version < 1 {
            0
        } else {
            raw.memmap_entries
        };
        if nr_memmap as usize > MAX_MEMMAP_ENTRIES {
            return Err(StartInfoError::BadMemmap(nr_memmap));
        }
        let nr_modules = raw.nr_modules;
        if nr_modules as usize > MAX_MODULES || (nr_modules > 0 && raw.modlist_paddr == 0) {
            return Err(StartInfoError::BadModules(nr_modules));
        }
        let mut info = StartInfo {
            gpa,
            flags: raw.flags,
            rsdp_paddr: raw.rsdp_paddr,
            cmdline: BoundedStr::read(mem, raw.cmdline_paddr, "command line")?,
            memmap: [HvmMemmapEntry::default(); MAX_MEMMAP_ENTRIES],
            memmap_len: 0,
            modules: [Module {
                paddr: 0,
                size: 0,
                cmdline: BoundedStr::EMPTY,
            }; MAX_MODULES],
            modules_len: 0,
        };
        for i in 0..u64::from(nr_memmap) {
            let at = array_element::<HvmMemmapEntry>(raw.memmap_paddr, i, "memory map")?;
            let e: HvmMemmapEntry = read_struct(mem, at, "memory map")?;
            check_region(e.addr, e.size)?;
            info.memmap[info.memmap_len] = e;
            info.memmap_len += 1;
        }
        for i in 0..u64::from(nr_modules) {
            let at = array_element::<HvmModlistEntry>(raw.modlist_paddr, i, "module list")?;
            let e: HvmModlistEntry = read_struct(mem, at, "module list")?;
            check_region(e.paddr, e.size)?;
            info.modules[info.modules_len] = Module {
                paddr: e.paddr,
                size: e.size,
                cmdline: BoundedStr::read(mem, e.cmdline_paddr, "module command line")?,
            };
            info.modules_len += 1;
        }
        Ok(info)
    }

    /// The kernel command line ("" if none).
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_str()
    }

    /// The value of `key=value` on the command line; `Some("")` for a bare
    /// `key`.
    pub fn cmdline_arg(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .find_map(|word| match word.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if word == key => Some(""),
                _ => None,
            })
    }

    /// Sets the memory map of a start info that came without one (from
    /// `XENMEM_memory_map`: E820 and `XEN_HVM_MEMMAP_TYPE_*` share their
    /// type numbers); at most [`MAX_MEMMAP_ENTRIES`] are kept.
    pub fn set_memmap(
        &mut self,
        entries: impl IntoIterator<Item = HvmMemmapEntry>,
    ) -> Result<(), StartInfoError> {
        self.memmap_len = 0;
        for e in entries.into_iter().take(MAX_MEMMAP_ENTRIES) {
            check_region(e.addr, e.size)?;
            self.memmap[self.memmap_len] = e;
            self.memmap_len += 1;
        }
        Ok(())
    }

    /// The memory map (E820-style regions).
    pub fn memmap(&self) -> &[HvmMemmapEntry] {
        &self.memmap[..self.memmap_len]
    }

    /// The boot modules.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.modules_len]
    }

    /// Total bytes of RAM regions.
    pub fn ram_bytes(&self) -> u64 {
        self.ram().fold(0u64, |sum, e| sum.saturating_add(e.size))
    }

    /// First GPA past the highest RAM region (0 if there is no RAM).
    pub fn ram_end(&self) -> u64 {
        self.ram().map(|e| e.addr + e.size).max().unwrap_or(0)
    }

    /// One past the highest address the memory map names (RAM or
    /// reserved, such as the PV console ring after RAM).
    pub fn memmap_end(&self) -> u64 {
        self.memmap()
            .iter()
            .map(|e| e.addr.saturating_add(e.size))
            .max()
            .unwrap_or(0)
    }

    fn ram(&self) -> impl Iterator<Item = &HvmMemmapEntry> {
        self.memmap()
            .iter()
            .filter(|e| e.kind == XEN_HVM_MEMMAP_TYPE_RAM)
    }
}

/// One-line summary: command line, memory and module count.
impl fmt::Display for StartInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cmdline=\"{}\" memmap_entries={} ram_kib={} ram_end={:#x} modules={}",
            self.cmdline(),
            self.memmap().len(),
            self.ram_bytes() / 1024,
            self.ram_end(),
            self.modules().len()
        )
    }
}

fn read_struct<T: FromBytes + IntoBytes>(
    mem: &impl PhysMemory,
    gpa: u64,
    what: &'static str,
) -> Result<T, StartInfoError> {
    let mut value = T::new_zeroed();
    if gpa == 0 || !mem.read(gpa, value.as_mut_bytes()) {
        return Err(StartInfoError::Unreadable { what, gpa });
    }
    Ok(value)
}

fn array_element<T>(base: u64, index: u64, what: &'static str) -> Result<u64, StartInfoError> {
    index
        .checked_mul(core::mem::size_of::<T>() as u64)
        .and_then(|offset| base.checked_add(offset))
        .ok_or(StartInfoError::Unreadable { what, gpa: base })
}

fn check_region(addr: u64, size: u64) -> Result<(), StartInfoError> {
    match addr.checked_add(size) {
        Some(_) => Ok(()),
        None => Err(StartInfoError::RegionOverflows { addr, size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::convert::{u32_const, usize_from_u64};
    use proptest::prelude::*;

    /// Guest memory simulated as one buffer starting at `base`.
    struct SimMemory {
        base: u64,
        bytes: Vec<u8>,
    }

    impl SimMemory {
        fn new() -> Self {
            SimMemory {
                base: 0x1000,
                bytes: vec![0; 0x8000],
            }
        }

        fn put(&mut self, gpa: u64, data: &[u8]) {
            let at = usize_from_u64(gpa - self.base);
            self.bytes[at..at + data.len()].copy_from_slice(data);
        }
    }

    impl PhysMemory for SimMemory {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let Some(at) = gpa.checked_sub(self.base) else {
                return false;
            };
            let at = usize_from_u64(at);
            let Some(src) = at
                .checked_add(buf.len())
                .and_then(|end| self.bytes.get(at..end))
            else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        }
    }

    const SI: u64 = 0x1000;
    const CMDLINE: u64 = 0x2000;
    const MEMMAP: u64 = 0x3000;
    const MODLIST: u64 = 0x4000;
    const MOD_CMDLINE: u64 = 0x5000;

    fn ram(addr: u64, size: u64) -> HvmMemmapEntry {
        HvmMemmapEntry {
            addr,
            size,
            kind: XEN_HVM_MEMMAP_TYPE_RAM,
            reserved: 0,
        }
    }

    /// A valid start info: two RAM regions and a reserved one, one module.
    fn image() -> (SimMemory, HvmStartInfo) {
        let mut mem = SimMemory::new();
        let si = HvmStartInfo {
            magic: HVM_START_MAGIC_VALUE,
            version: 1,
            nr_modules: 1,
            modlist_paddr: MODLIST,
            cmdline_paddr: CMDLINE,
            memmap_paddr: MEMMAP,
            memmap_entries: 3,
            ..Default::default()
        };
        mem.put(CMDLINE, b"console=hvc0 ticks=7 quiet\0");
        let reserved = HvmMemmapEntry {
            addr: 0xf_0000,
            size: 0x1_0000,
            kind: 2,
            reserved: 0,
        };
        for (i, e) in [ram(0, 0x9_f000), reserved, ram(0x10_0000, 0x70_0000)]
            .iter()
            .enumerate()
        {
            mem.put(MEMMAP + 24 * i as u64, e.as_bytes());
        }
        let module = HvmModlistEntry {
            paddr: 0x60_0000,
            size: 1234,
            cmdline_paddr: MOD_CMDLINE,
            reserved: 0,
        };
        mem.put(MODLIST, module.as_bytes());
        mem.put(MOD_CMDLINE, b"name=domu1\0");
        mem.put(SI, si.as_bytes());
        (mem, si)
    }

    fn with(
        mut f: impl FnMut(&mut SimMemory, &mut HvmStartInfo),
    ) -> Result<StartInfo, StartInfoError> {
        let (mut mem, mut si) = image();
        f(&mut mem, &mut si);
        mem.put(SI, si.as_bytes());
        StartInfo::read(&mem, SI)
    }

    #[test]
    fn reads_a_valid_start_info() {
        let (mem, _) = image();
        let info = StartInfo::read(&mem, SI).unwrap();
        assert_eq!(info.cmdline(), "console=hvc0 ticks=7 quiet");
        assert_eq!(info.cmdline_arg("ticks"), Some("7"));
        assert_eq!(info.cmdline_arg("quiet"), Some(""));
        assert_eq!(info.cmdline_arg("tick"), None);
        assert_eq!(info.memmap().len(), 3);
        assert_eq!(info.ram_bytes(), 0x9_f000 + 0x70_0000);
        assert_eq!(info.ram_end(), 0x80_0000);
        let m = &info.modules()[0];
        assert_eq!(
            (m.paddr, m.size, m.cmdline()),
            (0x60_0000, 1234, "name=domu1")
        );
        assert_eq!(
            info.to_string(),
            "cmdline=\"console=hvc0 ticks=7 quiet\" memmap_entries=3 ram_kib=7804 ram_end=0x800000 modules=1"
        );
    }

    #[test]
    fn no_cmdline_is_empty() {
        let info = with(|_, si| si.cmdline_paddr = 0).unwrap();
        assert_eq!(info.cmdline(), "");
        assert_eq!(info.cmdline_arg("ticks"), None);
    }

    /// Xen's PVH dom0 gets no map in its start info (version 0, or no
    /// entries): read without one, then given `XENMEM_memory_map`'s.
    #[test]
    fn a_start_info_without_map_takes_one_later() {
        for mut info in [
            with(|_, si| si.version = 0).unwrap(),
            with(|_, si| si.memmap_entries = 0).unwrap(),
        ] {
            assert!(info.memmap().is_empty());
            assert_eq!(info.ram_end(), 0);
            let ram = HvmMemmapEntry {
                addr: 0x10_0000,
                size: 0x40_0000,
                kind: XEN_HVM_MEMMAP_TYPE_RAM,
                ..Default::default()
            };
            info.set_memmap([ram]).unwrap();
            assert_eq!(info.ram_end(), 0x50_0000);
            let overflowing = HvmMemmapEntry {
                addr: u64::MAX,
                ..ram
            };
            assert!(info.set_memmap([overflowing]).is_err());
        }
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(
            with(|_, si| si.magic ^= 1).err(),
            Some(StartInfoError::BadMagic(HVM_START_MAGIC_VALUE ^ 1))
        );
        let too_many = u32_const::<MAX_MEMMAP_ENTRIES>() + 1;
        assert_eq!(
            with(|_, si| si.memmap_entries = too_many).err(),
            Some(StartInfoError::BadMemmap(too_many))
        );
        let too_many = u32_const::<MAX_MODULES>() + 1;
        assert_eq!(
            with(|_, si| si.nr_modules = too_many).err(),
            Some(StartInfoError::BadModules(too_many))
        );
        assert_eq!(
            with(|_, si| si.modlist_paddr = 0).err(),
            Some(StartInfoError::BadModules(1))
        );
    }

    #[test]
    fn refuses_unreadable_memory() {
        let (mem, _) = image();
        assert!(matches!(
            StartInfo::read(&mem, 0),
            Err(StartInfoError::Unreadable { .. })
        ));
        assert!(matches!(
            StartInfo::read(&mem, 0x9000 - 8),
            Err(StartInfoError::Unreadable { .. })
        ));
        let far = with(|_, si| si.memmap_paddr = u64::MAX - 30);
        assert!(matches!(
            far,
            Err(StartInfoError::Unreadable {
                what: "memory map",
                ..
            })
        ));
        // A command line whose NUL would lie past the end of memory.
        let tail = with(|mem, si| {
            si.cmdline_paddr = 0x9000 - 4;
            mem.put(0x9000 - 4, b"abcd");
        });
        assert!(matches!(
            tail,
            Err(StartInfoError::Unreadable {
                what: "command line",
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_strings_and_regions() {
        let long = with(|mem, _| mem.put(CMDLINE, &[b'x'; MAX_CMDLINE + 1]));
        assert_eq!(
            long.err(),
            Some(StartInfoError::StringTooLong {
                what: "command line",
                limit: MAX_CMDLINE
            })
        );
        let exact = with(|mem, _| {
            mem.put(CMDLINE, &[b'x'; MAX_CMDLINE]);
            mem.put(CMDLINE + MAX_CMDLINE as u64, b"\0");
        });
        assert_eq!(exact.unwrap().cmdline().len(), MAX_CMDLINE);
        let bad_utf8 = with(|mem, _| mem.put(MOD_CMDLINE, b"\xff\xfe\0"));
        assert_eq!(
            bad_utf8.err(),
            Some(StartInfoError::NotUtf8 {
                what: "module command line"
            })
        );
        let wraps = with(|mem, _| mem.put(MEMMAP, ram(u64::MAX - 5, 10).as_bytes()));
        assert_eq!(
            wraps.err(),
            Some(StartInfoError::RegionOverflows {
                addr: u64::MAX - 5,
                size: 10
            })
        );
    }

    proptest! {
        /// Whatever the builder wrote, reading neither panics nor returns
        /// more than the bounds, and RAM figures stay consistent.
        #[test]
        fn arbitrary_memory_never_panics(
            garbage in proptest::collection::vec(any::<u8>(), 0x8000),
            nr_modules in 0u32..12,
            memmap_entries in 0u32..80,
            cmdline in prop_oneof![Just(0u64), 0x1000u64..0x9100],
            memmap in 0x1000u64..0x9100,
            modlist in prop_oneof![Just(0u64), 0x1000u64..0x9100],
        ) {
            let mut mem = SimMemory { base: 0x1000, bytes: garbage };
            let si = HvmStartInfo {
                magic: HVM_START_MAGIC_VALUE,
                version: 1,
                nr_modules,
                modlist_paddr: modlist,
                cmdline_paddr: cmdline,
                memmap_paddr: memmap,
                memmap_entries,
                ..Default::default()
            };
            mem.put(SI, si.as_bytes());
            if let Ok(info) = StartInfo::read(&mem, SI) {
                prop_assert!(info.memmap().len() <= MAX_MEMMAP_ENTRIES);
                prop_assert!(info.modules().len() <= MAX_MODULES);
                prop_assert!(info.cmdline().len() <= MAX_CMDLINE);
                prop_assert!(info.ram_bytes() == 0 || info.ram_end() > 0);
            }
        }
    }
}
