//! The application processors (APs): found in the MADT, started with
//! INIT-SIPI-SIPI through a real-mode trampoline below 1 MiB
//! (`ap_boot.S`), each given what the boot pCPU has (its own stacks with
//! guard pages, GDT, TSS with IST stacks, IDT, local APIC, EFER.SVME and
//! host save area), then left in an idle loop that a kick IPI
//! ([`apic::KICK_VECTOR`]) wakes, until the machine runs and every pCPU
//! runs vCPUs ([`machine::ap_main`]). AMD APM vol. 2 §16.5; Intel SDM vol. 3
//! §9.4.4 "MP Initialization Example" for the timing.
//!
//! One AP starts at a time: the boot pCPU leaves a ticket (pCPU index + 1)
//! that the AP takes with one XCHG before it touches memory. An AP that
//! takes no ticket within [`AP_START_TIMEOUT_NS`], or does not finish its
//! set-up within the same again, is sent INIT (parked until the next
//! STARTUP, which never comes), logged and left out; its index goes to
//! the next AP.

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use abi::convert::u32_const;
use x86_64::instructions::interrupts;

use super::cpu::{self, MAX_PCPUS};
use super::fatal::fatal;
use super::{apic, machine, svm, tsc};
use crate::boot_info::{BootInfo, MemKind, LOW_MEMORY};
use crate::mm::stacks::StackArea;
use crate::mm::PhysRange;
use crate::platform::Platform;
use crate::time::NS_PER_SEC;

core::arch::global_asm!(
    include_str!("ap_boot.S"),
    ticket = sym AP_TICKET,
    entry = sym ap_entry,
    stride = const StackArea::main_top(1) - StackArea::main_top(0),
    top = const StackArea::main_top(0),
    options(att_syntax)
);

extern "C" {
    /// First byte of the real-mode trampoline (ap_boot.S).
    static ap_trampoline_start: u8;
    /// One past its last byte.
    static ap_trampoline_end: u8;
}

/// The page the trampoline is copied to: the STARTUP IPI's vector is its
/// page number. Below 1 MiB ([`LOW_MEMORY`], which the frame allocator
/// never hands out) and clear of the real-mode IVT and BIOS data area.
const TRAMPOLINE_PAGE: u8 = 0x08;
/// Physical address of [`TRAMPOLINE_PAGE`].
const TRAMPOLINE_PA: u64 = (TRAMPOLINE_PAGE as u64) << 12;
/// Wait after INIT before the first STARTUP IPI (Intel SDM: 10 ms).
const INIT_DELAY_NS: u64 = 10_000_000;
/// Wait after a STARTUP IPI before the second one (Intel SDM: 200 µs).
const SIPI_DELAY_NS: u64 = 200_000;
/// How long an AP gets to take its ticket after the second STARTUP IPI,
/// and again to finish its set-up (QEMU's TCG on a loaded host may be
/// slow to schedule a new vCPU thread).
pub const AP_START_TIMEOUT_NS: u64 = 5 * NS_PER_SEC;
/// How long an idle AP gets to answer the boot-time kick.
const KICK_TIMEOUT_NS: u64 = NS_PER_SEC;

/// Where an AP is in its start-up.
const STATE_OFFLINE: u8 = 0;
const STATE_ONLINE: u8 = 1;
const STATE_FAILED: u8 = 2;

/// The ticket the next AP takes (pCPU index + 1; 0 = none offered).
static AP_TICKET: AtomicU32 = AtomicU32::new(0);
/// Each pCPU's state (index 0, the boot pCPU, is online once
/// [`start_aps`] ran).
static STATE: [AtomicU8; MAX_PCPUS] = [const { AtomicU8::new(STATE_OFFLINE) }; MAX_PCPUS];
/// Each online pCPU's local APIC id, as it read it itself.
static APIC_ID: [AtomicU32; MAX_PCPUS] = [const { AtomicU32::new(0) }; MAX_PCPUS];
/// Kick IPIs each pCPU's idle loop has seen.
static KICKS_SEEN: [AtomicU64; MAX_PCPUS] = [const { AtomicU64::new(0) }; MAX_PCPUS];
/// pCPUs online (the boot pCPU included); 1 before [`start_aps`].
static ONLINE: AtomicU32 = AtomicU32::new(1);

/// pCPUs online: the boot pCPU and every AP that started.
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

/// Starts every enabled processor of the MADT but the boot pCPU (at
/// most [`MAX_PCPUS`] in all) and logs the result. Needs the TSC and
/// the boot pCPU's APIC ([`apic::init`]) and interrupts off.
pub fn start_aps(platform: &Platform, info: &BootInfo) {
    let bsp = apic::id();
    APIC_ID[0].store(bsp, Ordering::Relaxed);
    STATE[0].store(STATE_ONLINE, Ordering::Release);
    let ids = platform.local_apic_ids();
    log::info!(
        "smp: the MADT lists {} pCPUs (APIC ids{}), the boot pCPU is APIC id {bsp}",
        ids.len(),
        IdList(ids)
    );
    let aps = ids.iter().copied().filter(|&id| id != bsp);
    if aps.clone().next().is_some() {
        match install_trampoline(info) {
            Ok(()) => start_each(aps),
            Err(why) => log::warn!("smp: no trampoline page ({why}): the APs stay off"),
        }
    }
    let online = online();
    let up: heapless::Vec<u32, MAX_PCPUS> = APIC_ID
        .iter()
        .take(online as usize)
        .map(|id| id.load(Ordering::Relaxed))
        .collect();
    log::info!("xen-core: {online} pCPUs (APIC ids{})", IdList(&up));
    for cpu in 1..online as usize {
        check_kick(cpu);
    }
}

/// Starts the APs `ids` one after the other, each at the next free index.
fn start_each(ids: impl Iterator<Item = u32>) {
    let mut index: u32 = 1;
    for id in ids {
        if index == u32_const::<MAX_PCPUS>() {
            log::warn!("smp: APIC id {id} and later left out: xen-core runs {MAX_PCPUS} pCPUs");
            break;
        }
        if id > apic::MAX_XAPIC_ID {
            log::warn!("smp: APIC id {id} left out: beyond xAPIC's 8-bit ids");
            continue;
        }
        match start_one(id, index) {
            Ok(()) => {
                log::info!("smp: pCPU {index} (APIC id {id}) up");
                ONLINE.store(index + 1, Ordering::Release);
                index += 1;
            }
            Err(why) => {
                // INIT parks it, wherever it is, until a STARTUP IPI.
                apic::send_init(id);
                log::warn!("smp: APIC id {id} left out: {why}");
            }
        }
    }
}

/// INIT, STARTUP, STARTUP (the second only if the first did not take),
/// then waits for the AP to come online as pCPU `index`.
fn start_one(id: u32, index: u32) -> Result<(), &'static str> {
    let slot = &STATE[index as usize];
    slot.store(STATE_OFFLINE, Ordering::Relaxed);
    AP_TICKET.store(index + 1, Ordering::Release);
    apic::send_init(id);
    spin_ns(INIT_DELAY_NS);
    apic::send_startup(id, TRAMPOLINE_PAGE);
    if !wait_ns(SIPI_DELAY_NS, ticket_taken) {
        apic::send_startup(id, TRAMPOLINE_PAGE);
    }
    if !wait_ns(AP_START_TIMEOUT_NS, ticket_taken) {
        // Take the ticket back: if the AP still gets there, it finds 0
        // and halts (or took it just now, and is starting after all).
        if AP_TICKET.swap(0, Ordering::AcqRel) != 0 {
            return Err("it did not run the trampoline");
        }
    }
    let state = || slot.load(Ordering::Acquire);
    if !wait_ns(AP_START_TIMEOUT_NS, || state() != STATE_OFFLINE) {
        return Err("it did not finish its set-up");
    }
    match state() {
        STATE_ONLINE => Ok(()),
        _ => Err("its set-up failed"),
    }
}

fn ticket_taken() -> bool {
    AP_TICKET.load(Ordering::Acquire) == 0
}

/// Sends pCPU `cpu` the kick IPI and logs how long its idle loop took to
/// see it (a warning if it did not within [`KICK_TIMEOUT_NS`]).
fn check_kick(cpu: usize) {
    let before = KICKS_SEEN[cpu].load(Ordering::Acquire);
    let start = tsc::now();
    kick(cpu);
    let answered = wait_ns(KICK_TIMEOUT_NS, || {
        KICKS_SEEN[cpu].load(Ordering::Acquire) != before
    });
    let ns = tsc::mul_div_ceil(tsc::now() - start, NS_PER_SEC, tsc::hz().max(1));
    if answered {
        log::info!("smp: pCPU {cpu} woke on a kick IPI in {} us", ns / 1000);
    } else {
        log::warn!("smp: pCPU {cpu} did not answer a kick IPI");
    }
}

/// Sends the kick IPI to online pCPU `cpu`: it leaves HLT (or, in guest
/// mode, exits) and looks at its work. Nothing if `cpu` is not online.
pub fn kick(cpu: usize) {
    send_to_online(cpu, apic::KICK_VECTOR);
}

/// Sends the wake IPI to online pCPU `cpu`: it leaves HLT and looks at
/// the lock it waits on, and nothing else (`apic::WAKE_VECTOR`).
pub fn wake(cpu: usize) {
    send_to_online(cpu, apic::WAKE_VECTOR);
}

fn send_to_online(cpu: usize, vector: u8) {
    if STATE.get(cpu).map(|s| s.load(Ordering::Acquire)) == Some(STATE_ONLINE) {
        apic::send_ipi(APIC_ID[cpu].load(Ordering::Relaxed), vector);
    }
}

/// Copies the trampoline to [`TRAMPOLINE_PA`] once the memory map says
/// the page is RAM and no boot table lies there.
fn install_trampoline(info: &BootInfo) -> Result<(), &'static str> {
    // Labels of ap_boot.S: only their addresses are used.
    let start = (&raw const ap_trampoline_start) as usize;
    let end = (&raw const ap_trampoline_end) as usize;
    let len = end - start;
    let page = PhysRange {
        start: TRAMPOLINE_PA,
        end: TRAMPOLINE_PA + crate::mm::PAGE_SIZE as u64,
    };
    if len > crate::mm::PAGE_SIZE || page.end > LOW_MEMORY.end {
        fatal(format_args!("smp: the trampoline does not fit its page"));
    }
    let in_ram = info
        .memmap()
        .iter()
        .any(|r| r.kind == MemKind::Ram && r.range.start <= page.start && page.end <= r.range.end);
    if !in_ram {
        return Err("it is not RAM");
    }
    let taken = info
        .reserved(super::mem::image())
        .filter(|r| *r != LOW_MEMORY)
        .any(|r| r.overlaps(&page));
    if taken {
        return Err("a boot table lies there");
    }
    // SAFETY: the page is RAM below 1 MiB (checked), which the frame
    // allocator never hands out and no Rust object or boot table
    // occupies (checked), identity-mapped; only APs starting read it.
    unsafe { ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE_PA as *mut u8, len) };
    Ok(())
}

/// Called by ap_start64 on pCPU `index`'s main stack, interrupts off.
extern "C" fn ap_entry(index: u32) -> ! {
    let index = index as usize;
    cpu::init_this_cpu(index);
    apic::init_ap();
    APIC_ID[index].store(apic::id(), Ordering::Relaxed);
    if let Err(e) = svm::enable_this_cpu() {
        log::error!("smp: pCPU {index}: svm: {e}");
        STATE[index].store(STATE_FAILED, Ordering::Release);
        halt_forever();
    }
    STATE[index].store(STATE_ONLINE, Ordering::Release);
    idle_loop(index)
}

/// An AP's life until the machine runs: halt until an interrupt; count
/// the kicks. The kick that publishes the machine sends it to
/// [`machine::ap_main`], to run vCPUs.
fn idle_loop(index: usize) -> ! {
    loop {
        if machine::started() {
            machine::ap_main(index);
        }
        // STI's one-instruction shadow: a kick that arrived while
        // interrupts were off ends the HLT instead of being missed.
        interrupts::enable_and_hlt();
        interrupts::disable();
        if apic::take_kicked() {
            KICKS_SEEN[index].fetch_add(1, Ordering::AcqRel);
        }
        apic::take_timer_fired();
    }
}

fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Busy-waits `ns` nanoseconds of TSC time.
fn spin_ns(ns: u64) {
    wait_ns(ns, || false);
}

/// Busy-waits until `done` or `ns` nanoseconds have passed; whether
/// `done` became true.
fn wait_ns(ns: u64, done: impl Fn() -> bool) -> bool {
    let deadline = tsc::now().saturating_add(tsc::mul_div_ceil(ns, tsc::hz(), NS_PER_SEC));
    loop {
        if done() {
            return true;
        }
        if tsc::now() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// APIC ids printed as ` 0 1 2 3`.
struct IdList<'a>(&'a [u32]);

impl core::fmt::Display for IdList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|id| write!(f, " {id}"))
    }
}
