/*
 * PVH entry (xen/include/public/arch-x86/hvm/start_info.h): QEMU enters at
 * the address in the XEN_ELFNOTE_PHYS32_ENTRY note in 32-bit protected mode,
 * paging off, EBX = physical address of struct hvm_start_info.
 * We zero .bss (the stacks included), identity-map the first 4 GiB with
 * 2 MiB pages (NX outside the image), enter long mode and call
 * arch::x86_64::boot::rust_entry(start_info_pa) on the boot stack.
 */

.section .note.xen, "a"
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: 8-byte entry address (ELF64) */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

.section .text.boot32, "ax"
.code32
.global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                  /* keep start info while we clobber */

    /* zero .bss (boot page tables and stack live there) */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* PML4[0] -> PDPT; PDPT[0..3] -> 4 page directories */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* 2048 x 2 MiB present+writable+large pages; all but those holding
     * our image are no-execute, so xen-core never runs data (guest memory
     * included) as code. */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax                   /* address bits 32.. of this page */
    mov $__image_start, %edx
    shr $21, %edx
    cmp %edx, %ecx
    jb 3f
    mov $__image_end - 1, %edx
    shr $21, %edx
    cmp %edx, %ecx
    jbe 4f
3:  or $0x80000000, %eax            /* NX (bit 63) */
4:  mov %eax, boot_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov $long_mode_entry, %edi
    jmp enter_long_mode

/*
 * enter_long_mode: from 32-bit protected mode, paging off, DS flat (any
 * CPU: the boot pCPU from pvh_start32, each AP from ap_boot.S), as Xen's
 * trampoline_protmode_entry serves both. Switches to long mode on
 * boot_pml4 (CR4.PAE, EFER.LME|NXE, CR0.PG|WP|PE, CR0.CD|NW cleared:
 * INIT leaves an AP with them set), loads boot_gdt, its data segment in
 * DS, ES, SS and null FS, GS, and jumps to the 64-bit code at EDI.
 * Clobbers EAX, ECX, EDX; keeps ESI.
 */
.global enter_long_mode
enter_long_mode:
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $(1 << 5), %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx           /* EFER */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax  /* LME, NXE */
    wrmsr
    mov %cr0, %eax
    and $~((1 << 30) | (1 << 29)), %eax   /* CD, NW */
    or $((1 << 31) | (1 << 16) | 1), %eax /* PG, WP, PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $.Lin_long_mode

.code64
.Lin_long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov %edi, %edi                  /* upper halves are undefined after the switch */
    jmp *%rdi

long_mode_entry:
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %esi, %edi                  /* arg 0: start info physical address */
    call rust_entry
5:  hlt
    jmp 5b

.section .rodata.boot, "a"
.balign 8
.global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00cf9a000000ffff        /* 0x18: 32-bit code (an AP's way in) */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .bss.boot, "aw", @nobits
.balign 4096
.global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
.global boot_pd
boot_pd:    .skip 4096 * 4
/* boot_stack_top: the top of the boot stack in stacks.rs's StackArea,
 * above a guard page that stacks::install_guards unmaps. */

/* Back to .text: rustc concatenates global_asm! blocks in an order of
 * its choosing, and the next one may assume the default section. */
.text
