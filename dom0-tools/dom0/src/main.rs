//! The dom0 kernel: the first domain xen-core builds, privileged, with
//! GPA = HPA. For now it prints what it received and the Xen it sees,
//! ticks like the `ticker` example (`ticks=N`, default 5) so interleaving
//! with domUs shows, and powers off, which ends the whole machine.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::console::nul_padded_str;
    use guest_pv_shim::{println, ticker, Boot, Clock, ShutdownReason, Xen};

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        println!("dom0: start info: {start_info}");
        for e in start_info.memmap() {
            println!("dom0: memmap {:#x}+{:#x} type {}", e.addr, e.size, e.kind);
        }
        for (i, m) in start_info.modules().iter().enumerate() {
            println!(
                "dom0: module {i}: paddr={:#x} size={} cmdline=\"{}\"",
                m.paddr,
                m.size,
                m.cmdline()
            );
        }
        match xen.version().and_then(|v| Ok((v, xen.extraversion()?))) {
            Ok(((major, minor), extra)) => {
                println!("dom0: Xen {major}.{minor}{}", nul_padded_str(&extra))
            }
            Err(e) => println!("dom0: xen_version failed: {e}"),
        }
        let ticks = start_info.cmdline_arg("ticks").and_then(|n| n.parse().ok());
        let reason = match clock(&xen) {
            Some(clock) => match ticker::run(
                &xen,
                &clock,
                "dom0: ",
                ticks.unwrap_or(ticker::DEFAULT_TICKS),
            ) {
                Ok(true) => ShutdownReason::Poweroff,
                Ok(false) | Err(_) => ShutdownReason::Crash,
            },
            None => ShutdownReason::Crash,
        };
        xen.shutdown(reason)
    }

    /// vCPU 0's clock, from a vcpu_info area dom0 registers (shared info
    /// must be mapped too: it holds the wall clock and, later, events).
    fn clock(xen: &Xen) -> Option<Clock> {
        if let Err(e) = xen.map_shared_info() {
            println!("dom0: map shared info failed: {e}");
            return None;
        }
        match xen.register_vcpu_info(0)? {
            Ok(clock) => Some(clock),
            Err(e) => {
                println!("dom0: register_vcpu_info failed: {e}");
                None
            }
        }
    }
}
