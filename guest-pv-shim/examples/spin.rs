//! `spin` (issue 16, scenarios smp-spin, smp-share and smp-exits): every
//! vCPU is CPU-bound. `vcpus=N` (default 1; the shim starts at most 8)
//! starts vCPUs 1..N; each spins with interrupts off, never yielding or
//! halting (only the hypervisor's timer preemption lets others run), and
//! counts its own iterations. No PAUSE in the loop: TCG ends its
//! translation block on one, which would make the loop a QEMU exit per
//! iteration.
//!
//! `exit=port` or `exit=cpuid` (scenario smp-exits) adds one VM exit
//! that the hypervisor completes itself to each iteration: `port` an
//! `in al, dx` from port 0x80 (no device a domU is given: xen-core's
//! null handler reads all ones, Xen's `handle_pio`), `cpuid` CPUID leaf 0
//! (answered from the domain's CPUID policy). Both concern only the
//! vCPU that made them, so vCPUs of different domains may complete them
//! at the same time. A port read that is not all ones, or that faults,
//! crashes the domain (`spin: vCPU <v>: in from port 0x80 gave <r>`).
//! Without the option the loop makes no exit of its own. Any other
//! value is refused (`spin: exit= takes port or cpuid`, the domain
//! crashes).
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
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

    use guest_pv_shim::arch::{cpu, trap};
    use guest_pv_shim::{println, ApBoot, Boot, ShutdownReason, Xen};

    const DEFAULT_PERIOD: u64 = 1 << 24;
    /// The POST-code port: no device a domU is given, so the hypervisor
    /// answers an IN from it itself (all ones).
    const UNCLAIMED_PORT: u16 = 0x80;

    /// The exit each iteration makes (`exit=`), stored in [`EXIT`].
    #[derive(Clone, Copy)]
    #[repr(u8)]
    enum Exit {
        None = 0,
        Port = 1,
        Cpuid = 2,
    }

    impl Exit {
        fn from_u8(value: u8) -> Self {
            match value {
                1 => Self::Port,
                2 => Self::Cpuid,
                _ => Self::None,
            }
        }
    }

    /// vCPUs that printed their `started` line.
    static STARTED: AtomicU32 = AtomicU32::new(0);
    /// vCPUs the domain runs (set by vCPU 0 before it starts the others).
    static VCPUS: AtomicU32 = AtomicU32::new(1);
    /// Iterations between progress lines.
    static PERIOD: AtomicU64 = AtomicU64::new(DEFAULT_PERIOD);
    /// The [`Exit`] each iteration makes.
    static EXIT: AtomicU8 = AtomicU8::new(Exit::None as u8);

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
        let exit = match start_info.cmdline_arg("exit") {
            None => Exit::None,
            Some("port") => Exit::Port,
            Some("cpuid") => Exit::Cpuid,
            Some(_) => {
                println!("spin: exit= takes port or cpuid");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        VCPUS.store(vcpus, Ordering::SeqCst);
        PERIOD.store(period, Ordering::SeqCst);
        EXIT.store(exit as u8, Ordering::SeqCst);
        for id in 1..vcpus {
            if let Err(e) = xen.vcpu_start(id, secondary) {
                println!("spin: vCPU {id} failed to start: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
        spin(xen, 0)
    }

    fn secondary(boot: ApBoot) -> ! {
        spin(boot.xen, boot.vcpu_id)
    }

    /// Makes `exit`'s VM exit; a port read that is not the null
    /// handler's all ones crashes the domain.
    fn make_exit(xen: Xen, vcpu: u32, exit: Exit) {
        match exit {
            Exit::None => {}
            Exit::Port => match trap::probe_inb(UNCLAIMED_PORT) {
                Ok(0xff) => {}
                got => {
                    println!("spin: vCPU {vcpu}: in from port {UNCLAIMED_PORT:#x} gave {got:x?}");
                    xen.shutdown(ShutdownReason::Crash)
                }
            },
            Exit::Cpuid => {
                core::hint::black_box(cpu::cpuid(0));
            }
        }
    }

    /// Announces this vCPU, waits (spinning) until every vCPU of the
    /// domain did, then counts iterations for ever.
    fn spin(xen: Xen, vcpu: u32) -> ! {
        println!("spin: vCPU {vcpu} started");
        STARTED.fetch_add(1, Ordering::SeqCst);
        let vcpus = VCPUS.load(Ordering::SeqCst);
        while STARTED.load(Ordering::SeqCst) < vcpus {
            core::hint::spin_loop();
        }
        let period = PERIOD.load(Ordering::SeqCst);
        let exit = Exit::from_u8(EXIT.load(Ordering::SeqCst));
        let mut iterations: u64 = 0;
        let mut reports: u64 = 0;
        loop {
            make_exit(xen, vcpu, exit);
            // black_box: the compiler may not fold the loop away.
            iterations = core::hint::black_box(iterations) + 1;
            if iterations.is_multiple_of(period) {
                reports += 1;
                println!("spin: vCPU {vcpu} progress {reports} ({iterations} iterations)");
            }
        }
    }
}
