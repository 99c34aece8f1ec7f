//! The memory virtio-drivers needs, on dom0's 1:1 memory, and the ECAM
//! accessor: the only `unsafe` in dom0.
//!
//! dom0's RAM is mapped 1:1 (GPA = HPA, docs/architecture.md) and the
//! shim's page tables map every GPA below 4 GiB to itself, so a pointer
//! into dom0's memory is the address a device must use for DMA: there is
//! no IOMMU, sharing needs no bounce buffer and unsharing does nothing.
//! Device MMIO (BARs, ECAM) is below 4 GiB on q35 and reached the same way;
//! xen-core maps dom0's BARs 1:1 into its NPT and mediates ECAM.
#![allow(unsafe_code)]

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ops::RangeInclusive;
use core::ptr::NonNull;

use guest_pv_shim::arch::phys::IdentityMap;
use virtio_drivers::transport::pci::bus::{Cam, ConfigurationAccess, DeviceFunction};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// virtio-drivers' `Hal` on dom0's heap (which is in dom0's `.bss`, hence
/// 1:1 RAM).
pub struct DomainHal;

/// The layout of a DMA area of `pages` pages, page-aligned.
fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

/// The address a device uses for `ptr`: the same number, dom0 being 1:1.
fn device_address(ptr: *const u8) -> PhysAddr {
    ptr as PhysAddr
}

// SAFETY: dma_alloc returns zeroed, page-aligned memory of the size asked
// for that nothing else uses until dma_dealloc; the addresses handed out
// are those the devices see (1:1 memory); MMIO is mapped 1:1 below 4 GiB.
unsafe impl Hal for DomainHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let allocated = dma_layout(pages)
            .filter(|l| l.size() != 0)
            .and_then(|layout| {
                // SAFETY: the layout has a non-zero size (checked above).
                NonNull::new(unsafe { alloc_zeroed(layout) })
            });
        match allocated {
            Some(ptr) => (device_address(ptr.as_ptr()), ptr),
            // virtio-drivers reads physical address 0 as "out of memory".
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back what dma_alloc returned for the
        // same number of pages, so it was allocated with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // A BAR outside the identity map would need a mapping dom0 does
        // not make; q35's are below 4 GiB. A device that says otherwise
        // stops dom0 here rather than making it touch unmapped memory.
        assert!(
            IdentityMap::covers(paddr, size as u64),
            "MMIO at {paddr:#x}+{size:#x} is outside dom0's identity map"
        );
        NonNull::new(paddr as *mut u8).expect("covers() excludes address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        device_address(buffer.as_ptr().cast::<u8>())
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration space through ECAM (PCIe 4.0 §7.2.2): each
/// function's 4 KiB at `base + (bus << 20 | device << 15 | function << 12)`,
/// `base` being bus 0's address as ACPI's MCFG gives it. Only the buses
/// the region decodes are touched: others read all ones, as absent
/// functions do, and writes to them are dropped. Each access is one
/// 32-bit MOV, which faults to xen-core (ECAM is not in dom0's NPT) and
/// is carried out there (`pci::vpci`).
#[derive(Clone)]
pub struct Ecam {
    base: u64,
    buses: RangeInclusive<u8>,
}

impl Ecam {
    /// The accessor for an MCFG region, if it lies inside the identity map.
    pub fn new(base: u64, buses: RangeInclusive<u8>) -> Option<Self> {
        let start = base.checked_add(u64::from(*buses.start()) << 20)?;
        let len = (u64::from(*buses.end()) + 1 - u64::from(*buses.start())) << 20;
        IdentityMap::covers(start, len).then_some(Ecam { base, buses })
    }

    /// The buses this region decodes.
    pub fn buses(&self) -> RangeInclusive<u8> {
        self.buses.clone()
    }

    /// The address of a register, if its bus is in the region.
    fn register(&self, df: DeviceFunction, offset: u8) -> Option<*mut u32> {
        if !self.buses.contains(&df.bus) || !df.valid() || !offset.is_multiple_of(4) {
            return None;
        }
        let address = self.base + u64::from(Cam::Ecam.cam_offset(df, offset));
        Some(address as *mut u32)
    }
}

impl ConfigurationAccess for Ecam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        let Some(register) = self.register(df, offset) else {
            return u32::MAX;
        };
        let value: u32;
        // SAFETY: the register is an aligned dword of the ECAM region,
        // which `new` checked lies in the identity map; xen-core mediates
        // the access; it touches no memory a Rust object lives in. A plain
        // MOV because that is what xen-core's MMIO path decodes (a volatile
        // read may otherwise become e.g. `test $imm, (mem)`).
        unsafe {
            core::arch::asm!(
                "mov {value:e}, dword ptr [{register}]",
                register = in(reg) register,
                value = out(reg) value,
                options(nostack, preserves_flags, readonly),
            );
        }
        value
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if let Some(register) = self.register(df, offset) {
            // SAFETY: as for reads.
            unsafe {
                core::arch::asm!(
                    "mov dword ptr [{register}], {data:e}",
                    register = in(reg) register,
                    data = in(reg) data,
                    options(nostack, preserves_flags),
                );
            }
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}
