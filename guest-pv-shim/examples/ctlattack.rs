//! `ctlattack` (issue 5, acceptance 4): a domU calls every domain-control
//! operation of our control ABI, `SCHEDOP_remote_shutdown` and
//! `PHYSDEVOP_map_pirq`/`unmap_pirq` (hardware domain only), against
//! dom0 and against `victim=N` (default 2, a bystander domU), with
//! well-formed requests. Only dom0 may make them: each must fail with
//! `-EPERM` and change nothing. Prints
//! `ctlattack: <op>: got <result> (expected -EPERM)` per call, then
//! `ctlattack: done` and powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Debug;

    use abi::control::{VcpuHvmX86_32, DOMAIN_NAME_MAX};
    use abi::xen::domid::DomId;
    use abi::xen::sched::SHUTDOWN_POWEROFF;
    use guest_pv_shim::{println, Boot, ShutdownReason, Xen, XenError};

    /// The bystander domU attacked besides dom0 when `victim=` is absent.
    const DEFAULT_VICTIM: DomId = 2;
    /// Where a foreign mapping would land in this domain: 3 GiB, outside
    /// its RAM and the shim's grant window.
    const MAP_AT_GFN: u64 = 0xc000_0000 >> 12;
    /// Memory a created domain would get, KiB.
    const CREATE_KIB: u64 = 4096;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let victim = start_info
            .cmdline_arg("victim")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_VICTIM);
        println!("ctlattack: attacking dom0 and d{victim}");
        let mut name = [0u8; DOMAIN_NAME_MAX];
        name[..6].copy_from_slice(b"intrud");
        report("create", xen.domain_create(&name, CREATE_KIB, 1));
        report("physinfo", xen.physinfo());
        report("list", xen.domain_list(0));
        // Device interrupts are the hardware domain's: COM2's GSI 3, and
        // the pirq dom0's agent would have for it.
        report("map-pirq(GSI 3)", xen.map_pirq_gsi(3));
        report("unmap-pirq(16)", xen.unmap_pirq(16));
        for target in [0, victim] {
            attack(&xen, target);
        }
        println!("ctlattack: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }

    /// Every operation that names a domain, against `target`.
    fn attack(xen: &Xen, target: DomId) {
        let op = |name: &'static str| OpName(name, target);
        report(op("getinfo"), xen.domain_info(target));
        report(op("get-stats"), xen.domain_stats(target));
        report(op("pause"), xen.domain_pause(target));
        report(op("unpause"), xen.domain_unpause(target));
        report(op("populate"), xen.populate(target, 0x8000, 1));
        report(op("map-foreign"), xen.map_foreign(target, 0, 1, MAP_AT_GFN));
        let regs = VcpuHvmX86_32::default();
        report(
            op("set-vcpu-context"),
            xen.set_vcpu_context(target, 0, &regs),
        );
        report(
            op("remote-shutdown"),
            xen.remote_shutdown(target, SHUTDOWN_POWEROFF),
        );
        report(op("destroy"), xen.domain_destroy(target));
    }

    /// `<op>(d<target>)` in the result line.
    struct OpName(&'static str, DomId);

    impl core::fmt::Display for OpName {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}(d{})", self.0, self.1)
        }
    }

    fn report<T: Debug>(op: impl core::fmt::Display, got: Result<T, XenError>) {
        match got {
            Ok(v) => println!("ctlattack: {op}: got Ok({v:?}) (expected -EPERM)"),
            Err(e) => println!("ctlattack: {op}: got {e} (expected -EPERM)"),
        }
    }
}
