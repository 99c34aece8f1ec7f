//! `vcpuup`: brings up its second vCPU (VCPUOP_initialise in 64-bit mode,
//! VCPUOP_up); both count `ticks=N` (default 5) ticks of their own
//! system time, waiting with yields and their own one-shot timers. vCPU
//! 1 then takes itself down (VCPUOP_down); vCPU 0 waits until
//! VCPUOP_is_up says so and powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::xen::vcpu::{VCPUOP_DOWN, VCPUOP_IS_UP};
    use guest_pv_shim::ticker::{self, DEFAULT_TICKS};
    use guest_pv_shim::{println, ApBoot, Boot, Clock, ShutdownReason, Xen};

    /// vCPU 1's clock and tick count, from vCPU 0.
    static AP: spin::Once<(Clock, u32)> = spin::Once::new();

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let ticks = start_info.cmdline_arg("ticks").and_then(|n| n.parse().ok());
        let ticks = ticks.unwrap_or(DEFAULT_TICKS);
        let shared = match xen.map_shared_info() {
            Ok(s) => s,
            Err(e) => {
                println!("vcpuup: map shared info failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let (Some(clock0), Some(clock1)) = (shared.clock(0), shared.clock(1)) else {
            xen.shutdown(ShutdownReason::Crash)
        };
        AP.call_once(|| (clock1, ticks));
        match xen.vcpu_start(1, secondary) {
            Ok(()) => println!("vcpuup: vCPU 1 up"),
            Err(e) => {
                println!("vcpuup: vCPU 1 failed to start: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
        let ok = count(&xen, &clock0, "v0: ", ticks);
        while xen.vcpu_op_simple(VCPUOP_IS_UP, 1) == Ok(1) {
            let _ = xen.sched_yield();
        }
        println!("vcpuup: vCPU 1 is down again");
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    /// vCPU 1: its ticks, then down.
    fn secondary(boot: ApBoot) -> ! {
        let ApBoot { xen, vcpu_id } = boot;
        println!("vcpuup: vCPU {vcpu_id} running");
        let Some((clock, ticks)) = AP.get() else {
            xen.shutdown(ShutdownReason::Crash)
        };
        if !count(&xen, clock, "v1: ", *ticks) {
            xen.shutdown(ShutdownReason::Crash)
        }
        let _ = xen.vcpu_op_simple(VCPUOP_DOWN, vcpu_id);
        println!("vcpuup: vCPU {vcpu_id} still running after VCPUOP_down");
        xen.shutdown(ShutdownReason::Crash)
    }

    /// `ticks` ticks of `clock`, waiting by turns with a yield and with
    /// this vCPU's own timer and a block.
    fn count(xen: &Xen, clock: &Clock, prefix: &str, ticks: u32) -> bool {
        matches!(
            ticker::run_yield_and_block(xen, clock, prefix, ticks),
            Ok(true)
        )
    }
}
