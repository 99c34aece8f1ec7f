//! `hostile`: attacks on the hypervisor's validation (issue 3, scenario 3).
//! Each check prints `hostile: <check>: got <result> (expected <result>)`.
//! The checks the domain survives come first (a port it does not own
//! reads as all ones, a write past everything its memory map names and a
//! write to a hole it made in its own RAM are dropped: Xen's null
//! handler); then the one that ends it, a triple fault.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Display;

    use guest_pv_shim::arch::probe;
    use guest_pv_shim::arch::trap::{self, Exception};
    use guest_pv_shim::{println, Boot, StartInfo, Xen};

    /// A hypercall number no Xen defines that still has a page stub.
    const UNKNOWN_HYPERCALL: u64 = 63;
    /// Beyond the hypercall page: only reachable with a bare VMMCALL.
    const UNKNOWN_HYPERCALL_BEYOND_PAGE: u64 = 0xdead_beef;
    /// Not present in the shim's page tables (PML4 slot 2: 1 TiB).
    const UNMAPPED_GVA: u64 = 0x100_0000_0000;
    /// The upper (kernel) half, where the shim maps nothing.
    const KERNEL_HALF_GVA: u64 = 0xffff_8000_0000_0000;
    /// Not canonical: bits 63:48 do not repeat bit 47.
    const NONCANONICAL_GVA: u64 = 0x8000_0000_0000_0000;
    /// The largest console write (`count` is a 32-bit unsigned int).
    const HUGE_LEN: u64 = u32::MAX as u64;
    /// Where the wrapping write starts: 16 bytes below the top of the
    /// address space, so 32 bytes wrap around to 0.
    const TOP_GVA: u64 = u64::MAX - 15;
    /// An MSR no guest may read: AMD's VM_HSAVE_PA (host save area).
    const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
    /// COM1, owned by the hypervisor.
    const FOREIGN_PORT: u16 = 0x3f8;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        println!("hostile: start info: {start_info}");
        survivable(&xen, &start_info);
        let hole = start_info.ram_end() - 2 * 4096;
        match probe::write_ram_hole(&xen, hole, start_info.ram_end()) {
            Ok(got) => report("ram-hole-write", got, "Ok(()): dropped"),
            Err(e) => println!("hostile: ram-hole-write: not tried: {e:?}"),
        }
        println!("hostile: triple-fault: now (expected domain crash)");
        trap::triple_fault()
    }

    fn survivable(xen: &Xen, start_info: &StartInfo) {
        report(
            "unknown-hypercall",
            xen.hypercall_without_args(UNKNOWN_HYPERCALL),
            "-ENOSYS",
        );
        report(
            "unknown-hypercall-vmmcall",
            xen.hypercall_without_args(UNKNOWN_HYPERCALL_BEYOND_PAGE),
            "-ENOSYS",
        );
        report(
            "console-unmapped-gva",
            xen.console_write_gva(UNMAPPED_GVA, 16),
            "-EFAULT",
        );
        report(
            "console-kernel-half-gva",
            xen.console_write_gva(KERNEL_HALF_GVA, 16),
            "-EFAULT",
        );
        report(
            "console-noncanonical-gva",
            xen.console_write_gva(NONCANONICAL_GVA, 16),
            "-EFAULT",
        );
        // Identity-mapped by the shim, but past everything the domain's
        // memory map names: not in its p2m.
        report(
            "console-out-of-p2m",
            xen.console_write_gva(start_info.memmap_end(), 16),
            "-EFAULT",
        );
        // From the last (zeroed) bytes of its RAM: the hypervisor works
        // through it in pieces and faults at the end of the p2m.
        report(
            "console-huge-len",
            xen.console_write_gva(start_info.ram_end() - 64, HUGE_LEN),
            "-EFAULT",
        );
        report(
            "console-wrapping-len",
            xen.console_write_gva(TOP_GVA, 32),
            "-EFAULT",
        );
        let mut input = [0u8; 16];
        report("console-read-domu", xen.console_read(&mut input), "-EPERM");
        report(
            "rdmsr-vm-hsave-pa",
            trap::probe_rdmsr(MSR_VM_HSAVE_PA),
            Exception::GP,
        );
        report("ioport", trap::probe_inb(FOREIGN_PORT), "Ok(255)");
        // Past everything its memory map names (RAM, the console ring).
        let gpa = start_info.memmap_end();
        match trap::probe_write_beyond_ram(gpa, start_info.ram_end(), 0x5a5a_5a5a) {
            Ok(result) => report("gfn-write", result, "Ok(()): dropped"),
            Err(_) => println!("hostile: gfn-write: skipped: {gpa:#x} is not identity-mapped"),
        }
    }

    fn report<T: core::fmt::Debug, E: Display>(
        check: &str,
        got: Result<T, E>,
        expected: impl Display,
    ) {
        match got {
            Ok(v) => println!("hostile: {check}: got Ok({v:?}) (expected {expected})"),
            Err(e) => println!("hostile: {check}: got {e} (expected {expected})"),
        }
    }
}
