//! `pathlen`: measures hypervisor path lengths with the TSC, for `cargo
//! xtask bench` (QEMU under `-icount shift=0,sleep=off`, where the TSC
//! counts executed instructions, so each figure is exact and the same on
//! every run).
//!
//! `role=solo` (default) measures, each as the median of `rounds=N`
//! (default 1000) samples minus the cost of reading the TSC itself:
//! - `cpuid`: a CPUID exit round trip (handled inside the exit loop);
//! - `null-hypercall`: `XENVER_version`, the cheapest hypercall;
//! - `yield-alone`: `SCHEDOP_yield` with no other runnable vCPU.
//!
//! `role=switch`: two domains with this role yield to each other; each
//! sample is one `SCHEDOP_yield` that runs the other domain's yield in
//! between: `yield-switch` = two vCPU switches plus two yields.
//!
//! Output, one line per figure: `pathlen: <name> <instructions>`, then
//! `pathlen: done`; then the domain powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::cpu::{cpuid, rdtsc};
    use guest_pv_shim::{println, Boot, ShutdownReason, Xen};

    const DEFAULT_ROUNDS: usize = 1000;
    /// The most samples one figure keeps (the median needs them all).
    const MAX_ROUNDS: usize = 4096;
    /// Iterations before sampling: caches, TLB and the hypercall page warm.
    const WARM_UP: usize = 16;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let rounds = start_info
            .cmdline_arg("rounds")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS)
            .clamp(1, MAX_ROUNDS);
        let mut samples = [0u64; MAX_ROUNDS];
        let samples = &mut samples[..rounds];
        let overhead = median_of(samples, || {});
        let mut report = |name: &str, op: &mut dyn FnMut()| {
            let cost = median_of(samples, op).saturating_sub(overhead);
            println!("pathlen: {name} {cost}");
        };
        match start_info.cmdline_arg("role") {
            Some("switch") => report("yield-switch", &mut || yield_now(&xen)),
            _ => {
                report("cpuid", &mut || {
                    cpuid(0);
                });
                report("null-hypercall", &mut || {
                    let _ = xen.version();
                });
                report("yield-alone", &mut || yield_now(&xen));
            }
        }
        println!("pathlen: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }

    fn yield_now(xen: &Xen) {
        let _ = xen.sched_yield();
    }

    /// The median TSC delta of `op` over `samples.len()` runs.
    fn median_of(samples: &mut [u64], mut op: impl FnMut()) -> u64 {
        for _ in 0..WARM_UP {
            op();
        }
        for sample in samples.iter_mut() {
            let start = rdtsc();
            op();
            *sample = rdtsc().wrapping_sub(start);
        }
        samples.sort_unstable();
        samples[samples.len() / 2]
    }
}
