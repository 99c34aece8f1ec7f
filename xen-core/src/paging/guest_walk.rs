//! The guest's own page-table walk: guest virtual → guest physical address,
//! as the CPU does it (AMD APM vol 2 §5: legacy 2-level, PAE, long mode).
//!
//! Every table read goes through the domain's p2m: a table outside it is a
//! fault, never a read of someone else's frame. Accessed/dirty bits are not
//! set, and SMEP/SMAP are not modelled: hypercall copies are checked as
//! plain supervisor (or, from CPL 3, user) accesses.

use abi::convert::usize_from_u64;

use super::npt::{Npt, P2mEntry};
use crate::mm::{Gfn, PhysMem, PAGE_SIZE};

const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

const PRESENT: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
const NO_EXEC: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The guest control registers a walk depends on (from the vCPU's VMCB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestPaging {
    /// CR0: PG turns paging on, WP makes read-only pages bind the kernel.
    pub cr0: u64,
    /// CR3: the top-level table's GPA.
    pub cr3: u64,
    /// CR4: PAE and PSE select the format.
    pub cr4: u64,
    /// EFER: LMA selects long mode, NXE enables the NX bit.
    pub efer: u64,
}

/// What the access wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Fetch,
}

/// One access: its kind and whether it is made from CPL 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestAccess {
    /// Read, write or fetch.
    pub kind: AccessKind,
    /// The access comes from CPL 3 and needs U pages.
    pub user: bool,
}

/// Why a walk failed. The hypercall layer answers all of them with -EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A table entry on the way is not present.
    NotPresent,
    /// A write, user or execute check failed.
    Permission,
    /// A reserved bit is set in an entry.
    ReservedBit,
    /// The address is not canonical, or too wide for the paging mode.
    BadAddress,
    /// A table lies outside the domain's p2m.
    OutOfP2m,
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotPresent => "page not present",
            Self::Permission => "page permissions forbid the access",
            Self::ReservedBit => "reserved bit set in a guest page-table entry",
            Self::BadAddress => "address not canonical or too wide for the paging mode",
            Self::OutOfP2m => "guest page table outside the domain's memory",
        })
    }
}

/// Rights granted so far along the walk (AND of W and U, OR of NX).
struct Rights {
    write: bool,
    user: bool,
    no_exec: bool,
}

impl Rights {
    const ALL: Self = Self {
        write: true,
        user: true,
        no_exec: false,
    };

    fn narrow(&mut self, entry: u64) {
        self.write &= entry & WRITE != 0;
        self.user &= entry & USER != 0;
        self.no_exec |= entry & NO_EXEC != 0;
    }

    fn check(&self, paging: &GuestPaging, access: GuestAccess) -> Result<(), WalkError> {
        let write_protected = access.user || paging.cr0 & CR0_WP != 0;
        let denied = (access.user && !self.user)
            || (access.kind == AccessKind::Write && write_protected && !self.write)
            || (access.kind == AccessKind::Fetch && self.no_exec);
        if denied {
            Err(WalkError::Permission)
        } else {
            Ok(())
        }
    }
}

/// Reads the naturally aligned `N`-byte entry at `gpa` through the p2m.
fn read_entry<const N: usize>(npt: &Npt, mem: &impl PhysMem, gpa: u64) -> Result<u64, WalkError> {
    let entry = npt
        .translate(mem, Gfn(gpa >> 12))
        .filter(P2mEntry::is_memory)
        .ok_or(WalkError::OutOfP2m)?;
    let off = usize_from_u64(gpa) & (PAGE_SIZE - 1) & !(N - 1);
    let mut bytes = [0u8; 8];
    bytes[..N].copy_from_slice(&mem.frame(entry.mfn)[off..off + N]);
    Ok(u64::from_le_bytes(bytes))
}

/// Translates `gva` for `access` under `paging`, reading the guest's tables
/// through `npt`. Returns the GPA.
pub fn translate_gva(
    paging: &GuestPaging,
    npt: &Npt,
    mem: &impl PhysMem,
    gva: u64,
    access: GuestAccess,
) -> Result<u64, WalkError> {
    if paging.cr0 & CR0_PG == 0 {
        // Paging off: linear addresses are 32 bits wide.
        return u32::try_from(gva)
            .map(u64::from)
            .map_err(|_| WalkError::BadAddress);
    }
    let walk = if paging.efer & EFER_LMA != 0 {
        walk_long(paging, npt, mem, gva)
    } else if paging.cr4 & CR4_PAE != 0 {
        walk_pae(paging, npt, mem, gva)
    } else {
        walk_legacy(paging, npt, mem, gva)
    };
    let (gpa, rights) = walk?;
    rights.check(paging, access)?;
    Ok(gpa)
}

/// Checks a PAE/long-mode entry: present, and NX only if EFER.NXE.
fn check_wide(paging: &GuestPaging, entry: u64) -> Result<(), WalkError> {
    if entry & PRESENT == 0 {
        Err(WalkError::NotPresent)
    } else if entry & NO_EXEC != 0 && paging.efer & EFER_NXE == 0 {
        Err(WalkError::ReservedBit)
    } else {
        Ok(())
    }
}

/// GPA inside a large page of `1 << shift` bytes; the frame-address bits
/// below `shift` other than PAT (bit 12) are reserved.
fn large_page(entry: u64, shift: u32, gva: u64) -> Result<u64, WalkError> {
    let offset_mask = (1u64 << shift) - 1;
    if entry & ADDR_MASK & offset_mask & !(1 << 12) != 0 {
        return Err(WalkError::ReservedBit);
    }
    Ok((entry & ADDR_MASK & !offset_mask) | (gva & offset_mask))
}

/// Walks the tables of `levels` levels starting at `table` (8-byte entries).
fn walk_wide(
    paging: &GuestPaging,
    npt: &Npt,
    mem: &impl PhysMem,
    gva: u64,
    mut table: u64,
    levels: u32,
    mut rights: Rights,
) -> Result<(u64, Rights), WalkError> {
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let entry = read_entry::<8>(npt, mem, table + ((gva >> shift) & 511) * 8)?;
        check_wide(paging, entry)?;
        rights.narrow(entry);
        if level > 1 && entry & LARGE != 0 {
            // PS is reserved in the PML4E; 1 GiB (PDPTE) and 2 MiB (PDE) pages.
            if level > 3 {
                return Err(WalkError::ReservedBit);
            }
            return Ok((large_page(entry, shift, gva)?, rights));
        }
        table = entry & ADDR_MASK;
    }
    Ok((table | (gva & (PAGE_SIZE as u64 - 1)), rights))
}

/// 4-level long mode with 48-bit canonical addresses.
fn walk_long(
    paging: &GuestPaging,
    npt: &Npt,
    mem: &impl PhysMem,
    gva: u64,
) -> Result<(u64, Rights), WalkError> {
    // Canonical: bits 63:47 all equal (bit 47 sign-extended).
    let canonical = matches!(gva >> 47, 0 | 0x1_ffff);
    if !canonical || paging.cr4 & CR4_LA57 != 0 {
        return Err(WalkError::BadAddress);
    }
    walk_wide(
        paging,
        npt,
        mem,
        gva,
        paging.cr3 & ADDR_MASK,
        4,
        Rights::ALL,
    )
}

/// Legacy PAE: four PDPTEs at CR3[31:5], then a PD and a PT.
fn walk_pae(
    paging: &GuestPaging,
    npt: &Npt,
    mem: &impl PhysMem,
    gva: u64,
) -> Result<(u64, Rights), WalkError> {
    if gva > u64::from(u32::MAX) {
        return Err(WalkError::BadAddress);
    }
    let pdpt = paging.cr3 & 0xffff_ffe0;
    let pdpte = read_entry::<8>(npt, mem, pdpt + (gva >> 30) * 8)?;
    if pdpte & PRESENT == 0 {
        return Err(WalkError::NotPresent);
    }
    // PAE PDPTEs carry no W/U/NX; those and PS are reserved (APM §5.4).
    if pdpte & (WRITE | USER | LARGE | NO_EXEC) != 0 {
        return Err(WalkError::ReservedBit);
    }
    walk_wide(paging, npt, mem, gva, pdpte & ADDR_MASK, 2, Rights::ALL)
}

/// Legacy 2-level 32-bit paging, with 4 MiB pages if CR4.PSE (PSE-40).
fn walk_legacy(
    paging: &GuestPaging,
    npt: &Npt,
    mem: &impl PhysMem,
    gva: u64,
) -> Result<(u64, Rights), WalkError> {
    if gva > u64::from(u32::MAX) {
        return Err(WalkError::BadAddress);
    }
    let mut rights = Rights::ALL;
    let pde = read_entry::<4>(npt, mem, (paging.cr3 & 0xffff_f000) + (gva >> 22) * 4)?;
    if pde & PRESENT == 0 {
        return Err(WalkError::NotPresent);
    }
    rights.narrow(pde);
    if pde & LARGE != 0 && paging.cr4 & CR4_PSE != 0 {
        if pde & (1 << 21) != 0 {
            return Err(WalkError::ReservedBit);
        }
        let high = ((pde >> 13) & 0xff) << 32;
        return Ok((high | (pde & 0xffc0_0000) | (gva & 0x3f_ffff), rights));
    }
    let pte = read_entry::<4>(npt, mem, (pde & 0xffff_f000) + ((gva >> 12) & 1023) * 4)?;
    if pte & PRESENT == 0 {
        return Err(WalkError::NotPresent);
    }
    rights.narrow(pte);
    Ok(((pte & 0xffff_f000) | (gva & 0xfff), rights))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mm::{FramePool, Mfn};
    use crate::paging::npt::{P2mAccess, P2mEntry, P2mKind};
    use crate::paging::sim::{machine, SimPhys, SimPool};
    use AccessKind::{Fetch, Read, Write};

    /// A domain with `pages` GFNs of RAM from GFN 0, for walk tests.
    pub(crate) struct Guest {
        pub pool: SimPool,
        pub mem: SimPhys,
        pub npt: Npt,
    }

    impl Guest {
        pub fn new(pages: u64) -> Self {
            let (mut pool, mut mem) = machine(pages + 64);
            let mut npt = Npt::new(&mut pool, &mut mem).unwrap();
            for g in 0..pages {
                let mfn = pool.alloc().unwrap();
                mem.frame_mut(mfn).fill(0);
                let e = P2mEntry {
                    mfn,
                    access: P2mAccess::RWX,
                    kind: P2mKind::Owned,
                };
                npt.map(&mut pool, &mut mem, Gfn(g), e).unwrap();
            }
            Self { pool, mem, npt }
        }

        fn mfn(&self, gpa: u64) -> Mfn {
            self.npt.translate(&self.mem, Gfn(gpa >> 12)).unwrap().mfn
        }

        /// Writes `bytes` at `gpa`, across pages.
        pub fn write(&mut self, gpa: u64, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                let at = gpa + i as u64;
                let mfn = self.mfn(at);
                self.mem.frame_mut(mfn)[(at & 0xfff) as usize] = *b;
            }
        }

        /// Reads `len` bytes at `gpa`, across pages.
        pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
            (gpa..gpa + len as u64)
                .map(|at| self.mem.frame(self.mfn(at))[(at & 0xfff) as usize])
                .collect()
        }

        pub fn set64(&mut self, gpa: u64, v: u64) {
            self.write(gpa, &v.to_le_bytes());
        }

        /// Writes a 32-bit entry; `v` is u64 to take the flag constants.
        fn set32(&mut self, gpa: u64, v: u64) {
            let v = u32::try_from(v).expect("a 32-bit entry");
            self.write(gpa, &v.to_le_bytes());
        }

        fn walk(
            &self,
            paging: &GuestPaging,
            gva: u64,
            kind: AccessKind,
            user: bool,
        ) -> Result<u64, WalkError> {
            translate_gva(
                paging,
                &self.npt,
                &self.mem,
                gva,
                GuestAccess { kind, user },
            )
        }
    }

    pub(crate) const P: u64 = PRESENT;
    pub(crate) const PW: u64 = PRESENT | WRITE;
    pub(crate) const PWU: u64 = PRESENT | WRITE | USER;

    /// Long mode: PML4 at GPA 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
    /// 0x40_0000_0000 + n*4K → 4 KiB pages, kernel and user.
    pub(crate) fn long_mode(g: &mut Guest) -> GuestPaging {
        g.set64(0x1000, 0x2000 | PWU);
        g.set64(0x2000, 0x3000 | PWU);
        g.set64(0x3000, 0x4000 | PWU);
        g.set64(0x4000, 0x5000 | PWU); // gva 0 → 0x5000 user RW
        g.set64(0x4008, 0x6000 | PW); // gva 0x1000 → 0x6000 kernel RW
        g.set64(0x4010, 0x7000 | PRESENT | USER); // gva 0x2000 → 0x7000 user RO
        g.set64(0x4018, 0x8000 | PWU | NO_EXEC); // gva 0x3000 → NX
        g.set64(0x4020, 0x1_0000_0000 | PWU); // gva 0x4000 → outside the p2m
        g.set64(0x3008, 0x20_0000 | PWU | LARGE); // gva 2 MiB → 2 MiB page
        g.set64(0x2008, 0x4000_0000 | PWU | LARGE); // gva 1 GiB → 1 GiB page
        g.set64(0x1008, 0x9000 | PWU); // PML4[1] → PDPT at 0x9000,
        g.set64(0x9000, 0x50_0000_0000 | PWU); // whose PD is outside the p2m
        GuestPaging {
            cr0: CR0_PG | CR0_WP | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | EFER_NXE | (1 << 8),
        }
    }

    #[test]
    fn paging_off_is_identity_below_4g() {
        let g = Guest::new(1);
        let paging = GuestPaging::default();
        assert_eq!(g.walk(&paging, 0xdead_beef, Write, true), Ok(0xdead_beef));
        assert_eq!(
            g.walk(&paging, 1 << 32, Read, false),
            Err(WalkError::BadAddress)
        );
    }

    #[test]
    fn long_mode_walks_and_checks() {
        let mut g = Guest::new(16);
        let p = long_mode(&mut g);
        assert_eq!(g.walk(&p, 0x123, Write, true), Ok(0x5123));
        assert_eq!(g.walk(&p, 0x1fff, Read, false), Ok(0x6fff));
        assert_eq!(g.walk(&p, 0x1000, Read, true), Err(WalkError::Permission));
        assert_eq!(g.walk(&p, 0x2000, Read, true), Ok(0x7000));
        assert_eq!(g.walk(&p, 0x2000, Write, true), Err(WalkError::Permission));
        assert_eq!(g.walk(&p, 0x2000, Write, false), Err(WalkError::Permission));
        let no_wp = GuestPaging {
            cr0: p.cr0 & !CR0_WP,
            ..p
        };
        assert_eq!(g.walk(&no_wp, 0x2000, Write, false), Ok(0x7000));
        assert_eq!(g.walk(&p, 0x3000, Read, false), Ok(0x8000));
        assert_eq!(g.walk(&p, 0x3000, Fetch, false), Err(WalkError::Permission));
        assert_eq!(g.walk(&p, 0x4000, Read, false), Ok(0x1_0000_0000));
        assert_eq!(g.walk(&p, 0x5000, Read, false), Err(WalkError::NotPresent));
        assert_eq!(g.walk(&p, 0x20_1234, Read, false), Ok(0x20_1234));
        assert_eq!(g.walk(&p, 0x4abc_def0, Read, false), Ok(0x4abc_def0));
        assert_eq!(g.walk(&p, 1 << 39, Read, false), Err(WalkError::OutOfP2m));
        assert_eq!(g.walk(&p, 1 << 47, Read, false), Err(WalkError::BadAddress));
        assert_eq!(
            g.walk(&p, 0xffff_8000_0000_0000, Read, false),
            Err(WalkError::NotPresent)
        );
    }

    #[test]
    fn long_mode_reserved_bits() {
        let mut g = Guest::new(16);
        let p = long_mode(&mut g);
        let no_nxe = GuestPaging {
            efer: p.efer & !EFER_NXE,
            ..p
        };
        assert_eq!(
            g.walk(&no_nxe, 0x3000, Read, false),
            Err(WalkError::ReservedBit)
        );
        g.set64(0x3010, 0x21_0000 | PWU | LARGE); // 2 MiB page not 2 MiB aligned
        assert_eq!(
            g.walk(&p, 0x40_0000, Read, false),
            Err(WalkError::ReservedBit)
        );
        g.set64(0x1010, 0x2000 | PWU | LARGE); // PS in a PML4E
        assert_eq!(
            g.walk(&p, 2 << 39, Read, false),
            Err(WalkError::ReservedBit)
        );
        g.set64(0x1018, 0x9_0000_0000 | PWU); // PML4E pointing outside the p2m
        assert_eq!(g.walk(&p, 3 << 39, Read, false), Err(WalkError::OutOfP2m));
    }

    #[test]
    fn pae_walks_and_checks() {
        let mut g = Guest::new(16);
        g.set64(0x1020, 0x2000 | P); // PDPT at 0x1020: [0] → PD 0x2000
        g.set64(0x1028, 0x2000 | PW); // [1]: W is reserved in a PAE PDPTE
        g.set64(0x2000, 0x3000 | PWU); // PD[0] → PT
        g.set64(0x2008, 0x40_0000 | PW | LARGE); // PD[1] → 2 MiB kernel page
        g.set64(0x3000, 0x5000 | PWU);
        g.set64(0x3008, 0x6000 | PWU | NO_EXEC);
        let p = GuestPaging {
            cr0: CR0_PG | 1,
            cr3: 0x1020,
            cr4: CR4_PAE,
            efer: EFER_NXE,
        };
        assert_eq!(g.walk(&p, 0x42, Write, true), Ok(0x5042));
        assert_eq!(g.walk(&p, 0x1042, Fetch, false), Err(WalkError::Permission));
        assert_eq!(g.walk(&p, 0x20_0042, Write, false), Ok(0x40_0042));
        assert_eq!(
            g.walk(&p, 0x20_0042, Read, true),
            Err(WalkError::Permission)
        );
        assert_eq!(
            g.walk(&p, 0x4000_0000, Read, false),
            Err(WalkError::ReservedBit)
        );
        assert_eq!(
            g.walk(&p, 0x8000_0000, Read, false),
            Err(WalkError::NotPresent)
        );
        assert_eq!(g.walk(&p, 1 << 32, Read, false), Err(WalkError::BadAddress));
    }

    #[test]
    fn legacy_two_level_with_pse() {
        let mut g = Guest::new(16);
        g.set32(0x1000, 0x2000 | PWU); // PD[0] → PT 0x2000
        g.set32(0x1004, 0x0040_0000 | (0x3 << 13) | (PW | LARGE)); // 4 MiB at 0x3_0040_0000
        g.set32(0x1008, 0x8000 | PWU); // PD[2] → PT 0x8000, whose page
        g.set32(0x8000, 0x0f00_0000 | PWU); // is outside the p2m (caller's check)
        g.set32(0x2000, 0x5000 | PWU);
        g.set32(0x2004, 0x6000 | PRESENT | USER);
        let p = GuestPaging {
            cr0: CR0_PG | CR0_WP | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        assert_eq!(g.walk(&p, 0x7ff, Write, true), Ok(0x57ff));
        assert_eq!(g.walk(&p, 0x1000, Write, false), Err(WalkError::Permission));
        assert_eq!(g.walk(&p, 0x2000, Read, false), Err(WalkError::NotPresent));
        assert_eq!(g.walk(&p, 0x0041_2345, Read, false), Ok(0x3_0041_2345));
        assert_eq!(
            g.walk(&p, 0x0041_2345, Read, true),
            Err(WalkError::Permission)
        );
        assert_eq!(g.walk(&p, 0x0080_0000, Read, false), Ok(0x0f00_0000));
        let no_pse = GuestPaging { cr4: 0, ..p };
        // Without PSE the 4 MiB entry points to a PT at 0x40_6000, outside the p2m.
        assert_eq!(
            g.walk(&no_pse, 0x0041_2345, Read, false),
            Err(WalkError::OutOfP2m)
        );
    }
}
