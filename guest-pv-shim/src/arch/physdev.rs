//! Device interrupts as event channels, the guest's side of Xen's pirq
//! ABI (`xen/include/public/physdev.h`, `EVTCHNOP_bind_pirq` of
//! `event_channel.h`): only the hardware domain (dom0) may map a GSI.
//!
//! The sequence: [`Xen::map_pirq_gsi`] turns a GSI into a pirq,
//! [`Xen::bind_pirq`] the pirq into a port (its events then wake
//! [`crate::Events::block_until`] like any other), and after each
//! interrupt, once the device's interrupt condition is cleared (a UART's
//! FIFO read, a virtio ISR read), [`Xen::pirq_eoi`] if
//! [`Xen::irq_status_query`] said `XENIRQSTAT_needs_eoi` (a
//! level-triggered GSI stays masked until then). [`DeviceIrq`] bundles
//! the three.

use abi::xen::domid::DOMID_SELF;
use abi::xen::event_channel::{self as ev, EvtchnPort};
use abi::xen::hypercall as nr;
use abi::xen::physdev::{
    PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevUnmapPirq, MAP_PIRQ_TYPE_GSI,
    PHYSDEVOP_EOI, PHYSDEVOP_IRQ_STATUS_QUERY, PHYSDEVOP_MAP_PIRQ, PHYSDEVOP_UNMAP_PIRQ,
    XENIRQSTAT_NEEDS_EOI,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::hypercall::{call, Xen};
use crate::error::{check, XenError};

impl Xen {
    /// `physdev_op(cmd, arg)` with `arg` read and updated by Xen.
    fn physdev_op<T: IntoBytes + FromBytes + Immutable>(
        &self,
        cmd: u32,
        arg: &mut T,
    ) -> Result<(), XenError> {
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: Xen reads and writes the sub-op struct `arg`, a live
        // exclusive borrow of exactly the struct's size.
        check(unsafe { call(nr::PHYSDEV_OP, [cmd.into(), argp, 0, 0, 0]) }).map(|_| ())
    }

    /// `PHYSDEVOP_map_pirq` (`MAP_PIRQ_TYPE_GSI`) for ourselves: the pirq
    /// GSI `gsi` becomes (any free one; the same again if mapped).
    pub fn map_pirq_gsi(&self, gsi: u32) -> Result<u32, XenError> {
        let mut a = PhysdevMapPirq {
            domid: DOMID_SELF,
            map_type: MAP_PIRQ_TYPE_GSI,
            index: i32::try_from(gsi).unwrap_or(-1),
            pirq: -1,
            ..Default::default()
        };
        self.physdev_op(PHYSDEVOP_MAP_PIRQ, &mut a)?;
        Ok(a.pirq.cast_unsigned())
    }

    /// `PHYSDEVOP_unmap_pirq` of our `pirq`.
    pub fn unmap_pirq(&self, pirq: u32) -> Result<(), XenError> {
        let mut a = PhysdevUnmapPirq {
            domid: DOMID_SELF,
            pad0: 0,
            pirq: pirq.cast_signed(),
        };
        self.physdev_op(PHYSDEVOP_UNMAP_PIRQ, &mut a)
    }

    /// `EVTCHNOP_bind_pirq`: a port (notifying vCPU 0) for our `pirq`.
    pub fn bind_pirq(&self, pirq: u32) -> Result<EvtchnPort, XenError> {
        let mut a = ev::EvtchnBindPirq {
            pirq,
            flags: 0,
            port: 0,
        };
        let argp = a.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: as in `physdev_op`.
        check(unsafe {
            call(
                nr::EVENT_CHANNEL_OP,
                [ev::EVTCHNOP_BIND_PIRQ.into(), argp, 0, 0, 0],
            )
        })?;
        Ok(a.port)
    }

    /// `PHYSDEVOP_eoi`: the interrupt of `pirq` is serviced.
    pub fn pirq_eoi(&self, pirq: u32) -> Result<(), XenError> {
        self.physdev_op(PHYSDEVOP_EOI, &mut PhysdevEoi { irq: pirq })
    }

    /// `PHYSDEVOP_irq_status_query`: the `XENIRQSTAT_*` flags of `pirq`.
    pub fn irq_status_query(&self, pirq: u32) -> Result<u32, XenError> {
        let mut a = PhysdevIrqStatusQuery {
            irq: pirq,
            flags: 0,
        };
        self.physdev_op(PHYSDEVOP_IRQ_STATUS_QUERY, &mut a)?;
        Ok(a.flags)
    }
}

/// A device interrupt bound to a port of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIrq {
    /// The GSI.
    pub gsi: u32,
    /// Our pirq for it.
    pub pirq: u32,
    /// The port its interrupts make pending.
    pub port: EvtchnPort,
    /// Whether each interrupt must be acknowledged with [`Xen::pirq_eoi`].
    pub needs_eoi: bool,
}

impl DeviceIrq {
    /// Maps `gsi`, binds it to a new port and asks whether it needs EOIs.
    /// On failure nothing stays mapped or bound.
    pub fn bind(xen: &Xen, gsi: u32) -> Result<DeviceIrq, XenError> {
        let pirq = xen.map_pirq_gsi(gsi)?;
        let bound = xen.bind_pirq(pirq).and_then(|port| {
            let flags = xen.irq_status_query(pirq).inspect_err(|_| {
                let _ = xen.evtchn_close(port);
            })?;
            Ok((port, flags))
        });
        match bound {
            Ok((port, flags)) => Ok(DeviceIrq {
                gsi,
                pirq,
                port,
                needs_eoi: flags & XENIRQSTAT_NEEDS_EOI != 0,
            }),
            Err(e) => {
                let _ = xen.unmap_pirq(pirq);
                Err(e)
            }
        }
    }

    /// Acknowledges an interrupt once the device no longer asserts it (a
    /// no-op for an edge-triggered GSI).
    pub fn eoi(&self, xen: &Xen) -> Result<(), XenError> {
        if self.needs_eoi {
            xen.pirq_eoi(self.pirq)?;
        }
        Ok(())
    }
}
