//! `HYPERVISOR_event_channel_op`, `xen/include/public/event_channel.h`,
//! and the VIRQ numbers of `xen/include/public/xen.h`.
//!
//! `event_channel_op(cmd, arg)`: arg = guest virtual address of the
//! sub-op struct. Only the 2-level event ABI is implemented (pending and
//! mask bitmaps in the shared-info page); FIFO ops return `-ENOSYS`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `evtchn_port_t`: an event-channel port number.
pub type EvtchnPort = u32;

/// `EVTCHN_2L_NR_CHANNELS` on x86_64: ports of the 2-level ABI (64 × 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

/// `EVTCHNOP_bind_interdomain`: arg <-> [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`: arg <-> [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq`: arg <-> [`EvtchnBindPirq`].
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `BIND_PIRQ__WILL_SHARE`: `EvtchnBindPirq::flags` bit 0, the caller
/// accepts sharing the physical IRQ with other domains.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;
/// `EVTCHNOP_close`: arg -> [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`: arg -> [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`: arg <-> [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`: arg <-> [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`: arg <-> [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`: arg -> [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`: arg -> [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset`.
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control` (FIFO ABI).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (FIFO ABI).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// `VIRQ_TIMER`: per-vCPU; the vCPU's timer fired.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`: per-vCPU; request to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`: global (dom0); bytes arrived on the hypervisor console.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`: global (dom0); some domain shut down or crashed.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF`: global (dom0); trace records available.
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER`: global (dom0); a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF`: per-vCPU.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING`: global (dom0); bytes in the console ring.
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE`: global (dom0).
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT`: global (dom0).
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO`: global.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM`: global (dom0); the hypervisor is low on memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU`: per-vCPU.
pub const VIRQ_XENPMU: u32 = 13;
/// `NR_VIRQS`: VIRQ numbers at or above this fail with `-EINVAL`.
pub const NR_VIRQS: u32 = 24;

/// `EVTCHNSTAT_closed`: the port is not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`: waiting for a remote domain to bind.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`: connected to a remote domain's port.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`: bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`: bound to an inter-vCPU IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `struct evtchn_alloc_unbound`, 8 bytes: a port that `remote_dom` may bind.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in: `DOMID_SELF` (or another, if privileged).
    pub dom: DomId,
    /// IN: the domain allowed to bind the port.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain`, 12 bytes: connect to a remote
/// domain's unbound port.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindInterdomain {
    /// IN: the remote domain.
    pub remote_dom: DomId,
    /// Implicit C padding; zero.
    pub pad0: u16,
    /// IN: its unbound port, allocated for the caller.
    pub remote_port: EvtchnPort,
    /// OUT: the caller's new local port.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq`, 12 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*` number.
    pub virq: u32,
    /// IN: vCPU to deliver to (0 for global VIRQs).
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_pirq`, 12 bytes: a port for a physical IRQ the
/// caller mapped with `PHYSDEVOP_map_pirq` (`physdev.h`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindPirq {
    /// IN: the pirq (the domain's number for the physical IRQ).
    pub pirq: u32,
    /// IN: `BIND_PIRQ__WILL_SHARE` or 0.
    pub flags: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindIpi {
    /// IN: vCPU to deliver to.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_close`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnClose {
    /// IN: the caller's port to close.
    pub port: EvtchnPort,
}

/// `struct evtchn_send`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSend {
    /// IN: the caller's port to signal (its remote end becomes pending).
    pub port: EvtchnPort,
}

/// `struct evtchn_unmask`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnUnmask {
    /// IN: the caller's port to unmask (re-delivers if pending).
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_vcpu`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVcpu {
    /// IN: the caller's port.
    pub port: EvtchnPort,
    /// IN: vCPU to deliver its events to.
    pub vcpu: u32,
}

/// `struct evtchn_status`, 24 bytes. The C union `u` is kept as its
/// 8 raw bytes; [`EvtchnStatus::binding`] and
/// [`EvtchnStatus::set_binding`] read and write it with `status`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatus {
    /// IN: domain to query, `DOMID_SELF` (or another, if privileged).
    pub dom: DomId,
    /// Implicit C padding; zero.
    pub pad0: u16,
    /// IN: port to query.
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the port delivers to.
    pub vcpu: u32,
    /// OUT: the union `u`, little-endian: `unbound.dom` (u16 at 0),
    /// `interdomain.{dom (u16 at 0), port (u32 at 4)}`, `pirq`/`virq` (u32 at 0).
    pub u: [u8; 8],
}

/// What a port is bound to: `evtchn_status.status` with its union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnBinding {
    /// `EVTCHNSTAT_closed`.
    Closed,
    /// `EVTCHNSTAT_unbound`: the domain allowed to bind it.
    Unbound {
        /// `u.unbound.dom`.
        dom: DomId,
    },
    /// `EVTCHNSTAT_interdomain`: the remote end.
    Interdomain {
        /// `u.interdomain.dom`.
        dom: DomId,
        /// `u.interdomain.port`.
        port: EvtchnPort,
    },
    /// `EVTCHNSTAT_pirq`: `u.pirq`.
    Pirq(u32),
    /// `EVTCHNSTAT_virq`: `u.virq`.
    Virq(u32),
    /// `EVTCHNSTAT_ipi`.
    Ipi,
}

impl EvtchnStatus {
    /// Decodes `status` and `u`; `None` for an unknown status.
    pub fn binding(&self) -> Option<EvtchnBinding> {
        let u16_at0 = u16::from_le_bytes([self.u[0], self.u[1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([self.u[i], self.u[i + 1], self.u[i + 2], self.u[i + 3]]);
        Some(match self.status {
            EVTCHNSTAT_CLOSED => EvtchnBinding::Closed,
            EVTCHNSTAT_UNBOUND => EvtchnBinding::Unbound { dom: u16_at0 },
            EVTCHNSTAT_INTERDOMAIN => EvtchnBinding::Interdomain {
                dom: u16_at0,
                port: u32_at(4),
            },
            EVTCHNSTAT_PIRQ => EvtchnBinding::Pirq(u32_at(0)),
            EVTCHNSTAT_VIRQ => EvtchnBinding::Virq(u32_at(0)),
            EVTCHNSTAT_IPI => EvtchnBinding::Ipi,
            _ => return None,
        })
    }

    /// Writes `status` and `u` for `binding`; unused union bytes become zero.
    pub fn set_binding(&mut self, binding: EvtchnBinding) {
        let mut u = [0u8; 8];
        self.status = match binding {
            EvtchnBinding::Closed => EVTCHNSTAT_CLOSED,
            EvtchnBinding::Unbound { dom } => {
                u[..2].copy_from_slice(&dom.to_le_bytes());
                EVTCHNSTAT_UNBOUND
            }
            EvtchnBinding::Interdomain { dom, port } => {
                u[..2].copy_from_slice(&dom.to_le_bytes());
                u[4..].copy_from_slice(&port.to_le_bytes());
                EVTCHNSTAT_INTERDOMAIN
            }
            EvtchnBinding::Pirq(pirq) => {
                u[..4].copy_from_slice(&pirq.to_le_bytes());
                EVTCHNSTAT_PIRQ
            }
            EvtchnBinding::Virq(virq) => {
                u[..4].copy_from_slice(&virq.to_le_bytes());
                EVTCHNSTAT_VIRQ
            }
            EvtchnBinding::Ipi => EVTCHNSTAT_IPI,
        };
        self.u = u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use zerocopy::IntoBytes;

    #[test]
    fn layouts_match_event_channel_h() {
        assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
        assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);
        assert_eq!(size_of::<EvtchnBindInterdomain>(), 12);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);
        assert_eq!(size_of::<EvtchnBindPirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindPirq, flags), 4);
        assert_eq!(offset_of!(EvtchnBindPirq, port), 8);
        assert_eq!(size_of::<EvtchnBindVirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindVirq, vcpu), 4);
        assert_eq!(offset_of!(EvtchnBindVirq, port), 8);
        assert_eq!(size_of::<EvtchnBindIpi>(), 8);
        assert_eq!(offset_of!(EvtchnBindIpi, port), 4);
        assert_eq!(size_of::<EvtchnClose>(), 4);
        assert_eq!(size_of::<EvtchnSend>(), 4);
        assert_eq!(size_of::<EvtchnUnmask>(), 4);
        assert_eq!(size_of::<EvtchnBindVcpu>(), 8);
        assert_eq!(offset_of!(EvtchnBindVcpu, vcpu), 4);
        assert_eq!(size_of::<EvtchnStatus>(), 24);
        assert_eq!(offset_of!(EvtchnStatus, port), 4);
        assert_eq!(offset_of!(EvtchnStatus, status), 8);
        assert_eq!(offset_of!(EvtchnStatus, vcpu), 12);
        assert_eq!(offset_of!(EvtchnStatus, u), 16);
    }

    #[test]
    fn status_union_matches_c_bytes() {
        let mut s = EvtchnStatus::default();
        s.set_binding(EvtchnBinding::Interdomain {
            dom: 0x1234,
            port: 0x0506_0708,
        });
        // C: u.interdomain.dom at byte 16, u.interdomain.port at byte 20.
        assert_eq!(
            &s.as_bytes()[16..24],
            &[0x34, 0x12, 0, 0, 0x08, 0x07, 0x06, 0x05]
        );
        assert_eq!(s.status, EVTCHNSTAT_INTERDOMAIN);
        let all = [
            EvtchnBinding::Closed,
            EvtchnBinding::Unbound { dom: 7 },
            EvtchnBinding::Interdomain { dom: 1, port: 9 },
            EvtchnBinding::Pirq(33),
            EvtchnBinding::Virq(VIRQ_DOM_EXC),
            EvtchnBinding::Ipi,
        ];
        for b in all {
            s.set_binding(b);
            assert_eq!(s.binding(), Some(b));
        }
        s.status = 6;
        assert_eq!(s.binding(), None);
    }
}
