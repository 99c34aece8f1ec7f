//! A domain's Xen guest-ABI state besides memory and scheduling: its HVM
//! parameters, the memory map it was built with, where each vCPU's
//! `vcpu_info` lives, the assists it turned on, and its unfinished
//! console line. The hypercall layer
//! reads and changes it; every index a guest passes is checked there.

use abi::xen::hvm::HVM_NR_PARAMS;
use abi::xen::memory::{E820Entry, MAX_MEMMAP_ENTRIES};
use abi::xen::start_info::HvmMemmapEntry;
use heapless::Vec;

use super::MAX_VCPUS;
use crate::mm::{Gfn, Gpa};
use crate::ratelimit::RateLimit;

/// Bytes of console output buffered per domain until a newline (Xen's
/// `DOMAIN_PBUF_SIZE` is 200); a longer line is printed in pieces.
pub const CONSOLE_LINE_MAX: usize = 256;
/// Bytes of `console_io` output (a line counts its length plus one) a
/// domU may print in a burst ...
pub const DOMU_CONSOLE_BURST_BYTES: u64 = 8 * 1024;
/// ... and per millisecond after it (1 000 bytes/s, a quarter of COM1's
/// 38 400 baud, so four flooding domUs still leave the log readable).
pub const DOMU_CONSOLE_BYTES_PER_MS: u64 = 1;

/// Where a vCPU's `vcpu_info` lives after `VCPUOP_register_vcpu_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfoArea {
    /// The domain's own RAM frame holding it.
    pub gfn: Gfn,
    /// Byte offset in that frame; the 64-byte `vcpu_info` fits after it.
    pub offset: u16,
}

impl VcpuInfoArea {
    /// Guest physical address of the `vcpu_info`.
    pub fn gpa(&self) -> Gpa {
        Gpa(self.gfn.gpa() + u64::from(self.offset))
    }
}

/// The memory map has more entries than [`MAX_MEMMAP_ENTRIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapTooLong;

/// Guest-ABI state of one domain.
#[derive(Clone, Debug)]
pub struct XenState {
    /// `HVM_PARAM_*` values by index; unset ones read as 0 (Xen's rule).
    pub hvm_params: [u64; HVM_NR_PARAMS as usize],
    /// Registered `vcpu_info` areas by vCPU id (`None`: the slot in shared info).
    pub vcpu_info: [Option<VcpuInfoArea>; MAX_VCPUS],
    /// Assists on (Xen's `d->vm_assist`): bit `VMASST_TYPE_*` set by
    /// `vm_assist(VMASST_CMD_enable, type)`; the hypercall sets only the
    /// types it accepts.
    vm_assist: u64,
    /// Console bytes since the last newline.
    pub console_line: Vec<u8, CONSOLE_LINE_MAX>,
    /// A domU's `console_io` output budget, in bytes
    /// (`hypercall::console`); dom0's output is not limited.
    pub console_limit: RateLimit,
    memory_map: Vec<E820Entry, MAX_MEMMAP_ENTRIES>,
}

impl XenState {
    pub(super) const fn new() -> Self {
        Self {
            hvm_params: [0; HVM_NR_PARAMS as usize],
            vcpu_info: [None; MAX_VCPUS],
            vm_assist: 0,
            console_line: Vec::new(),
            console_limit: RateLimit::new(DOMU_CONSOLE_BURST_BYTES, DOMU_CONSOLE_BYTES_PER_MS),
            memory_map: Vec::new(),
        }
    }

    /// Whether assist `kind` (`VMASST_TYPE_*`) is on (Xen's `VM_ASSIST`);
    /// a type beyond the word is off.
    pub fn vm_assist(&self, kind: u32) -> bool {
        self.vm_assist
            .checked_shr(kind)
            .is_some_and(|bits| bits & 1 != 0)
    }

    /// Turns assist `kind` on or off; a type beyond the word changes
    /// nothing (the hypercall refuses it first).
    pub fn set_vm_assist(&mut self, kind: u32, on: bool) {
        let bit = 1u64.checked_shl(kind).unwrap_or(0);
        if on {
            self.vm_assist |= bit;
        } else {
            self.vm_assist &= !bit;
        }
    }

    /// The E820 map `XENMEM_memory_map` returns: the one in the domain's
    /// start info (empty until the builder's map is stored).
    pub fn memory_map(&self) -> &[E820Entry] {
        &self.memory_map
    }

    /// Replaces the map with `entries` (`XENMEM_set_memory_map` from the
    /// toolstack).
    pub fn set_e820(&mut self, entries: &[E820Entry]) -> Result<(), MemoryMapTooLong> {
        self.memory_map = Vec::from_slice(entries).map_err(|_| MemoryMapTooLong)?;
        Ok(())
    }

    /// Stores the map the builder gave the domain
    /// (`builder::memory_map`), converted to Xen's `e820entry`.
    pub fn set_memory_map(&mut self, map: &[HvmMemmapEntry]) -> Result<(), MemoryMapTooLong> {
        let mut entries = Vec::new();
        for e in map {
            let entry = E820Entry {
                addr: e.addr,
                size: e.size,
                kind: e.kind,
            };
            entries.push(entry).map_err(|_| MemoryMapTooLong)?;
        }
        self.memory_map = entries;
        Ok(())
    }
}
