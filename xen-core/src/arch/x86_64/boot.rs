//! From the PVH entry stub to Rust.

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

/// Called by `boot.S` in long mode with the identity map and boot stack.
#[no_mangle]
extern "C" fn rust_entry(start_info_pa: u32) -> ! {
    crate::arch::x86_64::boot::early_puts("xen-core: PVH entry reached\n");
    let _ = start_info_pa;
    crate::arch::x86_64::boot::debug_exit(0);
}

pub fn early_puts(s: &str) {
    for b in s.bytes() {
        // SAFETY: COM1 data port; writing a byte has no memory effects.
        unsafe { core::arch::asm!("out dx, al", in("dx") 0x3f8u16, in("al") b) };
    }
}

pub fn debug_exit(code: u8) -> ! {
    loop {
        // SAFETY: isa-debug-exit port; ends QEMU.
        unsafe { core::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") code) };
    }
}
