//! The boot bundle: the single boot module (`-initrd`) that carries dom0's
//! kernel and the boot-time domUs' kernels, each with its name, memory,
//! vCPU count and command line. `cargo xtask` builds it
//! ([`BundleBuilder`], feature `alloc`); xen-core reads it with
//! [`Bundle::parse`], which checks everything before anything is used and
//! never panics, whatever the bytes.
//!
//! # Format, version 1
//!
//! All integers are little-endian `u32`; offsets are from the first byte of
//! the bundle.
//!
//! Header, [`HEADER_LEN`] = 24 bytes:
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    8 | magic, [`BUNDLE_MAGIC`] (`"XCBUNDLE"`)                  |
//! |      8 |    4 | format version, [`BUNDLE_VERSION`]                      |
//! |     12 |    4 | entry count, at most [`MAX_BUNDLE_ENTRIES`]             |
//! |     16 |    4 | total length in bytes (header, entries and images)      |
//! |     20 |    4 | CRC-32 (ISO-HDLC, as zlib) of bytes 24 .. total length  |
//!
//! Then `entry count` entries of [`ENTRY_LEN`] = 256 bytes each:
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! |      0 |    4 | kind: 1 = dom0 kernel, 2 = domU kernel, 3 = dom0 module  |
//! |        |      | ([`ImageKind`])                                          |
//! |      4 |    4 | memory in MiB (non-zero; zero for a dom0 module)         |
//! |      8 |    4 | vCPU count (non-zero; zero for a dom0 module)            |
//! |     12 |    4 | image offset (at or after the end of the entry table)    |
//! |     16 |    4 | image size in bytes (non-zero)                           |
//! |     20 |    4 | flags: bit 0 [`ENTRY_FLAG_CONTROL`] (domU kernels only)  |
//! |     24 |    8 | reserved, zero                                           |
//! |     32 |   32 | name: printable ASCII without spaces, NUL-padded         |
//! |     64 |  192 | command line: printable ASCII, NUL-padded                |
//!
//! A dom0 module is not a domain: its bytes are handed to dom0 alone as a
//! PVH boot module (`hvm_modlist_entry`) whose command line is the
//! entry's command line, as Xen hands dom0 its multiboot modules. It
//! carries what must reach dom0 and nobody else, never on a command line
//! a log prints (the management key of `cargo xtask up`, see
//! [`MGMT_KEY_MODULE`]).
//!
//! Text fields hold at most [`MAX_NAME_LEN`] / [`MAX_CMDLINE_LEN`] bytes;
//! a field that is full has no terminating NUL, and every byte after the
//! first NUL must be NUL. Names are unique; exactly one entry is dom0.
//!
//! The images follow the entry table. The builder starts each one at a
//! multiple of [`IMAGE_ALIGN`] from the bundle start; the parser accepts any
//! offset inside the bundle. Bytes after `total length` (a loader may pad
//! the module) are ignored.

use core::fmt;

use crc::{Crc, CRC_32_ISO_HDLC};
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First eight bytes of every bundle.
pub const BUNDLE_MAGIC: [u8; 8] = *b"XCBUNDLE";
/// The format version this module reads and writes.
pub const BUNDLE_VERSION: u32 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 24;
/// Size of one entry in bytes.
pub const ENTRY_LEN: usize = 256;
/// Most entries (images) one bundle may hold.
pub const MAX_BUNDLE_ENTRIES: usize = 32;
/// Longest name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest command line, in bytes.
pub const MAX_CMDLINE_LEN: usize = 192;
/// Entry flag: the domU is a control domain (Xen's `is_control_domain`:
/// it may use the control hypercall and act on other domains; the
/// hardware stays dom0's). Only a domU kernel entry may carry it; no
/// other flag bit is defined (both rejected by [`Bundle::parse`]).
pub const ENTRY_FLAG_CONTROL: u32 = 1;
/// Alignment of images written by [`BundleBuilder`] (one 4 KiB page).
pub const IMAGE_ALIGN: usize = 4096;

/// The CRC-32 over everything after the header.
const CHECKSUM: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// On-disk header; see the module docs for the field meanings.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    version: U32,
    entry_count: U32,
    total_len: U32,
    crc32: U32,
}

/// On-disk entry; see the module docs for the field meanings.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy)]
#[repr(C)]
struct RawEntry {
    kind: U32,
    memory_mib: U32,
    vcpus: U32,
    image_offset: U32,
    image_size: U32,
    flags: U32,
    reserved: [u8; 8],
    name: [u8; MAX_NAME_LEN],
    cmdline: [u8; MAX_CMDLINE_LEN],
}

/// The command line of the dom0 module that holds the management key
/// (the raw key bytes, `mgmt::auth::KEY_LEN` of them).
pub const MGMT_KEY_MODULE: &str = "mgmt-key";

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The privileged first domain's kernel (exactly one per bundle).
    Dom0Kernel,
    /// A boot-time unprivileged domain's kernel.
    DomUKernel,
    /// A boot module for dom0 only (no memory, no vCPUs of its own).
    Dom0Module,
    /// A boot module for the boot-time domU of the same name (e.g. Linux's
    /// initramfs; no memory, no vCPUs of its own).
    DomUModule,
}

impl ImageKind {
    /// Whether the entry is a domain (kernels) rather than a module.
    pub const fn is_domain(self) -> bool {
        !matches!(self, ImageKind::Dom0Module | ImageKind::DomUModule)
    }
}

impl ImageKind {
    #[cfg(any(feature = "alloc", test))]
    const fn to_raw(self) -> u32 {
        match self {
            ImageKind::Dom0Kernel => 1,
            ImageKind::DomUKernel => 2,
            ImageKind::Dom0Module => 3,
            ImageKind::DomUModule => 4,
        }
    }

    const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(ImageKind::Dom0Kernel),
            2 => Some(ImageKind::DomUKernel),
            3 => Some(ImageKind::Dom0Module),
            4 => Some(ImageKind::DomUModule),
            _ => None,
        }
    }
}

/// A text field of an entry, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// The image's name.
    Name,
    /// The image's command line.
    Cmdline,
}

impl fmt::Display for TextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextField::Name => "name",
            TextField::Cmdline => "command line",
        })
    }
}

/// Why a bundle was rejected. `Display` gives the message for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    /// Fewer bytes than the header or the recorded total length need.
    Truncated { need: usize, have: usize },
    /// The first eight bytes are not [`BUNDLE_MAGIC`].
    BadMagic { found: [u8; 8] },
    /// A format version this code does not read.
    UnsupportedVersion { found: u32 },
    /// More entries than [`MAX_BUNDLE_ENTRIES`].
    TooManyEntries { count: u32 },
    /// The recorded total length does not even cover the entry table.
    TotalLengthTooSmall { total_len: u32, table_end: usize },
    /// The CRC-32 recorded in the header differs from the contents'.
    ChecksumMismatch { expected: u32, found: u32 },
    /// An entry's kind is neither dom0 nor domU.
    UnknownKind { entry: usize, kind: u32 },
    /// An entry's reserved bytes are not zero.
    ReservedNotZero { entry: usize },
    /// An entry has an unknown flag, or a flag its kind may not have.
    BadFlags { entry: usize, flags: u32 },
    /// An entry asks for no memory or no vCPU.
    ZeroResource { entry: usize, what: &'static str },
    /// A dom0 module asks for memory or vCPUs (it is no domain).
    ModuleResource { entry: usize },
    /// An entry's image is empty, overlaps the table or leaves the bundle.
    ImageOutOfBounds {
        entry: usize,
        offset: u32,
        size: u32,
        total_len: u32,
    },
    /// A text field has non-NUL bytes after its first NUL.
    NotNulPadded { entry: usize, field: TextField },
    /// A text field is not valid UTF-8.
    NotUtf8 { entry: usize, field: TextField },
    /// A text field holds a control, space (names only) or non-ASCII character.
    BadCharacter { entry: usize, field: TextField },
    /// An entry has an empty name.
    EmptyName { entry: usize },
    /// Two entries have the same name.
    DuplicateName { first: usize, second: usize },
    /// No entry is a dom0 kernel.
    NoDom0,
    /// More than one entry is a dom0 kernel.
    MultipleDom0 { first: usize, second: usize },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BundleError::Truncated { need, have } => {
                write!(f, "truncated: need {need} bytes, have {have}")
            }
            BundleError::BadMagic { found } => write!(
                f,
                "bad magic {found:02x?}: not a boot bundle (expected \"XCBUNDLE\")"
            ),
            BundleError::UnsupportedVersion { found } => write!(
                f,
                "unsupported format version {found} (this xen-core reads version {BUNDLE_VERSION})"
            ),
            BundleError::TooManyEntries { count } => write!(
                f,
                "too many entries: {count} (at most {MAX_BUNDLE_ENTRIES})"
            ),
            BundleError::TotalLengthTooSmall { total_len, table_end } => write!(
                f,
                "total length {total_len} is smaller than the header and entry table ({table_end} bytes)"
            ),
            BundleError::ChecksumMismatch { expected, found } => write!(
                f,
                "checksum mismatch: header says CRC32 {expected:#010x}, contents have {found:#010x}"
            ),
            BundleError::UnknownKind { entry, kind } => {
                write!(
                    f,
                    "entry {entry}: unknown image kind {kind} (1 = dom0, 2 = domU, 3 = dom0 module)"
                )
            }
            BundleError::ReservedNotZero { entry } => {
                write!(f, "entry {entry}: reserved bytes are not zero")
            }
            BundleError::BadFlags { entry, flags } => write!(
                f,
                "entry {entry}: flags {flags:#x} (only a domU kernel may be a control domain, bit 0)"
            ),
            BundleError::ZeroResource { entry, what } => {
                write!(f, "entry {entry}: {what} is zero")
            }
            BundleError::ModuleResource { entry } => write!(
                f,
                "entry {entry}: a dom0 module has no memory or vCPUs of its own (both must be 0)"
            ),
            BundleError::ImageOutOfBounds { entry, offset, size, total_len } => write!(
                f,
                "entry {entry} out of bounds: image at offset {offset}, {size} bytes, \
                 must be non-empty and lie after the entry table within the bundle's {total_len} bytes"
            ),
            BundleError::NotNulPadded { entry, field } => {
                write!(f, "entry {entry}: {field} has bytes after its terminating NUL")
            }
            BundleError::NotUtf8 { entry, field } => {
                write!(f, "entry {entry}: {field} is not UTF-8")
            }
            BundleError::BadCharacter { entry, field } => write!(
                f,
                "entry {entry}: {field} holds a character other than printable ASCII{}",
                if field == TextField::Name { " without spaces" } else { "" }
            ),
            BundleError::EmptyName { entry } => write!(f, "entry {entry}: empty name"),
            BundleError::DuplicateName { first, second } => {
                write!(f, "entries {first} and {second} have the same name")
            }
            BundleError::NoDom0 => f.write_str("no dom0 image"),
            BundleError::MultipleDom0 { first, second } => write!(
                f,
                "more than one dom0 image (entries {first} and {second})"
            ),
        }
    }
}

/// One image of a bundle, borrowed from the bundle's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleEntry<'a> {
    pub kind: ImageKind,
    /// Domain name, 1..=[`MAX_NAME_LEN`] printable ASCII bytes, no spaces.
    pub name: &'a str,
    /// Kernel command line, 0..=[`MAX_CMDLINE_LEN`] printable ASCII bytes.
    pub cmdline: &'a str,
    /// Memory to give the domain, in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// A control domain ([`ENTRY_FLAG_CONTROL`]; domU kernels only).
    pub control: bool,
    /// The kernel image (an ELF file).
    pub image: &'a [u8],
}

/// A checked bundle: every entry was validated by [`Bundle::parse`].
#[derive(Debug, Clone)]
pub struct Bundle<'a> {
    total_len: usize,
    entries: [Option<BundleEntry<'a>>; MAX_BUNDLE_ENTRIES],
    dom0: BundleEntry<'a>,
}

impl<'a> Bundle<'a> {
    /// Checks `bytes` completely (header, checksum, every entry, exactly one
    /// dom0, unique names) and returns the bundle, or the first problem.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        let (header, _) =
            RawHeader::ref_from_prefix(bytes).map_err(|_| BundleError::Truncated {
                need: HEADER_LEN,
                have: bytes.len(),
            })?;
        if header.magic != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic {
                found: header.magic,
            });
        }
        if header.version.get() != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion {
                found: header.version.get(),
            });
        }
        let count = header.entry_count.get();
        let count_usize = usize::try_from(count)
            .ok()
            .filter(|&c| c <= MAX_BUNDLE_ENTRIES)
            .ok_or(BundleError::TooManyEntries { count })?;
        let table_end = HEADER_LEN + count_usize * ENTRY_LEN;
        let total_len = header.total_len.get();
        let total_usize = usize::try_from(total_len).unwrap_or(usize::MAX);
        if total_usize < table_end {
            return Err(BundleError::TotalLengthTooSmall {
                total_len,
                table_end,
            });
        }
        let bytes = bytes.get(..total_usize).ok_or(BundleError::Truncated {
            need: total_usize,
            have: bytes.len(),
        })?;
        let found = CHECKSUM.checksum(bytes.get(HEADER_LEN..).unwrap_or_default());
        if found != header.crc32.get() {
            return Err(BundleError::ChecksumMismatch {
                expected: header.crc32.get(),
                found,
            });
        }

        let mut entries = [None; MAX_BUNDLE_ENTRIES];
        let mut dom0: Option<(usize, BundleEntry<'a>)> = None;
        for (index, slot) in entries.iter_mut().enumerate().take(count_usize) {
            let entry = parse_entry(bytes, index, table_end)?;
            if entry.kind == ImageKind::Dom0Kernel {
                if let Some((first, _)) = dom0 {
                    return Err(BundleError::MultipleDom0 {
                        first,
                        second: index,
                    });
                }
                dom0 = Some((index, entry));
            }
            *slot = Some(entry);
        }
        check_unique_names(&entries)?;
        let (_, dom0) = dom0.ok_or(BundleError::NoDom0)?;
        Ok(Bundle {
            total_len: total_usize,
            entries,
            dom0,
        })
    }

    /// All images, in bundle order (dom0 included).
    pub fn entries(&self) -> impl Iterator<Item = BundleEntry<'a>> + '_ {
        self.entries.iter().flatten().copied()
    }

    /// The dom0 kernel (a valid bundle has exactly one).
    pub fn dom0(&self) -> BundleEntry<'a> {
        self.dom0
    }

    /// Number of images (at least 1: dom0).
    pub fn image_count(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Length of the bundle in bytes, as recorded in its header.
    pub fn total_len(&self) -> usize {
        self.total_len
    }
}

/// Decodes and checks entry `index` of a bundle whose checksum was verified.
fn parse_entry(
    bytes: &[u8],
    index: usize,
    table_end: usize,
) -> Result<BundleEntry<'_>, BundleError> {
    let start = HEADER_LEN + index * ENTRY_LEN;
    let raw = bytes
        .get(start..start + ENTRY_LEN)
        .and_then(|b| RawEntry::ref_from_bytes(b).ok())
        .ok_or(BundleError::Truncated {
            need: start + ENTRY_LEN,
            have: bytes.len(),
        })?;
    let kind = ImageKind::from_raw(raw.kind.get()).ok_or(BundleError::UnknownKind {
        entry: index,
        kind: raw.kind.get(),
    })?;
    if raw.reserved.iter().any(|&b| b != 0) {
        return Err(BundleError::ReservedNotZero { entry: index });
    }
    let flags = raw.flags.get();
    let allowed = if kind == ImageKind::DomUKernel {
        ENTRY_FLAG_CONTROL
    } else {
        0
    };
    if flags & !allowed != 0 {
        return Err(BundleError::BadFlags {
            entry: index,
            flags,
        });
    }
    if !kind.is_domain() {
        if raw.memory_mib.get() != 0 || raw.vcpus.get() != 0 {
            return Err(BundleError::ModuleResource { entry: index });
        }
    } else if raw.memory_mib.get() == 0 {
        return Err(BundleError::ZeroResource {
            entry: index,
            what: "memory",
        });
    }
    if kind.is_domain() && raw.vcpus.get() == 0 {
        return Err(BundleError::ZeroResource {
            entry: index,
            what: "vCPU count",
        });
    }
    let name = text_field(&raw.name, index, TextField::Name)?;
    if name.is_empty() {
        return Err(BundleError::EmptyName { entry: index });
    }
    let cmdline = text_field(&raw.cmdline, index, TextField::Cmdline)?;
    Ok(BundleEntry {
        kind,
        name,
        cmdline,
        memory_mib: raw.memory_mib.get(),
        vcpus: raw.vcpus.get(),
        control: flags & ENTRY_FLAG_CONTROL != 0,
        image: image_bytes(
            bytes,
            index,
            table_end,
            raw.image_offset.get(),
            raw.image_size.get(),
        )?,
    })
}

/// The text of a NUL-padded field, checked for padding, UTF-8 and characters.
fn text_field(raw: &[u8], entry: usize, field: TextField) -> Result<&str, BundleError> {
    let (text, padding) = match raw.iter().position(|&b| b == 0) {
        Some(end) => raw.split_at(end),
        None => (raw, &[][..]),
    };
    if padding.iter().any(|&b| b != 0) {
        return Err(BundleError::NotNulPadded { entry, field });
    }
    let text = core::str::from_utf8(text).map_err(|_| BundleError::NotUtf8 { entry, field })?;
    let allowed = |c: char| match field {
        TextField::Name => c.is_ascii_graphic(),
        TextField::Cmdline => c.is_ascii_graphic() || c == ' ',
    };
    if !text.chars().all(allowed) {
        return Err(BundleError::BadCharacter { entry, field });
    }
    Ok(text)
}

/// The image of entry `entry`: non-empty, after the entry table, inside the bundle.
fn image_bytes(
    bytes: &[u8],
    entry: usize,
    table_end: usize,
    offset: u32,
    size: u32,
) -> Result<&[u8], BundleError> {
    let out_of_bounds = BundleError::ImageOutOfBounds {
        entry,
        offset,
        size,
        total_len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    };
    let start = usize::try_from(offset).map_err(|_| out_of_bounds)?;
    let end = usize::try_from(size)
        .ok()
        .and_then(|size| start.checked_add(size))
        .ok_or(out_of_bounds)?;
    if size == 0 || start < table_end {
        return Err(out_of_bounds);
    }
    bytes.get(start..end).ok_or(out_of_bounds)
}

/// Rejects two entries with the same name, except a domU module, which
/// carries its domU's name (one per domU).
fn check_unique_names(entries: &[Option<BundleEntry<'_>>]) -> Result<(), BundleError> {
    for (first, a) in entries.iter().enumerate() {
        for (second, b) in entries.iter().enumerate().skip(first + 1) {
            if let (Some(a), Some(b)) = (a, b) {
                let clash = a.kind == b.kind || (a.kind.is_domain() && b.kind.is_domain());
                if a.name == b.name && clash {
                    return Err(BundleError::DuplicateName { first, second });
                }
            }
        }
    }
    Ok(())
}

#[cfg(any(feature = "alloc", test))]
pub use builder::{BuildError, BundleBuilder};

/// Writing bundles (host side: xtask).
#[cfg(any(feature = "alloc", test))]
mod builder {
    extern crate alloc;
    use alloc::vec::Vec;
    use core::fmt;

    use zerocopy::byteorder::little_endian::U32;
    use zerocopy::IntoBytes;

    use super::*;

    /// Why a bundle could not be built.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum BuildError {
        /// More than [`MAX_BUNDLE_ENTRIES`] images.
        TooManyEntries,
        /// A name or command line longer than its field.
        TooLong {
            entry: usize,
            field: TextField,
            len: usize,
            max: usize,
        },
        /// The bundle would not fit the format's 32-bit lengths.
        TooLarge { len: usize },
        /// The result would be rejected by [`Bundle::parse`].
        Invalid(BundleError),
    }

    impl fmt::Display for BuildError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                BuildError::TooManyEntries => {
                    write!(f, "too many images (at most {MAX_BUNDLE_ENTRIES})")
                }
                BuildError::TooLong {
                    entry,
                    field,
                    len,
                    max,
                } => {
                    write!(f, "entry {entry}: {field} is {len} bytes, at most {max}")
                }
                BuildError::TooLarge { len } => {
                    write!(f, "bundle of {len} bytes exceeds the format's 4 GiB limit")
                }
                BuildError::Invalid(e) => write!(f, "invalid bundle: {e}"),
            }
        }
    }

    /// Collects images and writes a bundle that [`Bundle::parse`] accepts.
    #[derive(Debug, Default)]
    pub struct BundleBuilder<'a> {
        entries: Vec<BundleEntry<'a>>,
    }

    impl<'a> BundleBuilder<'a> {
        pub fn new() -> Self {
            Self::default()
        }

        /// Adds an image; its fields are checked against the format's limits.
        pub fn push(&mut self, entry: BundleEntry<'a>) -> Result<&mut Self, BuildError> {
            let index = self.entries.len();
            if index >= MAX_BUNDLE_ENTRIES {
                return Err(BuildError::TooManyEntries);
            }
            for (field, text, max) in [
                (TextField::Name, entry.name, MAX_NAME_LEN),
                (TextField::Cmdline, entry.cmdline, MAX_CMDLINE_LEN),
            ] {
                if text.len() > max {
                    return Err(BuildError::TooLong {
                        entry: index,
                        field,
                        len: text.len(),
                        max,
                    });
                }
            }
            self.entries.push(entry);
            Ok(self)
        }

        /// The bundle's bytes, checked by parsing them back.
        pub fn build(&self) -> Result<Vec<u8>, BuildError> {
            let table_end = HEADER_LEN + self.entries.len() * ENTRY_LEN;
            let mut images = Vec::new();
            let mut raw_entries = Vec::with_capacity(self.entries.len());
            let mut offset = table_end;
            for entry in &self.entries {
                let start = offset.next_multiple_of(IMAGE_ALIGN);
                images.resize(start - table_end, 0);
                images.extend_from_slice(entry.image);
                offset = start + entry.image.len();
                raw_entries.push(raw_entry(entry, to_u32(start)?, to_u32(entry.image.len())?));
            }

            let mut bytes = Vec::with_capacity(offset);
            bytes.resize(HEADER_LEN, 0);
            for raw in &raw_entries {
                bytes.extend_from_slice(raw.as_bytes());
            }
            bytes.extend_from_slice(&images);
            let header = RawHeader {
                magic: BUNDLE_MAGIC,
                version: U32::new(BUNDLE_VERSION),
                entry_count: U32::new(to_u32(self.entries.len())?),
                total_len: U32::new(to_u32(bytes.len())?),
                crc32: U32::new(CHECKSUM.checksum(&bytes[HEADER_LEN..])),
            };
            bytes[..HEADER_LEN].copy_from_slice(header.as_bytes());
            Bundle::parse(&bytes).map_err(BuildError::Invalid)?;
            Ok(bytes)
        }
    }

    fn raw_entry(entry: &BundleEntry<'_>, image_offset: u32, image_size: u32) -> RawEntry {
        let mut raw = RawEntry {
            kind: U32::new(entry.kind.to_raw()),
            memory_mib: U32::new(entry.memory_mib),
            vcpus: U32::new(entry.vcpus),
            image_offset: U32::new(image_offset),
            image_size: U32::new(image_size),
            flags: U32::new(if entry.control { ENTRY_FLAG_CONTROL } else { 0 }),
            reserved: [0; 8],
            name: [0; MAX_NAME_LEN],
            cmdline: [0; MAX_CMDLINE_LEN],
        };
        // Lengths were checked in `push`.
        raw.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        raw.cmdline[..entry.cmdline.len()].copy_from_slice(entry.cmdline.as_bytes());
        raw
    }

    fn to_u32(len: usize) -> Result<u32, BuildError> {
        u32::try_from(len).map_err(|_| BuildError::TooLarge { len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use proptest::prelude::*;

    /// Recomputes the header checksum of `bytes` in place, so that tests reach
    /// the checks after the CRC.
    fn reseal(bytes: &mut [u8]) {
        if let Some((header, rest)) = bytes.split_at_mut_checked(HEADER_LEN) {
            let total = usize::try_from(u32::from_le_bytes([
                header[16], header[17], header[18], header[19],
            ]))
            .unwrap_or(usize::MAX);
            let body = rest.get(..total.saturating_sub(HEADER_LEN)).unwrap_or(rest);
            header[20..24].copy_from_slice(&CHECKSUM.checksum(body).to_le_bytes());
        }
    }

    fn entry<'a>(kind: ImageKind, name: &'a str, image: &'a [u8]) -> BundleEntry<'a> {
        BundleEntry {
            kind,
            name,
            cmdline: "console=com1 debug",
            memory_mib: 64,
            vcpus: 1,
            control: false,
            image,
        }
    }

    #[test]
    fn a_domu_module_carries_its_domus_name_once() {
        let module = BundleEntry {
            kind: ImageKind::DomUModule,
            name: "linux",
            cmdline: "",
            memory_mib: 0,
            vcpus: 0,
            control: false,
            image: &[7; 32],
        };
        let build = |extra: &[BundleEntry<'static>]| {
            let mut builder = BundleBuilder::new();
            builder
                .push(entry(ImageKind::Dom0Kernel, "dom0", b"\x7fELF dom0"))
                .unwrap()
                .push(entry(ImageKind::DomUKernel, "linux", b"\x7fELF linux"))
                .unwrap();
            for e in extra {
                builder.push(*e).unwrap();
            }
            builder.build()
        };
        let bytes = build(&[module]).unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.entries().nth(2), Some(module));
        assert!(!module.kind.is_domain());
        assert!(matches!(
            build(&[module, module]),
            Err(BuildError::Invalid(BundleError::DuplicateName {
                first: 2,
                second: 3
            }))
        ));
        let domain = entry(ImageKind::DomUKernel, "linux", b"\x7fELF again");
        assert!(matches!(
            build(&[domain]),
            Err(BuildError::Invalid(BundleError::DuplicateName {
                first: 1,
                second: 2
            }))
        ));
    }

    #[test]
    fn a_dom0_module_has_no_resources_and_is_no_domain() {
        let module = BundleEntry {
            kind: ImageKind::Dom0Module,
            name: "key",
            cmdline: MGMT_KEY_MODULE,
            memory_mib: 0,
            vcpus: 0,
            control: false,
            image: &[7; 32],
        };
        let build = |m: BundleEntry<'static>| {
            let mut builder = BundleBuilder::new();
            builder
                .push(entry(ImageKind::Dom0Kernel, "dom0", b"\x7fELF dom0"))
                .unwrap()
                .push(m)
                .unwrap();
            builder.build()
        };
        let bytes = build(module).unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        let parsed = bundle.entries().nth(1).unwrap();
        assert_eq!(parsed, module);
        assert!(!parsed.kind.is_domain() && bundle.dom0().kind.is_domain());
        for (memory_mib, vcpus) in [(1, 0), (0, 1)] {
            let bad = BundleEntry {
                memory_mib,
                vcpus,
                ..module
            };
            assert_eq!(
                build(bad),
                Err(BuildError::Invalid(BundleError::ModuleResource {
                    entry: 1
                }))
            );
        }
    }

    fn sample() -> Vec<u8> {
        let mut builder = BundleBuilder::new();
        builder
            .push(entry(ImageKind::Dom0Kernel, "dom0", b"\x7fELF dom0 kernel"))
            .unwrap();
        builder
            .push(entry(ImageKind::DomUKernel, "guest-1", b"\x7fELF guest"))
            .unwrap();
        builder.build().unwrap()
    }

    /// Writes `value` at `offset` and fixes the checksum, so that the check
    /// after the CRC is the one that fires.
    fn patched(offset: usize, value: &[u8]) -> Vec<u8> {
        let mut bytes = sample();
        bytes[offset..offset + value.len()].copy_from_slice(value);
        reseal(&mut bytes);
        bytes
    }

    const ENTRY0: usize = HEADER_LEN;
    const ENTRY1: usize = HEADER_LEN + ENTRY_LEN;

    #[test]
    fn only_a_domu_kernel_may_be_a_control_domain() {
        let control = BundleEntry {
            control: true,
            ..entry(ImageKind::DomUKernel, "linux", b"\x7fELF linux")
        };
        let mut builder = BundleBuilder::new();
        builder
            .push(entry(ImageKind::Dom0Kernel, "dom0", b"\x7fELF dom0"))
            .unwrap()
            .push(control)
            .unwrap();
        let bytes = builder.build().unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.entries().nth(1).unwrap(), control);
        assert!(!bundle.dom0().control);
        assert_eq!(
            bytes[ENTRY1 + 20..ENTRY1 + 24],
            ENTRY_FLAG_CONTROL.to_le_bytes()
        );
        // dom0 with the flag, and an unknown flag bit.
        for (offset, flags, entry) in [(ENTRY0, 1u32, 0), (ENTRY1, 3, 1)] {
            let mut bad = bytes.clone();
            bad[offset + 20..offset + 24].copy_from_slice(&flags.to_le_bytes());
            reseal(&mut bad);
            assert_eq!(
                Bundle::parse(&bad).unwrap_err(),
                BundleError::BadFlags { entry, flags }
            );
        }
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        assert_eq!(size_of::<RawHeader>(), HEADER_LEN);
        assert_eq!(offset_of!(RawHeader, version), 8);
        assert_eq!(offset_of!(RawHeader, entry_count), 12);
        assert_eq!(offset_of!(RawHeader, total_len), 16);
        assert_eq!(offset_of!(RawHeader, crc32), 20);
        assert_eq!(size_of::<RawEntry>(), ENTRY_LEN);
        assert_eq!(offset_of!(RawEntry, memory_mib), 4);
        assert_eq!(offset_of!(RawEntry, vcpus), 8);
        assert_eq!(offset_of!(RawEntry, image_offset), 12);
        assert_eq!(offset_of!(RawEntry, image_size), 16);
        assert_eq!(offset_of!(RawEntry, flags), 20);
        assert_eq!(offset_of!(RawEntry, reserved), 24);
        assert_eq!(offset_of!(RawEntry, name), 32);
        assert_eq!(offset_of!(RawEntry, cmdline), 64);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let bytes = sample();
        let bundle = Bundle::parse(&bytes).unwrap();
        let entries: Vec<_> = bundle.entries().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(bundle.image_count(), 2);
        assert_eq!(
            entries[0],
            entry(ImageKind::Dom0Kernel, "dom0", b"\x7fELF dom0 kernel")
        );
        assert_eq!(
            entries[1],
            entry(ImageKind::DomUKernel, "guest-1", b"\x7fELF guest")
        );
        assert_eq!(bundle.dom0().name, "dom0");
        assert_eq!(bundle.total_len(), bytes.len());
    }

    #[test]
    fn images_are_page_aligned_and_trailing_padding_is_ignored() {
        let mut bytes = sample();
        let bundle = Bundle::parse(&bytes).unwrap();
        for e in bundle.entries() {
            let offset = e.image.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(offset % IMAGE_ALIGN, 0);
        }
        bytes.extend_from_slice(&[0xff; 100]);
        assert!(Bundle::parse(&bytes).is_ok());
    }

    #[test]
    fn full_length_fields_need_no_terminator() {
        let name = "n".repeat(MAX_NAME_LEN);
        let cmdline = "c".repeat(MAX_CMDLINE_LEN);
        let mut builder = BundleBuilder::new();
        let mut e = entry(ImageKind::Dom0Kernel, &name, b"image");
        e.cmdline = &cmdline;
        builder.push(e).unwrap();
        let bytes = builder.build().unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.dom0().name, name);
        assert_eq!(bundle.dom0().cmdline, cmdline);
    }

    #[test]
    fn header_errors() {
        let bytes = sample();
        assert_eq!(
            Bundle::parse(&bytes[..10]).unwrap_err(),
            BundleError::Truncated {
                need: HEADER_LEN,
                have: 10
            }
        );
        assert_eq!(
            Bundle::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            BundleError::Truncated {
                need: bytes.len(),
                have: bytes.len() - 1
            }
        );
        assert!(matches!(
            Bundle::parse(&patched(0, b"XX")).unwrap_err(),
            BundleError::BadMagic { found } if &found[..2] == b"XX"
        ));
        assert_eq!(
            Bundle::parse(&patched(8, &2u32.to_le_bytes())).unwrap_err(),
            BundleError::UnsupportedVersion { found: 2 }
        );
        assert_eq!(
            Bundle::parse(&patched(12, &33u32.to_le_bytes())).unwrap_err(),
            BundleError::TooManyEntries { count: 33 }
        );
        assert_eq!(
            Bundle::parse(&patched(16, &100u32.to_le_bytes())).unwrap_err(),
            BundleError::TotalLengthTooSmall {
                total_len: 100,
                table_end: HEADER_LEN + 2 * ENTRY_LEN
            }
        );
        let mut flipped = sample();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Bundle::parse(&flipped).unwrap_err(),
            BundleError::ChecksumMismatch { expected, found } if expected != found
        ));
    }

    #[test]
    fn entry_errors() {
        let cases: [(usize, &[u8], BundleError); 11] = [
            (
                ENTRY1,
                &7u32.to_le_bytes(),
                BundleError::UnknownKind { entry: 1, kind: 7 },
            ),
            (ENTRY0 + 25, &[1], BundleError::ReservedNotZero { entry: 0 }),
            (
                ENTRY1 + 4,
                &[0; 4],
                BundleError::ZeroResource {
                    entry: 1,
                    what: "memory",
                },
            ),
            (
                ENTRY1 + 8,
                &[0; 4],
                BundleError::ZeroResource {
                    entry: 1,
                    what: "vCPU count",
                },
            ),
            (
                ENTRY0 + 32,
                b"d\0m",
                BundleError::NotNulPadded {
                    entry: 0,
                    field: TextField::Name,
                },
            ),
            (
                ENTRY0 + 32,
                &[0xff],
                BundleError::NotUtf8 {
                    entry: 0,
                    field: TextField::Name,
                },
            ),
            (
                ENTRY0 + 32,
                b"d m",
                BundleError::BadCharacter {
                    entry: 0,
                    field: TextField::Name,
                },
            ),
            (
                ENTRY0 + 64,
                b"\x1b[",
                BundleError::BadCharacter {
                    entry: 0,
                    field: TextField::Cmdline,
                },
            ),
            (ENTRY0 + 32, &[0; 4], BundleError::EmptyName { entry: 0 }),
            (
                ENTRY1 + 32,
                b"dom0\0\0\0",
                BundleError::DuplicateName {
                    first: 0,
                    second: 1,
                },
            ),
            (
                ENTRY1,
                &1u32.to_le_bytes(),
                BundleError::MultipleDom0 {
                    first: 0,
                    second: 1,
                },
            ),
        ];
        for (offset, value, expected) in cases {
            assert_eq!(
                Bundle::parse(&patched(offset, value)).unwrap_err(),
                expected,
                "{expected}"
            );
        }
        assert_eq!(
            Bundle::parse(&patched(ENTRY0, &2u32.to_le_bytes())).unwrap_err(),
            BundleError::NoDom0
        );
    }

    #[test]
    fn images_must_lie_after_the_table_and_inside_the_bundle() {
        let total = u32::try_from(sample().len()).unwrap();
        for (offset, size) in [
            (0u32, 16u32),
            (4096, 0),
            (total - 4, 16),
            (u32::MAX, u32::MAX),
        ] {
            let mut bytes = patched(ENTRY0 + 12, &offset.to_le_bytes());
            bytes[ENTRY0 + 16..ENTRY0 + 20].copy_from_slice(&size.to_le_bytes());
            reseal(&mut bytes);
            assert_eq!(
                Bundle::parse(&bytes).unwrap_err(),
                BundleError::ImageOutOfBounds {
                    entry: 0,
                    offset,
                    size,
                    total_len: total
                }
            );
        }
    }

    #[test]
    fn builder_rejects_what_the_format_cannot_hold() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let mut builder = BundleBuilder::new();
        assert!(matches!(
            builder.push(entry(ImageKind::Dom0Kernel, &long, b"i")),
            Err(BuildError::TooLong {
                field: TextField::Name,
                ..
            })
        ));
        for i in 0..MAX_BUNDLE_ENTRIES {
            builder
                .push(entry(ImageKind::DomUKernel, "g", b"i"))
                .unwrap_or_else(|e| panic!("{i}: {e}"));
        }
        assert_eq!(
            builder
                .push(entry(ImageKind::DomUKernel, "g", b"i"))
                .unwrap_err(),
            BuildError::TooManyEntries
        );
        // No dom0 and duplicate names: the builder refuses what parse refuses.
        assert!(matches!(builder.build(), Err(BuildError::Invalid(_))));
    }

    #[test]
    fn messages_name_the_problem() {
        let msg = BundleError::ChecksumMismatch {
            expected: 1,
            found: 2,
        }
        .to_string();
        assert!(msg.contains("checksum mismatch"), "{msg}");
        let msg = BundleError::Truncated {
            need: 300,
            have: 20,
        }
        .to_string();
        assert_eq!(msg, "truncated: need 300 bytes, have 20");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Bundle::parse(&bytes);
        }

        #[test]
        fn arbitrary_headers_never_panic(header in proptest::collection::vec(any::<u8>(), HEADER_LEN)) {
            let mut bytes = sample();
            bytes[8..HEADER_LEN].copy_from_slice(&header[8..]);
            let _ = Bundle::parse(&bytes);
            reseal(&mut bytes);
            let _ = Bundle::parse(&bytes);
        }

        #[test]
        fn mutated_bundles_never_panic_and_stay_in_bounds(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in any::<prop::sample::Index>(),
            truncate: bool,
            seal: bool,
        ) {
            let mut bytes = sample();
            // Edits land mostly in the header and table, where the checks are.
            let table_end = HEADER_LEN + 2 * ENTRY_LEN;
            for (at, value) in edits {
                bytes[at.index(table_end)] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            if seal {
                reseal(&mut bytes);
            }
            if let Ok(bundle) = Bundle::parse(&bytes) {
                prop_assert!(bundle.total_len() <= bytes.len());
                let range = bytes.as_ptr_range();
                for e in bundle.entries() {
                    let image = e.image.as_ptr_range();
                    prop_assert!(range.start <= image.start && image.end <= range.end);
                    prop_assert!(e.name.len() <= MAX_NAME_LEN && e.cmdline.len() <= MAX_CMDLINE_LEN);
                }
            }
        }

        #[test]
        fn built_bundles_parse_back(
            names in proptest::collection::btree_set("[a-z0-9-]{1,32}", 1..6),
            cmdline in "[ -~]{0,192}",
            memory_mib in 1u32..4096,
            vcpus in 1u32..8,
            image in proptest::collection::vec(any::<u8>(), 1..5000),
        ) {
            let mut builder = BundleBuilder::new();
            for (i, name) in names.iter().enumerate() {
                let kind = if i == 0 { ImageKind::Dom0Kernel } else { ImageKind::DomUKernel };
                builder.push(BundleEntry { kind, name, cmdline: &cmdline, memory_mib, vcpus, control: false, image: &image }).unwrap();
            }
            let bytes = builder.build().unwrap();
            let bundle = Bundle::parse(&bytes).unwrap();
            prop_assert_eq!(bundle.image_count(), names.len());
            for (e, name) in bundle.entries().zip(&names) {
                prop_assert_eq!(e.name, name.as_str());
                prop_assert_eq!(e.cmdline, cmdline.as_str());
                prop_assert_eq!(e.image, &image[..]);
                prop_assert_eq!((e.memory_mib, e.vcpus), (memory_mib, vcpus));
            }
        }
    }
}
