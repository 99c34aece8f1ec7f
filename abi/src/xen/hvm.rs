//! `HYPERVISOR_hvm_op`, `xen/include/public/hvm/hvm_op.h`, and the HVM
//! parameter indices of `xen/include/public/hvm/params.h`.
//!
//! `hvm_op(cmd, arg)`: arg = guest virtual address of the sub-op struct.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `HVMOP_set_param`: arg -> [`XenHvmParam`].
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`: arg <-> [`XenHvmParam`].
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_flush_tlbs`.
pub const HVMOP_FLUSH_TLBS: u32 = 5;
/// `HVMOP_pagetable_dying`.
pub const HVMOP_PAGETABLE_DYING: u32 = 9;
/// `HVMOP_get_time`.
pub const HVMOP_GET_TIME: u32 = 10;
/// `HVMOP_get_mem_type`.
pub const HVMOP_GET_MEM_TYPE: u32 = 15;
/// `HVMOP_set_evtchn_upcall_vector`: per-vCPU upcall vector, preferred over
/// the domain-wide callback; arg -> [`XenHvmEvtchnUpcallVector`].
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;
/// `HVMOP_guest_request_vm_event`: a guest's request to its monitor
/// (arg null).
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u32 = 24;

/// `struct xen_hvm_param`, 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmParam {
    /// IN: domain, normally `DOMID_SELF`.
    pub domid: DomId,
    /// Padding; zero.
    pub pad: u16,
    /// IN: `HVM_PARAM_*` index, below [`HVM_NR_PARAMS`].
    pub index: u32,
    /// IN (set) / OUT (get): the value.
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmEvtchnUpcallVector {
    /// vCPU id within the calling domain.
    pub vcpu: u32,
    /// Interrupt vector (0x10..=0xff) for its event upcalls.
    pub vector: u8,
    /// Implicit C tail padding; zero.
    pub pad0: [u8; 3],
}

/// `HVM_PARAM_CALLBACK_IRQ`: how event upcalls reach vCPU 0; see [`CallbackVia`].
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: GFN of the xenstore ring page.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: event-channel port of the xenstore ring.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_IOREQ_PFN`.
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN`.
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN`.
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE`.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED`.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT`.
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_ACPI_S_STATE`.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS`.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN`.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN`: GFN of the PV console ring page (io/console.h).
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: event-channel port of the PV console.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_PAGING_RING_PFN`.
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN`.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN`.
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_TRIPLE_FAULT_REASON`.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN`.
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES`.
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP`.
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS`: indices at or above this fail with `-EINVAL`.
pub const HVM_NR_PARAMS: u32 = 39;

/// `HVM_PARAM_CALLBACK_IRQ_TYPE_MASK`: bits 63:56 of the value hold the type.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xff00_0000_0000_0000;
/// Shift of the type field in the `HVM_PARAM_CALLBACK_IRQ` value.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// `HVM_PARAM_CALLBACK_TYPE_GSI`: bits 55:0 are a GSI (not 0).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u8 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_PCI_INTX`: bits 55:0 are a PCI INTx line.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u8 = 1;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR`: bits 7:0 are a vector (needs
/// `XENFEAT_hvm_callback_vector`).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u8 = 2;

/// The decoded value of `HVM_PARAM_CALLBACK_IRQ` ("callback via").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackVia {
    /// Value 0: no upcalls are delivered.
    Disabled,
    /// Type 0: level-triggered through this GSI (bits 55:0).
    Gsi(u64),
    /// Type 1: a PCI INTx line.
    PciIntx {
        /// PCI segment, bits 47:32.
        domain: u16,
        /// Bus, bits 31:16.
        bus: u8,
        /// Device and function, bits 15:8.
        devfn: u8,
        /// INTx pin 0-3 (A-D), bits 1:0.
        intx: u8,
    },
    /// Type 2: this interrupt vector, bits 7:0.
    Vector(u8),
}

impl CallbackVia {
    /// The type field of a value.
    const fn type_bits(ty: u8) -> u64 {
        (ty as u64) << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT
    }

    /// Decodes a value as Xen's `hvm_set_callback_via` reads it; `None` for
    /// an unknown type (Xen then delivers nothing).
    pub const fn decode(value: u64) -> Option<CallbackVia> {
        if value == 0 {
            return Some(CallbackVia::Disabled);
        }
        let payload = value & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK;
        match (value >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) as u8 {
            HVM_PARAM_CALLBACK_TYPE_GSI => Some(CallbackVia::Gsi(payload)),
            HVM_PARAM_CALLBACK_TYPE_PCI_INTX => Some(CallbackVia::PciIntx {
                domain: ((payload >> 32) & 0xffff) as u16,
                bus: ((payload >> 16) & 0xff) as u8,
                devfn: ((payload >> 8) & 0xff) as u8,
                intx: (payload & 3) as u8,
            }),
            HVM_PARAM_CALLBACK_TYPE_VECTOR => Some(CallbackVia::Vector((payload & 0xff) as u8)),
            _ => None,
        }
    }

    /// The parameter value that selects this delivery method.
    pub const fn encode(self) -> u64 {
        match self {
            CallbackVia::Disabled => 0,
            CallbackVia::Gsi(gsi) => {
                Self::type_bits(HVM_PARAM_CALLBACK_TYPE_GSI)
                    | (gsi & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK)
            }
            CallbackVia::PciIntx {
                domain,
                bus,
                devfn,
                intx,
            } => {
                Self::type_bits(HVM_PARAM_CALLBACK_TYPE_PCI_INTX)
                    | (domain as u64) << 32
                    | (bus as u64) << 16
                    | (devfn as u64) << 8
                    | (intx & 3) as u64
            }
            CallbackVia::Vector(v) => Self::type_bits(HVM_PARAM_CALLBACK_TYPE_VECTOR) | v as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_hvm_op_h() {
        assert_eq!(size_of::<XenHvmParam>(), 16);
        assert_eq!(offset_of!(XenHvmParam, pad), 2);
        assert_eq!(offset_of!(XenHvmParam, index), 4);
        assert_eq!(offset_of!(XenHvmParam, value), 8);
        assert_eq!(size_of::<XenHvmEvtchnUpcallVector>(), 8);
        assert_eq!(offset_of!(XenHvmEvtchnUpcallVector, vector), 4);
    }

    #[test]
    fn callback_via_encoding() {
        assert_eq!(CallbackVia::Vector(0xf3).encode(), 0x0200_0000_0000_00f3);
        assert_eq!(
            CallbackVia::decode(0x0200_0000_0000_00f3),
            Some(CallbackVia::Vector(0xf3))
        );
        assert_eq!(CallbackVia::decode(0), Some(CallbackVia::Disabled));
        assert_eq!(CallbackVia::decode(28), Some(CallbackVia::Gsi(28)));
        assert_eq!(CallbackVia::decode(0x0300_0000_0000_0001), None);
        let intx = CallbackVia::PciIntx {
            domain: 1,
            bus: 2,
            devfn: 0x18,
            intx: 3,
        };
        assert_eq!(intx.encode(), 0x0100_0001_0002_1803);
        assert_eq!(CallbackVia::decode(intx.encode()), Some(intx));
    }
}
