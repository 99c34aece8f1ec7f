//! `dom0ctl xenstore ls|read|write|rm|watch`: Xen's `xenstore-*` tools
//! over the management channel. The session's own store connection in
//! dom0 (privileged, as domain 0) takes raw `xsd_sockmsg` bytes
//! (`mgmt::Request::Xenstore`); replies come back in `Reply::Xenstore`
//! and later output (watch events) in `Event::XenstoreOutput`, one byte
//! stream cut into messages again ([`crate::xs_link`], [`MgmtPipe`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use xenstore::wire::{split_strings, MsgType};

use crate::cli::XenstoreCommand;
use crate::client::Client;
use crate::error::CliError;
use crate::xs_link::XsConn;
use crate::xs_mgmt::MgmtPipe;

/// Nodes `ls` shows at most (the store's own quotas bound a tree far
/// below this; a bound all the same).
pub const LS_MAX_NODES: usize = 100_000;

/// A store connection carried by a management session: requests one at
/// a time, each answered within the client's `--timeout`.
pub struct Connection<'a> {
    xs: XsConn<MgmtPipe<'a>>,
    timeout: Duration,
}

/// How long one wait for a watch event blocks before it looks again
/// (`watch` waits without a limit).
const EVENT_WAIT: Duration = Duration::from_secs(3600);

impl<'a> Connection<'a> {
    /// A connection over `client`'s session (opened by dom0 on first use).
    pub fn new(client: &'a mut Client) -> Self {
        let timeout = client.timeout();
        Connection {
            xs: XsConn::new(MgmtPipe::new(client)),
            timeout,
        }
    }

    /// One request; its reply's payload, or the store's error (`ENOENT`,
    /// `EACCES`, ...) as [`CliError::Store`].
    pub fn call(&mut self, msg: MsgType, payload: &[u8]) -> Result<Vec<u8>, CliError> {
        self.xs.call(msg, payload, self.timeout)
    }

    /// The next watch event: (path, token).
    pub fn next_event(&mut self) -> Result<(String, String), CliError> {
        loop {
            if let Some(event) = self.xs.next_watch_event(Instant::now() + EVENT_WAIT)? {
                return Ok(event);
            }
        }
    }
}

/// `path` with a NUL, as the store's requests carry it.
fn arg(path: &str) -> Vec<u8> {
    let mut v = path.as_bytes().to_vec();
    v.push(0);
    v
}

/// A value as Xen's `xenstore-ls` prints it: printable ASCII kept,
/// backslash and control bytes escaped (`\\`, `\t`, `\n`, `\r`, else
/// `\ooo` octal).
pub fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// The child `name` of `parent`.
fn child(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A node `ls` shows: depth below the listed path, name, value.
type Listed = (usize, String, Vec<u8>);

/// Every node under `path`, each followed by its subtree (children in
/// the store's order), as `xenstore-ls` walks it.
fn walk(conn: &mut Connection, path: &str) -> Result<Vec<(String, Listed)>, CliError> {
    let mut nodes = Vec::new();
    let mut stack: Vec<(usize, String, Option<String>)> = vec![(0, path.to_string(), None)];
    while let Some((depth, path, name)) = stack.pop() {
        let gone = |e: &CliError| matches!(e, CliError::Store(s) if s == "ENOENT");
        let is_root = name.is_none();
        if let Some(name) = name {
            // A node removed meanwhile is skipped, as xenstore-ls does.
            let value = match conn.call(MsgType::Read, &arg(&path)) {
                Err(e) if gone(&e) => continue,
                other => other?,
            };
            if nodes.len() >= LS_MAX_NODES {
                return Err(CliError::Protocol(format!(
                    "more than {LS_MAX_NODES} nodes under the path"
                )));
            }
            nodes.push((path.clone(), (depth, name, value)));
        }
        let listing = match conn.call(MsgType::Directory, &arg(&path)) {
            Err(e) if gone(&e) && !is_root => continue,
            other => other?,
        };
        let (names, _) = split_strings(&listing);
        let below = if is_root { 0 } else { depth + 1 };
        for name in names.iter().rev().filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name).into_owned();
            stack.push((below, child(&path, &name), Some(name)));
        }
    }
    Ok(nodes)
}

/// Runs a `xenstore` subcommand over `client` (`quiet`: the proxy's
/// notes are left out).
pub fn run(
    client: &mut Client,
    command: XenstoreCommand,
    out: &mut dyn Write,
    quiet: bool,
) -> Result<(), CliError> {
    let mut conn = Connection::new(client);
    let text = match command {
        XenstoreCommand::Proxy(args) => {
            drop(conn);
            return crate::proxy::listen(client, &args.listen, quiet);
        }
        XenstoreCommand::Ls { path, json } => {
            let path = path.unwrap_or_else(|| "/".into());
            let nodes = walk(&mut conn, &path)?;
            if json {
                let map: BTreeMap<String, String> = nodes
                    .into_iter()
                    .map(|(p, (_, _, v))| (p, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                let mut s = serde_json::to_string_pretty(&map).unwrap_or_default();
                s.push('\n');
                s
            } else {
                nodes
                    .iter()
                    .map(|(_, (depth, name, value))| {
                        format!("{:depth$}{name} = \"{}\"\n", "", escape(value))
                    })
                    .collect()
            }
        }
        XenstoreCommand::Read { path, json } => {
            let value = conn.call(MsgType::Read, &arg(&path))?;
            if json {
                let v = serde_json::json!({
                    "path": path,
                    "value": String::from_utf8_lossy(&value),
                });
                format!("{v}\n")
            } else {
                let mut s = String::from_utf8_lossy(&value).into_owned();
                s.push('\n');
                s
            }
        }
        XenstoreCommand::Write { path, value } => {
            let mut payload = arg(&path);
            payload.extend_from_slice(value.as_bytes());
            conn.call(MsgType::Write, &payload)?;
            String::new()
        }
        XenstoreCommand::Rm { path } => {
            conn.call(MsgType::Rm, &arg(&path))?;
            String::new()
        }
        XenstoreCommand::Watch { path, count } => {
            let mut payload = arg(&path);
            payload.extend_from_slice(b"dom0ctl\0");
            conn.call(MsgType::Watch, &payload)?;
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let (fired, _) = conn.next_event()?;
                out.write_all(format!("{fired}\n").as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| CliError::io("cannot write the output", e))?;
                seen += 1;
            }
            String::new()
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write the output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_like_xenstore_ls() {
        assert_eq!(escape(b"plain"), "plain");
        assert_eq!(escape(b"a\\b\n\x01"), "a\\\\b\\n\\001");
    }
}
