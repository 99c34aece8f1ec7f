//! The xen-core hypervisor binary (bare metal only).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use xen_core as _;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    xen_core::arch::x86_64::boot::early_puts("panic\n");
    xen_core::arch::x86_64::boot::debug_exit(1)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xen-core is a bare-metal hypervisor: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
