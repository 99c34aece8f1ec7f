//! The management agent: serves the `mgmt` protocol (frames, handshake,
//! requests; see the `mgmt` crate) to `dom0ctl` on COM2, next to the
//! console backend, until a client asks dom0 to power off.
//!
//! One event loop does both jobs. Each pass reads what COM2 holds,
//! answers every complete request in order through [`mgmt::Server`],
//! which keeps the session rule (a bad frame gets `Rejected`, and the
//! line stays usable; a request without the current session gets
//! `HandshakeRequired`), sends the attached console's new output, lets
//! the console backend take its events, then sleeps in
//! `SCHEDOP_block` ([`guest_pv_shim::Events::block_until`]) until any
//! event arrives: COM2's receive interrupt (a pirq, see [`link`]), a
//! console ring, `VIRQ_DOM_EXC`, or any other device's port. Only a
//! partial frame (its idle flush) or a pass cut short by its read budget
//! sets a deadline: an idle dom0 does not run at all.
//!
//! With the management NIC and the key, the same loop serves the
//! protocol over TCP ([`tcp`]: its interrupt is one more event, smoltcp's
//! timers one more deadline); COM2 stays the fallback transport.

mod domains;
pub mod heap;
mod link;
mod memory;
mod network;
mod sched;
mod session;
mod storage;
pub mod tcp;

use guest_pv_shim::{println, XenError};
use mgmt::{Answer, Outgoing, Server, ServerMessage, SessionId};
use toolstack::Hypervisor;

use crate::blkback::BlockBackends;
use crate::console_backend::Backend;
use crate::netback::{NetBackends, NetEnv};
use crate::store::StoreService;
use crate::switch::Vswitch;
use crate::volumes::Volumes;
use link::Link;
use session::{Ctx, Session};
use tcp::TcpServer;

/// Serves the management channel until a client asks dom0 to power off
/// (`Ok`), or a hypercall the loop needs fails. `com2_gsi`: the GSI of
/// COM2's interrupt, if known; with `tcp`, also over TCP on the
/// management NIC (COM2 stays the fallback). `volumes`: dom0's disk
/// and the volumes on it (the block backend serves its rings from it).
pub fn serve(
    backend: &mut Backend,
    hv: &mut impl Hypervisor,
    store: &mut StoreService,
    (vswitch, netback): (&mut Vswitch, &mut NetBackends),
    com2_gsi: Option<u32>,
    mut tcp: Option<TcpServer>,
    mut volumes: Volumes,
) -> Result<(), XenError> {
    let mut blk = BlockBackends::new();
    let mut link = Link::com2(backend.events(), com2_gsi);
    backend.rescan_on_events_only();
    // Session ids start from the clock, so a client of an earlier boot
    // does not find its old id in use.
    // Any 32 bits of the clock do: keep the low ones of its ~ms count.
    if let Ok(domains) = toolstack::list_domains(hv) {
        store.adopt_running(backend.xen(), &domains);
        netback.attach_boot_vifs(store, vswitch, &domains);
    }
    let mut server = Server::<Session>::new(((backend.now()? >> 20) & 0xffff_ffff) as u32);
    println!("dom0: mgmt: serving the management channel on COM2");
    #[cfg(feature = "bench-trace")]
    println!("bench: dom0-serving {}", guest_pv_shim::arch::cpu::rdtsc());
    #[cfg(feature = "bench-trace")]
    let mut woke = (0, 0);
    loop {
        let now = backend.now()?;
        link.begin_pass();
        while let Some(item) = link.next_item(now) {
            let answer = server.answer(item, |session, request| {
                let mut ctx = Ctx {
                    hv: &mut *hv,
                    backend: &mut *backend,
                    store: &mut *store,
                    blk: &mut blk,
                    volumes: &mut volumes,
                    vswitch: &mut *vswitch,
                    netback: &mut *netback,
                };
                session.dispatch(request, &mut ctx)
            });
            send(&mut link, answer, store, hv);
            if server
                .session()
                .is_some_and(|(_, s)| s.power_off_requested())
            {
                println!("dom0: mgmt: power-off requested");
                return Ok(());
            }
        }
        if let Some((id, session)) = server.session() {
            session.console_events(id, backend, |event| link.send(event));
            session.store_events(id, store, |event| link.send(event));
        }
        let mut power_off = false;
        let tcp_due = tcp.as_mut().and_then(|t| {
            let ctx = Ctx {
                hv: &mut *hv,
                backend: &mut *backend,
                store: &mut *store,
                blk: &mut blk,
                volumes: &mut volumes,
                vswitch: &mut *vswitch,
                netback: &mut *netback,
            };
            t.poll(now, ctx, &mut power_off)
        });
        if power_off {
            println!("dom0: mgmt: power-off requested");
            return Ok(());
        }
        link.end_pass(backend.events());
        store.serve(backend.events(), &backend.grants());
        // Rings with requests left, or handshake writes whose watch
        // events the store still has to send: another pass at once.
        let blk_due = volumes
            .disk_mut()
            .is_some_and(|disk| blk.serve(store, backend.events(), &backend.grants(), disk))
            .then_some(now);
        let switch_due = vswitch.poll(backend.events(), now);
        let net_due = netback.serve(
            &mut NetEnv {
                events: backend.events(),
                grants: backend.grants(),
                store: &mut *store,
                now,
            },
            vswitch,
        );
        // Takes what the backend's ports brought, without sleeping.
        backend.serve_until(now)?;
        // A domain seen shut down fires `@releaseDomain`: another pass
        // sends the events at once.
        let store_due = store.note_stopped(backend.stopped_domains()).then_some(now);
        let deadline = [
            link.deadline(now),
            backend.next_scan(),
            tcp_due,
            store_due,
            blk_due,
            net_due,
            switch_due,
        ]
        .into_iter()
        .flatten()
        .min();
        #[cfg(feature = "bench-trace")]
        let slept = {
            crate::blkback::trace::pass_done(woke.0, woke.1);
            guest_pv_shim::arch::cpu::rdtsc()
        };
        backend.events().block_until(deadline)?;
        #[cfg(feature = "bench-trace")]
        {
            woke = (slept, guest_pv_shim::arch::cpu::rdtsc());
        }
    }
}

/// Sends an answer, and says on COM1 when a session ended with an upload
/// unfinished (its buffer is freed here: nothing was built) and when a
/// session's frame arrived broken.
fn send(
    link: &mut Link,
    answer: Answer<Session>,
    store: &mut StoreService,
    hv: &mut impl Hypervisor,
) {
    if let Some((id, ended)) = answer.ended {
        log_end(id, ended, store, hv);
    }
    match answer.reply {
        Outgoing::Message(message) => {
            if let ServerMessage::Dropped { session, error } = &message {
                // Worth seeing next to a client that waited for a resend.
                println!("dom0: mgmt: session {session}: dropped {error}; the client may resend");
            }
            link.send(&message)
        }
        Outgoing::V1Frame(frame) => {
            println!("dom0: mgmt: a protocol-1 client was told to upgrade");
            link.send_raw(&frame);
        }
    }
}

fn log_end(id: SessionId, mut ended: Session, store: &mut StoreService, hv: &mut impl Hypervisor) {
    ended.end(id, store, hv);
    if let Some(bytes) = ended.unfinished_upload() {
        println!(
            "dom0: mgmt: session {id} ended: dropped its unfinished upload ({bytes} bytes received); nothing was built"
        );
    }
}
