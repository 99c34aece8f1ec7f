//! A connection to the management agent: connect, handshake (a new
//! session), requests and their replies, events.
//!
//! The line is shared over time: QEMU hands COM2 to one client after the
//! other, and what an earlier client left (replies to its requests, the
//! agent's complaint about its half frame) may still be on its way. So the
//! client resynchronises at connect: it sends `Hello` with a fresh random
//! nonce and discards everything until the `Welcome` echoing that nonce;
//! after it, it ignores every message that does not carry its session.
//! When the agent reports a broken frame in this session (`Dropped`: a
//! request cut on the way, e.g. the line went idle mid-frame on a loaded
//! host), the request was not carried out and is sent again, a few times
//! at most. Every step (connect, each write, each reply) is bounded by
//! `--timeout`.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mgmt::auth::{check_server_proof, client_proof, Nonce, NONCE_LEN};
use mgmt::{
    check_compatible, decode_server_message, encode_message, old_server_error, ClientMessage,
    Decoder, Event, FrameError, Reply, Request, ServerMessage, SessionId, Welcome,
    MGMT_TCP_MAX_CONNECTIONS, PROTOCOL_VERSION,
};
use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::error::CliError;
use crate::transport::{connect_tcp, read_key_file, Endpoint, Stream};

/// How long `connect` waits for the `Welcome` before it says why it is
/// still waiting (unless quiet).
const BUSY_HINT_AFTER: Duration = Duration::from_secs(2);
/// Pause between attempts to connect while the socket's queue is full.
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// Pause before connecting again after the agent refused a connection.
const REFUSED_RETRY: Duration = Duration::from_millis(100);
/// How often a request (or the `Hello`) is sent again after the agent
/// reported it broken on the way.
const MAX_RESENDS: u32 = 3;

/// The writing half: numbers and sends requests of one session. Can be
/// split off into a thread (the console's input forwarder).
#[derive(Debug)]
pub struct Sender {
    stream: Stream,
    session: SessionId,
    next_id: u32,
}

impl Sender {
    /// Sends `request`; returns the id its reply will carry.
    pub fn send(&mut self, request: Request) -> Result<u32, CliError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = encode_message(&ClientMessage {
            session: self.session,
            id,
            request,
        })
        .map_err(|e| CliError::Protocol(format!("cannot send the request: {e}")))?;
        self.stream.write_all(&frame).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CliError::Protocol(
                "the management agent stopped reading requests (busy with another client, or \
                 dom0 is stuck); --timeout waits longer"
                    .into(),
            ),
            _ => CliError::io("the connection to the management agent broke", e),
        })?;
        Ok(id)
    }

    /// The id the next request will carry.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// A second sender on the same connection and session, numbering from
    /// `first_id` so its ids never meet this one's.
    pub fn split_off(&self, first_id: u32) -> Result<Sender, CliError> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| CliError::io("cannot share the connection", e))?;
        Ok(Sender {
            stream,
            session: self.session,
            next_id: first_id,
        })
    }
}

/// A connection with a session.
#[derive(Debug)]
pub struct Client {
    sender: Sender,
    reader: Stream,
    decoder: Decoder,
    /// Bytes read and not yet given to the decoder.
    unread: Vec<u8>,
    /// Events of this session that arrived while waiting for a reply.
    events: VecDeque<Event>,
    timeout: Duration,
}

/// Where the console forwarder's request ids start (the main sender's ids
/// stay far below).
pub const FORWARDER_FIRST_ID: u32 = 1 << 31;

/// What one wait for a message gave.
enum Received {
    Message(ServerMessage),
    /// The agent's frames are protocol 1.
    OldAgent,
    /// The deadline passed.
    TimedOut,
}

impl Client {
    /// Connects to the agent at `endpoint` and opens a session; over
    /// TCP, first proves it holds the key in `key_file` (read before
    /// anything is sent). Connecting, authenticating and the handshake
    /// each take at most `timeout`; unless `quiet`, a note on stderr says
    /// why when the agent is slow to answer.
    pub fn connect(
        endpoint: &Endpoint,
        key_file: &Path,
        timeout: Duration,
        quiet: bool,
    ) -> Result<Self, CliError> {
        let deadline = Instant::now() + timeout;
        let mut client = match endpoint {
            Endpoint::Unix(path) => {
                Self::over(Stream::Unix(connect_within(path, deadline)?), timeout)?
            }
            Endpoint::Tcp(address) => {
                Self::authenticated(address, &read_key_file(key_file)?, timeout, deadline)?
            }
        };
        let welcome = client.handshake(quiet)?;
        check_compatible(PROTOCOL_VERSION, welcome.version).map_err(CliError::Refused)?;
        client.sender.session = welcome.session;
        Ok(client)
    }

    /// Connects over TCP and proves it holds `key`. A connection closed
    /// before the agent's challenge was refused: the agent serves
    /// [`MGMT_TCP_MAX_CONNECTIONS`] clients at once and TCP resets the
    /// next (QEMU's port forward, which accepted it, then closes it), or
    /// it is not listening yet. That is tried again until `deadline`, as
    /// a full COM2 socket is.
    fn authenticated(
        address: &str,
        key: &mgmt::auth::Key,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Self, CliError> {
        let started = Instant::now();
        loop {
            let mut client = Self::over(Stream::Tcp(connect_tcp(address, timeout)?), timeout)?;
            match client.authenticate(key) {
                Err(CliError::Closed) if Instant::now() < deadline => {
                    std::thread::sleep(REFUSED_RETRY);
                }
                Err(CliError::Closed) => {
                    return Err(CliError::Protocol(format!(
                        "the management agent at {address} closed every connection before its \
                         challenge for {} s: it serves at most {MGMT_TCP_MAX_CONNECTIONS} clients \
                         at once (close a `console` or `top`), or dom0 is not serving yet \
                         (--timeout waits longer)",
                        started.elapsed().as_secs()
                    )))
                }
                result => return result.map(|()| client),
            }
        }
    }

    /// A client on `stream`, before any message.
    fn over(stream: Stream, timeout: Duration) -> Result<Self, CliError> {
        let set = |e| CliError::io("cannot set the connection's timeouts", e);
        stream.set_write_timeout(Some(timeout)).map_err(set)?;
        let reader = stream
            .try_clone()
            .map_err(|e| CliError::io("cannot use the connection", e))?;
        Ok(Client {
            sender: Sender {
                stream,
                session: 0,
                next_id: 1,
            },
            reader,
            decoder: Decoder::new(),
            unread: Vec::new(),
            events: VecDeque::new(),
            timeout,
        })
    }

    /// The TCP handshake ([`mgmt::auth`]): the agent's challenge, our
    /// proof, the agent's proof. A wrong key ends in
    /// [`mgmt::MgmtError::AuthenticationRefused`].
    fn authenticate(&mut self, key: &mgmt::auth::Key) -> Result<(), CliError> {
        let deadline = Instant::now() + self.timeout;
        let server_nonce = match self.receive(Some(deadline))? {
            Received::Message(ServerMessage::Challenge {
                version,
                server_nonce,
            }) => {
                check_compatible(PROTOCOL_VERSION, version).map_err(CliError::Refused)?;
                server_nonce
            }
            Received::Message(ServerMessage::Rejected(e)) => return Err(CliError::Refused(e)),
            Received::Message(other) => {
                return Err(CliError::Protocol(format!(
                    "the management agent did not start with its challenge: {other:?}"
                )))
            }
            Received::OldAgent => return Err(CliError::Refused(old_server_error())),
            Received::TimedOut => return Err(self.no_answer("its challenge")),
        };
        let client_nonce = random_nonce()?;
        self.sender.send(Request::Authenticate {
            client_nonce,
            client_proof: client_proof(key, &server_nonce, &client_nonce),
        })?;
        // Closed after the challenge: not a refusal to try again.
        let verdict = self.receive(Some(deadline)).map_err(|e| match e {
            CliError::Closed => CliError::Protocol(
                "the management agent closed the connection before it answered our \
                 authentication"
                    .into(),
            ),
            e => e,
        })?;
        match verdict {
            Received::Message(ServerMessage::Authenticated { server_proof })
                if check_server_proof(key, &server_nonce, &client_nonce, &server_proof) =>
            {
                Ok(())
            }
            Received::Message(ServerMessage::Authenticated { .. }) => Err(CliError::Protocol(
                "the management agent's proof of the key is wrong: whatever answers on this \
                 port does not hold the key of this key file"
                    .into(),
            )),
            Received::Message(ServerMessage::Rejected(e)) => Err(CliError::Refused(e)),
            Received::Message(other) => Err(CliError::Protocol(format!(
                "unexpected answer to our authentication: {other:?}"
            ))),
            Received::OldAgent => Err(CliError::Refused(old_server_error())),
            Received::TimedOut => Err(self.no_answer("whether our key is right")),
        }
    }

    fn no_answer(&self, what: &str) -> CliError {
        CliError::Protocol(format!(
            "the management agent did not send {what} within {} s (is dom0 up? `cargo xtask \
             up` says when it is ready; --timeout waits longer)",
            self.timeout.as_secs()
        ))
    }

    /// `Hello` with a fresh nonce; everything before the `Welcome` that
    /// echoes it belongs to someone else.
    /// A broken frame reported before our `Welcome` may be our `Hello`:
    /// it is sent again with a new nonce (a few times at most), and only
    /// the `Welcome` to the last one counts.
    fn handshake(&mut self, quiet: bool) -> Result<Welcome, CliError> {
        let mut nonce = self.send_hello()?;
        let mut resends = 0;
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut hint_at = Some(start + BUSY_HINT_AFTER).filter(|at| !quiet && *at < deadline);
        loop {
            match self.receive(Some(hint_at.unwrap_or(deadline)))? {
                Received::Message(ServerMessage::Welcome {
                    nonce: echoed,
                    result,
                }) if echoed == nonce => return result.map_err(CliError::Refused),
                Received::Message(ServerMessage::Rejected(_) | ServerMessage::Dropped { .. })
                    if resends < MAX_RESENDS =>
                {
                    resends += 1;
                    nonce = self.send_hello()?;
                }
                Received::Message(_) => {}
                Received::OldAgent => return Err(CliError::Refused(old_server_error())),
                Received::TimedOut if hint_at.take().is_some() => eprintln!(
                    "dom0ctl: the management agent has not answered yet: it is serving another \
                     client (the line takes one at a time), or dom0 is still starting; \
                     waiting up to {} s more",
                    deadline.saturating_duration_since(Instant::now()).as_secs()
                ),
                Received::TimedOut => {
                    return Err(CliError::Protocol(format!(
                        "the management agent did not answer within {} s: it is busy serving \
                         another client (the line takes one client at a time), or dom0 is not up \
                         (`cargo xtask up` says when it is ready); --timeout waits longer",
                        self.timeout.as_secs()
                    )))
                }
            }
        }
    }

    /// Sends `Hello` with a fresh nonce; returns the nonce.
    fn send_hello(&mut self) -> Result<u64, CliError> {
        let nonce = fresh_nonce();
        self.sender.send(Request::Hello {
            version: PROTOCOL_VERSION,
            nonce,
        })?;
        Ok(nonce)
    }

    /// The writing half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Sends `request` and waits (up to the timeout) for its reply;
    /// events of this session that arrive first are kept for
    /// [`Client::next_message`], messages of other sessions dropped.
    pub fn call(&mut self, request: Request) -> Result<Reply, CliError> {
        let mut id = self.sender.send(request.clone())?;
        let mut resends = 0;
        let mut deadline = Instant::now() + self.timeout;
        loop {
            match self.receive(Some(deadline))? {
                Received::Message(ServerMessage::Reply {
                    session,
                    id: got,
                    result,
                }) if session == self.sender.session && got == id => {
                    return result.map_err(CliError::Refused)
                }
                Received::Message(ServerMessage::Event { session, event })
                    if session == self.sender.session =>
                {
                    self.events.push_back(event)
                }
                // Our request arrived broken and was not carried out.
                Received::Message(ServerMessage::Dropped { session, error })
                    if session == self.sender.session =>
                {
                    if resends == MAX_RESENDS {
                        return Err(CliError::Protocol(format!(
                            "our requests keep arriving broken at the management agent ({error}); \
                             the line to dom0 is unreliable or the host is overloaded"
                        )));
                    }
                    resends += 1;
                    id = self.sender.send(request.clone())?;
                    deadline = Instant::now() + self.timeout;
                }
                // Someone else's, or an earlier request's.
                Received::Message(_) => {}
                Received::OldAgent => return Err(CliError::Refused(old_server_error())),
                Received::TimedOut => {
                    return Err(CliError::Protocol(format!(
                        "no reply from the management agent within {} s (is dom0 still up? \
                         --timeout waits longer)",
                        self.timeout.as_secs()
                    )))
                }
            }
        }
    }

    /// How long each step may take (`--timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The events of this session that arrived while [`Client::call`]
    /// waited for a reply, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// The next message of this session: an event, or a reply (console
    /// input replies and the detach reply come this way). Waits without a
    /// time limit.
    pub fn next_message(&mut self) -> Result<ServerMessage, CliError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(ServerMessage::Event {
                session: self.sender.session,
                event,
            });
        }
        loop {
            let message = match self.receive(None)? {
                Received::Message(m) => m,
                Received::OldAgent => return Err(CliError::Refused(old_server_error())),
                Received::TimedOut => continue,
            };
            let ours = match &message {
                ServerMessage::Reply { session, .. } | ServerMessage::Event { session, .. } => {
                    *session == self.sender.session
                }
                // Console input lost on the way is not sent again.
                ServerMessage::Rejected(_)
                | ServerMessage::Welcome { .. }
                | ServerMessage::Dropped { .. }
                | ServerMessage::Challenge { .. }
                | ServerMessage::Authenticated { .. } => false,
            };
            if ours {
                return Ok(message);
            }
        }
    }

    /// The next event of this session, waiting until `deadline`; `None`
    /// if none came by then (replies to earlier requests are dropped).
    pub fn next_event_until(&mut self, deadline: Instant) -> Result<Option<Event>, CliError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        loop {
            match self.receive(Some(deadline))? {
                Received::Message(ServerMessage::Event { session, event })
                    if session == self.sender.session =>
                {
                    return Ok(Some(event))
                }
                Received::Message(_) => {}
                Received::OldAgent => return Err(CliError::Refused(old_server_error())),
                Received::TimedOut => return Ok(None),
            }
        }
    }

    /// The next server message, reading until `deadline` (`None`: no
    /// limit). Broken frames are skipped: they are what an earlier client
    /// left on the line, and a lost reply of ours ends in the timeout.
    fn receive(&mut self, deadline: Option<Instant>) -> Result<Received, CliError> {
        loop {
            let mut input = &self.unread[..];
            let item = self.decoder.decode(&mut input);
            let used = self.unread.len() - input.len();
            self.unread.drain(..used);
            match item {
                Some(Ok(payload)) => {
                    return decode_server_message(&payload)
                        .map(Received::Message)
                        .map_err(|e| {
                            CliError::Protocol(format!(
                                "unreadable message from the management agent: {e}"
                            ))
                        })
                }
                Some(Err(FrameError::OldProtocol)) => return Ok(Received::OldAgent),
                Some(Err(_)) => {}
                None => {
                    if !self.read_more(deadline)? {
                        return Ok(Received::TimedOut);
                    }
                }
            }
        }
    }

    /// Reads what arrives before `deadline`; false if nothing did.
    fn read_more(&mut self, deadline: Option<Instant>) -> Result<bool, CliError> {
        let left = match deadline.map(|d| d.checked_duration_since(Instant::now())) {
            Some(None) => return Ok(false),
            Some(Some(left)) => Some(left.max(Duration::from_millis(1))),
            None => None,
        };
        self.reader
            .set_read_timeout(left)
            .map_err(|e| CliError::io("cannot set the reply timeout", e))?;
        let mut buf = [0u8; 8192];
        match self.reader.read(&mut buf) {
            Ok(0) => Err(CliError::Closed),
            Ok(n) => {
                self.unread.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(CliError::io("reading from the management agent failed", e)),
        }
    }
}

/// Connects to `path` by `deadline`. A listening socket whose queue is
/// full (QEMU serves one client and queues the next few) refuses with
/// `EAGAIN` at once; that is retried until the deadline, then reported
/// as busy.
fn connect_within(path: &Path, deadline: Instant) -> Result<UnixStream, CliError> {
    let not_listening = |source: io::Error| CliError::NotListening {
        endpoint: Endpoint::Unix(path.into()),
        source,
    };
    let address = UnixAddr::new(path).map_err(|e| not_listening(e.into()))?;
    let started = Instant::now();
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| CliError::io("cannot create a socket", e.into()))?;
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream
                    .set_nonblocking(false)
                    .map_err(|e| CliError::io("cannot use the connection", e))?;
                return Ok(stream);
            }
            Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(CONNECT_RETRY),
            Err(Errno::EAGAIN) => {
                return Err(CliError::Protocol(format!(
                    "the management agent is busy: it is serving another client and the socket \
                     {} takes no more connections; gave up after {} s (--timeout waits longer)",
                    path.display(),
                    started.elapsed().as_secs()
                )))
            }
            Err(e) => return Err(not_listening(e.into())),
        }
    }
}

/// 32 bytes from the OS's random number generator.
fn random_nonce() -> Result<Nonce, CliError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| {
        CliError::Protocol(format!("no random numbers from the operating system: {e}"))
    })?;
    Ok(nonce)
}

/// A random nonce for `Hello` (std's per-process random hash keys, mixed
/// with the time: no extra dependency for 64 random bits).
fn fresh_nonce() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A reply of the wrong kind for the request.
pub fn unexpected(reply: &Reply) -> CliError {
    CliError::Protocol(format!(
        "unexpected reply from the management agent: {reply:?}"
    ))
}
