//! The guest library every guest kernel links (dom0 too): the PVH entry,
//! Xen discovery and the hypercall page, typed hypercalls, `print!` (PV
//! console or console_io), shared info and the pvclock, the event-channel
//! and grant-table clients, and the xenbus client ([`xenbus`]) that
//! talks to XenStore.
//!
//! A guest kernel is `guest_kernel!(main)` plus a `fn main(boot: Boot) -> !`
//! (see `examples/`). Portable parts (start-info parsing, CPUID scan,
//! version-guarded reads, line buffering) build and are tested on the
//! host; the rest exists only for `target_os = "none"`. `unsafe` is
//! confined to [`arch`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod balloon;
pub mod blkfront;
pub mod console;
pub mod cpuid;
pub mod error;
pub mod events;
pub mod grant;
pub mod net;
pub mod netfront;
pub mod page_bytes;
pub mod pvconsole;
pub mod seqlock;
pub mod start_info;
pub mod xenbus;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod arch;
#[cfg(target_os = "none")]
pub mod ticker;

#[cfg(target_os = "none")]
pub use arch::{
    entry::Boot,
    evtchn::{Events, PortStatus, Wake},
    gnttab::{CopySide, ForeignMapping, GrantOpError, Grants},
    hypercall::{ShutdownReason, Xen},
    netfront::Netfront,
    physdev::DeviceIrq,
    shared_info::{Clock, SharedInfo, WallClock},
    shared_page::SharedFrame,
    smp::ApBoot,
};
pub use error::XenError;
pub use start_info::StartInfo;

/// Prints to the console: the PV console ring if the domain has one, else
/// CONSOLEIO_write (COM1 before Xen is found).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::write_fmt_to($crate::arch::entry::console_write, format_args!($($arg)*))
    };
}

/// Prints a line to the console; see [`print!`].
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::print!("{}\n", format_args!($($arg)*)) };
}

/// Makes `main` (a `fn(Boot) -> !`) the guest kernel's entry. On the host
/// it defines a `main` that says the binary is a guest kernel, so the
/// examples build under `cargo test`.
#[macro_export]
macro_rules! guest_kernel {
    ($main:path) => {
        /// Called by the shim's PVH entry code in long mode.
        #[cfg(target_os = "none")]
        #[no_mangle]
        extern "C" fn shim_entry64(start_info_gpa: u32) -> ! {
            $crate::arch::entry::start(start_info_gpa, $main)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            ::std::eprintln!(
                "{} is a PVH guest kernel: build it for x86_64-unknown-none and boot it as a domain",
                ::core::env!("CARGO_CRATE_NAME")
            );
            ::std::process::exit(2);
        }
    };
}
