//! Secondary vCPUs: [`Xen::vcpu_start`] initialises vCPU `n` with
//! `VCPUOP_initialise` in 64-bit mode (Xen's `vcpu_hvm_x86_64`: the BSP's
//! CR0, CR3, CR4, EFER.LME, RIP at `shim_ap_start64` in `entry.S`, RSP
//! the top of the stack it is given, RDI its id) and brings it up with
//! `VCPUOP_up`. It loads the shim's GDT and IDT and runs the guest's
//! `main(ApBoot)`. The vCPU shares everything else with the BSP: the
//! shim's statics must be safe to use from both (the hypercall page is
//! read-only; the console writes with hypercalls). [`super::sipi`]
//! starts a vCPU the other way, as a PC does: INIT and STARTUP IPIs and
//! a real-mode trampoline, into the same entry.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;
use abi::xen::vcpu::{self, VcpuHvmContext, VcpuHvmX86_64};

use super::fpu::{read_cr0, read_cr4};
use super::hypercall::{addr_of_struct, call, Xen};
use crate::error::{check, XenError};

/// vCPUs a shim guest may start (Xen's and xen-core's limit is 8).
pub const MAX_VCPUS: usize = 8;
/// EFER.LME.
const EFER_LME: u64 = 1 << 8;
/// RFLAGS with only the reserved bit 1 set: interrupts off.
const RFLAGS_START: u64 = 1 << 1;

/// What a secondary vCPU's main receives.
pub struct ApBoot {
    /// The hypercall interface (the BSP's).
    pub xen: Xen,
    /// This vCPU's id.
    pub vcpu_id: u32,
}

/// Stack of each secondary vCPU.
pub const AP_STACK_BYTES: usize = 16 * 1024;

/// One secondary vCPU's stack: only that vCPU touches it, through RSP.
#[repr(C, align(16))]
struct ApStack(UnsafeCell<[u8; AP_STACK_BYTES]>);

// SAFETY: Rust never reads or writes the bytes; only its vCPU uses them,
// as its stack.
unsafe impl Sync for ApStack {}

impl ApStack {
    /// The (16-byte aligned) address its stack pointer starts at.
    fn top(&self) -> u64 {
        self.0.get() as u64 + AP_STACK_BYTES as u64
    }
}

static AP_STACKS: [ApStack; MAX_VCPUS] =
    [const { ApStack(UnsafeCell::new([0; AP_STACK_BYTES])) }; MAX_VCPUS];

/// Each secondary vCPU's main, as a `fn(ApBoot) -> !` address (0: none).
static AP_MAIN: [AtomicUsize; MAX_VCPUS] = [const { AtomicUsize::new(0) }; MAX_VCPUS];
/// How many times each vCPU entered `shim_ap_entry64` (a restart after
/// INIT counts again).
static AP_ENTRIES: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
/// The BSP's `Xen` for the secondary vCPUs (it is `Copy`).
static XEN: spin::Once<Xen> = spin::Once::new();

extern "C" {
    fn shim_ap_start64();
}

impl Xen {
    /// Starts vCPU `vcpu_id` (1..[`MAX_VCPUS`]) running `main` on its own
    /// [`AP_STACK_BYTES`] stack. Errors: Xen's, from
    /// `VCPUOP_initialise` (`-EEXIST` if started before, `-ENOENT` for
    /// an id the domain lacks (or 0, or ≥ [`MAX_VCPUS`], refused here),
    /// `-EINVAL`) or `VCPUOP_up`.
    pub fn vcpu_start(&self, vcpu_id: u32, main: fn(ApBoot) -> !) -> Result<(), XenError> {
        let top = self.prepare_ap(vcpu_id, main)?;
        let regs = VcpuHvmX86_64 {
            rip: shim_ap_start64 as *const () as u64,
            rsp: top,
            rdi: vcpu_id.into(),
            rflags: RFLAGS_START,
            cr0: read_cr0(),
            cr3: read_cr3(),
            cr4: read_cr4(),
            efer: EFER_LME,
            ..VcpuHvmX86_64::default()
        };
        self.vcpu_initialise(vcpu_id, &VcpuHvmContext::x86_64(&regs))?;
        self.vcpu_up(vcpu_id)
    }

    /// Records `main` as vCPU `vcpu_id`'s (1..[`MAX_VCPUS`], else
    /// `-ENOENT`) and returns the top of its stack.
    pub(super) fn prepare_ap(&self, vcpu_id: u32, main: fn(ApBoot) -> !) -> Result<u64, XenError> {
        let slot = AP_MAIN
            .get(vcpu_id as usize)
            .filter(|_| vcpu_id != 0)
            .ok_or(XenError(-i64::from(Errno::ENOENT as i32)))?;
        XEN.call_once(|| *self);
        slot.store(main as *const () as usize, Ordering::Release);
        Ok(AP_STACKS[vcpu_id as usize].top())
    }

    /// `VCPUOP_initialise` of `vcpu_id` with `ctx` (also for hostile tests).
    pub fn vcpu_initialise(&self, vcpu_id: u32, ctx: &VcpuHvmContext) -> Result<(), XenError> {
        let cmd = vcpu::VCPUOP_INITIALISE.into();
        // SAFETY: Xen reads the 128-byte context at the address of `ctx`.
        check(unsafe {
            call(
                nr::VCPU_OP,
                [cmd, vcpu_id.into(), addr_of_struct(ctx), 0, 0],
            )
        })
        .map(|_| ())
    }

    /// `VCPUOP_up`, `VCPUOP_down` or `VCPUOP_is_up` (`cmd`) of `vcpu_id`:
    /// what Xen returns.
    pub fn vcpu_op_simple(&self, cmd: u32, vcpu_id: u32) -> Result<u64, XenError> {
        // SAFETY: these sub-ops take no buffer.
        check(unsafe { call(nr::VCPU_OP, [cmd.into(), vcpu_id.into(), 0, 0, 0]) })
    }

    /// `VCPUOP_up` of `vcpu_id`.
    pub fn vcpu_up(&self, vcpu_id: u32) -> Result<(), XenError> {
        self.vcpu_op_simple(vcpu::VCPUOP_UP, vcpu_id).map(|_| ())
    }
}

/// How many times vCPU `vcpu_id` has entered its main so far (0 for ids
/// out of range).
pub fn ap_entries(vcpu_id: u32) -> u32 {
    AP_ENTRIES
        .get(vcpu_id as usize)
        .map_or(0, |n| n.load(Ordering::Acquire))
}

/// CR3.
pub(super) fn read_cr3() -> u64 {
    let value;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// Called by `shim_ap_start64` on the new vCPU's stack.
#[no_mangle]
extern "C" fn shim_ap_entry64(vcpu_id: u64) -> ! {
    let main = usize::try_from(vcpu_id)
        .ok()
        .and_then(|i| AP_MAIN.get(i))
        .map_or(0, |m| m.load(Ordering::Acquire));
    match (XEN.get(), main, u32::try_from(vcpu_id)) {
        (Some(xen), main, Ok(vcpu_id)) if main != 0 => {
            if let Some(n) = AP_ENTRIES.get(vcpu_id as usize) {
                n.fetch_add(1, Ordering::AcqRel);
            }
            // SAFETY: `vcpu_start` stored exactly a `fn(ApBoot) -> !` here.
            let main: fn(ApBoot) -> ! = unsafe { core::mem::transmute(main) };
            main(ApBoot { xen: *xen, vcpu_id })
        }
        _ => super::entry::crash(),
    }
}
