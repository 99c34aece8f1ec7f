//! Per-vCPU CPU state that VMRUN and #VMEXIT do not switch: x87/SSE
//! registers and MXCSR, and debug registers DR0-DR3 (DR6 and DR7 live in
//! the VMCB save area).
//!
//! - FPU/SSE: switched eagerly whenever a pCPU starts running a vCPU
//!   other than the one whose state it holds: FXSAVE64 into the owner's
//!   area, FXRSTOR64 from the next one's. XSAVE is hidden from guests
//!   (CPUID leaf 1 ECX.XSAVE clear, XSETBV refused), so the legacy
//!   512-byte area is all the state they can have.
//! - DR0-DR3: switched lazily, as Xen's SVM code does (`svm_dr_access`,
//!   `svm_save_dr`): a vCPU starts with every DR access intercepted; its
//!   first access loads its DR0-3 and lifts the intercepts, and they are
//!   saved and re-armed when another vCPU takes the pCPU.
//!
//! xen-core itself never touches x87/SSE (its target is soft-float) or
//! the debug registers, so the guest's values stay in the CPU between
//! its runs. Sources: AMD64 APM vol. 2, §11.4.4 (FXSAVE area), §13.1.1
//! (debug registers); Xen's `xen/arch/x86/i387.c`.

use core::arch::asm;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use crate::mm::PAGE_SIZE;

/// FCW after FNINIT: all exceptions masked, 64-bit precision, round to
/// nearest.
const FCW_DEFAULT: u16 = 0x037f;
/// MXCSR at reset: all SIMD exceptions masked, round to nearest.
pub const MXCSR_DEFAULT: u32 = 0x1f80;

/// The FXSAVE area (APM vol. 2, table 11-7): 512 bytes, 16-aligned.
#[repr(C, align(16))]
struct FxsaveArea([u8; 512]);

impl FxsaveArea {
    /// FNINIT state with the default MXCSR, every register zero.
    fn initial() -> Self {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
        area[24..28].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
        FxsaveArea(area)
    }

    /// FSW (bytes 2..4) and FCW (bytes 0..2).
    fn status_and_control(&self) -> (u16, u16) {
        let word = |at: usize| u16::from_le_bytes([self.0[at], self.0[at + 1]]);
        (word(2), word(0))
    }
}

/// One vCPU's switched state, in a frame of its own (accounted like the
/// VMCB, and at a stable address while the [`super::SvmVcpu`] that owns
/// it moves). An all-zero frame is a valid `ExtState`; [`ExtState::reset`]
/// then gives it a new vCPU's values.
#[repr(C)]
pub struct ExtState {
    fpu: FxsaveArea,
    dr: [u64; 4],
    /// DR0-3 are in the CPU and DR accesses are not intercepted.
    dr_loaded: bool,
}

const _: () = assert!(core::mem::size_of::<ExtState>() <= PAGE_SIZE);

/// Whose state each pCPU's registers hold (null: nobody's). A vCPU's
/// state stays in a pCPU's registers only while the scheduler keeps it
/// that pCPU's vCPU: the run loop saves it ([`save_this_pcpu`]) as soon
/// as the pCPU turns to another vCPU or idles, before the vCPU may be
/// picked elsewhere (Xen saves eagerly at every context switch too).
static OWNER: [AtomicPtr<ExtState>; MAX_PCPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_PCPUS];

/// This pCPU's owner slot.
fn owner() -> &'static AtomicPtr<ExtState> {
    // this_cpu().index < MAX_PCPUS (cpu::init_this_cpu checks it).
    &OWNER[this_cpu().index % MAX_PCPUS]
}

/// Saves the state this pCPU's registers hold into its vCPU's area and
/// forgets it: the vCPU may now run on another pCPU. Called with the
/// scheduler's lock held, when this pCPU stops being that vCPU's.
pub fn save_this_pcpu() {
    let previous = owner().swap(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: a non-null owner is the live ExtState of a vCPU this pCPU
    // ran last (`release` clears it before the frame is freed); that
    // vCPU is not running anywhere (this pCPU turned from it, and no
    // other pCPU may pick it before this returns, under the scheduler's
    // lock), so this is the only access.
    if let Some(previous) = unsafe { previous.as_mut() } {
        previous.save();
    }
}

impl ExtState {
    /// A new vCPU's state: FNINIT, MXCSR 0x1F80, DR0-3 zero.
    pub fn reset(&mut self) {
        *self = ExtState {
            fpu: FxsaveArea::initial(),
            dr: [0; 4],
            dr_loaded: false,
        };
    }

    /// Makes this pCPU's FPU hold `self`'s state, saving the previous
    /// owner's first. Returns true if it switched: the caller must then
    /// intercept DR accesses again (`self`'s DR0-3 are not loaded).
    pub fn make_current(&mut self) -> bool {
        let me: *mut ExtState = self;
        let previous = owner().swap(me, Ordering::Relaxed);
        if previous == me {
            return false;
        }
        // SAFETY: a non-null owner is the live ExtState of another vCPU
        // this pCPU ran (`release` clears it before it is freed); the run
        // loop saves it before that vCPU can run elsewhere
        // ([`save_this_pcpu`]), so it is not running and this is the only
        // access.
        if let Some(previous) = unsafe { previous.as_mut() } {
            previous.save();
        }
        self.restore_fpu();
        self.dr_loaded = false;
        true
    }

    /// Loads DR0-3 into the CPU (the vCPU's first DR access since it was
    /// switched in); the caller lifts the DR intercepts.
    pub fn load_debug_registers(&mut self) {
        let [dr0, dr1, dr2, dr3] = self.dr;
        // SAFETY: writing DR0-3 sets breakpoint addresses only; host DR7
        // is 0x400 after every #VMEXIT (APM vol. 2, §15.6), so none is
        // armed in host mode, and the guest's DR7 comes from its VMCB.
        unsafe {
            asm!(
                "mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}",
                in(reg) dr0, in(reg) dr1, in(reg) dr2, in(reg) dr3,
                options(nomem, nostack, preserves_flags)
            );
        }
        self.dr_loaded = true;
    }

    /// The vCPU is going away: nobody's state needs saving any more.
    pub fn release(&mut self) {
        let me: *mut ExtState = self;
        for owner in &OWNER {
            let _ = owner.compare_exchange(
                me,
                core::ptr::null_mut(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn save(&mut self) {
        // SAFETY: the area is 512 bytes, 16-aligned and exclusively
        // borrowed; host CR0.EM/TS are clear and CR4.OSFXSR is set
        // (cpu::init_boot_cpu), so FXSAVE64 stores the XMM registers too.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.fpu.0.as_mut_ptr(), options(nostack)) };
        if self.dr_loaded {
            let (dr0, dr1, dr2, dr3): (u64, u64, u64, u64);
            // SAFETY: reading debug registers has no side effects.
            unsafe {
                asm!(
                    "mov {}, dr0", "mov {}, dr1", "mov {}, dr2", "mov {}, dr3",
                    out(reg) dr0, out(reg) dr1, out(reg) dr2, out(reg) dr3,
                    options(nomem, nostack, preserves_flags)
                );
            }
            self.dr = [dr0, dr1, dr2, dr3];
            self.dr_loaded = false;
        }
    }

    fn restore_fpu(&mut self) {
        // AMD CPUs save and restore FIP/FDP/FOP only while an unmasked
        // exception is pending: without one, clear the previous owner's
        // pointers with a dummy load first, as Xen's fpu_fxrstor does.
        let (fsw, fcw) = self.fpu.status_and_control();
        if fsw & !fcw & 0x3f == 0 {
            // SAFETY: FNCLEX/FFREE/FILD only change x87 state, which
            // FXRSTOR64 replaces next; the operand is 4 readable bytes.
            unsafe {
                asm!(
                    "fnclex", "ffree st(7)", "fild dword ptr [{}]",
                    in(reg) self.fpu.0.as_ptr(),
                    options(nostack, readonly)
                );
            }
        }
        // SAFETY: the area holds either FXSAVE64 output or `initial()`,
        // whose MXCSR has no reserved bit set, so FXRSTOR64 cannot fault.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.fpu.0.as_ptr(), options(nostack, readonly)) };
    }
}
