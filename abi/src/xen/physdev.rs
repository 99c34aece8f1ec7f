//! `HYPERVISOR_physdev_op` (33), `xen/include/public/physdev.h`: the
//! physical-IRQ (pirq) subset a hardware domain needs to take device
//! interrupts as event channels.
//!
//! `physdev_op(cmd, arg)`: arg = guest virtual address of the sub-op
//! struct. A GSI becomes a pirq with [`PHYSDEVOP_MAP_PIRQ`]
//! (`MAP_PIRQ_TYPE_GSI`, index = GSI), a pirq becomes a port with
//! `EVTCHNOP_bind_pirq` (`event_channel.h`), and the guest acknowledges
//! each interrupt with [`PHYSDEVOP_EOI`] once it has serviced the device.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `PHYSDEVOP_irq_status_query`: arg <-> [`PhysdevIrqStatusQuery`].
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// `PHYSDEVOP_eoi`: arg -> [`PhysdevEoi`].
pub const PHYSDEVOP_EOI: u32 = 12;
/// `PHYSDEVOP_map_pirq`: arg <-> [`PhysdevMapPirq`].
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq`: arg -> [`PhysdevUnmapPirq`].
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;

/// `MAP_PIRQ_TYPE_MSI`.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
/// `MAP_PIRQ_TYPE_GSI`: `index` is a global system interrupt.
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;

/// `XENIRQSTAT_needs_eoi`: the guest must call `PHYSDEVOP_eoi` after
/// servicing the IRQ.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// `XENIRQSTAT_shared`: the IRQ is shared with other domains.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// `struct physdev_eoi`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevEoi {
    /// IN: the pirq.
    pub irq: u32,
}

/// `struct physdev_irq_status_query`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrqStatusQuery {
    /// IN: the pirq.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}

/// `struct physdev_map_pirq`, 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirq {
    /// IN: the domain the pirq is for (`DOMID_SELF` allowed).
    pub domid: DomId,
    /// C padding.
    pub pad0: u16,
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub map_type: i32,
    /// IN: the GSI for `MAP_PIRQ_TYPE_GSI`.
    pub index: i32,
    /// IN: the pirq wanted, or -1 for any; OUT: the pirq.
    pub pirq: i32,
    /// IN (MSI): bus, high 16 bits the segment for `..._MSI_SEG`.
    pub bus: i32,
    /// IN (MSI): device and function.
    pub devfn: i32,
    /// IN (MSI): entry number.
    pub entry_nr: i32,
    /// C padding.
    pub pad1: u32,
    /// IN (MSI-X): table base.
    pub table_base: u64,
}

/// `struct physdev_unmap_pirq`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevUnmapPirq {
    /// IN: the domain (`DOMID_SELF` allowed).
    pub domid: DomId,
    /// C padding.
    pub pad0: u16,
    /// IN: the pirq.
    pub pirq: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_xen() {
        assert_eq!(size_of::<PhysdevEoi>(), 4);
        assert_eq!(size_of::<PhysdevIrqStatusQuery>(), 8);
        assert_eq!(offset_of!(PhysdevIrqStatusQuery, flags), 4);
        assert_eq!(size_of::<PhysdevMapPirq>(), 40);
        assert_eq!(offset_of!(PhysdevMapPirq, map_type), 4);
        assert_eq!(offset_of!(PhysdevMapPirq, index), 8);
        assert_eq!(offset_of!(PhysdevMapPirq, pirq), 12);
        assert_eq!(offset_of!(PhysdevMapPirq, bus), 16);
        assert_eq!(offset_of!(PhysdevMapPirq, devfn), 20);
        assert_eq!(offset_of!(PhysdevMapPirq, entry_nr), 24);
        assert_eq!(offset_of!(PhysdevMapPirq, table_base), 32);
        assert_eq!(size_of::<PhysdevUnmapPirq>(), 8);
        assert_eq!(offset_of!(PhysdevUnmapPirq, pirq), 4);
    }
}
