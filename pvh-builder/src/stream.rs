//! Building a PVH domain from a kernel and a ramdisk that arrive in
//! order, piece by piece, without holding them: the toolstack's
//! streaming create, for kernels larger than dom0 can buffer (Debian's
//! `vmlinux` is 63 MiB).
//!
//! The stream is the kernel ELF file, then the ramdisk (the one boot
//! module, as `hvm_start_info` gives it). [`StreamBuild::push`] takes
//! the pieces in order:
//! - the first [`MAX_HEADER_BYTES`] of the kernel (all of it if shorter)
//!   are kept until they are complete; then the ELF header and program
//!   headers are parsed and checked as [`crate::build`] checks an image
//!   (x86 executable, PT_LOAD sizes and overlaps, every segment in RAM)
//!   and against the announced length (every PT_LOAD's and PT_NOTE's
//!   bytes inside the file), and the boot information is placed after
//!   the kernel with room for the announced ramdisk;
//! - from then on, the bytes in a PT_LOAD's file range go straight to
//!   their GPA, and the PT_NOTE segments' bytes (at most
//!   [`MAX_NOTE_BYTES`] in all) are kept for the PVH entry note;
//! - the ramdisk's bytes go to the module area.
//!
//! [`StreamBuild::finish`], once every byte arrived, reads the entry
//! note, writes the ACPI tables and the boot information and returns
//! vCPU 0's entry.
//!
//! Unlike [`crate::build`], bss is not zeroed: the target's memory must
//! be zeroed already (freshly populated frames are), and no byte of the
//! stream lands there (segments do not overlap; the module area starts
//! after the kernel). The entry note must be in a PT_NOTE segment (Xen's
//! libelf also reads SHT_NOTE sections, which sit at the end of a file,
//! after the bytes that matter).

use abi::convert::usize_from_u64;
use elf::abi::{EI_NIDENT, PN_XNUM, PT_LOAD, PT_NOTE};
use elf::endian::LittleEndian;
use elf::file::{parse_ident, Class, FileHeader, ELF32_EHDR_TAILSIZE, ELF64_EHDR_TAILSIZE};
use elf::note::NoteIterator;
use elf::parse::ParseAt;
use elf::segment::{ProgramHeader, SegmentTable};
use heapless::Vec;

use crate::boot_layout::{BootLayout, ModuleSlot};
use crate::elf_image::{self, MAX_LOAD_SEGMENTS};
use crate::{acpi_tables, plan_boot_info, BuildConfig, BuildError, GuestLoadTarget, PvhEntry};

/// The ELF header and program headers must lie in the kernel's first
/// bytes, this many (they follow the ELF header in every linker's
/// output: Linux's at byte 64).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// PT_NOTE bytes kept for the entry note, in all (Linux 6.1's are 504).
pub const MAX_NOTE_BYTES: usize = 4096;
/// PT_NOTE segments read.
const MAX_NOTE_SEGMENTS: usize = 4;

/// Bytes `offset..offset + len` of the kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileRange {
    offset: u64,
    len: u64,
}

impl FileRange {
    fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// The part of `self` that the piece at `at` with `len` bytes holds,
    /// as (offset in the piece, offset in `self`, length).
    fn overlap(&self, at: u64, len: u64) -> Option<(u64, u64, u64)> {
        let start = self.offset.max(at);
        let end = self.end().min(at + len);
        (start < end).then(|| (start - at, start - self.offset, end - start))
    }
}

/// A PT_LOAD: its file bytes go to `gpa`; it takes `memsz` bytes.
#[derive(Clone, Copy, Debug)]
struct Segment {
    file: FileRange,
    gpa: u64,
    memsz: u64,
}

/// A PT_NOTE: its file bytes are kept at `kept..kept + file.len` of the
/// note buffer.
#[derive(Clone, Copy, Debug)]
struct NoteSegment {
    file: FileRange,
    align: u64,
    kept: usize,
}

/// What the headers said, once they arrived.
#[derive(Debug)]
struct Plan {
    class: Class,
    segments: Vec<Segment, MAX_LOAD_SEGMENTS>,
    notes: Vec<NoteSegment, MAX_NOTE_SEGMENTS>,
    layout: BootLayout,
}

/// A build in progress: what arrived and where the rest goes.
#[derive(Debug)]
pub struct StreamBuild {
    kernel_len: u64,
    ramdisk_len: u64,
    /// Bytes pushed so far.
    received: u64,
    /// The kernel's first bytes, until the headers are parsed.
    header: Vec<u8, MAX_HEADER_BYTES>,
    plan: Option<Plan>,
    note_bytes: [u8; MAX_NOTE_BYTES],
}

impl StreamBuild {
    /// A build of a `kernel_len`-byte kernel followed by a
    /// `ramdisk_len`-byte ramdisk (0: none).
    pub fn new(kernel_len: u64, ramdisk_len: u64) -> Self {
        Self {
            kernel_len,
            ramdisk_len,
            received: 0,
            header: Vec::new(),
            plan: None,
            note_bytes: [0; MAX_NOTE_BYTES],
        }
    }

    /// Bytes pushed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The stream's length: kernel and ramdisk.
    pub fn len(&self) -> u64 {
        self.kernel_len.saturating_add(self.ramdisk_len)
    }

    /// Whether the stream is empty (never true for a kernel).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next `data` of the stream: checked, and written through
    /// `target` where it belongs. `cfg` is the domain's (the same at
    /// every call); it must have no modules (the ramdisk is the stream's).
    pub fn push(
        &mut self,
        data: &[u8],
        cfg: &BuildConfig,
        target: &mut impl GuestLoadTarget,
    ) -> Result<(), BuildError> {
        let len = data.len() as u64;
        if len > self.len() - self.received {
            return Err(BuildError::StreamTooLong { len: self.len() });
        }
        let at = self.received;
        self.received += len;
        if self.plan.is_none() {
            let want = usize_from_u64(self.kernel_len.min(MAX_HEADER_BYTES as u64));
            let take = (want - self.header.len()).min(data.len());
            // Fits: `take` is at most what the buffer lacks.
            let _ = self.header.extend_from_slice(&data[..take]);
            if self.header.len() < want {
                return Ok(());
            }
            let plan = self.plan(cfg)?;
            // The header's bytes (some may belong to a segment), then
            // the rest of this piece.
            let header = core::mem::take(&mut self.header);
            self.route(&plan, 0, &header, target)?;
            let rest = &data[take..];
            self.route(&plan, at + take as u64, rest, target)?;
            self.plan = Some(plan);
            return Ok(());
        }
        // Taken out for the call: `route` writes the note buffer.
        let plan = self.plan.take().ok_or(BuildError::StreamIncomplete)?;
        let routed = self.route(&plan, at, data, target);
        self.plan = Some(plan);
        routed
    }

    /// Writes the piece at stream offset `at` where it belongs.
    fn route(
        &mut self,
        plan: &Plan,
        at: u64,
        data: &[u8],
        target: &mut impl GuestLoadTarget,
    ) -> Result<(), BuildError> {
        let len = data.len() as u64;
        let piece = |from: u64, n: u64| &data[usize_from_u64(from)..usize_from_u64(from + n)];
        for s in &plan.segments {
            if let Some((from, into, n)) = s.file.overlap(at, len) {
                target.write(s.gpa + into, piece(from, n))?;
            }
        }
        for note in &plan.notes {
            if let Some((from, into, n)) = note.file.overlap(at, len) {
                let start = note.kept + usize_from_u64(into);
                self.note_bytes[start..start + usize_from_u64(n)].copy_from_slice(piece(from, n));
            }
        }
        let ramdisk = FileRange {
            offset: self.kernel_len,
            len: self.ramdisk_len,
        };
        if let Some((from, into, n)) = ramdisk.overlap(at, len) {
            target.write(plan.layout.first_module_gpa() + into, piece(from, n))?;
        }
        Ok(())
    }

    /// Parses and checks the headers (complete in `self.header`) and
    /// places the boot information.
    fn plan(&self, cfg: &BuildConfig) -> Result<Plan, BuildError> {
        let header = &self.header[..];
        // `parse_ident` panics on fewer bytes than the identification.
        let ident = header
            .get(..EI_NIDENT)
            .and_then(|ident| parse_ident::<LittleEndian>(ident).ok())
            .ok_or(BuildError::NotElf)?;
        let class = ident.1;
        let tail_len = match class {
            Class::ELF32 => ELF32_EHDR_TAILSIZE,
            Class::ELF64 => ELF64_EHDR_TAILSIZE,
        };
        let tail = header
            .get(EI_NIDENT..EI_NIDENT + tail_len)
            .ok_or(BuildError::NotElf)?;
        let ehdr = FileHeader::parse_tail(ident, tail).map_err(|_| BuildError::NotElf)?;
        elf_image::check_file_header(&ehdr)?;
        let mut segments: Vec<Segment, MAX_LOAD_SEGMENTS> = Vec::new();
        let mut notes: Vec<NoteSegment, MAX_NOTE_SEGMENTS> = Vec::new();
        let mut kept = 0;
        for phdr in program_headers(&ehdr, header)?.iter() {
            let file = FileRange {
                offset: phdr.p_offset,
                len: phdr.p_filesz,
            };
            let in_file = phdr
                .p_offset
                .checked_add(phdr.p_filesz)
                .is_some_and(|end| end <= self.kernel_len);
            match phdr.p_type {
                PT_LOAD if phdr.p_memsz != 0 => {
                    if !in_file {
                        return Err(BuildError::SegmentTruncated);
                    }
                    elf_image::check_load(
                        segments.iter().map(|s| (s.gpa, s.gpa + s.memsz)),
                        &phdr,
                    )?;
                    let segment = Segment {
                        file,
                        gpa: phdr.p_paddr,
                        memsz: phdr.p_memsz,
                    };
                    segments
                        .push(segment)
                        .map_err(|_| BuildError::TooManySegments)?;
                }
                PT_NOTE => {
                    let room = (MAX_NOTE_BYTES - kept) as u64;
                    if !in_file || file.len > room {
                        return Err(BuildError::NoteTooLarge);
                    }
                    let note = NoteSegment {
                        file,
                        align: phdr.p_align,
                        kept,
                    };
                    notes.push(note).map_err(|_| BuildError::NoteTooLarge)?;
                    kept += usize_from_u64(file.len);
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(BuildError::NoLoadSegment);
        }
        if !cfg.modules.is_empty() {
            return Err(BuildError::TooManyModules);
        }
        let (_, layout) = plan_boot_info(
            cfg,
            &self.modules(),
            segments.iter().map(|s| (s.gpa, s.gpa + s.memsz)),
        )?;
        Ok(Plan {
            class,
            segments,
            notes,
            layout,
        })
    }

    /// The ramdisk as the boot information's module, if there is one.
    fn modules(&self) -> Vec<ModuleSlot<'static>, 1> {
        let ramdisk = ModuleSlot {
            len: self.ramdisk_len,
            cmdline: "",
            data: None,
        };
        // One slot, room for one.
        (self.ramdisk_len != 0)
            .then_some(ramdisk)
            .into_iter()
            .collect()
    }

    /// Once every byte arrived: the entry note, the ACPI tables and the
    /// boot information; vCPU 0's entry.
    pub fn finish(
        &self,
        cfg: &BuildConfig,
        target: &mut impl GuestLoadTarget,
    ) -> Result<PvhEntry, BuildError> {
        let plan = match &self.plan {
            Some(plan) if self.received == self.len() => plan,
            _ => return Err(BuildError::StreamIncomplete),
        };
        let entry = self.entry(plan)?;
        elf_image::check_entry(entry, plan.segments.iter().map(|s| (s.gpa, s.file.len)))?;
        let memmap = crate::memory_map(cfg)?;
        let rsdp = acpi_tables(
            plan.segments.iter().map(|s| (s.gpa, s.gpa + s.memsz)),
            cfg,
            target,
        )?;
        plan.layout
            .write(cfg, &self.modules(), &memmap, rsdp, target)?;
        Ok(PvhEntry {
            entry,
            start_info_gpa: plan.layout.start_info_gpa(),
        })
    }

    /// The PHYS32_ENTRY note's value, from the kept PT_NOTE bytes.
    fn entry(&self, plan: &Plan) -> Result<u32, BuildError> {
        plan.notes
            .iter()
            .find_map(|n| {
                let bytes = &self.note_bytes[n.kept..n.kept + usize_from_u64(n.file.len)];
                let align = usize::try_from(n.align).unwrap_or(0);
                NoteIterator::new(LittleEndian, plan.class, align, bytes)
                    .find_map(elf_image::entry_note)
                    .map(elf_image::entry_from_desc)
            })
            .unwrap_or(Err(BuildError::NoPvhNote))
    }
}

/// The program header table, which must lie in `header`.
fn program_headers<'a>(
    ehdr: &FileHeader<LittleEndian>,
    header: &'a [u8],
) -> Result<SegmentTable<'a, LittleEndian>, BuildError> {
    let entsize = ProgramHeader::size_for(ehdr.class);
    if usize::from(ehdr.e_phentsize) != entsize || ehdr.e_phnum == PN_XNUM {
        return Err(BuildError::NotElf);
    }
    let table = usize::try_from(ehdr.e_phoff)
        .ok()
        .and_then(|start| Some(start..start.checked_add(entsize * usize::from(ehdr.e_phnum))?))
        .and_then(|range| header.get(range))
        .ok_or(BuildError::HeadersNotAtStart)?;
    Ok(SegmentTable::new(LittleEndian, ehdr.class, table))
}
