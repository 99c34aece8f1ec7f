//! `apic`: drives its local APIC as a Xen PVH guest would: the timer in
//! one-shot and periodic mode (xAPIC MMIO), a self-IPI through ICR, then
//! x2APIC mode with the TSC-deadline timer and SELF_IPI, and hostile
//! writes (reserved bits, read-only registers, an ICR to an APIC id no
//! vCPU has) that must get Xen's answer while the guest goes on. Counts
//! interrupts and prints one line per step; powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::cpu::rdtsc;
    use guest_pv_shim::arch::lapic::{self, reg, *};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    const TIMER_VECTOR: u8 = 0x40;
    const IPI_VECTOR: u8 = 0x41;
    /// Periodic ticks to count.
    const PERIODIC_TICKS: u64 = 5;
    /// One timer count is 1 ns at divide-by-1 under Xen: 1 ms.
    const COUNT_1MS: u32 = 1_000_000;

    pub fn main(boot: Boot) -> ! {
        let reason = match run() {
            Ok(()) => ShutdownReason::Poweroff,
            Err(step) => {
                println!("apic: FAILED at {step}");
                ShutdownReason::Crash
            }
        };
        boot.xen.shutdown(reason)
    }

    fn check(ok: bool, step: &'static str) -> Result<(), &'static str> {
        ok.then_some(()).ok_or(step)
    }

    fn run() -> Result<(), &'static str> {
        let base = rdmsr(MSR_APIC_BASE).map_err(|_| "rdmsr APIC_BASE")?;
        println!(
            "apic: base {base:#x}, id {:#x}",
            lapic::read(reg::ID).unwrap_or(!0)
        );
        check(
            base & 0xffff_f000 == DEFAULT_BASE && base & BASE_ENABLE != 0,
            "base",
        )?;
        install_gate(TIMER_VECTOR);
        install_gate(IPI_VECTOR);
        let w = |r, v| lapic::write(r, v).map_err(|_| "mmio write");
        w(reg::SPIV, 0x1ff)?;
        w(reg::TDCR, 0xb)?;
        // One-shot.
        w(reg::LVTT, TIMER_VECTOR.into())?;
        w(reg::TMICT, COUNT_1MS)?;
        wait_for(1);
        check(lapic::read(reg::TMCCT) == Ok(0), "one-shot TMCCT")?;
        println!("apic: one-shot timer fired ({} interrupt)", interrupts());
        // Periodic.
        w(reg::LVTT, TIMER_PERIODIC | u32::from(TIMER_VECTOR))?;
        w(reg::TMICT, COUNT_1MS)?;
        wait_for(1 + PERIODIC_TICKS);
        w(reg::LVTT, LVT_MASKED)?;
        w(reg::TMICT, 0)?;
        println!("apic: periodic timer ticked {PERIODIC_TICKS} times");
        // Self-IPI through the xAPIC ICR.
        let before = interrupts();
        w(reg::ICR, DEST_SELF | u32::from(IPI_VECTOR))?;
        wait_for(before + 1);
        println!("apic: xAPIC self-IPI delivered");
        x2apic()?;
        hostile()?;
        println!("apic: {} interrupts, all steps passed", interrupts());
        Ok(())
    }

    fn x2apic() -> Result<(), &'static str> {
        let base = DEFAULT_BASE | BASE_ENABLE | BASE_EXTD;
        wrmsr(MSR_APIC_BASE, base).map_err(|_| "enter x2APIC")?;
        let id = rdmsr(x2apic_msr(reg::ID)).map_err(|_| "x2APIC ID")?;
        println!("apic: x2APIC mode, id {id}");
        let before = interrupts();
        let m = |r, v| wrmsr(x2apic_msr(r), v).map_err(|_| "x2APIC wrmsr");
        m(
            reg::LVTT,
            (TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR)).into(),
        )?;
        // About 1 ms at any TSC rate above 1 GHz.
        wrmsr(MSR_TSC_DEADLINE, rdtsc() + 1_000_000).map_err(|_| "TSC deadline")?;
        wait_for(before + 1);
        check(rdmsr(MSR_TSC_DEADLINE) == Ok(0), "TDT reads 0 once fired")?;
        println!("apic: TSC-deadline timer fired");
        m(reg::SELF_IPI, IPI_VECTOR.into())?;
        wait_for(before + 2);
        println!("apic: x2APIC SELF_IPI delivered");
        Ok(())
    }

    /// Writes Xen answers with #GP (or ignores): each must be refused and
    /// the guest must go on.
    fn hostile() -> Result<(), &'static str> {
        let gp = |r: Result<(), _>| matches!(r, Err(e) if e == guest_pv_shim::arch::trap::Exception { vector: 13 });
        let base = DEFAULT_BASE | BASE_ENABLE | BASE_EXTD;
        check(gp(wrmsr(MSR_APIC_BASE, base | 1)), "APIC_BASE reserved bit")?;
        check(gp(wrmsr(x2apic_msr(reg::TPR), 0x100)), "TPR reserved bits")?;
        check(gp(wrmsr(x2apic_msr(reg::ID), 5)), "ID is read-only")?;
        check(gp(wrmsr(x2apic_msr(reg::EOI), 1)), "EOI non-zero")?;
        check(
            gp(wrmsr(x2apic_msr(reg::ICR), 1 << 12)),
            "ICR delivery status",
        )?;
        check(
            gp(wrmsr(x2apic_msr(reg::SELF_IPI), 0x100)),
            "SELF_IPI reserved",
        )?;
        check(gp(wrmsr(0x8ff, 0)), "unknown x2APIC MSR")?;
        check(
            rdmsr(x2apic_msr(reg::ICR2)).is_err(),
            "ICR2 not an x2APIC MSR",
        )?;
        check(
            gp(wrmsr(MSR_APIC_BASE, DEFAULT_BASE | BASE_ENABLE)),
            "x2APIC to xAPIC",
        )?;
        // An ICR to APIC id 0x80 (no such vCPU) and to all-but-self (no
        // other vCPU): accepted, delivered to nobody.
        let before = interrupts();
        let icr = |dest: u64, low: u32| wrmsr(x2apic_msr(reg::ICR), dest << 32 | u64::from(low));
        icr(0x80, u32::from(IPI_VECTOR)).map_err(|_| "ICR to nobody")?;
        icr(0, 0xc_0000 | u32::from(IPI_VECTOR)).map_err(|_| "ICR all-but-self")?;
        // An illegal vector: ESR.SENDILL, no interrupt.
        icr(0, DEST_SELF | 3).map_err(|_| "ICR illegal vector")?;
        wrmsr(x2apic_msr(reg::ESR), 0).map_err(|_| "ESR")?;
        let esr = rdmsr(x2apic_msr(reg::ESR)).map_err(|_| "ESR read")?;
        check(esr == 0x20, "ESR.SENDILL")?;
        init_sipi(icr)?;
        // The APIC still works: one more self-IPI arrives, and only it.
        wrmsr(x2apic_msr(reg::SELF_IPI), IPI_VECTOR.into()).map_err(|_| "SELF_IPI")?;
        wait_for(before + 1);
        check(interrupts() == before + 1, "no stray interrupt")?;
        println!("apic: hostile writes refused as Xen does (ESR {esr:#x})");
        Ok(())
    }

    /// INIT and STARTUP IPIs this one-vCPU domain cannot act on (Xen's
    /// vlapic ignores each): to APIC ids no vCPU has, all-but-self, a
    /// STARTUP to itself (it runs), a level-triggered INIT de-assert to
    /// itself. A reserved ICR bit is #GP. The guest must go on running.
    fn init_sipi(
        icr: impl Fn(u64, u32) -> Result<(), guest_pv_shim::arch::trap::Exception>,
    ) -> Result<(), &'static str> {
        let init = DM_INIT | INT_LEVELTRIG | INT_ASSERT;
        icr(2, init).map_err(|_| "INIT to APIC id 2")?;
        icr(0xfe, init).map_err(|_| "INIT to APIC id 0xfe")?;
        icr(2, DM_STARTUP | 0x08).map_err(|_| "SIPI to APIC id 2")?;
        icr(0, 0xc_0000 | init).map_err(|_| "INIT all-but-self")?;
        icr(0, 0xc_0000 | DM_STARTUP | 0xff).map_err(|_| "SIPI all-but-self")?;
        icr(0, DEST_SELF | DM_STARTUP | 0x08).map_err(|_| "SIPI to self")?;
        icr(0, DEST_SELF | DM_INIT | INT_LEVELTRIG).map_err(|_| "INIT de-assert")?;
        let reserved = icr(2, init | 1 << 13);
        check(
            reserved == Err(guest_pv_shim::arch::trap::Exception { vector: 13 }),
            "ICR reserved bit 13",
        )?;
        println!("apic: INIT/SIPI to nobody, SIPI to self, INIT de-assert ignored");
        Ok(())
    }
}
