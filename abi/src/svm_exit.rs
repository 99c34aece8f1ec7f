//! SVM exit codes (`EXITCODE` in the VMCB) and their names, shared by
//! xen-core (which decodes and counts them) and the tools (which show the
//! counts of control ABI `GET_STATS` by name).
//!
//! Source: AMD64 APM vol. 2, appendix C ("SVM Intercept Exit Codes").

/// The raw SVM exit codes xen-core names (APM vol. 2, appendix C).
pub mod code {
    /// First CR write intercept (`VMEXIT_CR0_WRITE`); CR = code - this.
    pub const CR_WRITE_BASE: u64 = 0x10;
    /// Last CR write intercept (`VMEXIT_CR15_WRITE`).
    pub const CR_WRITE_LAST: u64 = 0x1f;
    /// First DR read intercept (`VMEXIT_DR0_READ`).
    pub const DR_READ_BASE: u64 = 0x20;
    /// Last DR write intercept (`VMEXIT_DR15_WRITE`).
    pub const DR_WRITE_LAST: u64 = 0x3f;
    /// First exception intercept (`VMEXIT_EXCP0`); vector = code - this.
    pub const EXCEPTION_BASE: u64 = 0x40;
    /// Last exception intercept (`VMEXIT_EXCP31`).
    pub const EXCEPTION_LAST: u64 = 0x5f;
    /// Physical maskable interrupt.
    pub const INTR: u64 = 0x60;
    /// Physical NMI.
    pub const NMI: u64 = 0x61;
    /// System management interrupt.
    pub const SMI: u64 = 0x62;
    /// INIT signal.
    pub const INIT: u64 = 0x63;
    /// Virtual interrupt window (`VINTR`).
    pub const VINTR: u64 = 0x64;
    /// CPUID instruction.
    pub const CPUID: u64 = 0x72;
    /// IRET instruction (intercepted while a virtual NMI is in service).
    pub const IRET: u64 = 0x74;
    /// HLT instruction.
    pub const HLT: u64 = 0x78;
    /// INVD instruction.
    pub const INVD: u64 = 0x76;
    /// INVLPGA instruction.
    pub const INVLPGA: u64 = 0x7a;
    /// IN/OUT/INS/OUTS to a port whose IOPM bit is set.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR/WRMSR of an MSR whose MSRPM bit is set.
    pub const MSR: u64 = 0x7c;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN instruction.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL instruction (a Xen hypercall).
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD instruction.
    pub const VMLOAD: u64 = 0x82;
    /// VMSAVE instruction.
    pub const VMSAVE: u64 = 0x83;
    /// STGI instruction.
    pub const STGI: u64 = 0x84;
    /// CLGI instruction.
    pub const CLGI: u64 = 0x85;
    /// SKINIT instruction.
    pub const SKINIT: u64 = 0x86;
    /// RDTSCP instruction.
    pub const RDTSCP: u64 = 0x87;
    /// MONITOR instruction.
    pub const MONITOR: u64 = 0x8a;
    /// MWAIT instruction.
    pub const MWAIT: u64 = 0x8b;
    /// XSETBV instruction.
    pub const XSETBV: u64 = 0x8d;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// `VMEXIT_INVALID` (-1): VMRUN refused the guest state. QEMU 7.2
    /// stores only the low 32 bits, so compare those (docs/development.md).
    pub const INVALID_LOW32: u64 = 0xffff_ffff;
}

/// Name of a raw exit code, as in the APM's `VMEXIT_*` list: for
/// xen-core's logs and the exits `dom0ctl top` shows.
pub fn code_name(exit_code: u64) -> &'static str {
    use code::*;
    if exit_code & 0xffff_ffff == INVALID_LOW32 {
        return "INVALID";
    }
    match exit_code {
        CR_WRITE_BASE..=CR_WRITE_LAST => "CR_WRITE",
        DR_READ_BASE..=DR_WRITE_LAST => "DR_ACCESS",
        EXCEPTION_BASE..=EXCEPTION_LAST => "EXCP",
        INTR => "INTR",
        NMI => "NMI",
        SMI => "SMI",
        INIT => "INIT",
        VINTR => "VINTR",
        CPUID => "CPUID",
        IRET => "IRET",
        HLT => "HLT",
        INVD => "INVD",
        INVLPGA => "INVLPGA",
        IOIO => "IOIO",
        MSR => "MSR",
        SHUTDOWN => "SHUTDOWN",
        VMRUN => "VMRUN",
        VMMCALL => "VMMCALL",
        VMLOAD => "VMLOAD",
        VMSAVE => "VMSAVE",
        STGI => "STGI",
        CLGI => "CLGI",
        SKINIT => "SKINIT",
        RDTSCP => "RDTSCP",
        MONITOR => "MONITOR",
        MWAIT => "MWAIT",
        XSETBV => "XSETBV",
        NPF => "NPF",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_ranges_and_the_invalid_code() {
        assert_eq!(code_name(0x14), "CR_WRITE");
        assert_eq!(code_name(0x3f), "DR_ACCESS");
        assert_eq!(code_name(0x4e), "EXCP");
        assert_eq!(code_name(0x81), "VMMCALL");
        assert_eq!(code_name(0xffff_ffff), "INVALID");
        assert_eq!(code_name(u64::MAX), "INVALID");
        assert_eq!(code_name(0x6e), "OTHER");
    }
}
