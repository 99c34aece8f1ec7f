//! `xswatch` (issue 11): a guest's watch fires when dom0 changes a key.
//! Command line `key=PATH` (default `data/watched`, relative to the
//! domain's home) and `changes=N` (default 1). Watches the key and
//! prints each event as `xswatch: event path=<path> value=<value>`
//! (`value=<ENOENT>` when the node is absent, as at registration), then
//! `xswatch: ready` once the registration event came; after N events
//! with a non-empty value, `xswatch: done after N changes`; poweroff.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::{Client, Tx, WatchEvent, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// Events seen, and events with a non-empty value.
    static EVENTS: AtomicU32 = AtomicU32::new(0);
    static CHANGES: AtomicU32 = AtomicU32::new(0);

    fn on_event(xs: &mut Client<StoreRing>, event: &WatchEvent<'_>) {
        EVENTS.fetch_add(1, Ordering::Relaxed);
        match xs.read_str(Tx::NONE, event.path) {
            Ok(value) => {
                println!("xswatch: event path={} value={value}", event.path);
                if !value.is_empty() {
                    CHANGES.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(XenbusError::Store(e)) => {
                println!("xswatch: event path={} value=<{e}>", event.path)
            }
            Err(e) => println!("xswatch: event path={}: {e}", event.path),
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xswatch: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let key = start_info.cmdline_arg("key").unwrap_or("data/watched");
        let wanted: u32 = start_info
            .cmdline_arg("changes")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        if let Err(e) = xs.watch(key, on_event) {
            println!("xswatch: watch {key} failed: {e}");
            xen.shutdown(ShutdownReason::Crash)
        }
        let mut ready = false;
        while CHANGES.load(Ordering::Relaxed) < wanted {
            if let Err(e) = xs.wait_for_events() {
                println!("xswatch: waiting failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
            if !ready && EVENTS.load(Ordering::Relaxed) > 0 {
                ready = true;
                println!("xswatch: ready");
            }
        }
        println!("xswatch: done after {wanted} changes");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
