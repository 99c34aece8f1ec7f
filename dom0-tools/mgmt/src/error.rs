//! Errors a request can end in. Their `Display` text is what the operator
//! reads, so each says what went wrong and, where it helps, what to do.

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::{DomId, DomainRef, DomainState, FrameError, ProtocolVersion};

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MgmtError {
    /// The two sides' major protocol versions differ.
    #[error(
        "protocol version mismatch: the client speaks {client}, the management agent speaks \
         {server}; use a dom0ctl built from the same tree as the hypervisor"
    )]
    VersionMismatch {
        /// The client's version.
        client: ProtocolVersion,
        /// The server's version.
        server: ProtocolVersion,
    },
    /// A request without the current session: it came before `Hello`, or
    /// a later client's `Hello` ended its session.
    #[error(
        "no session: the request does not carry the current session (the Hello handshake must \
         come first, and a later client's Hello ends an earlier session)"
    )]
    HandshakeRequired,
    /// No domain has this name or id.
    #[error("unknown {0}")]
    UnknownDomain(DomainRef),
    /// A domain with this name exists.
    #[error("a domain named '{0}' already exists")]
    DuplicateName(String),
    /// Not enough free memory for the new domain.
    #[error("not enough memory: the domain needs {} but only {} is free", Mib(*.needed_kib), Mib(*.free_kib))]
    NotEnoughMemory {
        /// What the domain needs, KiB.
        needed_kib: u64,
        /// What is free, KiB.
        free_kib: u64,
    },
    /// The hypervisor runs as many domains as it can.
    #[error("too many domains: the hypervisor runs at most {max}; destroy one first")]
    TooManyDomains {
        /// Its limit, dom0 included.
        max: u32,
    },
    /// The kernel image cannot be built into a domain.
    #[error("bad kernel image: {0}")]
    BadKernelImage(String),
    /// The operation would stop dom0, which runs the management agent.
    #[error("cannot {0} dom0: it is the privileged domain that serves these requests")]
    Dom0Protected(DomainOperation),
    /// The operation does not apply to the domain's state.
    #[error("cannot {operation} domain {domid}: it is {state}")]
    InvalidState {
        /// The domain.
        domid: DomId,
        /// What was asked.
        operation: DomainOperation,
        /// Its state.
        state: DomainState,
    },
    /// A config field is out of range.
    #[error("invalid domain config: {field}: {reason}")]
    InvalidConfig {
        /// The field (`name`, `memory`, `vcpus`, `cmdline`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The chunked kernel upload went wrong; nothing was created.
    #[error("kernel upload failed: {0}")]
    Upload(UploadError),
    /// Console input or detach without an attached console.
    #[error("no console is attached on this connection")]
    ConsoleNotAttached,
    /// A frame could not be read; it was dropped.
    #[error("unreadable frame: {0}")]
    BadFrame(FrameError),
    /// A frame was read but does not hold a request this side knows.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// The agent does not implement this request.
    #[error("the management agent does not support {0}")]
    Unsupported(String),
    /// `Unpause` of a domain that is not paused.
    #[error("domain {domid} is not paused (it is {state}); there is nothing to unpause")]
    NotPaused {
        /// The domain.
        domid: DomId,
        /// Its state.
        state: DomainState,
    },
    /// `Pause` of a domain that is paused as often as the hypervisor counts.
    #[error("domain {domid} is already paused {max} times, the most the hypervisor counts")]
    TooManyPauses {
        /// The domain.
        domid: DomId,
        /// The hypervisor's limit.
        max: u32,
    },
    /// A control hypercall failed in a way no other variant describes.
    #[error("the hypervisor refused {operation}: {}", XenErrno(*errno))]
    Hypervisor {
        /// The control operation.
        operation: String,
        /// Its (negative) Xen errno.
        errno: i32,
    },
    /// A TCP client did not prove it holds the management key (protocol
    /// 2.2; see `mgmt::auth`). The server closes the connection after
    /// saying so.
    #[error(
        "authentication refused by the management agent: the key file does not hold the key \
         `cargo xtask up` gave this hypervisor (use the --key-file it printed)"
    )]
    AuthenticationRefused,
    /// A volume request failed (protocol 2.4).
    #[error("{0}")]
    Volume(crate::VolumeFailure),
    /// A block-device request, or a new domain's disk, failed (protocol
    /// 2.4).
    #[error("{0}")]
    Block(crate::BlockFailure),
    /// `network-detach` of a vif the domain does not have. Since 2.5.
    #[error("domain {domid} has no {vif} (see `dom0ctl network-list {domid}`)")]
    NoSuchVif {
        /// The domain.
        domid: DomId,
        /// How the request named the vif.
        vif: crate::VifRef,
    },
    /// dom0 could not attach or detach a vif (the vswitch or netback
    /// refused, e.g. a MAC already in use in the VLAN). Since 2.5.
    #[error("network: domain {domid}: {reason}")]
    NetworkRefused {
        /// The domain.
        domid: DomId,
        /// Why.
        reason: String,
    },
    /// `mem-set` above the domain's `memory/static-max`. Since 2.6.
    #[error(
        "cannot set the memory of domain {domid} to {}: its maximum is {} (raise it first with \
         `dom0ctl mem-max {domid} SIZE`)",
        Mib(*target_kib), Mib(*max_kib)
    )]
    MemoryAboveMax {
        /// The domain.
        domid: DomId,
        /// The target asked for, KiB.
        target_kib: u64,
        /// Its `memory/static-max`, KiB.
        max_kib: u64,
    },
    /// `mem-set` or `mem-max` below [`crate::MEM_FLOOR_KIB`]. Since 2.6.
    #[error(
        "cannot give domain {domid} {}: the least a domain may have is {}",
        Mib(*kib), Mib(*floor_kib)
    )]
    MemoryBelowFloor {
        /// The domain.
        domid: DomId,
        /// The size asked for, KiB.
        kib: u64,
        /// The floor, KiB.
        floor_kib: u64,
    },
    /// `mem-max` below the domain's `memory/target` (libxl: "memory_static_max
    /// must be greater than or equal to memory_dynamic_max"). Since 2.6.
    #[error(
        "cannot set the maximum memory of domain {domid} to {}: its target is {} (lower it \
         first with `dom0ctl mem-set {domid} SIZE`)",
        Mib(*max_kib), Mib(*target_kib)
    )]
    MaxBelowTarget {
        /// The domain.
        domid: DomId,
        /// The maximum asked for, KiB.
        max_kib: u64,
        /// Its `memory/target`, KiB.
        target_kib: u64,
    },
    /// A scheduling parameter the hypervisor cannot take (`vcpu-pin`,
    /// `sched-credit`): a vCPU the domain does not have, pCPUs none of
    /// which is online, a weight or cap out of range. Since 2.7.
    #[error("{what}: {reason}")]
    InvalidSchedParam {
        /// The parameter (`vcpu`, `cpus`, `weight`, `cap`).
        what: String,
        /// Why, with the range that is allowed.
        reason: String,
    },
}

/// A life-cycle operation on a domain, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainOperation {
    /// Destroy.
    Destroy,
    /// Pause.
    Pause,
    /// Unpause.
    Unpause,
    /// Ask to shut down.
    Shutdown,
    /// Attach to the console.
    AttachConsole,
    /// Attach a disk (2.4).
    AttachDisk,
    /// Attach a vif (`network-attach`). Since 2.5.
    AttachNetwork,
    /// `mem-set` or `mem-max`. Since 2.6.
    SetMemory,
}

impl fmt::Display for DomainOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Destroy => "destroy",
            Self::Pause => "pause",
            Self::Unpause => "unpause",
            Self::Shutdown => "shut down",
            Self::AttachConsole => "attach to the console of",
            Self::AttachDisk => "attach a disk to",
            Self::AttachNetwork => "attach a vif to",
            Self::SetMemory => "set the memory of",
        })
    }
}

/// Why a chunked upload (`CreateBegin`, `ImageChunk`…, `CreateCommit`)
/// failed. The upload is dropped; nothing was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum UploadError {
    /// `ImageChunk` or `CreateCommit` without `CreateBegin`.
    #[error("no upload in progress in this session (CreateBegin must come first)")]
    NotStarted,
    /// The announced image is larger than the limit.
    #[error("the kernel image is {len} bytes, more than the limit of {max} bytes")]
    ImageTooLarge {
        /// Announced length.
        len: u32,
        /// [`crate::MAX_IMAGE_BYTES`].
        max: u32,
    },
    /// A chunk carries more than the limit.
    #[error("a chunk of {len} bytes is larger than the limit of {max} bytes")]
    ChunkTooLarge {
        /// Its length.
        len: u32,
        /// [`crate::MAX_IMAGE_CHUNK`].
        max: u32,
    },
    /// A chunk does not continue where the previous one ended.
    #[error("chunk at offset {got}, expected offset {expected}")]
    OutOfOrder {
        /// Bytes received so far.
        expected: u32,
        /// The chunk's offset.
        got: u32,
    },
    /// A chunk goes past the announced length.
    #[error("chunk ends at byte {end}, past the announced {len} bytes")]
    PastEnd {
        /// Where it ends.
        end: u64,
        /// Announced length.
        len: u32,
    },
    /// Commit before all bytes arrived.
    #[error("only {received} of {expected} bytes arrived")]
    Incomplete {
        /// Received.
        received: u32,
        /// Announced.
        expected: u32,
    },
    /// The image's CRC-32 differs from the announced one.
    #[error("image checksum {computed:#010x} differs from the announced {expected:#010x}")]
    ChecksumMismatch {
        /// Announced.
        expected: u32,
        /// Of the bytes received.
        computed: u32,
    },
    /// The agent has no room to buffer the image.
    #[error("dom0 has no memory to buffer a {len}-byte image")]
    OutOfMemory {
        /// Announced length.
        len: u32,
    },
    /// The announced ramdisk is larger than the limit. Since 2.8.
    #[error("the ramdisk is {len} bytes, more than the limit of {max} bytes")]
    RamdiskTooLarge {
        /// Announced length.
        len: u32,
        /// [`crate::MAX_RAMDISK_BYTES`].
        max: u32,
    },
    /// The ramdisk's CRC-32 differs from the announced one. Since 2.8.
    #[error("ramdisk checksum {computed:#010x} differs from the announced {expected:#010x}")]
    RamdiskChecksumMismatch {
        /// Announced.
        expected: u32,
        /// Of the bytes received.
        computed: u32,
    },
}

impl From<UploadError> for MgmtError {
    fn from(e: UploadError) -> Self {
        Self::Upload(e)
    }
}

impl From<FrameError> for MgmtError {
    fn from(e: FrameError) -> Self {
        Self::BadFrame(e)
    }
}

/// A (negative) Xen errno as the operator reads it: its number and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenErrno(pub i32);

impl fmt::Display for XenErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Xen errno {}", self.0)?;
        match abi::xen::errno::Errno::from_return(i64::from(self.0)) {
            Some(name) => write!(f, " ({name:?})"),
            None => Ok(()),
        }
    }
}

/// A KiB amount shown in MiB: whole when exact, else with one decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mib(pub u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0 * 10 / 1024;
        if self.0.is_multiple_of(1024) {
            write!(f, "{} MiB", self.0 / 1024)
        } else {
            write!(f, "{}.{} MiB", tenths / 10, tenths % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn messages_carry_the_numbers() {
        let e = MgmtError::NotEnoughMemory {
            needed_kib: 512 * 1024,
            free_kib: 96 * 1024 + 512,
        };
        assert_eq!(
            e.to_string(),
            "not enough memory: the domain needs 512 MiB but only 96.5 MiB is free"
        );
        assert_eq!(
            MgmtError::Dom0Protected(DomainOperation::Destroy).to_string(),
            "cannot destroy dom0: it is the privileged domain that serves these requests"
        );
        assert_eq!(
            MgmtError::UnknownDomain(DomainRef::Name("web".into())).to_string(),
            "unknown domain 'web'"
        );
        assert_eq!(
            MgmtError::UnknownDomain(DomainRef::Id(9)).to_string(),
            "unknown domain 9"
        );
        assert_eq!(
            MgmtError::Hypervisor {
                operation: "getinfo".into(),
                errno: -22
            }
            .to_string(),
            "the hypervisor refused getinfo: Xen errno -22 (EINVAL)"
        );
    }
}
