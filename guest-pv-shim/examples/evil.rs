//! `evil` (issue 4, scenario 3): a hostile domU (`role=attacker
//! peer=<victim's domid>`) against a cooperating one (`role=victim
//! peer=<attacker's domid>`). Each check prints
//! `evil: <check>: got <result> (expected <result>)`; expectations are
//! Xen's (`common/grant_table.c`, `common/event_channel.c`).
//!
//! The victim, in this order: grants page R read-only to the attacker
//! (ref 8), page W1 read-write (ref 9), page D to dom0 (ref 10); allocates
//! ports P1 and P3 for the attacker and P2 for dom0, consecutively (Xen
//! hands out the lowest free port, so P2 = P1 + 1, P3 = P1 + 2). On P1 it
//! answers each request: 1st "mapped ref 9": rewrites entry 9 to page W2
//! and tries to end access to refs 9 and 8 while mapped; 2nd "unmapped":
//! ends access to ref 9; 3rd "flood over": reports the events it saw on
//! P3, then powers off while ref 8 is still mapped by the attacker.
//!
//! The attacker: binds P1, maps refs it was not given, beyond the table,
//! RW of a read-only grant, of a missing domain; checks that a mapping
//! keeps the frame it was made with when the entry changes under it;
//! floods P3; binds P2 (offered to dom0); sends on a closed and on a
//! never-used port; then powers off with ref 8 still mapped.
//! Last line: `evil: <role> done: <n> checks, <m> unexpected`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Display;
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::xen::domid::DomId;
    use abi::xen::event_channel::EvtchnPort;
    use abi::xen::grant_table::{GrantRef, GTF_PERMIT_ACCESS};
    use guest_pv_shim::grant::{GrantError, GrantStatus, FIRST_FREE_REF};
    use guest_pv_shim::{
        println, Boot, Events, GrantOpError, Grants, SharedFrame, ShutdownReason, Xen, XenError,
    };

    const REF_RO: GrantRef = FIRST_FREE_REF;
    const REF_RW: GrantRef = FIRST_FREE_REF + 1;
    const REF_DOM0: GrantRef = FIRST_FREE_REF + 2;
    /// A reference inside the table that nobody granted.
    const REF_UNUSED: GrantRef = 300;
    /// Far beyond any table.
    const REF_BEYOND: GrantRef = 100_000;
    /// A domid no domain has.
    const NO_DOMAIN: DomId = 0x7000;
    /// Sends of the flood.
    const FLOOD_SENDS: u64 = 100_000;
    /// Magic words in word 0 of W1, W2 and R.
    const MAGIC_W1: u64 = 0x5731_5731;
    const MAGIC_W2: u64 = 0x5732_5732;
    const MAGIC_R: u64 = 0x5252_5252;
    const TIMEOUT_NS: u64 = 10_000_000_000;

    static PAGE_R: SharedFrame = SharedFrame::new();
    static PAGE_W1: SharedFrame = SharedFrame::new();
    static PAGE_W2: SharedFrame = SharedFrame::new();
    static PAGE_D: SharedFrame = SharedFrame::new();
    static FLOOD_EVENTS: AtomicU64 = AtomicU64::new(0);

    fn count_flood(_: EvtchnPort) {
        FLOOD_EVENTS.fetch_add(1, Ordering::SeqCst);
    }

    struct Report {
        role: &'static str,
        checks: u32,
        unexpected: u32,
    }

    impl Report {
        fn check(&mut self, name: &str, got: impl Display, expected: impl Display, ok: bool) {
            self.checks += 1;
            self.unexpected += u32::from(!ok);
            println!("evil: {name}: got {got} (expected {expected})");
        }

        fn finish(&self, xen: &Xen) -> ! {
            println!(
                "evil: {} done: {} checks, {} unexpected",
                self.role, self.checks, self.unexpected
            );
            xen.shutdown(if self.unexpected == 0 {
                ShutdownReason::Poweroff
            } else {
                ShutdownReason::Crash
            })
        }
    }

    /// How a result prints: `ok` or the error.
    struct Shown<'a, T, E>(&'a Result<T, E>);

    impl<T, E: Display> Display for Shown<'_, T, E> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Ok(_) => f.write_str("ok"),
                Err(e) => write!(f, "{e}"),
            }
        }
    }

    fn is_status<T>(r: &Result<T, GrantOpError>, status: i16) -> bool {
        matches!(r, Err(GrantOpError::Status(GrantStatus(s))) if *s == status)
    }

    fn is_errno<T>(r: &Result<T, XenError>, errno: abi::xen::errno::Errno) -> bool {
        matches!(r, Err(e) if e.errno() == Some(errno))
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let peer = start_info
            .cmdline_arg("peer")
            .and_then(|p| p.parse::<DomId>().ok());
        let (Some(peer), Ok(events), Ok(grants)) = (
            peer,
            Events::init(&xen),
            Grants::init(&xen, start_info.ram_end()),
        ) else {
            println!("evil: setup failed (need peer=<domid>, event channels and grant tables)");
            xen.shutdown(ShutdownReason::Crash)
        };
        match start_info.cmdline_arg("role") {
            Some("victim") => victim(&events, &grants, peer),
            _ => attacker(&events, &grants, peer),
        }
    }

    fn deadline(events: &Events) -> Option<u64> {
        events.now().map(|t| t + TIMEOUT_NS)
    }

    fn victim(events: &Events, grants: &Grants, attacker: DomId) -> ! {
        let xen = events.xen();
        let mut report = Report {
            role: "victim",
            checks: 0,
            unexpected: 0,
        };
        PAGE_R.view::<[AtomicU64; 512]>()[0].store(MAGIC_R, Ordering::SeqCst);
        PAGE_W1.view::<[AtomicU64; 512]>()[0].store(MAGIC_W1, Ordering::SeqCst);
        PAGE_W2.view::<[AtomicU64; 512]>()[0].store(MAGIC_W2, Ordering::SeqCst);
        let table = grants.table();
        let refs = [
            grants.grant_frame(attacker, &PAGE_R, true),
            grants.grant_frame(attacker, &PAGE_W1, false),
            grants.grant_frame(0, &PAGE_D, false),
        ];
        let ports = [
            xen.evtchn_alloc_unbound(attacker),
            xen.evtchn_alloc_unbound(0),
            xen.evtchn_alloc_unbound(attacker),
        ];
        let (Ok(p1), Ok(p3)) = (ports[0], ports[2]) else {
            println!("evil: victim: alloc_unbound failed: {:?}", ports);
            xen.shutdown(ShutdownReason::Crash)
        };
        let _ = events.set_handler(p3, Some(count_flood));
        report.check(
            "victim-setup",
            format_args!("refs {:?} ports {:?}", refs, ports),
            format_args!("refs {REF_RO},{REF_RW},{REF_DOM0}, consecutive ports"),
            refs == [Ok(REF_RO), Ok(REF_RW), Ok(REF_DOM0)]
                && ports[1] == Ok(p1 + 1)
                && p3 == p1 + 2,
        );
        // Request 1: the attacker maps ref 9.
        if !matches!(events.wait_any(&[p1], deadline(events)), Ok(Some(_))) {
            println!("evil: victim: no request from the attacker");
            report.finish(xen)
        }
        // Only the frame changes: the flags stay as they are, with the
        // GTF_reading/GTF_writing the hypervisor set for the mapping.
        let flags = table.flags(REF_RW).unwrap_or(GTF_PERMIT_ACCESS);
        let rewrite = table.rewrite(REF_RW, attacker, PAGE_W2.gfn(), flags);
        report.check(
            "victim-rewrite-mapped-entry",
            Shown(&rewrite),
            "ok",
            rewrite.is_ok(),
        );
        for (name, gref) in [
            ("end-access-while-mapped-rw", REF_RW),
            ("end-access-while-mapped-ro", REF_RO),
        ] {
            let r = table.end_access(gref);
            report.check(
                name,
                Shown(&r),
                GrantError::InUse(gref),
                r == Err(GrantError::InUse(gref)),
            );
        }
        let _ = xen.evtchn_send(p1);
        // Request 2: the attacker unmapped ref 9.
        let _ = events.wait_any(&[p1], deadline(events));
        let r = table.end_access(REF_RW);
        report.check("end-access-after-unmap", Shown(&r), "ok", r.is_ok());
        let _ = xen.evtchn_send(p1);
        // Request 3: the flood is over.
        let _ = events.wait_any(&[p1], deadline(events));
        let seen = FLOOD_EVENTS.load(Ordering::SeqCst);
        report.check(
            "victim-flood-events",
            seen,
            format_args!("1..={FLOOD_SENDS}, merged while pending"),
            (1..=FLOOD_SENDS).contains(&seen),
        );
        report.finish(xen)
    }

    fn attacker(events: &Events, grants: &Grants, victim: DomId) -> ! {
        let xen = events.xen();
        let mut report = Report {
            role: "attacker",
            checks: 0,
            unexpected: 0,
        };
        let Ok((p1_remote, p1)) = events.bind_first_offered(victim, deadline(events).unwrap_or(0))
        else {
            println!("evil: attacker: the victim offers no port");
            report.finish(xen)
        };
        use abi::xen::grant_table::{GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_GENERAL_ERROR};
        for (name, dom, gref, readonly, status) in [
            (
                "map-ref-granted-to-another-domain",
                victim,
                REF_DOM0,
                true,
                GNTST_GENERAL_ERROR,
            ),
            (
                "map-ref-never-granted",
                victim,
                REF_UNUSED,
                true,
                GNTST_GENERAL_ERROR,
            ),
            (
                "map-beyond-table",
                victim,
                REF_BEYOND,
                true,
                GNTST_BAD_GNTREF,
            ),
            (
                "map-rw-of-readonly-grant",
                victim,
                REF_RO,
                false,
                GNTST_GENERAL_ERROR,
            ),
            (
                "map-missing-domain",
                NO_DOMAIN,
                REF_RO,
                true,
                GNTST_BAD_DOMAIN,
            ),
        ] {
            let r = grants.map(dom, gref, readonly);
            report.check(name, Shown(&r), GrantStatus(status), is_status(&r, status));
        }
        // Kept mapped to the end: the victim powers off under it.
        let ro = grants.map(victim, REF_RO, true);
        let word = ro
            .as_ref()
            .map(|m| m.view::<[AtomicU64; 512]>()[0].load(Ordering::SeqCst));
        report.check(
            "map-ro-of-readonly-grant",
            format_args!("{:x?}", word.as_ref().map_err(|e| *e)),
            format_args!("Ok({MAGIC_R:x})"),
            word == Ok(MAGIC_R),
        );

        changed_entry(events, grants, victim, p1, &mut report);

        // Flood P3 (= P1 + 2), then tell the victim.
        let p3 = xen.evtchn_bind_interdomain(victim, p1_remote + 2);
        let mut failed = 0;
        if let Ok(p3) = p3 {
            failed = (0..FLOOD_SENDS)
                .filter(|_| xen.evtchn_send(p3).is_err())
                .count();
        }
        report.check(
            "flood-sends",
            format_args!("{failed} failed of {FLOOD_SENDS}, bind {}", Shown(&p3)),
            "0 failed",
            p3.is_ok() && failed == 0,
        );
        let _ = xen.evtchn_send(p1);

        let r = xen.evtchn_bind_interdomain(victim, p1_remote + 1);
        report.check(
            "bind-port-offered-to-dom0",
            Shown(&r),
            "-EINVAL",
            is_errno(&r, abi::xen::errno::Errno::EINVAL),
        );
        let close = xen.evtchn_close(p1);
        let r = xen.evtchn_send(p1);
        report.check(
            "send-on-closed-port",
            format_args!("{} (close {})", Shown(&r), Shown(&close)),
            "-EINVAL",
            close.is_ok() && is_errno(&r, abi::xen::errno::Errno::EINVAL),
        );
        let r = xen.evtchn_send(4000);
        report.check(
            "send-on-unused-port",
            Shown(&r),
            "-EINVAL",
            is_errno(&r, abi::xen::errno::Errno::EINVAL),
        );
        // Give the victim time to power off while ref 8 is mapped here.
        let _ = events.wait_any(&[], events.now().map(|t| t + 100_000_000));
        report.finish(xen)
    }

    /// Maps ref 9, asks the victim to change the entry, checks the mapping
    /// still shows the frame it was made with; unmaps; maps again (the new
    /// frame); unmaps; tells the victim.
    fn changed_entry(
        events: &Events,
        grants: &Grants,
        victim: DomId,
        p1: EvtchnPort,
        report: &mut Report,
    ) {
        let xen = events.xen();
        let Ok(m) = grants.map(victim, REF_RW, false) else {
            report.check("map-rw-grant", "error", "ok", false);
            return;
        };
        let _ = xen.evtchn_send(p1);
        let answered = matches!(events.wait_any(&[p1], deadline(events)), Ok(Some(_)));
        let word = m.view::<[AtomicU64; 512]>()[0].load(Ordering::SeqCst);
        report.check(
            "entry-changed-while-mapped",
            format_args!("{word:#x} (victim answered: {answered})"),
            format_args!("{MAGIC_W1:#x}: the frame mapped stays"),
            answered && word == MAGIC_W1,
        );
        let r = grants.unmap(m).map_err(|(_, e)| e);
        report.check("unmap", Shown(&r), "ok", r.is_ok());
        let again = grants.map(victim, REF_RW, false);
        let word = again
            .as_ref()
            .map(|m| m.view::<[AtomicU64; 512]>()[0].load(Ordering::SeqCst));
        report.check(
            "remap-after-change",
            format_args!("{:x?}", word.as_ref().map_err(|e| *e)),
            format_args!("Ok({MAGIC_W2:x})"),
            word == Ok(MAGIC_W2),
        );
        if let Ok(m) = again {
            let _ = grants.unmap(m);
        }
        let _ = xen.evtchn_send(p1);
        let _ = events.wait_any(&[p1], deadline(events));
    }
}
