//! `xenpaths`: exactly the Xen paths a Xen PVH test kernel takes (XTF):
//! CPUID discovery, the hypercall page through the MSR (both done by the
//! shim at entry), HVM params, the shared-info mapping, console_io and
//! SCHEDOP_shutdown. One `xenpaths: <check>: ...` line per check, then
//! `xenpaths: SUCCESS` or `xenpaths: FAILURE (<n> checks failed)`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::xen::hvm::{HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_PFN};
    use guest_pv_shim::{println, Boot, ShutdownReason, Xen};

    pub fn main(boot: Boot) -> ! {
        let xen = boot.xen;
        let mut checks = Checks { failed: 0 };

        let c = xen.cpuid();
        println!(
            "xenpaths: cpuid: {} base={:#x} max_leaf={:#x} version={}.{} hypercall_msr={:#x} pages={}",
            checks.verdict(c.hypercall_pages >= 1),
            c.base,
            c.max_leaf,
            c.major,
            c.minor,
            c.hypercall_msr,
            c.hypercall_pages
        );
        let version = xen.version();
        println!(
            "xenpaths: hypercall-page: {} gpa={:#x} xen_version={:?}",
            checks.verdict(version == Ok((c.major, c.minor))),
            xen.hypercall_page_gpa(),
            version
        );
        for (name, index) in [
            ("HVM_PARAM_CALLBACK_IRQ", HVM_PARAM_CALLBACK_IRQ),
            ("HVM_PARAM_STORE_PFN", HVM_PARAM_STORE_PFN),
            ("HVM_PARAM_CONSOLE_PFN", HVM_PARAM_CONSOLE_PFN),
        ] {
            match xen.hvm_get_param(index) {
                Ok(v) => println!(
                    "xenpaths: hvm_get_param {name}: {} value={v:#x}",
                    checks.verdict(true)
                ),
                Err(e) => println!(
                    "xenpaths: hvm_get_param {name}: {} got {e}",
                    checks.verdict(false)
                ),
            }
        }
        shared_info(&xen, &mut checks);
        let console = xen.console_write(b"xenpaths: console_io: direct CONSOLEIO_write\n");
        println!(
            "xenpaths: console_io: {} result={console:?}",
            checks.verdict(console.is_ok())
        );

        if checks.failed == 0 {
            println!("xenpaths: SUCCESS");
            xen.shutdown(ShutdownReason::Poweroff)
        }
        println!("xenpaths: FAILURE ({} checks failed)", checks.failed);
        xen.shutdown(ShutdownReason::Crash)
    }

    struct Checks {
        failed: u32,
    }

    impl Checks {
        /// "ok" or "FAIL", counting failures.
        fn verdict(&mut self, ok: bool) -> &'static str {
            if ok {
                "ok"
            } else {
                self.failed += 1;
                "FAIL"
            }
        }
    }

    fn shared_info(xen: &Xen, checks: &mut Checks) {
        let shared = match xen.map_shared_info() {
            Ok(s) => s,
            Err(e) => {
                println!(
                    "xenpaths: shared-info: {} add_to_physmap got {e}",
                    checks.verdict(false)
                );
                return;
            }
        };
        match shared.wallclock() {
            Some(wc) => println!(
                "xenpaths: wallclock: {} sec={} nsec={}",
                checks.verdict(wc.nsec < 1_000_000_000),
                wc.sec,
                wc.nsec
            ),
            None => println!(
                "xenpaths: wallclock: {} never consistent",
                checks.verdict(false)
            ),
        }
        let clock = shared.clock(0).expect("vCPU 0 has a slot in shared info");
        match (clock.time_info(), clock.system_time_ns()) {
            (Some(t), Some(now)) => println!(
                "xenpaths: vcpu-time: {} system_time={} tsc_to_system_mul={:#x} tsc_shift={} now={now}",
                checks.verdict(t.tsc_to_system_mul != 0 && now >= t.system_time),
                t.system_time,
                t.tsc_to_system_mul,
                t.tsc_shift
            ),
            _ => println!("xenpaths: vcpu-time: {} never consistent", checks.verdict(false)),
        }
    }
}
