//! Cooperative shutdown and reboot through the guest's PV control key,
//! as libxl does it (`libxl__domain_pvcontrol` in
//! `tools/libs/light/libxl_domain.c`): write "poweroff" or "reboot" to
//! `/local/domain/N/control/shutdown`, then wait for the guest's
//! acknowledgement, which is the key read back empty or gone
//! (`pvcontrol_acked`). libxl gives the guest 60 s; so does dom0ctl's
//! default `--timeout`.

use std::time::{Duration, Instant};

use crate::error::CliError;
use crate::xs_link::{StorePipe, XsConn};

/// The watch token dom0ctl uses on `control/shutdown`.
const ACK_TOKEN: &str = "dom0ctl-pvcontrol";

/// What the guest is asked to do, with the word written to
/// `control/shutdown` (the strings Linux's `drivers/xen/manage.c` and
/// Xen's guests know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvCommand {
    /// "poweroff".
    Poweroff,
    /// "reboot".
    Reboot,
}

impl PvCommand {
    /// The value written to `control/shutdown`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
        }
    }
}

/// Whether the guest took the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// The guest cleared `control/shutdown`.
    Acknowledged,
    /// Nothing within the timeout (the request stays written, as libxl
    /// leaves it: the guest may still act on it later).
    TimedOut,
}

/// The PV control key of `domid` (`libxl__domain_pvcontrol_xspath`).
pub fn control_path(domid: u16) -> String {
    format!("/local/domain/{domid}/control/shutdown")
}

/// Writes `command` to `domid`'s `control/shutdown` and waits up to
/// `timeout` for the guest to acknowledge it. The watch is set before
/// the write so that no acknowledgement can slip between them.
pub fn request<P: StorePipe>(
    xs: &mut XsConn<P>,
    domid: u16,
    command: PvCommand,
    timeout: Duration,
) -> Result<Ack, CliError> {
    let path = control_path(domid);
    let deadline = Instant::now() + timeout;
    xs.watch(&path, ACK_TOKEN, timeout)?;
    xs.write(&path, command.word().as_bytes(), timeout)?;
    loop {
        let Some((fired, token)) = xs.next_watch_event(deadline)? else {
            return Ok(Ack::TimedOut);
        };
        if token != ACK_TOKEN || fired != path {
            continue;
        }
        if acked(xs.read(&path, timeout)?.as_deref()) {
            return Ok(Ack::Acknowledged);
        }
    }
}

/// libxl's `pvcontrol_acked`: the key is gone or empty.
fn acked(value: Option<&[u8]>) -> bool {
    value.is_none_or(<[u8]>::is_empty)
}
