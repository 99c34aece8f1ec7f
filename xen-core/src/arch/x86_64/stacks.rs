//! The hypervisor's stacks ([`StackArea`]: each pCPU's main stack and IST
//! stacks, each above an unmapped guard page), the 4 KiB mapping that
//! leaves the guards out, and which pCPU a stack pointer belongs to.
//! `boot.S` starts on `boot_stack_top`, defined here.

use core::ptr::addr_of_mut;

use abi::convert::usize_from_u64;
use x86_64::instructions::tlb;

use super::fatal::fatal;
use crate::mm::stacks::{split_large_page, StackArea, ENTRIES, GUARD_PAGES};
use crate::mm::PAGE_SIZE;

/// Bytes one page directory entry maps.
const LARGE_PAGE: u64 = 2 << 20;
/// A StackArea spans at most this many 2 MiB pages (its size rounded up,
/// plus one when it does not start on a 2 MiB boundary).
const MAX_SPLIT: usize = core::mem::size_of::<StackArea>().div_ceil(usize_from_u64(LARGE_PAGE)) + 1;

/// The stacks. The CPU uses them through RSP and the TSS only; Rust
/// takes their addresses, never references.
#[link_section = ".bss.stacks"]
static mut STACKS: StackArea = StackArea::new();

#[repr(C, align(4096))]
struct PageTable([u64; ENTRIES]);

/// Page tables replacing the 2 MiB mappings that hold the stacks.
static mut GUARD_TABLES: [PageTable; MAX_SPLIT] = [const { PageTable([0; ENTRIES]) }; MAX_SPLIT];

core::arch::global_asm!(
    ".global boot_stack_top",
    ".set boot_stack_top, {stacks} + {top}",
    ".global stack_area",
    ".set stack_area, {stacks}",
    stacks = sym STACKS,
    top = const StackArea::BOOT_STACK_TOP,
);

extern "C" {
    /// boot.S's four page directories (identity map of the first 4 GiB,
    /// 2 MiB pages), entry `i` mapping `i << 21`.
    static mut boot_pd: [u64; 4 * ENTRIES];
}

/// Address of the stack area's first byte (identity-mapped: = HPA).
fn base() -> u64 {
    (&raw const STACKS) as u64
}

/// The top of IST stack `slot` of pCPU `cpu`, for its TSS.
pub fn ist_top(cpu: usize, slot: usize) -> u64 {
    base() + StackArea::ist_top(cpu, slot) as u64
}

/// The top of pCPU `cpu`'s main stack, where it starts.
pub fn main_top(cpu: usize) -> u64 {
    base() + StackArea::main_top(cpu) as u64
}

/// The pCPU running this code, from its stack pointer: every stack a
/// pCPU runs on (main or IST) lies in its own part of the area.
pub fn current_pcpu() -> usize {
    let rsp: u64;
    // SAFETY: reads RSP into a register; no memory or flags touched.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    let offset = rsp.wrapping_sub(base());
    match usize::try_from(offset)
        .ok()
        .and_then(StackArea::pcpu_of_offset)
    {
        Some(cpu) => cpu,
        None => fatal(format_args!("stacks: RSP {rsp:#x} is on no pCPU's stack")),
    }
}

/// Unmaps the guard pages: each 2 MiB page holding one is replaced by a
/// page table that maps the same frames with the same rights, the
/// guards left out. Called once, first thing in `rust_entry`.
pub fn install_guards() {
    let guards = StackArea::guard_offsets().map(|offset| base() + offset as u64);
    let mut split = 0;
    let mut large = guards[0] & !(LARGE_PAGE - 1);
    while large <= guards[GUARD_PAGES - 1] {
        let inside: heapless::Vec<u64, GUARD_PAGES> = guards
            .iter()
            .filter(|g| **g & !(LARGE_PAGE - 1) == large)
            .map(|g| g - large)
            .collect();
        if !inside.is_empty() {
            replace_large_page(large, &inside, split);
            split += 1;
        }
        large += LARGE_PAGE;
    }
    tlb::flush_all();
    log::info!(
        "stacks: {} KiB at {:#x}, {GUARD_PAGES} guard pages unmapped",
        core::mem::size_of::<StackArea>() / 1024,
        base()
    );
}

/// Points the directory entry of the 2 MiB page at `large` to page
/// table `slot`, mapping it all but the pages at offsets `guards`.
fn replace_large_page(large: u64, guards: &[u64], slot: usize) {
    let index = (large / LARGE_PAGE) as usize;
    // SAFETY: boot_pd is boot.S's page directory; nothing else writes it
    // after boot, and `index` < 2048 as the image lies below 4 GiB.
    let pde = unsafe { addr_of_mut!(boot_pd).cast::<u64>().add(index).read() };
    let Some(entries) = split_large_page(pde, guards) else {
        fatal(format_args!("stacks: {large:#x} is not a 2 MiB mapping"))
    };
    // SAFETY: slot < MAX_SPLIT (the area spans at most that many 2 MiB pages);
    // the table is ours alone and not in use yet.
    let table = unsafe { &raw mut GUARD_TABLES[slot] };
    // SAFETY: as above; writing the entries before the PDE points here.
    unsafe { (*table).0 = entries };
    let table_pa = table as u64;
    debug_assert_eq!(table_pa % PAGE_SIZE as u64, 0);
    // SAFETY: the new table maps every page the large entry mapped, to
    // the same frame with the same rights, except the guard pages, which
    // nothing may touch; the TLB is flushed by the caller.
    unsafe {
        addr_of_mut!(boot_pd)
            .cast::<u64>()
            .add(index)
            .write(table_pa | 0x3)
    };
}
