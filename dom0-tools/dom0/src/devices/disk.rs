//! The disk: a virtio-blk function driven by virtio-drivers' `VirtIOBlk`.
//!
//! Requests are synchronous for now: virtio-drivers waits for the used
//! ring after each one. dom0 makes them only at boot (the scratch check);
//! the block backend will submit them and complete them from the disk's
//! interrupt ([`Disk::irq`], acknowledged with [`Disk::ack_interrupt`]).

use guest_pv_shim::arch::physdev::DeviceIrq;
use guest_pv_shim::{Xen, XenError};
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::pci::PciTransport;

use super::hal::DomainHal;
use super::pci::Bdf;
use super::scratch::{self, ScratchError, SectorIo, SECTOR_BYTES};

const _: () = assert!(SECTOR_SIZE == SECTOR_BYTES);

/// dom0's disk.
pub struct Disk {
    blk: VirtIOBlk<DomainHal, PciTransport>,
    bdf: Bdf,
    gsi: Option<u8>,
    irq: Option<DeviceIrq>,
}

impl Disk {
    pub fn new(
        transport: PciTransport,
        bdf: Bdf,
        gsi: Option<u8>,
        irq: Option<DeviceIrq>,
    ) -> virtio_drivers::Result<Self> {
        Ok(Disk {
            blk: VirtIOBlk::new(transport)?,
            bdf,
            gsi,
            irq,
        })
    }

    /// Its interrupt's port (and pirq), if its GSI is bound.
    pub fn irq(&self) -> Option<DeviceIrq> {
        self.irq
    }

    /// Reads (and so clears) the ISR, deasserting INTx, then EOIs the
    /// pirq; returns the ISR bits.
    pub fn ack_interrupt(&mut self, xen: &Xen) -> Result<u32, XenError> {
        let isr = self.blk.ack_interrupt().bits();
        if let Some(irq) = self.irq {
            irq.eoi(xen)?;
        }
        Ok(isr)
    }

    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The INTx GSI xen-core routed for it.
    pub fn gsi(&self) -> Option<u8> {
        self.gsi
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors().saturating_mul(SECTOR_BYTES as u64)
    }

    /// Whether the device refuses writes (VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        self.blk.readonly()
    }

    /// The boot check (`scratch`): the sector checked, or why it failed.
    pub fn check_scratch(&mut self) -> Result<u64, ScratchError<virtio_drivers::Error>> {
        let sectors = self.sectors();
        scratch::read_after_write(self, sectors)
    }
}

impl SectorIo for Disk {
    type Error = virtio_drivers::Error;

    fn read_sector(
        &mut self,
        sector: u64,
        buf: &mut [u8; SECTOR_BYTES],
    ) -> Result<(), Self::Error> {
        let block = usize::try_from(sector).map_err(|_| virtio_drivers::Error::InvalidParam)?;
        self.blk.read_blocks(block, buf)
    }

    fn write_sector(&mut self, sector: u64, buf: &[u8; SECTOR_BYTES]) -> Result<(), Self::Error> {
        let block = usize::try_from(sector).map_err(|_| virtio_drivers::Error::InvalidParam)?;
        self.blk.write_blocks(block, buf)
    }
}
