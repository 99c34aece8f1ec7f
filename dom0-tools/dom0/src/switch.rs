//! dom0's vswitch, east-west only: the `vswitch` crate's [`Switch`] and a
//! bounded queue of frames for each vif, which netback drains into the
//! guest's rx ring. (Branch `vswitch` brings the uplink NIC and the
//! operator's view; this is what netback needs until it lands.)

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use vswitch::{PortConfig, PortId, Switch, SwitchError, Verdict};

/// Most frames waiting for one vif; netback takes them as the guest
/// posts rx buffers.
pub const VIF_QUEUE_FRAMES: usize = 32;

/// The switch and the vifs' queues.
#[derive(Default)]
pub struct Vswitch {
    switch: Switch,
    queues: BTreeMap<PortId, VecDeque<Vec<u8>>>,
}

impl Vswitch {
    /// An empty switch.
    pub fn new() -> Self {
        Self::default()
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
        let queues = &mut self.queues;
        self.switch.forward(src, frame, &mut |dst, bytes| {
            if let Some(queue) = queues.get_mut(&dst).filter(|q| q.len() < VIF_QUEUE_FRAMES) {
                queue.push_back(bytes.to_vec());
            }
        })
    }

    /// The next frame switched to `port`, oldest first.
    pub fn pop_frame(&mut self, port: PortId) -> Option<Vec<u8>> {
        self.queues.get_mut(&port)?.pop_front()
    }

    /// Whether frames wait for `port`.
    pub fn has_frames(&self, port: PortId) -> bool {
        self.queues.get(&port).is_some_and(|q| !q.is_empty())
    }

    /// Sets the switch's clock (learned MACs age).
    pub fn poll(&mut self, now_ns: u64) {
        self.switch.tick(now_ns / 1_000_000);
    }
}
