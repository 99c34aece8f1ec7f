//! dom0's configuration-space accesses, mediated as Xen mediates a PVH
//! hardware domain's (vPCI, `xen/drivers/vpci/`): ECAM is not in dom0's
//! NPT, so each access faults, is decoded by the MMIO path and lands here.
//!
//! - A function dom0 owns: the access goes to the real ECAM, except
//!   writes to its BARs and expansion ROM register, which are filtered.
//! - Anything else (a function xen-core owns, or none found at boot):
//!   reads return all ones, writes are dropped.
//!
//! BAR filter: firmware placed the BARs and xen-core mapped them 1:1 into
//! dom0's NPT; dom0 may size them (write all ones, read the mask) and
//! write the value back, but not move them. So a full-dword write to a
//! BAR register passes if its address bits are all ones or equal to
//! firmware's; any other write (a move, or a 1- or 2-byte write that
//! could build one piecewise) is refused and reported. Xen ignores BAR
//! writes while decoding is on and re-maps on enable; xen-core keeps the
//! simpler fixed placement because dom0 has no reason to re-place BARs.

use crate::logger::GUEST;
use crate::platform::EcamRegion;

use super::config::{valid_access, Bdf, ConfigAccess};
use super::enumerate::{bar_offset, BarKind, BAR_IO_ADDRESS, BAR_MEM_ADDRESS};
use super::{Owner, PciDevices, PciFunction};

/// Address bits of an expansion ROM register (PCI 3.0 §6.2.5.2).
const ROM_ADDRESS: u32 = 0xffff_f800;

/// A GPA inside an ECAM region, as a function and register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamAddress {
    /// The function.
    pub bdf: Bdf,
    /// Byte offset in its configuration space.
    pub offset: u16,
}

/// Which function and register `gpa` names, if an ECAM region decodes it
/// (dom0's GPA equals the host address: ECAM sits at the same place).
pub fn decode(regions: &[EcamRegion], gpa: u64) -> Option<EcamAddress> {
    regions.iter().find_map(|r| {
        let (start, end) = r.range();
        if gpa < start || gpa >= end {
            return None;
        }
        let rel = gpa - r.base;
        Some(EcamAddress {
            bdf: Bdf {
                segment: r.segment,
                bus: ((rel >> 20) & 0xff) as u8,
                device: ((rel >> 15) & 0x1f) as u8,
                function: ((rel >> 12) & 0x7) as u8,
            },
            offset: (rel & 0xfff) as u16,
        })
    })
}

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written to the device.
    Passed,
    /// Dropped: not dom0's function, or not an access ECAM carries.
    Dropped,
    /// Refused: it would move a BAR (or is a partial BAR write).
    BarMoveRefused {
        /// The function.
        bdf: Bdf,
        /// The register's offset.
        offset: u16,
        /// Firmware's value of the register.
        original: u32,
        /// What dom0 wrote (its low `size` bytes at `offset`).
        value: u32,
    },
}

/// dom0's view of configuration space: the boot-time device list, the
/// ECAM regions and the real access.
pub struct Vpci<'a, C: ConfigAccess> {
    /// The functions found at boot.
    pub devices: &'a PciDevices,
    /// The MCFG regions.
    pub regions: &'a [EcamRegion],
    /// The real configuration space.
    pub cfg: C,
}

impl<C: ConfigAccess> Vpci<'_, C> {
    /// Whether `gpa` is in an ECAM region (this handler claims it).
    pub fn claims(&self, gpa: u64) -> bool {
        decode(self.regions, gpa).is_some()
    }

    /// dom0's function at `at`, if it owns one there.
    fn owned(&self, at: EcamAddress) -> Option<&PciFunction> {
        self.devices.get(at.bdf).filter(|f| f.owner == Owner::Dom0)
    }

    /// A `size`-byte read (1, 2, 4, or 8 as two dwords) at `gpa`; all
    /// ones where dom0 owns nothing or the access is not one ECAM carries.
    pub fn read(&self, gpa: u64, size: u8) -> u64 {
        if size == 8 {
            return u64::from(self.read_one(gpa, 4)) | (u64::from(self.read_one(gpa + 4, 4)) << 32);
        }
        u64::from(self.read_one(gpa, size))
    }

    fn read_one(&self, gpa: u64, size: u8) -> u32 {
        let all_ones = u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4)));
        match decode(self.regions, gpa) {
            Some(at) if valid_access(at.offset, size) && self.owned(at).is_some() => {
                self.cfg.read(at.bdf, at.offset, size)
            }
            _ => all_ones,
        }
    }

    /// A `size`-byte write (8 as two dwords, each judged on its own) at
    /// `gpa`; returns what became of each dword (the second is `None`
    /// unless `size` is 8).
    pub fn write(&self, gpa: u64, size: u8, value: u64) -> [Option<WriteOutcome>; 2] {
        let outcomes = if size == 8 {
            [
                Some(self.write_one(gpa, 4, (value & 0xffff_ffff) as u32)),
                Some(self.write_one(gpa + 4, 4, (value >> 32) as u32)),
            ]
        } else {
            [
                Some(self.write_one(gpa, size, (value & 0xffff_ffff) as u32)),
                None,
            ]
        };
        for outcome in outcomes.iter().flatten() {
            if let WriteOutcome::BarMoveRefused {
                bdf,
                offset,
                original,
                value,
            } = outcome
            {
                log::warn!(
                    target: GUEST,
                    "d0: pci {bdf}: write of {value:#x} to register {offset:#x} would move a BAR \
                     (firmware placed it at {original:#x}): refused"
                );
            }
        }
        outcomes
    }

    fn write_one(&self, gpa: u64, size: u8, value: u32) -> WriteOutcome {
        let Some(at) = decode(self.regions, gpa).filter(|a| valid_access(a.offset, size)) else {
            return WriteOutcome::Dropped;
        };
        let Some(function) = self.owned(at) else {
            return WriteOutcome::Dropped;
        };
        let register = at.offset & !3;
        if let Some((original, address_bits)) = placement_register(function, register) {
            let keeps_place = size == 4
                && (value & address_bits == address_bits
                    || value & address_bits == original & address_bits);
            if !keeps_place {
                return WriteOutcome::BarMoveRefused {
                    bdf: at.bdf,
                    offset: at.offset,
                    original,
                    value,
                };
            }
        }
        self.cfg.write(at.bdf, at.offset, size, value);
        WriteOutcome::Passed
    }
}

/// If `register` places something (a BAR register or the expansion ROM),
/// firmware's value and the address bits to protect.
fn placement_register(f: &PciFunction, register: u16) -> Option<(u32, u32)> {
    if Some(register) == f.rom_offset() {
        return Some((f.rom_register, ROM_ADDRESS));
    }
    let index = (0..f.bar_registers_count()).find(|&i| bar_offset(i) == register)?;
    let original = f.bar_registers[usize::from(index)];
    let bits = f.bars.iter().find_map(|bar| match bar.kind {
        BarKind::Io if bar.index == index => Some(BAR_IO_ADDRESS),
        BarKind::Mem32 | BarKind::Mem64 if bar.index == index => Some(BAR_MEM_ADDRESS),
        BarKind::Mem64 if bar.index + 1 == index => Some(u32::MAX),
        _ => None,
    });
    // A register of no BAR xen-core sized (unimplemented, or a type it
    // does not place) keeps firmware's exact value or the sizing pattern.
    Some((original, bits.unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests;
