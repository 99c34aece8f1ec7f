//! The management agent: serves the `mgmt` protocol (frames, handshake,
//! requests; see the `mgmt` crate) to `dom0ctl` on COM2, next to the
//! console backend, until a client asks dom0 to power off.
//!
//! One loop does both jobs. Each pass reads what COM2 holds, answers
//! every complete request in order (a bad frame gets `Rejected`, and the
//! line stays usable), sends the attached console's new output, then
//! lets the console backend serve its event channels. COM2's interrupt
//! reaches no domain, so the backend's wait doubles as the agent's
//! timer: dom0 sleeps in `SCHEDOP_poll` on the console and
//! `VIRQ_DOM_EXC` ports with a deadline [`POLL_NS`] ahead, and looks at
//! COM2 again when it wakes. While bytes are arriving it does not sleep
//! (see [`link`]), so an upload runs at the speed QEMU feeds the UART.

mod domains;
pub mod heap;
mod link;
mod session;

use guest_pv_shim::{println, XenError};
use mgmt::{decode_client_message, MgmtError, ServerMessage};
use toolstack::Hypervisor;

use crate::console_backend::Backend;
use link::Link;
use session::{Ctx, Session};

/// How long dom0 sleeps between looks at an idle COM2, ns: a request
/// waits at most this long to be noticed.
pub const POLL_NS: u64 = 5_000_000;

/// Serves the management channel until a client asks dom0 to power off
/// (`Ok`), or a hypercall the loop needs fails.
pub fn serve(backend: &mut Backend, hv: &mut impl Hypervisor) -> Result<(), XenError> {
    let mut link = Link::com2();
    let mut session = Session::default();
    println!("dom0: mgmt: serving the management channel on COM2");
    loop {
        let now = backend.now()?;
        link.begin_pass();
        while let Some(item) = link.next_item(now) {
            let reply = match item.map(|payload| decode_client_message(&payload)) {
                Ok(Ok(message)) => {
                    let mut ctx = Ctx {
                        hv: &mut *hv,
                        backend: &mut *backend,
                    };
                    session.handle(message.id, message.request, &mut ctx)
                }
                Ok(Err(refusal)) => refusal,
                Err(frame_error) => ServerMessage::Rejected(MgmtError::BadFrame(frame_error)),
            };
            link.send(&reply);
            if session.power_off_requested() {
                println!("dom0: mgmt: power-off requested");
                return Ok(());
            }
        }
        session.console_events(backend, |event| link.send(event));
        let deadline = if link.receiving(now) {
            now
        } else {
            now + POLL_NS
        };
        backend.serve_until(deadline)?;
    }
}
