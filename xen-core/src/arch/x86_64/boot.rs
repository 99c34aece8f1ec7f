//! From the PVH entry stub to a booted hypervisor: CPU tables, log, start
//! info, frame allocator, heap, boot bundle. Each step that can fail on its
//! input ends the machine with a `FATAL:` line, never a hang.

use super::ecam::Ecam;
use super::fatal::fatal;
use super::firmware::IdentityAcpi;
use super::machine::Machine;
use super::mem::{image, BootReader, IdentityMap, FRAMES};
use super::prt::Router;
use super::{apic, cpu, firmware, heap, rtc, serial, smp, stacks, svm, tsc};
use crate::boot_info::{BootInfo, MemKind};
use crate::mm::FramePool;
use crate::pci::bars::forbidden_ranges;
use crate::pci::enumerate::MAX_PCI_FUNCTIONS;
use crate::pci::PciDevices;
use crate::platform::Platform;
use crate::time::{Clock, WallClock};
use abi::bundle::{Bundle, BundleEntry, ImageKind};
use acpi::AcpiTables;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

/// A boot milestone for `cargo xtask bench`: `bench: boot-NAME TSC` with
/// the `bench-trace` feature (the TSC counts instructions since QEMU
/// started under icount), nothing in any other build.
macro_rules! milestone {
    ($name:literal) => {
        #[cfg(feature = "bench-trace")]
        log::info!(concat!("bench: boot-", $name, " {}"), tsc::now());
    };
}

/// Called by `boot.S` in long mode with the identity map and boot stack,
/// interrupts off.
#[no_mangle]
extern "C" fn rust_entry(start_info_pa: u32) -> ! {
    serial::init();
    milestone!("entry");
    cpu::init_boot_cpu();
    log::info!(
        "xen-core {}: Xen guest ABI {}.{} subset, control ABI {}.{}",
        env!("CARGO_PKG_VERSION"),
        abi::xen::version::XEN_VERSION_MAJOR,
        abi::xen::version::XEN_VERSION_MINOR,
        abi::control::CONTROL_ABI_MAJOR,
        abi::control::CONTROL_ABI_MINOR,
    );
    stacks::install_guards();
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
    milestone!("memory");
    let phys =
        IdentityMap::take(&info).unwrap_or_else(|| fatal(format_args!("identity map taken twice")));
    let acpi = firmware::tables(info.rsdp());
    let platform = crate::platform::set(firmware::discover(acpi.as_ref()));
    platform.log();
    init_pci(platform, acpi.as_ref(), &info);
    milestone!("platform");
    let bundle_bytes = phys
        .boot_module(&info, 0)
        .unwrap_or_else(|| fatal(format_args!("boot module 0 is not mapped")));
    let bundle = Bundle::parse(bundle_bytes)
        .unwrap_or_else(|e| fatal(format_args!("boot bundle rejected: {e}")));
    log_bundle(&bundle);
    milestone!("bundle");
    let free = FRAMES.lock().free_frames();
    log::info!("frames: {free} free ({} KiB)", free * 4);
    log::info!("heap: {} KiB", heap::size() / 1024);
    svm::enable_this_cpu_or_die();
    let clock = init_clock();
    milestone!("clock");
    // Before the machine counts its free frames: each AP takes two (its
    // SVM host save area and host-state VMCB) for ever.
    smp::start_aps(platform, &info);
    let mut machine = Machine::new(phys, clock);
    machine.init_interrupts(platform);
    machine.build_boot_domains(&bundle);
    log::info!("xen-core: boot complete");
    milestone!("complete");
    machine.run()
}

/// Finds the PCI functions over ECAM, routes their INTx, logs them and
/// plans dom0's BAR mappings and I/O ports.
fn init_pci(platform: &'static Platform, acpi: Option<&AcpiTables<IdentityAcpi>>, info: &BootInfo) {
    let ecam = Ecam::new(platform);
    let (functions, dropped) = crate::pci::enumerate::enumerate(&ecam, platform.ecam_regions());
    if dropped > 0 {
        log::warn!("pci: {dropped} functions beyond the first {MAX_PCI_FUNCTIONS} ignored");
    }
    let mut devices = PciDevices::new(functions);
    let has_intx = devices.functions().iter().any(|f| f.interrupt_pin != 0);
    let mut router = acpi.filter(|_| has_intx).and_then(|t| Router::new(t, ecam));
    devices.route_intx(&ecam, |f| router.as_mut().and_then(|r| r.route(f)));
    devices.log();
    devices.plan_dom0_bars(&forbidden_ranges(info.memmap(), platform));
    svm::init_dom0_iopm(devices.dom0_ports());
    log::info!(
        "pci: {} I/O BARs passed through to dom0",
        devices.dom0_ports().len()
    );
    crate::pci::set(devices);
}

/// Calibrates the TSC and the local APIC timer (the scheduler's preemption
/// tick) and reads the wall clock for shared info.
fn init_clock() -> Clock {
    let tsc_hz = tsc::init();
    log::info!("tsc: {} MHz", tsc_hz / 1_000_000);
    let apic_hz = apic::init();
    log::info!("apic: timer {} ticks/ms", apic_hz / 1000);
    let sec = rtc::unix_seconds().unwrap_or_else(|e| {
        log::warn!("rtc: {e}; the wall clock starts at 1970");
        0
    });
    log::info!("rtc: {sec} s since 1970");
    Clock::new(tsc_hz, tsc::boot_tsc(), WallClock { sec, nsec: 0 })
        .unwrap_or_else(|| fatal(format_args!("clock: the TSC rate is 0")))
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
        ImageKind::Dom0Module => "dom0 module",
        ImageKind::DomUModule => "domU module",
    };
    log::info!(
        "  image {index}: {kind} \"{}\" {} bytes, {} MiB, cmdline \"{}\"",
        entry.name,
        entry.image.len(),
        entry.memory_mib,
        entry.cmdline
    );
}
