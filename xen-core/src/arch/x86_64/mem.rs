//! Host physical memory on bare metal: the machine frame allocator
//! instance and the identity map that `boot.S` sets up (the first
//! `MAX_PHYS_MEM` bytes, virtual address = physical address). This is the
//! one place xen-core touches memory by physical address.

use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::convert::usize_from_u64;

use crate::boot_info::{BootInfo, PhysReader, Unreadable, LOW_MEMORY, MAX_BOOT_MODULES};
use crate::mm::frame::{MachineFrames, MAX_PHYS_MEM};
use crate::mm::shared_frame::SharedFrame;
use crate::mm::{FramePool, Mfn, PhysMem, PhysRange, PAGE_SIZE};

/// The machine frames xen-core hands out (usable RAM, nothing reserved).
pub static FRAMES: spin::Mutex<MachineFrames> = spin::Mutex::new(MachineFrames::new());

extern "C" {
    /// First byte of xen-core's image (link.ld).
    static __image_start: u8;
    /// One past the last byte of the image, .bss included (link.ld).
    static __image_end: u8;
}

/// The physical bytes of xen-core's image (code, data, .bss, boot stack).
pub fn image() -> PhysRange {
    PhysRange {
        start: (&raw const __image_start) as u64,
        end: (&raw const __image_end) as u64,
    }
}

/// Reads the boot loader's structures through the identity map.
pub struct BootReader;

impl PhysReader for BootReader {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let end = pa.checked_add(buf.len() as u64).ok_or(Unreadable)?;
        if pa == 0 || end > MAX_PHYS_MEM {
            return Err(Unreadable);
        }
        // SAFETY: [pa, end) is inside the identity map and not at address 0;
        // at boot nothing else runs and no Rust reference covers the loader's
        // tables, which QEMU places outside our image. A byte copy has no
        // alignment requirement.
        unsafe { ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
}

/// Takes a frame and fills it with zeros (VMCB, host save area, NPT pages).
pub fn alloc_zeroed_frame() -> Option<Mfn> {
    let mfn = FRAMES.lock().alloc()?;
    // SAFETY: the frame was just taken from the allocator, so nothing else
    // uses it; it is usable RAM below MAX_PHYS_MEM, hence identity-mapped.
    unsafe { ptr::write_bytes(mfn.hpa() as *mut u8, 0, PAGE_SIZE) };
    Some(mfn)
}

/// [`PhysMem`] over the identity map. Only one exists ([`IdentityMap::take`]),
/// so `&mut self` makes `frame_mut` exclusive.
pub struct IdentityMap {
    /// Frames never exposed: low memory, the image and the boot modules
    /// (borrowed as `&'static [u8]` by [`IdentityMap::boot_module`]).
    forbidden: [PhysRange; 2 + MAX_BOOT_MODULES],
}

static TAKEN: AtomicBool = AtomicBool::new(false);

impl IdentityMap {
    /// The identity map, the first time only.
    pub fn take(info: &BootInfo) -> Option<Self> {
        if TAKEN.swap(true, Ordering::SeqCst) {
            return None;
        }
        let mut forbidden = [PhysRange::default(); 2 + MAX_BOOT_MODULES];
        forbidden[0] = LOW_MEMORY;
        forbidden[1] = image();
        for (slot, module) in forbidden[2..].iter_mut().zip(info.modules()) {
            *slot = *module;
        }
        Some(Self { forbidden })
    }

    /// The bytes of boot module `index`, read-only for ever.
    pub fn boot_module(&self, info: &BootInfo, index: usize) -> Option<&'static [u8]> {
        let module = info.modules().get(index)?;
        if module.is_empty() || module.end > MAX_PHYS_MEM {
            return None;
        }
        let len = usize::try_from(module.len()).ok()?;
        // SAFETY: BootInfo checked that the module lies in RAM; it is below
        // MAX_PHYS_MEM (identity-mapped) and not empty, so not at address 0.
        // The frame allocator reserves it (BootInfo::reserved) and `frame` /
        // `frame_mut` refuse it, so no one writes it while this borrow lives.
        Some(unsafe { core::slice::from_raw_parts(module.start as *const u8, len) })
    }

    /// The address of `mfn`'s first byte. A frame outside managed RAM is a
    /// hypervisor bug: fatal.
    fn frame_address(&self, mfn: Mfn) -> usize {
        let range = PhysRange::from_base_size(mfn.hpa(), PAGE_SIZE as u64);
        match range {
            Some(r) if r.end <= MAX_PHYS_MEM && !self.forbidden.iter().any(|f| f.overlaps(&r)) => {
                usize_from_u64(r.start)
            }
            _ => super::fatal::fatal(format_args!("PhysMem: MFN {:#x} is not managed RAM", mfn.0)),
        }
    }
}

impl IdentityMap {
    /// `mfn` as a frame reached through atomics only, for as long as
    /// `self` is borrowed.
    fn shared_frame_at(&self, mfn: Mfn) -> SharedFrame<'_> {
        let address = self.frame_address(mfn);
        let base = core::ptr::NonNull::new(address as *mut u8).unwrap_or_else(|| {
            super::fatal::fatal(format_args!("mem: frame {mfn:?} at address 0"))
        });
        // SAFETY: `frame_address` checked the frame is identity-mapped RAM
        // (page-aligned, mapped for the hypervisor's lifetime) outside our
        // image and the boot modules, so no Rust object lives there; the
        // returned frame borrows this map, so no `frame_mut` reference
        // exists meanwhile (that needs `&mut` of the map, which writers
        // hold alone), and all access goes through its atomics, as the
        // guests' and other reader sections' accesses to it are.
        unsafe { SharedFrame::from_raw(base) }
    }
}

/// The identity map as the machine lock's reader sections use it, shared
/// among them: frames are read (`frame`) or reached through atomics
/// (`shared_frame`), never written through a reference. The exits a
/// reader completes write no guest memory (`vmexit::completes_alone`), so
/// a frame write here is a hypervisor bug.
#[derive(Clone, Copy)]
pub struct ReaderPhys<'a>(pub &'a IdentityMap);

impl PhysMem for ReaderPhys<'_> {
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE] {
        self.0.frame(mfn)
    }

    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE] {
        super::fatal::fatal(format_args!(
            "mem: a reader section wrote frame {mfn:?} (only writers write frames)"
        ))
    }

    fn shared_frame(&mut self, mfn: Mfn) -> SharedFrame<'_> {
        self.0.shared_frame_at(mfn)
    }
}

impl PhysMem for IdentityMap {
    fn frame(&self, mfn: Mfn) -> &[u8; PAGE_SIZE] {
        let address = self.frame_address(mfn);
        // SAFETY: `frame_address` checked the frame is identity-mapped RAM
        // above low memory (non-null, page-aligned) and outside our image and
        // the boot modules, so no Rust object lives there; writers need
        // `&mut self` of the only IdentityMap, which this borrow excludes.
        unsafe { &*(address as *const [u8; PAGE_SIZE]) }
    }

    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; PAGE_SIZE] {
        let address = self.frame_address(mfn);
        // SAFETY: as in `frame`; `&mut self` on the only IdentityMap makes
        // this the only reference to the frame for its lifetime.
        unsafe { &mut *(address as *mut [u8; PAGE_SIZE]) }
    }

    /// Made from the frame's address, never through `frame_mut`: guests
    /// on other pCPUs change it meanwhile, so no `&mut` to it may exist.
    fn shared_frame(&mut self, mfn: Mfn) -> SharedFrame<'_> {
        self.shared_frame_at(mfn)
    }

    /// One memmove, frame to frame: no bounce buffer (grant copy's cost
    /// is then that of the copy itself).
    fn copy_between_frames(
        &mut self,
        from: Mfn,
        src: core::ops::Range<usize>,
        to: Mfn,
        dst_offset: usize,
    ) -> Option<()> {
        let len = src.len();
        let dst_end = dst_offset.checked_add(len)?;
        if src.start > src.end || src.end > PAGE_SIZE || dst_end > PAGE_SIZE {
            return None;
        }
        let source = self.frame_address(from) + src.start;
        let dest = self.frame_address(to) + dst_offset;
        // SAFETY: both frames passed `frame_address` (identity-mapped RAM
        // no Rust object lives in, as in `frame`), both ranges were just
        // checked to lie inside their 4 KiB frame, and `&mut self` on the
        // only IdentityMap excludes every other reference to them;
        // `ptr::copy` is a memmove, so the same frame (overlapping
        // ranges) is fine.
        unsafe { core::ptr::copy(source as *const u8, dest as *mut u8, len) };
        Some(())
    }
}
