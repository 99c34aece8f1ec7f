//! The world switch: VMRUN and the register shuffling around it.
//!
//! VMRUN loads only RAX, RSP, RIP, RFLAGS and the segment/control state
//! from the VMCB, and #VMEXIT restores only the host's RAX, RSP, RIP,
//! RFLAGS, CS/SS/DS/ES, GDTR/IDTR, CR0/CR3/CR4 and EFER from the host save
//! area (APM vol. 2, §15.5.1 and §15.6). The stub therefore
//! - saves the host's callee-saved registers on its stack and swaps the
//!   other guest GPRs through a [`GuestRegs`] block;
//! - VMSAVEs the host's FS/GS/TR/LDTR (hidden parts included),
//!   KernelGsBase, STAR/LSTAR/CSTAR/SFMASK and SYSENTER_* into this pCPU's
//!   host-state VMCB, VMLOADs the guest's, and reverses both after the
//!   exit (§15.5.2), all with GIF clear so that no interrupt or NMI
//!   reaches the host while guest FS/GS are loaded.
//!
//! Host state the guest still changes (the caller's concern): CR2, DR0-3
//! and DR6 (DR7 reads as reset after #VMEXIT), x87/SSE registers, XCR0
//! (XSETBV is refused), and TSC_AUX (RDTSCP is not intercepted).
//! xen-core itself uses no FPU/SSE (soft-float target) and no debug
//! registers; `extstate` switches the guests' x87/SSE state and DR0-3
//! between vCPUs.

use core::mem::offset_of;

/// The guest general-purpose registers VMRUN does not switch. RAX and
/// RSP live in the VMCB save area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

extern "sysv64" {
    /// Runs the guest of the VMCB at `guest_vmcb_pa` until its next
    /// #VMEXIT, with the GPRs in `regs` (updated on return).
    ///
    /// # Safety
    /// SVM is enabled on this pCPU (EFER.SVME, VM_HSAVE_PA set);
    /// `guest_vmcb_pa` is the HPA of a valid VMCB that nothing else uses
    /// during the call; `host_vmcb_pa` is the HPA of this pCPU's
    /// host-state VMCB; `regs` is valid for reads and writes.
    pub fn svm_vmrun(regs: *mut GuestRegs, guest_vmcb_pa: u64, host_vmcb_pa: u64);
}

core::arch::global_asm!(
    // Its own section: module-level asm continues in whatever section the
    // previous module-level block left (boot.S ends in .bss.boot).
    ".section .text.svm_vmrun, \"ax\"",
    ".global svm_vmrun",
    ".type svm_vmrun, @function",
    "svm_vmrun:",
    // Host callee-saved registers, then the three arguments:
    // [rsp] = host VMCB, [rsp+8] = guest VMCB, [rsp+16] = regs.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push rsi",
    "push rdx",
    "clgi",
    // IF=1 while the guest runs: with V_INTR_MASKING a physical interrupt
    // (the scheduler's APIC timer) then causes an INTR exit; it stays
    // pending while GIF=0 and the host takes it at STGI below.
    "sti",
    "mov rax, rdx",
    "vmsave rax",
    "mov rax, rsi",
    "vmload rax",
    "mov rbx, [rdi + {rbx}]",
    "mov rcx, [rdi + {rcx}]",
    "mov rdx, [rdi + {rdx}]",
    "mov rsi, [rdi + {rsi}]",
    "mov rbp, [rdi + {rbp}]",
    "mov r8, [rdi + {r8}]",
    "mov r9, [rdi + {r9}]",
    "mov r10, [rdi + {r10}]",
    "mov r11, [rdi + {r11}]",
    "mov r12, [rdi + {r12}]",
    "mov r13, [rdi + {r13}]",
    "mov r14, [rdi + {r14}]",
    "mov r15, [rdi + {r15}]",
    "mov rdi, [rdi + {rdi}]",
    // RAX = guest VMCB; the host's RAX/RSP come back at #VMEXIT.
    "vmrun rax",
    "push rdi",
    "mov rdi, [rsp + 24]",
    "mov [rdi + {rbx}], rbx",
    "mov [rdi + {rcx}], rcx",
    "mov [rdi + {rdx}], rdx",
    "mov [rdi + {rsi}], rsi",
    "mov [rdi + {rbp}], rbp",
    "mov [rdi + {r8}], r8",
    "mov [rdi + {r9}], r9",
    "mov [rdi + {r10}], r10",
    "mov [rdi + {r11}], r11",
    "mov [rdi + {r12}], r12",
    "mov [rdi + {r13}], r13",
    "mov [rdi + {r14}], r14",
    "mov [rdi + {r15}], r15",
    "pop qword ptr [rdi + {rdi}]",
    "mov rax, [rsp + 8]",
    "vmsave rax",
    "mov rax, [rsp]",
    "vmload rax",
    "stgi",
    // Host code runs with interrupts off again.
    "cli",
    "add rsp, 24",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size svm_vmrun, . - svm_vmrun",
    rbx = const offset_of!(GuestRegs, rbx),
    rcx = const offset_of!(GuestRegs, rcx),
    rdx = const offset_of!(GuestRegs, rdx),
    rsi = const offset_of!(GuestRegs, rsi),
    rdi = const offset_of!(GuestRegs, rdi),
    rbp = const offset_of!(GuestRegs, rbp),
    r8 = const offset_of!(GuestRegs, r8),
    r9 = const offset_of!(GuestRegs, r9),
    r10 = const offset_of!(GuestRegs, r10),
    r11 = const offset_of!(GuestRegs, r11),
    r12 = const offset_of!(GuestRegs, r12),
    r13 = const offset_of!(GuestRegs, r13),
    r14 = const offset_of!(GuestRegs, r14),
    r15 = const offset_of!(GuestRegs, r15),
);
