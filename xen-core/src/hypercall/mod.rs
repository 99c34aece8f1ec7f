//! The hypercall door: Xen's guest ABI and our control hypercall.
//!
//! The arch layer captures the registers at a VMMCALL exit
//! ([`HypercallRegs`]) and calls [`handle_hypercall`]. The door counts
//! the call, refuses callers outside ring 0 (`-EPERM`, as Xen does for
//! HVM guests), applies the caller's convention (`args`), decodes the
//! number and sub-op into a typed request through a fixed table
//! (`table`: unknown numbers and sub-ops are `-ENOSYS`), and serves the
//! dom0-only requests (one enum, `table::Dom0Request`) only with a
//! `Dom0` proof it mints from the caller's [`Privileged`] token
//! (`-EPERM` without one); their handlers cannot be called without it. Handlers see only typed
//! requests, copy guest structures in once through [`GuestVirt`] (a bad
//! pointer is `-EFAULT` and changes nothing) and return a
//! [`HypercallOutcome`] the run loop acts on.
//!
//! What lies outside portable code (the console, the TSC) comes through
//! [`HypercallEnv`]. Implemented: xen_version, console_io, sched_op,
//! set_timer_op, vcpu_op, vm_assist, memory_op, hvm_op, event_channel_op (over
//! [`crate::event`]), grant_table_op, physdev_op (pirqs, over
//! [`crate::irq`]) and the control hypercall; each
//! module's docs list its sub-ops, errors and where we differ from Xen.
//!
//! [`Privileged`]: crate::domain::Privileged

#![forbid(unsafe_code)]
// Indices here come from guests: `.get()` with an error path, never `[i]`.
#![warn(clippy::indexing_slicing)]

mod args;
mod compat;
mod console;
mod control;
mod ctl;
mod event_channel;
mod grant_table;
mod hvm;
mod memory;
mod page;
mod physdev;
pub mod runstate_area;
mod sched_op;
mod table;
mod unserved;
mod vcpu;
mod version;
mod vm_assist;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
// Tests index the fixtures they built and cast fixture constants chosen to
// fit; a bad index or value is a failed test.
#[allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
mod tests;

pub use args::{Continuation, HypercallRegs};
pub use console::{CONSOLE_READ_MAX, CONSOLE_WRITE_MAX};
pub use page::write_hypercall_page;

use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::table::DomainTable;
use crate::domain::{Domain, ShutdownReason};
use crate::guest_mem::GuestVirt;
use crate::mm::{FramePool, PhysMem};
use crate::paging::guest_walk::GuestPaging;
use crate::time::Clock;
use args::RawArgs;

/// Who makes the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling domain.
    pub domid: DomId,
    /// The calling vCPU's id in that domain.
    pub vcpu_id: u32,
    /// The vCPU's CR0, CR3, CR4 and EFER: pointers are guest virtual
    /// addresses translated through its page tables.
    pub paging: GuestPaging,
}

/// What hypercalls need from outside portable code.
pub trait HypercallEnv {
    /// The hypervisor clock (TSC rate, boot TSC, boot wall clock).
    fn clock(&self) -> &Clock;
    /// The TSC now, as guests read it.
    fn tsc(&self) -> u64;
    /// Prints one line of a domain's console output on the hypervisor
    /// console, e.g. as `(d<domid>) <line>`. `line` has no newline and
    /// only printable ASCII and tabs (other bytes became `?`); a line
    /// longer than [`crate::domain::xen_state::CONSOLE_LINE_MAX`] comes in
    /// several calls.
    fn console_write(&mut self, domid: DomId, name: &str, line: &[u8]);
    /// `CONSOLEIO_read` for dom0: moves up to `buf.len()` bytes of console
    /// input (Xen: its serial input ring; here whatever the environment
    /// offers, e.g. the hypervisor log ring) into `buf`; returns how many.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// Host facts for `CONTROL_OP_PHYSINFO`.
    fn host(&self) -> HostFacts;
    /// pCPUs online, whether they run domains or not (PHYSINFO's
    /// `nr_cpus`); by default those that run domains.
    fn online_pcpus(&self) -> u32 {
        self.host().nr_pcpus
    }
    /// `CONTROL_OP_READCONSOLE`: copies the hypervisor's log ring from byte
    /// `offset` (0 = the oldest it holds) into `buf`; returns the bytes
    /// copied and the bytes the ring holds.
    fn read_log(&self, offset: u64, buf: &mut [u8]) -> (usize, u64);
}

/// What the hypervisor knows about the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// pCPUs that run domains (Xen: the scheduler's cpupool), the range
    /// of hard affinity and of caps.
    pub nr_pcpus: u32,
    /// Usable RAM frames the frame pool managed at boot (free or not).
    pub total_frames: u64,
    /// CR4 bits a guest's CPUID offers (Xen's `hvm_cr4_guest_valid_bits`;
    /// CPUID leaves 1 and 7 are the same for every guest but for the
    /// APIC id): what `VCPUOP_initialise` accepts.
    pub guest_cr4_valid: u64,
}

/// What the run loop does after a hypercall. In every case it writes
/// [`HypercallOutcome::rax`] to the caller's RAX first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallOutcome {
    /// Resume the caller with this value (0 or more, or `-errno`).
    Return(i64),
    /// `SCHEDOP_yield`: the caller stays runnable but gives up the rest of
    /// its time slice (`Scheduler::yield_current`).
    Yield,
    /// `SCHEDOP_block`: the caller's vCPU is now blocked; schedule another
    /// one. It wakes at its timer or a later event.
    Block,
    /// `SCHEDOP_shutdown`: the caller's domain is now shut down with this
    /// reason; none of its vCPUs runs again. dom0 shutting down ends the
    /// machine (poweroff or reboot status; crash for `Crash`).
    Shutdown(ShutdownReason),
    /// The work is not finished: set the caller's registers to
    /// [`Continuation::registers`] and move its RIP back onto the
    /// VMMCALL, so that it calls again for the rest (Xen's hypercall
    /// continuation).
    Continue(Continuation),
    /// `CONTROL_OP_DESTROY` (RAX 0): this domain is gone from the table
    /// (its memory is back in the pool). Drop every vCPU's SVM state it
    /// had before running anything else; the domid may name a new
    /// domain only after `DOMID_REUSE_DELAY` more creations.
    DomainDestroyed(DomId),
    /// `CONTROL_OP_SET_VCPU_CONTEXT` (RAX 0): this vCPU is now runnable
    /// from [`crate::domain::vcpu::Vcpu::entry`] and has never run: give
    /// it fresh SVM state (replacing any) over its domain's p2m before
    /// the scheduler can pick it.
    VcpuStarted {
        /// Its domain.
        domid: DomId,
        /// The vCPU.
        vcpu_id: u32,
    },
}

impl HypercallOutcome {
    /// The value for the caller's RAX.
    pub fn rax(&self) -> u64 {
        match self {
            Self::Return(v) => v.cast_unsigned(),
            Self::Yield
            | Self::Block
            | Self::Shutdown(_)
            | Self::DomainDestroyed(_)
            | Self::VcpuStarted { .. } => 0,
            Self::Continue(c) => c.registers()[0].1,
        }
    }
}

/// Whether the caller may resume at once after hypercall `nr` ended with
/// `outcome`, without a pass through the scheduler: it returned (or
/// continues), and `nr` is of a family that touches no timer and no
/// scheduling state (version, console, grant table, event channel,
/// memory, HVM and physdev ops). Such a call may wake another vCPU (an
/// event to a blocked domain): the run loop's `may_resume` asks the
/// credit scheduler whether the woken vCPU should preempt the caller
/// (credit1's tickle) before resuming it. Timers
/// (`set_timer_op`, `vcpu_op`), `sched_op` and the control operations go
/// through the scheduler. The run loop still checks that the caller may
/// run and that no timer or device interrupt is due.
pub fn returns_directly(nr: u64, outcome: &HypercallOutcome) -> bool {
    use abi::xen::hypercall as n;
    matches!(
        outcome,
        HypercallOutcome::Return(_) | HypercallOutcome::Continue(_)
    ) && matches!(
        nr,
        n::XEN_VERSION
            | n::CONSOLE_IO
            | n::GRANT_TABLE_OP
            | n::EVENT_CHANNEL_OP
            | n::MEMORY_OP
            | n::HVM_OP
            | n::PHYSDEV_OP
    )
}

/// Serves one hypercall of `caller` with registers `regs`.
pub fn handle_hypercall<P: FramePool, M: PhysMem, E: HypercallEnv>(
    domains: &mut DomainTable,
    pool: &mut P,
    mem: &mut M,
    env: &mut E,
    caller: &Caller,
    regs: &HypercallRegs,
) -> HypercallOutcome {
    let args = RawArgs::from_regs(regs);
    let Some(domain) = domains.get_mut(caller.domid) else {
        return HypercallOutcome::Return(Errno::ESRCH.to_return());
    };
    domain.record_hypercall(caller.vcpu_id, args.nr);
    if regs.cpl != 0 {
        return HypercallOutcome::Return(Errno::EPERM.to_return());
    }
    let mut ctx = Ctx {
        domains,
        pool,
        mem,
        env,
        caller,
        compat: args.compat,
        args,
    };
    match table::dispatch(&mut ctx, table::decode(&args)) {
        Ok(outcome) => outcome,
        Err(e) => HypercallOutcome::Return(e.to_return()),
    }
}

/// Everything a handler may touch, for one hypercall.
pub(crate) struct Ctx<'a, P, M, E> {
    pub domains: &'a mut DomainTable,
    pub pool: &'a mut P,
    pub mem: &'a mut M,
    pub env: &'a mut E,
    pub caller: &'a Caller,
    /// The caller uses the 32-bit ABI (compat structure layouts).
    pub compat: bool,
    /// The raw arguments, for continuations.
    pub args: RawArgs,
}

impl<P: FramePool, M: PhysMem, E: HypercallEnv> Ctx<'_, P, M, E> {
    /// The calling domain.
    pub fn domain(&self) -> Result<&Domain, Errno> {
        self.domains.get(self.caller.domid).ok_or(Errno::ESRCH)
    }

    /// The calling domain, writable.
    pub fn domain_mut(&mut self) -> Result<&mut Domain, Errno> {
        self.domains.get_mut(self.caller.domid).ok_or(Errno::ESRCH)
    }

    /// System time now, in ns.
    pub fn now_ns(&self) -> u64 {
        self.env.clock().system_time_ns(self.env.tsc())
    }

    /// Runs `f` on the caller's memory by guest virtual address.
    fn guest<R>(&mut self, f: impl FnOnce(&mut GuestVirt<'_, M>) -> R) -> Result<R, Errno> {
        let domain = self.domains.get(self.caller.domid).ok_or(Errno::ESRCH)?;
        let mut virt = GuestVirt::new(domain.p2m(), &mut *self.mem, self.caller.paging, false);
        Ok(f(&mut virt))
    }

    /// `copy_from_guest` of one `T` at `gva`: `-EFAULT` if unreadable.
    pub fn read<T: FromBytes + IntoBytes>(&mut self, gva: u64) -> Result<T, Errno> {
        self.guest(|g| g.read_struct(gva))?.map_err(fault)
    }

    /// Reads a structure whose 32-bit layout `C` differs from the native
    /// `T`: `C` for a 32-bit caller, converted.
    pub fn read_abi<T, C>(&mut self, gva: u64) -> Result<T, Errno>
    where
        T: FromBytes + IntoBytes,
        C: FromBytes + IntoBytes + Into<T>,
    {
        if self.compat {
            Ok(self.read::<C>(gva)?.into())
        } else {
            self.read(gva)
        }
    }

    /// `copy_to_guest` of `bytes` at `gva`, all or nothing: `-EFAULT`.
    pub fn write_bytes(&mut self, gva: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.guest(|g| g.copy_to_guest(gva, bytes))?.map_err(fault)
    }

    /// `copy_to_guest` of `value` at `gva`, all or nothing: `-EFAULT`.
    pub fn write<T: IntoBytes + Immutable>(&mut self, gva: u64, value: &T) -> Result<(), Errno> {
        self.write_bytes(gva, value.as_bytes())
    }

    /// The domain a request names: the caller for `DOMID_SELF` or its own
    /// domid; another domain only if the caller holds the privilege token
    /// (`-EPERM`), and only if it exists (`-ESRCH`).
    pub fn target(&self, domid: DomId) -> Result<DomId, Errno> {
        let caller = self.domain()?;
        if domid == abi::xen::domid::DOMID_SELF || domid == caller.domid() {
            return Ok(caller.domid());
        }
        let exists = self.domains.get(domid).is_some();
        match (exists, caller.privilege()) {
            (false, _) => Err(Errno::ESRCH),
            (true, None) => Err(Errno::EPERM),
            (true, Some(_)) => Ok(domid),
        }
    }
}

/// A guest-memory fault, logged for debugging: `-EFAULT` to the guest.
fn fault(e: crate::guest_mem::GuestFault) -> Errno {
    log::debug!("hypercall argument fault: {e}");
    e.into()
}
