//! `fpuprobe`: checks that the hypervisor keeps each vCPU's x87/SSE
//! registers, MXCSR and DR0-DR3 to itself (issue 8). Run two at once with
//! different `seed=`s: each fills the registers with its own pattern,
//! then yields `rounds=` times (default 2000) and checks after every
//! yield that nothing changed; a value the other domain wrote, or a lost
//! one, is a leak. It also checks the state a new vCPU starts with
//! (FNINIT, MXCSR 0x1F80, zero registers) and that a CR4 bit CPUID hides
//! (VMXE, UMIP) gets #GP.
//!
//! `dr7=armed` also arms the four breakpoints (8-byte data writes to
//! addresses nothing touches), so the hypervisor must load DR0-3 before
//! every run of this vCPU instead of on its first DR access.
//!
//! Path lengths are measured by `cargo xtask bench` (the `pathlen` guest).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::fpu::{self, FxArea};
    use guest_pv_shim::arch::trap::{self, Exception};
    use guest_pv_shim::{println, Boot, ShutdownReason, Xen};

    /// FCW after FNINIT.
    const FCW_DEFAULT: u16 = 0x037f;
    /// MXCSR at reset.
    const MXCSR_DEFAULT: u32 = 0x1f80;
    /// DR6 and DR7 at reset.
    const DR6_DEFAULT: u64 = 0xffff_0ff0;
    const DR7_DEFAULT: u64 = 0x400;
    /// CR4.UMIP and CR4.VMXE: qemu64's CPUID offers neither.
    const CR4_UMIP: u64 = 1 << 11;
    const CR4_VMXE: u64 = 1 << 13;
    const DEFAULT_ROUNDS: u32 = 2000;
    /// DR7 with L0-L3/G0-G3 set, each an 8-byte data-write breakpoint.
    const DR7_ARMED: u64 = 0xdddd_0000 | DR7_DEFAULT | 0xff;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let arg = |key| {
            start_info
                .cmdline_arg(key)
                .and_then(|v| v.parse::<u32>().ok())
        };
        let seed = arg("seed").and_then(|s| u8::try_from(s).ok()).unwrap_or(1);
        let rounds = arg("rounds").unwrap_or(DEFAULT_ROUNDS);
        if let Err(e) = fpu::enable_sse() {
            println!("fpuprobe: enabling SSE failed: {e}");
            xen.shutdown(ShutdownReason::Crash);
        }
        let dr7 = if start_info.cmdline_arg("dr7") == Some("armed") {
            DR7_ARMED
        } else {
            DR7_DEFAULT
        };
        let ok = initial_state_is_clean()
            && isolated(&xen, seed, dr7, rounds)
            && hidden_cr4_bits_fault();
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    /// A new vCPU: FNINIT state, MXCSR 0x1F80, every x87/XMM register
    /// zero, DR0-3 zero, DR6/DR7 at reset.
    fn initial_state_is_clean() -> bool {
        let mut now = FxArea::zeroed();
        fpu::fxsave(&mut now);
        let mut expected = FxArea::zeroed();
        expected.0[0..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
        expected.0[24..28].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
        let fpu_clean = compare(&expected, &now, "initial state");
        let drs = [0, 1, 2, 3, 6, 7].map(|n| (n, fpu::read_dr(n)));
        let drs_clean = drs.iter().all(|&(n, value)| {
            let want = match n {
                6 => DR6_DEFAULT,
                7 => DR7_DEFAULT,
                _ => 0,
            };
            if value != want {
                println!("fpuprobe: LEAK: initial state: dr{n}={value:#x} (expected {want:#x})");
            }
            value == want
        });
        if fpu_clean && drs_clean {
            println!("fpuprobe: initial state: FNINIT, MXCSR 0x1f80, st/xmm zero, dr0-3 zero, dr6/dr7 at reset");
        }
        fpu_clean && drs_clean
    }

    /// MOV to CR4 of a bit CPUID hides: #GP, and CR4 keeps its value.
    fn hidden_cr4_bits_fault() -> bool {
        let before = fpu::read_cr4();
        [("vmxe", CR4_VMXE), ("umip", CR4_UMIP)]
            .iter()
            .all(|&(name, bit)| {
                let got = trap::probe_write_cr4(before | bit);
                let after = fpu::read_cr4();
                match got {
                    Err(e) => {
                        println!("fpuprobe: cr4-{name}: got {e} (expected #GP), cr4 {after:#x}")
                    }
                    Ok(()) => println!(
                        "fpuprobe: cr4-{name}: got no fault (expected #GP), cr4 {after:#x}"
                    ),
                }
                got == Err(Exception::GP) && after == before
            })
    }

    /// This domain's values: distinct per seed and from the reset state.
    fn pattern(seed: u8) -> (FxArea, [u64; 4]) {
        let mut a = FxArea::zeroed();
        let fcw = 0x007f | (u16::from(seed & 3) << 10);
        let mxcsr = MXCSR_DEFAULT ^ (u32::from(seed & 3) << 13);
        a.0[0..2].copy_from_slice(&fcw.to_le_bytes());
        a.0[4] = 0xff;
        a.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        for i in 0..8u8 {
            let mantissa = 0x8000_5ec0_de00_0000 | u64::from(seed) << 8 | u64::from(i);
            let at = 32 + 16 * usize::from(i);
            a.0[at..at + 8].copy_from_slice(&mantissa.to_le_bytes());
            a.0[at + 8..at + 10].copy_from_slice(&0x3fffu16.to_le_bytes());
        }
        for i in 0..16u8 {
            let low = 0x5ec0_de00_0000_0000 | u64::from(seed) << 16 | u64::from(i);
            let at = 160 + 16 * usize::from(i);
            a.0[at..at + 8].copy_from_slice(&low.to_le_bytes());
            a.0[at + 8..at + 16].copy_from_slice(&(!low).to_le_bytes());
        }
        let drs = [0u64, 1, 2, 3].map(|n| 0x7f00_0000_0000 | u64::from(seed) << 12 | n << 4);
        (a, drs)
    }

    /// Loads the pattern (and `dr7`), then yields `rounds` times,
    /// checking after each.
    fn isolated(xen: &Xen, seed: u8, dr7: u64, rounds: u32) -> bool {
        let (mine, drs) = pattern(seed);
        fpu::fxrstor(&mine);
        for (n, value) in (0u8..).zip(drs) {
            fpu::write_dr(n, value);
        }
        fpu::write_dr(7, dr7);
        let drs = [drs[0], drs[1], drs[2], drs[3], dr7];
        let mut now = FxArea::zeroed();
        for round in 1..=rounds {
            if let Err(e) = xen.sched_yield() {
                println!("fpuprobe: yield failed: {e}");
                return false;
            }
            fpu::fxsave(&mut now);
            let what = "after a switch";
            let fpu_ok = compare(&mine, &now, what);
            let drs_ok = [0u8, 1, 2, 3, 7].into_iter().zip(drs).all(|(n, want)| {
                let got = fpu::read_dr(n);
                if got != want {
                    println!("fpuprobe: LEAK: {what}: dr{n}={got:#x} (expected {want:#x})");
                }
                got == want
            });
            if !(fpu_ok && drs_ok) {
                println!("fpuprobe: round {round}: state changed");
                return false;
            }
            if round % (rounds / 4).max(1) == 0 {
                println!("fpuprobe: round {round}: x87/SSE/MXCSR and dr0-3/dr7 intact");
            }
        }
        println!("fpuprobe: {rounds} yields: no value lost or leaked");
        true
    }

    /// Compares the architectural parts of two FXSAVE images (FCW, FSW,
    /// FTW, MXCSR, ST0-7, XMM0-15; not the last-instruction pointers).
    fn compare(want: &FxArea, got: &FxArea, what: &str) -> bool {
        let mut fields = [("fcw/fsw/ftw", 0..5), ("mxcsr", 24..28)]
            .into_iter()
            .chain((0..8).map(|i| ("st", 32 + 16 * i..42 + 16 * i)))
            .chain((0..16).map(|i| ("xmm", 160 + 16 * i..176 + 16 * i)));
        fields.all(|(name, range)| {
            let same = want.0[range.clone()] == got.0[range.clone()];
            if !same {
                let at = range.start;
                println!(
                    "fpuprobe: LEAK: {what}: {name} at byte {at}: got {:02x?} (expected {:02x?})",
                    &got.0[range.clone()],
                    &want.0[range]
                );
            }
            same
        })
    }
}
