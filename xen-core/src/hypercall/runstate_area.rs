//! A `vcpu_runstate_info` as the bytes a guest sees, and the guest-memory
//! writes that store it in a registered runstate area, bracketed by
//! `XEN_RUNSTATE_UPDATE` when the domain turned on
//! `VMASST_TYPE_runstate_update_flag` (Xen 4.17's `update_runstate_area`,
//! `xen/arch/x86/domain.c`):
//! 1. the last byte of `state_entry_time` (bit 63 is its top bit, the
//!    struct is little-endian) with the flag set, alone;
//! 2. the whole struct, `state_entry_time` still flagged;
//! 3. that byte again with the flag clear.
//!
//! Each write is ordered before the next (Xen's `smp_wmb`), so a guest
//! that reads `state_entry_time`, the struct, then `state_entry_time`
//! again, and finds them equal and unflagged, read a consistent copy
//! (Linux's `xen_get_runstate_snapshot_cpu_delta`). [`write`] does the
//! writes through a vCPU's page tables; [`update_runstate_area`] is
//! Xen's function, which the run loop calls for the vCPU it takes off a
//! pCPU and the one it puts on (Xen's `context_switch`).

use core::iter::once;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use abi::xen::vcpu::{VcpuRunstateInfo, XEN_RUNSTATE_UPDATE};
use abi::xen::vm_assist::VMASST_TYPE_RUNSTATE_UPDATE_FLAG;
use zerocopy::IntoBytes;

use crate::domain::Domain;
use crate::guest_mem::{GuestFault, GuestVirt};
use crate::mm::PhysMem;
use crate::paging::guest_walk::GuestPaging;

/// Size of Xen's native `vcpu_runstate_info`.
const NATIVE_SIZE: usize = size_of::<VcpuRunstateInfo>();
/// Size of Xen's compat `vcpu_runstate_info` (a 32-bit caller's):
/// `state_entry_time` is 4-byte aligned, at offset 4.
const COMPAT_SIZE: usize = 44;
/// Offset of `state_entry_time` in the compat layout.
const COMPAT_ENTRY_TIME: usize = 4;

/// A `vcpu_runstate_info` in the caller's layout, as written plain and
/// as written with `XEN_RUNSTATE_UPDATE` in `state_entry_time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunstateImage {
    clean: [u8; NATIVE_SIZE],
    flagged: [u8; NATIVE_SIZE],
    /// Bytes of the layout: 48, or 44 for a 32-bit caller.
    len: usize,
    /// Offset of the byte that holds bit 63 of `state_entry_time`.
    flag_byte: usize,
}

/// Which part of the area a write stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The byte holding `XEN_RUNSTATE_UPDATE`: a failure is ignored, as
    /// Xen ignores it.
    FlagByte,
    /// The whole struct: its failure is the writer's.
    Whole,
}

/// One guest-memory write: `bytes` at `offset` from the area's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AreaWrite<'a> {
    pub part: Part,
    pub offset: u64,
    pub bytes: &'a [u8],
}

impl RunstateImage {
    /// `info` laid out natively, or for a 32-bit caller if `compat`.
    pub(crate) fn new(info: &VcpuRunstateInfo, compat: bool) -> Self {
        let mut flagged_info = *info;
        flagged_info.state_entry_time |= XEN_RUNSTATE_UPDATE;
        let entry_time = if compat {
            COMPAT_ENTRY_TIME
        } else {
            offset_of!(VcpuRunstateInfo, state_entry_time)
        };
        Self {
            clean: layout(info, compat),
            flagged: layout(&flagged_info, compat),
            len: if compat { COMPAT_SIZE } else { NATIVE_SIZE },
            flag_byte: entry_time + size_of::<u64>() - 1,
        }
    }

    /// The writes that store the image, in order: the whole struct alone,
    /// or, with `update_flag`, bracketed as the module docs say.
    pub(crate) fn writes(&self, update_flag: bool) -> impl Iterator<Item = AreaWrite<'_>> {
        let flag_byte = |flagged| AreaWrite {
            part: Part::FlagByte,
            offset: self.flag_byte as u64,
            bytes: self
                .image(flagged)
                .get(self.flag_byte..=self.flag_byte)
                .unwrap_or_default(),
        };
        let whole = AreaWrite {
            part: Part::Whole,
            offset: 0,
            bytes: self.image(update_flag).get(..self.len).unwrap_or_default(),
        };
        let (set, clear) = if update_flag {
            (Some(flag_byte(true)), Some(flag_byte(false)))
        } else {
            (None, None)
        };
        set.into_iter().chain(once(whole)).chain(clear)
    }

    fn image(&self, flagged: bool) -> &[u8; NATIVE_SIZE] {
        if flagged {
            &self.flagged
        } else {
            &self.clean
        }
    }
}

/// Writes `info` at `gva` through `virt`: 48 bytes, or 44 in the 32-bit
/// layout if `compat`; with `update_flag`, bracketed by
/// `XEN_RUNSTATE_UPDATE` ([`RunstateImage::writes`]). The whole struct's
/// write decides the result (all or nothing); the flag byte's are
/// ignored, as Xen does, and the flag is cleared even if the struct did
/// not fit.
pub(crate) fn write<M: PhysMem>(
    virt: &mut GuestVirt<'_, M>,
    gva: u64,
    info: &VcpuRunstateInfo,
    compat: bool,
    update_flag: bool,
) -> Result<(), GuestFault> {
    let image = RunstateImage::new(info, compat);
    let mut result = Ok(());
    for (i, w) in image.writes(update_flag).enumerate() {
        if i > 0 {
            // Xen's smp_wmb: x86 keeps stores in order; the fence stops
            // the compiler from moving them.
            fence(Ordering::Release);
        }
        // An area ending past the top of the address space: that byte
        // is not there (the whole struct's write faults).
        let written = match gva.checked_add(w.offset) {
            Some(at) => virt.copy_to_guest(at, w.bytes),
            None => Err(GuestFault::Wraps),
        };
        if w.part == Part::Whole {
            result = written;
        }
    }
    result
}

/// Xen's `update_runstate_area`: vCPU `id`'s registered area, if it has
/// one, gets its runstate as the scheduler last changed it (Xen's
/// `v->runstate`), through `paging` (the vCPU's own page tables, as Xen
/// writes in the vCPU's context; asked only when there is an area, so a
/// switch without one skips the lookup; `None`: no page tables to write
/// through), bracketed if the domain turned on
/// `VMASST_TYPE_runstate_update_flag`. An area that is not (or no
/// longer) mapped writable is left alone, as Xen leaves it; whether the
/// struct was written.
pub fn update_runstate_area<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    id: u32,
    paging: impl FnOnce() -> Option<GuestPaging>,
) -> bool {
    let Some(runstate) = domain.vcpu(id).map(|v| v.runstate()) else {
        return false;
    };
    let Some(area) = runstate.area() else {
        return false;
    };
    let Some(paging) = paging() else {
        return false;
    };
    let update_flag = domain.xen().vm_assist(VMASST_TYPE_RUNSTATE_UPDATE_FLAG);
    let mut virt = GuestVirt::new(domain.p2m(), mem, paging, false);
    write(
        &mut virt,
        area.gva,
        runstate.info(),
        area.compat,
        update_flag,
    )
    .is_ok()
}

/// `info`'s bytes: the native struct, or the compat one (state, then the
/// five u64s packed from offset 4) in the first 44 bytes.
fn layout(info: &VcpuRunstateInfo, compat: bool) -> [u8; NATIVE_SIZE] {
    let mut bytes = [0u8; NATIVE_SIZE];
    if !compat {
        bytes.copy_from_slice(info.as_bytes());
        return bytes;
    }
    let (state, rest) = bytes.split_at_mut(COMPAT_ENTRY_TIME);
    state.copy_from_slice(&info.state.to_le_bytes());
    let words = once(info.state_entry_time).chain(info.time);
    for (chunk, word) in rest.chunks_exact_mut(size_of::<u64>()).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const ENTRY_TIME: u64 = 0x0123_4567_89ab_cdef;

    fn info() -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: 2,
            pad0: 0,
            state_entry_time: ENTRY_TIME,
            time: [10, 20, 30, 40],
        }
    }

    /// Applies `writes` in order to `area`, returning `area` after each.
    fn replay(area: &mut [u8], image: &RunstateImage, flag: bool) -> Vec<Vec<u8>> {
        image
            .writes(flag)
            .map(|w| {
                let at = usize::try_from(w.offset).unwrap();
                area[at..at + w.bytes.len()].copy_from_slice(w.bytes);
                area.to_vec()
            })
            .collect()
    }

    fn entry_time(area: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(area[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn without_the_flag_one_write_of_the_struct() {
        let image = RunstateImage::new(&info(), false);
        let writes: Vec<_> = image.writes(false).collect();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].part, Part::Whole);
        assert_eq!(writes[0].offset, 0);
        assert_eq!(writes[0].bytes, info().as_bytes());
    }

    #[test]
    fn with_the_flag_the_struct_is_bracketed() {
        let image = RunstateImage::new(&info(), false);
        let writes: Vec<_> = image.writes(true).collect();
        let parts: Vec<_> = writes.iter().map(|w| (w.part, w.offset)).collect();
        assert_eq!(
            parts,
            [(Part::FlagByte, 15), (Part::Whole, 0), (Part::FlagByte, 15)]
        );
        let mut area = [0xaau8; 48];
        let steps = replay(&mut area, &image, true);
        // 1: only the top byte changed, and it carries the flag.
        assert_eq!(steps[0][..15], [0xaa; 15]);
        assert_eq!(steps[0][15], 0x01 | 0x80);
        assert_eq!(steps[0][16..], [0xaa; 32]);
        // 2: everything written, the entry time still flagged.
        assert_eq!(entry_time(&steps[1], 8), ENTRY_TIME | XEN_RUNSTATE_UPDATE);
        assert_eq!(steps[1][16..], info().as_bytes()[16..]);
        // 3: the flag is gone and the bytes are the plain struct's.
        assert_eq!(steps[2], info().as_bytes());
    }

    #[test]
    fn every_state_between_writes_is_flagged_or_final() {
        // What a concurrent reader may see between two writes: while the
        // struct is not yet the final one, the flag is up (Linux retries).
        let image = RunstateImage::new(&info(), false);
        let mut area = *VcpuRunstateInfo::default()
            .as_bytes()
            .first_chunk::<48>()
            .unwrap();
        let steps = replay(&mut area, &image, true);
        let (last, transient) = steps.split_last().unwrap();
        for step in transient {
            assert_ne!(entry_time(step, 8) & XEN_RUNSTATE_UPDATE, 0);
        }
        assert_eq!(entry_time(last, 8), ENTRY_TIME);
    }

    #[test]
    fn the_32_bit_layout_is_44_bytes_with_the_flag_at_byte_11() {
        let image = RunstateImage::new(&info(), true);
        let plain: Vec<_> = image.writes(false).collect();
        assert_eq!(plain[0].bytes.len(), 44);
        assert_eq!(plain[0].bytes[..4], 2i32.to_le_bytes());
        assert_eq!(entry_time(plain[0].bytes, 4), ENTRY_TIME);
        assert_eq!(entry_time(plain[0].bytes, 36), 40, "time[3] last");
        let offsets: Vec<_> = image
            .writes(true)
            .map(|w| (w.offset, w.bytes.len()))
            .collect();
        assert_eq!(offsets, [(11, 1), (0, 44), (11, 1)]);
        let mut area = [0u8; 44];
        let steps = replay(&mut area, &image, true);
        assert_eq!(entry_time(&steps[1], 4), ENTRY_TIME | XEN_RUNSTATE_UPDATE);
        assert_eq!(steps[2], plain[0].bytes);
    }
}
