//! Accesses nobody claims: Xen's null handler for MMIO and port I/O.
//!
//! In Xen, a PVH domU's access to a GFN its p2m does not map
//! (`p2m_mmio_dm`) or to a port no handler takes goes through
//! `hvmemul_do_io`, finds neither an internal handler nor an ioreq server,
//! and ends at `null_handler` (`xen/arch/x86/hvm/emulate.c`): reads return
//! all ones, writes are dropped, the instruction completes. MMIO needs the
//! instruction emulated (`handle_mmio` → `hvm_emulate_one_insn`); one that
//! cannot be is `X86EMUL_UNHANDLEABLE`, answered with #GP(0)
//! (`hvm_hap_nested_page_fault`), and invalid bytes are
//! `X86EMUL_UNRECOGNIZED`, answered with #UD. Port I/O (`handle_pio`)
//! needs no decoding: EXITINFO1 says it all.
//!
//! xen-core emulates only what can never touch memory: a load writes all
//! ones to a register, a store is dropped. The one exception is a GPA an
//! emulated device claims ([`VcpuEnv::mmio_claimed`]: dom0's ECAM, see
//! `pci::vpci`), decoded the same way and completed by that device. A RAM
//! GFN the domain gave back (`XENMEM_decrease_reservation`) is unclaimed
//! too, as in Xen. A fault on a GPA that is mapped, or that lies inside a
//! non-RAM range of the domain's memory map, is not emulated: the domain
//! crashes as before (docs/abi.md).

use super::dispatch::fetch_at_rip;
use super::dispatch::{ExitAction, Gpr, GuestState, VcpuEnv};
use super::event::Event;
use super::io::IoAccess;
use super::mmio::{self, DecodeError, OperandState, RegSlot, Segment, MAX_INSN_LEN};
use crate::domain::CrashReason;
use crate::logger::GUEST;

/// What `null_read` returns (`~0UL`), cut to the access size by the caller.
pub const NULL_READ: u64 = u64::MAX;

/// Bits of a nested page fault's error code (EXITINFO1, APM vol. 2
/// §15.25.6).
pub mod npf_error {
    /// The GPA was mapped (a permission fault).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
    /// The fault is on the final GPA of the access.
    pub const FINAL_TRANSLATION: u64 = 1 << 32;
    /// The fault is on a table of the guest's own page walk.
    pub const GUEST_PAGE_WALK: u64 = 1 << 33;
}

/// RFLAGS.CF, which BT sets from the tested bit.
const RFLAGS_CF: u64 = 1 << 0;

/// Bytes in a page: an emulated access must not leave the faulting one.
const PAGE_BYTES: u64 = 4096;

/// A nested page fault: completed by the device that claims `gpa`, or
/// null-handled if nobody claims it, when the instruction can be
/// emulated; otherwise the domain's crash.
pub(super) fn nested_page_fault(
    gpa: u64,
    error_code: u64,
    guest: &mut impl GuestState,
    env: &mut impl VcpuEnv,
) -> ExitAction {
    let who = env.identity();
    let data_fault = error_code & npf_error::FINAL_TRANSLATION != 0
        && error_code & (npf_error::PRESENT | npf_error::GUEST_PAGE_WALK) == 0;
    let claimed = data_fault && env.mmio_claimed(gpa);
    if !claimed && (!data_fault || !env.gpa_unclaimed(gpa)) {
        log::warn!(
            target: GUEST,
            "d{}v{}: nested page fault at GPA {gpa:#x}, error code {error_code:#x}",
            who.domid,
            who.vcpu_id
        );
        return ExitAction::Crash(CrashReason::NptFault { gpa });
    }
    let write = error_code & npf_error::WRITE != 0;
    let outcome = if error_code & npf_error::FETCH != 0 {
        // Xen cannot fetch an instruction from MMIO either.
        Err(DecodeError::Unhandleable)
    } else {
        emulate_mmio(gpa, write, claimed, guest, env)
    };
    match outcome {
        Ok(()) => log::debug!(
            target: GUEST,
            "d{}v{}: {} MMIO {} GPA {gpa:#x}",
            who.domid,
            who.vcpu_id,
            if claimed { "emulated" } else { "unclaimed (null handler)" },
            if write { "write to" } else { "read from" }
        ),
        Err(e) => {
            let (event, name) = match e {
                DecodeError::Unrecognized => (Event::invalid_opcode(), "#UD"),
                DecodeError::Unhandleable => (Event::general_protection(), "#GP"),
            };
            log::warn!(
                target: GUEST,
                "d{}v{}: MMIO at GPA {gpa:#x} (rip {:#x}): cannot emulate ({e:?}): {name}",
                who.domid,
                who.vcpu_id,
                guest.rip()
            );
            guest.inject(event);
        }
    }
    ExitAction::Resume
}

/// Fetches and decodes the instruction at RIP and completes it against
/// the claiming device or the null handler; checks that it is the access
/// that faulted.
fn emulate_mmio(
    gpa: u64,
    write: bool,
    claimed: bool,
    guest: &mut impl GuestState,
    env: &mut impl VcpuEnv,
) -> Result<(), DecodeError> {
    let rip = guest.rip();
    let bitness = guest.code_bitness();
    let mut bytes = [0u8; MAX_INSN_LEN];
    let fetched = fetch_at_rip(guest, env, &mut bytes);
    let access = mmio::decode(&bytes[..fetched], bitness, rip, &Operands(&*guest))?;
    let offset = gpa % PAGE_BYTES;
    let same_access = access.is_write() == write
        && access.linear % PAGE_BYTES == offset
        && offset + u64::from(access.size) <= PAGE_BYTES;
    if !same_access {
        return Err(DecodeError::Unhandleable);
    }
    let data = match (claimed, access.is_write()) {
        (false, _) => NULL_READ,
        (true, false) => env.mmio_read(gpa, access.size),
        (true, true) => {
            let value = mmio::store_value(&bytes[..fetched], bitness, rip, &Operands(&*guest))?;
            env.mmio_write(gpa, access.size, value);
            0
        }
    };
    if let Some((dest, value)) = access.load_result(data) {
        write_gpr(guest, dest, value);
    }
    if let Some(carry) = access.carry(data) {
        let flags = guest.rflags() & !RFLAGS_CF;
        guest.set_rflags(flags | if carry { RFLAGS_CF } else { 0 });
    }
    guest.skip_to(advance(rip, access.insn_len as u64, bitness));
    Ok(())
}

/// A port access: IN reads all ones, OUT is dropped, as Xen's
/// `handle_pio` over the null handler. INS/OUTS would need their memory
/// operand emulated; xen-core answers them as Xen answers an instruction
/// it cannot emulate, with #GP.
pub(super) fn port_io(io: IoAccess, guest: &mut impl GuestState, env: &impl VcpuEnv) -> ExitAction {
    let who = env.identity();
    if io.string {
        log::warn!(
            target: GUEST,
            "d{}v{}: {} port {:#x} (size {}) not emulated: #GP",
            who.domid,
            who.vcpu_id,
            if io.is_in { "INS from" } else { "OUTS to" },
            io.port,
            io.size
        );
        guest.inject(Event::general_protection());
        return ExitAction::Resume;
    }
    if io.is_in {
        let eax = RegSlot {
            gpr: Gpr::Rax,
            width: io.size,
            high_byte: false,
        };
        write_gpr(guest, eax, NULL_READ);
    }
    log::debug!(
        target: GUEST,
        "d{}v{}: unclaimed port {:#x}: null handler",
        who.domid,
        who.vcpu_id,
        io.port
    );
    let next = if guest.in_64bit_mode() {
        io.next_rip
    } else {
        io.next_rip & 0xffff_ffff
    };
    guest.skip_to(next);
    ExitAction::Resume
}

/// Writes `value` into the register `slot` names.
fn write_gpr(guest: &mut impl GuestState, slot: RegSlot, value: u64) {
    let old = guest.gpr(slot.gpr);
    guest.set_gpr(slot.gpr, slot.merge(old, value));
}

/// RIP after an instruction of `len` bytes; wraps at 4 GiB outside
/// 64-bit mode.
fn advance(rip: u64, len: u64, bitness: u32) -> u64 {
    let next = rip.wrapping_add(len);
    if bitness == 64 {
        next
    } else {
        next & 0xffff_ffff
    }
}

/// The guest's registers, as the decoder reads them.
struct Operands<'a, G>(&'a G);

impl<G: GuestState> OperandState for Operands<'_, G> {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.0.gpr(reg)
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.0.segment_base(seg)
    }
}

#[cfg(test)]
mod tests;
