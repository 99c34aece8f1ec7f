//! `unclaimed` (issue 8, item 2): reads and writes memory and ports nobody
//! gives a domU — the HPET, the IO-APIC, a hole far above its RAM, the
//! PIT/PCI/COM1 ports, QEMU's debug-exit port — and prints what it got.
//! Xen's null handler answers: reads return all ones (merged into AL/AX,
//! zero-extended into EAX, sign-extended by MOVSX), writes are dropped (a
//! read after a write still gives all ones; a write to the debug-exit port
//! does not end the machine). An ADD to unclaimed memory, which xen-core
//! does not emulate, gets #GP, as an instruction Xen cannot emulate does.
//! Each check prints `unclaimed: <check>: got <result> (expected
//! <result>)`; the last line is `unclaimed: done: <n> checks, <m>
//! unexpected`, then the domain powers off (crashes if any was unexpected).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Debug;

    use guest_pv_shim::arch::probe::{self, Load};
    use guest_pv_shim::arch::trap::{self, Exception};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// The HPET's registers on a PC (its main counter at +0xf0).
    const HPET: u64 = 0xfed0_0000;
    /// The IO-APIC's index register (data at +0x10).
    const IOAPIC: u64 = 0xfec0_0000;
    /// An arbitrary address far above a domU's RAM, named by no device.
    const HOLE: u64 = 0xc0de_0008;
    /// What RAX holds before a load, so that a merge into AL/AX shows.
    const RAX_BEFORE: u64 = 0x1122_3344_5566_7788;
    /// QEMU's isa-debug-exit port: a write that reached it would end the
    /// machine.
    const DEBUG_EXIT_PORT: u16 = 0xf4;

    struct Checks {
        checks: u32,
        unexpected: u32,
    }

    impl Checks {
        fn check<T: Debug + PartialEq>(&mut self, name: &str, got: T, expected: T) {
            self.checks += 1;
            self.unexpected += u32::from(got != expected);
            println!("unclaimed: {name}: got {got:x?} (expected {expected:x?})");
        }
    }

    type Probe<T> = Result<T, Exception>;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let ram_end = start_info.memmap_end();
        let mut c = Checks {
            checks: 0,
            unexpected: 0,
        };
        let read = |gpa, load| probe::read(gpa, ram_end, load, RAX_BEFORE).unwrap_or(Ok(0));
        let write = |gpa, rmw| probe::write(gpa, ram_end, 0x5a5a_5a5a, rmw).unwrap_or(Ok(()));
        let ones: Probe<u64> = Ok(u64::MAX);
        c.check("hpet-read32", read(HPET, Load::Dword), Ok(0xffff_ffff));
        c.check("hpet-read64", read(HPET + 0xf0, Load::Qword), ones);
        c.check(
            "ioapic-read8",
            read(IOAPIC, Load::Byte),
            Ok(0x1122_3344_5566_77ff),
        );
        c.check(
            "ioapic-read16",
            read(IOAPIC + 0x10, Load::Word),
            Ok(0x1122_3344_5566_ffff),
        );
        c.check("hole-movsx8", read(HOLE, Load::SignExtendByte), ones);
        c.check("hole-write32", write(HOLE, false), Ok(()));
        c.check(
            "hole-read-after-write",
            read(HOLE, Load::Dword),
            Ok(0xffff_ffff),
        );
        c.check("hpet-write32", write(HPET + 0xf0, false), Ok(()));
        c.check(
            "hpet-read-after-write",
            read(HPET + 0xf0, Load::Dword),
            Ok(0xffff_ffff),
        );
        c.check("hole-add32", write(HOLE, true), Err(Exception::GP));
        c.check("port-inb-0x61", trap::probe_inb(0x61), Ok(0xff));
        c.check("port-inb-com1-lsr", trap::probe_inb(0x3fd), Ok(0xff));
        c.check(
            "port-inw-0xcf8",
            probe::port_in(0xcf8, 2, RAX_BEFORE),
            Ok(0x1122_3344_5566_ffff),
        );
        c.check(
            "port-inl-0xcfc",
            probe::port_in(0xcfc, 4, RAX_BEFORE),
            Ok(0xffff_ffff),
        );
        c.check("port-outb-com1", probe::port_out(0x3f8, b'X'), Ok(()));
        c.check(
            "port-outb-debug-exit",
            probe::port_out(DEBUG_EXIT_PORT, 0x5a),
            Ok(()),
        );
        println!(
            "unclaimed: done: {} checks, {} unexpected",
            c.checks, c.unexpected
        );
        xen.shutdown(if c.unexpected == 0 {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }
}
