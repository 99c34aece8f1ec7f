//! Exceptions: the handler `entry.S` calls for vectors 0-31, and probes of
//! instructions whose fault the caller expects (a hostile guest's checks).
//!
//! An unexpected exception prints the vector, error code, RIP and CR2 and
//! crashes the domain (SHUTDOWN_crash). A fault on a probe instruction
//! listed in `shim_fixups` resumes at its fixup, which returns the fault.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// General registers as `shim_exception_common` pushes them, then the
/// vector and error code, then the CPU's interrupt frame.
#[repr(C)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Marks RDX of a probe's result as "faulted"; the low byte is the vector.
const FAULTED: u64 = 0x100;

/// An exception a probe instruction raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The vector (13 = #GP, 14 = #PF ...).
    pub vector: u8,
}

impl Exception {
    /// #GP, the vector a refused RDMSR or port access raises.
    pub const GP: Exception = Exception { vector: 13 };
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match MNEMONICS.get(usize::from(self.vector)) {
            Some(m) => write!(f, "#{m}"),
            None => write!(f, "vector {}", self.vector),
        }
    }
}

/// Exception mnemonics by vector (Intel SDM / AMD APM vol. 2 §8.2).
const MNEMONICS: [&str; 32] = [
    "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "9", "TS", "NP", "SS", "GP", "PF", "15",
    "MF", "AC", "MC", "XM", "VE", "CP", "22", "23", "24", "25", "26", "27", "HV", "VC", "SX", "31",
];

/// What a probe routine in `entry.S` returns (in RAX:RDX).
#[repr(C)]
pub(super) struct ProbeResult {
    value: u64,
    fault: u64,
}

impl ProbeResult {
    pub(super) fn into_result(self) -> Result<u64, Exception> {
        if self.fault & FAULTED != 0 {
            Err(Exception {
                vector: (self.fault & 0xff) as u8,
            })
        } else {
            Ok(self.value)
        }
    }
}

extern "C" {
    static shim_fixups: [[u64; 2]; 0];
    static shim_fixups_end: [[u64; 2]; 0];
    fn shim_probe_rdmsr(msr: u32) -> ProbeResult;
    fn shim_probe_wrmsr(msr: u32, value: u64) -> ProbeResult;
    fn shim_probe_inb(port: u16) -> ProbeResult;
    fn shim_probe_write(gpa: u64, value: u64) -> ProbeResult;
    fn shim_probe_write_cr4(value: u64) -> ProbeResult;
    fn shim_triple_fault() -> !;
}

/// RDMSR `msr`; an exception (e.g. #GP for an MSR the hypervisor does not
/// allow) is returned instead of crashing.
pub fn probe_rdmsr(msr: u32) -> Result<u64, Exception> {
    // SAFETY: RDMSR only reads a register; a fault resumes at the fixup.
    unsafe { shim_probe_rdmsr(msr) }.into_result()
}

/// WRMSR `msr` with `value`; an exception (#GP for an MSR or a value
/// the hypervisor refuses) is returned instead of crashing. The caller
/// picks MSRs whose writes cannot break the shim (APIC registers, say).
pub fn probe_wrmsr(msr: u32, value: u64) -> Result<(), Exception> {
    // SAFETY: the MSRs a guest may write under Xen only change its own
    // virtual CPU; a fault resumes at the fixup.
    unsafe { shim_probe_wrmsr(msr, value) }
        .into_result()
        .map(|_| ())
}

/// IN from `port` (one byte); an exception is returned instead of crashing.
pub fn probe_inb(port: u16) -> Result<u8, Exception> {
    // SAFETY: a port read touches no memory; a fault resumes at the fixup.
    unsafe { shim_probe_inb(port) }
        .into_result()
        .map(|v| (v & 0xff) as u8)
}

/// MOV to CR4 of `value`; an exception (#GP for a bit the CPU or the
/// hypervisor does not offer) is returned instead of crashing.
pub fn probe_write_cr4(value: u64) -> Result<(), Exception> {
    // SAFETY: the caller's value is written as is; the shim depends on
    // CR4.PAE only, which a probe must keep (long mode refuses to clear
    // it with #GP anyway). A fault resumes at the fixup.
    unsafe { shim_probe_write_cr4(value) }
        .into_result()
        .map(|_| ())
}

/// Why [`probe_write_beyond_ram`] refused to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotBeyondRam;

/// Writes `value` at `gpa`, which must be 8-byte aligned, at or above
/// `ram_end` (so no Rust object lives there) and inside the identity map.
/// Under xen-core the GFN is not the domain's: expect the domain to be
/// reported for an NPT fault, or an exception here.
pub fn probe_write_beyond_ram(
    gpa: u64,
    ram_end: u64,
    value: u64,
) -> Result<Result<(), Exception>, NotBeyondRam> {
    if gpa < ram_end || !gpa.is_multiple_of(8) || !super::phys::IdentityMap::covers(gpa, 8) {
        return Err(NotBeyondRam);
    }
    // SAFETY: the address is identity-mapped, aligned, and above all RAM the
    // start info reports, so it holds no object of this program; a fault
    // resumes at the fixup.
    Ok(unsafe { shim_probe_write(gpa, value) }
        .into_result()
        .map(|_| ()))
}

/// Loads an empty IDT and raises #BP: the CPU escalates to #DF and a
/// triple fault, which the hypervisor must contain to this domain.
pub fn triple_fault() -> ! {
    // SAFETY: ends this vCPU on purpose; no Rust state outlives it.
    unsafe { shim_triple_fault() }
}

fn fixup_for(rip: u64) -> Option<u64> {
    // entry.S defines shim_fixups..shim_fixups_end as an array of
    // (faulting RIP, resume RIP) pairs in .rodata.
    let start = core::ptr::addr_of!(shim_fixups) as *const [u64; 2];
    let end = core::ptr::addr_of!(shim_fixups_end) as usize;
    let len = (end - start as usize) / core::mem::size_of::<[u64; 2]>();
    // SAFETY: `len` whole pairs lie between the two symbols, immutable.
    let table = unsafe { core::slice::from_raw_parts(start, len) };
    table.iter().find(|pair| pair[0] == rip).map(|pair| pair[1])
}

static IN_EXCEPTION: AtomicBool = AtomicBool::new(false);

/// Called by `shim_exception_common` with the saved frame.
#[no_mangle]
extern "C" fn shim_exception(frame: &mut TrapFrame) {
    if let Some(resume) = fixup_for(frame.rip) {
        frame.rip = resume;
        frame.rdx = FAULTED | (frame.vector & 0xff);
        return;
    }
    if IN_EXCEPTION.swap(true, Ordering::Relaxed) {
        // Faulted while reporting a fault: stop without printing.
        super::entry::crash();
    }
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let exception = Exception {
        vector: (frame.vector & 0xff) as u8,
    };
    crate::println!(
        "shim: exception {exception} (vector {}) error={:#x} rip={:#x} rsp={:#x} cr2={:#x}",
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        cr2
    );
    super::entry::crash();
}
