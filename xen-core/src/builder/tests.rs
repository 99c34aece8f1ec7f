use super::*;
use crate::mm::Gfn;
use crate::paging::guest_walk::tests::Guest;
use abi::xen::start_info::XEN_HVM_MEMMAP_TYPE_RESERVED;
use elf::abi::{EM_386, EM_ARM, EM_X86_64, PT_LOAD, PT_NOTE};
use zerocopy::FromBytes;

/// One program header of a test image.
pub(crate) struct Seg {
    kind: u32,
    paddr: u64,
    data: std::vec::Vec<u8>,
    memsz: u64,
}

pub(crate) fn load(paddr: u64, data: &[u8], memsz: u64) -> Seg {
    Seg {
        kind: PT_LOAD,
        paddr,
        data: data.to_vec(),
        memsz,
    }
}

/// A PT_NOTE segment holding one "Xen" note of `n_type` with `desc`.
pub(crate) fn xen_note(n_type: u32, desc: &[u8]) -> Seg {
    let mut d = std::vec::Vec::new();
    for v in [4, desc.len() as u32, n_type] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.extend_from_slice(b"Xen\0");
    d.extend_from_slice(desc);
    d.resize(d.len().next_multiple_of(4), 0);
    let len = d.len() as u64;
    Seg {
        kind: PT_NOTE,
        paddr: 0,
        data: d,
        memsz: len,
    }
}

/// A little-endian ET_EXEC image of either class with `segs` in order.
pub(crate) fn elf(class64: bool, machine: u16, segs: &[Seg]) -> std::vec::Vec<u8> {
    let (ehsize, phsize) = if class64 { (64u64, 56u64) } else { (52, 32) };
    let mut out = std::vec::Vec::new();
    let word = |out: &mut std::vec::Vec<u8>, v: u64| {
        if class64 {
            out.extend_from_slice(&v.to_le_bytes())
        } else {
            out.extend_from_slice(&(v as u32).to_le_bytes())
        }
    };
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', if class64 { 2 } else { 1 }, 1, 1]);
    out.resize(16, 0);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    word(&mut out, 0); // e_entry: PVH uses the note
    word(&mut out, ehsize); // e_phoff
    word(&mut out, 0); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [
        ehsize,
        phsize,
        segs.len() as u64,
        if class64 { 64 } else { 40 },
        0,
        0,
    ] {
        out.extend_from_slice(&(v as u16).to_le_bytes());
    }
    let mut offset = ehsize + phsize * segs.len() as u64;
    for s in segs {
        let (filesz, memsz) = (s.data.len() as u64, s.memsz);
        out.extend_from_slice(&s.kind.to_le_bytes());
        if class64 {
            out.extend_from_slice(&7u32.to_le_bytes()); // p_flags
        }
        for v in [offset, s.paddr, s.paddr, filesz, memsz] {
            word(&mut out, v);
        }
        if !class64 {
            out.extend_from_slice(&7u32.to_le_bytes());
        }
        word(&mut out, 4); // p_align
        offset += filesz;
    }
    for s in segs {
        out.extend_from_slice(&s.data);
    }
    out
}

const KERNEL: u64 = 0x10_0000;
const RAM_PAGES: u64 = 0x140;

fn code() -> std::vec::Vec<u8> {
    (0..0x1800u32).map(|i| (i % 251) as u8).collect()
}

/// A kernel at 1 MiB: code + bss, and the PVH note with a `size`-byte entry.
pub(crate) fn kernel(class64: bool, machine: u16, entry_bytes: &[u8]) -> std::vec::Vec<u8> {
    let segs = [xen_note(18, entry_bytes), load(KERNEL, &code(), 0x3000)];
    elf(class64, machine, &segs)
}

fn ram() -> [GpaRange; 1] {
    [GpaRange {
        start: 0,
        end: RAM_PAGES << 12,
    }]
}

/// A guest with [`RAM_PAGES`] of RAM, all of it dirty.
fn guest() -> Guest {
    let mut g = Guest::new(RAM_PAGES);
    for gfn in 0..RAM_PAGES {
        let mfn = g.npt.translate(&g.mem, Gfn(gfn)).unwrap().mfn;
        g.mem.frame_mut(mfn).fill(0xee);
    }
    g
}

fn run(image: &[u8], cfg: &BuildConfig, g: &mut Guest) -> Result<VcpuEntryState, BuildError> {
    build(image, cfg, &mut GuestPhys::new(&g.npt, &mut g.mem))
}

fn plain(ram: &[GpaRange]) -> BuildConfig<'_> {
    BuildConfig {
        ram,
        extra_memmap: &[],
        cmdline: "",
        modules: &[],
    }
}

fn read<T: FromBytes>(g: &Guest, gpa: u64) -> T {
    T::read_from_bytes(&g.read(gpa, size_of::<T>())).unwrap()
}

#[test]
fn loads_elf64_with_start_info() {
    let mut g = guest();
    let image = kernel(true, EM_X86_64, &(KERNEL + 0x10).to_le_bytes());
    let reserved = [HvmMemmapEntry {
        addr: 0xfee0_0000,
        size: 0x1000,
        kind: XEN_HVM_MEMMAP_TYPE_RESERVED,
        reserved: 0,
    }];
    let modules = [
        BootModule {
            data: b"first module",
            cmdline: "m1 arg",
        },
        BootModule {
            data: &[7; 5000],
            cmdline: "",
        },
    ];
    let ram = ram();
    let cfg = BuildConfig {
        ram: &ram,
        extra_memmap: &reserved,
        cmdline: "console=hvc0",
        modules: &modules,
    };
    let entry = run(&image, &cfg, &mut g).unwrap();
    assert_eq!(entry.rip, KERNEL + 0x10);
    assert_eq!(
        entry.rbx,
        KERNEL + 0x3000,
        "start info on the page after the kernel"
    );
    assert_eq!(g.read(KERNEL, 0x1800), code());
    assert!(
        g.read(KERNEL + 0x1800, 0x800).iter().all(|b| *b == 0),
        "bss zeroed"
    );

    let info: HvmStartInfo = read(&g, entry.rbx);
    assert_eq!(
        (info.magic, info.version, info.nr_modules),
        (HVM_START_MAGIC_VALUE, 1, 2)
    );
    assert_eq!(g.read(info.cmdline_paddr, 13), b"console=hvc0\0");
    let map: [HvmMemmapEntry; 2] = read(&g, info.memmap_paddr);
    assert_eq!(info.memmap_entries, 2);
    assert_eq!(
        (map[0].addr, map[0].size, map[0].kind),
        (0, RAM_PAGES << 12, XEN_HVM_MEMMAP_TYPE_RAM)
    );
    assert_eq!(map[1], reserved[0]);
    let mods: [HvmModlistEntry; 2] = read(&g, info.modlist_paddr);
    assert_eq!(mods[0].paddr % PAGE_SIZE as u64, 0);
    assert_eq!(g.read(mods[0].paddr, 12), b"first module");
    assert_eq!(g.read(mods[0].cmdline_paddr, 7), b"m1 arg\0");
    assert_eq!(
        (mods[1].paddr, mods[1].size),
        (mods[0].paddr + 0x1000, 5000)
    );
    assert_eq!(mods[1].cmdline_paddr, 0);
    assert_eq!(g.read(mods[1].paddr + 4999, 1), [7]);
}

#[test]
fn loads_elf32_with_four_byte_note() {
    let mut g = guest();
    let image = kernel(false, EM_386, &(KERNEL as u32).to_le_bytes());
    let ram = ram();
    let entry = run(&image, &plain(&ram), &mut g).unwrap();
    assert_eq!(
        entry,
        VcpuEntryState::pvh(KERNEL as u32, (KERNEL + 0x3000) as u32)
    );
    let info: HvmStartInfo = read(&g, entry.rbx);
    assert_eq!(
        (info.cmdline_paddr, info.modlist_paddr, info.memmap_entries),
        (0, 0, 1)
    );
    assert_eq!(g.read(KERNEL + 0x17ff, 1), [code()[0x17ff]]);
}

#[test]
fn refuses_images_that_are_not_pvh_kernels() {
    let ram = ram();
    let cfg = plain(&ram);
    let e = |image: &[u8]| run(image, &cfg, &mut guest()).unwrap_err();
    let entry = (KERNEL as u32).to_le_bytes();
    assert_eq!(e(b"MZ not an elf at all, sorry"), BuildError::NotElf);
    assert_eq!(
        e(&kernel(true, EM_ARM, &entry)),
        BuildError::WrongMachine(EM_ARM)
    );
    let no_note = elf(true, EM_X86_64, &[load(KERNEL, &code(), 0x3000)]);
    assert_eq!(e(&no_note), BuildError::NoPvhNote);
    let other_note = elf(
        true,
        EM_X86_64,
        &[xen_note(17, &entry), load(KERNEL, &code(), 0x3000)],
    );
    assert_eq!(e(&other_note), BuildError::NoPvhNote);
    assert_eq!(
        e(&kernel(true, EM_X86_64, &[1, 2, 3])),
        BuildError::BadPvhNote
    );
    assert_eq!(
        e(&kernel(true, EM_X86_64, &(1u64 << 32).to_le_bytes())),
        BuildError::BadPvhNote
    );
    assert_eq!(
        e(&kernel(true, EM_X86_64, &0x1000u32.to_le_bytes())),
        BuildError::EntryOutsideImage
    );
    let mut exec = kernel(true, EM_X86_64, &entry);
    exec[16] = 3; // ET_DYN
    assert_eq!(e(&exec), BuildError::NotExecutable);
}

#[test]
fn refuses_hostile_segments() {
    let ram = ram();
    let cfg = plain(&ram);
    let mut g = guest();
    let before = g.read(KERNEL, 16);
    let mut e = |segs: &[Seg]| {
        let mut all = vec![xen_note(18, &(KERNEL as u32).to_le_bytes())];
        all.extend(segs.iter().map(|s| Seg {
            data: s.data.clone(),
            ..*s
        }));
        run(&elf(true, EM_X86_64, &all), &cfg, &mut g).unwrap_err()
    };
    let c = code();
    assert_eq!(
        e(&[load(KERNEL, &c, 0x1000)]),
        BuildError::FileSizeAboveMemSize
    );
    assert_eq!(e(&[load(KERNEL, &c, u64::MAX)]), BuildError::SegmentWraps);
    assert_eq!(
        e(&[load(KERNEL, &c, 1 << 40)]),
        BuildError::SegmentOutsideRam {
            gpa: KERNEL,
            memsz: 1 << 40
        }
    );
    assert_eq!(
        e(&[
            load(KERNEL, &c, 0x2000),
            load(KERNEL + 0x1000, &[1], 0x1000)
        ]),
        BuildError::SegmentsOverlap
    );
    assert_eq!(
        e(&[load(KERNEL, &c, 0x2000), load(RAM_PAGES << 12, &[1], 1)]),
        BuildError::SegmentOutsideRam {
            gpa: RAM_PAGES << 12,
            memsz: 1
        }
    );
    let many: std::vec::Vec<Seg> = (0..17)
        .map(|i| load(KERNEL + i * 0x2000, &c, 0x2000))
        .collect();
    assert_eq!(e(&many), BuildError::TooManySegments);
    assert_eq!(
        g.read(KERNEL, 16),
        before,
        "nothing written by a refused image"
    );
}

#[test]
fn refuses_truncated_images() {
    let ram = ram();
    let cfg = plain(&ram);
    let image = kernel(true, EM_X86_64, &(KERNEL as u32).to_le_bytes());
    for cut in [10, 63, 64 + 56, image.len() - 1] {
        let err = run(&image[..cut], &cfg, &mut guest()).unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::NotElf | BuildError::SegmentTruncated | BuildError::NoPvhNote
            ),
            "cut at {cut}: {err:?}"
        );
    }
}

#[test]
fn refuses_bad_boot_parameters() {
    let image = kernel(true, EM_X86_64, &(KERNEL as u32).to_le_bytes());
    let ram = ram();
    let long = "x".repeat(MAX_CMDLINE + 1);
    let e = |cfg: &BuildConfig| run(&image, cfg, &mut guest()).unwrap_err();
    assert_eq!(
        e(&BuildConfig {
            cmdline: &long,
            ..plain(&ram)
        }),
        BuildError::BadCmdline
    );
    assert_eq!(
        e(&BuildConfig {
            cmdline: "a\0b",
            ..plain(&ram)
        }),
        BuildError::BadCmdline
    );
    let one = BootModule {
        data: b"m",
        cmdline: "",
    };
    let nine = [one; MAX_MODULES + 1];
    assert_eq!(
        e(&BuildConfig {
            modules: &nine,
            ..plain(&ram)
        }),
        BuildError::TooManyModules
    );
    let big = vec![0u8; (RAM_PAGES << 12) as usize];
    let too_big = [BootModule {
        data: &big,
        cmdline: "",
    }];
    assert_eq!(
        e(&BuildConfig {
            modules: &too_big,
            ..plain(&ram)
        }),
        BuildError::NoRoomForBootInfo
    );
    let tight = [GpaRange {
        start: KERNEL,
        end: KERNEL + 0x3000,
    }];
    assert_eq!(e(&plain(&tight)), BuildError::NoRoomForBootInfo);
    let holes = [HvmMemmapEntry::default(); MAX_MEMMAP_ENTRIES];
    assert_eq!(
        e(&BuildConfig {
            extra_memmap: &holes,
            ..plain(&ram)
        }),
        BuildError::TooManyMemmapEntries
    );
}

#[test]
fn a_ram_range_outside_the_p2m_is_a_write_fault() {
    let image = kernel(true, EM_X86_64, &(KERNEL as u32).to_le_bytes());
    let ram = [GpaRange {
        start: 0,
        end: 0x1000_0000,
    }];
    let mut g = guest();
    let err = run(
        &image,
        &BuildConfig {
            modules: &[BootModule {
                data: &[1; 0x40_0000],
                cmdline: "",
            }],
            ..plain(&ram)
        },
        &mut g,
    );
    assert_eq!(
        err,
        Err(BuildError::GuestWrite(
            crate::guest_mem::GuestFault::NotInP2m
        ))
    );
}
