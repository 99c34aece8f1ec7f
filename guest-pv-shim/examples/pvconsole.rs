//! `pvconsole` (issue 4, scenario 2): prints `lines=N` (default 3) lines
//! through the PV console ring, not `CONSOLEIO_write`, so they reach COM1
//! only through dom0's console backend, tagged with this domain's name:
//! `pvconsole: line <i> of <n> via the PV console ring`, then
//! `pvconsole: done`; poweroff. Without a PV console (HVM params 0, or
//! `console=xen`) it says so through console_io and crashes.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::console_front;
    use guest_pv_shim::{println, Boot, ShutdownReason};

    const DEFAULT_LINES: u32 = 3;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        if !console_front::active() {
            let _ = xen
                .console_write(b"pvconsole: no PV console (HVM_PARAM_CONSOLE_PFN/EVTCHN unset)\n");
            xen.shutdown(ShutdownReason::Crash)
        }
        let lines = start_info
            .cmdline_arg("lines")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_LINES);
        for i in 1..=lines {
            println!("pvconsole: line {i} of {lines} via the PV console ring");
        }
        println!("pvconsole: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
