//! dom0's vswitch (issue 13): the `vswitch` crate's [`Switch`] with the
//! uplink NIC as one of its ports and a bounded queue of frames for each
//! vif, which netback drains into the guest's rx ring.
//!
//! - The uplink is dom0's second virtio NIC ([`crate::devices::nic::Role::Uplink`],
//!   QEMU user networking on loopback, see `abi::machine`), an access port
//!   in [`UPLINK_VLAN`]: what it receives is switched on its interrupt
//!   event ([`Vswitch::poll`]); what the switch sends it is transmitted
//!   at once.
//! - A vif's port is added by netback at attach ([`Vswitch::add_port`])
//!   and removed at detach. Frames a guest transmits go to
//!   [`Vswitch::forward`]; frames switched to a vif wait in its queue
//!   ([`VIF_QUEUE_FRAMES`] at most; more are dropped and counted as the
//!   port's `tx_dropped`) until netback takes them
//!   ([`Vswitch::pop_frame`]).
//! - Without an uplink NIC the switch still joins the guests east-west.
//! - [`baseline`]: dom0's own bulk TCP through the uplink NIC (`cargo
//!   xtask bench`'s yardstick for a guest's rate to the host).

pub mod baseline;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use guest_pv_shim::{println, Events};
use vswitch::{
    PortConfig, PortId, PortKind, Snapshot, Switch, SwitchError, Verdict, VlanMode, MAX_FRAME_LEN,
    VLAN_TAG_LEN,
};

use crate::devices::nic::{Nic, MAX_FRAME_BYTES};

/// The uplink's VLAN (an access port, untagged toward QEMU): the VLAN a
/// vif joins when its config names none.
pub const UPLINK_VLAN: u16 = vswitch::DEFAULT_VLAN;
/// Most frames waiting for one vif; netback takes them as the guest
/// posts rx buffers.
pub const VIF_QUEUE_FRAMES: usize = 32;
/// Most frames taken from the uplink in one pass (the rest wait in its
/// ring for the next pass, which [`Vswitch::poll`] asks for at once).
const UPLINK_RX_BUDGET: usize = 64;

/// The switch, its uplink and the vifs' queues.
pub struct Vswitch {
    switch: Switch,
    uplink: Option<Uplink>,
    queues: BTreeMap<PortId, VecDeque<Vec<u8>>>,
    rx_buf: Vec<u8>,
}

struct Uplink {
    port: PortId,
    nic: Nic,
    /// Device errors (receive or transmit), logged at 1, 2, 4, 8, ...
    errors: u64,
}

impl Vswitch {
    /// The switch, with `nic` (if dom0 has an uplink NIC) as its uplink
    /// port in [`UPLINK_VLAN`].
    pub fn new(nic: Option<Nic>) -> Self {
        let mut switch = Switch::new();
        let uplink = nic.and_then(|nic| {
            let config = PortConfig {
                name: "uplink".into(),
                kind: PortKind::Uplink,
                vlan: VlanMode::Access(UPLINK_VLAN),
            };
            match switch.add_port(config) {
                Ok(port) => {
                    println!(
                        "dom0: vswitch: uplink on nic {} (port {port}, access VLAN {UPLINK_VLAN}, {})",
                        nic.bdf(),
                        if nic.irq().is_some() { "interrupts" } else { "polled" }
                    );
                    Some(Uplink { port, nic, errors: 0 })
                }
                Err(e) => {
                    println!("dom0: vswitch: uplink refused: {e}");
                    None
                }
            }
        });
        if uplink.is_none() {
            println!("dom0: vswitch: no uplink NIC: guests reach only each other");
        }
        Vswitch {
            switch,
            uplink,
            queues: BTreeMap::new(),
            rx_buf: vec![0; MAX_FRAME_BYTES],
        }
    }

    /// Adds a vif's port (netback, at attach).
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, SwitchError> {
        let port = self.switch.add_port(config)?;
        self.queues.insert(port, VecDeque::new());
        Ok(port)
    }

    /// Removes a vif's port and the frames waiting for it.
    pub fn remove_port(&mut self, port: PortId) -> Result<PortConfig, SwitchError> {
        self.queues.remove(&port);
        self.switch.remove_port(port)
    }

    /// Switches a frame a vif transmitted (netback's tx path).
    pub fn forward(&mut self, src: PortId, frame: &[u8]) -> Verdict {
        let Self {
            switch,
            uplink,
            queues,
            ..
        } = self;
        let mut full = Vec::new();
        let verdict = switch.forward(src, frame, &mut |dst, bytes| {
            if !deliver(uplink, queues, dst, bytes) {
                full.push(dst);
            }
        });
        for port in full {
            switch.count_tx_dropped(port);
        }
        verdict
    }

    /// The next frame switched to `port`, oldest first.
    pub fn pop_frame(&mut self, port: PortId) -> Option<Vec<u8>> {
        self.queues.get_mut(&port)?.pop_front()
    }

    /// Whether frames wait for `port`.
    pub fn has_frames(&self, port: PortId) -> bool {
        self.queues.get(&port).is_some_and(|q| !q.is_empty())
    }

    /// One pass: sets the switch's clock (learned MACs age), and if the
    /// uplink's interrupt fired (or it has no interrupt), acknowledges it
    /// and switches what it received. Returns a deadline when the next
    /// pass is due without an event (frames left in its ring, or polling).
    pub fn poll(&mut self, events: &Events, now_ns: u64) -> Option<u64> {
        self.switch.tick(now_ns / 1_000_000);
        let uplink = self.uplink.as_mut()?;
        if let Some(irq) = uplink.nic.irq() {
            if events.take(&[irq.port]).is_some() {
                if let Err(e) = uplink.nic.ack_interrupt(events.xen()) {
                    println!("dom0: vswitch: uplink interrupt EOI failed: {e}");
                }
            }
        }
        let polled = uplink.nic.irq().is_none();
        let more = self.drain_uplink();
        (more || polled).then_some(now_ns.saturating_add(if more { 0 } else { POLL_NS }))
    }

    /// What `vswitch show` reports.
    pub fn snapshot(&self) -> Snapshot {
        self.switch.snapshot()
    }

    /// Switches up to [`UPLINK_RX_BUDGET`] frames from the uplink; whether
    /// more may wait.
    fn drain_uplink(&mut self) -> bool {
        for _ in 0..UPLINK_RX_BUDGET {
            let Some(uplink) = self.uplink.as_mut() else {
                return false;
            };
            let port = uplink.port;
            let len = match uplink.nic.receive(&mut self.rx_buf) {
                Ok(Some(len)) => len,
                Ok(None) => return false,
                Err(e) => {
                    uplink.error("receive", &e);
                    continue;
                }
            };
            let frame = core::mem::take(&mut self.rx_buf);
            self.forward(port, frame.get(..len).unwrap_or_default());
            self.rx_buf = frame;
        }
        true
    }
}

/// How often a NIC without an interrupt is polled, ns.
const POLL_NS: u64 = 10_000_000;

/// Hands `bytes` to port `dst`: out of the uplink, or into a vif's queue.
/// `false` if it could not be taken (queue full, device error).
fn deliver(
    uplink: &mut Option<Uplink>,
    queues: &mut BTreeMap<PortId, VecDeque<Vec<u8>>>,
    dst: PortId,
    bytes: &[u8],
) -> bool {
    if let Some(up) = uplink.as_mut().filter(|u| u.port == dst) {
        return match up.nic.transmit(bytes) {
            Ok(()) => true,
            Err(e) => {
                up.error("transmit", &e);
                false
            }
        };
    }
    match queues.get_mut(&dst) {
        Some(queue) if queue.len() < VIF_QUEUE_FRAMES => {
            debug_assert!(bytes.len() <= MAX_FRAME_LEN + VLAN_TAG_LEN);
            queue.push_back(bytes.to_vec());
            true
        }
        _ => false,
    }
}

impl Uplink {
    fn error(&mut self, what: &str, e: &dyn core::fmt::Display) {
        self.errors += 1;
        if self.errors.is_power_of_two() {
            println!(
                "dom0: vswitch: uplink {what} failed: {e} ({} errors so far)",
                self.errors
            );
        }
    }
}
