//! The devices' INTx as event channels: each GSI xen-core wrote into a
//! function's Interrupt Line becomes a pirq and a port
//! (`guest_pv_shim::arch::physdev::DeviceIrq`), once per GSI, so that
//! functions sharing a line share the port. A driver acknowledges an
//! interrupt by reading its device's virtio ISR (which deasserts INTx),
//! then `PHYSDEVOP_eoi` (xen-core keeps a level-triggered GSI masked
//! until then). A line still asserted by another function fires again
//! after the EOI, which is what sharing a level-triggered line needs.

use alloc::vec::Vec;

use guest_pv_shim::arch::physdev::DeviceIrq;
use guest_pv_shim::{Xen, XenError};

/// The GSIs bound so far.
pub struct Irqs {
    xen: Xen,
    bound: Vec<DeviceIrq>,
}

impl Irqs {
    pub fn new(xen: Xen) -> Self {
        Irqs {
            xen,
            bound: Vec::new(),
        }
    }

    /// The port for `gsi`, binding it the first time.
    pub fn bind(&mut self, gsi: u8) -> Result<DeviceIrq, XenError> {
        let gsi = u32::from(gsi);
        if let Some(irq) = self.bound.iter().find(|irq| irq.gsi == gsi) {
            return Ok(*irq);
        }
        let irq = DeviceIrq::bind(&self.xen, gsi)?;
        self.bound.push(irq);
        Ok(irq)
    }
}

/// How a device's interrupt reaches dom0: for its log line.
pub fn describe(gsi: Option<u8>, irq: Option<&DeviceIrq>) -> alloc::string::String {
    match (gsi, irq) {
        (_, Some(irq)) => alloc::format!("gsi {} (pirq {}, port {})", irq.gsi, irq.pirq, irq.port),
        (Some(gsi), None) => alloc::format!("gsi {gsi} (not bound)"),
        (None, None) => "no gsi".into(),
    }
}
