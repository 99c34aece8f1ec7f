//! A fake configuration space for host tests: functions with 4 KiB of
//! registers each, BARs that answer sizing as hardware does (address bits
//! below the size read as zero, type bits read-only), and a write log.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::config::{Bdf, ConfigAccess, CONFIG_SPACE_BYTES};
use super::enumerate::bar_offset;

/// One fake function.
pub struct FakeFunction {
    regs: Vec<u8>,
    /// Per BAR register: the writable bits (0 = unimplemented register).
    bar_writable: [u32; 6],
}

impl FakeFunction {
    /// A type 0 function `vendor:device` of `class.subclass`, interrupt pin
    /// `pin`.
    pub fn endpoint(vendor: u16, device: u16, class: u8, subclass: u8, pin: u8) -> Self {
        let mut f = Self {
            regs: alloc::vec![0; usize::from(CONFIG_SPACE_BYTES)],
            bar_writable: [0; 6],
        };
        f.set(0x00, 2, u32::from(vendor));
        f.set(0x02, 2, u32::from(device));
        f.set(
            0x08,
            4,
            (u32::from(class) << 24) | (u32::from(subclass) << 16),
        );
        f.set(0x3d, 1, u32::from(pin));
        f.set(0x3c, 1, 0xff);
        f.set(0x04, 2, 0x7);
        f
    }

    /// Sets the header type byte.
    pub fn header_type(mut self, value: u8) -> Self {
        self.set(0x0e, 1, u32::from(value));
        self
    }

    /// A 32-bit memory BAR at `index`, `size` bytes at `base`.
    pub fn mem32(mut self, index: u8, base: u32, size: u32) -> Self {
        self.bar_writable[usize::from(index)] = !(size - 1);
        self.set(bar_offset(index), 4, base);
        self
    }

    /// A 64-bit prefetchable memory BAR at `index` (and `index + 1`).
    pub fn mem64(mut self, index: u8, base: u64, size: u64) -> Self {
        let mask = !(size - 1);
        let i = usize::from(index);
        self.bar_writable[i] = (mask & 0xffff_fff0) as u32;
        self.bar_writable[i + 1] = (mask >> 32) as u32;
        self.set(bar_offset(index), 4, (base & 0xffff_fff0) as u32 | 0b1100);
        self.set(bar_offset(index + 1), 4, (base >> 32) as u32);
        self
    }

    /// An I/O BAR at `index`, `size` ports from `base`.
    pub fn io(mut self, index: u8, base: u16, size: u16) -> Self {
        self.bar_writable[usize::from(index)] = u32::from(!(size - 1)) & 0xfffc;
        self.set(bar_offset(index), 4, u32::from(base) | 1);
        self
    }

    fn set(&mut self, offset: u16, size: u8, value: u32) {
        let at = usize::from(offset);
        let bytes = value.to_le_bytes();
        self.regs[at..at + usize::from(size)].copy_from_slice(&bytes[..usize::from(size)]);
    }

    fn get(&self, offset: u16, size: u8) -> u32 {
        let at = usize::from(offset);
        let mut bytes = [0; 4];
        bytes[..usize::from(size)].copy_from_slice(&self.regs[at..at + usize::from(size)]);
        u32::from_le_bytes(bytes)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let bar = (0x10..0x28).contains(&offset).then(|| (offset - 0x10) / 4);
        match bar {
            Some(i) if size == 4 && offset.is_multiple_of(4) => {
                let writable = self.bar_writable[usize::from(i)];
                let old = self.get(offset, 4);
                self.set(offset, 4, (old & !writable) | (value & writable));
            }
            Some(_) => {}
            None => self.set(offset, size, value),
        }
    }
}

/// The fake space: functions by address, and every write made.
#[derive(Default)]
pub struct FakeConfig {
    functions: RefCell<BTreeMap<Bdf, FakeFunction>>,
    /// `(bdf, offset, size, value)` of every write, in order.
    pub writes: RefCell<Vec<(Bdf, u16, u8, u32)>>,
}

impl FakeConfig {
    /// Adds `function` at `bdf`.
    pub fn add(&self, bdf: Bdf, function: FakeFunction) {
        self.functions.borrow_mut().insert(bdf, function);
    }
}

impl ConfigAccess for FakeConfig {
    fn read(&self, bdf: Bdf, offset: u16, size: u8) -> u32 {
        match self.functions.borrow().get(&bdf) {
            Some(f) => f.get(offset, size),
            None if size == 4 => u32::MAX,
            None => (1 << (8 * u32::from(size))) - 1,
        }
    }

    fn write(&self, bdf: Bdf, offset: u16, size: u8, value: u32) {
        self.writes.borrow_mut().push((bdf, offset, size, value));
        if let Some(f) = self.functions.borrow_mut().get_mut(&bdf) {
            f.write(offset, size, value);
        }
    }
}

/// `0000:bus:device.function`.
pub fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf {
        segment: 0,
        bus,
        device,
        function,
    }
}
