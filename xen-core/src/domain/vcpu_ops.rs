//! A domain's vCPUs brought up and down: `VCPUOP_initialise`, `up` and
//! `down` (`xen/common/domain.c` `common_vcpu_op`), and the INIT and
//! STARTUP IPIs a local APIC sends (`xen/arch/x86/hvm/vlapic.c`
//! `vlapic_init_sipi_one`). Each takes a vCPU id of this domain and fails
//! `-ENOENT` if it has no such vCPU (id ≥ `nr_vcpus`). The run loop
//! loads a new register state before the vCPU next runs
//! ([`Vcpu::take_new_context`]).

use abi::xen::errno::Errno;
use abi::xen::vcpu::VcpuHvmContext;

use super::hvm_context::entry_state;
use super::vcpu::{Vcpu, VcpuEntryState, VcpuRunState};
use super::{Domain, ShutdownReason};

/// What [`Domain::vcpu_down`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuDown {
    /// The vCPU is down; others are still up.
    Down,
    /// It was the last one up: the domain shut down (poweroff), as Xen's.
    DomainPoweredOff,
}

impl Domain {
    /// `VCPUOP_initialise`: vCPU `id` will start from `ctx` (checked as
    /// [`super::hvm_context`] says; `cr4_valid`: the CR4 bits the guest's
    /// CPUID offers) once up; it stays down. `-EEXIST` if it is
    /// initialised already (checked first, as Xen's
    /// `arch_initialise_vcpu`), `-EINVAL` for a bad context.
    pub fn vcpu_initialise(
        &mut self,
        id: u32,
        ctx: &VcpuHvmContext,
        cr4_valid: u64,
    ) -> Result<(), Errno> {
        let vcpu = self.vcpu_mut(id).ok_or(Errno::ENOENT)?;
        if vcpu.is_initialised() {
            return Err(Errno::EEXIST);
        }
        vcpu.initialise(entry_state(ctx, cr4_valid)?)
    }

    /// `VCPUOP_up`: `-EINVAL` if vCPU `id` is not initialised; a vCPU
    /// that is up already stays as it is.
    pub fn vcpu_up(&mut self, id: u32) -> Result<(), Errno> {
        self.vcpu_mut(id).ok_or(Errno::ENOENT)?.up()
    }

    /// `VCPUOP_down`: vCPU `id` stops, its registers kept. If no other
    /// vCPU is up, the domain shuts down (poweroff) instead, as Xen's.
    pub fn vcpu_down(&mut self, id: u32) -> Result<VcpuDown, Errno> {
        self.vcpu(id).ok_or(Errno::ENOENT)?;
        let others_up = self
            .vcpus()
            .iter()
            .any(|v| v.id() != id && v.run_state() != VcpuRunState::Down);
        if !others_up {
            self.shutdown(ShutdownReason::Poweroff);
            return Ok(VcpuDown::DomainPoweredOff);
        }
        self.vcpu_mut(id).ok_or(Errno::ENOENT)?.down();
        Ok(VcpuDown::Down)
    }

    /// `VCPUOP_is_up`: whether vCPU `id` is up (runnable or blocked).
    pub fn vcpu_is_up(&self, id: u32) -> Result<bool, Errno> {
        let vcpu = self.vcpu(id).ok_or(Errno::ENOENT)?;
        Ok(vcpu.run_state() != VcpuRunState::Down)
    }

    /// An INIT IPI to vCPU `id` (Xen's `vlapic_init_sipi_one`): an
    /// initialised vCPU goes down and uninitialised, waiting for a
    /// STARTUP IPI ([`Vcpu::init_reset`]), its local APIC back to its
    /// INIT state and any `SCHEDOP_poll` forgotten. `None` if it was reset
    /// already (nothing happens). As Xen's `hvm_vcpu_down`, the domain
    /// powers off if no vCPU is left up (a guest INITing every vCPU,
    /// itself included).
    pub fn vcpu_init(&mut self, id: u32) -> Result<Option<VcpuDown>, Errno> {
        let vcpu = self.vcpu_mut(id).ok_or(Errno::ENOENT)?;
        if !vcpu.is_initialised() {
            return Ok(None);
        }
        vcpu.init_reset();
        if let Some(apic) = vcpu.vlapic_in_use_mut() {
            apic.init();
        }
        self.events_mut().cancel_poll(id);
        if self
            .vcpus()
            .iter()
            .all(|v| v.run_state() == VcpuRunState::Down)
        {
            self.shutdown(ShutdownReason::Poweroff);
            return Ok(Some(VcpuDown::DomainPoweredOff));
        }
        Ok(Some(VcpuDown::Down))
    }

    /// A STARTUP IPI with `vector` to vCPU `id`: if INIT reset it (or it
    /// never ran), it starts in real mode at `vector << 12`
    /// ([`Vcpu::startup`]); returns whether it did (Xen ignores a SIPI
    /// to an initialised vCPU).
    pub fn vcpu_sipi(&mut self, id: u32, vector: u8) -> Result<bool, Errno> {
        Ok(self.vcpu_mut(id).ok_or(Errno::ENOENT)?.startup(vector))
    }

    /// The new register state vCPU `id` is to start from, if any, taken
    /// (the run loop, before entering it).
    pub fn vcpu_take_new_context(&mut self, id: u32) -> Option<VcpuEntryState> {
        self.vcpu_mut(id).and_then(Vcpu::take_new_context)
    }
}

#[cfg(test)]
mod tests;
