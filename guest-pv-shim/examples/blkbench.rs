//! `blkbench` (issue 12): sequential throughput and IOPS through
//! blkfront on its first virtual block device: writes, then reads, of
//! the first `mib=N` MiB (default 4) in I/Os of 4 KiB and 64 KiB (a
//! 64 KiB I/O is two requests, 44 + 20 KiB: 11 segments at most), at
//! queue depth 1 and 32. The data pages are not touched (the path is
//! what is measured). With persistent grants, an untimed warm-up first
//! reads 32 requests of 11 pages at queue depth 32, so that the backend
//! has mapped every data page before the runs (steady state; the maps
//! are a one-time cost per connection, as with Linux's blkback).
//! `persistent=0` turns persistent grants off (to measure without them).
//! One line per run:
//!
//! `blkbench: write 64 KiB qd32: 4194304 bytes, 64 ios, 123456 ns, tsc 789, 33.9 MB/s, 518 iops`
//!
//! then `blkbench: done`. System time comes from the pvclock; under
//! `-icount shift=0` the TSC counts instructions.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use abi::xen::blkif::{BLKIF_OP_READ, BLKIF_OP_WRITE};
    use guest_pv_shim::arch::blkfront::{
        Blkfront, BlkfrontError, MAX_REQUEST_SECTORS, QUEUE_DEPTH,
    };
    use guest_pv_shim::arch::cpu::rdtsc;
    use guest_pv_shim::arch::xenbus_front;
    use guest_pv_shim::{println, Boot, Events, Grants, ShutdownReason, Xen};

    fn fail(xen: &Xen, what: &str, e: impl core::fmt::Debug) -> ! {
        println!("blkbench: {what} failed: {e:?}");
        xen.shutdown(ShutdownReason::Crash)
    }

    /// One run; prints its line.
    fn run(
        bf: &mut Blkfront,
        events: &Events,
        operation: u8,
        unit_kib: u32,
        depth: usize,
        sectors: u64,
    ) -> Result<(), BlkfrontError> {
        let unit = unit_kib * 2;
        let (t0, c0) = (events.now().unwrap_or(0), rdtsc());
        bf.stream(operation, 0, sectors, unit, depth)?;
        let (ns, tsc) = (events.now().unwrap_or(0) - t0, rdtsc() - c0);
        let bytes = sectors * 512;
        let ios = sectors / u64::from(unit);
        let ns = ns.max(1);
        // MB/s with one decimal, from bytes per ns.
        let mb_tenths = bytes * 10_000 / ns;
        println!(
            "blkbench: {} {unit_kib} KiB qd{depth}: {bytes} bytes, {ios} ios, {ns} ns, tsc {tsc}, {}.{} MB/s, {} iops",
            if operation == BLKIF_OP_WRITE { "write" } else { "read" },
            mb_tenths / 10,
            mb_tenths % 10,
            ios * 1_000_000_000 / ns
        );
        Ok(())
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mib: u64 = start_info
            .cmdline_arg("mib")
            .and_then(|n| n.parse().ok())
            .unwrap_or(4);
        let events = Events::init(&xen).unwrap_or_else(|e| fail(&xen, "events", e));
        let grants =
            Grants::init(&xen, start_info.ram_end()).unwrap_or_else(|e| fail(&xen, "grants", e));
        let mut xs = xenbus_front::connect(&events).unwrap_or_else(|e| fail(&xen, "xenbus", e));
        let persistent = start_info.cmdline_arg("persistent") != Some("0");
        let mut bf = Blkfront::connect_with(&mut xs, &events, &grants, None, persistent)
            .unwrap_or_else(|e| fail(&xen, "connect", e));
        let sectors = (mib * 2048).min(bf.sectors()) / 128 * 128;
        println!(
            "blkbench: xvd {}: {} sectors, {sectors} per run, persistent grants {}",
            bf.devid(),
            bf.sectors(),
            if bf.persistent() { "on" } else { "off" }
        );
        if bf.persistent() {
            let warm = (QUEUE_DEPTH as u64 * u64::from(MAX_REQUEST_SECTORS)).min(sectors);
            bf.stream(BLKIF_OP_READ, 0, warm, MAX_REQUEST_SECTORS, QUEUE_DEPTH)
                .unwrap_or_else(|e| fail(&xen, "warm-up", e));
            println!("blkbench: warm-up: {warm} sectors read, every data page granted");
        }
        for operation in [BLKIF_OP_WRITE, BLKIF_OP_READ] {
            for unit_kib in [4, 64] {
                for depth in [1, 32] {
                    run(&mut bf, &events, operation, unit_kib, depth, sectors)
                        .unwrap_or_else(|e| fail(&xen, "run", e));
                }
            }
        }
        println!("blkbench: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
