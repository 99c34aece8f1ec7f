//! Register offsets and bit fields of the local APIC (AMD APM vol. 2,
//! §16.3-16.4; Intel SDM vol. 3, §11.4 and §11.12 for x2APIC), named as
//! in Xen's `asm/apicdef.h`.

/// APIC ID.
pub const ID: u32 = 0x020;
/// Version.
pub const LVR: u32 = 0x030;
/// Task priority.
pub const TASKPRI: u32 = 0x080;
/// Arbitration priority (not kept, reads 0 as in Xen).
pub const ARBPRI: u32 = 0x090;
/// Processor priority.
pub const PROCPRI: u32 = 0x0a0;
/// End of interrupt.
pub const EOI: u32 = 0x0b0;
/// Logical destination.
pub const LDR: u32 = 0x0d0;
/// Destination format.
pub const DFR: u32 = 0x0e0;
/// Spurious-interrupt vector.
pub const SPIV: u32 = 0x0f0;
/// In-service register, 8 words.
pub const ISR: u32 = 0x100;
/// Trigger mode register, 8 words.
pub const TMR: u32 = 0x180;
/// Interrupt request register, 8 words.
pub const IRR: u32 = 0x200;
/// Error status.
pub const ESR: u32 = 0x280;
/// LVT CMCI (x2APIC readable, as in Xen).
pub const CMCI: u32 = 0x2f0;
/// Interrupt command, low half.
pub const ICR: u32 = 0x300;
/// Interrupt command, high half (destination).
pub const ICR2: u32 = 0x310;
/// LVT timer.
pub const LVTT: u32 = 0x320;
/// LVT thermal sensor.
pub const LVTTHMR: u32 = 0x330;
/// LVT performance counter.
pub const LVTPC: u32 = 0x340;
/// LVT LINT0.
pub const LVT0: u32 = 0x350;
/// LVT LINT1.
pub const LVT1: u32 = 0x360;
/// LVT error.
pub const LVTERR: u32 = 0x370;
/// Timer initial count.
pub const TMICT: u32 = 0x380;
/// Timer current count.
pub const TMCCT: u32 = 0x390;
/// Timer divide configuration.
pub const TDCR: u32 = 0x3e0;
/// x2APIC self-IPI (MSR 0x83f only).
pub const SELF_IPI: u32 = 0x3f0;

/// The version register Xen reports (`VLAPIC_VERSION`): version 0x14,
/// max LVT entry 5.
pub const VERSION: u32 = 0x0005_0014;

/// Vector field of ICR, LVT, SPIV.
pub const VECTOR_MASK: u32 = 0xff;
/// ICR / LVT delivery mode field (bits 10:8).
pub const DM_MASK: u32 = 0x700;
/// Delivery mode: fixed.
pub const DM_FIXED: u32 = 0x000;
/// Delivery mode: lowest priority.
pub const DM_LOWEST: u32 = 0x100;
/// Delivery mode: NMI (the vector is ignored).
pub const DM_NMI: u32 = 0x400;
/// Delivery mode: INIT.
pub const DM_INIT: u32 = 0x500;
/// Delivery mode: STARTUP.
pub const DM_STARTUP: u32 = 0x600;
/// ICR: logical destination mode.
pub const DEST_LOGICAL: u32 = 0x800;
/// ICR / LVT: delivery status (send pending).
pub const SEND_PENDING: u32 = 0x1000;
/// LVT LINT: input polarity.
pub const INPUT_POLARITY: u32 = 0x2000;
/// LVT LINT: remote IRR.
pub const LVT_REMOTE_IRR: u32 = 0x4000;
/// ICR: level assert.
pub const INT_ASSERT: u32 = 0x4000;
/// ICR / LVT: level-triggered.
pub const INT_LEVELTRIG: u32 = 0x8000;
/// LVT: masked.
pub const LVT_MASKED: u32 = 0x1_0000;
/// ICR destination shorthand field (bits 19:18).
pub const SHORT_MASK: u32 = 0xc_0000;
/// Shorthand: none.
pub const DEST_NOSHORT: u32 = 0x0_0000;
/// Shorthand: self.
pub const DEST_SELF: u32 = 0x4_0000;
/// Shorthand: all including self.
pub const DEST_ALLINC: u32 = 0x8_0000;
/// Shorthand: all but self.
pub const DEST_ALLBUT: u32 = 0xc_0000;
/// LVTT timer mode field (bits 18:17).
pub const TIMER_MODE_MASK: u32 = 0x6_0000;
/// Timer mode: one-shot.
pub const TIMER_ONESHOT: u32 = 0x0_0000;
/// Timer mode: periodic.
pub const TIMER_PERIODIC: u32 = 0x2_0000;
/// Timer mode: TSC deadline.
pub const TIMER_TSC_DEADLINE: u32 = 0x4_0000;
/// SPIV: APIC software enable.
pub const SPIV_ENABLED: u32 = 0x100;
/// SPIV: focus processor checking disabled.
pub const SPIV_FOCUS_DISABLED: u32 = 0x200;
/// TDCR: the settable bits 0, 1 and 3.
pub const TDCR_DIV_MASK: u32 = 0xb;
/// LDR's logical id field in xAPIC mode.
pub const LDR_MASK: u32 = 0xff00_0000;
/// ESR: send illegal vector.
pub const ESR_SENDILL: u32 = 0x20;
/// ESR: received illegal vector.
pub const ESR_RECVILL: u32 = 0x40;

/// Bits every LVT entry keeps (Xen's `LVT_MASK`).
pub const LVT_MASK: u32 = LVT_MASKED | SEND_PENDING | VECTOR_MASK;
/// Bits LINT0/LINT1 keep (Xen's `LINT_MASK`).
pub const LINT_MASK: u32 = LVT_MASK | DM_MASK | INPUT_POLARITY | LVT_REMOTE_IRR | INT_LEVELTRIG;

/// The six LVT entries from LVTT, and the bits each keeps (Xen's
/// `vlapic_lvt_mask`).
pub const LVT_BITS: [(u32, u32); 6] = [
    (LVTT, LVT_MASK | TIMER_MODE_MASK),
    (LVTTHMR, LVT_MASK | DM_MASK),
    (LVTPC, LVT_MASK | DM_MASK),
    (LVT0, LINT_MASK),
    (LVT1, LINT_MASK),
    (LVTERR, LVT_MASK),
];

/// MSR_APIC_BASE (0x1b).
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE (0x6e0).
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// The first x2APIC MSR; MSR 0x800 + (offset >> 4) is register `offset`.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// The last x2APIC MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8ff;

/// MSR_APIC_BASE: this is the bootstrap processor (read-only).
pub const BASE_BSP: u64 = 1 << 8;
/// MSR_APIC_BASE: x2APIC mode.
pub const BASE_EXTD: u64 = 1 << 10;
/// MSR_APIC_BASE: APIC globally enabled.
pub const BASE_ENABLE: u64 = 1 << 11;
/// MSR_APIC_BASE: the MMIO window's base address (up to bit 51).
pub const BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The APIC's default MMIO base, the only one Xen accepts.
pub const DEFAULT_PHYS_BASE: u64 = 0xfee0_0000;
