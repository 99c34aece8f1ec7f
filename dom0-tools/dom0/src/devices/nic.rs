//! A NIC: a virtio-net function driven by virtio-drivers' `VirtIONet`,
//! carrying whole Ethernet frames (destination MAC to payload, no FCS).
//!
//! The management NIC's API, for a `smoltcp::phy::Device` adapter:
//!
//! - [`Nic::receive`] copies the next received frame into the caller's
//!   buffer (at least [`MAX_FRAME_BYTES`]) and gives the device's buffer
//!   back at once; `Ok(None)` when nothing has arrived.
//! - [`Nic::transmit`] sends one frame of at most [`MAX_FRAME_BYTES`] and
//!   returns once the device has taken it (the buffer is free again);
//!   [`Nic::can_transmit`] says whether a descriptor is free.
//! - Interrupts: [`Nic::irq`] is the port the NIC's INTx arrives on (a
//!   pirq; `None` without a GSI, then poll). After
//!   `Events::block_until` returns and `Events::take(&[port])` says it
//!   fired, call [`Nic::ack_interrupt`] (virtio ISR read, which deasserts
//!   INTx, then `PHYSDEVOP_eoi`), then drain [`Nic::receive`] until it
//!   returns `None`. Received frames wait in the ring until then.
//! - [`Nic::mac`] is the MAC the device reports (xtask sets stable ones).

use core::fmt;

use guest_pv_shim::arch::physdev::DeviceIrq;
use guest_pv_shim::{Xen, XenError};
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, InterruptStatus, Transport};

use super::hal::DomainHal;
use super::pci::Bdf;

/// Largest frame carried: a 14-byte Ethernet header and a 1500-byte MTU
/// (no VLAN tag: the vswitch will tag on the uplink itself).
pub const MAX_FRAME_BYTES: usize = 1514;
/// Descriptors per virtqueue; as many receive buffers wait at the device.
pub const NIC_QUEUE_SIZE: usize = 16;
/// Bytes per receive buffer: the 12-byte `virtio_net_hdr` (virtio 1.2
/// §5.1.6) and a whole frame, rounded up to the 8-byte words
/// virtio-drivers allocates receive buffers in (it refuses less than
/// 1526 bytes).
const RX_BUFFER_BYTES: usize = (12 + MAX_FRAME_BYTES).next_multiple_of(8);
/// Device feature VIRTIO_NET_F_STATUS: the config space has `status`.
const NET_F_STATUS: u64 = 1 << 16;
/// Offset of `status` in `virtio_net_config` (after the 6-byte MAC).
const STATUS_OFFSET: usize = 6;
/// `status` bit VIRTIO_NET_S_LINK_UP.
const LINK_UP: u16 = 1;

/// What a NIC is for (`abi::machine`: by order on the bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The management network (dom0's TCP agent).
    Mgmt,
    /// The guests' uplink (the vswitch, later).
    Uplink,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Role::Mgmt => "mgmt",
            Role::Uplink => "uplink",
        })
    }
}

/// The link as the device reported it when dom0 took it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Up,
    Down,
    /// The device offers no status field (VIRTIO_NET_F_STATUS).
    Unknown,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Link::Up => "link up",
            Link::Down => "link down",
            Link::Unknown => "link status not offered",
        })
    }
}

/// Why a frame could not be received or sent.
#[derive(Debug)]
#[allow(dead_code)] // frame errors: the TCP agent's (branch `tcp`) API
pub enum NicError {
    /// The caller's buffer is shorter than the frame (the frame is lost).
    BufferTooSmall { frame: usize, buffer: usize },
    /// The frame to send is longer than [`MAX_FRAME_BYTES`].
    FrameTooLong { frame: usize },
    /// The device or the queue refused the request.
    Device(virtio_drivers::Error),
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NicError::BufferTooSmall { frame, buffer } => {
                write!(f, "a {frame}-byte frame does not fit {buffer} bytes")
            }
            NicError::FrameTooLong { frame } => {
                write!(f, "a {frame}-byte frame exceeds {MAX_FRAME_BYTES} bytes")
            }
            NicError::Device(e) => write!(f, "virtio-net: {e}"),
        }
    }
}

impl From<virtio_drivers::Error> for NicError {
    fn from(e: virtio_drivers::Error) -> Self {
        NicError::Device(e)
    }
}

/// An interrupt's causes, from the ISR read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // the TCP agent's (branch `tcp`) API
pub struct Interrupt {
    /// A receive or transmit buffer was used: drain [`Nic::receive`].
    pub queue: bool,
    /// The configuration (e.g. link status) changed.
    pub config: bool,
}

/// A virtio-net NIC.
pub struct Nic {
    net: VirtIONet<DomainHal, PciTransport, NIC_QUEUE_SIZE>,
    bdf: Bdf,
    link: Link,
    irq: Option<DeviceIrq>,
}

impl Nic {
    /// Takes the device over: reads its link status, then sets up both
    /// queues with [`NIC_QUEUE_SIZE`] receive buffers posted.
    pub fn new(
        mut transport: PciTransport,
        bdf: Bdf,
        irq: Option<DeviceIrq>,
    ) -> Result<Self, NicError> {
        let link = link_status(&mut transport);
        Ok(Nic {
            net: VirtIONet::new(transport, RX_BUFFER_BYTES)?,
            bdf,
            link,
            irq,
        })
    }

    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Its interrupt's port (and pirq), if its GSI is bound.
    pub fn irq(&self) -> Option<DeviceIrq> {
        self.irq
    }

    /// The link status at take-over.
    pub fn link(&self) -> Link {
        self.link
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.net.mac_address()
    }
}

/// The frame API (module doc).
#[allow(dead_code)] // the TCP agent's (branch `tcp`) API, unused until it lands
impl Nic {
    /// Whether a received frame is waiting.
    pub fn can_receive(&self) -> bool {
        self.net.can_recv()
    }

    /// Copies the next received frame into `buf` and returns its length,
    /// or `None` if none has arrived. The device gets its buffer back
    /// either way.
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        let rx = match self.net.receive() {
            Ok(rx) => rx,
            Err(virtio_drivers::Error::NotReady) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let frame = rx.packet();
        let copied = match buf.get_mut(..frame.len()) {
            Some(dest) => {
                dest.copy_from_slice(frame);
                Ok(Some(frame.len()))
            }
            None => Err(NicError::BufferTooSmall {
                frame: frame.len(),
                buffer: buf.len(),
            }),
        };
        self.net.recycle_rx_buffer(rx)?;
        copied
    }

    /// Whether a transmit descriptor is free.
    pub fn can_transmit(&self) -> bool {
        self.net.can_send()
    }

    /// Sends one frame; returns once the device has used it.
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(NicError::FrameTooLong { frame: frame.len() });
        }
        let mut tx = self.net.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        Ok(self.net.send(tx)?)
    }

    /// Reads (and so clears) the ISR, deasserting INTx, then EOIs the
    /// pirq: what the device raised its interrupt for since the last read.
    pub fn ack_interrupt(&mut self, xen: &Xen) -> Result<Interrupt, XenError> {
        let isr = self.net.ack_interrupt();
        if let Some(irq) = self.irq {
            irq.eoi(xen)?;
        }
        Ok(Interrupt {
            queue: isr.contains(InterruptStatus::QUEUE_INTERRUPT),
            config: isr.contains(InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT),
        })
    }
}

/// The link status, read during feature discovery (virtio 1.2 §3.1.1
/// step 4 lets the driver read device configuration then); `VirtIONet::new`
/// resets the device and starts over.
fn link_status(transport: &mut PciTransport) -> Link {
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    if transport.read_device_features() & NET_F_STATUS == 0 {
        return Link::Unknown;
    }
    match transport.read_config_space::<u16>(STATUS_OFFSET) {
        Ok(status) if status & LINK_UP != 0 => Link::Up,
        Ok(_) => Link::Down,
        Err(_) => Link::Unknown,
    }
}
