//! `flood` (issue 8, item 5): tries to stall the host through its log.
//! Forever, never yielding: refused RDMSRs (each a guest warning in
//! xen-core's log), long `console_io` lines, unclaimed MMIO and port
//! reads, and ADDs to unclaimed memory (each a guest warning, then #GP).
//! Its own lines go to its PV console (run it without `console=xen`, so
//! that dom0 relays them and the console_io budget does not cut them):
//! `flood: flooding` once, then `flood: round <n>` every
//! [`REPORT_EVERY`] rounds. Runs until the machine powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::probe::{self, Load};
    use guest_pv_shim::arch::trap;
    use guest_pv_shim::{println, Boot};

    /// AMD's VM_HSAVE_PA: no guest may read it.
    const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
    /// The HPET, unclaimed.
    const HPET: u64 = 0xfed0_0000;
    /// Accesses of each kind per round.
    const PER_ROUND: u32 = 100;
    /// Rounds between progress lines.
    const REPORT_EVERY: u64 = 50;
    /// A console line: 200 bytes, written before its newline.
    const LINE: &[u8; 200] = &[b'F'; 200];

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let ram_end = start_info.memmap_end();
        println!("flood: flooding");
        let mut round = 0u64;
        loop {
            for _ in 0..PER_ROUND {
                let _ = trap::probe_rdmsr(MSR_VM_HSAVE_PA);
                let _ = probe::read(HPET, ram_end, Load::Dword, 0);
                let _ = trap::probe_inb(0x61);
            }
            for _ in 0..PER_ROUND / 10 {
                let _ = xen.console_write(LINE);
                let _ = xen.console_write(b"\n");
                let _ = probe::write(HPET, ram_end, 1, true);
            }
            round += 1;
            if round.is_multiple_of(REPORT_EVERY) {
                println!("flood: round {round}");
            }
        }
    }
}
