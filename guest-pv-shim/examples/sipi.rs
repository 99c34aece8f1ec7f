//! `sipi`: starts its second vCPU as a PC does, through its local APIC:
//! the shim's real-mode trampoline copied below 1 MiB, INIT, STARTUP,
//! STARTUP (the second ignored). A STARTUP to an APIC id no vCPU has
//! must start nothing first. Both vCPUs count `ticks=N` ticks; vCPU 0
//! then INITs vCPU 1 (VCPUOP_is_up turns 0), restarts it the same way
//! in x2APIC mode, and vCPU 1 INITs itself; vCPU 0 sees it down and
//! powers off. Each step prints one line.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, Ordering};

    use abi::xen::vcpu::VCPUOP_IS_UP;
    use guest_pv_shim::arch::lapic::{self, *};
    use guest_pv_shim::arch::smp::ap_entries;
    use guest_pv_shim::ticker::{self, DEFAULT_TICKS};
    use guest_pv_shim::{println, ApBoot, Boot, Clock, ShutdownReason, Xen};

    /// Where the trampoline goes: STARTUP vector 0x08. The domU's RAM
    /// starts at 0 and its image at 1 MiB, so the page is free.
    const TRAMPOLINE_PAGE: u64 = 0x8000;
    /// vCPU 1's APIC id (Xen: 2 × vCPU id).
    const AP_APIC_ID: u32 = 2;
    /// Yields vCPU 0 waits for vCPU 1 to change state.
    const WAIT_YIELDS: u32 = 100_000;

    /// vCPU 1's clock and tick count, from vCPU 0.
    static AP: spin::Once<(Clock, u32)> = spin::Once::new();
    /// vCPU 1 counted its ticks.
    static AP_DONE: AtomicBool = AtomicBool::new(false);

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let ticks = start_info.cmdline_arg("ticks").and_then(|n| n.parse().ok());
        let ticks = ticks.unwrap_or(DEFAULT_TICKS);
        let fail = |what: &str| -> ! {
            println!("sipi: FAILED: {what}");
            xen.shutdown(ShutdownReason::Crash)
        };
        let Ok(shared) = xen.map_shared_info() else {
            fail("map shared info")
        };
        let (Some(clock0), Some(clock1)) = (shared.clock(0), shared.clock(1)) else {
            fail("clocks")
        };
        AP.call_once(|| (clock1, ticks));
        // A STARTUP to an APIC id no vCPU has starts nothing.
        if lapic::send_ipi(DM_STARTUP | 0x08, AP_APIC_ID + 2).is_err() || is_up(&xen) {
            fail("SIPI to APIC id 4")
        }
        println!("sipi: SIPI to APIC id 4 started nobody");
        if let Err(e) = xen.vcpu_start_sipi(1, counting, TRAMPOLINE_PAGE) {
            println!("sipi: start failed: {e:?}");
            fail("INIT-SIPI-SIPI")
        }
        println!(
            "sipi: vCPU 1 started by INIT-SIPI-SIPI (entries {})",
            ap_entries(1)
        );
        let ok = count(&xen, &clock0, "v0: ", ticks);
        if !ok || !wait(&xen, || AP_DONE.load(Ordering::Acquire)) {
            fail("ticks")
        }
        // INIT takes the running vCPU down into wait-for-SIPI.
        if lapic::send_ipi(DM_INIT | INT_LEVELTRIG | INT_ASSERT, AP_APIC_ID).is_err() || is_up(&xen)
        {
            fail("INIT of vCPU 1")
        }
        println!("sipi: INIT took vCPU 1 down");
        let x2apic = DEFAULT_BASE | BASE_ENABLE | BASE_EXTD;
        if wrmsr(MSR_APIC_BASE, x2apic).is_err() {
            fail("x2APIC mode")
        }
        if let Err(e) = xen.vcpu_start_sipi(1, self_init, TRAMPOLINE_PAGE) {
            println!("sipi: restart failed: {e:?}");
            fail("restart")
        }
        if !wait(&xen, || !is_up(&xen)) {
            fail("vCPU 1 still up after its self-INIT")
        }
        println!(
            "sipi: vCPU 1 INITed itself: down after {} entries",
            ap_entries(1)
        );
        xen.shutdown(ShutdownReason::Poweroff)
    }

    fn is_up(xen: &Xen) -> bool {
        xen.vcpu_op_simple(VCPUOP_IS_UP, 1) == Ok(1)
    }

    /// Yields until `done` holds (false if it never does).
    fn wait(xen: &Xen, done: impl Fn() -> bool) -> bool {
        (0..WAIT_YIELDS).any(|_| done() || xen.sched_yield().is_err())
    }

    /// vCPU 1, first start: its ticks, then it waits to be INITed.
    fn counting(boot: ApBoot) -> ! {
        let ApBoot { xen, vcpu_id } = boot;
        println!("sipi: vCPU {vcpu_id} running in long mode");
        let Some((clock, ticks)) = AP.get() else {
            xen.shutdown(ShutdownReason::Crash)
        };
        if !count(&xen, clock, "v1: ", *ticks) {
            xen.shutdown(ShutdownReason::Crash)
        }
        AP_DONE.store(true, Ordering::Release);
        loop {
            let _ = xen.sched_yield();
        }
    }

    /// vCPU 1, second start: an INIT to itself.
    fn self_init(boot: ApBoot) -> ! {
        let ApBoot { xen, vcpu_id } = boot;
        println!("sipi: vCPU {vcpu_id} restarted, INITs itself");
        let _ = lapic::send_ipi(DM_INIT | INT_LEVELTRIG | INT_ASSERT | DEST_SELF, 0);
        println!("sipi: vCPU {vcpu_id} still running after its self-INIT");
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
