//! The xen-core hypervisor binary (bare metal only). The work starts in
//! `arch::x86_64::boot::rust_entry`, called by the PVH entry stub.
#![cfg_attr(target_os = "none", no_std, no_main)]
// Everything unsafe is in the library's `arch` module.
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
use xen_core as _;

/// A panic is a hypervisor bug: print it and stop the machine.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let message = info.message();
    match info.location() {
        Some(at) => xen_core::arch::x86_64::fatal::fatal(format_args!(
            "panic: {message} at {}:{}",
            at.file(),
            at.line()
        )),
        None => xen_core::arch::x86_64::fatal::fatal(format_args!("panic: {message}")),
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xen-core is a bare-metal hypervisor: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
