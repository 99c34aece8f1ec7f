//! The hypervisor's stacks and the unmapped guard pages below them.
//!
//! One page-aligned block holds, for each pCPU, its main stack (the
//! boot stack on pCPU 0: the run loop and every hypercall run on it) and
//! its IST stacks (double fault, NMI, machine check), each directly
//! above a 4 KiB guard page. The arch layer maps the block with 4 KiB
//! pages and leaves the guards out ([`split_large_page`]), so running off
//! the bottom of a stack is a page fault instead of a silent write into
//! whatever lies below (the boot page tables, before this existed). The
//! page fault cannot be delivered on the overflowed stack either, so the
//! CPU raises #DF, whose handler runs on its own IST stack and ends the
//! machine with a `FATAL:` line.
//!
//! Every stack a pCPU runs on lies in its own [`PcpuStacks`], so the
//! stack pointer says which pCPU runs ([`StackArea::pcpu_of_offset`]),
//! as Xen's `get_cpu_info()` does: GS base cannot, as VMLOAD replaces it
//! with the guest's.

use core::mem::{offset_of, size_of};

use super::PAGE_SIZE;

/// Size of each pCPU's main stack.
pub const BOOT_STACK_BYTES: usize = 256 * 1024;
/// Size of each IST stack.
pub const IST_STACK_BYTES: usize = 16 * 1024;
/// IST slots per pCPU: #DF, NMI, #MC.
pub const IST_SLOTS: usize = 3;
/// pCPUs with stacks: the most xen-core brings up.
pub const STACK_PCPUS: usize = 8;

/// A 4 KiB page that is never mapped.
#[repr(C, align(4096))]
pub struct GuardPage([u8; PAGE_SIZE]);

/// A stack of `N` bytes with its guard page directly below.
#[repr(C, align(4096))]
pub struct GuardedStack<const N: usize> {
    guard: GuardPage,
    stack: [u8; N],
}

/// One pCPU's stacks: its main stack, then its IST stacks.
#[repr(C, align(4096))]
pub struct PcpuStacks {
    main: GuardedStack<BOOT_STACK_BYTES>,
    ist: [GuardedStack<IST_STACK_BYTES>; IST_SLOTS],
}

/// Every stack of the hypervisor, in one block.
#[repr(C, align(4096))]
pub struct StackArea {
    pcpus: [PcpuStacks; STACK_PCPUS],
}

/// Guard pages of one pCPU: its main stack's and its IST stacks'.
const GUARDS_PER_PCPU: usize = 1 + IST_SLOTS;
/// Number of guard pages in a [`StackArea`].
pub const GUARD_PAGES: usize = GUARDS_PER_PCPU * STACK_PCPUS;

const GUARDED_MAIN: usize = size_of::<GuardedStack<BOOT_STACK_BYTES>>();
const GUARDED_IST: usize = size_of::<GuardedStack<IST_STACK_BYTES>>();
/// Bytes between two pCPUs' stacks.
const PCPU_STRIDE: usize = size_of::<PcpuStacks>();

// Each stack starts right after its guard and fills whole pages, so
// the next guard follows its top directly.
const _: () = assert!(
    BOOT_STACK_BYTES.is_multiple_of(PAGE_SIZE) && IST_STACK_BYTES.is_multiple_of(PAGE_SIZE)
);
const _: () = assert!(offset_of!(GuardedStack<IST_STACK_BYTES>, stack) == PAGE_SIZE);
const _: () = assert!(GUARDED_IST == PAGE_SIZE + IST_STACK_BYTES);
const _: () = assert!(PCPU_STRIDE == GUARDED_MAIN + IST_SLOTS * GUARDED_IST);

impl StackArea {
    /// An all-zero area (for a `static` in .bss).
    pub const fn new() -> Self {
        const fn guarded<const N: usize>() -> GuardedStack<N> {
            GuardedStack {
                guard: GuardPage([0; PAGE_SIZE]),
                stack: [0; N],
            }
        }
        StackArea {
            pcpus: [const {
                PcpuStacks {
                    main: guarded(),
                    ist: [const { guarded() }; IST_SLOTS],
                }
            }; STACK_PCPUS],
        }
    }

    /// Offset of the boot stack's top (one past its last byte): pCPU 0's
    /// main stack.
    pub const BOOT_STACK_TOP: usize = Self::main_top(0);

    /// Offset of the top of pCPU `cpu`'s main stack.
    pub const fn main_top(cpu: usize) -> usize {
        cpu * PCPU_STRIDE + GUARDED_MAIN
    }

    /// Offset of the top of IST stack `slot` of pCPU `cpu`.
    pub const fn ist_top(cpu: usize, slot: usize) -> usize {
        cpu * PCPU_STRIDE + GUARDED_MAIN + (slot + 1) * GUARDED_IST
    }

    /// The pCPU whose stacks hold the byte at `offset` from the area's
    /// start (a stack pointer below its stack's top), if any.
    pub const fn pcpu_of_offset(offset: usize) -> Option<usize> {
        if offset < size_of::<StackArea>() {
            Some(offset / PCPU_STRIDE)
        } else {
            None
        }
    }

    /// Offsets of the guard pages, lowest first.
    pub fn guard_offsets() -> [usize; GUARD_PAGES] {
        let mut offsets = [0; GUARD_PAGES];
        for (i, offset) in offsets.iter_mut().enumerate() {
            let (cpu, stack) = (i / GUARDS_PER_PCPU, i % GUARDS_PER_PCPU);
            *offset = match stack {
                0 => cpu * PCPU_STRIDE,
                ist => cpu * PCPU_STRIDE + GUARDED_MAIN + (ist - 1) * GUARDED_IST,
            };
        }
        offsets
    }
}

impl Default for StackArea {
    fn default() -> Self {
        Self::new()
    }
}

/// Entries in a page table (or page directory).
pub const ENTRIES: usize = 512;
/// Page-table entry bits kept when a 2 MiB page becomes 512 4 KiB ones:
/// present, writable, user, write-through, cache-disable, and NX.
const INHERITED: u64 = 0x1f | (1 << 63);
/// A page directory entry's PS bit: it maps 2 MiB itself.
pub const LARGE: u64 = 1 << 7;
/// Address bits of a 2 MiB mapping.
const LARGE_ADDRESS: u64 = 0x000f_ffff_ffe0_0000;

/// The 4 KiB entries that map what the 2 MiB page directory entry `pde`
/// maps, with the same permissions, except pages `guards` (offsets
/// within the 2 MiB page), which are left not present. `None` if `pde`
/// is not a present 2 MiB mapping.
pub fn split_large_page(pde: u64, guards: &[u64]) -> Option<[u64; ENTRIES]> {
    if pde & 1 == 0 || pde & LARGE == 0 {
        return None;
    }
    let base = pde & LARGE_ADDRESS;
    let flags = pde & INHERITED;
    let mut table = [0u64; ENTRIES];
    for (i, entry) in table.iter_mut().enumerate() {
        let offset = (i * PAGE_SIZE) as u64;
        if !guards.contains(&offset) {
            *entry = (base + offset) | flags;
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_has_its_guard_right_below() {
        let guards = StackArea::guard_offsets();
        assert_eq!(guards[0], 0);
        assert_eq!(StackArea::BOOT_STACK_TOP, PAGE_SIZE + BOOT_STACK_BYTES);
        for cpu in 0..STACK_PCPUS {
            let first = cpu * GUARDS_PER_PCPU;
            let main_top = StackArea::main_top(cpu);
            assert_eq!(main_top - BOOT_STACK_BYTES, guards[first] + PAGE_SIZE);
            // The first IST guard sits right on top of the main stack.
            assert_eq!(guards[first + 1], main_top, "cpu {cpu}");
            for slot in 0..IST_SLOTS {
                let top = StackArea::ist_top(cpu, slot);
                let guard = guards[first + 1 + slot];
                assert_eq!(top - IST_STACK_BYTES, guard + PAGE_SIZE, "{cpu} {slot}");
            }
        }
        assert!(guards.windows(2).all(|w| w[0] < w[1]));
        for g in guards {
            assert_eq!(g % PAGE_SIZE, 0);
        }
        let last = StackArea::ist_top(STACK_PCPUS - 1, IST_SLOTS - 1);
        assert_eq!(last, size_of::<StackArea>());
        assert_eq!(core::mem::align_of::<StackArea>(), PAGE_SIZE);
    }

    #[test]
    fn a_stack_pointer_names_its_pcpu() {
        for cpu in 0..STACK_PCPUS {
            let below_main_top = StackArea::main_top(cpu) - 8;
            assert_eq!(StackArea::pcpu_of_offset(below_main_top), Some(cpu));
            let below_ist_top = StackArea::ist_top(cpu, IST_SLOTS - 1) - 8;
            assert_eq!(StackArea::pcpu_of_offset(below_ist_top), Some(cpu));
            let main_bottom = StackArea::main_top(cpu) - BOOT_STACK_BYTES;
            assert_eq!(StackArea::pcpu_of_offset(main_bottom), Some(cpu));
        }
        assert_eq!(StackArea::pcpu_of_offset(size_of::<StackArea>()), None);
    }

    #[test]
    fn split_keeps_every_page_but_the_guards() {
        let pde = 0x0020_0000 | LARGE | 0x3;
        let table = split_large_page(pde, &[0x5000, 0x1ff000]).unwrap();
        assert_eq!(table[0], 0x20_0003);
        assert_eq!(table[4], 0x20_4003);
        assert_eq!(table[5], 0, "guard");
        assert_eq!(table[6], 0x20_6003);
        assert_eq!(table[511], 0, "guard");
        assert_eq!(table.iter().filter(|e| **e == 0).count(), 2);
    }

    #[test]
    fn split_carries_nx_and_refuses_small_or_absent_entries() {
        let nx = 1 << 63;
        let table = split_large_page(0x4000_0000 | LARGE | nx | 0x3, &[]).unwrap();
        assert_eq!(table[1], 0x4000_1000 | nx | 0x3);
        assert_eq!(split_large_page(0x5000 | 0x3, &[]), None);
        assert_eq!(split_large_page(0x20_0000 | LARGE, &[]), None);
    }
}
