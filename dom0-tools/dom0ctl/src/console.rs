//! `console`: a domain's output so far, then live output, with input
//! forwarded until Ctrl-] (as `xl console`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;

use mgmt::{DomainRef, Event, Reply, Request, ServerMessage, MAX_CONSOLE_DATA};
use nix::sys::termios::{self, OutputFlags, SetArg, Termios};

use crate::client::{unexpected, Client, Sender, FORWARDER_FIRST_ID};
use crate::error::CliError;

/// The byte that detaches: Ctrl-] (0x1d), as `xl console` and telnet.
pub const ESCAPE: u8 = 0x1d;

/// Where console input comes from.
pub struct Input {
    /// The bytes typed.
    pub reader: Box<dyn Read + Send>,
    /// Whether `reader` is this process's stdin on a terminal: then the
    /// terminal goes to raw mode and keys are forwarded as typed; else
    /// input is forwarded line by line.
    pub terminal: bool,
}

impl Input {
    /// This process's stdin.
    pub fn stdin() -> Self {
        use std::io::IsTerminal;
        Self {
            terminal: io::stdin().is_terminal(),
            reader: Box::new(io::stdin()),
        }
    }
}

/// Attaches to `domain`'s console and copies it to `out`: the history,
/// then (if `follow`) live output until Ctrl-] or the domain goes away.
pub fn attach(
    client: &mut Client,
    domain: DomainRef,
    follow: bool,
    input: Input,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (domid, name, history) = match client.call(Request::ConsoleAttach { domain, follow })? {
        Reply::ConsoleAttached {
            domid,
            name,
            history,
        } => (domid, name, history),
        other => return Err(unexpected(&other)),
    };
    if follow {
        eprintln!("Connected to domain '{name}' (domid {domid}). Escape character is '^]'.");
    }
    write_out(out, &history)?;
    if !follow {
        return Ok(());
    }
    let _raw = if input.terminal {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let detach_id = Arc::new(AtomicU32::new(0));
    let sender = client.sender().split_off(FORWARDER_FIRST_ID)?;
    let forwarder_detach = Arc::clone(&detach_id);
    thread::spawn(move || forward_input(input, sender, &forwarder_detach));
    loop {
        match client.next_message()? {
            ServerMessage::Event {
                event: Event::ConsoleOutput { data, .. },
                ..
            } => write_out(out, &data)?,
            ServerMessage::Event {
                event: Event::ConsoleClosed { reason, .. },
                ..
            } => {
                eprintln!("\r\n[console of domain '{name}' closed: {reason}]");
                return Ok(());
            }
            ServerMessage::Reply { id, .. } if id == detach_id.load(Ordering::Acquire) => {
                eprintln!("\r\n[detached from domain '{name}']");
                return Ok(());
            }
            ServerMessage::Reply { result: Err(e), .. } => {
                eprintln!("\r\n[console input refused: {e}]")
            }
            // Done replies to input; `next_message` passes no other. A
            // console session opens no store connection.
            ServerMessage::Event {
                event: Event::XenstoreOutput { .. },
                ..
            }
            | ServerMessage::Reply { .. }
            | ServerMessage::Rejected(_)
            | ServerMessage::Welcome { .. }
            | ServerMessage::Dropped { .. }
            | ServerMessage::Challenge { .. }
            | ServerMessage::Authenticated { .. } => {}
        }
    }
}

fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<(), CliError> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write the console output", e))
}

/// Forwards input until Ctrl-] (then asks to detach, noting the request id
/// in `detach_id`), end of input or a broken connection.
fn forward_input(input: Input, mut sender: Sender, detach_id: &AtomicU32) {
    let mut reader = BufReader::new(input.reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = if input.terminal {
            reader.fill_buf().map(|b| {
                buf.extend_from_slice(b);
                b.len()
            })
        } else {
            reader.read_until(b'\n', &mut buf)
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) if input.terminal => reader.consume(n),
            Ok(_) => {}
        }
        let escape = buf.iter().position(|&b| b == ESCAPE);
        let typed = &buf[..escape.unwrap_or(buf.len())];
        for data in typed.chunks(MAX_CONSOLE_DATA) {
            if sender
                .send(Request::ConsoleInput {
                    data: data.to_vec(),
                })
                .is_err()
            {
                return;
            }
        }
        if escape.is_some() {
            detach_id.store(sender.next_id(), Ordering::Release);
            let _ = sender.send(Request::ConsoleDetach);
            return;
        }
    }
}

/// The terminal in raw mode (keys as typed, no echo, no signals from
/// Ctrl-C) while alive; output still turns `\n` into `\r\n`.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Self, CliError> {
        let failed =
            |e: nix::Error| CliError::Protocol(format!("cannot put the terminal in raw mode: {e}"));
        let saved = termios::tcgetattr(io::stdin()).map_err(failed)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        raw.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
        termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &raw).map_err(failed)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Best effort: the process is leaving the console either way.
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}
