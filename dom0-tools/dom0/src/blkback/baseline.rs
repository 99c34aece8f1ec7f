//! The block benchmark's baseline: dom0 reading and writing its disk
//! directly (`Disk::read_blocks`/`write_blocks`, one synchronous request
//! at a time, no ring, no grants), over the same region a bench guest's
//! volume will hold, in the same run. dom0's command line
//! `disk-bench=FIRST_LBA:SECTORS` runs it at boot, before the agent
//! starts: for 4 KiB and 64 KiB units, a sequential read pass, then a
//! write pass that writes back what it read (the region's contents are
//! kept; only the writes are timed). One line per pass, in blkbench's
//! format:
//!
//! `dom0: disk-bench: read 64 KiB qd1: 4194304 bytes, 64 ios, 123 ns, tsc 456, 34.0 MB/s, 520 iops`

use alloc::vec;

use guest_pv_shim::arch::cpu::rdtsc;
use guest_pv_shim::{println, Events};

use crate::devices::Disk;

/// Runs the baseline per `spec` (`FIRST_LBA:SECTORS`); says why not if
/// the spec is bad or the disk fails.
pub fn run(disk: &mut Disk, events: &Events, spec: &str) {
    let parsed = spec
        .split_once(':')
        .and_then(|(lba, n)| Some((lba.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
    let Some((first, sectors)) = parsed.filter(|(_, n)| *n >= 128) else {
        println!("dom0: disk-bench: bad spec {spec:?} (FIRST_LBA:SECTORS, at least 128)");
        return;
    };
    let sectors = sectors / 128 * 128;
    for unit_kib in [4u64, 64] {
        for write in [false, true] {
            if let Err(e) = pass(disk, events, first, sectors, unit_kib, write) {
                println!("dom0: disk-bench: {unit_kib} KiB failed: {e}");
                return;
            }
        }
    }
}

/// One sequential pass in `unit_kib` units.
fn pass(
    disk: &mut Disk,
    events: &Events,
    first: u64,
    sectors: u64,
    unit_kib: u64,
    write: bool,
) -> Result<(), crate::devices::sectors::DiskError> {
    let unit = unit_kib * 2;
    let mut buf = vec![0u8; unit as usize * 512];
    let (mut ns, mut tsc) = (0u64, 0u64);
    for lba in (first..first + sectors).step_by(unit as usize) {
        if write {
            disk.read_blocks(lba, &mut buf)?;
        }
        let (t0, c0) = (events.now().unwrap_or(0), rdtsc());
        if write {
            disk.write_blocks(lba, &buf)?;
        } else {
            disk.read_blocks(lba, &mut buf)?;
        }
        ns += events.now().unwrap_or(0) - t0;
        tsc += rdtsc() - c0;
    }
    let (bytes, ios, ns) = (sectors * 512, sectors / unit, ns.max(1));
    let mb_tenths = bytes * 10_000 / ns;
    println!(
        "dom0: disk-bench: {} {unit_kib} KiB qd1: {bytes} bytes, {ios} ios, {ns} ns, tsc {tsc}, {}.{} MB/s, {} iops",
        if write { "write" } else { "read" },
        mb_tenths / 10,
        mb_tenths % 10,
        ios * 1_000_000_000 / ns
    );
    Ok(())
}
