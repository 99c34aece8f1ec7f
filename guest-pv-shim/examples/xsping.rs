//! `xsping` (issue 11): ordinary store traffic next to a hostile domain.
//! Command line `rounds=N` (default 20) and `releases=K` (default 0).
//! Each round writes `data/ping` = round number and reads it back,
//! printing `xsping: round <i> ok`; then `xsping: <N> rounds ok`. With
//! K > 0 it then watches `@releaseDomain` and, each time a domain is
//! released (e.g. a hostile one whose connection the store dropped),
//! runs one more round: `xsping: release <j>: round ok`. Ends with
//! `xsping: done`; poweroff. A wrong value read back: crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::{Client, Tx, WatchEvent, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// `@releaseDomain` events, the registration's included.
    static RELEASES: AtomicU32 = AtomicU32::new(0);

    fn on_release(_: &mut Client<StoreRing>, _: &WatchEvent<'_>) {
        RELEASES.fetch_add(1, Ordering::Relaxed);
    }

    fn round(xs: &mut Client<StoreRing>, i: u32) -> Result<bool, XenbusError> {
        let value = PathBuf::format(format_args!("{i}"))?;
        xs.write(Tx::NONE, "data/ping", value.as_str().as_bytes())?;
        Ok(xs.read(Tx::NONE, "data/ping")? == value.as_str().as_bytes())
    }

    fn run(xs: &mut Client<StoreRing>, rounds: u32, releases: u32) -> Result<bool, XenbusError> {
        for i in 1..=rounds {
            if !round(xs, i)? {
                return Ok(false);
            }
            println!("xsping: round {i} ok");
        }
        println!("xsping: {rounds} rounds ok");
        if releases == 0 {
            return Ok(true);
        }
        xs.watch("@releaseDomain", on_release)?;
        let mut seen = 1;
        while seen <= releases {
            xs.wait_for_events()?;
            while seen < RELEASES.load(Ordering::Relaxed) && seen <= releases {
                if !round(xs, rounds + seen)? {
                    return Ok(false);
                }
                println!("xsping: release {seen}: round ok");
                seen += 1;
            }
        }
        Ok(true)
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xsping: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let arg = |name, default| {
            start_info
                .cmdline_arg(name)
                .and_then(|n| n.parse().ok())
                .unwrap_or(default)
        };
        match run(&mut xs, arg("rounds", 20), arg("releases", 0)) {
            Ok(true) => {
                println!("xsping: done");
                xen.shutdown(ShutdownReason::Poweroff)
            }
            Ok(false) => println!("xsping: read back a different value"),
            Err(e) => println!("xsping: failed: {e}"),
        }
        xen.shutdown(ShutdownReason::Crash)
    }
}
