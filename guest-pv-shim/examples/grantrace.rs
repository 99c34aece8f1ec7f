//! `grantrace` (issue 16, scenario smp-events): two vCPUs of one domain
//! race grant maps and unmaps of the same reference of another domain.
//! `role=granter peer=<racer's domid>` and `role=racer peer=<granter's
//! domid>` (the racer needs two vCPUs); `rounds=N` (default 2000).
//!
//! The granter fills a page with a pattern, grants it read-only to the
//! racer (the first reference a fresh table hands out,
//! `grant::FIRST_FREE_REF`), offers the racer a port and waits on it.
//!
//! The racer binds that port and starts vCPU 1. Phase 1: both vCPUs map
//! the reference N times each, at the same time, each at its own slot,
//! check the pattern's first word and unmap (the hypervisor's map count
//! of the entry goes up and down from two pCPUs). Phase 2: N rounds in
//! which vCPU 0 maps the reference and both vCPUs unmap that one handle
//! at once: exactly one unmap may succeed (a second would free the
//! mapping twice). Then it notifies the granter, which ends access to
//! the reference (refused if any mapping were left) and checks the whole
//! page still holds its pattern.
//!
//! Output: `grantrace: racer done: maps <m> failed <f>, unmap races <r>:
//! one won <o>, both won <b>, none won <n>` and `grantrace: granter
//! done: end_access <ok|error>, pattern intact <k> of 512 words`;
//! poweroff if all went as it must, else crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use abi::xen::domid::DomId;
    use abi::xen::grant_table::GrantRef;
    use guest_pv_shim::grant::FIRST_FREE_REF;
    use guest_pv_shim::{println, ApBoot, Boot, Events, Grants, SharedFrame, ShutdownReason, Xen};

    const DEFAULT_ROUNDS: u32 = 2000;
    const REF: GrantRef = FIRST_FREE_REF;
    const WORDS: usize = 512;
    /// Word `i` of the granted page.
    const fn pattern(i: usize) -> u64 {
        0x6772_616e_7400_0000 ^ i as u64
    }
    /// How long either side waits for the other (guest system time).
    const TIMEOUT_NS: u64 = 600_000_000_000;

    static PAGE: SharedFrame = SharedFrame::new();

    /// What vCPU 1 needs: the grant ops, the granter, the rounds and
    /// the GPA phase 2 maps at.
    static RACE: spin::Once<(Grants, DomId, u32, u64)> = spin::Once::new();
    /// Phase 1 maps that failed or read a wrong word, both vCPUs.
    static MAP_FAILURES: AtomicU32 = AtomicU32::new(0);
    /// vCPU 1 finished phase 1.
    static PHASE1_DONE: AtomicU32 = AtomicU32::new(0);
    /// Phase 2: the round vCPU 0 mapped for, and its handle.
    static ROUND: AtomicU32 = AtomicU32::new(0);
    static HANDLE: AtomicU32 = AtomicU32::new(0);
    /// Phase 2: the last round vCPU 1 unmapped in, and whether it won.
    static AP_ROUND: AtomicU32 = AtomicU32::new(0);
    static AP_WON: AtomicU32 = AtomicU32::new(0);

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let peer = start_info
            .cmdline_arg("peer")
            .and_then(|p| p.parse::<DomId>().ok());
        let rounds = start_info
            .cmdline_arg("rounds")
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS);
        let (Some(peer), Ok(events), Ok(grants)) = (
            peer,
            Events::init(&xen),
            Grants::init(&xen, start_info.ram_end()),
        ) else {
            println!("grantrace: setup failed (need peer=<domid>, event channels, grant tables)");
            xen.shutdown(ShutdownReason::Crash)
        };
        let ok = match start_info.cmdline_arg("role") {
            Some("granter") => granter(&events, &grants, peer),
            _ => racer(&events, grants, peer, rounds),
        };
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    fn deadline(events: &Events) -> u64 {
        events.now().unwrap_or(0).saturating_add(TIMEOUT_NS)
    }

    fn granter(events: &Events, grants: &Grants, racer: DomId) -> bool {
        let xen = events.xen();
        let page = PAGE.view::<[AtomicU64; WORDS]>();
        for (i, word) in page.iter().enumerate() {
            word.store(pattern(i), Ordering::SeqCst);
        }
        let (Ok(gref), Ok(port)) = (
            grants.grant_frame(racer, &PAGE, true),
            xen.evtchn_alloc_unbound(racer),
        ) else {
            println!("grantrace: granter: grant or port failed");
            return false;
        };
        println!("grantrace: granter ready gref={gref} port={port}");
        let told = matches!(
            events.wait_any(&[port], Some(deadline(events))),
            Ok(Some(_))
        );
        let ended = grants.table().end_access(gref);
        let intact = page
            .iter()
            .enumerate()
            .filter(|(i, w)| w.load(Ordering::SeqCst) == pattern(*i))
            .count();
        println!(
            "grantrace: granter done: end_access {}, pattern intact {intact} of {WORDS} words{}",
            if ended.is_ok() { "ok" } else { "error" },
            if told {
                ""
            } else {
                " (the racer never said it finished)"
            }
        );
        told && ended.is_ok() && intact == WORDS
    }

    fn racer(events: &Events, grants: Grants, granter: DomId, rounds: u32) -> bool {
        let xen = events.xen();
        let Ok((_, port)) = events.bind_first_offered(granter, deadline(events)) else {
            println!("grantrace: racer: the granter offers no port");
            return false;
        };
        // Phase 2's GPA: a slot of the hole, claimed and given back here.
        let gpa = match grants.map(granter, REF, true) {
            Ok(m) => {
                let gpa = m.gpa();
                if grants.unmap(m).is_err() {
                    println!("grantrace: racer: first unmap failed");
                    return false;
                }
                gpa
            }
            Err(e) => {
                println!("grantrace: racer: first map failed: {e}");
                return false;
            }
        };
        RACE.call_once(|| (grants, granter, rounds, gpa));
        if let Err(e) = xen.vcpu_start(1, secondary) {
            println!("grantrace: racer: vCPU 1 failed to start: {e}");
            return false;
        }
        map_unmap(&grants, granter, rounds);
        wait_until(xen, || PHASE1_DONE.load(Ordering::SeqCst) == 1);
        let (mut one, mut both, mut none) = (0u32, 0u32, 0u32);
        for round in 1..=rounds {
            let Ok(handle) = grants.map_at(granter, REF, true, gpa) else {
                MAP_FAILURES.fetch_add(1, Ordering::SeqCst);
                continue;
            };
            HANDLE.store(handle, Ordering::SeqCst);
            ROUND.store(round, Ordering::SeqCst);
            let won = grants.unmap_at(gpa, handle).is_ok();
            wait_until(xen, || AP_ROUND.load(Ordering::SeqCst) == round);
            match u32::from(won) + AP_WON.load(Ordering::SeqCst) {
                1 => one += 1,
                2 => both += 1,
                _ => none += 1,
            }
        }
        ROUND.store(u32::MAX, Ordering::SeqCst);
        let failed = MAP_FAILURES.load(Ordering::SeqCst);
        println!(
            "grantrace: racer done: maps {} failed {failed}, unmap races {rounds}: one won {one}, both won {both}, none won {none}",
            2 * u64::from(rounds)
        );
        let _ = xen.evtchn_send(port);
        failed == 0 && one == rounds
    }

    /// vCPU 1: phase 1, then its side of each phase 2 round.
    fn secondary(boot: ApBoot) -> ! {
        let xen = boot.xen;
        let Some(&(grants, granter, rounds, gpa)) = RACE.get() else {
            xen.shutdown(ShutdownReason::Crash)
        };
        map_unmap(&grants, granter, rounds);
        PHASE1_DONE.store(1, Ordering::SeqCst);
        let mut last = 0;
        loop {
            wait_until(&xen, || ROUND.load(Ordering::SeqCst) != last);
            let round = ROUND.load(Ordering::SeqCst);
            if round == u32::MAX {
                // Down for good: the domain powers off from vCPU 0.
                loop {
                    let _ = xen.sched_yield();
                }
            }
            let handle = HANDLE.load(Ordering::SeqCst);
            let won = grants.unmap_at(gpa, handle).is_ok();
            AP_WON.store(u32::from(won), Ordering::SeqCst);
            AP_ROUND.store(round, Ordering::SeqCst);
            last = round;
        }
    }

    /// Phase 1 on this vCPU: map, check word 0, unmap, `rounds` times.
    fn map_unmap(grants: &Grants, granter: DomId, rounds: u32) {
        for _ in 0..rounds {
            let good = match grants.map(granter, REF, true) {
                Ok(m) => {
                    let word = m.view::<[AtomicU64; WORDS]>()[0].load(Ordering::SeqCst);
                    grants.unmap(m).is_ok() && word == pattern(0)
                }
                Err(_) => false,
            };
            if !good {
                MAP_FAILURES.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Spins until `done`, yielding the pCPU on each try: the other vCPU
    /// may share it.
    fn wait_until(xen: &Xen, done: impl Fn() -> bool) {
        while !done() {
            let _ = xen.sched_yield();
        }
    }
}
