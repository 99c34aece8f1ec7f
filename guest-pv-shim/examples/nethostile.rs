//! `nethostile` (issue 13): a frontend that sends netback bad tx
//! requests, one attack per name in `attacks=` (default all, in this
//! order), on vif 0. Each prints `nethostile: <attack>: status <s>`
//! (the backend's `NETIF_RSP_*`; -1 is `NETIF_RSP_ERROR`):
//! - `oversize`: a 9000-byte frame;
//! - `badgrant`: a grant reference that is not ours (4000);
//! - `badoffset`: an offset past the page (5000);
//! - `crosspage`: 200 bytes at offset 4000;
//! - `spoof`: a well-formed frame from a MAC that is not the vif's
//!   (netback answers 0; the switch drops and counts it);
//! - `flood`: first `nethostile: flood: waiting for rate` until the
//!   backend's `rate` node exists, then 200 frames as fast as the ring
//!   takes them: `nethostile: flood: 200 frames, 200 answered`;
//! - `ring`: `req_prod` 1000 past the ring; the backend must close the
//!   vif: `nethostile: ring: backend state Closing`.
//!
//! Then `nethostile: done`; poweroff. Command line `ip=` is not needed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::Ordering;

    use abi::xen::netif::NetifTxRequest;
    use guest_pv_shim::arch::netfront::Netfront;
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::netfront::Buffers;
    use guest_pv_shim::page_bytes::write_bytes;
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::state::XenbusState;
    use guest_pv_shim::xenbus::Client;
    use guest_pv_shim::{println, Boot, Events, Grants, ShutdownReason};

    const ALL: &str = "oversize,badgrant,badoffset,crosspage,spoof,flood,ring";
    const FLOOD_FRAMES: u16 = 200;
    /// The frames it builds: a minimum Ethernet frame without FCS.
    const FRAME_LEN: u16 = 60;
    /// How long to wait for one answer, ns.
    const ANSWER_NS: u64 = 5_000_000_000;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let setup = (Events::init(&xen), Grants::init(&xen, start_info.ram_end()));
        let (Ok(events), Ok(grants)) = setup else {
            println!("nethostile: no events or grants");
            xen.shutdown(ShutdownReason::Crash)
        };
        let Ok(mut xs) = xenbus_front::connect(&events) else {
            println!("nethostile: no store");
            xen.shutdown(ShutdownReason::Crash)
        };
        let mut front = match Netfront::connect(&mut xs, &events, &grants, 0) {
            Ok(f) => f,
            Err(e) => {
                println!("nethostile: vif 0: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        println!("nethostile: vif up");
        let attacks = start_info.cmdline_arg("attacks").unwrap_or(ALL);
        for attack in attacks.split(',') {
            run(attack, &mut front, &mut xs);
        }
        println!("nethostile: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }

    fn run(attack: &str, front: &mut Netfront, xs: &mut Client<StoreRing>) {
        let gref = front.rings().buffers().tx_gref(0);
        let req = |offset, size| NetifTxRequest {
            gref,
            offset,
            flags: 0,
            id: 0,
            size,
        };
        match attack {
            "oversize" => one(attack, front, req(0, 9000)),
            "badgrant" => one(
                attack,
                front,
                NetifTxRequest {
                    gref: 4000,
                    ..req(0, 60)
                },
            ),
            "badoffset" => one(attack, front, req(5000, 60)),
            "crosspage" => one(attack, front, req(4000, 200)),
            "spoof" => {
                let mut frame = frame_from(front.mac());
                frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x66]);
                write_bytes(front.rings().buffers().tx_page(0), 0, &frame);
                one(attack, front, req(0, FRAME_LEN));
            }
            "flood" => flood(front, xs),
            "ring" => ring(front, xs),
            other => println!("nethostile: {other}: unknown attack"),
        }
    }

    /// A 60-byte IPv4-typed frame from `mac` to an address no port has.
    fn frame_from(mac: [u8; 6]) -> [u8; FRAME_LEN as usize] {
        let mut frame = [0u8; FRAME_LEN as usize];
        frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
        frame[6..12].copy_from_slice(&mac);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame
    }

    /// Sends one request and prints the status of its answer.
    fn one(attack: &str, front: &mut Netfront, req: NetifTxRequest) {
        if front.rings().send_raw(&req).is_err() {
            println!("nethostile: {attack}: ring full");
            return;
        }
        if front.rings().push_tx() {
            front.notify();
        }
        match answer(front) {
            Some(status) => println!("nethostile: {attack}: status {status}"),
            None => println!("nethostile: {attack}: no answer"),
        }
    }

    fn answer(front: &mut Netfront) -> Option<i16> {
        let deadline = front.now() + ANSWER_NS;
        loop {
            if let Ok(Some(rsp)) = front.rings().take_tx_response() {
                return Some(rsp.status);
            }
            if front.now() >= deadline {
                return None;
            }
            front.wait_raw(Some(deadline));
        }
    }

    fn backend(xs: &mut Client<StoreRing>) -> Option<PathBuf> {
        xs.other_end("device/vif/0").ok()
    }

    fn flood(front: &mut Netfront, xs: &mut Client<StoreRing>) {
        println!("nethostile: flood: waiting for rate");
        let Some(be) = backend(xs) else {
            return;
        };
        let Ok(rate) = PathBuf::format(format_args!("{}/rate", be.as_str())) else {
            return;
        };
        if xs.wait_until(rate.as_str(), |v| v.is_some()).is_err() {
            return;
        }
        let frame = frame_from(front.mac());
        write_bytes(front.rings().buffers().tx_page(0), 0, &frame);
        let gref = front.rings().buffers().tx_gref(0);
        let (mut sent, mut answered) = (0, 0);
        let deadline = front.now() + 60 * ANSWER_NS;
        loop {
            while sent < FLOOD_FRAMES {
                let req = NetifTxRequest {
                    gref,
                    offset: 0,
                    flags: 0,
                    id: sent,
                    size: FRAME_LEN,
                };
                if front.rings().send_raw(&req).is_err() {
                    break;
                }
                sent += 1;
            }
            if front.rings().push_tx() {
                front.notify();
            }
            while let Ok(Some(rsp)) = front.rings().take_tx_response() {
                if rsp.status == 0 {
                    answered += 1;
                }
            }
            // Sleeps only while answers are due: after the last one no
            // event comes, and the wait would last to the deadline.
            if answered >= FLOOD_FRAMES || front.now() >= deadline {
                break;
            }
            front.wait_raw(Some(deadline));
        }
        println!("nethostile: flood: {sent} frames, {answered} answered");
    }

    fn ring(front: &mut Netfront, xs: &mut Client<StoreRing>) {
        let page = front.tx_ring_page();
        let prod = page[0].load(Ordering::Relaxed);
        page[0].store(prod.wrapping_add(1000), Ordering::Release);
        front.notify();
        let Some(be) = backend(xs) else {
            return;
        };
        match xs.wait_for_state(be.as_str(), |s| s >= XenbusState::Closing) {
            Ok(state) => println!("nethostile: ring: backend state {state}"),
            Err(e) => println!("nethostile: ring: {e:?}"),
        }
    }
}
