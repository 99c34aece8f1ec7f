//! `spin` (issue 16, scenarios smp-spin and smp-share): every vCPU is
//! CPU-bound. `vcpus=N` (default 1; the shim starts at most 8) starts
//! vCPUs 1..N; each spins with interrupts off, never yielding or
//! halting (only the hypervisor's timer preemption lets others run), and
//! counts its own iterations. No PAUSE in the loop: TCG ends its
//! translation block on one, which would make the loop a QEMU exit per
//! iteration.
//!
//! Output (through whichever console the command line chooses):
//! `spin: vCPU <v> started`, then every `period=P` iterations (default
//! 2^24) `spin: vCPU <v> progress <n> (<iterations> iterations)`, `n`
//! counting 1, 2, ... A vCPU's progress lines come only after every vCPU
//! of its domain started, so a progress line means its siblings run too.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use guest_pv_shim::{println, ApBoot, Boot, ShutdownReason};

    const DEFAULT_PERIOD: u64 = 1 << 24;

    /// vCPUs that printed their `started` line.
    static STARTED: AtomicU32 = AtomicU32::new(0);
    /// vCPUs the domain runs (set by vCPU 0 before it starts the others).
    static VCPUS: AtomicU32 = AtomicU32::new(1);
    /// Iterations between progress lines.
    static PERIOD: AtomicU64 = AtomicU64::new(DEFAULT_PERIOD);

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let vcpus = start_info
            .cmdline_arg("vcpus")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let period = start_info
            .cmdline_arg("period")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(DEFAULT_PERIOD);
        if vcpus == 0 || period == 0 {
            println!("spin: need vcpus >= 1 and period > 0");
            xen.shutdown(ShutdownReason::Crash)
        }
        VCPUS.store(vcpus, Ordering::SeqCst);
        PERIOD.store(period, Ordering::SeqCst);
        for id in 1..vcpus {
            if let Err(e) = xen.vcpu_start(id, secondary) {
                println!("spin: vCPU {id} failed to start: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
        spin(0)
    }

    fn secondary(boot: ApBoot) -> ! {
        spin(boot.vcpu_id)
    }

    /// Announces this vCPU, waits (spinning) until every vCPU of the
    /// domain did, then counts iterations for ever.
    fn spin(vcpu: u32) -> ! {
        println!("spin: vCPU {vcpu} started");
        STARTED.fetch_add(1, Ordering::SeqCst);
        let vcpus = VCPUS.load(Ordering::SeqCst);
        while STARTED.load(Ordering::SeqCst) < vcpus {
            core::hint::spin_loop();
        }
        let period = PERIOD.load(Ordering::SeqCst);
        let mut iterations: u64 = 0;
        let mut reports: u64 = 0;
        loop {
            // black_box: the compiler may not fold the loop away.
            iterations = core::hint::black_box(iterations) + 1;
            if iterations.is_multiple_of(period) {
                reports += 1;
                println!("spin: vCPU {vcpu} progress {reports} ({iterations} iterations)");
            }
        }
    }
}
