//! `ticker`: `ticks=N` (default 5) numbered lines with the vCPU's system
//! time from the shared-info page, alternating SCHEDOP_yield and one-shot
//! timers with SCHEDOP_block; then powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::{println, ticker, Boot, ShutdownReason};

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let ticks = start_info.cmdline_arg("ticks").and_then(|n| n.parse().ok());
        let reason = match xen.map_shared_info() {
            Ok(shared) => {
                let clock = shared.clock(0).expect("vCPU 0 has a slot in shared info");
                match ticker::run(&xen, &clock, "", ticks.unwrap_or(ticker::DEFAULT_TICKS)) {
                    Ok(true) => ShutdownReason::Poweroff,
                    Ok(false) | Err(_) => ShutdownReason::Crash,
                }
            }
            Err(e) => {
                println!("ticker: map shared info failed: {e}");
                ShutdownReason::Crash
            }
        };
        xen.shutdown(reason)
    }
}
