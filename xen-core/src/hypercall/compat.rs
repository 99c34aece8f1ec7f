//! 32-bit ("compat") layouts of the structures whose x86_32 form differs
//! from x86_64: there `xen_ulong_t`, `xen_pfn_t` and guest handles are 4
//! bytes and `uint64_t` is only 4-byte aligned. Xen generates these as
//! `compat_*` from the same public headers (`xen/include/compat/`); a
//! caller in 32-bit mode passes them.

use abi::xen::memory::{XenAddToPhysmap, XenMemoryMap, XenMemoryReservation};
use abi::xen::sched::SchedPoll;
use abi::xen::vcpu::VcpuSetSingleshotTimer;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct compat_add_to_physmap`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct CompatAddToPhysmap {
    pub domid: u16,
    pub size: u16,
    pub space: u32,
    pub idx: u32,
    pub gpfn: u32,
}

impl From<CompatAddToPhysmap> for XenAddToPhysmap {
    fn from(c: CompatAddToPhysmap) -> Self {
        Self {
            domid: c.domid,
            size: c.size,
            space: c.space,
            idx: c.idx.into(),
            gpfn: c.gpfn.into(),
        }
    }
}

/// `struct compat_memory_reservation`, 20 bytes (the last 2 are the
/// domid's tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct CompatMemoryReservation {
    pub extent_start: u32,
    pub nr_extents: u32,
    pub extent_order: u32,
    pub mem_flags: u32,
    pub domid: u16,
    pub pad: u16,
}

impl From<CompatMemoryReservation> for XenMemoryReservation {
    fn from(c: CompatMemoryReservation) -> Self {
        Self {
            extent_start: c.extent_start.into(),
            nr_extents: c.nr_extents.into(),
            extent_order: c.extent_order,
            mem_flags: c.mem_flags,
            domid: c.domid,
            ..Self::default()
        }
    }
}

/// `struct compat_memory_map`, 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct CompatMemoryMap {
    pub nr_entries: u32,
    pub buffer: u32,
}

impl From<CompatMemoryMap> for XenMemoryMap {
    fn from(c: CompatMemoryMap) -> Self {
        Self {
            nr_entries: c.nr_entries,
            pad0: 0,
            buffer: c.buffer.into(),
        }
    }
}

/// `struct compat_vcpu_set_singleshot_timer`, 12 bytes (the u64 is
/// 4-byte aligned, so there is no tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct CompatSetSingleshotTimer {
    pub timeout_lo: u32,
    pub timeout_hi: u32,
    pub flags: u32,
}

impl From<CompatSetSingleshotTimer> for VcpuSetSingleshotTimer {
    fn from(c: CompatSetSingleshotTimer) -> Self {
        Self {
            timeout_abs_ns: u64::from(c.timeout_hi) << 32 | u64::from(c.timeout_lo),
            flags: c.flags,
            pad0: 0,
        }
    }
}

/// `struct compat_sched_poll`, 16 bytes: a 4-byte handle, then the
/// timeout 4-byte aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct CompatSchedPoll {
    pub ports: u32,
    pub nr_ports: u32,
    pub timeout_lo: u32,
    pub timeout_hi: u32,
}

impl From<CompatSchedPoll> for SchedPoll {
    fn from(c: CompatSchedPoll) -> Self {
        Self {
            ports: c.ports.into(),
            nr_ports: c.nr_ports,
            pad0: 0,
            timeout: u64::from(c.timeout_hi) << 32 | u64::from(c.timeout_lo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn sizes_match_x86_32() {
        assert_eq!(size_of::<CompatAddToPhysmap>(), 16);
        assert_eq!(size_of::<CompatMemoryMap>(), 8);
        assert_eq!(size_of::<CompatSetSingleshotTimer>(), 12);
        assert_eq!(size_of::<CompatSchedPoll>(), 16);
    }
}
