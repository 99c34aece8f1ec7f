//! `xshostile` (issue 11): a hostile store client. Command line
//! `attacks=a,b,...` runs these in order, each printing
//! `xshostile: <attack>: <what the store did>`:
//!
//! - `nonul`: `XS_READ` whose path lacks its NUL (expect an error reply);
//! - `pathlen`: `XS_READ` of an absolute path past `XENSTORE_ABS_PATH_MAX`;
//! - `escape`: `XS_READ` of `../0/name`, a relative path leaving its home;
//! - `type`: a message of type 99;
//! - `flood`: 500 `XS_READ`s pipelined without waiting for replies (the
//!   store stops taking requests while `xenstore::quota::QUOTA_OUTSTANDING`
//!   replies are unread); prints how many replies came back;
//! - `watches`: `XS_WATCH` until refused (the `watches` quota, 128);
//! - `tx`: `XS_TRANSACTION_START` until refused (`transactions`, 10);
//! - `payload`: a header announcing 5000 bytes (> `XENSTORE_PAYLOAD_MAX`):
//!   the store drops the connection (`error` = 3 in the page);
//! - `ring`: `req_prod` moved 64 KiB past `req_cons`: dropped (`error` 2).
//!
//! After each non-fatal attack it checks the connection still serves it
//! (`xshostile: <attack>: still served`). Ends with `xshostile: done`;
//! poweroff.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::Ordering;

    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::ring::XENSTORE_RING_SIZE;
    use guest_pv_shim::xenbus::wire::{Header, MsgType, XsError, HEADER_SIZE};
    use guest_pv_shim::xenbus::{Client, Transport, Tx, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    type Xs = Client<StoreRing>;

    /// How long a wait for the store may take before the attack reports
    /// what the page says (system time, ns): only for a store that stays
    /// silent after dropping us.
    const WAIT_NS: u64 = 3_000_000_000;
    /// Requests the flood pipelines.
    const FLOOD: u32 = 500;
    /// Most watches or transactions tried (well past the quotas).
    const QUOTA_PROBES: u32 = 200;

    /// The reply to one raw request, in words.
    fn answer(xs: &mut Xs, msg_type: u32, payload: &[u8]) -> &'static str {
        let header = Header {
            msg_type,
            req_id: xs.next_req_id(),
            tx_id: 0,
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        };
        describe(xs.raw_request(header, payload).map(|(t, p)| error_of(t, p)))
    }

    fn error_of(msg_type: u32, payload: &[u8]) -> Option<XsError> {
        (msg_type == MsgType::Error as u32)
            .then(|| XsError::from_payload(payload).unwrap_or(XsError::Einval))
    }

    fn describe(result: Result<Option<XsError>, XenbusError>) -> &'static str {
        match result {
            Ok(None) => "accepted",
            Ok(Some(e)) => e.as_str(),
            Err(XenbusError::ConnectionDropped(2)) => "connection dropped (error 2: ring index)",
            Err(XenbusError::ConnectionDropped(3)) => "connection dropped (error 3: protocol)",
            Err(XenbusError::ConnectionDropped(_)) => "connection dropped",
            Err(XenbusError::Timeout) => "no answer",
            Err(_) => "client error",
        }
    }

    fn flood(xs: &mut Xs) -> Result<(), XenbusError> {
        let first = xs.next_req_id();
        let mut answered = 0;
        for i in 0..FLOOD {
            let header = Header {
                msg_type: MsgType::Read as u32,
                req_id: first + i,
                tx_id: 0,
                len: 5,
            };
            // Replies are taken only when the request ring has no room.
            while free_request_space(xs) < HEADER_SIZE + 5 {
                xs.raw_receive(first + answered)?;
                answered += 1;
            }
            xs.raw_send(header, b"name\0")?;
        }
        let _ = xs.next_req_id();
        while answered < FLOOD {
            xs.raw_receive(first + answered)?;
            answered += 1;
        }
        println!("xshostile: flood: {FLOOD} requests pipelined, {answered} replies");
        Ok(())
    }

    fn free_request_space(xs: &mut Xs) -> usize {
        let page = xs.transport().page();
        let used = page
            .req_prod
            .load(Ordering::Acquire)
            .wrapping_sub(page.req_cons.load(Ordering::Acquire));
        XENSTORE_RING_SIZE.saturating_sub(used as usize)
    }

    /// Sends `msg` until refused; how many were accepted and the refusal.
    fn until_refused(
        xs: &mut Xs,
        what: &str,
        mut send: impl FnMut(&mut Xs, u32) -> Result<(), XenbusError>,
    ) {
        for n in 0..QUOTA_PROBES {
            if let Err(e) = send(xs, n) {
                println!("xshostile: {what}: {n} accepted, then {e}");
                return;
            }
        }
        println!("xshostile: {what}: all {QUOTA_PROBES} accepted");
    }

    fn watches(xs: &mut Xs) {
        until_refused(xs, "watches", |xs, n| {
            let token = PathBuf::format(format_args!("hostile{n}"))?;
            let header = Header {
                msg_type: MsgType::Watch as u32,
                req_id: xs.next_req_id(),
                tx_id: 0,
                len: 0,
            };
            let mut payload = [0u8; 32];
            let arg = PathBuf::format(format_args!("data\0{}\0", token.as_str()))?;
            let len = arg.as_str().len();
            payload[..len].copy_from_slice(arg.as_str().as_bytes());
            let header = Header {
                len: u32::try_from(len).unwrap_or(0),
                ..header
            };
            match xs.raw_request(header, &payload[..len]) {
                Ok((t, p)) => error_of(t, p).map_or(Ok(()), |e| Err(XenbusError::Store(e))),
                Err(e) => Err(e),
            }
        });
        let reset = Header {
            msg_type: MsgType::ResetWatches as u32,
            req_id: xs.next_req_id(),
            tx_id: 0,
            len: 0,
        };
        let _ = xs.raw_request(reset, b"");
        let _ = xs.dispatch_events();
    }

    fn transactions(xs: &mut Xs) {
        let mut open = [Tx::NONE; 16];
        let mut count = 0;
        until_refused(xs, "tx", |xs, _| {
            let tx = xs.transaction_start()?;
            if let Some(slot) = open.get_mut(count) {
                *slot = tx;
                count += 1;
            }
            Ok(())
        });
        for tx in &open[..count] {
            let _ = xs.transaction_end(*tx, false);
        }
    }

    /// Moves `req_prod` far past `req_cons` and waits for the store's verdict.
    fn corrupt_ring(xs: &mut Xs) -> &'static str {
        let page = xs.transport().page();
        let cons = page.req_cons.load(Ordering::Acquire);
        page.req_prod
            .store(cons.wrapping_add(0x1_0000), Ordering::Release);
        xs.transport().notify();
        for _ in 0..16 {
            if let Some(code) = xs.transport().page().store_error() {
                return describe(Err(XenbusError::ConnectionDropped(code)));
            }
            if xs.transport().wait().is_err() {
                break;
            }
        }
        "no verdict"
    }

    fn run(xs: &mut Xs, attack: &str) {
        let result = match attack {
            "nonul" => answer(xs, MsgType::Read as u32, b"data/x"),
            "pathlen" => {
                let mut path = [b'a'; 3200];
                path[0] = b'/';
                path[3199] = 0;
                answer(xs, MsgType::Read as u32, &path)
            }
            "escape" => answer(xs, MsgType::Read as u32, b"../0/name\0"),
            "type" => answer(xs, 99, b""),
            "flood" => match flood(xs) {
                Ok(()) => return still_served(xs, attack),
                Err(e) => return println!("xshostile: flood: {e}"),
            },
            "watches" => {
                return {
                    watches(xs);
                    still_served(xs, attack)
                }
            }
            "tx" => {
                return {
                    transactions(xs);
                    still_served(xs, attack)
                }
            }
            "payload" => {
                let header = Header {
                    msg_type: MsgType::Write as u32,
                    req_id: xs.next_req_id(),
                    tx_id: 0,
                    len: 5000,
                };
                describe(
                    xs.raw_request(header, b"data/x\0")
                        .map(|(t, p)| error_of(t, p)),
                )
            }
            "ring" => corrupt_ring(xs),
            other => return println!("xshostile: unknown attack {other}"),
        };
        println!("xshostile: {attack}: {result}");
        if !result.starts_with("connection dropped") {
            still_served(xs, attack);
        }
    }

    fn still_served(xs: &mut Xs, attack: &str) {
        match xs.read(Tx::NONE, "name") {
            Ok(_) => println!("xshostile: {attack}: still served"),
            Err(e) => println!("xshostile: {attack}: not served any more: {e}"),
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xshostile: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        xs.transport().set_timeout(Some(WAIT_NS));
        let attacks = start_info.cmdline_arg("attacks").unwrap_or("nonul");
        for attack in attacks.split(',') {
            run(&mut xs, attack);
        }
        println!("xshostile: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
