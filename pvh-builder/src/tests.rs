use super::*;
use crate::test_images::{elf, kernel, kernel_code as code, load, xen_note, Seg, KERNEL_GPA};
use abi::xen::start_info::{
    HvmModlistEntry, HvmStartInfo, HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_RESERVED,
};
use abi::xen::PAGE_SIZE;
use elf::abi::{EM_386, EM_ARM, EM_X86_64};
use std::vec::Vec;
use zerocopy::FromBytes;

const KERNEL: u64 = KERNEL_GPA;
const RAM_PAGES: u64 = 0x140;

/// A domain's memory for the tests: RAM ranges backed by vectors, all
/// bytes 0xee at first. A write outside them is refused and writes nothing.
struct Ram {
    ranges: Vec<(u64, Vec<u8>)>,
}

impl Ram {
    fn new(ranges: &[GpaRange]) -> Self {
        let ranges = ranges
            .iter()
            .map(|r| (r.start, vec![0xee; (r.end - r.start) as usize]))
            .collect();
        Self { ranges }
    }

    /// The bytes `[gpa, gpa + len)`, if one range holds them all.
    fn bytes_mut(&mut self, gpa: u64, len: u64) -> Result<&mut [u8], LoadFault> {
        let fault = LoadFault { gpa, len };
        let end = gpa.checked_add(len).ok_or(fault)?;
        let (base, bytes) = self
            .ranges
            .iter_mut()
            .find(|(base, bytes)| *base <= gpa && end <= base + bytes.len() as u64)
            .ok_or(fault)?;
        Ok(&mut bytes[(gpa - *base) as usize..(end - *base) as usize])
    }

    fn read(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        self.bytes_mut(gpa, len as u64).unwrap().to_vec()
    }
}

impl GuestLoadTarget for Ram {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        self.bytes_mut(gpa, bytes.len() as u64)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        self.bytes_mut(gpa, len)?.fill(0);
        Ok(())
    }
}

fn ram() -> [GpaRange; 1] {
    [GpaRange {
        start: 0,
        end: RAM_PAGES << 12,
    }]
}

/// A guest with [`RAM_PAGES`] of RAM from GPA 0.
fn guest() -> Ram {
    Ram::new(&ram())
}

fn run(image: &[u8], cfg: &BuildConfig, g: &mut Ram) -> Result<PvhEntry, BuildError> {
    build(image, cfg, g)
}

fn plain(ram: &[GpaRange]) -> BuildConfig<'_> {
    BuildConfig {
        ram,
        extra_memmap: &[],
        cmdline: "",
        modules: &[],
        acpi_vcpus: 0,
    }
}

fn read<T: FromBytes>(g: &mut Ram, gpa: u64) -> T {
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
        acpi_vcpus: 0,
    };
    let entry = run(&image, &cfg, &mut g).unwrap();
    assert_eq!(u64::from(entry.entry), KERNEL + 0x10);
    assert_eq!(
        u64::from(entry.start_info_gpa),
        KERNEL + 0x3000,
        "start info on the page after the kernel"
    );
    assert_eq!(g.read(KERNEL, 0x1800), code());
    assert!(
        g.read(KERNEL + 0x1800, 0x800).iter().all(|b| *b == 0),
        "bss zeroed"
    );

    let info: HvmStartInfo = read(&mut g, entry.start_info_gpa.into());
    assert_eq!(
        (info.magic, info.version, info.nr_modules),
        (HVM_START_MAGIC_VALUE, 1, 2)
    );
    assert_eq!(g.read(info.cmdline_paddr, 13), b"console=hvc0\0");
    let map: [HvmMemmapEntry; 2] = read(&mut g, info.memmap_paddr);
    assert_eq!(info.memmap_entries, 2);
    assert_eq!(
        (map[0].addr, map[0].size, map[0].kind),
        (0, RAM_PAGES << 12, XEN_HVM_MEMMAP_TYPE_RAM)
    );
    assert_eq!(map[1], reserved[0]);
    let mods: [HvmModlistEntry; 2] = read(&mut g, info.modlist_paddr);
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
        PvhEntry {
            entry: KERNEL as u32,
            start_info_gpa: (KERNEL + 0x3000) as u32
        }
    );
    let info: HvmStartInfo = read(&mut g, entry.start_info_gpa.into());
    assert_eq!(
        (info.cmdline_paddr, info.modlist_paddr, info.memmap_entries),
        (0, 0, 1)
    );
    assert_eq!(g.read(KERNEL + 0x17ff, 1), [code()[0x17ff]]);
}

#[test]
fn boot_info_goes_in_the_ram_range_holding_the_kernel() {
    // Given out of order, as a toolstack might: low memory, then the kernel's.
    let ram = [
        GpaRange {
            start: KERNEL,
            end: KERNEL + 0x8000,
        },
        GpaRange {
            start: 0,
            end: 0xa_0000,
        },
    ];
    let mut g = Ram::new(&ram);
    let image = kernel(true, EM_X86_64, &(KERNEL as u32).to_le_bytes());
    let entry = run(&image, &plain(&ram), &mut g).unwrap();
    assert_eq!(u64::from(entry.start_info_gpa), KERNEL + 0x3000);
    let info: HvmStartInfo = read(&mut g, entry.start_info_gpa.into());
    let map: [HvmMemmapEntry; 2] = read(&mut g, info.memmap_paddr);
    assert_eq!(
        [(map[0].addr, map[0].size), (map[1].addr, map[1].size)],
        [(0, 0xa_0000), (KERNEL, 0x8000)],
        "memory map sorted by address"
    );
    assert_eq!(g.read(0, 16), [0xee; 16], "low memory untouched");
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
        all.extend_from_slice(segs);
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
    let many: Vec<Seg> = (0..17)
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
fn a_ram_range_outside_the_target_is_a_write_fault() {
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
    // The module goes on the page after the start info page.
    assert_eq!(
        err,
        Err(BuildError::GuestWrite(LoadFault {
            gpa: KERNEL + 0x4000,
            len: 0x40_0000
        }))
    );
}

#[test]
fn acpi_tables_are_written_and_their_rsdp_given_only_when_asked_and_free() {
    let image = kernel(true, EM_X86_64, &(KERNEL + 0x10).to_le_bytes());
    let ram = ram();
    let rsdp_of = |acpi_vcpus, ram: &[GpaRange]| {
        let mut g = Ram::new(ram);
        let cfg = BuildConfig {
            acpi_vcpus,
            ..plain(ram)
        };
        let entry = run(&image, &cfg, &mut g).unwrap();
        let info: HvmStartInfo = read(&mut g, entry.start_info_gpa.into());
        (info.rsdp_paddr, g)
    };
    let (rsdp, mut g) = rsdp_of(2, &ram);
    assert_eq!(rsdp, crate::acpi::ACPI_AREA);
    assert_eq!(
        g.read(rsdp, crate::acpi::ACPI_AREA_SIZE),
        crate::acpi::tables(2)
    );
    assert_eq!(rsdp_of(0, &ram).0, 0, "not asked");
    let high = [GpaRange {
        start: 0x10_0000,
        end: RAM_PAGES << 12,
    }];
    assert_eq!(rsdp_of(1, &high).0, 0, "no RAM at the ACPI area");
}

/// The streaming build ([`stream`]).
mod streamed {
    use super::*;
    use crate::stream::{StreamBuild, MAX_HEADER_BYTES, MAX_NOTE_BYTES};
    use crate::test_images::PHYS32_ENTRY_NOTE;

    /// A guest whose RAM is zero, as freshly populated frames are.
    fn zeroed() -> Ram {
        let mut g = guest();
        g.zero(0, RAM_PAGES << 12).unwrap();
        g
    }

    /// Streams `kernel` then `ramdisk` in pieces of `piece` bytes.
    fn stream(
        kernel: &[u8],
        ramdisk: &[u8],
        piece: usize,
        cfg: &BuildConfig,
        g: &mut Ram,
    ) -> Result<PvhEntry, BuildError> {
        let mut s = StreamBuild::new(kernel.len() as u64, ramdisk.len() as u64);
        let all: Vec<u8> = kernel.iter().chain(ramdisk).copied().collect();
        for data in all.chunks(piece) {
            s.push(data, cfg, g)?;
        }
        assert_eq!(s.received(), s.len());
        s.finish(cfg, g)
    }

    /// A kernel whose headers, note and code fill more than one header
    /// buffer: a segment starts inside the first piece and goes on.
    fn big_kernel() -> Vec<u8> {
        let code: Vec<u8> = (0..0x9000u32).map(|i| (i % 253) as u8).collect();
        elf(
            true,
            EM_X86_64,
            &[
                xen_note(PHYS32_ENTRY_NOTE, &(KERNEL + 0x20).to_le_bytes()),
                load(KERNEL, &code, 0xa000),
                load(KERNEL + 0xb000, &[5; 0x100], 0x1000),
            ],
        )
    }

    #[test]
    fn streaming_writes_what_the_buffered_build_writes() {
        let ramdisk: Vec<u8> = (0..0x2345u32).map(|i| (i * 7) as u8).collect();
        let ram = ram();
        let cfg = BuildConfig {
            cmdline: "console=hvc0",
            acpi_vcpus: 2,
            ..plain(&ram)
        };
        for image in [
            kernel(true, EM_X86_64, &(KERNEL + 8).to_le_bytes()),
            big_kernel(),
        ] {
            let mut want = zeroed();
            let modules = [BootModule {
                data: &ramdisk,
                cmdline: "",
            }];
            let expected = build(
                &image,
                &BuildConfig {
                    modules: &modules,
                    ..cfg
                },
                &mut want,
            )
            .unwrap();
            for piece in [1, 7, 4096, MAX_HEADER_BYTES, 100_000] {
                let mut got = zeroed();
                assert_eq!(
                    stream(&image, &ramdisk, piece, &cfg, &mut got),
                    Ok(expected),
                    "pieces of {piece}"
                );
                assert!(
                    got.ranges == want.ranges,
                    "pieces of {piece}: memory differs"
                );
            }
        }
    }

    #[test]
    fn no_ramdisk_means_no_module() {
        let ram = ram();
        let image = big_kernel();
        let mut g = zeroed();
        let entry = stream(&image, &[], 4096, &plain(&ram), &mut g).unwrap();
        let info: HvmStartInfo = read(&mut g, entry.start_info_gpa.into());
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }

    #[test]
    fn hostile_streams_are_refused() {
        let ram = ram();
        let cfg = plain(&ram);
        let image = big_kernel();
        let try_stream = |kernel: &[u8], kernel_len: u64, ramdisk_len: u64| {
            let mut s = StreamBuild::new(kernel_len, ramdisk_len);
            let mut g = zeroed();
            for data in kernel.chunks(4096) {
                s.push(data, &cfg, &mut g)?;
            }
            s.finish(&cfg, &mut g)
        };
        // A file shorter than its segments say.
        assert_eq!(
            try_stream(&image[..image.len() - 1], image.len() as u64 - 1, 0),
            Err(BuildError::SegmentTruncated)
        );
        // More bytes than announced.
        let longer = [&image[..], &[0; 10]].concat();
        assert_eq!(
            try_stream(&longer, image.len() as u64 + 9, 0),
            Err(BuildError::StreamTooLong {
                len: image.len() as u64 + 9
            })
        );
        // Finished before the ramdisk came.
        assert_eq!(
            try_stream(&image, image.len() as u64, 10),
            Err(BuildError::StreamIncomplete)
        );
        // A ramdisk that does not fit in RAM after the kernel.
        assert_eq!(
            try_stream(&image, image.len() as u64, RAM_PAGES << 12),
            Err(BuildError::NoRoomForBootInfo)
        );
        let overlapping = elf(
            true,
            EM_X86_64,
            &[
                xen_note(PHYS32_ENTRY_NOTE, &(KERNEL as u32).to_le_bytes()),
                load(KERNEL, &[1; 0x100], 0x2000),
                load(KERNEL + 0x1000, &[2; 0x100], 0x100),
            ],
        );
        assert_eq!(
            try_stream(&overlapping, overlapping.len() as u64, 0),
            Err(BuildError::SegmentsOverlap)
        );
        let outside = elf(
            true,
            EM_X86_64,
            &[
                xen_note(PHYS32_ENTRY_NOTE, &(KERNEL as u32).to_le_bytes()),
                load((RAM_PAGES << 12) - 0x10, &[1; 0x100], 0x100),
            ],
        );
        assert_eq!(
            try_stream(&outside, outside.len() as u64, 0),
            Err(BuildError::SegmentOutsideRam {
                gpa: (RAM_PAGES << 12) - 0x10,
                memsz: 0x100
            })
        );
        let no_note = elf(true, EM_X86_64, &[load(KERNEL, &[1; 0x100], 0x100)]);
        assert_eq!(
            try_stream(&no_note, no_note.len() as u64, 0),
            Err(BuildError::NoPvhNote)
        );
        let huge_note = elf(
            true,
            EM_X86_64,
            &[
                xen_note(PHYS32_ENTRY_NOTE, &[0; MAX_NOTE_BYTES]),
                load(KERNEL, &[1; 0x100], 0x100),
            ],
        );
        assert_eq!(
            try_stream(&huge_note, huge_note.len() as u64, 0),
            Err(BuildError::NoteTooLarge)
        );
        // Program headers beyond the first MAX_HEADER_BYTES (e_phoff at
        // byte 32 of an ELF64 header).
        let mut far = image.clone();
        far[32..40].copy_from_slice(&(MAX_HEADER_BYTES as u64).to_le_bytes());
        far.resize(MAX_HEADER_BYTES + 0x200, 0);
        assert_eq!(
            try_stream(&far, far.len() as u64, 0),
            Err(BuildError::HeadersNotAtStart)
        );
        assert_eq!(try_stream(b"MZ", 2, 0), Err(BuildError::NotElf));
    }
}
