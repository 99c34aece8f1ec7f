//! PCI configuration space through ECAM (MCFG regions), read and written
//! through the identity map with volatile accesses of the requested size.
//!
//! ECAM lies in the MMIO hole below 4 GiB, which firmware's MTRRs make
//! uncacheable (the identity map's PAT entries are write-back, and the
//! MTRR's UC wins: AMD APM vol. 2 §7.8.2, Table 7-11).

use core::ptr;

use crate::mm::frame::MAX_PHYS_MEM;
use crate::pci::config::{valid_access, Bdf, ConfigAccess};
use crate::platform::Platform;

/// ECAM over the platform's MCFG regions.
#[derive(Clone, Copy)]
pub struct Ecam {
    platform: &'static Platform,
}

impl Ecam {
    /// ECAM as the platform describes it.
    pub fn new(platform: &'static Platform) -> Self {
        Self { platform }
    }

    /// The identity-mapped address of `offset` in `bdf`'s configuration
    /// space, if a region decodes it, the access is valid and the address
    /// lies inside the identity map.
    fn address(&self, bdf: Bdf, offset: u16, size: u8) -> Option<usize> {
        if !valid_access(offset, size) {
            return None;
        }
        let region = self.platform.ecam_for(bdf.segment, bdf.bus)?;
        let at = region
            .function_address(bdf.bus, bdf.device, bdf.function)?
            .checked_add(u64::from(offset))?;
        let end = at.checked_add(u64::from(size))?;
        if end > MAX_PHYS_MEM {
            return None;
        }
        usize::try_from(at).ok()
    }
}

impl ConfigAccess for Ecam {
    fn read(&self, bdf: Bdf, offset: u16, size: u8) -> u32 {
        let Some(at) = self.address(bdf, offset, size) else {
            return u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4)));
        };
        // SAFETY: `at` is a naturally aligned address inside an MCFG
        // region, inside the identity map (checked above); ECAM is device
        // memory that no Rust object lives in, and a read of an absent
        // function returns all ones without side effects.
        unsafe {
            match size {
                1 => u32::from(ptr::read_volatile(at as *const u8)),
                2 => u32::from(ptr::read_volatile(at as *const u16)),
                _ => ptr::read_volatile(at as *const u32),
            }
        }
    }

    fn write(&self, bdf: Bdf, offset: u16, size: u8, value: u32) {
        let Some(at) = self.address(bdf, offset, size) else {
            return;
        };
        let bytes = value.to_le_bytes();
        // SAFETY: as in `read`; the callers (boot enumeration, dom0's
        // mediated access) decide which registers may be written.
        unsafe {
            match size {
                1 => ptr::write_volatile(at as *mut u8, bytes[0]),
                2 => ptr::write_volatile(at as *mut u16, u16::from_le_bytes([bytes[0], bytes[1]])),
                _ => ptr::write_volatile(at as *mut u32, value),
            }
        }
    }
}
