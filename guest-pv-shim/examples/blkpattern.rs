//! `blkpattern` (issue 12): writes a pattern across its first virtual
//! block device and flushes, or (command line `verify`) reads it back and
//! checks it. The pattern depends on the volume's name (the backend's
//! `params`) and each sector's number, so data of another volume, or of
//! another place on this one, never passes.
//!
//! Command line: `verify` (check instead of write), `sectors=N` (only the
//! first N sectors; default the whole device), `depth=D` (requests in
//! flight, default 32), `wait-device` (print `blkpattern: waiting for a
//! disk` and wait until the toolstack attaches one, e.g. `dom0ctl
//! block-attach`).
//!
//! Prints `blkpattern: xvd <devid>: volume <name>, <n> sectors[, read-only]`,
//! then `blkpattern: wrote <n> sectors, flushed, checksum <x>` or
//! `blkpattern: verify ok: <n> sectors, checksum <x>` /
//! `blkpattern: verify FAILED: <bad> bad sectors, first <s>`, with
//! `elapsed <ns> ns, tsc <t>`; then powers off (crash on failure).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::blkfront::{Blkfront, BlkfrontError};
    use guest_pv_shim::arch::cpu::rdtsc;
    use guest_pv_shim::arch::xenbus_front;
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::Tx;
    use guest_pv_shim::{println, Boot, Events, Grants, ShutdownReason, Xen};

    /// FNV-1a of the volume's name: the pattern's seed.
    fn seed(name: &str) -> u64 {
        name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Sector `sector`'s contents: 64 words mixing the seed, the sector
    /// and the word's index.
    fn pattern(seed: u64, sector: u64, out: &mut [u8; 512]) {
        for (i, word) in out.chunks_exact_mut(8).enumerate() {
            let x = (seed ^ sector.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64)
                .wrapping_mul(0xff51_afd7_ed55_8ccd);
            word.copy_from_slice(&(x ^ (x >> 29)).to_le_bytes());
        }
    }

    /// A sector's hash (FNV-1a over its words); the checksum is their
    /// sum, so it does not depend on the order requests complete in.
    fn hash(data: &[u8; 512]) -> u64 {
        data.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325, |h, w| {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            (h ^ w).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn fail(xen: &Xen, what: &str, e: impl core::fmt::Debug) -> ! {
        println!("blkpattern: {what} failed: {e:?}");
        xen.shutdown(ShutdownReason::Crash)
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let verify = start_info.cmdline_arg("verify").is_some();
        let depth = start_info
            .cmdline_arg("depth")
            .and_then(|d| d.parse().ok())
            .unwrap_or(32);
        let events = Events::init(&xen).unwrap_or_else(|e| fail(&xen, "events", e));
        let grants =
            Grants::init(&xen, start_info.ram_end()).unwrap_or_else(|e| fail(&xen, "grants", e));
        let mut xs = xenbus_front::connect(&events).unwrap_or_else(|e| fail(&xen, "xenbus", e));
        if start_info.cmdline_arg("wait-device").is_some() {
            println!("blkpattern: waiting for a disk");
            xs.wait_until("device/vbd", |v| v.is_some())
                .unwrap_or_else(|e| fail(&xen, "wait-device", e));
        }
        let mut bf = Blkfront::connect(&mut xs, &events, &grants, None)
            .unwrap_or_else(|e| fail(&xen, "connect", e));
        let name = volume_name(&mut xs, bf.devid()).unwrap_or_else(|e| fail(&xen, "params", e));
        let sectors = start_info
            .cmdline_arg("sectors")
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
            .min(bf.sectors());
        println!(
            "blkpattern: xvd {}: volume {}, {} sectors{}",
            bf.devid(),
            name.as_str(),
            bf.sectors(),
            if bf.read_only() { ", read-only" } else { "" }
        );
        let seed = seed(name.as_str());
        let (t0, c0) = (events.now().unwrap_or(0), rdtsc());
        let ok = if verify {
            verify_all(&mut bf, seed, sectors, depth)
        } else {
            write_all(&mut bf, seed, sectors, depth)
        }
        .unwrap_or_else(|e| fail(&xen, if verify { "verify" } else { "write" }, e));
        let (t1, c1) = (events.now().unwrap_or(0), rdtsc());
        println!("blkpattern: elapsed {} ns, tsc {}", t1 - t0, c1 - c0);
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    /// The backend's `params`: the volume's name.
    fn volume_name(
        xs: &mut guest_pv_shim::xenbus::Client<xenbus_front::StoreRing>,
        devid: u32,
    ) -> Result<PathBuf, guest_pv_shim::xenbus::XenbusError> {
        let backend =
            xs.other_end(PathBuf::format(format_args!("device/vbd/{devid}"))?.as_str())?;
        let key = PathBuf::format(format_args!("{}/params", backend.as_str()))?;
        let value = xs.read_str(Tx::NONE, key.as_str())?;
        PathBuf::format(format_args!("{value}"))
    }

    fn write_all(
        bf: &mut Blkfront,
        seed: u64,
        sectors: u64,
        depth: usize,
    ) -> Result<bool, BlkfrontError> {
        let mut sum = 0u64;
        bf.write_sectors(0, sectors, depth, |s, data| {
            pattern(seed, s, data);
            sum = sum.wrapping_add(hash(data));
        })?;
        bf.flush()?;
        println!("blkpattern: wrote {sectors} sectors, flushed, checksum {sum}");
        Ok(true)
    }

    fn verify_all(
        bf: &mut Blkfront,
        seed: u64,
        sectors: u64,
        depth: usize,
    ) -> Result<bool, BlkfrontError> {
        let (mut sum, mut bad, mut first_bad) = (0u64, 0u64, None);
        let mut want = [0u8; 512];
        bf.read_sectors(0, sectors, depth, |s, data| {
            pattern(seed, s, &mut want);
            if *data != want {
                bad += 1;
                first_bad.get_or_insert(s);
            }
            sum = sum.wrapping_add(hash(data));
        })?;
        match first_bad {
            None => println!("blkpattern: verify ok: {sectors} sectors, checksum {sum}"),
            Some(first) => println!("blkpattern: verify FAILED: {bad} bad sectors, first {first}"),
        }
        Ok(bad == 0)
    }
}
