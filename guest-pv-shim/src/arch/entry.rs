//! From `shim_entry64` (long mode, identity map, IDT loaded) to the guest
//! kernel's main: find Xen, read the start info, hand both over.
//!
//! Without Xen (booted directly by QEMU `-kernel`, a debug aid only: this
//! checks the 32→64-bit entry, page tables and start-info parsing without
//! the hypervisor) the shim prints the start info and "xen not detected"
//! on COM1 and ends QEMU through isa-debug-exit.

use core::fmt::Write;

use super::cpu::{debug_exit, Com1, NoXenExit};
use super::hypercall::{self, DiscoveryError, ShutdownReason, Xen};
use super::phys::IdentityMap;
use crate::start_info::{StartInfo, StartInfoError, MAX_MEMMAP_ENTRIES};
use abi::xen::memory::E820Entry;
use abi::xen::start_info::HvmMemmapEntry;

/// What a guest kernel's main receives.
pub struct Boot {
    /// The hypercall interface (Xen was found, the hypercall page installed).
    pub xen: Xen,
    /// The checked start info.
    pub start_info: StartInfo,
}

/// Runs the guest kernel `main` (called by [`crate::guest_kernel!`]).
pub fn start(start_info_gpa: u32, main: fn(Boot) -> !) -> ! {
    let start_info = StartInfo::read(&IdentityMap, u64::from(start_info_gpa));
    match (Xen::discover(), start_info) {
        (Ok(xen), Ok(mut start_info)) => {
            if start_info.memmap().is_empty() {
                if let Err(e) = memmap_from_xen(&xen, &mut start_info) {
                    crate::println!("shim: no memory map in the start info, and {e}");
                    xen.shutdown(ShutdownReason::Crash)
                }
            }
            super::console_front::init(&xen, &start_info);
            main(Boot { xen, start_info })
        }
        (Ok(xen), Err(e)) => {
            crate::println!("shim: bad start info at {start_info_gpa:#x}: {e}");
            xen.shutdown(ShutdownReason::Crash)
        }
        (Err(DiscoveryError::PageNotFilled), _) => {
            let _ = writeln!(Com1, "shim: Xen did not fill the hypercall page");
            debug_exit(NoXenExit::Crash)
        }
        (Err(DiscoveryError::NotXen), start_info) => without_xen(start_info),
    }
}

/// A start info without memory map (Xen's PVH dom0 gets none) takes
/// `XENMEM_memory_map`'s, as Linux's PVH entry does.
fn memmap_from_xen(xen: &Xen, start_info: &mut StartInfo) -> Result<(), &'static str> {
    let mut e820 = [E820Entry::default(); MAX_MEMMAP_ENTRIES];
    let n = xen
        .memory_map(&mut e820)
        .map_err(|_| "XENMEM_memory_map failed")?;
    let entries = e820.iter().take(n).map(|e| HvmMemmapEntry {
        addr: e.addr,
        size: e.size,
        kind: e.kind,
        ..Default::default()
    });
    start_info
        .set_memmap(entries)
        .map_err(|_| "XENMEM_memory_map gave a bad region")?;
    if start_info.ram_end() == 0 {
        return Err("XENMEM_memory_map named no RAM");
    }
    Ok(())
}

fn without_xen(start_info: Result<StartInfo, StartInfoError>) -> ! {
    match start_info {
        Ok(si) => {
            let _ = writeln!(Com1, "shim: start info ok: {si}");
            let _ = writeln!(
                Com1,
                "shim: xen not detected; exiting through isa-debug-exit"
            );
            debug_exit(NoXenExit::XenNotDetected)
        }
        Err(e) => {
            let _ = writeln!(Com1, "shim: bad start info: {e}; xen not detected");
            debug_exit(NoXenExit::Crash)
        }
    }
}

/// Writes console output: the PV console ring if this domain has one,
/// else CONSOLEIO_write under Xen, else COM1.
pub fn console_write(bytes: &[u8]) {
    if !super::console_front::write(bytes) && !hypercall::console_write_raw(bytes) {
        super::cpu::com1_write(bytes);
    }
}

/// Ends the domain after a fatal error: SHUTDOWN_crash under Xen, else the
/// isa-debug-exit crash code.
pub fn crash() -> ! {
    if hypercall::installed() {
        hypercall::shutdown_raw(ShutdownReason::Crash);
        loop {
            super::cpu::halt();
        }
    }
    debug_exit(NoXenExit::Crash)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("shim: panic: {info}");
    crash()
}
