/*
 * Application processor start-up (AMD APM vol. 2 §16.5, Intel SDM vol. 3
 * §9.4 "Multiple-Processor Initialization"). A STARTUP IPI starts the AP
 * in real mode at CS:IP = (page << 8):0000. smp.rs copies the bytes from
 * ap_trampoline_start to ap_trampoline_end to that page below 1 MiB; they
 * switch straight from real mode to long mode on xen-core's page tables
 * (boot.S's boot_pml4: PAE, EFER.LME|NXE, CR0.PG|PE|WP at once) and jump
 * to ap_start64 in the image.
 *
 * ap_start64 claims the ticket the boot pCPU left in {ticket} (pCPU index
 * + 1) with one XCHG: 0 means nobody waits for this AP (the boot pCPU gave
 * up on it), and it halts without touching memory. Otherwise it switches
 * to its own main stack in the stack area (stacks.rs) and calls
 * ap_entry(index).
 */

.section .rodata.ap_trampoline, "a"
.code16
.balign 16
.global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds                    /* offsets below are from the page */
    lgdtl ap_gdt_ptr - ap_trampoline_start
    movl $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $(1 << 5), %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx           /* EFER */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax  /* LME, NXE */
    wrmsr
    mov %cr0, %eax
    and $~((1 << 30) | (1 << 29)), %eax   /* INIT leaves CD and NW set */
    or $((1 << 31) | (1 << 16) | 1), %eax /* PG, WP, PE */
    mov %eax, %cr0
    ljmpl $0x08, $ap_start64        /* boot_gdt's 64-bit code segment */

.balign 8
ap_gdt_ptr:
    .word 3 * 8 - 1
    .long boot_gdt
.global ap_trampoline_end
ap_trampoline_end:

.text
.code64
ap_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    xor %eax, %eax
    xchg %eax, {ticket}(%rip)       /* XCHG with memory is atomic */
    test %eax, %eax
    jz 2f
    dec %eax
    mov %eax, %edi                  /* arg 0: pCPU index */
    imul ${stride}, %rax, %rsp
    lea stack_area(%rip), %rcx
    add %rcx, %rsp
    add ${top}, %rsp                /* the top of the index's main stack */
    xor %ebp, %ebp
    call {entry}
2:  cli
    hlt
    jmp 2b
