//! `raw` steps: hostile bytes on the management socket, built and read with
//! the `mgmt` crate. After the handshake the step writes one bad frame (or
//! plain garbage), then a valid `List` request; the agent must answer the
//! bad bytes with an error and the `List` with the domain list, on the same
//! connection.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mgmt::frame::{HEADER_LEN, TRAILER_LEN};
use mgmt::{
    decode_server_message, encode_frame, encode_message, ClientMessage, Decoder, Reply, Request,
    ServerMessage, MAX_PAYLOAD, PROTOCOL_VERSION,
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

/// The wire bytes of a client message.
fn frame_of(id: u32, request: Request) -> Result<Vec<u8>> {
    encode_message(&ClientMessage { id, request }).context("encoding a request")
}

/// The bad bytes of `kind`, and whether to pause after them.
fn bad_bytes(kind: RawKind, garbage: Option<&str>) -> Result<(Vec<u8>, bool)> {
    Ok(match kind {
        RawKind::Garbage => (
            garbage.unwrap_or(DEFAULT_GARBAGE).as_bytes().to_vec(),
            false,
        ),
        RawKind::BadCrc => {
            let mut frame = frame_of(BAD_ID, Request::List)?;
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
            let frame = frame_of(BAD_ID, Request::List)?;
            (frame[..frame.len() - TRAILER_LEN].to_vec(), true)
        }
        RawKind::UnknownRequest => {
            let id = u8::try_from(BAD_ID).context("id fits a one-byte varint")?;
            (encode_frame(&[id, UNKNOWN_VARIANT])?, false)
        }
    })
}

/// Runs a `raw` step against `socket`. The outcome's exit is 0 when an
/// error reply came before the `List` reply and the `List` succeeded; its
/// output is the conversation, one message a line.
pub fn exchange(
    socket: &Path,
    kind: RawKind,
    garbage: Option<&str>,
    timeout: Duration,
) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let mut conn = Connection::open(socket)?;
    let mut log = String::new();
    conn.send(&frame_of(
        HELLO_ID,
        Request::Hello {
            version: PROTOCOL_VERSION,
        },
    )?)?;
    log.push_str("sent: Hello\n");
    let hello = conn.until_reply(HELLO_ID, deadline, &mut log)?;
    if !matches!(hello, Some(Ok(Reply::Hello { .. }))) {
        bail!("no handshake with the management agent:\n{log}");
    }
    let (bad, pause) = bad_bytes(kind, garbage)?;
    conn.send(&bad)?;
    log.push_str(&format!("sent: {kind} ({} bytes)\n", bad.len()));
    if pause {
        std::thread::sleep(TRUNCATED_PAUSE);
    }
    conn.send(&frame_of(LIST_ID, Request::List)?)?;
    log.push_str("sent: List\n");
    let before = log.len();
    let list = conn.until_reply(LIST_ID, deadline, &mut log)?;
    let error_first = log[before..].contains("error:");
    let listed = matches!(list, Some(Ok(Reply::List(_))));
    if !error_first {
        log.push_str("xtask: no error reply to the bad bytes\n");
    }
    if !listed {
        log.push_str("xtask: the List request after them did not succeed\n");
    }
    Ok(Outcome {
        exit: if error_first && listed { 0 } else { 1 },
        output: log,
    })
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

    /// Reads messages (logging each) until the reply to `id`; `None` if the
    /// deadline passed or the connection closed first.
    fn until_reply(
        &mut self,
        id: u32,
        deadline: Instant,
        log: &mut String,
    ) -> Result<Option<Result<Reply, mgmt::MgmtError>>> {
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
                        if let ServerMessage::Reply { id: got, result } = message {
                            if got == id {
                                return Ok(Some(result));
                            }
                        }
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
        } => {
            let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            format!("received: reply {id}: List [{}]", names.join(", "))
        }
        ServerMessage::Reply {
            id,
            result: Ok(reply),
        } => format!("received: reply {id}: {reply:?}"),
        ServerMessage::Reply { id, result: Err(e) } => format!("received: reply {id}: error: {e}"),
        ServerMessage::Rejected(e) => format!("received: rejected: error: {e}"),
        ServerMessage::Event(event) => format!("received: event: {event:?}"),
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
        let next = frame_of(LIST_ID, Request::List).unwrap();
        for kind in [
            RawKind::Garbage,
            RawKind::BadCrc,
            RawKind::Oversized,
            RawKind::Truncated,
        ] {
            let (mut bytes, _) = bad_bytes(kind, None).unwrap();
            bytes.extend_from_slice(&next);
            let items = decode_all(&bytes);
            assert_eq!(items.len(), 2, "{kind}: {items:?}");
            assert!(items[0].is_err(), "{kind}: {items:?}");
            let payload = items[1].clone().unwrap();
            assert_eq!(
                mgmt::decode_client_message(&payload).unwrap(),
                ClientMessage {
                    id: LIST_ID,
                    request: Request::List
                }
            );
        }
    }

    #[test]
    fn an_unknown_request_is_answered_with_its_id() {
        let (bytes, _) = bad_bytes(RawKind::UnknownRequest, None).unwrap();
        let payload = decode_all(&bytes).remove(0).unwrap();
        match mgmt::decode_client_message(&payload) {
            Err(ServerMessage::Reply { id, result: Err(_) }) => assert_eq!(id, BAD_ID),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_frame_is_reported_as_such_when_the_line_goes_idle() {
        let (bytes, pause) = bad_bytes(RawKind::Truncated, None).unwrap();
        assert!(pause);
        let items = decode_all(&bytes);
        assert!(
            matches!(items[..], [Err(mgmt::FrameError::Truncated { .. })]),
            "{items:?}"
        );
    }

    #[test]
    fn garbage_bytes_are_the_given_text() {
        assert_eq!(bad_bytes(RawKind::Garbage, Some("zz")).unwrap().0, b"zz");
    }
}
