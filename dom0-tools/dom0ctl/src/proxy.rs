//! `dom0ctl xenstore proxy`: xenstored's UNIX socket protocol on a host
//! socket, so Xen's own tools (`XENSTORED_PATH=PATH xenstore-ls`) reach
//! the store. Each message a tool sends goes whole over a [`StorePipe`]
//! (dom0's privileged local connection, carried by the management
//! channel); what the store answers goes back as it comes.
//!
//! One tool is served at a time (the pipe is one store connection).
//! When a tool hangs up, `XS_RESET_WATCHES` drops the watches and
//! transactions it left, and its late replies are discarded, so the next
//! tool starts clean, as a fresh xenstored connection would.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use xenstore::wire::{encode_message, MsgType, XENSTORE_PAYLOAD_MAX};

use crate::client::Client;
use crate::error::CliError;
use crate::xs_link::{Framer, StorePipe};
use crate::xs_mgmt::MgmtPipe;

/// How long one look at the tool's socket may block while no reply is
/// owed to it (so that watch events still flow).
const CLIENT_POLL: Duration = Duration::from_millis(20);
/// How long one look at the store may block while no reply is owed (for
/// watch events; not zero, so that the pipe reads what has arrived).
const IDLE_STORE_POLL: Duration = Duration::from_millis(10);
/// How long one look at the store may block while a reply is owed.
const STORE_POLL: Duration = Duration::from_millis(200);
/// The `req_id` of the proxy's own `XS_RESET_WATCHES` between tools.
const RESET_REQ_ID: u32 = 0x7072_7879;

/// `xenstore proxy`: binds `listen` (replacing a stale socket file) and
/// relays tools to the session's store connection until interrupted.
pub fn listen(client: &mut Client, listen: &Path, quiet: bool) -> Result<(), CliError> {
    if fs::symlink_metadata(listen).is_ok_and(|m| m.file_type().is_socket()) {
        fs::remove_file(listen)
            .map_err(|e| CliError::io(&format!("cannot replace {}", listen.display()), e))?;
    }
    let listener = UnixListener::bind(listen)
        .map_err(|e| CliError::io(&format!("cannot listen on {}", listen.display()), e))?;
    if !quiet {
        eprintln!(
            "dom0ctl: serving the store on {} (XENSTORED_PATH={0}); Ctrl-C stops",
            listen.display()
        );
    }
    serve(&listener, &mut MgmtPipe::new(client), |note| {
        if quiet {
            return;
        }
        match note {
            ClientNote::Connected => eprintln!("dom0ctl: proxy: a tool connected"),
            ClientNote::Left(None) => eprintln!("dom0ctl: proxy: the tool hung up"),
            ClientNote::Left(Some(why)) => eprintln!("dom0ctl: proxy: dropped the tool: {why}"),
        }
    })
}

/// Serves tools connecting to `listener`, one after another, until
/// accepting fails. `on_client` is told of each tool that connects and
/// leaves (for the operator's notes).
pub fn serve(
    listener: &UnixListener,
    pipe: &mut impl StorePipe,
    mut on_client: impl FnMut(ClientNote),
) -> Result<(), CliError> {
    loop {
        let (stream, _) = listener
            .accept()
            .map_err(|e| CliError::io("cannot accept on the proxy socket", e))?;
        on_client(ClientNote::Connected);
        let outcome = serve_client(stream, pipe)?;
        reset(pipe)?;
        on_client(ClientNote::Left(outcome));
    }
}

/// What the operator is told about a tool.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientNote {
    /// A tool connected.
    Connected,
    /// It left: hung up, or dropped for the reason given.
    Left(Option<String>),
}

/// Relays one tool's messages until it hangs up (`None`) or breaks the
/// protocol (`Some(why)`: the connection is dropped, as xenstored does).
fn serve_client(
    mut stream: UnixStream,
    pipe: &mut impl StorePipe,
) -> Result<Option<String>, CliError> {
    let mut from_tool = Framer::default();
    let mut from_store = Framer::default();
    let mut owed = 0usize;
    let mut buf = vec![0u8; XENSTORE_PAYLOAD_MAX];
    loop {
        let wait = if owed > 0 {
            STORE_POLL
        } else {
            IDLE_STORE_POLL
        };
        for m in drain(&mut from_store, &pipe.recv(wait)?)? {
            if m.header.msg_type != MsgType::WatchEvent as u32 {
                owed = owed.saturating_sub(1);
            }
            if stream.write_all(&m.to_bytes()).is_err() {
                return Ok(None);
            }
        }
        let poll = if owed > 0 {
            Some(Duration::from_millis(1))
        } else {
            Some(CLIENT_POLL)
        };
        stream
            .set_read_timeout(poll)
            .map_err(|e| CliError::io("cannot poll the proxy client", e))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        from_tool.push(&buf[..n]);
        loop {
            match from_tool.next_message() {
                Ok(Some(m)) => {
                    pipe.send(&m.to_bytes())?;
                    owed += 1;
                }
                Ok(None) => break,
                Err(e) => return Ok(Some(e.to_string())),
            }
        }
    }
}

/// The whole messages among `bytes` (and what came before them).
fn drain(framer: &mut Framer, bytes: &[u8]) -> Result<Vec<crate::xs_link::Message>, CliError> {
    framer.push(bytes);
    let mut out = Vec::new();
    while let Some(m) = framer
        .next_message()
        .map_err(|e| CliError::Protocol(format!("from the store: {e}")))?
    {
        out.push(m);
    }
    Ok(out)
}

/// Drops the watches and transactions a tool left and discards
/// everything the store still had for it, up to the reset's reply.
fn reset(pipe: &mut impl StorePipe) -> Result<(), CliError> {
    pipe.send(&encode_message(MsgType::ResetWatches, RESET_REQ_ID, 0, b""))?;
    let mut framer = Framer::default();
    // Bounded: each late reply answers a request the tool sent, and the
    // store answers the reset after them.
    for _ in 0..RESET_WAIT_SLICES {
        for m in drain(&mut framer, &pipe.recv(STORE_POLL)?)? {
            if m.header.req_id == RESET_REQ_ID
                && matches!(
                    MsgType::from_raw(m.header.msg_type),
                    Some(MsgType::ResetWatches | MsgType::Error)
                )
            {
                return Ok(());
            }
        }
    }
    Err(CliError::Protocol(
        "the store did not answer XS_RESET_WATCHES".into(),
    ))
}

/// How many [`STORE_POLL`]s the reset's reply may take (a minute).
const RESET_WAIT_SLICES: u32 = 300;
