//! `enum xenbus_state` (`xen/include/public/io/xenbus.h`): the state a
//! frontend and its backend each publish in their `state` node, and the
//! helpers a frontend uses to move through the handshake (Linux's
//! `xenbus_switch_state` and waiting for the other end).

use core::fmt;

use super::path::PathBuf;
use super::wire::XsError;
use super::{Client, Transport, Tx, XenbusError};

/// `enum xenbus_state`, with Xen's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum XenbusState {
    /// `XenbusStateUnknown` (also: no `state` node).
    Unknown = 0,
    /// `XenbusStateInitialising`.
    Initialising = 1,
    /// `XenbusStateInitWait`: waiting for information from the peer.
    InitWait = 2,
    /// `XenbusStateInitialised`: ready to connect.
    Initialised = 3,
    /// `XenbusStateConnected`.
    Connected = 4,
    /// `XenbusStateClosing`: the device is being closed.
    Closing = 5,
    /// `XenbusStateClosed`.
    Closed = 6,
    /// `XenbusStateReconfiguring`.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured`.
    Reconfigured = 8,
}

impl XenbusState {
    /// The state written as `value` (a decimal number, as in the store);
    /// `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<Self> {
        use XenbusState::*;
        let n: u32 = core::str::from_utf8(value).ok()?.trim().parse().ok()?;
        [
            Unknown,
            Initialising,
            InitWait,
            Initialised,
            Connected,
            Closing,
            Closed,
            Reconfiguring,
            Reconfigured,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    /// The decimal digit written to the store.
    pub fn as_value(self) -> &'static [u8] {
        const DIGITS: [&[u8]; 9] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8"];
        DIGITS[self as usize]
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Longest `<dir>/state` path the helpers build.
const STATE_PATH_MAX: usize = 256;

/// `<dir>/state` in `buf`.
fn state_path<'b>(dir: &str, buf: &'b mut [u8; STATE_PATH_MAX]) -> Result<&'b str, XenbusError> {
    const LEAF: &str = "/state";
    let len = dir.len() + LEAF.len();
    if len > STATE_PATH_MAX {
        return Err(XenbusError::TooLong);
    }
    buf[..dir.len()].copy_from_slice(dir.as_bytes());
    buf[dir.len()..len].copy_from_slice(LEAF.as_bytes());
    core::str::from_utf8(&buf[..len]).map_err(|_| XenbusError::Protocol)
}

impl<T: Transport> Client<T> {
    /// The state published under `dir` (`Unknown` if there is none).
    pub fn read_state(&mut self, dir: &str) -> Result<XenbusState, XenbusError> {
        let mut buf = [0u8; STATE_PATH_MAX];
        match self.read(Tx::NONE, state_path(dir, &mut buf)?) {
            Ok(value) => Ok(XenbusState::parse(value).unwrap_or(XenbusState::Unknown)),
            Err(XenbusError::Store(XsError::Enoent)) => Ok(XenbusState::Unknown),
            Err(e) => Err(e),
        }
    }

    /// Publishes `state` in `<dir>/state`, as Linux's
    /// `xenbus_switch_state`: in a transaction (retried on `EAGAIN`) that
    /// first reads the node, so a device whose directory the toolstack
    /// already removed is not re-created (`Store(Enoent)`), and writes
    /// only if the state differs.
    pub fn switch_state(&mut self, dir: &str, state: XenbusState) -> Result<(), XenbusError> {
        let mut buf = [0u8; STATE_PATH_MAX];
        let path = state_path(dir, &mut buf)?;
        self.transaction(|xs, tx| {
            if XenbusState::parse(xs.read(tx, path)?) == Some(state) {
                return Ok(());
            }
            xs.write(tx, path, state.as_value())
        })
    }

    /// The other end's directory: the value of `<dir>/backend` (for a
    /// frontend; Linux's `xenbus_read_otherend_details`).
    pub fn other_end(&mut self, dir: &str) -> Result<PathBuf, XenbusError> {
        let key = PathBuf::format(format_args!("{dir}/backend"))?;
        let value = self.read_str(Tx::NONE, key.as_str())?;
        PathBuf::format(format_args!("{value}"))
    }

    /// Sleeps until the state under `dir` (the other end's) satisfies
    /// `done`, watching `<dir>/state`; returns that state.
    pub fn wait_for_state(
        &mut self,
        dir: &str,
        done: impl Fn(XenbusState) -> bool,
    ) -> Result<XenbusState, XenbusError> {
        let mut buf = [0u8; STATE_PATH_MAX];
        let path = state_path(dir, &mut buf)?;
        let parse = |v: Option<&[u8]>| {
            v.and_then(XenbusState::parse)
                .unwrap_or(XenbusState::Unknown)
        };
        self.wait_until(path, |v| done(parse(v)))?;
        self.read_state(dir)
    }
}
