/*
 * PVH entry of a guest kernel (xen/include/public/arch-x86/hvm/start_info.h,
 * docs/misc/pvh.pandoc in Xen): the domain builder (or QEMU -kernel) enters
 * at the address in the XEN_ELFNOTE_PHYS32_ENTRY note in 32-bit protected
 * mode, paging off, interrupts off, EBX = GPA of struct hvm_start_info.
 *
 * .bss arrives zeroed: an ELF loader fills p_memsz beyond p_filesz with
 * zeros (System V ABI; xen-core's pvh-builder, Xen's libelf and QEMU's
 * -kernel loader all do), so it is not zeroed again here (for dom0's 24 MiB
 * heap that was a sixth of the boot). We identity-map the first 4 GiB with
 * 2 MiB pages (the image is
 * linked at its GPA, so VA = GPA), enter long mode with our own GDT, fill
 * and load an IDT whose 32 exception vectors go to shim_exception, and call
 * shim_entry64(start_info_gpa), defined by guest_pv_shim::guest_kernel!.
 */

.section .note.Xen, "a"
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: 8-byte entry address (ELF64) */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad shim_pvh_start32
    .balign 4

.section .text.boot32, "ax"
.code32
.global shim_pvh_start32
shim_pvh_start32:
    cli
    cld
    mov %ebx, %esi                  /* keep the start info GPA */

    /* PML4[0] -> PDPT; PDPT[0..3] -> four page directories */
    mov $shim_pdpt, %eax
    or $0x3, %eax
    mov %eax, shim_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $shim_pd, %eax
    or $0x3, %eax
    mov %eax, shim_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* 2048 x 2 MiB present + writable + large pages: GVA = GPA below 4 GiB */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, shim_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, shim_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov $shim_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $(1 << 5), %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx           /* EFER */
    rdmsr
    or $(1 << 8), %eax              /* LME */
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | 1), %eax /* PG, WP, PE */
    mov %eax, %cr0

    lgdt shim_gdt_ptr
    ljmp $0x08, $shim_long_mode

.code64
shim_long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea shim_stack_top(%rip), %rsp
    xor %ebp, %ebp

    /* IDT gates 0..31: present, DPL 0, 64-bit interrupt gate, CS 0x08 */
    lea shim_exception_stubs(%rip), %r8
    lea shim_idt(%rip), %rdi
    xor %ecx, %ecx
3:  mov (%r8,%rcx,8), %rax          /* stub address */
    mov %ax, (%rdi)                 /* offset 15:0 */
    movw $0x08, 2(%rdi)             /* selector */
    movw $0x8e00, 4(%rdi)           /* P | DPL 0 | type 0xE, IST 0 */
    shr $16, %rax
    mov %ax, 6(%rdi)                /* offset 31:16 */
    shr $16, %rax
    mov %eax, 8(%rdi)               /* offset 63:32 */
    movl $0, 12(%rdi)
    add $16, %rdi
    inc %ecx
    cmp $32, %ecx
    jne 3b
    lidt shim_idt_ptr(%rip)

    mov %esi, %edi                  /* arg 0: start info GPA */
    call shim_entry64
4:  hlt
    jmp 4b

/* Exception stubs: push a zero error code where the CPU pushes none, push
 * the vector, save the general registers and call shim_exception(frame). */
.macro EXC_NOERR vec
shim_exc_\vec:
    push $0
    push $\vec
    jmp shim_exception_common
.endm
.macro EXC_ERR vec
shim_exc_\vec:
    push $\vec
    jmp shim_exception_common
.endm

.section .text
EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 3
EXC_NOERR 4
EXC_NOERR 5
EXC_NOERR 6
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 13
EXC_ERR 14
EXC_NOERR 15
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20
EXC_ERR 21
EXC_NOERR 22
EXC_NOERR 23
EXC_NOERR 24
EXC_NOERR 25
EXC_NOERR 26
EXC_NOERR 27
EXC_NOERR 28
EXC_ERR 29
EXC_ERR 30
EXC_NOERR 31

/* Layout must match arch::trap::TrapFrame. */
shim_exception_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    mov %rsp, %rbx
    and $-16, %rsp                  /* SysV call alignment */
    call shim_exception
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp                   /* vector, error code */
    iretq

/* An interrupt-gate entry `name` (IF is clear while it runs) that calls
 * the Rust function `handler`: saves the registers the SysV ABI lets
 * `handler` clobber, aligns the stack, calls it, restores, iretq. No
 * error code. */
.macro shim_interrupt_entry name, handler
.global \name
\name:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    mov %rsp, %rbx
    and $-16, %rsp
    call \handler
    mov %rbx, %rsp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.endm

/* Event-channel upcall (arch::upcall): no EOI, Xen's vector callback is
 * not a LAPIC interrupt. */
shim_interrupt_entry shim_upcall_entry, shim_upcall

/* Local APIC interrupts (arch::lapic): shim_lapic_interrupt counts the
 * interrupt and writes EOI. */
shim_interrupt_entry shim_lapic_entry, shim_lapic_interrupt

/* Probes whose fault is expected: on an exception at the labelled
 * instruction, shim_exception resumes at the fixup with RDX = vector | 0x100
 * (see arch::trap::FAULTED). Results: RAX = value, RDX = 0 or fault. */
.global shim_probe_rdmsr
shim_probe_rdmsr:                   /* (msr: u32) -> ProbeResult */
    mov %edi, %ecx
    xor %edx, %edx
.Lrdmsr_insn:
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    xor %edx, %edx
    ret

.global shim_probe_wrmsr
shim_probe_wrmsr:                   /* (msr: u32, value: u64) -> ProbeResult */
    mov %edi, %ecx
    mov %rsi, %rax
    mov %rsi, %rdx
    shr $32, %rdx
.Lwrmsr_insn:
    wrmsr
    xor %edx, %edx
    xor %eax, %eax
    ret

.global shim_probe_inb
shim_probe_inb:                     /* (port: u16) -> ProbeResult */
    mov %edi, %edx
    xor %eax, %eax
.Linb_insn:
    in %dx, %al
    xor %edx, %edx
    ret

.global shim_probe_write
shim_probe_write:                   /* (gpa: u64, value: u64) -> ProbeResult */
    xor %edx, %edx
    xor %eax, %eax
.Lwrite_insn:
    mov %rsi, (%rdi)
    ret

.global shim_probe_write_cr4
shim_probe_write_cr4:               /* (value: u64) -> ProbeResult */
    xor %edx, %edx
    xor %eax, %eax
.Lcr4_insn:
    mov %rdi, %cr4
    ret

/* Unclaimed MMIO and ports (arch::probe). RDI = address or port, RSI =
 * what RAX holds before a read (so a merge into AL/AX shows), or the value
 * a write stores. */
.global shim_probe_read8
shim_probe_read8:                   /* (gpa, rax_before) -> ProbeResult */
    xor %edx, %edx
    mov %rsi, %rax
.Lread8_insn:
    mov (%rdi), %al
    ret

.global shim_probe_read16
shim_probe_read16:
    xor %edx, %edx
    mov %rsi, %rax
.Lread16_insn:
    mov (%rdi), %ax
    ret

.global shim_probe_read32
shim_probe_read32:
    xor %edx, %edx
    mov %rsi, %rax
.Lread32_insn:
    mov (%rdi), %eax
    ret

.global shim_probe_read64
shim_probe_read64:
    xor %edx, %edx
    mov %rsi, %rax
.Lread64_insn:
    mov (%rdi), %rax
    ret

.global shim_probe_movsx8
shim_probe_movsx8:                  /* (gpa) -> ProbeResult */
    xor %edx, %edx
    xor %eax, %eax
.Lmovsx8_insn:
    movsbq (%rdi), %rax
    ret

.global shim_probe_write32
shim_probe_write32:                 /* (gpa, value) -> ProbeResult */
    xor %edx, %edx
    xor %eax, %eax
.Lwrite32_insn:
    mov %esi, (%rdi)
    ret

.global shim_probe_add32
shim_probe_add32:                   /* (gpa, value): a read-modify-write */
    xor %edx, %edx
    xor %eax, %eax
.Ladd32_insn:
    add %esi, (%rdi)
    ret

.global shim_probe_inw
shim_probe_inw:                     /* (port, rax_before) -> ProbeResult */
    mov %rsi, %rax
    mov %edi, %edx
.Linw_insn:
    in %dx, %ax
    xor %edx, %edx
    ret

.global shim_probe_inl
shim_probe_inl:
    mov %rsi, %rax
    mov %edi, %edx
.Linl_insn:
    in %dx, %eax
    xor %edx, %edx
    ret

.global shim_probe_outb
shim_probe_outb:                    /* (port, value) -> ProbeResult */
    mov %esi, %eax
    mov %edi, %edx
.Loutb_insn:
    out %al, %dx
    xor %edx, %edx
    xor %eax, %eax
    ret

.Lprobe_fixup:
    xor %eax, %eax
    ret

.section .rodata
.balign 8
.global shim_fixups
shim_fixups:                        /* (faulting RIP, resume RIP) pairs */
    .quad .Lrdmsr_insn, .Lprobe_fixup
    .quad .Lwrmsr_insn, .Lprobe_fixup
    .quad .Linb_insn, .Lprobe_fixup
    .quad .Lwrite_insn, .Lprobe_fixup
    .quad .Lcr4_insn, .Lprobe_fixup
    .quad .Lread8_insn, .Lprobe_fixup
    .quad .Lread16_insn, .Lprobe_fixup
    .quad .Lread32_insn, .Lprobe_fixup
    .quad .Lread64_insn, .Lprobe_fixup
    .quad .Lmovsx8_insn, .Lprobe_fixup
    .quad .Lwrite32_insn, .Lprobe_fixup
    .quad .Ladd32_insn, .Lprobe_fixup
    .quad .Linw_insn, .Lprobe_fixup
    .quad .Linl_insn, .Lprobe_fixup
    .quad .Loutb_insn, .Lprobe_fixup
.global shim_fixups_end
shim_fixups_end:

shim_exception_stubs:
    .quad shim_exc_0, shim_exc_1, shim_exc_2, shim_exc_3
    .quad shim_exc_4, shim_exc_5, shim_exc_6, shim_exc_7
    .quad shim_exc_8, shim_exc_9, shim_exc_10, shim_exc_11
    .quad shim_exc_12, shim_exc_13, shim_exc_14, shim_exc_15
    .quad shim_exc_16, shim_exc_17, shim_exc_18, shim_exc_19
    .quad shim_exc_20, shim_exc_21, shim_exc_22, shim_exc_23
    .quad shim_exc_24, shim_exc_25, shim_exc_26, shim_exc_27
    .quad shim_exc_28, shim_exc_29, shim_exc_30, shim_exc_31

.balign 8
shim_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
shim_gdt_end:
shim_gdt_ptr:
    .word shim_gdt_end - shim_gdt - 1
    .long shim_gdt
/* The same for LGDT in 64-bit mode, which reads an 8-byte base. */
shim_gdt_ptr64:
    .word shim_gdt_end - shim_gdt - 1
    .quad shim_gdt

shim_idt_ptr:
    .word 256 * 16 - 1
    .quad shim_idt

/* Triple fault on purpose: an empty IDT makes int3 fault, then #DF, then
 * shutdown (the hostile guest's last check). */
shim_empty_idt_ptr:
    .word 0
    .quad 0

/* A secondary vCPU, started by VCPUOP_initialise in 64-bit mode (arch::smp):
 * long mode and paging on the BSP's page tables, flat segments without
 * selectors, RSP its own stack, RDI its vCPU id. Load the shared GDT and
 * IDT, reload the selectors (CS by a far return) and call
 * shim_ap_entry64(vcpu_id). */
.section .text
.global shim_ap_start64
shim_ap_start64:
    lgdt shim_gdt_ptr64(%rip)
    lidt shim_idt_ptr(%rip)
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    push $0x08
    lea 6f(%rip), %rax
    push %rax
    lretq
6:  xor %ebp, %ebp
    call shim_ap_entry64
7:  hlt
    jmp 7b

/* A secondary vCPU started the PC way (arch::smp::Xen::vcpu_start_sipi):
 * INIT, then a STARTUP IPI with vector V starts it in real mode at
 * CS = V << 8, IP = 0 (AMD APM vol. 2 §16.5, Intel SDM vol. 3 §9.4.4),
 * where the BSP copied shim_trampoline_start..shim_trampoline_end (a page
 * below 1 MiB). The code runs wherever it is copied: EBX holds its linear
 * address, from CS. It loads its own GDT, enters 32-bit protected mode,
 * turns on PAE paging on the BSP's page tables with EFER.LME (long mode,
 * with the BSP's CR0 and CR4, which the BSP writes into the parameters at
 * shim_trampoline_params), and far-jumps to shim_ap_tramp64 in the image.
 * It is data here: never executed in place. */
.section .rodata
.balign 16
.global shim_trampoline_start
shim_trampoline_start:
.code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    movzwl %ax, %ebx
    shl $4, %ebx                            /* EBX = where we run */
    lea (.Ltr_gdt - shim_trampoline_start)(%ebx), %eax
    mov %eax, (.Ltr_gdt_ptr + 2 - shim_trampoline_start)
    lea (.Ltr_protected - shim_trampoline_start)(%ebx), %eax
    mov %eax, (.Ltr_protected_jump - shim_trampoline_start)
    lgdtl (.Ltr_gdt_ptr - shim_trampoline_start)
    mov %cr0, %eax
    or $1, %eax                             /* PE */
    mov %eax, %cr0
    ljmpl *(.Ltr_protected_jump - shim_trampoline_start)
.code32
.Ltr_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (.Ltr_cr4 - shim_trampoline_start)(%ebx), %eax
    mov %eax, %cr4                          /* with PAE */
    mov (.Ltr_cr3 - shim_trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx                   /* EFER */
    rdmsr
    or $(1 << 8), %eax                      /* LME */
    wrmsr
    mov (.Ltr_cr0 - shim_trampoline_start)(%ebx), %eax
    mov %eax, %cr0                          /* PG: long mode */
    ljmpl *(.Ltr_long_jump - shim_trampoline_start)(%ebx)
.balign 8
.Ltr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                /* 0x10: data */
    .quad 0x00af9a000000ffff                /* 0x18: 64-bit code */
.Ltr_gdt_end:
.Ltr_gdt_ptr:
    .word .Ltr_gdt_end - .Ltr_gdt - 1
    .long 0                                 /* its address, set above */
.Ltr_protected_jump:
    .long 0                                 /* .Ltr_protected, set above */
    .word 0x08
.Ltr_long_jump:
    .long shim_ap_tramp64                   /* in the image, below 4 GiB */
    .word 0x18
.balign 4
.global shim_trampoline_params
shim_trampoline_params:                     /* arch::smp::TrampolineParams */
.Ltr_cr0: .long 0
.Ltr_cr3: .long 0
.Ltr_cr4: .long 0
.global shim_trampoline_end
shim_trampoline_end:
.code64

/* The trampoline's long-mode landing: this vCPU's stack and id from the
 * one boot slot (arch::smp: the BSP starts one vCPU at a time), then the
 * same path as a VCPUOP_initialise start. */
.section .text
shim_ap_tramp64:
    mov shim_ap_boot_stack(%rip), %rsp
    mov shim_ap_boot_id(%rip), %edi
    jmp shim_ap_start64

.section .text
.global shim_triple_fault
shim_triple_fault:
    lidt shim_empty_idt_ptr(%rip)
    int3
5:  jmp 5b

.section .bss
.balign 4096
shim_pml4:  .skip 4096
shim_pdpt:  .skip 4096
shim_pd:    .skip 4096 * 4
/* 256 gates: 0-31 filled above, the event upcall's by arch::upcall;
 * the others are not present (a stray interrupt is a #GP: crash). */
.global shim_idt
shim_idt:   .skip 256 * 16
.balign 16
/* 256 KiB: a network guest's smoltcp interface, xenbus client and
 * netfront live on it (64 KiB overflowed into the IDT above). */
shim_stack: .skip 256 * 1024
shim_stack_top:
