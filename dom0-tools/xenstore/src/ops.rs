//! The node operations (read, write, mkdir, rm, directory, permissions)
//! on a [`View`], with xenstored's permission checks and error choices.
//! Each checks everything before it changes anything, so a failed
//! request has no effect.

use alloc::string::String;
use alloc::vec::Vec;

use crate::db::{Node, View};
use crate::path::{basename, join, parent};
use crate::perms::{Perms, Rights};
use crate::quota::{QUOTA_NODES, QUOTA_NODE_PERMISSIONS, QUOTA_NODE_SIZE};
use crate::watch::{Fired, Match};
use crate::wire::{XsError, XENSTORE_PAYLOAD_MAX};
use crate::DomId;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's domain.
    pub domid: DomId,
    /// dom0's own connections: all rights, no quotas.
    pub privileged: bool,
}

impl Caller {
    fn rights(&self, perms: &Perms) -> Rights {
        perms.rights_for(self.domid, self.privileged)
    }
}

/// The rights a request needs.
#[derive(Clone, Copy)]
enum Need {
    Read,
    Write,
    Owner,
}

impl Need {
    fn granted(self, r: Rights) -> bool {
        match self {
            Self::Read => r.read,
            Self::Write => r.write,
            Self::Owner => r.write && r.owner,
        }
    }

    /// Whether an ancestor of a missing node grants any part of the need
    /// (xenstored's `parent_perm & perm`), so `ENOENT` may be told.
    fn any_granted(self, r: Rights) -> bool {
        match self {
            Self::Read => r.read,
            Self::Write | Self::Owner => r.write || r.owner,
        }
    }
}

/// The node at `path` if `caller` has `need` on it. A missing node gives
/// `ENOENT` only if its nearest existing ancestor grants `need`, else
/// `EACCES`, so that nothing leaks about unreadable subtrees
/// (xenstored's `errno_from_parents`).
fn get_checked(
    view: &mut View,
    caller: Caller,
    path: &str,
    need: Need,
) -> Result<Option<Node>, XsError> {
    if let Some(node) = view.get(path)? {
        return if need.granted(caller.rights(&node.perms)) {
            Ok(Some(node))
        } else {
            Err(XsError::Eacces)
        };
    }
    let mut up = path;
    while up != "/" && !up.starts_with('@') {
        up = parent(up);
        if let Some(node) = view.get(up)? {
            return if need.any_granted(caller.rights(&node.perms)) {
                Ok(None)
            } else {
                Err(XsError::Eacces)
            };
        }
    }
    Err(XsError::Enoent)
}

fn existing(view: &mut View, caller: Caller, path: &str, need: Need) -> Result<Node, XsError> {
    get_checked(view, caller, path, need)?.ok_or(XsError::Enoent)
}

/// `XS_READ`: the value.
pub fn read(view: &mut View, caller: Caller, path: &str) -> Result<Vec<u8>, XsError> {
    Ok(existing(view, caller, path, Need::Read)?.value)
}

fn children_bytes(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    for c in &node.children {
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    out
}

/// `XS_DIRECTORY`: child names, each NUL-terminated.
pub fn directory(view: &mut View, caller: Caller, path: &str) -> Result<Vec<u8>, XsError> {
    Ok(children_bytes(&existing(view, caller, path, Need::Read)?))
}

/// `XS_DIRECTORY_PART`: the node's generation, then as many whole child
/// names from byte `offset` of the child list as fit, with an extra NUL
/// when the list ends (xenstored's `send_directory_part`).
pub fn directory_part(
    view: &mut View,
    caller: Caller,
    path: &str,
    offset: usize,
) -> Result<Vec<u8>, XsError> {
    let node = existing(view, caller, path, Need::Read)?;
    let all = children_bytes(&node);
    let mut out = Vec::from(alloc::format!("{}", node.generation).as_bytes());
    out.push(0);
    let Some(rest) = all.get(offset..).filter(|r| !r.is_empty()) else {
        out.push(0);
        return Ok(out);
    };
    let room = XENSTORE_PAYLOAD_MAX - out.len() - 1;
    let mut len = 0;
    for name in rest.split_inclusive(|b| *b == 0) {
        if len + name.len() > room {
            break;
        }
        len += name.len();
    }
    out.extend_from_slice(&rest[..len]);
    if len == rest.len() {
        out.push(0);
    }
    Ok(out)
}

/// `XS_GET_PERMS`.
pub fn get_perms(view: &mut View, caller: Caller, path: &str) -> Result<Vec<u8>, XsError> {
    Ok(existing(view, caller, path, Need::Read)?.perms.to_payload())
}

fn check_size(caller: Caller, node: &Node) -> Result<(), XsError> {
    if !caller.privileged && node.acc_size() > QUOTA_NODE_SIZE {
        return Err(XsError::Enospc);
    }
    Ok(())
}

/// Creates `path` and any missing ancestors, each inheriting its
/// parent's permissions, owned by the caller if unprivileged (xenstored's
/// `construct_node`). The caller has checked write access on the nearest
/// existing ancestor. Quotas are checked before anything is written.
fn create(view: &mut View, caller: Caller, path: &str, value: Vec<u8>) -> Result<Fired, XsError> {
    // `/` always exists, so this walk ends; its length is bounded by the
    // path length limit.
    let mut missing = alloc::vec![String::from(path)];
    let mut top_path = String::from(parent(path));
    let mut top = loop {
        match view.get(&top_path)? {
            Some(node) => break node,
            None => {
                let up = String::from(parent(&top_path));
                missing.push(core::mem::replace(&mut top_path, up));
            }
        }
    };
    if !caller.privileged && view.owned(caller.domid) + missing.len() > QUOTA_NODES {
        return Err(XsError::Enospc);
    }
    missing.reverse();
    top.children.push(String::from(basename(&missing[0])));
    let mut chain: Vec<(String, Node)> = Vec::with_capacity(missing.len());
    let mut inherited = top.perms.clone();
    for (i, p) in missing.iter().enumerate() {
        let perms = if caller.privileged {
            inherited.clone()
        } else {
            inherited.with_owner(caller.domid)
        };
        let mut node = Node::new(perms.clone());
        if let Some(next) = missing.get(i + 1) {
            node.children.push(String::from(basename(next)));
        }
        chain.push((p.clone(), node));
        inherited = perms;
    }
    let parent_perms = match chain.len() {
        0 | 1 => top.perms.clone(),
        n => chain[n - 2].1.perms.clone(),
    };
    let (_, leaf) = chain.last_mut().ok_or(XsError::Eio)?;
    leaf.value = value;
    let leaf_perms = leaf.perms.clone();
    check_size(caller, &top)?;
    for (_, n) in &chain {
        check_size(caller, n)?;
    }
    view.set(&top_path, Some(top))?;
    for (p, n) in chain {
        view.set(&p, Some(n))?;
    }
    Ok(Fired {
        path: String::from(path),
        kind: Match::Subtree,
        readers: alloc::vec![leaf_perms, parent_perms],
    })
}

/// `XS_WRITE`: sets the value, creating the node if needed.
pub fn write(view: &mut View, caller: Caller, path: &str, value: &[u8]) -> Result<Fired, XsError> {
    match get_checked(view, caller, path, Need::Write)? {
        None => create(view, caller, path, Vec::from(value)),
        Some(mut node) => {
            node.value = Vec::from(value);
            check_size(caller, &node)?;
            let perms = node.perms.clone();
            view.set(path, Some(node))?;
            Ok(Fired {
                path: String::from(path),
                kind: Match::Subtree,
                readers: alloc::vec![perms],
            })
        }
    }
}

/// `XS_MKDIR`: creates the node if missing (no event if it existed).
pub fn mkdir(view: &mut View, caller: Caller, path: &str) -> Result<Option<Fired>, XsError> {
    match get_checked(view, caller, path, Need::Write)? {
        None => create(view, caller, path, Vec::new()).map(Some),
        Some(_) => Ok(None),
    }
}

/// `XS_RM`: removes the node and its subtree. Removing a missing node
/// whose parent exists succeeds; `/` cannot be removed (`EINVAL`).
pub fn rm(view: &mut View, caller: Caller, path: &str) -> Result<Vec<Fired>, XsError> {
    let node = match get_checked(view, caller, path, Need::Write) {
        Ok(Some(node)) => node,
        Ok(None) | Err(XsError::Enoent) => {
            return if view.get(parent(path))?.is_some() {
                Ok(Vec::new())
            } else {
                Err(XsError::Enoent)
            };
        }
        Err(e) => return Err(e),
    };
    if path == "/" || path.starts_with('@') {
        return Err(XsError::Einval);
    }
    let mut up = view.get(parent(path))?.ok_or(XsError::Eio)?;
    let mut fired = remove_subtree(view, path, node, &up.perms)?;
    if let Some(root) = fired.last_mut() {
        root.kind = Match::Subtree;
    }
    up.children.retain(|c| c != basename(path));
    view.set(parent(path), Some(up))?;
    Ok(fired)
}

/// Removes `root` and everything below it, children before parents,
/// recording one exact-match event per removed node (xenstored's
/// `delnode_sub`). An explicit stack, as a guest may nest nodes ~1500
/// deep; every node is read before any is removed.
fn remove_subtree(
    view: &mut View,
    root: &str,
    node: Node,
    parent_perms: &Perms,
) -> Result<Vec<Fired>, XsError> {
    let mut preorder: Vec<(String, Node, Perms)> = Vec::new();
    let mut stack = alloc::vec![(String::from(root), node, parent_perms.clone())];
    while let Some((path, node, up)) = stack.pop() {
        for child in &node.children {
            let child_path = join(&path, child);
            if let Some(c) = view.get(&child_path)? {
                stack.push((child_path, c, node.perms.clone()));
            }
        }
        preorder.push((path, node, up));
    }
    let mut fired = Vec::with_capacity(preorder.len());
    for (path, node, up) in preorder.into_iter().rev() {
        view.set(&path, None)?;
        fired.push(Fired {
            path,
            kind: Match::Exact,
            readers: alloc::vec![node.perms, up],
        });
    }
    Ok(fired)
}

/// `XS_SET_PERMS`: the caller must own the node (or be privileged); an
/// unprivileged caller cannot change the owner (`EPERM`) nor set more than
/// [`QUOTA_NODE_PERMISSIONS`] entries (`ENOSPC`).
pub fn set_perms(
    view: &mut View,
    caller: Caller,
    path: &str,
    perms: Perms,
) -> Result<Fired, XsError> {
    if !caller.privileged && perms.len() > QUOTA_NODE_PERMISSIONS {
        return Err(XsError::Enospc);
    }
    let mut node = existing(view, caller, path, Need::Owner)?;
    if !caller.privileged && perms.owner() != node.perms.owner() {
        return Err(XsError::Eperm);
    }
    let old = core::mem::replace(&mut node.perms, perms.clone());
    check_size(caller, &node)?;
    view.set(path, Some(node))?;
    Ok(Fired {
        path: String::from(path),
        kind: Match::Subtree,
        readers: alloc::vec![old, perms],
    })
}
