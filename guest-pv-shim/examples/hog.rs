//! `hog`: never yields, blocks or halts: it spins with interrupts off.
//! Only the hypervisor's timer preemption lets other domains run.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::{println, Boot};

    pub fn main(_boot: Boot) -> ! {
        println!("hog: spinning without yielding");
        loop {
            core::hint::spin_loop();
        }
    }
}
