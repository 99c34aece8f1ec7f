//! The VMCB (virtual machine control block): one 4 KiB page per vCPU,
//! a control area at 0x000 and the guest state save area at 0x400.
//!
//! Layout: AMD64 APM vol. 2, appendix B ("Layout of VMCB"), tables B-1
//! and B-2; cross-checked against Linux `arch/x86/include/asm/svm.h`.
//! Every field used here has a compile-time offset assertion below.

use core::mem::{offset_of, size_of};

/// A segment register in the save area: selector, attributes (the
/// descriptor's bits 55:52 and 47:40 packed as 11:8 and 7:0), limit, base.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbSegment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// Control area (APM table B-1).
#[repr(C)]
pub struct VmcbControl {
    /// Intercept CR reads (bits 15:0) and writes (31:16).
    pub intercept_cr: u32,
    /// Intercept DR reads (bits 15:0) and writes (31:16).
    pub intercept_dr: u32,
    /// Intercept exception vectors, one bit each.
    pub intercept_exceptions: u32,
    /// Intercepts at 0x0c: see [`misc1`].
    pub intercept_misc1: u32,
    /// Intercepts at 0x10: see [`misc2`].
    pub intercept_misc2: u32,
    /// Intercepts at 0x14 (INVLPGB, INVPCID, ...): none used.
    pub intercept_misc3: u32,
    _reserved_18: [u8; 0x3c - 0x18],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    /// Physical address of the 12 KiB I/O permission map.
    pub iopm_base_pa: u64,
    /// Physical address of the 8 KiB MSR permission map.
    pub msrpm_base_pa: u64,
    /// Added to the host TSC for guest RDTSC.
    pub tsc_offset: u64,
    /// Guest address space id (must not be 0).
    pub guest_asid: u32,
    /// TLB flush at VMRUN: see [`tlb`].
    pub tlb_control: u8,
    _reserved_5d: [u8; 3],
    /// V_TPR, V_IRQ (bit 8), V_INTR_PRIO (19:16), V_INTR_MASKING (24)...
    pub int_ctl: u32,
    /// V_INTR_VECTOR (bits 7:0).
    pub int_vector: u32,
    /// Bit 0: guest is in an interrupt shadow (after STI / MOV SS).
    pub interrupt_shadow: u64,
    pub exitcode: u64,
    pub exitinfo1: u64,
    pub exitinfo2: u64,
    /// Event being delivered when the exit happened (EVENTINJ format).
    pub exitintinfo: u64,
    /// Bit 0: nested paging enable.
    pub np_enable: u64,
    _reserved_98: [u8; 0xa8 - 0x98],
    /// Event to inject at VMRUN (vector, type, error code, valid bit 31).
    pub event_inj: u64,
    /// Nested page table root (host physical address of the NPT PML4).
    pub n_cr3: u64,
    /// LBR virtualization / virtual VMLOAD-VMSAVE enables.
    pub virt_ext: u64,
    /// VMCB clean bits: 0 = reload everything (always, for now).
    pub vmcb_clean: u32,
    _reserved_c4: u32,
    /// RIP after the intercepted instruction, with the NRIP-save feature
    /// (absent under QEMU 7.2 TCG: reads 0).
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    _reserved_e0: [u8; 0x400 - 0xe0],
}

/// State save area (APM table B-2), at VMCB offset 0x400.
#[repr(C)]
pub struct VmcbSave {
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    _reserved_a0: [u8; 0xcb - 0xa0],
    pub cpl: u8,
    _reserved_cc: u32,
    pub efer: u64,
    _reserved_d8: [u8; 0x148 - 0xd8],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved_180: [u8; 0x1d8 - 0x180],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved_248: [u8; 0x268 - 0x248],
    pub g_pat: u64,
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub last_excp_from: u64,
    pub last_excp_to: u64,
    _reserved_298: [u8; 0x2e0 - 0x298],
    pub spec_ctrl: u64,
}

/// A whole VMCB page. Every field is an integer, so any bit pattern (a
/// zeroed frame in particular) is a valid `Vmcb`.
#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: VmcbControl,
    pub save: VmcbSave,
    _reserved: [u8; 4096 - 0x400 - size_of::<VmcbSave>()],
}

/// Intercept bits of [`VmcbControl::intercept_misc1`] (VMCB 0x0c).
pub mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    /// Only while an NMI waits for an interrupt window.
    pub const VINTR: u32 = 1 << 4;
    pub const CPUID: u32 = 1 << 18;
    /// Only while a virtual NMI is in service.
    pub const IRET: u32 = 1 << 20;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept bits of [`VmcbControl::intercept_misc2`] (VMCB 0x10).
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const XSETBV: u32 = 1 << 13;
}

/// Write-intercept bits of [`VmcbControl::intercept_cr`] (VMCB 0x00).
pub mod intercept_cr {
    pub const CR0_WRITE: u32 = 1 << 16;
    pub const CR4_WRITE: u32 = 1 << 20;
}

/// [`VmcbControl::intercept_dr`]: every read and write of DR0-DR15.
pub const INTERCEPT_ALL_DR: u32 = !0;

/// [`VmcbControl::tlb_control`] values.
pub mod tlb {
    /// Keep the TLB.
    pub const DO_NOTHING: u8 = 0;
    /// Flush every ASID's entries (always supported).
    pub const FLUSH_ALL: u8 = 1;
}

/// Segment attribute bits (APM vol. 2, §15.5.1: descriptor bits 47:40
/// and 55:52 packed into 11:0).
pub mod attrib {
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// D/B: 32-bit default operand size (code segments).
    pub const DB: u16 = 1 << 10;
}

/// Asserts at compile time that a VMCB field sits at the APM's offset.
macro_rules! assert_offset {
    ($($field:ident).+, $at:expr) => {
        const _: () = assert!(offset_of!(Vmcb, $($field).+) == $at);
    };
}

const _: () = assert!(size_of::<Vmcb>() == 4096);
const _: () = assert!(size_of::<VmcbControl>() == 0x400);
const _: () = assert!(size_of::<VmcbSave>() == 0x2e8);
const _: () = assert!(size_of::<VmcbSegment>() == 16);
const _: () = assert!(offset_of!(Vmcb, save) == 0x400);
assert_offset!(control.intercept_cr, 0x00);
assert_offset!(control.intercept_dr, 0x04);
assert_offset!(control.intercept_exceptions, 0x08);
assert_offset!(control.intercept_misc1, 0x0c);
assert_offset!(control.intercept_misc2, 0x10);
assert_offset!(control.intercept_misc3, 0x14);
assert_offset!(control.iopm_base_pa, 0x40);
assert_offset!(control.msrpm_base_pa, 0x48);
assert_offset!(control.tsc_offset, 0x50);
assert_offset!(control.guest_asid, 0x58);
assert_offset!(control.tlb_control, 0x5c);
assert_offset!(control.int_ctl, 0x60);
assert_offset!(control.int_vector, 0x64);
assert_offset!(control.interrupt_shadow, 0x68);
assert_offset!(control.exitcode, 0x70);
assert_offset!(control.exitinfo1, 0x78);
assert_offset!(control.exitinfo2, 0x80);
assert_offset!(control.exitintinfo, 0x88);
assert_offset!(control.np_enable, 0x90);
assert_offset!(control.event_inj, 0xa8);
assert_offset!(control.n_cr3, 0xb0);
assert_offset!(control.vmcb_clean, 0xc0);
assert_offset!(control.next_rip, 0xc8);
assert_offset!(save.es, 0x400);
assert_offset!(save.cs, 0x410);
assert_offset!(save.ss, 0x420);
assert_offset!(save.ds, 0x430);
assert_offset!(save.fs, 0x440);
assert_offset!(save.gs, 0x450);
assert_offset!(save.gdtr, 0x460);
assert_offset!(save.ldtr, 0x470);
assert_offset!(save.idtr, 0x480);
assert_offset!(save.tr, 0x490);
assert_offset!(save.cpl, 0x4cb);
assert_offset!(save.efer, 0x4d0);
assert_offset!(save.cr4, 0x548);
assert_offset!(save.cr3, 0x550);
assert_offset!(save.cr0, 0x558);
assert_offset!(save.dr7, 0x560);
assert_offset!(save.dr6, 0x568);
assert_offset!(save.rflags, 0x570);
assert_offset!(save.rip, 0x578);
assert_offset!(save.rsp, 0x5d8);
assert_offset!(save.rax, 0x5f8);
assert_offset!(save.star, 0x600);
assert_offset!(save.lstar, 0x608);
assert_offset!(save.cstar, 0x610);
assert_offset!(save.sfmask, 0x618);
assert_offset!(save.kernel_gs_base, 0x620);
assert_offset!(save.sysenter_cs, 0x628);
assert_offset!(save.sysenter_esp, 0x630);
assert_offset!(save.sysenter_eip, 0x638);
assert_offset!(save.cr2, 0x640);
assert_offset!(save.g_pat, 0x668);
