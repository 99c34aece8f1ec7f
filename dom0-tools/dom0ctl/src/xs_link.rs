//! dom0ctl's privileged store connection: Xen's wire protocol
//! (`io/xs_wire.h`) carried as raw `xsd_sockmsg` bytes over a
//! [`StorePipe`] (the management channel's local store connection, with
//! dom0's privileges), split into whole messages by [`Framer`], and the
//! few requests `shutdown`/`reboot` need ([`XsConn`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xenstore::wire::{
    encode_message, split_strings, Header, MsgType, HEADER_SIZE, XENSTORE_PAYLOAD_MAX,
};

use crate::error::CliError;

/// A byte pipe to one privileged store connection: whole request
/// messages go in, the store's replies and `XS_WATCH_EVENT`s come out.
pub trait StorePipe {
    /// Sends one or more whole request messages.
    fn send(&mut self, messages: &[u8]) -> Result<(), CliError>;
    /// What the store produced since the last call, waiting up to `wait`
    /// for something; empty if nothing came.
    fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, CliError>;
}

/// One whole message: its header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The `xsd_sockmsg` header.
    pub header: Header,
    /// `header.len` bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// The message as bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + self.payload.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// A message whose header announces more than [`XENSTORE_PAYLOAD_MAX`]
/// bytes; xenstored drops such a connection, and so do we.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a store message of {0} bytes is longer than XENSTORE_PAYLOAD_MAX (4096)")]
pub struct TooLong(pub u32);

/// Splits a byte stream into whole messages. It holds at most one
/// message's bytes beyond what [`Framer::next_message`] has handed out.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until one is complete, or
    /// [`TooLong`] (the stream cannot be resynchronised after it).
    pub fn next_message(&mut self) -> Result<Option<Message>, TooLong> {
        let Some(head) = self.buf.first_chunk::<HEADER_SIZE>() else {
            return Ok(None);
        };
        let header = Header::decode(head);
        let len = header.len as usize;
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(TooLong(header.len));
        }
        if self.buf.len() < HEADER_SIZE + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_SIZE..HEADER_SIZE + len].to_vec();
        self.buf.drain(..HEADER_SIZE + len);
        Ok(Some(Message { header, payload }))
    }
}

/// Requests over a [`StorePipe`], one at a time, matched by `req_id`;
/// `XS_WATCH_EVENT`s that arrive meanwhile are kept for
/// [`XsConn::next_watch_event`].
pub struct XsConn<P> {
    pipe: P,
    framer: Framer,
    next_req: u32,
    events: VecDeque<(String, String)>,
}

/// How long one `recv` may block while a reply or event is awaited.
const RECV_SLICE: Duration = Duration::from_millis(200);

impl<P: StorePipe> XsConn<P> {
    /// A connection over `pipe`.
    pub fn new(pipe: P) -> Self {
        Self {
            pipe,
            framer: Framer::default(),
            next_req: 1,
            events: VecDeque::new(),
        }
    }

    /// `XS_READ` of `path`: its value, or `None` if it does not exist.
    pub fn read(&mut self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>, CliError> {
        match self.call(MsgType::Read, &nul_terminated(&[path]), timeout) {
            Ok(value) => Ok(Some(value)),
            Err(CliError::Store(e)) if e == "ENOENT" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `XS_WRITE` of `value` at `path`.
    pub fn write(&mut self, path: &str, value: &[u8], timeout: Duration) -> Result<(), CliError> {
        let mut payload = nul_terminated(&[path]);
        payload.extend_from_slice(value);
        self.call(MsgType::Write, &payload, timeout).map(drop)
    }

    /// `XS_WATCH` of `path` with `token` (it fires once at once, as
    /// Xen's does).
    pub fn watch(&mut self, path: &str, token: &str, timeout: Duration) -> Result<(), CliError> {
        self.call(MsgType::Watch, &nul_terminated(&[path, token]), timeout)
            .map(drop)
    }

    /// The next watch event `(path, token)`, waiting until `deadline`;
    /// `None` if none came by then.
    pub fn next_watch_event(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(String, String)>, CliError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            if let Some(m) = self.receive(left.min(RECV_SLICE))? {
                return Err(unsolicited(&m));
            }
        }
    }

    /// Sends one request (outside any transaction) and waits up to
    /// `timeout` for its reply's payload; an `XS_ERROR` reply is
    /// [`CliError::Store`] with the error's name (`ENOENT`, `EACCES`, ...).
    pub fn call(
        &mut self,
        msg_type: MsgType,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, CliError> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        self.pipe
            .send(&encode_message(msg_type, req_id, 0, payload))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| CliError::Protocol("the store did not answer in time".into()))?;
            let Some(m) = self.receive(left.min(RECV_SLICE))? else {
                continue;
            };
            if m.header.req_id != req_id {
                return Err(unsolicited(&m));
            }
            if m.header.msg_type == MsgType::Error as u32 {
                let (strings, _) = split_strings(&m.payload);
                let name = strings.first().copied().unwrap_or_default();
                return Err(CliError::Store(String::from_utf8_lossy(name).into()));
            }
            return Ok(m.payload);
        }
    }

    /// The next message that is not a watch event (events are queued),
    /// or `None` if nothing whole came within `wait`.
    fn receive(&mut self, wait: Duration) -> Result<Option<Message>, CliError> {
        loop {
            match self.framer.next_message() {
                Err(e) => return Err(CliError::Protocol(e.to_string())),
                Ok(Some(m)) if m.header.msg_type == MsgType::WatchEvent as u32 => {
                    let (s, _) = split_strings(&m.payload);
                    let text = |i: usize| {
                        String::from_utf8_lossy(s.get(i).copied().unwrap_or_default()).into_owned()
                    };
                    self.events.push_back((text(0), text(1)));
                    return Ok(None);
                }
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
            }
            let bytes = self.pipe.recv(wait)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            self.framer.push(&bytes);
        }
    }
}

/// `strings`, each followed by its NUL.
fn nul_terminated(strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

fn unsolicited(m: &Message) -> CliError {
    CliError::Protocol(format!(
        "the store sent an unexpected message (type {}, req_id {})",
        m.header.msg_type, m.header.req_id
    ))
}
