//! From the PVH entry stub to a booted hypervisor: CPU tables, log, start
//! info, frame allocator, heap, boot bundle. Each step that can fail on its
//! input ends the machine with a `FATAL:` line, never a hang.

use abi::bundle::{Bundle, BundleEntry, ImageKind};
use abi::debug_exit::EXIT_POWEROFF;

use super::fatal::{exit, fatal};
use super::mem::{image, BootReader, IdentityMap, FRAMES};
use super::{cpu, heap, serial};
use crate::boot_info::{BootInfo, MemKind};
use crate::mm::FramePool;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

/// Called by `boot.S` in long mode with the identity map and boot stack,
/// interrupts off.
#[no_mangle]
extern "C" fn rust_entry(start_info_pa: u32) -> ! {
    serial::init();
    cpu::init_boot_cpu();
    log::info!(
        "xen-core {}: Xen guest ABI {}.{} subset, control ABI {}.{}",
        env!("CARGO_PKG_VERSION"),
        abi::xen::version::XEN_VERSION_MAJOR,
        abi::xen::version::XEN_VERSION_MINOR,
        abi::control::CONTROL_ABI_MAJOR,
        abi::control::CONTROL_ABI_MINOR,
    );
    let info = BootInfo::parse(&BootReader, u64::from(start_info_pa))
        .unwrap_or_else(|e| fatal(format_args!("start info rejected: {e}")));
    serial::set_level(info.cmdline_option("loglvl"));
    log_memory(&info);
    if info.modules().is_empty() {
        fatal(format_args!(
            "no boot module: pass the boot bundle with -initrd"
        ));
    }
    for (index, module) in info.modules().iter().enumerate() {
        log::info!(
            "boot module {index}: {} bytes at {:#x}",
            module.len(),
            module.start
        );
    }
    init_frames(&info);
    heap::init().unwrap_or_else(|e| fatal(format_args!("no memory for the heap: {e}")));
    let phys =
        IdentityMap::take(&info).unwrap_or_else(|| fatal(format_args!("identity map taken twice")));
    let bundle_bytes = phys
        .boot_module(&info, 0)
        .unwrap_or_else(|| fatal(format_args!("boot module 0 is not mapped")));
    let bundle = Bundle::parse(bundle_bytes)
        .unwrap_or_else(|e| fatal(format_args!("boot bundle rejected: {e}")));
    log_bundle(&bundle);
    let free = FRAMES.lock().free_frames();
    log::info!("frames: {free} free ({} KiB)", free * 4);
    log::info!("heap: {} KiB", heap::size() / 1024);
    log::info!("xen-core: boot complete");
    exit(EXIT_POWEROFF)
}

fn log_memory(info: &BootInfo) {
    for region in info.memmap() {
        let r = region.range;
        log::info!("  [{:#018x}-{:#018x}] {}", r.start, r.end - 1, region.kind);
    }
    let ram_regions = info
        .memmap()
        .iter()
        .filter(|r| r.kind == MemKind::Ram)
        .count();
    let usable: u64 = info.ram().map(|r| r.len()).sum();
    log::info!(
        "memory: {} KiB usable in {ram_regions} RAM regions",
        usable / 1024
    );
}

fn init_frames(info: &BootInfo) {
    let report = FRAMES.lock().init(info.ram(), info.reserved(image()));
    if report.ignored_bytes > 0 {
        log::warn!(
            "{} KiB of RAM above {} GiB ignored",
            report.ignored_bytes / 1024,
            crate::mm::frame::MAX_PHYS_MEM >> 30
        );
    }
}

fn log_bundle(bundle: &Bundle) {
    log::info!("bundle: {} images", bundle.image_count());
    for (index, entry) in bundle.entries().enumerate() {
        log_image(index, &entry);
    }
}

fn log_image(index: usize, entry: &BundleEntry) {
    let kind = match entry.kind {
        ImageKind::Dom0Kernel => "dom0",
        ImageKind::DomUKernel => "domU",
    };
    log::info!(
        "  image {index}: {kind} \"{}\" {} bytes, {} MiB, cmdline \"{}\"",
        entry.name,
        entry.image.len(),
        entry.memory_mib,
        entry.cmdline
    );
}
