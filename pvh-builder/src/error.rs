//! Why a build failed.

use core::fmt;

use crate::{elf_image, MAX_CMDLINE, MAX_IMAGE_SIZE, MAX_MEMMAP_ENTRIES, MAX_MODULES};

/// A [`GuestLoadTarget`](crate::GuestLoadTarget) refused a write: `len`
/// bytes at `gpa` are not all writable memory of the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadFault {
    /// First byte of the refused write.
    pub gpa: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl fmt::Display for LoadFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} bytes at GPA {:#x} are not writable domain memory",
            self.len, self.gpa
        )
    }
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
    GuestWrite(LoadFault),
    /// Streamed: the program headers are not within the kernel's first
    /// [`stream::MAX_HEADER_BYTES`](crate::stream::MAX_HEADER_BYTES).
    HeadersNotAtStart,
    /// Streamed: the PT_NOTE segments hold more than
    /// [`stream::MAX_NOTE_BYTES`](crate::stream::MAX_NOTE_BYTES), or one
    /// lies beyond the end of the file.
    NoteTooLarge,
    /// Streamed: more bytes than the kernel and ramdisk announced.
    StreamTooLong {
        /// The announced length, kernel and ramdisk.
        len: u64,
    },
    /// Streamed: the build was finished before every byte arrived.
    StreamIncomplete,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            Self::HeadersNotAtStart => write!(
                f,
                "program headers not within the first {} bytes",
                crate::stream::MAX_HEADER_BYTES
            ),
            Self::NoteTooLarge => write!(
                f,
                "PT_NOTE segments larger than {} bytes or beyond the end of the file",
                crate::stream::MAX_NOTE_BYTES
            ),
            Self::StreamTooLong { len } => {
                write!(f, "more bytes than the {len} announced")
            }
            Self::StreamIncomplete => f.write_str("the kernel or ramdisk is incomplete"),
        }
    }
}

impl From<LoadFault> for BuildError {
    fn from(e: LoadFault) -> Self {
        Self::GuestWrite(e)
    }
}
