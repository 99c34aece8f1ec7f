/*
 * Application processor start-up (AMD APM vol. 2 §16.5, Intel SDM vol. 3
 * §9.4 "Multiple-Processor Initialization"). A STARTUP IPI starts the AP
 * in real mode at CS:IP = (page << 8):0000. smp.rs copies the bytes from
 * ap_trampoline_start to ap_trampoline_end to that page below 1 MiB; they
 * switch to 32-bit protected mode on boot.S's boot_gdt and jump to
 * ap_start32 in the image, which takes the boot pCPU's way into long mode
 * (boot.S's enter_long_mode, on its page tables) to ap_start64.
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
    mov %cr0, %eax
    or $1, %eax                     /* PE */
    mov %eax, %cr0
    ljmpl $0x18, $ap_start32        /* boot_gdt's 32-bit code segment */

.balign 8
ap_gdt_ptr:
    .word 4 * 8 - 1                 /* boot_gdt's four descriptors */
    .long boot_gdt
.global ap_trampoline_end
ap_trampoline_end:

.text
.code32
ap_start32:
    mov $0x10, %ax                  /* boot_gdt's data segment */
    mov %ax, %ds
    mov $ap_start64, %edi
    jmp enter_long_mode

.code64
ap_start64:
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
