//! The disk: a virtio-blk function driven by virtio-drivers' `VirtIOBlk`.
//!
//! [`Disk::read_blocks`], [`Disk::write_blocks`] and [`Disk::flush`] are
//! synchronous: virtio-drivers waits for the used ring after each one.
//! Every request is checked against the capacity first
//! ([`sectors::check_range`]), so a bad LBA or length is a [`DiskError`],
//! never a driver panic. The device raises its interrupt for each
//! completion ([`Disk::irq`], acknowledged with [`Disk::ack_interrupt`]).

use guest_pv_shim::arch::physdev::DeviceIrq;
use guest_pv_shim::{Xen, XenError};
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::pci::PciTransport;

use super::hal::DomainHal;
use super::pci::Bdf;
use super::sectors::{check_range, DiskError, SECTOR_BYTES};

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

    /// Reads `buf.len() / 512` sectors from `lba` into `buf`.
    pub fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let block = self.checked(lba, buf.len())?;
        self.blk.read_blocks(block, buf).map_err(|_| DiskError::Io)
    }

    /// Writes `buf` (a multiple of 512 bytes) to the sectors from `lba`.
    #[allow(dead_code)] // the volumes and the block backend write (issue 12)
    pub fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only() {
            return Err(DiskError::ReadOnly);
        }
        let block = self.checked(lba, buf.len())?;
        self.blk.write_blocks(block, buf).map_err(|_| DiskError::Io)
    }

    /// Makes every completed write durable (VIRTIO_BLK_T_FLUSH; a device
    /// without VIRTIO_BLK_F_FLUSH has no volatile cache to flush).
    #[allow(dead_code)] // the block backend flushes (issue 12)
    pub fn flush(&mut self) -> Result<(), DiskError> {
        self.blk.flush().map_err(|_| DiskError::Io)
    }

    /// `lba` as the driver's block index, once `bytes` at `lba` are known
    /// to lie within the disk.
    fn checked(&self, lba: u64, bytes: usize) -> Result<usize, DiskError> {
        let capacity = self.sectors();
        check_range(lba, bytes, capacity)?;
        usize::try_from(lba).map_err(|_| DiskError::OutOfRange {
            lba,
            sectors: (bytes / SECTOR_BYTES) as u64,
            capacity,
        })
    }
}
