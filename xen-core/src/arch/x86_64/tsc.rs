//! The time-stamp counter, xen-core's clock: its rate is measured once at
//! boot against the i8254 PIT's channel 2 (1.193182 MHz, gated through
//! port 0x61 as on the IBM PC AT), and [`now`] reads it with RDTSC.
//!
//! Under QEMU TCG the TSC follows the host's TSC; with `-icount
//! shift=0,sleep=off` it counts executed instructions, one per virtual
//! nanosecond. The PIT runs on the same virtual clock in both cases, so the
//! measured rate is the one guests see (the host TSC rate, or 1 GHz).
//!
//! System time (ns since [`init`]) uses the pvclock scale guests use
//! ([`crate::time::scale_delta`]), so it equals what
//! `time::Clock::new(hz(), boot_tsc(), ..)` computes.

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};

use abi::xen::shared_info::TimeScale;
use spin::Once;
use x86_64::instructions::port::Port;

use crate::time::{scale_delta, NS_PER_SEC};

/// PIT input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: at least 2 ms of PIT ticks (one tick is 838 ns, so
/// the edge-to-edge measurement is within 0.04%). Short: under icount
/// every nanosecond of waiting is an instruction of the boot.
const WINDOW_PIT_TICKS: u16 = 2_387;
const _: () = assert!(WINDOW_PIT_TICKS as u64 == PIT_HZ / 500 + 1);
/// Windows measured; their median rate is taken (a delay that stretches
/// one window, on a busy host, moves neither end of the others).
const CALIBRATION_TRIES: usize = 3;
/// TSC rates outside this range are measurement failures (Hz).
const PLAUSIBLE_HZ: core::ops::RangeInclusive<u64> = 100_000_000..=20_000_000_000;
/// The rate assumed when calibration fails (Hz).
const FALLBACK_HZ: u64 = 1_000_000_000;

/// Port 0x61 (system control port B): bit 0 gates PIT channel 2, bit 1
/// drives the speaker from it.
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
/// PIT channel 2 data and the mode/command port.
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Channel 2, low then high byte, mode 0 (output rises at terminal count),
/// binary.
const PIT_CH2_MODE0: u8 = 0b1011_0000;
/// Counter latch command of channel 2 (SC = 10, RW = 00).
const PIT_CH2_LATCH: u8 = 0b1000_0000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// The TSC at [`init`]: system time 0.
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC ticks to ns, from [`TSC_HZ`].
static SCALE: Once<TimeScale> = Once::new();

/// Measures the TSC rate, takes system time 0, and returns the rate (Hz).
/// Interrupts must be off (nothing may stretch the windows).
pub fn init() -> u64 {
    let mut rates = [0u64; CALIBRATION_TRIES];
    let mut measured_windows = 0;
    for rate in &mut rates {
        if let Some((tsc_ticks, pit_ticks)) = measure_window() {
            *rate = tsc_ticks * PIT_HZ / pit_ticks;
            measured_windows += 1;
        }
    }
    let measured = crate::time::median(&mut rates[..measured_windows]);
    let hz = match measured {
        Some(hz) if PLAUSIBLE_HZ.contains(&hz) => hz,
        _ => {
            log::warn!(
                "tsc: calibration against the PIT gave {measured:?} Hz; assuming {} MHz",
                FALLBACK_HZ / 1_000_000
            );
            FALLBACK_HZ
        }
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    if let Some(scale) = TimeScale::from_tsc_hz(hz) {
        SCALE.call_once(|| scale);
    }
    BOOT_TSC.store(now(), Ordering::Relaxed);
    hz
}

/// One window, from a PIT edge to a PIT edge at least
/// [`WINDOW_PIT_TICKS`] later: (TSC ticks, PIT ticks) between them, or
/// `None` if the counter stood still (no PIT) for as many TSC ticks as
/// the fastest plausible TSC makes in the window.
///
/// Both ends are read right after the counter changed, so the TSC and the
/// PIT are sampled at the same phase: the time the loop takes to notice a
/// change is on both sides and cancels out.
fn measure_window() -> Option<(u64, u64)> {
    let mut port_b = Port::<u8>::new(PORT_B);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut channel2 = Port::<u8>::new(PIT_CHANNEL2);
    let give_up = PLAUSIBLE_HZ.end() / 400;
    // SAFETY: ports 0x61, 0x42 and 0x43 are the PC's system control port
    // and PIT, which xen-core alone drives; the speaker stays off and no
    // memory is touched.
    unsafe {
        let control = port_b.read();
        port_b.write((control & !PORT_B_SPEAKER) | PORT_B_GATE2);
        command.write(PIT_CH2_MODE0);
        // The longest count: the window ends long before it runs out.
        channel2.write(0xff);
        channel2.write(0xff);
    }
    let mut read = || {
        // SAFETY: as above; latching then reading low and high byte is
        // the PIT's read-back of channel 2's count.
        unsafe {
            command.write(PIT_CH2_LATCH);
            u16::from_le_bytes([channel2.read(), channel2.read()])
        }
    };
    let (start_count, start) = next_edge(&mut read, give_up)?;
    loop {
        let (count, at) = next_edge(&mut read, give_up)?;
        let pit_ticks = u64::from(start_count.wrapping_sub(count));
        if pit_ticks >= u64::from(WINDOW_PIT_TICKS) {
            return Some((at.wrapping_sub(start), pit_ticks));
        }
    }
}

/// Waits for the PIT count `read` returns to change: the new count and
/// the TSC right after; `None` after `give_up` TSC ticks without change.
fn next_edge(read: &mut impl FnMut() -> u16, give_up: u64) -> Option<(u16, u64)> {
    let first = read();
    let since = now();
    loop {
        let count = read();
        let at = now();
        if count != first {
            return Some((count, at));
        }
        if at.wrapping_sub(since) > give_up {
            return None;
        }
    }
}

/// The TSC.
pub fn now() -> u64 {
    // SAFETY: RDTSC only reads the counter; every x86_64 CPU has it and
    // xen-core never sets CR4.TSD.
    unsafe { _rdtsc() }
}

/// TSC ticks per second, measured by [`init`] (0 before).
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The TSC at system time 0 ([`init`]).
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// Nanoseconds since [`init`] (0 before).
pub fn system_time_ns() -> u64 {
    SCALE.get().map_or(0, |&scale| {
        scale_delta(now().saturating_sub(boot_tsc()), scale)
    })
}

/// The TSC value at system time `ns`, rounded up (a deadline converted
/// this way is never early by more than the scale's rounding, 1 ns), for
/// [`super::cpu_idle_until`] and [`super::apic::arm_at_tsc`]. Saturates.
pub fn tsc_at_ns(ns: u64) -> u64 {
    boot_tsc().saturating_add(mul_div_ceil(ns, hz(), NS_PER_SEC))
}

/// `a * b / c` rounded up, saturating at `u64::MAX`; `c` is not 0. Turns
/// a count at one rate into a count at another.
pub(super) fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    let q = (u128::from(a) * u128::from(b)).div_ceil(u128::from(c));
    u64::try_from(q).unwrap_or(u64::MAX)
}
