//! `heartbeat`: a bystander that runs until it is stopped, printing
//! `heartbeat: tick <i> system_time=<ns> wait=block-until` every
//! `period_ms=P` (default 1000) milliseconds of system time, so that its
//! output shows it kept running beside a misbehaving domain. Between
//! beats it sleeps (`Events::block_until`: a one-shot timer and
//! SCHEDOP_block, with events handled, so that pending ones cannot turn
//! the sleep into a spin). It prints through its PV console unless
//! `console=xen`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::{println, ticker, Boot, Events, ShutdownReason, Wake};

    /// Beat period when the command line has no `period_ms=P`.
    const DEFAULT_PERIOD_MS: u64 = 1000;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let period_ns = start_info
            .cmdline_arg("period_ms")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(DEFAULT_PERIOD_MS)
            .saturating_mul(1_000_000);
        let shared = match xen.map_shared_info() {
            Ok(shared) => shared,
            Err(e) => {
                println!("heartbeat: map shared info failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let clock = shared.clock(0).expect("vCPU 0 has a slot in shared info");
        let events = match Events::init(&xen) {
            Ok(events) => events,
            Err(e) => {
                println!("heartbeat: events: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        // u32::MAX beats: longer than any machine runs.
        let beats = ticker::run_with(
            &clock,
            "heartbeat: ",
            u32::MAX,
            |_| "block-until",
            |_, now| {
                // Other events (the console backend's) end a block early:
                // sleep again until the beat is due.
                let due = now.saturating_add(period_ns);
                while matches!(events.block_until(Some(due))?, Wake::Event) {}
                Ok(())
            },
        );
        xen.shutdown(match beats {
            Ok(true) => ShutdownReason::Poweroff,
            Ok(false) | Err(_) => ShutdownReason::Crash,
        })
    }
}
