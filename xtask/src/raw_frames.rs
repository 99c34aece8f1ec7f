//! `raw` steps: hostile bytes and conversations on the management socket,
//! built and read with the `mgmt` crate.
//!
//! - garbage, bad-crc, oversized, truncated, unknown-request: after the
//!   handshake the step writes one bad frame (or plain garbage), then a
//!   valid `List` request; the agent must answer the bad bytes with an
//!   error and the `List` with the domain list, on the same connection.
//! - half-frame: half a frame, then the connection closes (what a killed
//!   client leaves); the next client must not notice.
//! - no-hello: requests without a session get `HandshakeRequired`.
//! - abandoned-upload: a whole kernel uploaded without a commit, the
//!   connection closed; from a new connection a commit without a session,
//!   then one in a new session: neither may build anything.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mgmt::frame::{HEADER_LEN, TRAILER_LEN};
use mgmt::{
    create_requests, decode_server_message, encode_frame, encode_message, ClientMessage, Decoder,
    DomainConfig, MgmtError, Reply, Request, ServerMessage, SessionId, UploadError, MAX_PAYLOAD,
    PROTOCOL_VERSION,
};

use crate::steps::{Outcome, RawKind};

/// Request ids: the handshake, the bad frame (where it has one), the probe.
const HELLO_ID: u32 = 1;
const BAD_ID: u32 = 2;
const LIST_ID: u32 = 3;
/// What `raw = "garbage"` sends without `bytes`.
const DEFAULT_GARBAGE: &str = "this is not a frame\n";
/// A variant index no request has (postcard encodes the variant as a varint).
const UNKNOWN_VARIANT: u8 = 120;
/// How long a truncated frame is left hanging: well past the agent's idle
/// timeout ("a few hundred ms", `mgmt::Decoder::flush`).
const TRUNCATED_PAUSE: Duration = Duration::from_millis(2000);

/// Console input bytes in the frame `half-frame` cuts: enough that half
/// the frame holds its whole header.
const HALF_FRAME_INPUT: usize = 64;
/// The name `abandoned-upload` gives the domain it never commits.
pub const ABANDONED_NAME: &str = "abandoned";

/// The wire bytes of a client message.
fn frame_of(session: SessionId, id: u32, request: Request) -> Result<Vec<u8>> {
    encode_message(&ClientMessage {
        session,
        id,
        request,
    })
    .context("encoding a request")
}

/// The bad bytes of `kind` (in `session`), and whether to pause after them.
fn bad_bytes(kind: RawKind, session: SessionId, garbage: Option<&str>) -> Result<(Vec<u8>, bool)> {
    Ok(match kind {
        RawKind::Garbage => (
            garbage.unwrap_or(DEFAULT_GARBAGE).as_bytes().to_vec(),
            false,
        ),
        RawKind::BadCrc => {
            let mut frame = frame_of(session, BAD_ID, Request::List)?;
            let last = frame.len() - 1;
            frame[last] ^= 0xff;
            (frame, false)
        }
        RawKind::Oversized => {
            // A genuine header (its own CRC right) announcing one byte too
            // many; the payload never follows.
            let header = encode_frame(&[])?;
            let mut bytes = header[..4].to_vec();
            let len = u32::try_from(MAX_PAYLOAD + 1).context("payload limit")?;
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&mgmt::crc32(&bytes).to_le_bytes());
            debug_assert_eq!(bytes.len(), HEADER_LEN);
            (bytes, false)
        }
        RawKind::Truncated => {
            // A whole header (so it is a frame start), the payload, no CRC.
            let frame = frame_of(session, BAD_ID, Request::List)?;
            (frame[..frame.len() - TRAILER_LEN].to_vec(), true)
        }
        RawKind::UnknownRequest => {
            // The session and id as postcard varints, then the variant.
            let mut payload = postcard::to_allocvec(&(session, BAD_ID)).context("varints")?;
            payload.push(UNKNOWN_VARIANT);
            (encode_frame(&payload)?, false)
        }
        RawKind::HalfFrame | RawKind::NoHello | RawKind::AbandonedUpload => {
            bail!("{kind} is a conversation of its own, not bad bytes")
        }
    })
}

/// Runs a `raw` step against `socket`. The outcome's exit is 0 when the
/// agent answered as it must; its output is the conversation, one message
/// a line.
pub fn exchange(
    socket: &Path,
    kind: RawKind,
    garbage: Option<&str>,
    kernel: Option<&Path>,
    timeout: Duration,
) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut log = String::new();
    let passed = match kind {
        RawKind::HalfFrame => half_frame(socket, &mut log)?,
        RawKind::NoHello => no_hello(socket, deadline, &mut log)?,
        RawKind::AbandonedUpload => {
            let kernel = kernel.context("abandoned-upload needs a kernel")?;
            abandoned_upload(socket, kernel, deadline, &mut log)?
        }
        _ => bad_then_list(socket, kind, garbage, deadline, &mut log)?,
    };
    Ok(Outcome {
        exit: if passed { 0 } else { 1 },
        output: log,
    })
}

/// A handshake, bad bytes, a `List`: an error reply must come first.
fn bad_then_list(
    socket: &Path,
    kind: RawKind,
    garbage: Option<&str>,
    deadline: Instant,
    log: &mut String,
) -> Result<bool> {
    let mut conn = Connection::open(socket)?;
    let session = conn.hello(deadline, log)?;
    let (bad, pause) = bad_bytes(kind, session, garbage)?;
    conn.send(&bad)?;
    log.push_str(&format!("sent: {kind} ({} bytes)\n", bad.len()));
    if pause {
        std::thread::sleep(TRUNCATED_PAUSE);
    }
    conn.send(&frame_of(session, LIST_ID, Request::List)?)?;
    log.push_str("sent: List\n");
    let before = log.len();
    let list = conn.until_reply(LIST_ID, deadline, log)?;
    let error_first = log[before..].contains("error:");
    let listed = matches!(list, Some(Ok(Reply::List(_))));
    if !error_first {
        log.push_str("xtask: no error reply to the bad bytes\n");
    }
    if !listed {
        log.push_str("xtask: the List request after them did not succeed\n");
    }
    Ok(error_first && listed)
}

/// Half a `ConsoleInput` frame (its header and half its payload: the
/// agent waits for the rest) on a fresh connection, then the connection
/// closes.
fn half_frame(socket: &Path, log: &mut String) -> Result<bool> {
    let mut conn = Connection::open(socket)?;
    let data = vec![b'A'; HALF_FRAME_INPUT];
    let frame = frame_of(1, LIST_ID, Request::ConsoleInput { data })?;
    let half = &frame[..frame.len() / 2];
    conn.send(half)?;
    log.push_str(&format!(
        "sent: half a ConsoleInput frame ({} of {} bytes), then closed the connection\n",
        half.len(),
        frame.len()
    ));
    Ok(true)
}

/// `List` with no session and with a made-up one: both `HandshakeRequired`.
fn no_hello(socket: &Path, deadline: Instant, log: &mut String) -> Result<bool> {
    let mut conn = Connection::open(socket)?;
    let mut passed = true;
    for (session, id) in [(0, 1), (1, 2)] {
        conn.send(&frame_of(session, id, Request::List)?)?;
        log.push_str(&format!("sent: List without Hello (session {session})\n"));
        let reply = conn.until_reply(id, deadline, log)?;
        passed &= matches!(reply, Some(Err(MgmtError::HandshakeRequired)));
    }
    Ok(passed)
}

/// A whole upload of `kernel` without its commit; then, from a new
/// connection, a commit without a session and one in a new session.
fn abandoned_upload(
    socket: &Path,
    kernel: &Path,
    deadline: Instant,
    log: &mut String,
) -> Result<bool> {
    let image = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    let config = DomainConfig {
        name: ABANDONED_NAME.into(),
        memory_mib: 4,
        vcpus: 1,
        cmdline: String::new(),
        disks: Vec::new(),
        vifs: Vec::new(),
        sched: Default::default(),
    };
    let mut conn = Connection::open(socket)?;
    let session = conn.hello(deadline, log)?;
    let requests: Vec<Request> = create_requests(config, &image)
        .context("kernel too large")?
        .collect();
    let mut uploaded = true;
    // Everything but the final CreateCommit.
    for (id, request) in (10..).zip(&requests[..requests.len() - 1]) {
        conn.send(&frame_of(session, id, request.clone())?)?;
        uploaded &= matches!(
            conn.until_reply(id, deadline, &mut String::new())?,
            Some(Ok(_))
        );
    }
    log.push_str(&format!(
        "sent: CreateBegin and {} bytes in {} chunks (session {session}), no CreateCommit; closed the connection\n",
        image.len(),
        requests.len() - 2
    ));
    drop(conn);
    let mut conn = Connection::open(socket)?;
    conn.send(&frame_of(0, 1, Request::CreateCommit)?)?;
    log.push_str("sent: CreateCommit without Hello, from a new connection\n");
    let without = conn.until_reply(1, deadline, log)?;
    let new_session = conn.hello(deadline, log)?;
    conn.send(&frame_of(new_session, 2, Request::CreateCommit)?)?;
    log.push_str("sent: CreateCommit in the new session\n");
    let within = conn.until_reply(2, deadline, log)?;
    Ok(uploaded
        && matches!(without, Some(Err(MgmtError::HandshakeRequired)))
        && matches!(
            within,
            Some(Err(MgmtError::Upload(UploadError::NotStarted)))
        ))
}

struct Connection {
    stream: UnixStream,
    decoder: Decoder,
    unread: Vec<u8>,
}

impl Connection {
    fn open(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to {}", socket.display()))?;
        Ok(Connection {
            stream,
            decoder: Decoder::new(),
            unread: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .context("writing to the socket")
    }

    /// Opens a session: `Hello` with a nonce, everything up to the
    /// `Welcome` echoing it logged.
    fn hello(&mut self, deadline: Instant, log: &mut String) -> Result<SessionId> {
        let nonce = u64::from(std::process::id()) << 32 | u64::from(HELLO_ID);
        self.send(&frame_of(
            0,
            HELLO_ID,
            Request::Hello {
                version: PROTOCOL_VERSION,
                nonce,
            },
        )?)?;
        log.push_str("sent: Hello\n");
        loop {
            match self.next(deadline, log)? {
                Some(ServerMessage::Welcome {
                    nonce: echoed,
                    result: Ok(welcome),
                }) if echoed == nonce => return Ok(welcome.session),
                Some(ServerMessage::Welcome { nonce: echoed, .. }) if echoed == nonce => {
                    bail!("the handshake failed:\n{log}")
                }
                Some(_) => {}
                None => bail!("no handshake with the management agent:\n{log}"),
            }
        }
    }

    /// Reads messages (logging each) until the reply to `id`; `None` if the
    /// deadline passed or the connection closed first.
    fn until_reply(
        &mut self,
        id: u32,
        deadline: Instant,
        log: &mut String,
    ) -> Result<Option<Result<Reply, MgmtError>>> {
        loop {
            match self.next(deadline, log)? {
                Some(ServerMessage::Reply {
                    id: got, result, ..
                }) if got == id => return Ok(Some(result)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next message (logged); `None` if the deadline passed or the
    /// connection closed first.
    fn next(&mut self, deadline: Instant, log: &mut String) -> Result<Option<ServerMessage>> {
        loop {
            let mut input = &self.unread[..];
            let item = self.decoder.decode(&mut input);
            let used = self.unread.len() - input.len();
            self.unread.drain(..used);
            match item {
                Some(Ok(payload)) => match decode_server_message(&payload) {
                    Ok(message) => {
                        log.push_str(&describe(&message));
                        log.push('\n');
                        return Ok(Some(message));
                    }
                    Err(e) => log.push_str(&format!("received: unreadable message: {e}\n")),
                },
                Some(Err(e)) => log.push_str(&format!("received: broken frame: {e}\n")),
                None => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        log.push_str("xtask: timed out waiting for a reply\n");
                        return Ok(None);
                    };
                    if !self.read_more(left, log)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads what arrives within `left`; false when the connection closed
    /// or nothing came in time.
    fn read_more(&mut self, left: Duration, log: &mut String) -> Result<bool> {
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .context("setting the read timeout")?;
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                log.push_str("xtask: the connection closed\n");
                Ok(false)
            }
            Ok(n) => {
                self.unread.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                log.push_str("xtask: timed out waiting for a reply\n");
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e).context("reading from the socket"),
        }
    }
}

/// One line for the log: errors by their operator-facing text.
fn describe(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Reply {
            id,
            result: Ok(Reply::List(domains)),
            ..
        } => {
            let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            format!("received: reply {id}: List [{}]", names.join(", "))
        }
        ServerMessage::Reply {
            id,
            result: Ok(reply),
            ..
        } => format!("received: reply {id}: {reply:?}"),
        ServerMessage::Reply {
            id, result: Err(e), ..
        } => format!("received: reply {id}: error: {e}"),
        ServerMessage::Rejected(e) => format!("received: rejected: error: {e}"),
        ServerMessage::Dropped { session, error } => {
            format!("received: dropped in session {session}: error: {error}")
        }
        ServerMessage::Event { event, .. } => format!("received: event: {event:?}"),
        ServerMessage::Welcome { result: Ok(w), .. } => {
            format!("received: welcome: session {}", w.session)
        }
        ServerMessage::Welcome { result: Err(e), .. } => {
            format!("received: welcome: error: {e}")
        }
        ServerMessage::Challenge { version, .. } => {
            format!("received: challenge (protocol {version})")
        }
        ServerMessage::Authenticated { .. } => "received: authenticated".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<mgmt::Decoded> {
        let mut decoder = Decoder::new();
        let mut input = bytes;
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(&mut input) {
            out.push(item);
        }
        while let Some(item) = decoder.flush() {
            out.push(item);
        }
        out
    }

    /// Each bad sequence, followed by a valid frame, decodes as one error
    /// and then that frame: what the agent's decoder will see.
    #[test]
    fn each_kind_is_one_error_then_the_next_frame() {
        let next = frame_of(5, LIST_ID, Request::List).unwrap();
        for kind in [
            RawKind::Garbage,
            RawKind::BadCrc,
            RawKind::Oversized,
            RawKind::Truncated,
        ] {
            let (mut bytes, _) = bad_bytes(kind, 5, None).unwrap();
            bytes.extend_from_slice(&next);
            let items = decode_all(&bytes);
            assert_eq!(items.len(), 2, "{kind}: {items:?}");
            assert!(items[0].is_err(), "{kind}: {items:?}");
            let payload = items[1].clone().unwrap();
            assert_eq!(
                mgmt::decode_client_message(&payload).unwrap(),
                ClientMessage {
                    session: 5,
                    id: LIST_ID,
                    request: Request::List
                }
            );
        }
    }

    #[test]
    fn an_unknown_request_is_answered_with_its_id() {
        let (bytes, _) = bad_bytes(RawKind::UnknownRequest, 5, None).unwrap();
        let payload = decode_all(&bytes).remove(0).unwrap();
        match mgmt::decode_client_message(&payload) {
            Err(ServerMessage::Reply {
                session: 5,
                id,
                result: Err(_),
            }) => assert_eq!(id, BAD_ID),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_frame_is_reported_as_such_when_the_line_goes_idle() {
        let (bytes, pause) = bad_bytes(RawKind::Truncated, 5, None).unwrap();
        assert!(pause);
        let items = decode_all(&bytes);
        assert!(
            matches!(items[..], [Err(mgmt::FrameError::Truncated { .. })]),
            "{items:?}"
        );
    }

    #[test]
    fn garbage_bytes_are_the_given_text() {
        assert_eq!(bad_bytes(RawKind::Garbage, 5, Some("zz")).unwrap().0, b"zz");
    }
}
