//! Turning SVM on for one pCPU: feature checks, EFER.SVME, the host save
//! area (APM vol. 2, §15.4 "Enabling SVM", §15.30.4 VM_HSAVE_PA).

use core::arch::x86_64::__cpuid_count;
use core::fmt;
use spin::{Mutex, Once};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

use super::super::cpu::{this_cpu, MAX_PCPUS};
use super::super::fatal::fatal;
use super::super::mem::alloc_zeroed_frame;
use crate::paging::asid::AsidAllocator;
use crate::vmexit::cpuid::CpuidResult;

/// VM_CR MSR; bit 4 (SVMDIS) set by firmware forbids EFER.SVME.
const MSR_VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
/// VM_HSAVE_PA MSR: where VMRUN saves host state.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// CPUID 0x80000001 ECX bit 2: SVM.
const CPUID_EXT_SVM: u32 = 1 << 2;
/// CPUID 0x8000000A EDX bit 0: nested paging.
const CPUID_SVM_NP: u32 = 1 << 0;
/// CPUID 0x8000000A EDX bit 3: NRIP save.
const CPUID_SVM_NRIPS: u32 = 1 << 3;

/// What this pCPU's SVM offers (CPUID 0x8000000A).
#[derive(Clone, Copy, Debug)]
pub struct SvmFeatures {
    /// Number of ASIDs (EBX); ASID 0 is the host's.
    pub asids: u32,
    /// The CPU stores the next RIP in the VMCB at instruction exits.
    pub nrip_save: bool,
}

/// Why SVM cannot be used on this pCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmError {
    /// CPUID 0x80000001 ECX.SVM is clear.
    NoSvm,
    /// CPUID 0x8000000A EDX.NP is clear: no nested paging.
    NoNestedPaging,
    /// VM_CR.SVMDIS is set: the firmware disabled SVM.
    DisabledByFirmware,
    /// No free frame for the host save area or host-state VMCB.
    OutOfMemory,
}

impl fmt::Display for SvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SvmError::NoSvm => "the CPU has no AMD SVM (run QEMU with -cpu qemu64,+svm,+npt)",
            SvmError::NoNestedPaging => {
                "the CPU's SVM has no nested paging (run QEMU with -cpu qemu64,+svm,+npt)"
            }
            SvmError::DisabledByFirmware => "SVM is disabled by firmware (VM_CR.SVMDIS)",
            SvmError::OutOfMemory => "no memory for the SVM host save area",
        })
    }
}

/// One pCPU's SVM state.
pub(super) struct PcpuSvm {
    /// HPA of the VMCB that holds the host's VMSAVE state across VMRUN.
    pub host_vmcb_pa: u64,
    pub features: SvmFeatures,
    /// The ASIDs this pCPU hands its vCPUs (only this pCPU locks it).
    pub asids: Mutex<AsidAllocator>,
}

static PCPU_SVM: [Once<PcpuSvm>; MAX_PCPUS] = [const { Once::new() }; MAX_PCPUS];

/// The host CPU's CPUID answer.
pub fn host_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = __cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Checks that this pCPU has SVM with nested paging and turns it on.
/// Idempotent: a second call returns the same features.
pub fn enable_this_cpu() -> Result<SvmFeatures, SvmError> {
    let slot = &PCPU_SVM[this_cpu().index];
    if let Some(pcpu) = slot.get() {
        return Ok(pcpu.features);
    }
    let features = check_features()?;
    let hsave = alloc_zeroed_frame().ok_or(SvmError::OutOfMemory)?;
    let host_vmcb = alloc_zeroed_frame().ok_or(SvmError::OutOfMemory)?;
    // SAFETY: setting EFER.SVME only makes the SVM instructions usable;
    // check_features saw SVM present and not disabled by VM_CR.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE)) };
    // SAFETY: VM_HSAVE_PA takes a page-aligned HPA; the frame is ours for
    // ever (never freed) and zeroed, and only the CPU writes it.
    unsafe { Msr::new(MSR_VM_HSAVE_PA).write(hsave.hpa()) };
    slot.call_once(|| PcpuSvm {
        host_vmcb_pa: host_vmcb.hpa(),
        features,
        asids: Mutex::new(AsidAllocator::new(this_cpu().index, features.asids)),
    });
    log::info!(
        "svm: enabled on pCPU {}: {} ASIDs, NRIP save {}",
        this_cpu().index,
        features.asids,
        if features.nrip_save { "yes" } else { "no" }
    );
    Ok(features)
}

/// [`enable_this_cpu`], or a FATAL message and `EXIT_FATAL`.
pub fn enable_this_cpu_or_die() -> SvmFeatures {
    enable_this_cpu().unwrap_or_else(|e| fatal(format_args!("svm: {e}")))
}

/// This pCPU's SVM state; using SVM before enabling it is a bug.
pub(super) fn this_pcpu() -> &'static PcpuSvm {
    match PCPU_SVM[this_cpu().index].get() {
        Some(pcpu) => pcpu,
        None => fatal(format_args!(
            "svm: VMRUN on a pCPU where SVM is not enabled"
        )),
    }
}

fn check_features() -> Result<SvmFeatures, SvmError> {
    let max_extended = __cpuid_count(0x8000_0000, 0).eax;
    if max_extended < 0x8000_000a || __cpuid_count(0x8000_0001, 0).ecx & CPUID_EXT_SVM == 0 {
        return Err(SvmError::NoSvm);
    }
    // SAFETY: VM_CR exists on every CPU with SVM; reading it has no effect.
    if unsafe { Msr::new(MSR_VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    let svm = __cpuid_count(0x8000_000a, 0);
    if svm.edx & CPUID_SVM_NP == 0 {
        return Err(SvmError::NoNestedPaging);
    }
    Ok(SvmFeatures {
        asids: svm.ebx,
        nrip_save: svm.edx & CPUID_SVM_NRIPS != 0,
    })
}
