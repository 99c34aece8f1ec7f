//! `xsbench` (issue 11): store path lengths for `cargo xtask bench`, with
//! the TSC counting instructions (QEMU under `-icount shift=0,sleep=off`):
//! each figure is every instruction the machine ran (guest, xen-core and
//! dom0's store) between the two TSC reads, the median of `rounds=N`
//! (default 200) samples minus the cost of reading the TSC.
//!
//! - `xs-read`: one `XS_READ` round trip of a key of the guest's own
//!   subtree (request on the ring, event to dom0, dom0's store serves it,
//!   event back, the guest wakes and takes the reply).
//! - `xs-watch-fire`: from sending an `XS_WRITE` of a watched key until
//!   the watch's callback runs in the guest (the store queues the
//!   `XS_WATCH_EVENT` before the write's reply, so this is the write's
//!   round trip plus the event's delivery and dispatch).
//!
//! Output: `pathlen: <name> <instructions>` per figure (the format
//! `cargo xtask bench` gathers), then `pathlen: done`; poweroff. A store
//! error: `xsbench: <what> failed: <error>` and a crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use guest_pv_shim::arch::cpu::rdtsc;
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::{Client, Tx, WatchEvent, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason, Xen};

    const DEFAULT_ROUNDS: usize = 200;
    /// The most samples one figure keeps (the median needs them all).
    const MAX_ROUNDS: usize = 1024;
    /// Round trips before sampling: caches, TLB and dom0's paths warm.
    const WARM_UP: usize = 8;
    /// The key read back (in the guest's own `data/`, which it may write).
    const READ_KEY: &str = "data/xsbench/read";
    /// The watched key.
    const WATCH_KEY: &str = "data/xsbench/watched";

    /// TSC when the watch callback last ran (0: not since reset).
    static FIRED_AT: AtomicU64 = AtomicU64::new(0);

    fn on_watch(_: &mut Client<StoreRing>, event: &WatchEvent<'_>) {
        if event.path.ends_with(WATCH_KEY) {
            FIRED_AT.store(rdtsc(), Ordering::Relaxed);
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let rounds = start_info
            .cmdline_arg("rounds")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS)
            .clamp(1, MAX_ROUNDS);
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xsbench: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let mut samples = [0u64; MAX_ROUNDS];
        let samples = &mut samples[..rounds];
        let overhead = median(samples, || {
            let start = rdtsc();
            Ok(rdtsc().wrapping_sub(start))
        })
        .unwrap_or(0);
        let figures = measure(&mut xs, samples);
        match figures {
            Ok((read, fire)) => {
                println!("pathlen: xs-read {}", read.saturating_sub(overhead));
                println!("pathlen: xs-watch-fire {}", fire.saturating_sub(overhead));
                println!("pathlen: done");
                xen.shutdown(ShutdownReason::Poweroff)
            }
            Err((what, e)) => fail(&xen, what, e),
        }
    }

    fn fail(xen: &Xen, what: &str, e: XenbusError) -> ! {
        println!("xsbench: {what} failed: {e}");
        xen.shutdown(ShutdownReason::Crash)
    }

    /// The two medians, in TSC ticks (overhead not yet taken off).
    fn measure(
        xs: &mut Client<StoreRing>,
        samples: &mut [u64],
    ) -> Result<(u64, u64), (&'static str, XenbusError)> {
        xs.write(Tx::NONE, READ_KEY, b"x")
            .map_err(|e| ("write", e))?;
        let read = median(samples, || {
            let start = rdtsc();
            xs.read(Tx::NONE, READ_KEY)?;
            Ok(rdtsc().wrapping_sub(start))
        })
        .map_err(|e| ("read", e))?;
        xs.watch(WATCH_KEY, on_watch).map_err(|e| ("watch", e))?;
        // The registration's own event.
        xs.dispatch_events().map_err(|e| ("dispatch", e))?;
        let fire = median(samples, || {
            FIRED_AT.store(0, Ordering::Relaxed);
            let start = rdtsc();
            xs.write(Tx::NONE, WATCH_KEY, b"1")?;
            while FIRED_AT.load(Ordering::Relaxed) == 0 {
                xs.wait_for_events()?;
            }
            Ok(FIRED_AT.load(Ordering::Relaxed).wrapping_sub(start))
        })
        .map_err(|e| ("watch firing", e))?;
        Ok((read, fire))
    }

    /// The median of `op`'s measured ticks over `samples.len()` runs.
    fn median(
        samples: &mut [u64],
        mut op: impl FnMut() -> Result<u64, XenbusError>,
    ) -> Result<u64, XenbusError> {
        for _ in 0..WARM_UP {
            op()?;
        }
        for sample in samples.iter_mut() {
            *sample = op()?;
        }
        samples.sort_unstable();
        Ok(samples[samples.len() / 2])
    }
}
