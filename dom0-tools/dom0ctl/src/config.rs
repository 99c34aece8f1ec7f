//! The domain config file (TOML) and the kernel it names, checked before
//! anything is sent:
//!
//! ```toml
//! name = "hello"          # 1..=32 of [A-Za-z0-9._-], not all digits
//! kernel = "hello.elf"    # relative to this file; an x86 ELF with the PVH note
//! ramdisk = "initrd.cpio" # optional (xl's name), relative to this file: the
//!                         # guest's start-info module (Linux's initramfs)
//! memory = 32             # MiB
//! vcpus = 1               # optional, default 1
//! cmdline = "loglevel=3"  # optional, default empty
//! # optional: volumes attached before the domain first runs (xl's names;
//! # mode "w" read-write, "r" read-only)
//! disks = [{ volume = "data", vdev = "xvda", mode = "w" }]
//! # optional: vifs on the vswitch (xl's `vif`), devids 0, 1, ... in order;
//! # each an access port in `vlan` (default 1, the uplink's) or a trunk
//! # carrying `trunk`'s VLANs tagged; `mac` default: 00:16:3e + a hash of
//! # the name and devid
//! vifs = [{ mac = "00:16:3e:00:00:01", vlan = 10 }, { trunk = [10, 20] }]
//! # optional, xl.cfg(5)'s scheduling keys: hard affinity of every vCPU
//! # ("all", or pCPUs and ranges "0-3,5"), credit weight (1..=65535,
//! # default 256), cap (percent of one pCPU, 0 = none)
//! cpus = "0-3,5"
//! weight = 512
//! cap = 50
//! ```
//!
//! Errors name the file, line, column and field.

use std::fmt;
use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mgmt::network::{Mac, VlanMode};
use mgmt::sched::{MAX_PCPUS, MAX_WEIGHT};
use mgmt::{
    CpuSet, DiskMode, DiskSpec, DomainConfig, MgmtError, SchedConfig, VifSpec, MAX_KERNEL_BYTES,
    MAX_RAMDISK_BYTES,
};
use serde::Deserialize;
use toml::Spanned;
use vswitch::{parse_mac as vswitch_mac, DEFAULT_VLAN};

/// Largest config file, bytes: a config is a few lines.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// A config file and kernel, ready to send.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The domain config.
    pub config: DomainConfig,
    /// The kernel file's path (resolved against the config's directory).
    pub kernel_path: PathBuf,
    /// Its contents, checked as a PVH kernel.
    pub kernel: Vec<u8>,
    /// The ramdisk's contents (`ramdisk`), if the config names one.
    pub ramdisk: Option<Vec<u8>>,
}

/// A problem in a config file or with its kernel.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// Line and column (1-based) the problem is at, if known.
    pub position: Option<(usize, usize)>,
    /// The field concerned, if known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Spanned<String>,
    kernel: Spanned<PathBuf>,
    ramdisk: Option<Spanned<PathBuf>>,
    /// MiB.
    memory: Spanned<u32>,
    vcpus: Option<Spanned<u32>>,
    cmdline: Option<Spanned<String>>,
    disks: Option<Spanned<Vec<RawDisk>>>,
    #[serde(default)]
    vifs: Vec<Spanned<RawVif>>,
    cpus: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    cap: Option<Spanned<i64>>,
}

impl RawConfig {
    /// The scheduling keys, or the field, its span and what is wrong.
    fn sched(&self) -> Result<SchedConfig, (&'static str, Range<usize>, String)> {
        let cpus = match &self.cpus {
            Some(c) => Some(CpuSet::parse(c.get_ref()).ok_or_else(|| {
                let why = format!(
                    "'{}' is not a pCPU list (\"all\", or pCPUs and ranges below {MAX_PCPUS}: \"0-3,5\")",
                    c.get_ref()
                );
                ("cpus", c.span(), why)
            })?),
            None => None,
        };
        // All of MAX_PCPUS pCPUs; the host's own limit (100 × its pCPUs)
        // is dom0's to check before the domain is built.
        let max_cap = u16::try_from(100 * MAX_PCPUS).unwrap_or(u16::MAX);
        Ok(SchedConfig {
            cpus,
            weight: in_range(
                "weight",
                self.weight.as_ref(),
                1..=MAX_WEIGHT,
                "(default 256)",
            )?,
            cap: in_range(
                "cap",
                self.cap.as_ref(),
                0..=max_cap,
                "(percent of one pCPU; 0: no cap)",
            )?,
        })
    }
}

/// `value` of `field` if it lies in `range`; else the field, its span and
/// the allowed range, followed by `what`.
fn in_range(
    field: &'static str,
    value: Option<&Spanned<i64>>,
    range: RangeInclusive<u16>,
    what: &str,
) -> Result<Option<u16>, (&'static str, Range<usize>, String)> {
    let Some(v) = value else {
        return Ok(None);
    };
    u16::try_from(*v.get_ref())
        .ok()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            let why = format!("must be {} to {} {what}", range.start(), range.end());
            (field, v.span(), why)
        })
}

/// One entry of `disks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    volume: String,
    vdev: String,
    /// `"w"` (the default) or `"r"`.
    mode: Option<String>,
}

/// One entry of `vifs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVif {
    mac: Option<String>,
    vlan: Option<u16>,
    trunk: Option<Vec<u16>>,
}

impl RawVif {
    /// The vif, or what is wrong with it.
    fn spec(&self) -> Result<VifSpec, String> {
        let mac = self.mac.as_deref().map(parse_mac).transpose()?;
        let vlan = vlan_mode(self.vlan, self.trunk.clone())?;
        let spec = VifSpec { mac, vlan };
        match spec.validate() {
            Err(MgmtError::InvalidConfig { reason, .. }) => Err(reason),
            _ => Ok(spec),
        }
    }
}

/// `--mac`'s and `mac =`'s text as a MAC.
pub fn parse_mac(text: &str) -> Result<Mac, String> {
    vswitch_mac(text)
        .ok_or_else(|| format!("'{text}' is not a MAC address (six hex bytes: 00:16:3e:12:34:56)"))
}

/// `vlan` or `trunk` (xl-style: one or the other) as a VLAN mode; neither:
/// an access port in [`DEFAULT_VLAN`].
pub fn vlan_mode(vlan: Option<u16>, trunk: Option<Vec<u16>>) -> Result<VlanMode, String> {
    match (vlan, trunk) {
        (Some(_), Some(_)) => {
            Err("give `vlan` (an access port) or `trunk` (tagged VLANs), not both".into())
        }
        (Some(vlan), None) => Ok(VlanMode::Access(vlan)),
        (None, Some(list)) => Ok(VlanMode::Trunk(list)),
        (None, None) => Ok(VlanMode::Access(DEFAULT_VLAN)),
    }
}

/// Reads `path` and the kernel it names; checks both.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let whole_file = |message| ConfigError {
        path: path.into(),
        position: None,
        field: None,
        message,
    };
    let bytes = read_regular(path, MAX_CONFIG_BYTES)
        .map_err(|e| whole_file(format!("cannot read the config file: {e}")))?;
    let source = String::from_utf8(bytes)
        .map_err(|e| whole_file(format!("the config file is not UTF-8 text: {e}")))?;
    let at = |span: Range<usize>, field: &str, message: String| ConfigError {
        path: path.into(),
        position: Some(line_column(&source, span.start)),
        field: Some(field.into()),
        message,
    };
    let raw: RawConfig = toml::from_str(&source).map_err(|e| parse_error(path, &source, &e))?;
    let mut vifs = Vec::with_capacity(raw.vifs.len());
    for vif in &raw.vifs {
        vifs.push(
            vif.get_ref()
                .spec()
                .map_err(|m| at(vif.span(), "vifs", m))?,
        );
    }
    let sched = raw
        .sched()
        .map_err(|(field, span, message)| at(span, field, message))?;
    let config = DomainConfig {
        vifs,
        name: raw.name.get_ref().clone(),
        memory_mib: *raw.memory.get_ref(),
        vcpus: raw.vcpus.as_ref().map_or(1, |v| *v.get_ref()),
        cmdline: raw
            .cmdline
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default(),
        disks: match &raw.disks {
            Some(disks) => {
                disk_specs(disks.get_ref()).map_err(|message| at(disks.span(), "disks", message))?
            }
            None => Vec::new(),
        },
        sched,
    };
    if let Err(MgmtError::InvalidConfig { field, reason }) = config.validate() {
        let span = match field.as_str() {
            "name" => raw.name.span(),
            "memory" => raw.memory.span(),
            "vcpus" => raw.vcpus.as_ref().map_or(0..0, |v| v.span()),
            "disks" => raw.disks.as_ref().map_or(0..0, |d| d.span()),
            "vifs" => raw.vifs.first().map_or(0..0, |v| v.span()),
            "cpus" => raw.cpus.as_ref().map_or(0..0, |c| c.span()),
            "weight" => raw.weight.as_ref().map_or(0..0, |w| w.span()),
            "cap" => raw.cap.as_ref().map_or(0..0, |c| c.span()),
            _ => raw.cmdline.as_ref().map_or(0..0, |c| c.span()),
        };
        return Err(at(span, &field, reason));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let kernel_path = dir.join(raw.kernel.get_ref());
    let kernel =
        read_kernel(&kernel_path).map_err(|message| at(raw.kernel.span(), "kernel", message))?;
    let ramdisk = match &raw.ramdisk {
        Some(r) => Some(
            read_ramdisk(&dir.join(r.get_ref()))
                .map_err(|message| at(r.span(), "ramdisk", message))?,
        ),
        None => None,
    };
    Ok(LoadedConfig {
        config,
        kernel_path,
        kernel,
        ramdisk,
    })
}

fn disk_specs(raw: &[RawDisk]) -> Result<Vec<DiskSpec>, String> {
    raw.iter()
        .map(|d| {
            let mode = match d.mode.as_deref() {
                None => DiskMode::ReadWrite,
                Some(m) => DiskMode::parse(m).ok_or_else(|| {
                    format!(
                        "disk {:?}: mode {m:?} is neither \"w\" (read-write) nor \"r\" (read-only)",
                        d.vdev
                    )
                })?,
            };
            Ok(DiskSpec {
                volume: d.volume.clone(),
                vdev: d.vdev.clone(),
                mode,
            })
        })
        .collect()
}

/// The kernel at `path`, if it is a PVH kernel the domain builder accepts
/// (`pvh_builder::elf_image`: x86 ELF, ET_EXEC, PT_LOAD segments, the
/// XEN_ELFNOTE_PHYS32_ENTRY note) and small enough to upload
/// ([`MAX_KERNEL_BYTES`]).
pub fn read_kernel(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let image = read_regular(path, u64::from(MAX_KERNEL_BYTES))
        .map_err(|e| format!("cannot read kernel {shown}: {e}"))?;
    pvh_builder::elf_image::parse(&image)
        .map_err(|e| format!("kernel {shown} is not a loadable PVH kernel: {e}"))?;
    Ok(image)
}

/// The ramdisk at `path`, a regular file of at most [`MAX_RAMDISK_BYTES`].
fn read_ramdisk(path: &Path) -> Result<Vec<u8>, String> {
    read_regular(path, u64::from(MAX_RAMDISK_BYTES))
        .map_err(|e| format!("cannot read ramdisk {}: {e}", path.display()))
}

/// The contents of the regular file at `path`, at most `limit` bytes.
/// Anything else (a device such as `/dev/zero`, a FIFO, a directory) is
/// refused before a byte is read: its size says nothing and reading it
/// may never end. The file is opened without blocking (a FIFO would
/// block the open itself) and checked as opened, so it cannot be swapped
/// in between; at most `limit + 1` bytes are read whatever it claims.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| e.to_string())?;
    let kind = file.metadata().map_err(|e| e.to_string())?.file_type();
    if !kind.is_file() {
        return Err(format!("it is {}, not a regular file", file_kind(kind)));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is larger than the limit of {limit} bytes"));
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// A TOML error as a config error: its position, and the field on that
/// line when the message does not name it.
fn parse_error(path: &Path, source: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end().to_string();
    // "missing field" errors span the whole table: no useful position.
    let span = e.span().filter(|_| !message.starts_with("missing field"));
    let field = span
        .as_ref()
        .and_then(|s| key_on_line(source, s.start))
        .filter(|key| !message.contains(&format!("`{key}`")));
    let message = match field.as_deref().and_then(field_hint) {
        Some(hint) if message.starts_with("invalid") => format!("{message} ({hint})"),
        _ => message,
    };
    ConfigError {
        path: path.into(),
        position: span.map(|s| line_column(source, s.start)),
        field,
        message,
    }
}

/// What a field holds, for type errors.
fn field_hint(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "a quoted domain name",
        "kernel" => "a quoted path, relative to the config file",
        "memory" => "a whole number of MiB",
        "vcpus" => "a whole number of vCPUs",
        "cmdline" => "a quoted kernel command line",
        "disks" => "a list like [{ volume = \"data\", vdev = \"xvda\", mode = \"w\" }]",
        "vifs" => "a list of tables: vifs = [{ mac = \"00:16:3e:00:00:01\", vlan = 10 }]",
        "cpus" => "a quoted pCPU list: \"all\" or \"0-3,5\"",
        "weight" => "a whole number, 1 to 65535",
        "cap" => "a whole number of percent of one pCPU",
        _ => return None,
    })
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The bare key of a `key = value` line holding byte `offset`.
fn key_on_line(source: &str, offset: usize) -> Option<String> {
    let offset = offset.min(source.len());
    let start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = source[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvh_builder::test_images;

    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            let dir = Self(tempfile::tempdir().unwrap());
            dir.file(
                "hello.elf",
                &test_images::kernel(true, EM_X86_64, &0x10_0000u64.to_le_bytes()),
            );
            dir
        }
        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
        fn config(&self, text: &str) -> Result<LoadedConfig, ConfigError> {
            load(&self.file("d.toml", text.as_bytes()))
        }
    }

    const GOOD: &str =
        "name = \"hello\"\nkernel = \"hello.elf\"\nmemory = 32\nvcpus = 2\ncmdline = \"quiet\"\n";

    /// Line, field and message of an error from `text`.
    fn error(dir: &Dir, text: &str) -> (Option<usize>, Option<String>, String) {
        let e = dir.config(text).unwrap_err();
        (e.position.map(|p| p.0), e.field, e.message)
    }

    #[test]
    fn vifs_load_as_access_or_trunk_ports() {
        let dir = Dir::new();
        let c = dir
            .config(
                "name = \"w\"\nkernel = \"hello.elf\"\nmemory = 8\nvifs = [\n  \
                 { mac = \"00:16:3E:00:00:01\", vlan = 10 },\n  { trunk = [10, 20] },\n  {},\n]\n",
            )
            .unwrap();
        assert_eq!(
            c.config.vifs,
            [
                VifSpec {
                    mac: Some([0, 0x16, 0x3e, 0, 0, 1]),
                    vlan: VlanMode::Access(10)
                },
                VifSpec {
                    mac: None,
                    vlan: VlanMode::Trunk(vec![10, 20])
                },
                VifSpec {
                    mac: None,
                    vlan: VlanMode::Access(DEFAULT_VLAN)
                },
            ]
        );
    }

    #[test]
    fn bad_vifs_name_their_line() {
        let dir = Dir::new();
        let head = "name = \"w\"\nkernel = \"hello.elf\"\nmemory = 8\n";
        let cases = [
            ("vifs = [{ mac = \"00:16:3e\" }]", "is not a MAC address"),
            ("vifs = [{ vlan = 10, trunk = [20] }]", "not both"),
            ("vifs = [{ vlan = 4095 }]", "VLAN 4095 is not a VLAN id"),
            (
                "vifs = [{ trunk = [] }]",
                "a trunk carries 1 to 8 VLANs, not 0",
            ),
            ("vifs = [{ mac = \"01:00:5e:00:00:01\" }]", "multicast"),
        ];
        for (line, message) in cases {
            let (at, field, text) = error(&dir, &format!("{head}{line}\n"));
            assert_eq!(
                (at, field.as_deref()),
                (Some(4), Some("vifs")),
                "{line}: {text}"
            );
            assert!(text.contains(message), "{line}: {text}");
        }
        let (_, _, text) = error(&dir, &format!("{head}vifs = [{{ vlna = 1 }}]\n"));
        assert!(text.contains("unknown field `vlna`"), "{text}");
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let dir = Dir::new();
        let c = dir.config(GOOD).unwrap();
        assert_eq!(
            c.config,
            DomainConfig {
                name: "hello".into(),
                memory_mib: 32,
                vcpus: 2,
                cmdline: "quiet".into(),
                disks: Vec::new(),
                vifs: vec![],
                sched: Default::default(),
            }
        );
        assert_eq!(c.kernel_path, dir.0.path().join("hello.elf"));
        assert!(!c.kernel.is_empty());
        let minimal = dir
            .config("name = \"m\"\nkernel = \"hello.elf\"\nmemory = 8\n")
            .unwrap();
        assert_eq!(
            (minimal.config.vcpus, minimal.config.cmdline.as_str()),
            (1, "")
        );
    }

    #[test]
    fn type_and_range_errors_name_line_and_field() {
        let dir = Dir::new();
        let (line, field, message) = error(&dir, &GOOD.replace("memory = 32", "memory = \"lots\""));
        assert_eq!((line, field.as_deref()), (Some(3), Some("memory")));
        assert!(message.contains("invalid type"), "{message}");
        assert!(message.ends_with("(a whole number of MiB)"), "{message}");

        let (line, field, _) = error(&dir, &GOOD.replace("memory = 32", "memory = -4"));
        assert_eq!((line, field.as_deref()), (Some(3), Some("memory")));

        let (line, field, message) = error(&dir, &GOOD.replace("memory = 32", "memory = 0"));
        assert_eq!(
            (line, field.as_deref(), message.as_str()),
            (Some(3), Some("memory"), "must be at least 1 MiB")
        );

        let (line, field, message) = error(&dir, &GOOD.replace("vcpus = 2", "vcpus = 999"));
        assert_eq!((line, field.as_deref()), (Some(4), Some("vcpus")));
        assert!(message.contains("must be 1 to"), "{message}");

        let (line, field, message) = error(&dir, &GOOD.replace("\"hello\"\n", "\"has space\"\n"));
        assert_eq!((line, field.as_deref()), (Some(1), Some("name")));
        assert!(message.contains("' ' is not allowed"), "{message}");
    }

    #[test]
    fn scheduling_keys_load_like_xl() {
        let dir = Dir::new();
        let c = dir
            .config(&format!("{GOOD}cpus = \"0-3,5\"\nweight = 512\ncap = 50\n"))
            .unwrap();
        assert_eq!(
            c.config.sched,
            SchedConfig {
                cpus: Some(CpuSet(0b10_1111)),
                weight: Some(512),
                cap: Some(50),
            }
        );
        let all = dir
            .config(&format!("{GOOD}cpus = \"all\"\ncap = 0\n"))
            .unwrap();
        assert_eq!(all.config.sched.cpus, Some(CpuSet::ALL));
        assert_eq!(all.config.sched.cap, Some(0));
        assert_eq!(
            dir.config(GOOD).unwrap().config.sched,
            SchedConfig::default()
        );
    }

    #[test]
    fn bad_scheduling_keys_name_line_field_and_range() {
        let dir = Dir::new();
        let cases = [
            ("cpus = \"0-\"", "cpus", "'0-' is not a pCPU list"),
            ("cpus = \"64\"", "cpus", "below 64"),
            ("cpus = \"3-1\"", "cpus", "is not a pCPU list"),
            ("weight = 0", "weight", "must be 1 to 65535 (default 256)"),
            ("weight = 65536", "weight", "must be 1 to 65535"),
            ("weight = -1", "weight", "must be 1 to 65535"),
            (
                "cap = 6401",
                "cap",
                "must be 0 to 6400 (percent of one pCPU; 0: no cap)",
            ),
            ("cap = -5", "cap", "must be 0 to 6400"),
        ];
        for (line, want_field, want) in cases {
            let (at, field, message) = error(&dir, &format!("{GOOD}{line}\n"));
            assert_eq!(
                (at, field.as_deref()),
                (Some(6), Some(want_field)),
                "{line}"
            );
            assert!(message.contains(want), "{line}: {message}");
        }
        let (_, field, message) = error(&dir, &format!("{GOOD}weight = \"heavy\"\n"));
        assert_eq!(field.as_deref(), Some("weight"));
        assert!(
            message.ends_with("(a whole number, 1 to 65535)"),
            "{message}"
        );
    }

    #[test]
    fn disks_are_read_and_checked() {
        let dir = Dir::new();
        let text = format!(
            "{GOOD}disks = [{{ volume = \"data\", vdev = \"xvda\", mode = \"w\" }},\n  {{ volume = \"iso\", vdev = \"xvdb\", mode = \"r\" }}, {{ volume = \"x\", vdev = \"xvdc\" }}]\n"
        );
        let disks = dir.config(&text).unwrap().config.disks;
        let spec = |volume: &str, vdev: &str, mode| DiskSpec {
            volume: volume.into(),
            vdev: vdev.into(),
            mode,
        };
        assert_eq!(
            disks,
            vec![
                spec("data", "xvda", DiskMode::ReadWrite),
                spec("iso", "xvdb", DiskMode::ReadOnly),
                spec("x", "xvdc", DiskMode::ReadWrite),
            ]
        );
        let bad = |disks: &str| error(&dir, &format!("{GOOD}disks = {disks}\n"));
        let (line, field, message) = bad("[{ volume = \"d\", vdev = \"xvda\", mode = \"rw+\" }]");
        assert_eq!((line, field.as_deref()), (Some(6), Some("disks")));
        assert!(message.contains("neither \"w\""), "{message}");
        let (_, field, message) =
            bad("[{ volume = \"a\", vdev = \"xvda\" }, { volume = \"b\", vdev = \"xvda\" }]");
        assert_eq!(field.as_deref(), Some("disks"));
        assert!(message.contains("same device"), "{message}");
        let (_, _, message) = bad("[{ volume = \"a\", vdev = \"vda\" }]");
        assert!(message.contains("not a Xen disk name"), "{message}");
        let (_, _, message) = bad("[{ volume = \"a\", vdev = \"xvda\", size = 3 }]");
        assert!(message.contains("unknown field `size`"), "{message}");
    }

    #[test]
    fn syntax_missing_and_unknown_fields_are_reported() {
        let dir = Dir::new();
        let (line, _, message) = error(&dir, &GOOD.replace("vcpus = 2", "vcpus = = 2"));
        assert_eq!(line, Some(4), "{message}");

        let (line, field, message) = error(&dir, &GOOD.replace("kernel = \"hello.elf\"\n", ""));
        assert_eq!((line, field), (None, None));
        assert!(message.contains("missing field `kernel`"), "{message}");

        let (line, field, message) = error(&dir, &format!("{GOOD}memroy = 3\n"));
        assert_eq!((line, field), (Some(6), None));
        assert!(message.contains("unknown field `memroy`"), "{message}");
    }

    #[test]
    fn display_reads_file_line_column_field() {
        let dir = Dir::new();
        let e = dir
            .config(&GOOD.replace("memory = 32", "memory = 0"))
            .unwrap_err();
        let path = dir.0.path().join("d.toml");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3:10: field `memory`: must be at least 1 MiB",
                path.display()
            )
        );
        let missing = load(&dir.0.path().join("nope.toml")).unwrap_err();
        assert!(missing.to_string().contains("cannot read the config file"));
        let fifo = dir.0.path().join("config-pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
        ] {
            let e = load(path).unwrap_err().to_string();
            assert!(e.contains(&format!("it is {kind}")), "{e}");
        }
    }

    #[test]
    fn kernel_problems_point_at_the_kernel_line() {
        let dir = Dir::new();
        let with_kernel = |k: &str| GOOD.replace("hello.elf", k);
        let expect = |text: &str, needle: &str| {
            let (line, field, message) = error(&dir, text);
            assert_eq!(
                (line, field.as_deref()),
                (Some(2), Some("kernel")),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        };
        expect(&with_kernel("missing.elf"), "No such file");
        expect(
            &with_kernel("/dev/zero"),
            "it is a character device, not a regular file",
        );
        expect(&with_kernel("/"), "it is a directory, not a regular file");
        let fifo = dir.0.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        expect(
            &with_kernel("pipe"),
            "it is a FIFO (named pipe), not a regular file",
        );
        let big = dir.0.path().join("big.elf");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(u64::from(MAX_KERNEL_BYTES) + 1)
            .unwrap();
        expect(
            &with_kernel("big.elf"),
            "larger than the limit of 134217728 bytes",
        );
        dir.file("text.elf", b"#!/bin/sh\necho not an ELF\n");
        expect(&with_kernel("text.elf"), "not a little-endian ELF");
        dir.file(
            "arm.elf",
            &test_images::kernel(true, EM_AARCH64, &0x10_0000u64.to_le_bytes()),
        );
        expect(&with_kernel("arm.elf"), "ELF machine 183 is not x86");
        let no_note = test_images::elf(
            true,
            EM_X86_64,
            &[test_images::load(0x10_0000, &[0x90; 64], 64)],
        );
        dir.file("nonote.elf", &no_note);
        expect(
            &with_kernel("nonote.elf"),
            "no XEN_ELFNOTE_PHYS32_ENTRY note",
        );
    }
}
