//! One domain's port table: what each port is bound to and which vCPU it
//! notifies (Xen's `struct evtchn`: `state`, `u`, `notify_vcpu_id`).
//!
//! The table grows on demand one bucket of [`PORTS_PER_BUCKET`] ports at a
//! time (Xen's `EVTCHNS_PER_BUCKET`) up to [`MAX_EVTCHN_PORTS`], with a
//! fallible allocation: a guest cannot make it grow further, and a full
//! heap is `-ENOMEM`, not a panic. Ports below the table's length, and
//! those of the first bucket even before it is allocated (Xen allocates
//! it with the domain), are "valid" (Xen's `port_is_valid`); others are
//! `-EINVAL` to every op. Port 0 is never allocated (Xen's
//! `ECS_RESERVED`): it reads as closed.

use alloc::vec::Vec;

use abi::xen::errno::Errno;
use abi::xen::event_channel::{EvtchnBinding, EvtchnPort, EVTCHN_2L_NR_CHANNELS};

/// Ports per domain: libxl's default `max_event_channels` (1023) plus the
/// reserved port 0. At most the 2-level ABI's `EVTCHN_2L_NR_CHANNELS`.
pub const MAX_EVTCHN_PORTS: u32 = 1024;
/// Ports the table grows by: one 64-bit word of the pending bitmap.
pub const PORTS_PER_BUCKET: usize = 64;

const _: () = assert!(MAX_EVTCHN_PORTS <= EVTCHN_2L_NR_CHANNELS);
const _: () = assert!((MAX_EVTCHN_PORTS as usize).is_multiple_of(PORTS_PER_BUCKET));

/// One port: its binding (Xen's state and union, as `evtchn_status`
/// reports them) and the vCPU it notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// What the port is bound to; `Closed` for a free port.
    pub binding: EvtchnBinding,
    /// vCPU whose `vcpu_info` gets the upcall (0 for a free port).
    pub notify_vcpu: u32,
}

impl Channel {
    const FREE: Channel = Channel {
        binding: EvtchnBinding::Closed,
        notify_vcpu: 0,
    };
}

/// One domain's ports.
#[derive(Clone, Debug, Default)]
pub struct PortTable {
    channels: Vec<Channel>,
}

impl PortTable {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.channels.capacity() * core::mem::size_of::<Channel>()
    }

    /// An empty table; no memory until the first allocation.
    pub const fn new() -> Self {
        Self {
            channels: Vec::new(),
        }
    }

    /// Port `port`, if valid (any value a guest passes is fine).
    pub fn get(&self, port: EvtchnPort) -> Option<&Channel> {
        let i = usize::try_from(port).ok()?;
        self.channels
            .get(i)
            .or_else(|| (i < PORTS_PER_BUCKET).then_some(&Channel::FREE))
    }

    /// Port `port`, writable.
    pub(super) fn get_mut(&mut self, port: EvtchnPort) -> Option<&mut Channel> {
        self.channels.get_mut(usize::try_from(port).ok()?)
    }

    /// Every valid port with its channel, in port order.
    pub fn iter(&self) -> impl Iterator<Item = (EvtchnPort, &Channel)> {
        // The length is at most MAX_EVTCHN_PORTS, so the index fits.
        (0..).zip(self.channels.iter())
    }

    /// The lowest free port above 0 (Xen's `get_free_port`), growing the
    /// table by a bucket if none is free: `-ENOSPC` at
    /// [`MAX_EVTCHN_PORTS`], `-ENOMEM` if the heap is exhausted. The port
    /// stays free until [`Self::bind`].
    pub(super) fn free_port(&mut self) -> Result<EvtchnPort, Errno> {
        let free = self
            .iter()
            .skip(1)
            .find(|(_, c)| c.binding == EvtchnBinding::Closed)
            .map(|(port, _)| port);
        match free {
            Some(port) => Ok(port),
            None => self.grow(),
        }
    }

    /// Sets valid port `port` to `channel`.
    pub(super) fn bind(&mut self, port: EvtchnPort, channel: Channel) {
        if let Some(slot) = self.get_mut(port) {
            *slot = channel;
        }
    }

    /// Adds a bucket of free ports; returns the first usable one.
    fn grow(&mut self) -> Result<EvtchnPort, Errno> {
        let len = self.channels.len();
        if len >= MAX_EVTCHN_PORTS as usize {
            return Err(Errno::ENOSPC);
        }
        self.channels
            .try_reserve_exact(PORTS_PER_BUCKET)
            .map_err(|_| Errno::ENOMEM)?;
        self.channels.resize(len + PORTS_PER_BUCKET, Channel::FREE);
        // Port 0 is in the first bucket and stays reserved.
        EvtchnPort::try_from(len.max(1)).map_err(|_| Errno::ENOSPC)
    }

    /// Makes `port` free again (Xen's `free_evtchn`: notify vCPU 0).
    pub(super) fn free(&mut self, port: EvtchnPort) {
        if let Some(slot) = self.get_mut(port) {
            *slot = Channel::FREE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipi(vcpu: u32) -> Channel {
        Channel {
            binding: EvtchnBinding::Ipi,
            notify_vcpu: vcpu,
        }
    }

    impl PortTable {
        fn alloc(&mut self, channel: Channel) -> Result<EvtchnPort, Errno> {
            let port = self.free_port()?;
            self.bind(port, channel);
            Ok(port)
        }
    }

    #[test]
    fn lowest_free_port_above_zero_and_bounded() {
        let mut t = PortTable::new();
        assert_eq!(t.get(63), Some(&Channel::FREE), "the first bucket is valid");
        assert_eq!(t.get(64), None);
        assert_eq!(t.free_port(), Ok(1));
        assert_eq!(t.free_port(), Ok(1), "not taken until bound");
        for want in 1..MAX_EVTCHN_PORTS {
            assert_eq!(t.alloc(ipi(1)), Ok(want));
        }
        assert_eq!(t.alloc(ipi(1)), Err(Errno::ENOSPC));
        assert_eq!(t.get(0).map(|c| c.binding), Some(EvtchnBinding::Closed));
        assert_eq!(t.get(MAX_EVTCHN_PORTS), None);
        assert_eq!(t.get(u32::MAX), None);
        t.free(77);
        t.free(5);
        assert_eq!(t.get(5), Some(&Channel::FREE));
        assert_eq!(t.alloc(ipi(0)), Ok(5));
        assert_eq!(t.alloc(ipi(0)), Ok(77));
        assert_eq!(t.alloc(ipi(0)), Err(Errno::ENOSPC));
    }

    #[test]
    fn grows_one_bucket_at_a_time() {
        let mut t = PortTable::new();
        t.alloc(ipi(0)).unwrap();
        assert_eq!(t.iter().count(), PORTS_PER_BUCKET);
        for _ in 1..PORTS_PER_BUCKET {
            t.alloc(ipi(0)).unwrap();
        }
        assert_eq!(t.iter().count(), 2 * PORTS_PER_BUCKET);
    }
}
