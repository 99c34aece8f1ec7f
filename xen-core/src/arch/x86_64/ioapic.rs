//! The IO-APICs (Intel 82093AA register interface) and the device
//! interrupts they deliver: each GSI gets a vector of its own
//! ([`IRQ_VECTOR_BASE`] + GSI), fixed delivery in physical mode to the
//! boot pCPU's local APIC. Which pins are unmasked is decided by the
//! portable [`Routing`](crate::irq::Routing); [`program`] writes what it
//! decided.
//!
//! Registers (82093AA data sheet, §3.0): IOREGSEL at base + 0x00 selects
//! a register, IOWIN at base + 0x10 reads or writes it. Register 0x01
//! (IOAPICVER) bits 23:16 hold the last redirection entry; entry `n` is
//! registers 0x10 + 2n (low: vector 7:0, delivery mode 10:8, destination
//! mode 11, polarity 13 (1 = low), trigger 15 (1 = level), mask 16) and
//! 0x11 + 2n (destination APIC id in bits 31:24).
//!
//! The interrupt ([`device_interrupt`]) only records the GSI as pending
//! (a lock-free bitmap the run loop drains with [`take_pending`]), masks
//! a level-triggered pin (it stays asserted until the guest has serviced
//! the device and sent its EOI) and sends the local APIC's EOI. It can
//! only arrive at the boot pCPU where host code has interrupts on (the
//! idle HLT, the STGI after VMRUN), never while that pCPU is between
//! IOREGSEL and IOWIN. Another pCPU may be programming a pin then, so
//! every use of the register pair, the handler's read-modify-write and a
//! whole entry's writes, holds [`REGS`] (never held with interrupts on).

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use abi::convert::usize_from_u64;
use heapless::Vec;

use super::apic;
use super::fatal::fatal;
use crate::irq::{self, GsiConfig, PinState, Polarity, Trigger, MAX_GSIS};
use crate::platform::{IoApic, Platform, MAX_IO_APICS};

/// Vector of GSI 0; GSI `g` uses `IRQ_VECTOR_BASE + g`, below the APIC
/// timer's and above the PICs' remapped range (0x20..0x2f).
pub const IRQ_VECTOR_BASE: u8 = 0x30;
const _: () = assert!(IRQ_VECTOR_BASE as u32 + MAX_GSIS <= apic::TIMER_VECTOR as u32);

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_VER: u32 = 0x01;
const REG_REDTBL: u32 = 0x10;
const RTE_POLARITY_LOW: u32 = 1 << 13;
const RTE_TRIGGER_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 24;

/// An IO-APIC and its pin count.
#[derive(Clone, Copy, Debug)]
struct Chip {
    apic: IoApic,
    pins: u32,
}

/// The IO-APICs, set once at [`init`], read-only after (the interrupt
/// handler reads it).
static CHIPS: spin::Once<Vec<Chip, MAX_IO_APICS>> = spin::Once::new();
/// The boot pCPU's APIC id: every device interrupt goes there.
static DEST_APIC_ID: AtomicU64 = AtomicU64::new(0);
/// GSIs whose interrupt arrived and the run loop has not taken.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// GSIs programmed level-triggered (the handler masks them).
/// Held across every IOREGSEL/IOWIN sequence (module docs).
static REGS: spin::Mutex<()> = spin::Mutex::new(());
static LEVEL: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(MAX_GSIS <= u64::BITS);

/// Finds the platform's IO-APICs, maps their registers uncached, masks
/// every pin and returns each GSI's signalling for the routing
/// ([`irq::platform_gsis`]: defaults, PCI INTx modes from `_PRT` once
/// PCI is enumerated, MADT overrides). The 8259 PICs stay masked
/// (`pic.rs`). Interrupts must be off.
pub fn init(platform: &Platform) -> alloc::vec::Vec<Option<GsiConfig>> {
    let dest = platform.local_apic_ids().first().copied().unwrap_or(0);
    DEST_APIC_ID.store(u64::from(dest), Ordering::Relaxed);
    let chips = CHIPS.call_once(|| {
        let mut chips = Vec::new();
        for &a in platform.io_apics() {
            if a.address >= 1 << 32 || a.address % 16 != 0 {
                fatal(format_args!(
                    "ioapic: id {} at {:#x} is outside the identity map",
                    a.id, a.address
                ));
            }
            apic::map_uncached(a.address);
            let version = {
                let _regs = REGS.lock();
                read(a.address, REG_VER)
            };
            let pins = ((version >> 16) & 0xff) + 1;
            for pin in 0..pins {
                write_entry(a.address, pin, RTE_MASKED, 0);
            }
            log::info!(
                "ioapic: id {} at {:#x}: {pins} pins, GSIs {}..={}",
                a.id,
                a.address,
                a.gsi_base,
                a.gsi_base + pins - 1
            );
            // At most MAX_IO_APICS platform entries: cannot fail.
            let _ = chips.push(Chip { apic: a, pins });
        }
        chips
    });
    let pins = |a: &IoApic| chips.iter().find(|c| c.apic == *a).map_or(0, |c| c.pins);
    let intx_mode = |gsi| crate::pci::get()?.intx_mode(gsi);
    let gsis = irq::platform_gsis(platform, pins, intx_mode);
    log::info!(
        "ioapic: {} GSIs routed to vectors {:#x}.., to APIC id {dest}",
        gsis.len(),
        IRQ_VECTOR_BASE
    );
    gsis
}

/// Writes each pin the routing changed (vector, trigger, polarity,
/// mask, destination).
pub fn program(pins: impl Iterator<Item = PinState>) {
    for pin in pins {
        let Some((address, index)) = locate(pin.gsi) else {
            continue;
        };
        let level = pin.config.trigger == Trigger::Level;
        let bit = 1u64 << pin.gsi;
        if level {
            LEVEL.fetch_or(bit, Ordering::Relaxed);
        } else {
            LEVEL.fetch_and(!bit, Ordering::Relaxed);
        }
        write_entry(address, index, low_word(pin), high_word());
    }
}

/// The redirection entry's low word for `pin`.
fn low_word(pin: PinState) -> u32 {
    let mut low = u32::from(IRQ_VECTOR_BASE) + pin.gsi;
    if pin.config.polarity == Polarity::ActiveLow {
        low |= RTE_POLARITY_LOW;
    }
    if pin.config.trigger == Trigger::Level {
        low |= RTE_TRIGGER_LEVEL;
    }
    if pin.masked {
        low |= RTE_MASKED;
    }
    low
}

fn high_word() -> u32 {
    // An xAPIC id is 8 bits.
    let dest = (DEST_APIC_ID.load(Ordering::Relaxed) & 0xff) as u32;
    dest << RTE_DEST_SHIFT
}

/// The IO-APIC register base and pin of `gsi`.
fn locate(gsi: u32) -> Option<(u64, u32)> {
    CHIPS.get()?.iter().find_map(|c| {
        let pin = gsi.checked_sub(c.apic.gsi_base)?;
        (pin < c.pins).then_some((c.apic.address, pin))
    })
}

/// The GSIs whose interrupt arrived since the last call, as a bitmap.
pub fn take_pending() -> u64 {
    PENDING.swap(0, Ordering::Acquire)
}

/// Whether a device interrupt is waiting for the run loop.
pub fn any_pending() -> bool {
    PENDING.load(Ordering::Acquire) != 0
}

/// A device interrupt on `vector` (called by its stub, exceptions.rs):
/// records its GSI, masks a level pin, EOIs the local APIC.
pub(super) extern "C" fn device_interrupt(vector: u64) {
    let gsi = vector.wrapping_sub(u64::from(IRQ_VECTOR_BASE));
    if gsi < u64::from(MAX_GSIS) {
        let bit = 1u64 << gsi;
        if LEVEL.load(Ordering::Relaxed) & bit != 0 {
            if let Some((address, index)) = u32::try_from(gsi).ok().and_then(locate) {
                let _regs = REGS.lock();
                let low = read(address, REG_REDTBL + 2 * index);
                write(address, REG_REDTBL + 2 * index, low | RTE_MASKED);
            }
        }
        PENDING.fetch_or(bit, Ordering::Release);
    }
    apic::eoi();
}

fn write_entry(address: u64, pin: u32, low: u32, high: u32) {
    let _regs = REGS.lock();
    // Masked first, so the pin never fires half-programmed.
    write(address, REG_REDTBL + 2 * pin, RTE_MASKED);
    write(address, REG_REDTBL + 2 * pin + 1, high);
    write(address, REG_REDTBL + 2 * pin, low);
}

fn read(address: u64, reg: u32) -> u32 {
    // SAFETY: `address` is an IO-APIC's register window from the MADT,
    // inside the identity map and mapped uncached at `init`; IOREGSEL and
    // IOWIN are 32-bit registers there. Callers hold REGS, so no two
    // sequences interleave (module docs).
    unsafe {
        ptr::write_volatile(window(address, IOREGSEL), reg);
        ptr::read_volatile(window(address, IOWIN))
    }
}

fn write(address: u64, reg: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe {
        ptr::write_volatile(window(address, IOREGSEL), reg);
        ptr::write_volatile(window(address, IOWIN), value);
    }
}

fn window(address: u64, offset: usize) -> *mut u32 {
    (usize_from_u64(address) + offset) as *mut u32
}
