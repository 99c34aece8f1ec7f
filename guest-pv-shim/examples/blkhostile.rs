//! `blkhostile` (issue 12): a frontend that sends the backend every bad
//! request of the list on its first virtual block device (attach
//! it read-only, so that a write is one of them), prints the status each
//! got, shows that a good request still works, floods the ring, and last
//! publishes a `req_prod` that runs ahead of the ring.
//!
//! One line per check, `blkhostile: <check>: status <n> (<name>)`, e.g.
//! `blkhostile: sector beyond the end: status -1 (BLKIF_RSP_ERROR)`; then
//! `blkhostile: good read: status 0 (BLKIF_RSP_OKAY)`,
//! `blkhostile: flood: <n> requests answered`, and
//! `blkhostile: ring overrun: backend state Closing`; `blkhostile: done`.
//! Command line: `flood=N` (requests in the flood, default 4096).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::Ordering;

    use abi::xen::blkif::{
        BlkifRequest, BLKIF_OP_DISCARD, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP,
        BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
    };
    use guest_pv_shim::arch::blkfront::{Blkfront, BlkfrontError};
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::blkfront::rw_request;
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::state::XenbusState;
    use guest_pv_shim::xenbus::Client;
    use guest_pv_shim::{println, Boot, Events, Grants, ShutdownReason, Xen};

    fn fail(xen: &Xen, what: &str, e: impl core::fmt::Debug) -> ! {
        println!("blkhostile: {what} failed: {e:?}");
        xen.shutdown(ShutdownReason::Crash)
    }

    fn status_name(status: i16) -> &'static str {
        match status {
            BLKIF_RSP_OKAY => "BLKIF_RSP_OKAY",
            BLKIF_RSP_ERROR => "BLKIF_RSP_ERROR",
            BLKIF_RSP_EOPNOTSUPP => "BLKIF_RSP_EOPNOTSUPP",
            _ => "?",
        }
    }

    /// How a check's request names its page.
    #[derive(Clone, Copy)]
    enum Page {
        /// A page granted for the request (ended after it).
        Granted,
        /// A reference never granted.
        Bogus,
        /// A page granted, then ended before the request is sent.
        Revoked,
    }

    /// Sends `req` (its grefs filled per `page`), returns its status.
    fn send(bf: &mut Blkfront, mut req: BlkifRequest, page: Page) -> Result<i16, BlkfrontError> {
        let id = bf.free_id().ok_or(BlkfrontError::Busy)?;
        req.id = id as u64;
        let gref = match page {
            Page::Bogus => 0xffff,
            Page::Granted | Page::Revoked => bf.grant_page(id, 0, false)?,
        };
        if let Page::Revoked = page {
            bf.end_grant(gref)?;
        }
        for seg in req.seg.iter_mut() {
            seg.gref = gref;
        }
        bf.submit_raw(&req)?;
        let done = bf.wait_completion()?;
        if let Page::Granted = page {
            let _ = bf.end_grant(gref);
        }
        Ok(done.status)
    }

    fn check(
        bf: &mut Blkfront,
        what: &str,
        req: BlkifRequest,
        page: Page,
    ) -> Result<(), BlkfrontError> {
        let status = send(bf, req, page)?;
        println!(
            "blkhostile: {what}: status {status} ({})",
            status_name(status)
        );
        Ok(())
    }

    fn attacks(bf: &mut Blkfront) -> Result<(), BlkfrontError> {
        let end = bf.sectors();
        let handle = (bf.devid() & 0xffff) as u16;
        let read =
            |sector, sectors| rw_request(BLKIF_OP_READ, 0, handle, sector, sectors, &[0; 11]);
        check(bf, "sector beyond the end", read(end - 4, 8), Page::Granted)?;
        check(bf, "sector at u64 max", read(u64::MAX, 1), Page::Granted)?;
        let mut req = read(0, 8);
        req.seg[0].last_sect = 8;
        check(bf, "last_sect past the page", req, Page::Granted)?;
        let mut req = read(0, 8);
        (req.seg[0].first_sect, req.seg[0].last_sect) = (5, 2);
        check(bf, "first_sect after last_sect", req, Page::Granted)?;
        let mut req = read(0, 8);
        req.nr_segments = 0;
        check(bf, "no segments", req, Page::Granted)?;
        let mut req = read(0, 88);
        req.nr_segments = 12;
        check(bf, "12 segments", req, Page::Granted)?;
        check(bf, "bad grant reference", read(0, 8), Page::Bogus)?;
        check(bf, "revoked grant reference", read(0, 8), Page::Revoked)?;
        let write = rw_request(BLKIF_OP_WRITE, 0, handle, 0, 8, &[0; 11]);
        check(bf, "write to a read-only device", write, Page::Granted)?;
        let mut req = read(0, 8);
        req.operation = BLKIF_OP_DISCARD;
        check(bf, "discard", req, Page::Granted)?;
        let mut req = read(0, 8);
        req.operation = 0x7f;
        check(bf, "unknown operation", req, Page::Granted)?;
        check(bf, "good read", read(0, 8), Page::Granted)
    }

    /// `n` reads of 44 KiB, the ring kept full.
    fn flood(bf: &mut Blkfront, n: u64) -> Result<u64, BlkfrontError> {
        let sectors = bf.sectors().min(88 * 64);
        let count = n * 88;
        let mut answered = 0;
        let mut next = 0;
        while answered < count / 88 {
            while next < count && bf.free_id().is_some() {
                let id = bf.free_id().ok_or(BlkfrontError::Busy)?;
                bf.submit(
                    id,
                    BLKIF_OP_READ,
                    next % (sectors.saturating_sub(87).max(1)),
                    88,
                )?;
                next += 88;
            }
            bf.wait_completion()?;
            answered += 1;
        }
        Ok(answered)
    }

    /// Publishes a `req_prod` 1000 past what the ring holds, notifies,
    /// and waits for the backend to give up on the device.
    fn overrun(bf: &Blkfront, xs: &mut Client<StoreRing>) -> Result<XenbusState, BlkfrontError> {
        let words = bf.ring_words();
        let req_prod = words[0].load(Ordering::Relaxed);
        words[0].store(req_prod.wrapping_add(1000), Ordering::Release);
        bf.notify()?;
        let backend =
            xs.other_end(PathBuf::format(format_args!("device/vbd/{}", bf.devid()))?.as_str())?;
        Ok(xs.wait_for_state(backend.as_str(), |s| s >= XenbusState::Closing)?)
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let flood_n = start_info
            .cmdline_arg("flood")
            .and_then(|n| n.parse().ok())
            .unwrap_or(4096);
        let events = Events::init(&xen).unwrap_or_else(|e| fail(&xen, "events", e));
        let grants =
            Grants::init(&xen, start_info.ram_end()).unwrap_or_else(|e| fail(&xen, "grants", e));
        let mut xs = xenbus_front::connect(&events).unwrap_or_else(|e| fail(&xen, "xenbus", e));
        let mut bf = Blkfront::connect(&mut xs, &events, &grants, None)
            .unwrap_or_else(|e| fail(&xen, "connect", e));
        println!(
            "blkhostile: xvd {}: {} sectors{}",
            bf.devid(),
            bf.sectors(),
            if bf.read_only() { ", read-only" } else { "" }
        );
        attacks(&mut bf).unwrap_or_else(|e| fail(&xen, "attacks", e));
        let answered = flood(&mut bf, flood_n).unwrap_or_else(|e| fail(&xen, "flood", e));
        println!("blkhostile: flood: {answered} requests answered");
        let state = overrun(&bf, &mut xs).unwrap_or_else(|e| fail(&xen, "overrun", e));
        println!("blkhostile: ring overrun: backend state {state}");
        println!("blkhostile: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
