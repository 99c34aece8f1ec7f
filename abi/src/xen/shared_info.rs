//! The shared-info page, `xen/include/public/xen.h` with the x86_64 parts
//! from `xen/include/public/arch-x86/xen.h` and `arch-x86/xen-x86_64.h`.
//!
//! One 4 KiB page per domain, mapped by the guest with
//! `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`. The hypervisor and
//! the guest write it concurrently: these types give its layout; live
//! access goes through atomics at these offsets.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_LEGACY_MAX_VCPUS`: vCPUs with a `vcpu_info` slot in shared info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` in [`VcpuTimeInfo::flags`].
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` in [`VcpuTimeInfo::flags`].
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info`, 32 bytes: the pvclock of one vCPU.
///
/// Current system time (ns) = `system_time + ((((tsc - tsc_timestamp) <<
/// tsc_shift) * tsc_to_system_mul) >> 32)`, a negative shift shifting right.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuTimeInfo {
    /// Seqlock counter: odd while the hypervisor updates the fields.
    pub version: u32,
    /// Padding; zero.
    pub pad0: u32,
    /// TSC value when the fields were last updated.
    pub tsc_timestamp: u64,
    /// System time in ns since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier, a 32.32 fixed-point fraction.
    pub tsc_to_system_mul: u32,
    /// Binary shift applied to TSC deltas before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding; zero.
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// System time in ns at TSC value `tsc`, by the formula above.
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let shift = u32::from(self.tsc_shift.unsigned_abs());
        let delta = if self.tsc_shift >= 0 {
            delta.checked_shl(shift)
        } else {
            delta.checked_shr(shift)
        }
        .unwrap_or(0);
        // A 64-bit delta times a 32-bit multiplier, shifted right by 32:
        // the result fits in 64 bits, so the mask keeps every bit.
        let scaled = (u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32;
        self.system_time
            .wrapping_add((scaled & 0xffff_ffff_ffff_ffff) as u64)
    }
}

/// A TSC-to-ns scale: `tsc_to_system_mul` and `tsc_shift` for a TSC rate,
/// computed as Xen's `set_time_scale()` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    /// Value for [`VcpuTimeInfo::tsc_to_system_mul`].
    pub mul_frac: u32,
    /// Value for [`VcpuTimeInfo::tsc_shift`].
    pub shift: i8,
}

impl TimeScale {
    /// The scale for a TSC of `tsc_hz` ticks per second; `None` if 0.
    pub fn from_tsc_hz(tsc_hz: u64) -> Option<TimeScale> {
        const NS_PER_SEC: u64 = 1_000_000_000;
        if tsc_hz == 0 {
            return None;
        }
        let mut tps = tsc_hz;
        let mut shift: i8 = 0;
        while tps > 2 * NS_PER_SEC {
            tps >>= 1;
            shift -= 1;
        }
        while tps <= NS_PER_SEC {
            tps <<= 1;
            shift += 1;
        }
        // NS_PER_SEC < tps <= 2 * NS_PER_SEC, so the fraction fits in 32 bits.
        let mul_frac = u32::try_from((NS_PER_SEC << 32) / tps).ok()?;
        Some(TimeScale { mul_frac, shift })
    }
}

/// `struct arch_vcpu_info` (x86_64), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault (PV only).
    pub cr2: u64,
    /// Padding to make `vcpu_info` 64 bytes.
    pub pad: u64,
}

/// `struct vcpu_info`, 64 bytes: per-vCPU event and time state.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfo {
    /// Set non-zero by the hypervisor when an event is pending for this
    /// vCPU; cleared by the guest before it scans the selector.
    pub evtchn_upcall_pending: u8,
    /// Non-zero while the guest masks upcalls on this vCPU.
    pub evtchn_upcall_mask: u8,
    /// Implicit C padding; zero.
    pub pad0: [u8; 6],
    /// Selector: bit `i` set means word `i` of `evtchn_pending` may hold
    /// pending, unmasked ports.
    pub evtchn_pending_sel: u64,
    /// Architecture-specific state.
    pub arch: ArchVcpuInfo,
    /// The vCPU's pvclock.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (x86_64), 48 bytes. The p2m fields are for PV
/// guests; PVH guests leave them zero.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfo {
    /// Number of valid p2m entries (PV).
    pub max_pfn: u64,
    /// Frame of the p2m frame-list list (PV).
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// CR3 of the address space holding the linear p2m list (PV).
    pub p2m_cr3: u64,
    /// Virtual address of the linear p2m list (PV).
    pub p2m_vaddr: u64,
    /// Generation count of the p2m mapping, odd while updating (PV).
    pub p2m_generation: u64,
}

/// `struct shared_info` (x86_64), 3136 bytes: per-domain page shared with
/// the hypervisor.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    /// `vcpu_info` of vCPUs 0..32 (unless moved by `VCPUOP_register_vcpu_info`).
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event ABI: bit `p` set means port `p` is pending.
    pub evtchn_pending: [u64; 64],
    /// 2-level event ABI: bit `p` set means port `p` is masked.
    pub evtchn_mask: [u64; 64],
    /// Seqlock counter for the wall clock, as [`VcpuTimeInfo::version`].
    pub wc_version: u32,
    /// Wall-clock seconds since 1970-01-01 00:00 UTC at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Nanoseconds part of the wall clock.
    pub wc_nsec: u32,
    /// High 32 bits of the wall-clock seconds.
    pub wc_sec_hi: u32,
    /// Architecture-specific state.
    pub arch: ArchSharedInfo,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_xen_h() {
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), 8);
        assert_eq!(offset_of!(VcpuTimeInfo, system_time), 16);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
        assert_eq!(size_of::<ArchVcpuInfo>(), 16);
        assert_eq!(size_of::<VcpuInfo>(), 64);
        assert_eq!(offset_of!(VcpuInfo, evtchn_upcall_mask), 1);
        assert_eq!(offset_of!(VcpuInfo, evtchn_pending_sel), 8);
        assert_eq!(offset_of!(VcpuInfo, arch), 16);
        assert_eq!(offset_of!(VcpuInfo, time), 32);
        assert_eq!(size_of::<ArchSharedInfo>(), 48);
        assert_eq!(offset_of!(ArchSharedInfo, p2m_generation), 40);
        assert_eq!(size_of::<SharedInfo>(), 3136);
        assert_eq!(offset_of!(SharedInfo, evtchn_pending), 2048);
        assert_eq!(offset_of!(SharedInfo, evtchn_mask), 2560);
        assert_eq!(offset_of!(SharedInfo, wc_version), 3072);
        assert_eq!(offset_of!(SharedInfo, wc_sec), 3076);
        assert_eq!(offset_of!(SharedInfo, wc_nsec), 3080);
        assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 3084);
        assert_eq!(offset_of!(SharedInfo, arch), 3088);
        assert!(size_of::<SharedInfo>() <= super::super::PAGE_SIZE);
    }

    #[test]
    fn time_scale_converts_ticks_to_ns() {
        for hz in [
            1_000_000u64,
            999_999_999,
            1_000_000_000,
            2_500_000_000,
            3_999_999_999,
            10_000_000_000,
        ] {
            let scale = TimeScale::from_tsc_hz(hz).unwrap();
            let t = VcpuTimeInfo {
                tsc_timestamp: 1000,
                system_time: 5,
                tsc_to_system_mul: scale.mul_frac,
                tsc_shift: scale.shift,
                ..Default::default()
            };
            // One second of ticks is one second of ns, within 1 ppm.
            let ns = t.system_time_at(1000 + hz) - 5;
            assert!(ns.abs_diff(1_000_000_000) <= 1_000, "{hz} Hz gave {ns} ns");
        }
        assert_eq!(TimeScale::from_tsc_hz(0), None);
    }
}
