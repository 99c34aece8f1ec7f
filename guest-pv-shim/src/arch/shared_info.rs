//! The shared-info page and vcpu_info areas: frames of this image the
//! hypervisor writes (time, wall clock, later events), read only through
//! volatile reads at the offsets of `abi::xen::shared_info`.

use core::mem::{offset_of, size_of};
use core::ptr::read_volatile;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::convert::u32_const;
use abi::xen::shared_info::{
    SharedInfo as SharedInfoLayout, VcpuInfo, VcpuTimeInfo, XEN_LEGACY_MAX_VCPUS,
};

use super::hypercall::{Frame, Xen};
use crate::error::XenError;
use crate::events::{EventBitmaps, VcpuEvents};
use crate::seqlock::read_consistent;

/// The GFN the shared-info page is mapped at (`XENMEM_add_to_physmap`).
static SHARED_INFO_FRAME: Frame = Frame::new();
/// The frame vcpu_info areas are registered in (`VCPUOP_register_vcpu_info`).
static VCPU_INFO_FRAME: Frame = Frame::new();
/// vCPUs whose vcpu_info fits in [`VCPU_INFO_FRAME`].
const VCPU_INFO_SLOTS: u32 = u32_const::<{ abi::xen::PAGE_SIZE / size_of::<VcpuInfo>() }>();
/// Whether vCPU 0's vcpu_info moved to [`VCPU_INFO_FRAME`] (else it is
/// slot 0 of shared info).
static VCPU0_REGISTERED: AtomicBool = AtomicBool::new(false);

/// The mapped shared-info page.
pub struct SharedInfo(());

/// Wall-clock time at system time 0 (`wc_sec`/`wc_nsec`, `wc_sec_hi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Seconds since 1970-01-01 00:00 UTC.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// A vCPU's pvclock (`vcpu_time_info`) in shared info or a registered
/// vcpu_info area.
#[derive(Clone, Copy)]
pub struct Clock {
    frame: &'static Frame,
    /// Offset of the `vcpu_time_info` in `frame`; it fits in the frame.
    offset: usize,
}

/// The GFN [`Xen::map_shared_info`] maps shared info at.
pub fn shared_info_gfn() -> u64 {
    SHARED_INFO_FRAME.gpa() >> abi::xen::PAGE_SHIFT
}

impl Xen {
    /// Maps this domain's shared-info page at a GFN the shim reserves.
    pub fn map_shared_info(&self) -> Result<SharedInfo, XenError> {
        self.add_shared_info_to_physmap(&SHARED_INFO_FRAME)?;
        Ok(SharedInfo(()))
    }

    /// Moves `vcpu`'s vcpu_info into a frame of the shim and returns its
    /// clock; `None` for a vCPU beyond the frame's slots.
    pub fn register_vcpu_info(&self, vcpu: u32) -> Option<Result<Clock, XenError>> {
        if vcpu >= VCPU_INFO_SLOTS {
            return None;
        }
        let offset = vcpu * u32_const::<{ size_of::<VcpuInfo>() }>();
        Some(
            self.vcpu_register_vcpu_info(vcpu, &VCPU_INFO_FRAME, offset)
                .map(|()| {
                    if vcpu == 0 {
                        VCPU0_REGISTERED.store(true, Ordering::Release);
                    }
                    Clock {
                        frame: &VCPU_INFO_FRAME,
                        offset: offset as usize + offset_of!(VcpuInfo, time),
                    }
                }),
        )
    }
}

/// The event bitmaps of the shared-info page (meaningful once mapped).
pub(super) fn event_bitmaps() -> &'static EventBitmaps {
    let gva = SHARED_INFO_FRAME.gpa() + offset_of!(SharedInfoLayout, evtchn_pending) as u64;
    // SAFETY: the 1024 bytes of evtchn_pending and evtchn_mask lie inside
    // the static, page-aligned frame (8-aligned at offset 2048);
    // EventBitmaps is only atomics, which may alias the hypervisor's
    // writes; Rust never forms a non-atomic reference to this frame.
    unsafe { &*(gva as *const EventBitmaps) }
}

/// The event fields of vCPU 0's vcpu_info, wherever it is registered.
pub(super) fn vcpu0_events() -> &'static VcpuEvents {
    let gva = if VCPU0_REGISTERED.load(Ordering::Acquire) {
        VCPU_INFO_FRAME.gpa()
    } else {
        SHARED_INFO_FRAME.gpa() + offset_of!(SharedInfoLayout, vcpu_info) as u64
    };
    // SAFETY: the first 16 bytes of a 64-byte, 64-aligned vcpu_info inside
    // a static frame; only atomics and padding (see `event_bitmaps`).
    unsafe { &*(gva as *const VcpuEvents) }
}

/// vCPU 0's pvclock, wherever its vcpu_info is.
pub(super) fn vcpu0_clock() -> Clock {
    if VCPU0_REGISTERED.load(Ordering::Acquire) {
        Clock {
            frame: &VCPU_INFO_FRAME,
            offset: offset_of!(VcpuInfo, time),
        }
    } else {
        Clock {
            frame: &SHARED_INFO_FRAME,
            offset: offset_of!(SharedInfoLayout, vcpu_info) + offset_of!(VcpuInfo, time),
        }
    }
}

impl SharedInfo {
    /// The pvclock of `vcpu` in shared info (`None` beyond its 32 slots).
    pub fn clock(&self, vcpu: usize) -> Option<Clock> {
        (vcpu < XEN_LEGACY_MAX_VCPUS).then(|| Clock {
            frame: &SHARED_INFO_FRAME,
            offset: offset_of!(SharedInfoLayout, vcpu_info)
                + vcpu * size_of::<VcpuInfo>()
                + offset_of!(VcpuInfo, time),
        })
    }

    /// The wall clock; `None` if it never read consistently.
    pub fn wallclock(&self) -> Option<WallClock> {
        let field = |offset: usize| read_u32(&SHARED_INFO_FRAME, offset);
        read_consistent(
            || field(offset_of!(SharedInfoLayout, wc_version)),
            || WallClock {
                sec: u64::from(field(offset_of!(SharedInfoLayout, wc_sec_hi))) << 32
                    | u64::from(field(offset_of!(SharedInfoLayout, wc_sec))),
                nsec: field(offset_of!(SharedInfoLayout, wc_nsec)),
            },
        )
    }
}

impl Clock {
    /// A consistent copy of the `vcpu_time_info`; `None` if it kept changing.
    pub fn time_info(&self) -> Option<VcpuTimeInfo> {
        let gva = self.frame.gpa() + self.offset as u64;
        read_consistent(
            || read_u32(self.frame, self.offset + offset_of!(VcpuTimeInfo, version)),
            // SAFETY: a Clock's offset leaves the 32-byte, 8-aligned
            // vcpu_time_info inside its static frame (see the constructors);
            // volatile because the hypervisor writes it.
            || unsafe { read_volatile(gva as *const VcpuTimeInfo) },
        )
    }

    /// Current system time in ns (pvclock arithmetic over the TSC).
    pub fn system_time_ns(&self) -> Option<u64> {
        self.time_info()
            .map(|t| t.system_time_at(super::cpu::rdtsc()))
    }
}

/// Volatile read of the u32 at `offset` in `frame`; 0 for an offset
/// outside the frame or unaligned (callers pass layout offsets, never so).
fn read_u32(frame: &'static Frame, offset: usize) -> u32 {
    if !offset.is_multiple_of(4) || offset + 4 > abi::xen::PAGE_SIZE {
        return 0;
    }
    // SAFETY: checked just above: an aligned u32 inside a static frame of
    // this image; volatile because the hypervisor writes it.
    unsafe { read_volatile((frame.gpa() + offset as u64) as *const u32) }
}
