//! Statistics and host information.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most distinct VM exit codes one [`DomainStats`] reports.
pub const STATS_EXIT_CODES_MAX: usize = 32;
/// Hypercall counters in [`DomainStats`], indexed by hypercall number.
pub const STATS_HYPERCALL_SLOTS: usize = 64;

/// Count of one VM exit code, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ExitCounter {
    /// SVM exit code (VMCB EXITCODE, AMD APM vol. 2 appendix C).
    pub exit_code: u64,
    /// VM exits with this code.
    pub count: u64,
}

/// One domain's counters since creation, 1040 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DomainStats {
    /// CPU time used by all its vCPUs, ns.
    pub cpu_time_ns: u64,
    /// Number of vCPUs.
    pub nr_vcpus: u32,
    /// Valid entries at the start of `exits`.
    pub nr_exit_codes: u32,
    /// VM exits by exit code, most frequent first; codes beyond
    /// [`STATS_EXIT_CODES_MAX`] are not reported.
    pub exits: [ExitCounter; STATS_EXIT_CODES_MAX],
    /// Hypercalls made, indexed by hypercall number (0..64).
    pub hypercalls: [u64; STATS_HYPERCALL_SLOTS],
}

/// Host facts, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Physinfo {
    /// pCPUs the hypervisor runs on.
    pub nr_pcpus: u32,
    /// Domains that exist now, dom0 included.
    pub nr_domains: u32,
    /// Usable RAM the hypervisor manages, KiB.
    pub total_memory_kib: u64,
    /// RAM not yet given to a domain or the hypervisor, KiB.
    pub free_memory_kib: u64,
    /// TSC frequency, kHz.
    pub tsc_khz: u64,
}

/// Most bytes one [`CONTROL_OP_READCONSOLE`](super::CONTROL_OP_READCONSOLE) copies.
pub const READCONSOLE_MAX: u32 = 4096;

/// Request of `CONTROL_OP_READCONSOLE`, 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ReadConsoleRequest {
    /// Interface version.
    pub header: super::ControlHeader,
    /// Where to copy: a guest virtual address in the caller.
    pub buffer: u64,
    /// Bytes wanted, at most [`READCONSOLE_MAX`] are copied.
    pub size: u32,
    /// Must be zero.
    pub pad: u32,
    /// Where to start, in bytes from the oldest byte the ring holds now.
    pub offset: u64,
}

impl ReadConsoleRequest {
    /// A request for `size` bytes of the log from `offset`, copied to
    /// the caller's `buffer`.
    pub const fn new(buffer: u64, size: u32, offset: u64) -> Self {
        Self {
            header: super::ControlHeader::CURRENT,
            buffer,
            size,
            pad: 0,
            offset,
        }
    }
}

/// Response of `CONTROL_OP_READCONSOLE`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ReadConsoleResponse {
    /// Bytes copied to `buffer`.
    pub count: u32,
    /// Zero.
    pub pad: u32,
    /// Bytes the ring holds now (the log's most recent output).
    pub total: u64,
}
