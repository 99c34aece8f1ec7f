//! Domain life-cycle operations: getinfo, list, create, destroy, pause, unpause.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ControlHeader;
use crate::xen::domid::DomId;
pub use crate::xen::sched::{
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_SUSPEND,
    SHUTDOWN_WATCHDOG,
};

/// Bytes of a domain name: UTF-8, NUL-padded, at least one byte, no NUL inside.
pub const DOMAIN_NAME_MAX: usize = 32;
/// Most vCPUs a domain may have (each needs a `vcpu_info` slot in shared info).
pub const MAX_VCPUS_PER_DOMAIN: u32 = 32;
const _: () =
    assert!(MAX_VCPUS_PER_DOMAIN as usize == crate::xen::shared_info::XEN_LEGACY_MAX_VCPUS);
/// Most vCPUs xen-core gives a domain today (at most
/// [`MAX_VCPUS_PER_DOMAIN`]); `CONTROL_OP_CREATE` refuses more with
/// `-EINVAL`. Toolstacks check configs against this. Added in 1.2.
pub const MAX_VCPUS_SUPPORTED: u32 = 8;
/// Most outstanding toolstack pauses of a domain (pauses nest, as Xen's
/// `domain_pause_by_systemcontroller` counts them, to the same limit);
/// one more gets `-EOVERFLOW`. Added in 1.2.
pub const PAUSE_COUNT_MAX: u32 = 255;

const _: () = assert!(MAX_VCPUS_SUPPORTED >= 1 && MAX_VCPUS_SUPPORTED <= MAX_VCPUS_PER_DOMAIN);
/// Most [`DomainInfo`] entries one [`ListResponse`] holds.
pub const LIST_BATCH_MAX: usize = 16;
/// Valid bits of [`CreateRequest::flags`]: none yet (reserved, zero).
pub const CREATE_FLAGS_VALID: u32 = 0;

/// [`DomainInfo::flags`]: being destroyed; its memory is being scrubbed.
pub const DOMAIN_FLAG_DYING: u32 = 1 << 0;
/// Shut down; [`DomainInfo::shutdown_reason`] says why.
pub const DOMAIN_FLAG_SHUTDOWN: u32 = 1 << 1;
/// Paused by the toolstack (new domains start paused).
pub const DOMAIN_FLAG_PAUSED: u32 = 1 << 2;
/// Every vCPU is blocked waiting for an event.
pub const DOMAIN_FLAG_BLOCKED: u32 = 1 << 3;
/// At least one vCPU is running on a pCPU now.
pub const DOMAIN_FLAG_RUNNING: u32 = 1 << 4;
/// The privileged domain (dom0).
pub const DOMAIN_FLAG_PRIVILEGED: u32 = 1 << 5;

/// Request naming one domain (getinfo, destroy, pause, unpause, get_stats), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DomainRequest {
    /// Version header.
    pub header: ControlHeader,
    /// The domain (`-ESRCH` if none has this id).
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: [u8; 6],
}

impl DomainRequest {
    /// A request naming `domid`, reserved fields zero.
    pub const fn new(domid: DomId) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            domid,
            pad: [0; 6],
        }
    }
}

/// One domain's state, 72 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DomainInfo {
    /// The domain's id.
    pub domid: DomId,
    /// Reserved; zero.
    pub pad0: u16,
    /// `DOMAIN_FLAG_*`.
    pub flags: u32,
    /// Xen `SHUTDOWN_*` reason, valid when `DOMAIN_FLAG_SHUTDOWN` is set.
    pub shutdown_reason: u32,
    /// Number of vCPUs.
    pub nr_vcpus: u32,
    /// Memory the domain holds now, KiB.
    pub memory_kib: u64,
    /// Memory limit set at creation, KiB.
    pub max_memory_kib: u64,
    /// CPU time used by all its vCPUs, ns.
    pub cpu_time_ns: u64,
    /// Name given at creation (see [`DOMAIN_NAME_MAX`]).
    pub name: [u8; DOMAIN_NAME_MAX],
}

/// List request, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ListRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Cursor: list domains with id >= this (0 to start).
    pub start_domid: DomId,
    /// Reserved; zero.
    pub pad: [u8; 6],
}

impl ListRequest {
    /// A request for the domains from `start_domid` on.
    pub const fn new(start_domid: DomId) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            start_domid,
            pad: [0; 6],
        }
    }
}

/// List response, 8 + 16 × 72 = 1160 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ListResponse {
    /// Valid entries at the start of `domains` (<= [`LIST_BATCH_MAX`]).
    pub nr_entries: u32,
    /// Cursor for the next call, or `DOMID_INVALID` when the list is complete.
    pub next_domid: DomId,
    /// Reserved; zero.
    pub pad: u16,
    /// The domains, by ascending domid; entries past `nr_entries` are zero.
    pub domains: [DomainInfo; LIST_BATCH_MAX],
}

/// Create request, 56 bytes. Errors: `-EINVAL` (bad name, zero or too many
/// vCPUs, zero memory, unknown flags), `-EEXIST` (name in use), `-ENOSPC`
/// (no free domid), `-ENOMEM`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CreateRequest {
    /// Version header.
    pub header: ControlHeader,
    /// Unique name (see [`DOMAIN_NAME_MAX`]).
    pub name: [u8; DOMAIN_NAME_MAX],
    /// Memory limit, KiB, a multiple of 4; frames come with populate.
    pub max_memory_kib: u64,
    /// Number of vCPUs, 1..=[`MAX_VCPUS_PER_DOMAIN`].
    pub max_vcpus: u32,
    /// `CREATE_FLAG_*` (none yet; zero).
    pub flags: u32,
}

impl CreateRequest {
    /// A request for a domain `name` with `max_memory_kib` and
    /// `max_vcpus`, no flags.
    pub const fn new(name: [u8; DOMAIN_NAME_MAX], max_memory_kib: u64, max_vcpus: u32) -> Self {
        Self {
            header: ControlHeader::CURRENT,
            name,
            max_memory_kib,
            max_vcpus,
            flags: 0,
        }
    }
}

/// Create response, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CreateResponse {
    /// The new domain's id; it starts paused with no memory.
    pub domid: DomId,
    /// Reserved; zero.
    pub pad: [u8; 6],
}

/// The name in a NUL-padded name field, if it is valid: non-empty UTF-8,
/// no NUL before the padding, only NULs after it.
pub fn parse_domain_name(field: &[u8; DOMAIN_NAME_MAX]) -> Option<&str> {
    let len = field
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(DOMAIN_NAME_MAX);
    if len == 0 || field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&field[..len]).ok()
}

/// A name field holding `name`, if it is 1..=[`DOMAIN_NAME_MAX`] bytes without NUL.
pub fn encode_domain_name(name: &str) -> Option<[u8; DOMAIN_NAME_MAX]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > DOMAIN_NAME_MAX || bytes.contains(&0) {
        return None;
    }
    let mut field = [0u8; DOMAIN_NAME_MAX];
    field[..bytes.len()].copy_from_slice(bytes);
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_bad_fields() {
        let f = encode_domain_name("guest-1").unwrap();
        assert_eq!(parse_domain_name(&f), Some("guest-1"));
        let full = "x".repeat(DOMAIN_NAME_MAX);
        assert_eq!(
            parse_domain_name(&encode_domain_name(&full).unwrap()),
            Some(full.as_str())
        );
        assert_eq!(encode_domain_name(""), None);
        assert_eq!(encode_domain_name(&"x".repeat(DOMAIN_NAME_MAX + 1)), None);
        assert_eq!(encode_domain_name("a\0b"), None);
        assert_eq!(parse_domain_name(&[0; DOMAIN_NAME_MAX]), None);
        let mut gap = f;
        gap[10] = b'z';
        assert_eq!(parse_domain_name(&gap), None);
        let mut bad_utf8 = [0u8; DOMAIN_NAME_MAX];
        bad_utf8[0] = 0xff;
        assert_eq!(parse_domain_name(&bad_utf8), None);
    }
}
