//! The hypervisor's stacks and the unmapped guard pages below them.
//!
//! One page-aligned block holds the boot stack and every pCPU's IST
//! stacks (double fault, NMI, machine check), each directly above a
//! 4 KiB guard page. The arch layer maps the block with 4 KiB pages and
//! leaves the guards out ([`split_large_page`]), so running off the
//! bottom of a stack is a page fault instead of a silent write into
//! whatever lies below (the boot page tables, before this existed). The
//! page fault cannot be delivered on the overflowed stack either, so the
//! CPU raises #DF, whose handler runs on its own IST stack and ends the
//! machine with a `FATAL:` line.

use core::mem::{offset_of, size_of};

use super::PAGE_SIZE;

/// Size of the boot stack (the run loop and every hypercall run on it).
pub const BOOT_STACK_BYTES: usize = 256 * 1024;
/// Size of each IST stack.
pub const IST_STACK_BYTES: usize = 16 * 1024;
/// IST slots per pCPU: #DF, NMI, #MC.
pub const IST_SLOTS: usize = 3;
/// pCPUs with stacks (one until SMP bring-up).
pub const STACK_PCPUS: usize = 1;

/// A 4 KiB page that is never mapped.
#[repr(C, align(4096))]
pub struct GuardPage([u8; PAGE_SIZE]);

/// A stack of `N` bytes with its guard page directly below.
#[repr(C, align(4096))]
pub struct GuardedStack<const N: usize> {
    guard: GuardPage,
    stack: [u8; N],
}

/// Every stack of the hypervisor, in one block.
#[repr(C, align(4096))]
pub struct StackArea {
    boot: GuardedStack<BOOT_STACK_BYTES>,
    ist: [[GuardedStack<IST_STACK_BYTES>; IST_SLOTS]; STACK_PCPUS],
}

/// Number of guard pages in a [`StackArea`].
pub const GUARD_PAGES: usize = 1 + IST_SLOTS * STACK_PCPUS;

const GUARDED_IST: usize = size_of::<GuardedStack<IST_STACK_BYTES>>();

// Each stack starts right after its guard and fills whole pages, so
// the next guard follows its top directly.
const _: () = assert!(
    BOOT_STACK_BYTES.is_multiple_of(PAGE_SIZE) && IST_STACK_BYTES.is_multiple_of(PAGE_SIZE)
);
const _: () = assert!(offset_of!(GuardedStack<IST_STACK_BYTES>, stack) == PAGE_SIZE);
const _: () = assert!(GUARDED_IST == PAGE_SIZE + IST_STACK_BYTES);

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
            boot: guarded(),
            ist: [const { [const { guarded() }; IST_SLOTS] }; STACK_PCPUS],
        }
    }

    /// Offset of the boot stack's top (one past its last byte).
    pub const BOOT_STACK_TOP: usize =
        offset_of!(StackArea, boot) + size_of::<GuardedStack<BOOT_STACK_BYTES>>();

    /// Offset of the top of IST stack `slot` of pCPU `cpu`.
    pub const fn ist_top(cpu: usize, slot: usize) -> usize {
        offset_of!(StackArea, ist) + (cpu * IST_SLOTS + slot + 1) * GUARDED_IST
    }

    /// Offsets of the guard pages, lowest first.
    pub fn guard_offsets() -> [usize; GUARD_PAGES] {
        let mut offsets = [offset_of!(StackArea, boot); GUARD_PAGES];
        for (i, offset) in offsets[1..].iter_mut().enumerate() {
            *offset = offset_of!(StackArea, ist) + i * GUARDED_IST;
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
        // The first IST guard sits right on top of the boot stack.
        assert_eq!(guards[1], StackArea::BOOT_STACK_TOP);
        for slot in 0..IST_SLOTS {
            let top = StackArea::ist_top(0, slot);
            let guard = guards[1 + slot];
            assert_eq!(top - IST_STACK_BYTES, guard + PAGE_SIZE, "slot {slot}");
        }
        for g in guards {
            assert_eq!(g % PAGE_SIZE, 0);
        }
        assert_eq!(StackArea::ist_top(0, IST_SLOTS - 1), size_of::<StackArea>());
        assert_eq!(core::mem::align_of::<StackArea>(), PAGE_SIZE);
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
