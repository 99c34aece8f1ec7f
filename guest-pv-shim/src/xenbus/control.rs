//! How a guest reacts to `control/shutdown` (Linux's
//! `drivers/xen/manage.c`): it advertises the requests it handles in
//! `control/feature-*`, watches `control/shutdown`, and when the
//! toolstack writes a request there, acknowledges it by writing "" in a
//! transaction and then shuts down with `SCHEDOP_shutdown` and the
//! matching reason.

use abi::xen::sched::ShutdownReason;

use super::wire::XsError;
use super::{Client, Transport, Tx, WatchCallback, WatchId, XenbusError};

/// The node the toolstack writes (relative to the domain's home).
pub const CONTROL_SHUTDOWN: &str = "control/shutdown";

/// The requests understood, with the `SCHEDOP_shutdown` reason each
/// leads to, and the `control/feature-*` node advertising it. "halt" is
/// a poweroff, as in Linux.
pub const SHUTDOWN_REQUESTS: [(&str, ShutdownReason, &str); 4] = [
    (
        "poweroff",
        ShutdownReason::Poweroff,
        "control/feature-poweroff",
    ),
    ("halt", ShutdownReason::Poweroff, "control/feature-halt"),
    ("reboot", ShutdownReason::Reboot, "control/feature-reboot"),
    (
        "suspend",
        ShutdownReason::Suspend,
        "control/feature-suspend",
    ),
];

/// The reason for a `control/shutdown` value; `None` for "" (no request)
/// or one not understood.
pub fn parse_shutdown(value: &[u8]) -> Option<ShutdownReason> {
    SHUTDOWN_REQUESTS
        .iter()
        .find(|(name, _, _)| name.as_bytes() == value)
        .map(|(_, reason, _)| *reason)
}

impl<T: Transport> Client<T> {
    /// Writes "1" to each `control/feature-*` and watches
    /// `control/shutdown` with `callback` (which typically calls
    /// [`Client::take_shutdown_request`]).
    pub fn watch_shutdown(&mut self, callback: WatchCallback<T>) -> Result<WatchId, XenbusError> {
        for (_, _, feature) in SHUTDOWN_REQUESTS {
            // Advisory: a toolstack that made them read-only still asks.
            match self.write(Tx::NONE, feature, b"1") {
                Ok(()) | Err(XenbusError::Store(XsError::Eacces)) => {}
                Err(e) => return Err(e),
            }
        }
        self.watch(CONTROL_SHUTDOWN, callback)
    }

    /// Reads `control/shutdown` and, if it holds a request understood,
    /// acknowledges it by writing "" (both in one transaction, retried on
    /// `EAGAIN`); the request's reason. Requests not understood are left
    /// unacknowledged, as Linux does.
    pub fn take_shutdown_request(&mut self) -> Result<Option<ShutdownReason>, XenbusError> {
        self.transaction(|client, tx| {
            let reason = match client.read(tx, CONTROL_SHUTDOWN) {
                Ok(value) => parse_shutdown(value),
                Err(XenbusError::Store(XsError::Enoent)) => None,
                Err(e) => return Err(e),
            };
            if reason.is_some() {
                client.write(tx, CONTROL_SHUTDOWN, b"")?;
            }
            Ok(reason)
        })
    }
}
