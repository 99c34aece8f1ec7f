//! `hello`: prints its start info, the Xen version and memory map it sees,
//! greets, and powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::xen::memory::E820Entry;
    use guest_pv_shim::{console::nul_padded_str, println, Boot, ShutdownReason};

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        println!("hello: start info: {start_info}");
        for e in start_info.memmap() {
            println!("hello: memmap {:#x}+{:#x} type {}", e.addr, e.size, e.kind);
        }
        match xen.version().and_then(|v| Ok((v, xen.extraversion()?))) {
            Ok(((major, minor), extra)) => {
                println!("hello: Xen {major}.{minor}{}", nul_padded_str(&extra))
            }
            Err(e) => println!("hello: xen_version failed: {e}"),
        }
        let mut e820 = [E820Entry::default(); 16];
        match xen.memory_map(&mut e820) {
            Ok(n) => println!("hello: XENMEM_memory_map: {n} entries"),
            Err(e) => println!("hello: XENMEM_memory_map failed: {e}"),
        }
        println!("hello: Hello from a PVH domain!");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
