//! Watches: a connection's (path, token) pairs, and the changes that
//! fire them (xenstored's `fire_watches`).

use alloc::string::String;
use alloc::vec::Vec;

use crate::path::is_under;
use crate::perms::Perms;
use crate::DomId;

/// One registered watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The absolute (canonical) path watched.
    pub path: String,
    /// The client's token, echoed in each event.
    pub token: Vec<u8>,
    /// Bytes to strip from event paths: the watch was registered with a
    /// relative path, so its events report relative paths.
    pub prefix_len: usize,
}

impl Watch {
    /// The `XS_WATCH_EVENT` payload for a change at `path`: the path as
    /// the client named it, then the token, each NUL-terminated.
    pub fn event_payload(&self, path: &str) -> Vec<u8> {
        let shown = path.get(self.prefix_len..).unwrap_or(path);
        let mut out = Vec::with_capacity(shown.len() + self.token.len() + 2);
        out.extend_from_slice(shown.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.token);
        out.push(0);
        out
    }
}

/// Which watches a change fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Watches on exactly this path (a removed child, a special path).
    Exact,
    /// Watches on this path or any ancestor.
    Subtree,
}

/// One change to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The changed node's absolute path.
    pub path: String,
    /// Which watches it fires.
    pub kind: Match,
    /// Permissions of which any granting read lets a watcher see the
    /// event: the node's (before and after a change) and its parent's,
    /// as xenstored's `watch_permitted`.
    pub readers: Vec<Perms>,
}

impl Fired {
    /// Whether `watch` should see this change.
    pub fn matches(&self, watch: &Watch) -> bool {
        match self.kind {
            Match::Exact => watch.path == self.path,
            Match::Subtree => is_under(&self.path, &watch.path),
        }
    }

    /// Whether a connection of `domid` may see this change.
    pub fn permitted(&self, domid: DomId, privileged: bool) -> bool {
        privileged || self.readers.iter().any(|p| p.rights_for(domid, false).read)
    }
}

/// Adds `fired` to a transaction's queue: one entry per path, a subtree
/// match replacing an exact one (xenstored's `queue_watches`).
pub fn queue(events: &mut Vec<Fired>, fired: Fired) {
    match events.iter_mut().find(|e| e.path == fired.path) {
        Some(e) => {
            if fired.kind == Match::Subtree {
                e.kind = Match::Subtree;
            }
            for p in fired.readers {
                if !e.readers.contains(&p) {
                    e.readers.push(p);
                }
            }
        }
        None => events.push(fired),
    }
}
