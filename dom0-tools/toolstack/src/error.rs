//! Why creating a domain failed, in words an operator can act on.

use alloc::boxed::Box;
use core::fmt;

use abi::control::{DOMAIN_NAME_MAX, MAX_VCPUS_PER_DOMAIN};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use pvh_builder::BuildError;

/// A step of [`crate::create_domain`] that asks the hypervisor something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `CONTROL_OP_PHYSINFO` (the free-memory check).
    Physinfo,
    /// `CONTROL_OP_CREATE`.
    Create,
    /// `CONTROL_OP_POPULATE_MEMORY`.
    Populate,
    /// `CONTROL_OP_MAP_FOREIGN`.
    MapForeign,
    /// Writing the mapped frames.
    WriteForeign,
    /// `CONTROL_OP_UNMAP_FOREIGN`.
    UnmapForeign,
    /// `EVTCHNOP_alloc_unbound` of the console's port.
    ConsoleEvtchn,
    /// `HVMOP_set_param` of `HVM_PARAM_CONSOLE_PFN` / `_EVTCHN`.
    ConsoleParams,
    /// `XENMEM_set_memory_map`.
    MemoryMap,
    /// `CONTROL_OP_SET_VCPU_CONTEXT` of vCPU 0.
    SetVcpuContext,
    /// `CONTROL_OP_UNPAUSE`.
    Unpause,
    /// `EVTCHNOP_alloc_unbound` of the store's port.
    StoreEvtchn,
    /// `HVMOP_set_param` of `HVM_PARAM_STORE_PFN` / `_EVTCHN`.
    StoreParams,
    /// `CONTROL_OP_SCHED_CREDIT` (the config's weight and cap).
    SchedCredit,
    /// `CONTROL_OP_SET_VCPU_AFFINITY` (the config's `cpus`).
    VcpuAffinity,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Physinfo => "reading the free memory",
            Self::Create => "creating the domain",
            Self::Populate => "giving the domain its memory",
            Self::MapForeign => "mapping the domain's memory into dom0",
            Self::WriteForeign => "writing the domain's memory",
            Self::UnmapForeign => "unmapping the domain's memory from dom0",
            Self::ConsoleEvtchn => "allocating the console event channel",
            Self::ConsoleParams => "setting the console HVM parameters",
            Self::MemoryMap => "storing the domain's memory map",
            Self::SetVcpuContext => "setting vCPU 0's registers",
            Self::Unpause => "unpausing the domain",
            Self::StoreEvtchn => "allocating the store event channel",
            Self::StoreParams => "setting the store HVM parameters",
            Self::SchedCredit => "setting the credit weight and cap",
            Self::VcpuAffinity => "pinning the vCPUs",
        })
    }
}

/// Why [`crate::create_domain`] failed. Apart from
/// [`CreateError::NotCleanedUp`], nothing of the domain is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The name is empty, longer than [`DOMAIN_NAME_MAX`] bytes or holds a NUL.
    BadName,
    /// The vCPU count is 0 or above [`MAX_VCPUS_PER_DOMAIN`].
    BadVcpus(u32),
    /// The memory size is 0 MiB.
    NoMemory,
    /// The kernel image or command line is refused by the PVH builder.
    Image(BuildError),
    /// The host has less free memory than the domain needs (KiB).
    NotEnoughMemory {
        /// What the domain needs: RAM, console and store pages, estimated page tables.
        needed_kib: u64,
        /// What `CONTROL_OP_PHYSINFO` reported free.
        free_kib: u64,
    },
    /// The hypervisor has no free domain slot or domid (`-ENOSPC`).
    TooManyDomains,
    /// A domain with this name exists (`-EEXIST`).
    DuplicateName,
    /// A hypervisor operation failed.
    Hypervisor {
        /// Which step.
        op: Op,
        /// The hypervisor's errno.
        errno: Errno,
    },
    /// A step after `CONTROL_OP_CREATE` failed (`cause`), and so did
    /// destroying the half-built domain `domid`.
    NotCleanedUp {
        /// The half-built domain, still there.
        domid: DomId,
        /// `CONTROL_OP_DESTROY`'s errno.
        destroy: Errno,
        /// Why the build stopped.
        cause: Box<CreateError>,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName => write!(
                f,
                "invalid domain name: 1 to {DOMAIN_NAME_MAX} bytes without NUL"
            ),
            Self::BadVcpus(n) => {
                write!(f, "invalid vCPU count {n}: 1 to {MAX_VCPUS_PER_DOMAIN}")
            }
            Self::NoMemory => f.write_str("invalid memory size: at least 1 MiB"),
            Self::Image(e) => write!(f, "bad kernel image: {e}"),
            Self::NotEnoughMemory {
                needed_kib,
                free_kib,
            } => write!(
                f,
                "not enough free memory: the domain needs {needed_kib} KiB, {free_kib} KiB are free"
            ),
            Self::TooManyDomains => f.write_str("too many domains: no free domain slot or domid"),
            Self::DuplicateName => f.write_str("a domain with this name exists already"),
            Self::Hypervisor { op, errno } => write!(f, "hypervisor error {op}: -{errno:?}"),
            Self::NotCleanedUp {
                domid,
                destroy,
                cause,
            } => write!(
                f,
                "{cause}; destroying the half-built domain {domid} failed too (-{destroy:?})"
            ),
        }
    }
}
