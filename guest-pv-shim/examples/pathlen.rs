//! `pathlen`: measures hypervisor path lengths with the TSC, for `cargo
//! xtask bench` (QEMU under `-icount shift=0,sleep=off`, where the TSC
//! counts executed instructions, so each figure is exact and the same on
//! every run). The same kernel runs as a domU of xen-core and as the PVH
//! dom0 of the real Xen (`cargo xtask bench --reference xen`).
//!
//! First, before anything else, `main-tsc`: the TSC as `main` starts
//! (xen-core and Xen leave the guest TSC unoffset, so this is the
//! instructions since QEMU started, firmware and hypervisor boot included).
//!
//! `role=solo` (default) measures, each as the median of `rounds=N`
//! (default 1000) samples minus the cost of reading the TSC itself:
//! - `cpuid`: a CPUID exit round trip (handled inside the exit loop);
//! - `null-hypercall`: `XENVER_version`, the cheapest hypercall;
//! - `yield-alone`: `SCHEDOP_yield` with no other runnable vCPU;
//! - `memcpy-4k`: a guest-local copy of 4 KiB, the yardstick of
//! - `grant-copy-4k`: `GNTTABOP_copy` of 4 KiB from a page this domain
//!   granted to itself (`self=<domid>`, default 0) into another of its pages;
//! - `evtchn-self`: `EVTCHNOP_send` on a loopback interdomain channel to
//!   the event's upcall (`Events::wait_any` takes it).
//!
//! `role=switch`: two domains with this role yield to each other; each
//! sample is one `SCHEDOP_yield` that runs the other domain's yield in
//! between: `yield-switch` = two vCPU switches plus two yields.
//!
//! `role=ping peer=<domid>` / `role=pong peer=<domid>`: an interdomain
//! event channel (pong offers, ping binds, as in `pingpong`); each sample
//! is ping's send until pong's answer has reached ping's upcall:
//! `evtchn-roundtrip` (pong blocks in `SCHEDOP_poll`, wakes, sends back).
//! `setup_s=S` (default 10): how long, in seconds of guest time, ping
//! looks for pong's port and pong waits for ping's first event (longer
//! when the toolstack creates ping after pong); `label=L` names the figure
//! `evtchn-roundtrip-L` (the SMP benches: both ends on one pCPU or two).
//!
//! Output, one line per figure: `pathlen: <name> <instructions>`, then
//! `pathlen: done`; then the domain powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::xen::domid::DomId;
    use abi::xen::event_channel::EvtchnPort;
    use guest_pv_shim::arch::cpu::{cpuid, rdtsc};
    use guest_pv_shim::{
        println, Boot, CopySide, Events, Grants, SharedFrame, ShutdownReason, Xen,
    };

    const DEFAULT_ROUNDS: usize = 1000;
    /// The most samples one figure keeps (the median needs them all).
    const MAX_ROUNDS: usize = 4096;
    /// Iterations before sampling: caches, TLB and the hypercall page warm.
    const WARM_UP: usize = 16;
    /// Bytes of the copy figures: one page.
    const COPY_LEN: u16 = 4096;
    /// How long ping looks for pong's port, and one round may take.
    const PEER_TIMEOUT_NS: u64 = 10_000_000_000;

    static SOURCE: SharedFrame = SharedFrame::new();
    static DEST: SharedFrame = SharedFrame::new();

    pub fn main(boot: Boot) -> ! {
        let main_tsc = rdtsc();
        let Boot { xen, start_info } = boot;
        println!("pathlen: main-tsc {main_tsc}");
        let rounds = start_info
            .cmdline_arg("rounds")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS)
            .clamp(1, MAX_ROUNDS);
        let arg_domid = |name| {
            start_info
                .cmdline_arg(name)
                .and_then(|d| d.parse::<DomId>().ok())
        };
        let mut samples = [0u64; MAX_ROUNDS];
        let mut bench = Bench {
            samples: &mut samples[..rounds],
            overhead: 0,
        };
        bench.overhead = bench.median_of(|| {});
        let peer_setup = PeerSetup {
            wait_ns: start_info
                .cmdline_arg("setup_s")
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(PEER_TIMEOUT_NS, |s| s.saturating_mul(1_000_000_000)),
            label: start_info.cmdline_arg("label"),
        };
        let outcome = match start_info.cmdline_arg("role") {
            Some("switch") => {
                bench.report("yield-switch", || yield_now(&xen));
                Ok(())
            }
            Some("ping") => match arg_domid("peer") {
                Some(peer) => ping(&xen, &mut bench, peer, &peer_setup),
                None => Err("role=ping needs peer=<domid>"),
            },
            Some("pong") => match arg_domid("peer") {
                Some(peer) => pong(&xen, peer, peer_setup.wait_ns),
                None => Err("role=pong needs peer=<domid>"),
            },
            _ => solo(
                &xen,
                &mut bench,
                arg_domid("self").unwrap_or(0),
                start_info.ram_end(),
            ),
        };
        match outcome {
            Ok(()) => {
                println!("pathlen: done");
                xen.shutdown(ShutdownReason::Poweroff)
            }
            Err(why) => {
                println!("pathlen: failed: {why}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
    }

    /// The samples of one figure and the cost of the measurement itself.
    struct Bench<'a> {
        samples: &'a mut [u64],
        overhead: u64,
    }

    impl Bench<'_> {
        /// Prints `name`'s median cost, less the measuring overhead.
        fn report(&mut self, name: &str, op: impl FnMut()) {
            let cost = self.cost(op);
            println!("pathlen: {name} {cost}");
        }

        /// `op`'s median cost, less the measuring overhead.
        fn cost(&mut self, op: impl FnMut()) -> u64 {
            self.median_of(op).saturating_sub(self.overhead)
        }

        /// The median TSC delta of `op` over the samples.
        fn median_of(&mut self, mut op: impl FnMut()) -> u64 {
            for _ in 0..WARM_UP {
                op();
            }
            for sample in self.samples.iter_mut() {
                let start = rdtsc();
                op();
                *sample = rdtsc().wrapping_sub(start);
            }
            self.samples.sort_unstable();
            self.samples[self.samples.len() / 2]
        }
    }

    fn solo(xen: &Xen, bench: &mut Bench, me: DomId, ram_end: u64) -> Result<(), &'static str> {
        bench.report("cpuid", || {
            cpuid(0);
        });
        bench.report("null-hypercall", || {
            let _ = xen.version();
        });
        bench.report("yield-alone", || yield_now(xen));
        let mut from = [0u8; COPY_LEN as usize];
        let mut to = [0u8; COPY_LEN as usize];
        bench.report("memcpy-4k", || {
            from[0] = from[0].wrapping_add(1);
            to.copy_from_slice(core::hint::black_box(&from));
            core::hint::black_box(&to);
        });
        let grants = Grants::init(xen, ram_end).map_err(|_| "grant table setup failed")?;
        let gref = grants
            .grant_frame(me, &SOURCE, true)
            .map_err(|_| "grant to self failed")?;
        let source = CopySide::Grant {
            dom: me,
            gref,
            offset: 0,
        };
        let dest = CopySide::Local {
            frame: &DEST,
            offset: 0,
        };
        grants
            .copy(source, dest, COPY_LEN)
            .map_err(|_| "grant copy to self failed")?;
        bench.report("grant-copy-4k", || {
            let _ = grants.copy(source, dest, COPY_LEN);
        });
        let events = Events::init(xen).map_err(|_| "event channel setup failed")?;
        let offered = xen
            .evtchn_alloc_unbound(me)
            .map_err(|_| "alloc_unbound to self failed")?;
        let local = xen
            .evtchn_bind_interdomain(me, offered)
            .map_err(|_| "bind_interdomain to self failed")?;
        // Binding marks the new port pending: take that event first.
        let _ = events.wait_any(&[local, offered], events.now());
        let _ = events.wait_any(&[local, offered], events.now());
        bench.report("evtchn-self", || {
            let _ = xen.evtchn_send(local);
            let _ = events.wait_any(&[offered], None);
        });
        Ok(())
    }

    fn yield_now(xen: &Xen) {
        let _ = xen.sched_yield();
    }

    /// How the two ends of `evtchn-roundtrip` find each other, and the
    /// figure's name.
    struct PeerSetup<'a> {
        /// Ping's search for pong's port; pong's wait for the first event.
        wait_ns: u64,
        /// `evtchn-roundtrip-<label>` instead of `evtchn-roundtrip`.
        label: Option<&'a str>,
    }

    /// Pong's answers: one event back for each of ping's, until ping ends.
    static ANSWERED: AtomicU64 = AtomicU64::new(0);

    fn pong(xen: &Xen, peer: DomId, first_wait_ns: u64) -> Result<(), &'static str> {
        let events = Events::init(xen).map_err(|_| "event channel setup failed")?;
        let port = xen
            .evtchn_alloc_unbound(peer)
            .map_err(|_| "alloc_unbound failed")?;
        let mut wait_ns = first_wait_ns;
        loop {
            let deadline = events.now().map(|t| t.saturating_add(wait_ns));
            wait_ns = PEER_TIMEOUT_NS;
            match events.wait_any(&[port], deadline) {
                Ok(Some(_)) => {}
                // Ping closed its end (or never came): the bench is over.
                _ => break,
            }
            if xen.evtchn_send(port).is_err() {
                break;
            }
            ANSWERED.fetch_add(1, Ordering::Relaxed);
        }
        println!(
            "pathlen: pong answered {}",
            ANSWERED.load(Ordering::Relaxed)
        );
        Ok(())
    }

    fn ping(
        xen: &Xen,
        bench: &mut Bench,
        peer: DomId,
        setup: &PeerSetup,
    ) -> Result<(), &'static str> {
        let events = Events::init(xen).map_err(|_| "event channel setup failed")?;
        let deadline = events.now().unwrap_or(0).saturating_add(setup.wait_ns);
        let (_, port): (EvtchnPort, EvtchnPort) = events
            .bind_first_offered(peer, deadline)
            .map_err(|_| "no port offered by pong")?;
        let roundtrip = || {
            let _ = xen.evtchn_send(port);
            let _ = events.wait_any(&[port], None);
        };
        match setup.label {
            Some(label) => {
                let cost = bench.cost(roundtrip);
                println!("pathlen: evtchn-roundtrip-{label} {cost}");
            }
            None => bench.report("evtchn-roundtrip", roundtrip),
        }
        let _ = xen.evtchn_close(port);
        Ok(())
    }
}
