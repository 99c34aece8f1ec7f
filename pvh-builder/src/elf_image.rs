//! Reading a PVH kernel image: an x86 ELF (ELF32 or ELF64 class, little
//! endian, ET_EXEC) with a `XEN_ELFNOTE_PHYS32_ENTRY` note
//! (`xen/include/public/elfnote.h`). Parsing is the `elf` crate's; the
//! checks a hypervisor needs on a hostile image are here.

use elf::abi::{EM_386, EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE};
use elf::endian::LittleEndian;
use elf::file::FileHeader;
use elf::note::Note;
use elf::segment::ProgramHeader;
use elf::ElfBytes;
use heapless::Vec;

use crate::BuildError;

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u64 = 18;
/// Owner name of Xen's ELF notes.
const XEN_NOTE_OWNER: &str = "Xen";
/// PT_LOAD segments an image may have.
pub const MAX_LOAD_SEGMENTS: usize = 16;

/// One PT_LOAD segment: `file` goes to `gpa`, the rest up to `memsz` is bss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment<'a> {
    /// Guest physical address (`p_paddr`, as Xen loads PVH kernels).
    pub gpa: u64,
    /// Bytes from the file (`p_filesz` of them).
    pub file: &'a [u8],
    /// Size in memory, `>= file.len()`.
    pub memsz: u64,
}

impl LoadSegment<'_> {
    /// One past the segment's last byte; cannot overflow once parsed.
    pub fn end(&self) -> u64 {
        self.gpa + self.memsz
    }
}

/// A parsed, self-consistent kernel image.
#[derive(Debug)]
pub struct KernelImage<'a> {
    /// PVH entry point (from the note).
    pub entry: u32,
    /// Non-empty PT_LOAD segments, non-overlapping.
    pub segments: Vec<LoadSegment<'a>, MAX_LOAD_SEGMENTS>,
}

/// Parses and checks `data` as a PVH kernel.
pub fn parse(data: &[u8]) -> Result<KernelImage<'_>, BuildError> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(data).map_err(|_| BuildError::NotElf)?;
    check_file_header(&elf.ehdr)?;
    let segments = load_segments(&elf)?;
    let entry = pvh_entry(&elf)?;
    check_entry(entry, segments.iter().map(|s| (s.gpa, s.file.len() as u64)))?;
    Ok(KernelImage { entry, segments })
}

/// An x86 executable: the machine and type a PVH kernel has.
pub(crate) fn check_file_header(ehdr: &FileHeader<LittleEndian>) -> Result<(), BuildError> {
    let machine = ehdr.e_machine;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(BuildError::WrongMachine(machine));
    }
    if ehdr.e_type != ET_EXEC {
        return Err(BuildError::NotExecutable);
    }
    Ok(())
}

/// The entry must lie in a segment's file bytes (`(gpa, p_filesz)`).
pub(crate) fn check_entry(
    entry: u32,
    mut loaded: impl Iterator<Item = (u64, u64)>,
) -> Result<(), BuildError> {
    if loaded.any(|(gpa, filesz)| (gpa..gpa + filesz).contains(&u64::from(entry))) {
        Ok(())
    } else {
        Err(BuildError::EntryOutsideImage)
    }
}

/// Checks a PT_LOAD's sizes and that it overlaps none of `placed`
/// (`(gpa, end)` of the segments before it).
pub(crate) fn check_load(
    mut placed: impl Iterator<Item = (u64, u64)>,
    phdr: &ProgramHeader,
) -> Result<(), BuildError> {
    if phdr.p_filesz > phdr.p_memsz {
        return Err(BuildError::FileSizeAboveMemSize);
    }
    let end = phdr
        .p_paddr
        .checked_add(phdr.p_memsz)
        .ok_or(BuildError::SegmentWraps)?;
    if placed.any(|(gpa, e)| gpa < end && phdr.p_paddr < e) {
        return Err(BuildError::SegmentsOverlap);
    }
    Ok(())
}

fn load_segments<'a>(
    elf: &ElfBytes<'a, LittleEndian>,
) -> Result<Vec<LoadSegment<'a>, MAX_LOAD_SEGMENTS>, BuildError> {
    let mut segments: Vec<LoadSegment, MAX_LOAD_SEGMENTS> = Vec::new();
    let phdrs = elf.segments().ok_or(BuildError::NoLoadSegment)?;
    for phdr in phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_memsz != 0)
    {
        let file = elf
            .segment_data(&phdr)
            .map_err(|_| BuildError::SegmentTruncated)?;
        check_load(segments.iter().map(|s| (s.gpa, s.end())), &phdr)?;
        let seg = LoadSegment {
            gpa: phdr.p_paddr,
            file,
            memsz: phdr.p_memsz,
        };
        segments
            .push(seg)
            .map_err(|_| BuildError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(BuildError::NoLoadSegment);
    }
    Ok(segments)
}

/// The PHYS32_ENTRY note's value, from PT_NOTE segments or else SHT_NOTE
/// sections (Xen's libelf looks in both). Its size is 4 or 8 bytes.
fn pvh_entry(elf: &ElfBytes<'_, LittleEndian>) -> Result<u32, BuildError> {
    let from_segments = elf
        .segments()
        .into_iter()
        .flatten()
        .filter(|p| p.p_type == PT_NOTE)
        .find_map(|p| {
            elf.segment_data_as_notes(&p)
                .ok()
                .and_then(|mut notes| notes.find_map(entry_note))
        });
    let desc = match from_segments {
        Some(desc) => desc,
        None => elf
            .section_headers()
            .into_iter()
            .flatten()
            .filter(|s| s.sh_type == elf::abi::SHT_NOTE)
            .find_map(|s| {
                elf.section_data_as_notes(&s)
                    .ok()
                    .and_then(|mut notes| notes.find_map(entry_note))
            })
            .ok_or(BuildError::NoPvhNote)?,
    };
    entry_from_desc(desc)
}

/// The entry address a PHYS32_ENTRY note's descriptor (4 or 8 bytes)
/// holds.
pub(crate) fn entry_from_desc(desc: &[u8]) -> Result<u32, BuildError> {
    let value = match *desc {
        [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => return Err(BuildError::BadPvhNote),
    };
    u32::try_from(value).map_err(|_| BuildError::BadPvhNote)
}

/// The descriptor of `note` if it is Xen's PHYS32_ENTRY note.
pub(crate) fn entry_note<'a>(note: Note<'a>) -> Option<&'a [u8]> {
    match note {
        Note::Unknown(n) if n.name == XEN_NOTE_OWNER && n.n_type == XEN_ELFNOTE_PHYS32_ENTRY => {
            Some(n.desc)
        }
        _ => None,
    }
}
