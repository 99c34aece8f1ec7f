//! The local APIC's MSRs at a VM exit: MSR_APIC_BASE (0x1b),
//! IA32_TSC_DEADLINE (0x6e0) and the x2APIC range 0x800-0x8ff, served
//! by the vCPU's [`Vlapic`] (Xen's `guest_rdmsr`/`guest_wrmsr` cases for
//! them). The xAPIC MMIO page reaches the same model through
//! [`VcpuEnv::mmio_claimed`]. An IPI a write issues goes to the domain
//! through [`VcpuEnv::send_ipi`]; nothing reaches the real APIC.

use super::dispatch::{GuestState, VcpuEnv};
use super::msr::GuestMsr;
use crate::vlapic::regs::{MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};
use crate::vlapic::{ApicFault, Now, Vlapic};

/// Whether MSR `index` belongs to the local APIC.
pub(super) fn is_apic_msr(index: u32) -> bool {
    index == MSR_APIC_BASE
        || index == MSR_TSC_DEADLINE
        || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&index)
}

/// Whether CPUID offers x2APIC: it does (`vmexit::cpuid`).
pub const X2APIC_OFFERED: bool = true;

/// The time now, as the APIC timer needs it.
fn now(guest: &impl GuestState, env: &impl VcpuEnv) -> Now {
    let (ns, tsc_hz) = env.clock();
    Now {
        ns,
        guest_tsc: guest.msr(GuestMsr::Tsc),
        tsc_hz,
    }
}

fn vlapic<E: VcpuEnv>(env: &mut E) -> Result<&mut Vlapic, ApicFault> {
    env.vlapic().ok_or(ApicFault::NotAccessible)
}

/// RDMSR of APIC MSR `index`.
pub(super) fn read(
    index: u32,
    guest: &impl GuestState,
    env: &mut impl VcpuEnv,
) -> Result<u64, ApicFault> {
    let now_ns = now(guest, env).ns;
    let apic = vlapic(env)?;
    match index {
        MSR_APIC_BASE => Ok(apic.apic_base()),
        MSR_TSC_DEADLINE => Ok(apic.tsc_deadline()),
        _ => apic.x2apic_read(index, now_ns),
    }
}

/// WRMSR of APIC MSR `index` with `value`.
pub(super) fn write(
    index: u32,
    value: u64,
    guest: &impl GuestState,
    env: &mut impl VcpuEnv,
) -> Result<(), ApicFault> {
    let now = now(guest, env);
    let apic = vlapic(env)?;
    let ipi = match index {
        MSR_APIC_BASE => apic.write_apic_base(value, X2APIC_OFFERED).map(|()| None)?,
        MSR_TSC_DEADLINE => {
            apic.set_tsc_deadline(value, now);
            None
        }
        _ => apic.x2apic_write(index, value, now.ns)?,
    };
    if let Some(ipi) = ipi {
        env.send_ipi(ipi);
    }
    Ok(())
}
