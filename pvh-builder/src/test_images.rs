//! Small PVH kernel images for tests (feature `test-images`): ELF32 or
//! ELF64 files built from program headers, with a "Xen" note
//! (`xen/include/public/elfnote.h`).

// ELF32 words and the u16 header fields take the low bits of the values on
// purpose; every value a test passes fits.
#![allow(clippy::cast_possible_truncation)]

use alloc::vec::Vec;

use elf::abi::{PT_LOAD, PT_NOTE};

/// Where [`kernel`] loads.
pub const KERNEL_GPA: u64 = 0x10_0000;
/// `XEN_ELFNOTE_PHYS32_ENTRY`.
pub const PHYS32_ENTRY_NOTE: u32 = 18;

/// One program header of a test image, with its bytes.
#[derive(Clone, Debug)]
pub struct Seg {
    kind: u32,
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
}

/// A PT_LOAD segment: `data` at `paddr`, `memsz` bytes in memory.
pub fn load(paddr: u64, data: &[u8], memsz: u64) -> Seg {
    Seg {
        kind: PT_LOAD,
        paddr,
        data: data.to_vec(),
        memsz,
    }
}

/// A PT_NOTE segment holding one "Xen" note of `n_type` with `desc`.
pub fn xen_note(n_type: u32, desc: &[u8]) -> Seg {
    let mut d = Vec::new();
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
pub fn elf(class64: bool, machine: u16, segs: &[Seg]) -> Vec<u8> {
    let (ehsize, phsize) = if class64 { (64u64, 56u64) } else { (52, 32) };
    let mut out = Vec::new();
    let word = |out: &mut Vec<u8>, v: u64| {
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

/// The 0x1800 bytes of [`kernel`]'s code.
pub fn kernel_code() -> Vec<u8> {
    (0..0x1800u32).map(|i| (i % 251) as u8).collect()
}

/// A kernel at [`KERNEL_GPA`]: [`kernel_code`] then bss up to 0x3000 bytes,
/// and the PVH entry note with `entry_bytes` as its value.
pub fn kernel(class64: bool, machine: u16, entry_bytes: &[u8]) -> Vec<u8> {
    let segs = [
        xen_note(PHYS32_ENTRY_NOTE, entry_bytes),
        load(KERNEL_GPA, &kernel_code(), 0x3000),
    ];
    elf(class64, machine, &segs)
}
