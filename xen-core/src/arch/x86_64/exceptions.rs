//! The IDT: every architectural exception is fatal in xen-core, and so is
//! every interrupt vector (32..=255) but the local APIC timer
//! ([`apic::TIMER_VECTOR`]), the kick IPI ([`apic::KICK_VECTOR`]), the
//! lock waiters' wake IPI ([`apic::WAKE_VECTOR`]), the APIC's spurious
//! vector
//! ([`apic::SPURIOUS_VECTOR`]) and the device interrupts from the
//! IO-APICs ([`ioapic::IRQ_VECTOR_BASE`] + GSI, [`MAX_GSIS`] of them),
//! which return to the interrupted code.
//!
//! Each fatal vector has an assembly stub that pushes a dummy error code
//! where the CPU pushes none, then the vector, then all general registers,
//! and calls [`exception_entry`] with a pointer to that [`ExceptionFrame`].
//! We use stubs rather than the `x86-interrupt` ABI because the dump must
//! show the registers as they were at the fault, which that ABI does not
//! expose.

use core::fmt::{self, Write};

use abi::convert::usize_from_u64;
use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

use super::cpu::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::fatal::fatal_with;
use super::serial::Com1;
use super::{apic, ioapic};
use crate::irq::MAX_GSIS;

core::arch::global_asm!(
    r#"
    .macro EXCEPTION_STUB vector, has_error_code
    .balign 16
    exception_stub_\vector:
    .if \has_error_code == 0
        push 0
    .endif
        push \vector
        jmp exception_common
    .endm

    .section .text.exceptions, "ax"
    .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
        EXCEPTION_STUB \v, 0
    .endr
    .irp v, 8,10,11,12,13,14,17,21,29,30
        EXCEPTION_STUB \v, 1
    .endr

    exception_common:
        push r15
        push r14
        push r13
        push r12
        push r11
        push r10
        push r9
        push r8
        push rbp
        push rdi
        push rsi
        push rdx
        push rcx
        push rbx
        push rax
        cld
        mov rdi, rsp
        call {entry}
        ud2

    /* Vectors 32..=255: one stub each, at most 12 bytes (push imm8,
     * push imm32, jmp rel32) padded to 16, so the stub of vector v is at
     * interrupt_stubs + (v - 32) * 16. */
    .balign 16
    .global interrupt_stubs
    interrupt_stubs:
    .set interrupt_vector, 32
    .rept 224
        .balign 16
        push 0
        push interrupt_vector
        jmp exception_common
        .set interrupt_vector, interrupt_vector + 1
    .endr

    /* The registers the C ABI lets a called handler clobber (72 bytes). */
    .macro save_caller_saved
        push rax
        push rcx
        push rdx
        push rsi
        push rdi
        push r8
        push r9
        push r10
        push r11
    .endm
    .macro restore_caller_saved
        pop r11
        pop r10
        pop r9
        pop r8
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rax
    .endm

    /* The APIC timer: save what the C ABI lets the handler clobber (the
     * CPU's 40-byte frame + 72 bytes keep RSP 16-byte aligned at the call;
     * the target has no red zone and no SSE). */
    .balign 16
    .global apic_timer_stub
    apic_timer_stub:
        save_caller_saved
        cld
        call {timer}
        restore_caller_saved
        iretq

    /* The kick IPI: as the timer. */
    .balign 16
    .global apic_kick_stub
    apic_kick_stub:
        save_caller_saved
        cld
        call {kick}
        restore_caller_saved
        iretq

    /* The wake IPI: as the timer. */
    .balign 16
    .global apic_wake_stub
    apic_wake_stub:
        save_caller_saved
        cld
        call {wake}
        restore_caller_saved
        iretq

    /* Device interrupts: one stub per GSI pushes its vector (imm8, below
     * 0x80) and joins the common part, which saves what the C ABI lets
     * the handler clobber and calls it with the vector. The CPU's 40-byte
     * frame + 8 (vector) + 72 + 8 (pad) keep RSP 16-byte aligned. */
    .balign 16
    .global device_irq_stubs
    device_irq_stubs:
    .set irq_vector, {irq_base}
    .rept {irq_count}
        .balign 16
        push irq_vector
        jmp device_irq_common
        .set irq_vector, irq_vector + 1
    .endr
    device_irq_common:
        save_caller_saved
        mov rdi, [rsp + 72]
        sub rsp, 8
        cld
        call {device}
        add rsp, 8
        restore_caller_saved
        add rsp, 8
        iretq

    /* A spurious APIC interrupt: no EOI (APM vol. 2, ch. 16), just return. */
    .balign 16
    .global apic_spurious_stub
    apic_spurious_stub:
        iretq

    .section .rodata.exceptions, "a"
    .balign 8
    .global exception_stubs
    exception_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad exception_stub_\v
    .endr
    "#,
    entry = sym exception_entry,
    timer = sym apic::timer_interrupt,
    kick = sym apic::kick_interrupt,
    wake = sym apic::wake_interrupt,
    device = sym ioapic::device_interrupt,
    irq_base = const ioapic::IRQ_VECTOR_BASE,
    irq_count = const MAX_GSIS,
);

extern "C" {
    /// Addresses of the 32 exception stubs above, by vector.
    static exception_stubs: [u64; 32];
    /// The first of the 224 fatal interrupt stubs (vectors 32..=255).
    static interrupt_stubs: u8;
    /// Entry of the APIC timer interrupt.
    static apic_timer_stub: u8;
    /// Entry of the kick IPI.
    static apic_kick_stub: u8;
    /// Entry of the wake IPI.
    static apic_wake_stub: u8;
    /// Entry of the APIC spurious interrupt.
    static apic_spurious_stub: u8;
    /// The first of the device interrupt stubs, one per GSI, 16 bytes
    /// apart.
    static device_irq_stubs: u8;
}

/// Bytes between two interrupt stubs (`.balign 16` above).
const INTERRUPT_STUB_BYTES: u64 = 16;
/// [`MAX_GSIS`] as a vector count.
const MAX_GSIS_U8: u8 = 48;
const _: () = assert!(MAX_GSIS_U8 as u32 == MAX_GSIS);

/// The stack at [`exception_entry`]: registers pushed by `exception_common`,
/// vector and error code pushed by the stub, then the CPU's frame.
#[repr(C)]
pub struct ExceptionFrame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Exception mnemonics (AMD APM vol. 2, 8.2), by vector; "-" = reserved.
const MNEMONICS: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "-", "#MF", "#AC", "#MC", "#XF", "#VE", "#CP", "-", "-", "-", "-", "-", "-",
    "#HV", "#VC", "#SX", "-",
];

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Loads the IDT (built on first use) on this pCPU.
pub fn load_idt() {
    IDT.call_once(build_idt).load();
}

fn build_idt() -> InterruptDescriptorTable {
    // SAFETY: `exception_stubs` is an initialised table in .rodata.
    let stubs = unsafe { &exception_stubs };
    let stub = |vector: usize| VirtAddr::new(stubs[vector]);
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: every address is an exception stub above, which matches the
    // vector's error-code convention and never returns. IST slots exist in
    // every pCPU's TSS (cpu::tss_for).
    unsafe {
        idt.divide_error.set_handler_addr(stub(0));
        idt.debug.set_handler_addr(stub(1));
        idt.non_maskable_interrupt
            .set_handler_addr(stub(2))
            .set_stack_index(IST_NMI);
        idt.breakpoint.set_handler_addr(stub(3));
        idt.overflow.set_handler_addr(stub(4));
        idt.bound_range_exceeded.set_handler_addr(stub(5));
        idt.invalid_opcode.set_handler_addr(stub(6));
        idt.device_not_available.set_handler_addr(stub(7));
        idt.double_fault
            .set_handler_addr(stub(8))
            .set_stack_index(IST_DOUBLE_FAULT);
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.x87_floating_point.set_handler_addr(stub(16));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check
            .set_handler_addr(stub(18))
            .set_stack_index(IST_MACHINE_CHECK);
        idt.simd_floating_point.set_handler_addr(stub(19));
        idt.virtualization.set_handler_addr(stub(20));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.hv_injection_exception.set_handler_addr(stub(28));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
    }
    set_interrupt_handlers(&mut idt);
    idt
}

/// Vectors 32..=255: the APIC's four, the device interrupts, and a fatal
/// stub for every other.
fn set_interrupt_handlers(idt: &mut InterruptDescriptorTable) {
    let first = (&raw const interrupt_stubs) as u64;
    let devices = (&raw const device_irq_stubs) as u64;
    let irq_base = ioapic::IRQ_VECTOR_BASE;
    for vector in 32..=u8::MAX {
        let address = match vector {
            apic::TIMER_VECTOR => (&raw const apic_timer_stub) as u64,
            apic::KICK_VECTOR => (&raw const apic_kick_stub) as u64,
            apic::WAKE_VECTOR => (&raw const apic_wake_stub) as u64,
            apic::SPURIOUS_VECTOR => (&raw const apic_spurious_stub) as u64,
            v if (irq_base..irq_base.saturating_add(MAX_GSIS_U8)).contains(&v) => {
                devices + u64::from(v - irq_base) * INTERRUPT_STUB_BYTES
            }
            _ => first + u64::from(vector - 32) * INTERRUPT_STUB_BYTES,
        };
        // SAFETY: each address is one of the stubs above: the APIC's and
        // the devices' return with IRETQ and keep every register (the
        // handler may clobber only those they save); the others push the
        // vector and never return. None expects an error code (interrupts push none).
        unsafe {
            idt[vector].set_handler_addr(VirtAddr::new(address));
        }
    }
}

/// Called by `exception_common` with interrupts off; never returns.
extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let (kind, name) = match MNEMONICS.get(usize_from_u64(frame.vector)) {
        Some(mnemonic) => ("exception", *mnemonic),
        None => ("interrupt", "(no handler)"),
    };
    fatal_with(
        format_args!(
            "unexpected {kind} #{} {name} error={:#x} rip={:#x} cr2={:#x}",
            frame.vector,
            frame.error_code,
            frame.rip,
            Cr2::read_raw()
        ),
        |com1| dump_registers(com1, frame),
    )
}

fn dump_registers(out: &mut Com1, f: &ExceptionFrame) -> fmt::Result {
    let rows: [[(&str, u64); 4]; 5] = [
        [
            ("rax", f.rax),
            ("rbx", f.rbx),
            ("rcx", f.rcx),
            ("rdx", f.rdx),
        ],
        [
            ("rsi", f.rsi),
            ("rdi", f.rdi),
            ("rbp", f.rbp),
            ("rsp", f.rsp),
        ],
        [("r8", f.r8), ("r9", f.r9), ("r10", f.r10), ("r11", f.r11)],
        [
            ("r12", f.r12),
            ("r13", f.r13),
            ("r14", f.r14),
            ("r15", f.r15),
        ],
        [
            ("rip", f.rip),
            ("rflags", f.rflags),
            ("cs", f.cs),
            ("ss", f.ss),
        ],
    ];
    for row in rows {
        for (name, value) in row {
            write!(out, "  {name:>6}={value:#018x}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}
