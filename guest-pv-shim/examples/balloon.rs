//! `balloon` (issue 15): a guest with the shim's balloon driver. It
//! watches `memory/target` and moves its reservation there in bounded
//! steps, printing each step and, once there,
//! `balloon: at target T KiB: current_reservation N frames (K KiB)` with
//! the hypervisor's count (`XENMEM_current_reservation`).
//!
//! Command line `hostile=1`: first tries `XENMEM_decrease_reservation` of
//! frames that are not its own RAM (its shared-info frame, a GFN past its
//! memory, a GFN beyond the p2m, dom0's frame, a domain that does not
//! exist) and prints `balloon: hostile NAME: N of 1 extents`; Xen gives
//! back none of them (0), and the domain goes on to balloon.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, Ordering};

    use abi::xen::domid::{DomId, DOMID_SELF};
    use abi::xen::PAGE_SHIFT;
    use guest_pv_shim::arch::reservation::balloon_region;
    use guest_pv_shim::arch::shared_info::shared_info_gfn;
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::balloon::{Balloon, Step, MEMORY_TARGET};
    use guest_pv_shim::xenbus::{Client, WatchEvent};
    use guest_pv_shim::{println, Boot, ShutdownReason, StartInfo, Xen};

    /// Set by the watch: `memory/target` may have changed.
    static TARGET_CHANGED: AtomicBool = AtomicBool::new(false);

    fn on_target(_: &mut Client<StoreRing>, _: &WatchEvent<'_>) {
        TARGET_CHANGED.store(true, Ordering::Relaxed);
    }

    fn crash(xen: &Xen, what: &str, e: impl core::fmt::Display) -> ! {
        println!("balloon: {what}: {e}");
        xen.shutdown(ShutdownReason::Crash)
    }

    pub fn main(boot: Boot) -> ! {
        let Boot {
            mut xen,
            start_info,
        } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("balloon: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        if start_info.cmdline_arg("hostile") == Some("1") {
            hostile(&xen, &start_info);
        }
        let current = xen
            .current_reservation()
            .unwrap_or_else(|e| crash(&xen, "current_reservation", e));
        let region = balloon_region(&start_info);
        println!(
            "balloon: region gfn {:#x}..{:#x}, holding {current} frames",
            region.start, region.end
        );
        let mut balloon = Balloon::new(region, current);
        if let Err(e) = xs.watch(MEMORY_TARGET, on_target) {
            crash(&xen, "watch memory/target", e)
        }
        loop {
            if let Err(e) = xs.wait_for_events() {
                crash(&xen, "waiting for the store", e)
            }
            while TARGET_CHANGED.swap(false, Ordering::Relaxed) {
                match balloon.read_target(&mut xs) {
                    Ok(Some(kib)) => {
                        println!("balloon: target {kib} KiB");
                        follow(&mut balloon, &mut xen, &mut xs, kib);
                    }
                    Ok(None) => println!("balloon: memory/target is not a number of KiB"),
                    Err(e) => crash(&xen, "reading memory/target", e),
                }
            }
        }
    }

    /// Steps towards the target, serving store events between steps: a
    /// new target ends this run (the caller starts the next).
    fn follow(balloon: &mut Balloon, xen: &mut Xen, xs: &mut Client<StoreRing>, kib: u64) {
        loop {
            let step = match balloon.step(xen) {
                Ok(step) => step,
                Err(e) => return println!("balloon: {e}"),
            };
            let held = balloon.current_pages();
            match step {
                Step::Decreased(n) => println!("balloon: gave back {n} frames, holding {held}"),
                Step::Increased(n) => println!("balloon: took back {n} frames, holding {held}"),
                Step::AtTarget => return at_target(xen, kib),
                Step::Full => return println!("balloon: full: holding {held} frames"),
                Step::Empty => return println!("balloon: empty: holding {held} frames"),
                Step::Retry(n) => {
                    return println!("balloon: the hypervisor gave {n} frames: holding {held}")
                }
            }
            if let Err(e) = xs.dispatch_events() {
                crash(xen, "serving the store", e)
            }
            if TARGET_CHANGED.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn at_target(xen: &Xen, kib: u64) {
        match xen.current_reservation() {
            Ok(n) => println!(
                "balloon: at target {kib} KiB: current_reservation {n} frames ({} KiB)",
                n * 4
            ),
            Err(e) => crash(xen, "current_reservation", e),
        }
    }

    /// Decreases of frames that are not this domain's RAM: Xen does none.
    fn hostile(xen: &Xen, start_info: &StartInfo) {
        let past_memory = (start_info.memmap_end() >> PAGE_SHIFT) + 0x100;
        let cases: [(&str, DomId, u64); 5] = [
            ("shared-info", DOMID_SELF, shared_info_gfn()),
            ("past-memory", DOMID_SELF, past_memory),
            ("beyond-p2m", DOMID_SELF, u64::MAX >> PAGE_SHIFT),
            ("dom0-frame", 0, 0x200),
            ("no-such-domain", 0x7fe0, 0x200),
        ];
        let before = xen.current_reservation();
        for (name, domid, gfn) in cases {
            match xen.decrease_reservation_of(domid, &[gfn]) {
                Ok(n) => println!("balloon: hostile {name}: {n} of 1 extents"),
                Err(e) => println!("balloon: hostile {name}: {e}"),
            }
        }
        let after = xen.current_reservation();
        let same = if before == after {
            "unchanged"
        } else {
            "CHANGED"
        };
        println!("balloon: hostile done: reservation {same}");
    }
}
