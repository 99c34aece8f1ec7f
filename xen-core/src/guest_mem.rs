//! The single door to a domain's memory.
//!
//! - [`GuestPhys`]: guest physical addresses, through the domain's p2m.
//! - [`GuestVirt`]: guest virtual addresses (hypercall pointers, as in Xen
//!   PVH): the guest's page walk ([`translate_gva`]), then the p2m.
//!
//! Every access is checked in full before any byte moves: a failed copy
//! writes nothing. Typed reads copy a structure once into a local value
//! (never re-read guest memory: XSA-155), through zerocopy's `FromBytes`.

#![forbid(unsafe_code)]

use heapless::Vec;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::mm::{Gfn, Mfn, PhysMem, PAGE_SIZE};
use crate::paging::guest_walk::{translate_gva, AccessKind, GuestAccess, GuestPaging, WalkError};
use crate::paging::npt::{Npt, P2mEntry};

/// Largest copy through a guest virtual address, in bytes.
pub const MAX_GUEST_COPY: usize = 64 * 1024;
/// Pages a copy of [`MAX_GUEST_COPY`] bytes can touch.
const MAX_COPY_PAGES: usize = MAX_GUEST_COPY / PAGE_SIZE + 1;

/// Why a guest-memory access failed. Each variant's doc comment is its
/// message; every one is `-EFAULT` to the guest ([`Errno::from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, displaydoc::Display)]
pub enum GuestFault {
    /// guest page walk: {0}
    Walk(WalkError),
    /// address outside the domain's memory
    NotInP2m,
    /// frame is read-only for the domain
    ReadOnly,
    /// copy longer than {MAX_GUEST_COPY} bytes
    TooLong,
    /// range wraps around the address space
    Wraps,
    /// shared structure crosses its page or is misaligned
    Misaligned,
}

impl From<GuestFault> for abi::xen::errno::Errno {
    /// Xen's `copy_from_guest`/`copy_to_guest` failures: `-EFAULT`.
    fn from(_: GuestFault) -> Self {
        Self::EFAULT
    }
}

impl From<WalkError> for GuestFault {
    fn from(e: WalkError) -> Self {
        Self::Walk(e)
    }
}

/// The pieces `[addr, addr + len)` falls into at page boundaries, as
/// (address, length) pairs; fails if the range wraps.
fn page_pieces(addr: u64, len: u64) -> Result<impl Iterator<Item = (u64, usize)>, GuestFault> {
    let end = addr.checked_add(len).ok_or(GuestFault::Wraps)?;
    let mut at = addr;
    Ok(core::iter::from_fn(move || {
        if at == end {
            return None;
        }
        let room = PAGE_SIZE as u64 - (at & (PAGE_SIZE as u64 - 1));
        let n = room.min(end - at);
        let piece = (at, abi::convert::usize_from_u64(n));
        at += n;
        Some(piece)
    }))
}

/// Byte offset of `addr` in its page.
fn page_offset(addr: u64) -> usize {
    abi::convert::usize_from_u64(addr) & (PAGE_SIZE - 1)
}

/// A domain's guest physical memory: its p2m over machine memory.
pub struct GuestPhys<'a, M: PhysMem> {
    npt: &'a Npt,
    mem: &'a mut M,
}

impl<'a, M: PhysMem> GuestPhys<'a, M> {
    /// Access through `npt` to the frames in `mem`.
    pub fn new(npt: &'a Npt, mem: &'a mut M) -> Self {
        Self { npt, mem }
    }

    /// The frame behind `gpa`, checked for writing if `write`.
    fn frame_of(&self, gpa: u64, write: bool) -> Result<Mfn, GuestFault> {
        let entry = self
            .npt
            .translate(&*self.mem, Gfn(gpa >> 12))
            .filter(P2mEntry::is_memory)
            .ok_or(GuestFault::NotInP2m)?;
        if write && !entry.access.write {
            return Err(GuestFault::ReadOnly);
        }
        Ok(entry.mfn)
    }

    /// Checks that every page of `[gpa, gpa + len)` is mapped (writable).
    fn check(&self, gpa: u64, len: u64, write: bool) -> Result<(), GuestFault> {
        for (at, _) in page_pieces(gpa, len)? {
            self.frame_of(at, write)?;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from `gpa`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.check(gpa, buf.len() as u64, false)?;
        let mut done = 0;
        for (at, n) in page_pieces(gpa, buf.len() as u64)? {
            let frame = self.mem.frame(self.frame_of(at, false)?);
            let off = page_offset(at);
            buf[done..done + n].copy_from_slice(&frame[off..off + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to `gpa`; writes nothing unless all of it fits.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestFault> {
        self.check(gpa, data.len() as u64, true)?;
        let mut done = 0;
        for (at, n) in page_pieces(gpa, data.len() as u64)? {
            let mfn = self.frame_of(at, true)?;
            let off = page_offset(at);
            self.mem.frame_mut(mfn)[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Zeroes `len` bytes at `gpa`; writes nothing unless all of it fits.
    pub fn zero(&mut self, gpa: u64, len: u64) -> Result<(), GuestFault> {
        self.check(gpa, len, true)?;
        for (at, n) in page_pieces(gpa, len)? {
            let mfn = self.frame_of(at, true)?;
            let off = page_offset(at);
            self.mem.frame_mut(mfn)[off..off + n].fill(0);
        }
        Ok(())
    }
}

/// One page's part of a checked guest-virtual copy.
struct Span {
    mfn: Mfn,
    offset: usize,
    len: usize,
}

/// A vCPU's view of its domain's memory by guest virtual address.
pub struct GuestVirt<'a, M: PhysMem> {
    phys: GuestPhys<'a, M>,
    paging: GuestPaging,
    user: bool,
}

impl<'a, M: PhysMem> GuestVirt<'a, M> {
    /// Access as the vCPU with `paging` would make it; `user` if the
    /// hypercall came from CPL 3.
    pub fn new(npt: &'a Npt, mem: &'a mut M, paging: GuestPaging, user: bool) -> Self {
        Self {
            phys: GuestPhys::new(npt, mem),
            paging,
            user,
        }
    }

    /// Walks and p2m-checks every page of `[gva, gva + len)` for `kind`.
    fn spans(
        &self,
        gva: u64,
        len: usize,
        kind: AccessKind,
    ) -> Result<Vec<Span, MAX_COPY_PAGES>, GuestFault> {
        if len > MAX_GUEST_COPY {
            return Err(GuestFault::TooLong);
        }
        let access = GuestAccess {
            kind,
            user: self.user,
        };
        let mut spans = Vec::new();
        for (at, n) in page_pieces(gva, len as u64)? {
            let gpa = translate_gva(&self.paging, self.phys.npt, &*self.phys.mem, at, access)?;
            let span = Span {
                mfn: self.phys.frame_of(gpa, kind == AccessKind::Write)?,
                offset: page_offset(gpa),
                len: n,
            };
            // At most MAX_COPY_PAGES pieces for len <= MAX_GUEST_COPY.
            spans.push(span).map_err(|_| GuestFault::TooLong)?;
        }
        Ok(spans)
    }

    /// Checks that all `len` bytes at `gva` allow `kind`, without copying:
    /// lets a caller that copies in pieces fail before the first piece.
    pub fn check(&self, gva: u64, len: usize, kind: AccessKind) -> Result<(), GuestFault> {
        self.spans(gva, len, kind).map(|_| ())
    }

    /// `copy_from_guest`: fills `buf` from guest virtual address `gva`.
    pub fn copy_from_guest(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let mut done = 0;
        for s in self.spans(gva, buf.len(), AccessKind::Read)? {
            let frame = self.phys.mem.frame(s.mfn);
            buf[done..done + s.len].copy_from_slice(&frame[s.offset..s.offset + s.len]);
            done += s.len;
        }
        Ok(())
    }

    /// `copy_to_guest`: writes `data` at `gva`; translates every page
    /// first, so a fault writes nothing.
    pub fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
        let mut done = 0;
        for s in self.spans(gva, data.len(), AccessKind::Write)? {
            let frame = self.phys.mem.frame_mut(s.mfn);
            frame[s.offset..s.offset + s.len].copy_from_slice(&data[done..done + s.len]);
            done += s.len;
        }
        Ok(())
    }

    /// Instruction fetch: fills `buf` from `gva` with the bytes the vCPU
    /// may execute there, page by page, and stops at the first page it
    /// may not (an instruction near the end of the code may be shorter
    /// than `buf`). Returns how many bytes were fetched.
    pub fn fetch_prefix(&self, gva: u64, buf: &mut [u8]) -> usize {
        let Ok(pieces) = page_pieces(gva, buf.len() as u64) else {
            return 0;
        };
        let mut done = 0;
        for (at, n) in pieces {
            let Ok(spans) = self.spans(at, n, AccessKind::Fetch) else {
                break;
            };
            for s in spans {
                let frame = self.phys.mem.frame(s.mfn);
                buf[done..done + s.len].copy_from_slice(&frame[s.offset..s.offset + s.len]);
                done += s.len;
            }
        }
        done
    }

    /// Reads one `T` at `gva` into a local copy (one fetch of guest memory).
    pub fn read_struct<T: FromBytes + IntoBytes>(&self, gva: u64) -> Result<T, GuestFault> {
        let mut value = T::new_zeroed();
        self.copy_from_guest(gva, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes `value` at `gva`, all or nothing.
    pub fn write_struct<T: IntoBytes + Immutable>(
        &mut self,
        gva: u64,
        value: &T,
    ) -> Result<(), GuestFault> {
        self.copy_to_guest(gva, value.as_bytes())
    }
}

#[cfg(test)]
// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::mm::FramePool;
    use crate::paging::guest_walk::tests::{long_mode, Guest};
    use crate::paging::npt::{P2mAccess, P2mEntry, P2mKind};

    fn virt(
        g: &mut Guest,
        paging: GuestPaging,
        user: bool,
    ) -> GuestVirt<'_, crate::paging::sim::SimPhys> {
        GuestVirt::new(&g.npt, &mut g.mem, paging, user)
    }

    /// Long-mode guest (see `long_mode`) with GVA 0x10_0000.. mapping 20
    /// user RW pages at GPA 0x10_0000.. (PT at 0xa000).
    fn guest() -> (Guest, GuestPaging) {
        let mut g = Guest::new(0x120);
        let p = long_mode(&mut g);
        for i in 0..20u64 {
            g.set64(0x4000 + 8 * (0x100 + i), (0x10_0000 + i * 0x1000) | 7);
        }
        (g, p)
    }

    #[test]
    fn page_crossing_round_trip() {
        let (mut g, p) = guest();
        let data: std::vec::Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        virt(&mut g, p, true)
            .copy_to_guest(0x10_0ff0, &data)
            .unwrap();
        let mut back = vec![0; data.len()];
        virt(&mut g, p, true)
            .copy_from_guest(0x10_0ff0, &mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(g.read(0x10_1000, 4), data[16..20]);
    }

    #[test]
    fn fetch_stops_at_the_first_page_it_may_not_execute() {
        let (mut g, p) = guest();
        g.write(0x11_2ff8, &[0x90; 8]);
        g.write(0x11_3000, &[0xcc; 8]);
        let mut buf = [0u8; 15];
        // Both pages present: 8 + 7 bytes.
        assert_eq!(virt(&mut g, p, false).fetch_prefix(0x11_2ff8, &mut buf), 15);
        assert_eq!(buf[..8], [0x90; 8]);
        assert_eq!(buf[8..], [0xcc; 7]);
        // GVA 0x11_4000 is not present: only the bytes before it.
        let mut buf = [0u8; 15];
        assert_eq!(virt(&mut g, p, false).fetch_prefix(0x11_3ffc, &mut buf), 4);
        assert_eq!(virt(&mut g, p, false).fetch_prefix(0x11_4000, &mut buf), 0);
        assert_eq!(
            virt(&mut g, p, false).fetch_prefix(u64::MAX - 3, &mut buf),
            0
        );
    }

    #[test]
    fn faults_write_nothing() {
        let (mut g, p) = guest();
        let ones = [1u8; 0x2000];
        let before = g.read(0x11_3000, 0x100);
        // The last page of the range (GVA 0x11_4000) is not present.
        assert_eq!(
            virt(&mut g, p, true).copy_to_guest(0x11_3000, &ones[..0x1001]),
            Err(GuestFault::Walk(WalkError::NotPresent))
        );
        assert_eq!(g.read(0x11_3000, 0x100), before);
    }

    #[test]
    fn hostile_pointers_fault() {
        let (mut g, p) = guest();
        let mut buf = [0u8; 16];
        let v = virt(&mut g, p, true);
        let walk = |e| Err(GuestFault::Walk(e));
        assert_eq!(
            v.copy_from_guest(0x5000, &mut buf),
            walk(WalkError::NotPresent)
        );
        assert_eq!(
            v.copy_from_guest(0x1000, &mut buf),
            walk(WalkError::Permission)
        );
        assert_eq!(
            v.copy_from_guest(0x4000, &mut buf),
            Err(GuestFault::NotInP2m)
        );
        assert_eq!(
            v.copy_from_guest(1 << 47, &mut buf),
            walk(WalkError::BadAddress)
        );
        assert_eq!(
            v.copy_from_guest(u64::MAX - 7, &mut buf),
            Err(GuestFault::Wraps)
        );
        let mut huge = vec![0u8; MAX_GUEST_COPY + 1];
        assert_eq!(
            v.copy_from_guest(0x10_0000, &mut huge),
            Err(GuestFault::TooLong)
        );
        let mut v = virt(&mut g, p, true);
        assert_eq!(v.copy_to_guest(0x2000, &buf), walk(WalkError::Permission));
        // The kernel may read its own page.
        let v = virt(&mut g, p, false);
        assert_eq!(v.copy_from_guest(0x1000, &mut buf), Ok(()));
    }

    #[test]
    fn read_only_p2m_frame_refuses_writes() {
        let (mut g, p) = guest();
        let mfn = g.pool.alloc().unwrap();
        g.npt.unmap(&mut g.pool, &mut g.mem, Gfn(0x100)).unwrap();
        let ro = P2mEntry {
            mfn,
            access: P2mAccess::R,
            kind: P2mKind::Shared,
        };
        g.npt.map(&mut g.pool, &mut g.mem, Gfn(0x100), ro).unwrap();
        let mut v = virt(&mut g, p, true);
        assert_eq!(v.copy_to_guest(0x10_0000, &[1]), Err(GuestFault::ReadOnly));
        let mut b = [0u8; 1];
        assert_eq!(v.copy_from_guest(0x10_0000, &mut b), Ok(()));
    }

    #[test]
    fn structs_round_trip_once() {
        let (mut g, p) = guest();
        let e = abi::xen::sched::SchedPoll {
            ports: 0x1234,
            nr_ports: 3,
            pad0: 0,
            timeout: 99,
        };
        virt(&mut g, p, true).write_struct(0x10_0ffc, &e).unwrap();
        let back: abi::xen::sched::SchedPoll =
            virt(&mut g, p, true).read_struct(0x10_0ffc).unwrap();
        assert_eq!(back, e);
        let bad: Result<abi::xen::sched::SchedPoll, _> = virt(&mut g, p, true).read_struct(0x5000);
        assert_eq!(bad, Err(GuestFault::Walk(WalkError::NotPresent)));
    }

    #[test]
    fn guest_phys_checks_whole_range_first() {
        let mut g = Guest::new(4);
        let mut phys = GuestPhys::new(&g.npt, &mut g.mem);
        assert_eq!(phys.write(0x3ffe, &[9; 4]), Err(GuestFault::NotInP2m));
        assert_eq!(phys.zero(0x3000, 0x2000), Err(GuestFault::NotInP2m));
        assert_eq!(phys.write(u64::MAX, &[9; 2]), Err(GuestFault::Wraps));
        phys.write(0x0ffe, &[9; 4]).unwrap();
        let mut b = [0; 6];
        phys.read(0x0ffd, &mut b).unwrap();
        assert_eq!(b, [0, 9, 9, 9, 9, 0]);
        phys.zero(0x0fff, 2).unwrap();
        phys.read(0x0ffd, &mut b).unwrap();
        assert_eq!(b, [0, 9, 0, 0, 9, 0]);
        assert_eq!(g.read(0x3ffe, 2), [0, 0]);
    }
}
