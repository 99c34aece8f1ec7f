//! The PVH loader (`pvh-builder`): any image bytes, or ELF files built
//! from any program headers and notes, with any RAM layout, memory map,
//! command lines and modules. Besides not panicking, the builder must
//! write only inside the RAM it was given, and a successful build must
//! leave a start info with Xen's magic where EBX points.
#![no_main]

use abi::xen::start_info::{HvmMemmapEntry, HVM_START_MAGIC_VALUE};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pvh_builder::test_images::{elf, load, xen_note, Seg};
use pvh_builder::{BootModule, BuildConfig, GpaRange, GuestLoadTarget, LoadFault};

/// One program header of a built image.
#[derive(Arbitrary, Debug)]
enum SegSpec {
    Load {
        paddr: u32,
        data: Vec<u8>,
        extra: u16,
    },
    Note {
        n_type: u8,
        desc: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Image {
    Raw(Vec<u8>),
    Built {
        class64: bool,
        machine: u8,
        segs: Vec<SegSpec>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    image: Image,
    /// RAM ranges: first page, pages.
    ram: Vec<(u16, u16)>,
    extra: Vec<(u32, u32, u32)>,
    cmdline: String,
    modules: Vec<(Vec<u8>, String)>,
}

/// The domain's memory: records the bytes at the start info's address.
struct Memory<'a> {
    ram: &'a [GpaRange],
    start_info: Vec<(u64, Vec<u8>)>,
}

impl Memory<'_> {
    fn check(&self, gpa: u64, len: u64) {
        let end = gpa.checked_add(len).expect("write wraps");
        assert!(
            self.ram.iter().any(|r| r.start <= gpa && end <= r.end),
            "write of {len:#x} bytes at {gpa:#x} outside RAM {:x?}",
            self.ram
        );
    }
}

impl GuestLoadTarget for Memory<'_> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadFault> {
        self.check(gpa, bytes.len() as u64);
        if bytes.starts_with(&HVM_START_MAGIC_VALUE.to_le_bytes()) {
            self.start_info.push((gpa, bytes.to_vec()));
        }
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadFault> {
        self.check(gpa, len);
        Ok(())
    }
}

fn image(spec: Image) -> Vec<u8> {
    match spec {
        Image::Raw(bytes) => bytes,
        Image::Built {
            class64,
            machine,
            segs,
        } => {
            // EM_386, EM_X86_64 or anything.
            let machine = match machine % 4 {
                0 => 3,
                1 | 2 => 62,
                _ => machine.into(),
            };
            let segs: Vec<Seg> = segs
                .into_iter()
                .take(20)
                .map(|s| match s {
                    SegSpec::Load { paddr, data, extra } => {
                        load(paddr.into(), &data, data.len() as u64 + u64::from(extra))
                    }
                    SegSpec::Note { n_type, desc } => xen_note(n_type.into(), &desc),
                })
                .collect();
            elf(class64, machine, &segs)
        }
    }
}

fuzz_target!(|input: Input| {
    let image = image(input.image);
    let ram: Vec<GpaRange> = input
        .ram
        .iter()
        .take(20)
        .map(|&(page, pages)| GpaRange {
            start: u64::from(page) << 12,
            end: (u64::from(page) + u64::from(pages)) << 12,
        })
        .collect();
    let extra: Vec<HvmMemmapEntry> = input
        .extra
        .iter()
        .take(20)
        .map(|&(addr, size, kind)| HvmMemmapEntry {
            addr: u64::from(addr) << 12,
            size: size.into(),
            kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<BootModule> = input
        .modules
        .iter()
        .take(10)
        .map(|(data, cmdline)| BootModule { data, cmdline })
        .collect();
    let cfg = BuildConfig {
        ram: &ram,
        extra_memmap: &extra,
        cmdline: &input.cmdline,
        modules: &modules,
        acpi_vcpus: 0,
    };
    let _ = pvh_builder::elf_image::parse(&image);
    let _ = pvh_builder::memory_map(&cfg);
    let mut memory = Memory {
        ram: &ram,
        start_info: Vec::new(),
    };
    if let Ok(entry) = pvh_builder::build(&image, &cfg, &mut memory) {
        let at = u64::from(entry.start_info_gpa);
        assert!(
            memory.start_info.iter().any(|(gpa, _)| *gpa == at),
            "no start info written at EBX {at:#x}"
        );
    }
});
