//! `pingpong` (issue 4, scenario 1): two domUs, `role=pong peer=<ping's
//! domid>` and `role=ping peer=<pong's domid>`, `rounds=N` (default
//! 10000), exchange N notifications over an interdomain event channel,
//! each side writing and checking a sequence number in a page pong grants.
//!
//! Agreement without a store: pong first grants its page to ping (the
//! first reference a fresh table hands out, `grant::FIRST_FREE_REF` = 8),
//! then allocates an unbound port for ping; ping binds the first port
//! pong offers it (`Events::bind_first_offered`), then maps reference 8.
//! Round i: ping writes i to word 0 and notifies; pong, woken, checks
//! word 0 = i, writes i to word 1 and notifies back; ping checks word 1.
//! Each handled event is counted: a round that times out or sees a stale
//! number is lost, an event beyond one per round is duplicated.
//!
//! `setup_s=S` (default 10): how long, in seconds of guest time, ping
//! looks for pong's port and pong waits for ping's first round (longer
//! when the toolstack creates ping after pong).
//!
//! Output: `pingpong: <role> ready ...`, then
//! `pingpong: <role> done rounds=<n> lost=<l> duplicated=<d>`; poweroff
//! if both are 0, else crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::xen::domid::DomId;
    use abi::xen::event_channel::EvtchnPort;
    use guest_pv_shim::grant::FIRST_FREE_REF;
    use guest_pv_shim::{println, Boot, Events, Grants, SharedFrame, ShutdownReason, Xen};

    const DEFAULT_ROUNDS: u64 = 10_000;
    /// How long one round may take before it counts as lost.
    const ROUND_TIMEOUT_NS: u64 = 5_000_000_000;
    /// Default of how long ping looks for pong's port and grant, and pong
    /// waits for ping's first round, in seconds.
    const DEFAULT_SETUP_S: u64 = 10;
    /// Words of the shared page: ping's and pong's sequence numbers.
    const PING_SEQ: usize = 0;
    const PONG_SEQ: usize = 1;

    static PAGE: SharedFrame = SharedFrame::new();
    static EVENTS_SEEN: AtomicU64 = AtomicU64::new(0);

    fn count(_: EvtchnPort) {
        EVENTS_SEEN.fetch_add(1, Ordering::SeqCst);
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Role {
        Ping,
        Pong,
    }

    impl Role {
        fn name(self) -> &'static str {
            match self {
                Role::Ping => "ping",
                Role::Pong => "pong",
            }
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let role = match start_info.cmdline_arg("role") {
            Some("ping") => Role::Ping,
            Some("pong") => Role::Pong,
            other => fail(&xen, "pingpong: need role=ping|pong", other),
        };
        let Some(peer) = start_info
            .cmdline_arg("peer")
            .and_then(|p| p.parse::<DomId>().ok())
        else {
            fail(
                &xen,
                "pingpong: need peer=<domid>",
                start_info.cmdline_arg("peer"),
            )
        };
        let rounds = start_info
            .cmdline_arg("rounds")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS);
        let setup_ns = start_info
            .cmdline_arg("setup_s")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(DEFAULT_SETUP_S)
            .saturating_mul(1_000_000_000);
        let events = Events::init(&xen).unwrap_or_else(|e| fail(&xen, "pingpong: events", Some(e)));
        let grants = Grants::init(&xen, start_info.ram_end())
            .unwrap_or_else(|e| fail(&xen, "pingpong: grants", Some(e)));
        let result = match role {
            Role::Pong => pong(&events, &grants, peer, rounds, setup_ns),
            Role::Ping => ping(&events, &grants, peer, rounds, setup_ns),
        };
        let (done, lost) = result.unwrap_or_else(|(done, what)| {
            println!(
                "pingpong: {} stopped after {done} rounds: {what}",
                role.name()
            );
            (done, rounds - done)
        });
        let duplicated = EVENTS_SEEN.load(Ordering::SeqCst).saturating_sub(done);
        println!(
            "pingpong: {} done rounds={done} lost={lost} duplicated={duplicated}",
            role.name()
        );
        xen.shutdown(if lost == 0 && duplicated == 0 {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    /// Rounds completed and rounds lost, or where it stopped and why.
    type Outcome = Result<(u64, u64), (u64, &'static str)>;

    fn pong(events: &Events, grants: &Grants, peer: DomId, rounds: u64, setup_ns: u64) -> Outcome {
        let xen = events.xen();
        let gref = grants
            .grant_frame(peer, &PAGE, false)
            .map_err(|_| (0, "grant_access failed"))?;
        let port = xen
            .evtchn_alloc_unbound(peer)
            .map_err(|_| (0, "alloc_unbound failed"))?;
        events
            .set_handler(port, Some(count))
            .map_err(|_| (0, "handler table full"))?;
        println!("pingpong: pong ready port={port} gref={gref} peer={peer}");
        let page = PAGE.view::<[AtomicU64; 512]>();
        let done = exchange(
            events,
            port,
            rounds,
            setup_ns,
            |i| {
                if page[PING_SEQ].load(Ordering::SeqCst) != i {
                    return false;
                }
                page[PONG_SEQ].store(i, Ordering::SeqCst);
                xen.evtchn_send(port).is_ok()
            },
            |_| true,
        )?;
        // Ping unmaps after its last round: end access once it has.
        let deadline = events.now().unwrap_or(0) + ROUND_TIMEOUT_NS;
        while grants.table().end_access(gref).is_err() {
            if events.now().is_none_or(|now| now >= deadline) {
                return Err((done, "end_access: still mapped by ping"));
            }
            let _ = events.wait_any(&[], events.now().map(|t| t + 1_000_000));
        }
        Ok((done, 0))
    }

    fn ping(events: &Events, grants: &Grants, peer: DomId, rounds: u64, setup_ns: u64) -> Outcome {
        let xen = events.xen();
        let deadline = events.now().unwrap_or(0).saturating_add(setup_ns);
        let (remote_port, port) = events
            .bind_first_offered(peer, deadline)
            .map_err(|_| (0, "no port offered by pong"))?;
        events
            .set_handler(port, Some(count))
            .map_err(|_| (0, "handler table full"))?;
        let mapping = grants
            .map(peer, FIRST_FREE_REF, false)
            .map_err(|_| (0, "map_grant_ref failed"))?;
        println!("pingpong: ping ready port={port} remote_port={remote_port} gref={FIRST_FREE_REF} peer={peer}");
        let page = mapping.view::<[AtomicU64; 512]>();
        let done = exchange(
            events,
            port,
            rounds,
            ROUND_TIMEOUT_NS,
            |i| page[PONG_SEQ].load(Ordering::SeqCst) == i,
            |i| {
                page[PING_SEQ].store(i, Ordering::SeqCst);
                xen.evtchn_send(port).is_ok()
            },
        )?;
        grants.unmap(mapping).map_err(|_| (done, "unmap failed"))?;
        let _ = xen.evtchn_close(port);
        Ok((done, 0))
    }

    /// Rounds 1..=`rounds`: `before(i)` (ping sends), wait for the peer's
    /// event (round 1 up to `first_wait_ns`, the others
    /// [`ROUND_TIMEOUT_NS`]), `after(i)` (check, pong answers). Rounds
    /// done, or the stop.
    fn exchange(
        events: &Events,
        port: EvtchnPort,
        rounds: u64,
        first_wait_ns: u64,
        after: impl Fn(u64) -> bool,
        before: impl Fn(u64) -> bool,
    ) -> Result<u64, (u64, &'static str)> {
        for i in 1..=rounds {
            if !before(i) {
                return Err((i - 1, "send failed"));
            }
            let wait = if i == 1 {
                first_wait_ns
            } else {
                ROUND_TIMEOUT_NS
            };
            let deadline = events.now().map(|t| t.saturating_add(wait));
            match events.wait_any(&[port], deadline) {
                Ok(Some(_)) => {}
                Ok(None) => return Err((i - 1, "timed out waiting for the peer")),
                Err(_) => return Err((i - 1, "wait failed")),
            }
            if !after(i) {
                return Err((i - 1, "sequence number mismatch"));
            }
        }
        Ok(rounds)
    }

    fn fail(xen: &Xen, what: &str, detail: Option<impl core::fmt::Display>) -> ! {
        match detail {
            Some(d) => println!("{what}: {d}"),
            None => println!("{what}"),
        }
        xen.shutdown(ShutdownReason::Crash)
    }
}
