//! A connection to the management agent: connect, handshake, requests and
//! their replies, events.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use mgmt::{
    check_compatible, decode_server_message, encode_message, ClientMessage, Decoder, Event, Reply,
    Request, ServerMessage, PROTOCOL_VERSION,
};

use crate::error::CliError;

/// The writing half: numbers and sends requests. Cloneable into a thread
/// (the console's input forwarder).
#[derive(Debug)]
pub struct Sender {
    stream: UnixStream,
    next_id: u32,
}

impl Sender {
    /// Sends `request`; returns the id its reply will carry.
    pub fn send(&mut self, request: Request) -> Result<u32, CliError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = encode_message(&ClientMessage { id, request })
            .map_err(|e| CliError::Protocol(format!("cannot send the request: {e}")))?;
        self.stream
            .write_all(&frame)
            .map_err(|e| CliError::io("the connection to the management agent broke", e))?;
        Ok(id)
    }

    /// The id the next request will carry.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// A second sender on the same connection, numbering from `first_id`
    /// so its ids never meet this one's.
    pub fn split_off(&self, first_id: u32) -> Result<Sender, CliError> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| CliError::io("cannot share the connection", e))?;
        Ok(Sender {
            stream,
            next_id: first_id,
        })
    }
}

/// A handshaken connection.
#[derive(Debug)]
pub struct Client {
    sender: Sender,
    reader: UnixStream,
    decoder: Decoder,
    /// Bytes read and not yet given to the decoder.
    unread: Vec<u8>,
    /// Events that arrived while waiting for a reply.
    events: VecDeque<Event>,
    timeout: Duration,
}

/// Where the console forwarder's request ids start (the main sender's ids
/// stay far below).
pub const FORWARDER_FIRST_ID: u32 = 1 << 31;

impl Client {
    /// Connects to the agent on `path` and does the version handshake.
    /// Each reply must come within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, CliError> {
        let stream = UnixStream::connect(path).map_err(|source| CliError::NotListening {
            path: path.into(),
            source,
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| CliError::io("cannot set the reply timeout", e))?;
        let reader = stream
            .try_clone()
            .map_err(|e| CliError::io("cannot use the connection", e))?;
        let mut client = Client {
            sender: Sender { stream, next_id: 1 },
            reader,
            decoder: Decoder::new(),
            unread: Vec::new(),
            events: VecDeque::new(),
            timeout,
        };
        match client.call(Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Reply::Hello { version } => {
                check_compatible(PROTOCOL_VERSION, version).map_err(CliError::Refused)?
            }
            other => return Err(unexpected(&other)),
        }
        Ok(client)
    }

    /// The writing half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Sends `request` and waits for its reply; events that arrive first
    /// are kept for [`Client::next_event`].
    pub fn call(&mut self, request: Request) -> Result<Reply, CliError> {
        let id = self.sender.send(request)?;
        loop {
            match self.receive()? {
                ServerMessage::Reply { id: got, result } if got == id => {
                    return result.map_err(CliError::Refused)
                }
                // A reply to an earlier, abandoned request.
                ServerMessage::Reply { .. } => {}
                ServerMessage::Event(event) => self.events.push_back(event),
                ServerMessage::Rejected(e) => return Err(rejected(&e)),
            }
        }
    }

    /// The next event, or a reply (console input replies and the detach
    /// reply come this way). Waits without a time limit.
    pub fn next_message(&mut self) -> Result<ServerMessage, CliError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(ServerMessage::Event(event));
        }
        self.set_timeout(None)?;
        let message = self.receive();
        self.set_timeout(Some(self.timeout))?;
        message
    }

    fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), CliError> {
        self.reader
            .set_read_timeout(timeout)
            .map_err(|e| CliError::io("cannot set the reply timeout", e))
    }

    /// The next server message, reading as needed. Frames the decoder
    /// rejects are skipped: the connection may have been joined in the
    /// middle of a frame, and a lost reply ends in the timeout.
    fn receive(&mut self) -> Result<ServerMessage, CliError> {
        loop {
            let mut input = &self.unread[..];
            let item = self.decoder.decode(&mut input);
            let used = self.unread.len() - input.len();
            self.unread.drain(..used);
            match item {
                Some(Ok(payload)) => {
                    return decode_server_message(&payload).map_err(|e| {
                        CliError::Protocol(format!(
                            "unreadable message from the management agent: {e}"
                        ))
                    })
                }
                Some(Err(_)) => {}
                None => self.read_more()?,
            }
        }
    }

    fn read_more(&mut self) -> Result<(), CliError> {
        let mut buf = [0u8; 8192];
        match self.reader.read(&mut buf) {
            Ok(0) => Err(CliError::Protocol(
                "the management agent closed the connection".into(),
            )),
            Ok(n) => {
                self.unread.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(CliError::Protocol(format!(
                    "no reply from the management agent within {} s; is dom0 up? \
                     (`cargo xtask up` says when it is ready; --timeout waits longer)",
                    self.timeout.as_secs()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(CliError::io("reading from the management agent failed", e)),
        }
    }
}

/// A reply of the wrong kind for the request.
pub fn unexpected(reply: &Reply) -> CliError {
    CliError::Protocol(format!(
        "unexpected reply from the management agent: {reply:?}"
    ))
}

fn rejected(e: &mgmt::MgmtError) -> CliError {
    CliError::Protocol(format!(
        "the management agent could not read a request: {e}"
    ))
}
