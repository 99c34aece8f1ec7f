//! `demo`: the guest `cargo xtask run` creates with `dom0ctl`. It greets,
//! then prints `demo: tick <n>` every `period_ms=N` (default 500) ms of
//! system time, sleeping in between ([`Events::wait_any`]: a timer and
//! SCHEDOP_block/poll, with the upcall taking the console's events, so no
//! busy wait), for `ticks=N` ticks (default: forever), then powers off.
//! A paused domain's count stands still, so pause/unpause show in its
//! console; many of them idle cheaply.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::xen::errno::Errno;
    use guest_pv_shim::{println, Boot, Events, ShutdownReason, XenError};

    const DEFAULT_PERIOD_MS: u64 = 500;
    const NS_PER_MS: u64 = 1_000_000;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        println!("demo: Hello from a PVH domain built by dom0's toolstack!");
        let period_ns = start_info
            .cmdline_arg("period_ms")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .unwrap_or(DEFAULT_PERIOD_MS)
            .saturating_mul(NS_PER_MS);
        let ticks = start_info
            .cmdline_arg("ticks")
            .and_then(|n| n.parse::<u64>().ok());
        let result = Events::init(&xen).and_then(|events| tick(&events, period_ns, ticks));
        match result {
            Ok(()) => xen.shutdown(ShutdownReason::Poweroff),
            Err(e) => {
                println!("demo: failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
    }

    /// Prints a numbered line every `period_ns`, `ticks` times (or forever).
    fn tick(events: &Events, period_ns: u64, ticks: Option<u64>) -> Result<(), XenError> {
        let mut n = 0u64;
        while ticks.is_none_or(|limit| n < limit) {
            // The pvclock never read consistently: try again later.
            let now = events.now().ok_or(XenError(Errno::EAGAIN.to_return()))?;
            // No ports: a pure sleep until the deadline.
            events.wait_any(&[], Some(now.saturating_add(period_ns)))?;
            n += 1;
            println!("demo: tick {n}");
        }
        println!("demo: done after {n} ticks");
        Ok(())
    }
}
