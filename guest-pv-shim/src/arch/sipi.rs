//! Starting a secondary vCPU as a PC starts an application processor
//! (Intel SDM vol. 3 §9.4.4, Linux's `wakeup_secondary_cpu_via_init`):
//! the real-mode trampoline of `entry.S` copied to a page below 1 MiB,
//! then INIT, STARTUP and STARTUP again through this vCPU's local APIC
//! (Xen's vlapic ignores the second STARTUP once the first has started
//! it). The trampoline goes through protected mode into long mode on the
//! BSP's page tables and joins the `VCPUOP_initialise` path of
//! [`super::smp`] at `shim_ap_start64`. vCPU `n`'s APIC id is `2n`, as
//! Xen numbers them.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::fpu::{read_cr0, read_cr4};
use super::hypercall::Xen;
use super::lapic::{self, DM_INIT, DM_STARTUP, INT_ASSERT, INT_LEVELTRIG};
use super::smp::{ap_entries, read_cr3, ApBoot};
use crate::error::XenError;

/// Real mode reaches the first MiB only: STARTUP vectors name pages
/// 0..=0xff.
const REAL_MODE_LIMIT: u64 = 0x10_0000;
const PAGE_SIZE: u64 = 4096;
/// CR0.TS: the new vCPU's FPU state is its own; it must not fault on it.
const CR0_TS: u64 = 1 << 3;
/// Yields the BSP waits for the new vCPU to reach its main.
const START_WAIT_YIELDS: u32 = 100_000;
/// [`AP_BOOT_ID`] when no vCPU is being started.
const NO_VCPU: u32 = u32::MAX;

/// The vCPU id the trampoline's long-mode landing (`shim_ap_tramp64`)
/// passes on: one vCPU at a time is started this way.
#[no_mangle]
static shim_ap_boot_id: AtomicU32 = AtomicU32::new(NO_VCPU);
/// Its stack pointer.
#[no_mangle]
static shim_ap_boot_stack: AtomicU64 = AtomicU64::new(0);

/// What the BSP writes at `shim_trampoline_params` in the copy: the
/// control registers long mode starts with (all below 4 GiB: the
/// trampoline loads them in 32-bit mode).
#[repr(C)]
struct TrampolineParams {
    cr0: u32,
    cr3: u32,
    cr4: u32,
}

extern "C" {
    static shim_trampoline_start: [u8; 0];
    static shim_trampoline_params: [u8; 0];
    static shim_trampoline_end: [u8; 0];
}

/// Why a STARTUP-IPI start failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipiError {
    /// The page is not page-aligned below 1 MiB, or the trampoline would
    /// not fit below 1 MiB there; or CR3 lies above 4 GiB.
    BadPage,
    /// Xen's error for the vCPU id (`-ENOENT`).
    Xen(XenError),
    /// The local APIC refused the ICR write (#GP: the vector).
    Apic(u8),
    /// The vCPU did not reach its main within [`START_WAIT_YIELDS`]
    /// yields.
    Timeout,
}

impl Xen {
    /// Starts vCPU `vcpu_id` with INIT-SIPI-SIPI at the trampoline,
    /// which this copies to `page` (page-aligned, below 1 MiB, RAM the
    /// guest does not otherwise use), and waits until it runs `main`. A
    /// vCPU that runs already ignores the STARTUPs but is reset by the
    /// INIT first: this restarts it.
    pub fn vcpu_start_sipi(
        &self,
        vcpu_id: u32,
        main: fn(ApBoot) -> !,
        page: u64,
    ) -> Result<(), SipiError> {
        let len = trampoline_len();
        let fits = page.is_multiple_of(PAGE_SIZE)
            && page
                .checked_add(len)
                .is_some_and(|end| end <= REAL_MODE_LIMIT);
        if !fits {
            return Err(SipiError::BadPage);
        }
        // Below 1 MiB, its page number fits the 8-bit STARTUP vector.
        let vector = u32::try_from(page / PAGE_SIZE).map_err(|_| SipiError::BadPage)?;
        // Long mode's control registers fit in 32 bits (their upper
        // halves are reserved); CR3 must lie below 4 GiB.
        let low = |v: u64| u32::try_from(v).map_err(|_| SipiError::BadPage);
        let params = TrampolineParams {
            cr0: low(read_cr0() & !CR0_TS)?,
            cr3: low(read_cr3())?,
            cr4: low(read_cr4())?,
        };
        let top = self.prepare_ap(vcpu_id, main).map_err(SipiError::Xen)?;
        copy_trampoline(page, params);
        shim_ap_boot_stack.store(top, Ordering::Release);
        shim_ap_boot_id.store(vcpu_id, Ordering::Release);
        let before = ap_entries(vcpu_id);
        let dest = vcpu_id.wrapping_mul(2);
        let apic = |icr| lapic::send_ipi(icr, dest).map_err(|e| SipiError::Apic(e.vector));
        apic(DM_INIT | INT_LEVELTRIG | INT_ASSERT)?;
        apic(DM_INIT | INT_LEVELTRIG)?;
        apic(DM_STARTUP | vector)?;
        apic(DM_STARTUP | vector)?;
        for _ in 0..START_WAIT_YIELDS {
            if ap_entries(vcpu_id) != before {
                break;
            }
            let _ = self.sched_yield();
        }
        shim_ap_boot_id.store(NO_VCPU, Ordering::Release);
        if ap_entries(vcpu_id) == before {
            return Err(SipiError::Timeout);
        }
        Ok(())
    }
}

/// The trampoline's length in bytes.
fn trampoline_len() -> u64 {
    // SAFETY: only the addresses of the linker symbols are taken.
    let (start, end) = unsafe {
        (
            shim_trampoline_start.as_ptr() as u64,
            shim_trampoline_end.as_ptr() as u64,
        )
    };
    end - start
}

/// Copies the trampoline to `page` and writes `params` into the copy.
fn copy_trampoline(page: u64, params: TrampolineParams) {
    // SAFETY: the linker symbols bound the trampoline's bytes in .rodata;
    // `page` is guest RAM below 1 MiB, identity-mapped by entry.S, that
    // the caller does not otherwise use, and holds the whole trampoline
    // (checked by the caller); the parameters lie inside it, 4-aligned.
    unsafe {
        let start = shim_trampoline_start.as_ptr();
        let offset = shim_trampoline_params.as_ptr().offset_from(start);
        let len = usize::try_from(trampoline_len()).unwrap_or(0);
        let dst = page as *mut u8;
        core::ptr::copy_nonoverlapping(start, dst, len);
        dst.offset(offset)
            .cast::<TrampolineParams>()
            .write_volatile(params);
    }
}
