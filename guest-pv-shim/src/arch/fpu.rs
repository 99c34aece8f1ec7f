//! The x87/SSE register file and the debug registers, for guests that
//! check what the hypervisor switches between vCPUs. The shim itself is
//! soft-float and never touches either.

use core::arch::asm;

/// CR0.MP: WAIT/FWAIT honour TS.
const CR0_MP: u64 = 1 << 1;
/// CR0.EM: x87 instructions raise #NM.
const CR0_EM: u64 = 1 << 2;
/// CR0.TS: the next x87/SSE instruction raises #NM.
const CR0_TS: u64 = 1 << 3;
/// CR4.OSFXSR: FXSAVE/FXRSTOR and SSE enabled.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: unmasked SIMD exceptions raise #XM.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// The FXSAVE image (AMD APM vol. 2, §11.4.4): FCW at 0, FSW at 2, the
/// abridged tag at 4, MXCSR at 24, ST0-7 at 32 (16 bytes each), XMM0-15
/// at 160 (16 bytes each).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    /// All zero.
    pub const fn zeroed() -> Self {
        FxArea([0; 512])
    }
}

/// CR0.
pub fn read_cr0() -> u64 {
    let value;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack)) };
    value
}

/// CR4.
pub fn read_cr4() -> u64 {
    let value;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack)) };
    value
}

/// Turns on x87 and SSE: CR0.EM and TS clear, MP set; CR4.OSFXSR and
/// OSXMMEXCPT set (both MOVs exit to the hypervisor, which checks them).
pub fn enable_sse() -> Result<(), super::trap::Exception> {
    let cr0 = (read_cr0() & !(CR0_EM | CR0_TS)) | CR0_MP;
    // SAFETY: only the FPU bits change; paging and protection stay.
    unsafe { asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack)) };
    super::trap::probe_write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT)
}

/// FXSAVE64: the whole x87/SSE state into `area`.
pub fn fxsave(area: &mut FxArea) {
    // SAFETY: the area is 512 bytes, 16-aligned and exclusively
    // borrowed; `enable_sse` ran (no #NM/#UD).
    unsafe { asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
}

/// FXRSTOR64: loads the whole x87/SSE state from `area`, whose MXCSR
/// must have no reserved bit set (else #GP).
pub fn fxrstor(area: &FxArea) {
    // SAFETY: as in `fxsave`; reads only the area.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack, readonly)) };
}

/// DR0..DR3, DR6, DR7 by number; other numbers read as 0.
pub fn read_dr(n: u8) -> u64 {
    let value: u64;
    // SAFETY: reading a debug register has no side effects (CR4.DE is
    // clear, so DR4/5 are not used here).
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) value, options(nomem, nostack)),
            1 => asm!("mov {}, dr1", out(reg) value, options(nomem, nostack)),
            2 => asm!("mov {}, dr2", out(reg) value, options(nomem, nostack)),
            3 => asm!("mov {}, dr3", out(reg) value, options(nomem, nostack)),
            6 => asm!("mov {}, dr6", out(reg) value, options(nomem, nostack)),
            7 => asm!("mov {}, dr7", out(reg) value, options(nomem, nostack)),
            _ => value = 0,
        }
    }
    value
}

/// Writes DR`n` (0..=3 or 7; others are ignored). The caller arms
/// breakpoints (DR7) only on addresses it never touches: the shim has
/// no #DB handler.
pub fn write_dr(n: u8, value: u64) {
    // SAFETY: DR0-3 only hold addresses; DR7 arms them, and the caller
    // keeps armed addresses untouched, so no #DB is raised.
    unsafe {
        match n {
            7 => asm!("mov dr7, {}", in(reg) value, options(nomem, nostack)),
            0 => asm!("mov dr0, {}", in(reg) value, options(nomem, nostack)),
            1 => asm!("mov dr1, {}", in(reg) value, options(nomem, nostack)),
            2 => asm!("mov dr2, {}", in(reg) value, options(nomem, nostack)),
            3 => asm!("mov dr3, {}", in(reg) value, options(nomem, nostack)),
            _ => {}
        }
    }
}
