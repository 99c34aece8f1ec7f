//! A CR write exit (VMEXIT_CR0_WRITE, VMEXIT_CR4_WRITE): fetch the
//! instruction at CS:RIP through the guest's page tables, decode it
//! ([`cr::decode`]), compute the new value, check it ([`cr::set_cr0`],
//! [`cr::set_cr4`]) and store it or inject #GP(0). The dispatcher's
//! tests drive it through `handle_exit`.

use crate::domain::CrashReason;
use crate::paging::guest_walk::GuestPaging;

use super::cpuid::{guest_cpuid, CpuidResult, GuestIdentity};
use super::cr::{self, CrWriteInsn, MemoryOperand};
use super::dispatch::fetch_at_rip;
use super::event::Event;
use super::exit::code;
use super::insn::{Segment, MAX_INSN_LEN};
use super::{ExitAction, GuestState, VcpuEnv};
use crate::logger::GUEST;

/// A write exit for CR`cr` (0 or 4): fetch and decode the instruction,
/// check the value as Xen does, then store it or inject #GP(0).
pub(super) fn handle(cr: u8, guest: &mut impl GuestState, env: &mut impl VcpuEnv) -> ExitAction {
    let who = env.identity();
    let regs = guest.control_regs();
    let crash = ExitAction::Crash(CrashReason::UnhandledExit {
        code: code::CR_WRITE_BASE + u64::from(cr),
    });
    let mut bytes = [0u8; MAX_INSN_LEN];
    let fetched = fetch_at_rip(guest, env, &mut bytes);
    let (insn, len) = match cr::decode(&bytes[..fetched], guest.code_bitness(), guest.rip(), cr) {
        Ok(decoded) => decoded,
        Err(e) => {
            log::warn!(
                target: GUEST,
                "d{}v{}: CR{cr} write not decoded: {e:?}",
                who.domid,
                who.vcpu_id
            );
            return crash;
        }
    };
    let Some(value) = new_value(insn, regs, guest, env) else {
        log::warn!(target: GUEST, "d{}v{}: LMSW operand unreadable", who.domid, who.vcpu_id);
        return crash;
    };
    let result = match cr {
        0 => cr::set_cr0(value, regs, guest.in_64bit_mode()),
        4 => cr::set_cr4(value, cr4_valid_bits(env), regs),
        _ => return crash,
    };
    match result {
        Ok(update) => {
            guest.set_control_regs(update);
            let next = guest.rip().wrapping_add(len as u64);
            guest.skip_to(if guest.in_64bit_mode() {
                next
            } else {
                next & 0xffff_ffff
            });
        }
        Err(fault) => {
            log::warn!(
                target: GUEST,
                "d{}v{}: CR{cr} write of {value:#x} refused ({fault:?}): #GP",
                who.domid,
                who.vcpu_id
            );
            guest.inject(Event::general_protection());
        }
    }
    ExitAction::Resume
}

/// `offset` in `segment` as a linear address: in 64-bit mode only FS and
/// GS have a base; elsewhere addresses wrap at 4 GiB.
fn linear_address(guest: &impl GuestState, segment: Segment, offset: u64, mask: u64) -> u64 {
    let offset = offset & mask;
    if guest.in_64bit_mode() {
        match segment {
            Segment::Fs | Segment::Gs => guest.segment_base(segment).wrapping_add(offset),
            _ => offset,
        }
    } else {
        guest.segment_base(segment).wrapping_add(offset) & 0xffff_ffff
    }
}

/// The value the decoded instruction writes; `None` if an LMSW memory
/// operand cannot be read.
fn new_value(
    insn: CrWriteInsn,
    regs: GuestPaging,
    guest: &impl GuestState,
    env: &mut impl VcpuEnv,
) -> Option<u64> {
    Some(match insn {
        CrWriteInsn::MovToCr { src, width, .. } => {
            let value = guest.gpr(src);
            if width >= 8 {
                value
            } else {
                value & ((1 << (width * 8)) - 1)
            }
        }
        CrWriteInsn::Clts => regs.cr0 & !cr::cr0::TS,
        CrWriteInsn::LmswRegister(src) => {
            cr::lmsw_value(regs.cr0, (guest.gpr(src) & 0xffff) as u16)
        }
        CrWriteInsn::LmswMemory(m) => {
            let mut word = [0u8; 2];
            let gva = memory_operand_address(guest, &m);
            env.read_guest_linear(regs, gva, &mut word).ok()?;
            cr::lmsw_value(regs.cr0, u16::from_le_bytes(word))
        }
    })
}

fn memory_operand_address(guest: &impl GuestState, m: &MemoryOperand) -> u64 {
    let sized = |reg, size: usize| {
        let v = guest.gpr(reg);
        if size >= 8 {
            v
        } else {
            v & ((1 << (size * 8)) - 1)
        }
    };
    let base = m.base.map_or(0, |(r, size)| sized(r, size));
    let index = m.index.map_or(0, |(r, size, scale)| {
        sized(r, size).wrapping_mul(u64::from(scale))
    });
    let offset = base.wrapping_add(index).wrapping_add(m.displacement);
    linear_address(guest, m.segment, offset, m.address_mask)
}

/// The CR4 bits this guest's CPUID offers.
fn cr4_valid_bits(env: &impl VcpuEnv) -> u64 {
    guest_cr4_valid_bits(|leaf| env.host_cpuid(leaf, 0), env.identity())
}

/// The CR4 bits the CPUID of guest `who` offers on a host whose CPUID
/// leaves (subleaf 0) `host_cpuid` reads.
pub fn guest_cr4_valid_bits(host_cpuid: impl Fn(u32) -> CpuidResult, who: GuestIdentity) -> u64 {
    let leaf = |n| guest_cpuid(n, 0, host_cpuid(n), who);
    cr::cr4_guest_valid_bits(leaf(1), leaf(7))
}
