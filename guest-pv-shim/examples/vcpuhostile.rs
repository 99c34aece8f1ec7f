//! `vcpuhostile`: hostile vCPU operations, each of which must get Xen's
//! error: `VCPUOP_initialise` with a bad context of each kind (header,
//! 64-bit RIP/CR0/CR4/EFER, 32-bit segments, CR4 bits not offered), from
//! an unmapped address, on vCPU 0 (initialised), on ids ≥ nr_vcpus; `up`
//! of an uninitialised vCPU. Prints `vcpuhostile: N of N refused as Xen`
//! and powers off (the domain survives each).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::control::VcpuHvmX86_32;
    use abi::xen::errno::Errno;
    use abi::xen::vcpu::{VcpuHvmContext, VcpuHvmX86_64, VCPUOP_DOWN, VCPUOP_IS_UP, VCPUOP_UP};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    const GOOD: VcpuHvmX86_64 = VcpuHvmX86_64 {
        rax: 0,
        rcx: 0,
        rdx: 0,
        rbx: 0,
        rsp: 0x20_0000,
        rbp: 0,
        rsi: 0,
        rdi: 0,
        rip: 0x10_0000,
        rflags: 2,
        cr0: 0x8001_0031,
        cr3: 0x1000,
        cr4: 0x20,
        efer: 0x100,
    };

    pub fn main(boot: Boot) -> ! {
        let xen = boot.xen;
        let mut header = VcpuHvmContext::x86_64(&GOOD);
        header.pad = 1;
        let mut mode = VcpuHvmContext::x86_64(&GOOD);
        mode.mode = 2;
        let ctx64 = |r: VcpuHvmX86_64| VcpuHvmContext::x86_64(&r);
        let ctx32 = |r: VcpuHvmX86_32| VcpuHvmContext::x86_32(&r);
        let cases: [(&str, VcpuHvmContext); 9] = [
            ("pad", header),
            ("mode", mode),
            (
                "non-canonical RIP",
                ctx64(VcpuHvmX86_64 {
                    rip: 1 << 47,
                    ..GOOD
                }),
            ),
            ("CR0.PG clear", ctx64(VcpuHvmX86_64 { cr0: 0x11, ..GOOD })),
            ("CR4.PAE clear", ctx64(VcpuHvmX86_64 { cr4: 0, ..GOOD })),
            ("EFER.LME clear", ctx64(VcpuHvmX86_64 { efer: 0, ..GOOD })),
            (
                "EFER.SVME",
                ctx64(VcpuHvmX86_64 {
                    efer: 0x1100,
                    ..GOOD
                }),
            ),
            (
                "CR4 bit 31",
                ctx64(VcpuHvmX86_64 {
                    cr4: 0x8000_0020,
                    ..GOOD
                }),
            ),
            ("32-bit null CS", ctx32(VcpuHvmX86_32::default())),
        ];
        let (mut ok, mut total) = (0, 0);
        let mut expect = |what: &str, got: Result<u64, guest_pv_shim::XenError>, want: Errno| {
            total += 1;
            let good = got.err().and_then(|e| e.errno()) == Some(want);
            ok += u32::from(good);
            println!(
                "vcpuhostile: {what}: {got:?} (want -{want:?}) {}",
                if good { "ok" } else { "WRONG" }
            );
        };
        for (what, ctx) in &cases {
            expect(what, xen.vcpu_initialise(1, ctx).map(|()| 0), Errno::EINVAL);
        }
        let good = VcpuHvmContext::x86_64(&GOOD);
        expect(
            "initialise vCPU 0",
            xen.vcpu_initialise(0, &good).map(|()| 0),
            Errno::EEXIST,
        );
        expect(
            "up uninitialised",
            xen.vcpu_op_simple(VCPUOP_UP, 1),
            Errno::EINVAL,
        );
        for id in [2, 8, u32::MAX] {
            expect(
                "initialise id >= nr_vcpus",
                xen.vcpu_initialise(id, &good).map(|()| 0),
                Errno::ENOENT,
            );
            expect(
                "up id >= nr_vcpus",
                xen.vcpu_op_simple(VCPUOP_UP, id),
                Errno::ENOENT,
            );
            expect(
                "down id >= nr_vcpus",
                xen.vcpu_op_simple(VCPUOP_DOWN, id),
                Errno::ENOENT,
            );
        }
        let alive = xen.vcpu_op_simple(VCPUOP_IS_UP, 1) == Ok(0)
            && xen.vcpu_op_simple(VCPUOP_IS_UP, 0) == Ok(1);
        println!("vcpuhostile: {ok} of {total} refused as Xen; vCPU 1 still down: {alive}");
        xen.shutdown(if ok == total && alive {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }
}
