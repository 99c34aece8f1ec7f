//! `xsshutdown` (issue 11): a guest that reacts to `control/shutdown` as
//! Linux's `manage.c` does: advertises `control/feature-*`, watches
//! `control/shutdown`, and on "poweroff", "halt", "reboot" or "suspend"
//! acknowledges by writing "" and shuts down with the matching
//! `SCHEDOP_shutdown` reason. Prints `xsshutdown: watching
//! control/shutdown`, then `xsshutdown: control/shutdown asked <reason>:
//! acknowledged, shutting down`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::{Client, WatchEvent};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// The reason asked for, as its Xen code + 1 (0: none yet).
    static ASKED: AtomicU32 = AtomicU32::new(0);

    fn on_shutdown(xs: &mut Client<StoreRing>, _: &WatchEvent<'_>) {
        match xs.take_shutdown_request() {
            Ok(Some(reason)) => ASKED.store(reason.code() + 1, Ordering::Relaxed),
            Ok(None) => {}
            Err(e) => println!("xsshutdown: reading control/shutdown failed: {e}"),
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, .. } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xsshutdown: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        if let Err(e) = xs.watch_shutdown(on_shutdown) {
            println!("xsshutdown: watch failed: {e}");
            xen.shutdown(ShutdownReason::Crash)
        }
        println!("xsshutdown: watching control/shutdown");
        let reason = loop {
            let asked = ASKED.load(Ordering::Relaxed);
            if let Some(reason) = asked.checked_sub(1).and_then(ShutdownReason::from_code) {
                break reason;
            }
            if let Err(e) = xs.wait_for_events() {
                println!("xsshutdown: waiting failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        println!("xsshutdown: control/shutdown asked {reason}: acknowledged, shutting down");
        xen.shutdown(reason)
    }
}
