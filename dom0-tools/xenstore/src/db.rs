//! The node database and transactions. Every node carries a generation
//! number, set from a global counter on each change; a transaction
//! remembers the generation of each node when it first touched it
//! (absent nodes too) and keeps its own copies. Commit fails with
//! `EAGAIN` if any of those nodes changed meanwhile, else applies all the
//! transaction's changes at once: xenstored's scheme
//! (`tools/xenstored/transaction.c`).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::perms::{Access, Perm, Perms, DOMID_ANY};
use crate::quota::{NODE_HEADER_SIZE, PERM_ENTRY_SIZE, QUOTA_TRANSACTION_NODES};
use crate::wire::XsError;
use crate::DomId;

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Owner and entries.
    pub perms: Perms,
    /// The value (binary; may be empty).
    pub value: Vec<u8>,
    /// Child names, in creation order (as xenstored lists them).
    pub children: Vec<String>,
    /// Generation of the last change (0 for nodes set up at start).
    pub generation: u64,
}

impl Node {
    /// An empty node with `perms`.
    pub fn new(perms: Perms) -> Self {
        Self {
            perms,
            value: Vec::new(),
            children: Vec::new(),
            generation: 0,
        }
    }

    /// Size counted against `node-size` (xenstored's `calc_node_acc_size`).
    pub fn acc_size(&self) -> usize {
        let children: usize = self.children.iter().map(|c| c.len() + 1).sum();
        NODE_HEADER_SIZE + PERM_ENTRY_SIZE * self.perms.len() + self.value.len() + children
    }
}

/// The committed nodes, keyed by absolute path (special `@` nodes too).
#[derive(Debug)]
pub struct Db {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    /// Nodes owned per domain, for `QUOTA_NODES`.
    owned: BTreeMap<DomId, usize>,
}

impl Db {
    /// The initial tree of xenstored's `setup_structure`: `/`, `/tool`,
    /// `/tool/xenstored` owned by dom0 with no access for others, plus
    /// `/local/domain` (dom0 only; the toolstack grants per domain) and
    /// the special nodes (`@releaseDomain` readable by all).
    pub fn new() -> Self {
        let mut db = Self {
            nodes: BTreeMap::new(),
            generation: 0,
            owned: BTreeMap::new(),
        };
        let dom0 = Perms::owned_by(0, Access::None);
        for path in ["/", "/tool", "/tool/xenstored", "/local", "/local/domain"] {
            let mut node = Node::new(dom0.clone());
            node.children = match path {
                "/" => alloc::vec!["tool".into(), "local".into()],
                "/tool" => alloc::vec!["xenstored".into()],
                "/local" => alloc::vec!["domain".into()],
                _ => Vec::new(),
            };
            db.set(path, Some(node));
        }
        let everyone_reads = Perms::from_entries(alloc::vec![
            Perm {
                domid: 0,
                access: Access::None
            },
            Perm {
                domid: DOMID_ANY,
                access: Access::Read
            },
        ])
        .unwrap_or(dom0.clone());
        db.set(crate::path::RELEASE_DOMAIN, Some(Node::new(everyone_reads)));
        db.set(crate::path::INTRODUCE_DOMAIN, Some(Node::new(dom0)));
        db
    }

    /// The committed node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Nodes owned by `domid`.
    pub fn owned(&self, domid: DomId) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    /// All committed paths with their nodes.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Stores (or with `None` removes) a node, stamping a new generation.
    pub fn set(&mut self, path: &str, node: Option<Node>) {
        let old = match node {
            Some(mut node) => {
                self.generation += 1;
                node.generation = self.generation;
                self.count(node.perms.owner(), 1);
                self.nodes.insert(String::from(path), node)
            }
            None => self.nodes.remove(path),
        };
        if let Some(old) = old {
            self.count(old.perms.owner(), -1);
        }
    }

    fn count(&mut self, owner: DomId, delta: isize) {
        let n = self.owned.entry(owner).or_insert(0);
        *n = n.saturating_add_signed(delta);
    }
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

/// A node as a transaction first saw it, and as it sees it now.
#[derive(Debug)]
struct Accessed {
    /// Committed generation at first access (`None`: absent then).
    generation: Option<u64>,
    /// The transaction's copy (`None`: absent for it).
    node: Option<Node>,
    modified: bool,
}

/// An open transaction of one connection.
#[derive(Debug, Default)]
pub struct Transaction {
    accessed: BTreeMap<String, Accessed>,
    /// Set when a request hit `QUOTA_TRANSACTION_NODES`, possibly midway:
    /// the commit then fails with this error, so a half-done request never
    /// commits (xenstored's `fail_transaction`).
    failed: Option<XsError>,
    /// Watch events to fire when it commits, one per path.
    pub(crate) events: Vec<crate::watch::Fired>,
}

impl Transaction {
    /// Net change in nodes owned by `domid` if this transaction commits.
    fn owned_delta(&self, db: &Db, domid: DomId) -> isize {
        let owns = |n: Option<&Node>| isize::from(n.is_some_and(|n| n.perms.owner() == domid));
        self.accessed
            .iter()
            .filter(|(_, a)| a.modified)
            .map(|(path, a)| owns(a.node.as_ref()) - owns(db.get(path)))
            .sum()
    }

    /// Checks the transaction against `db` and applies it: `EAGAIN` if a
    /// node it touched changed since; `ENOSPC` if it would leave
    /// `quota_domid` (an unprivileged committer) over `QUOTA_NODES`.
    pub fn commit(
        self,
        db: &mut Db,
        quota_domid: Option<DomId>,
    ) -> Result<Vec<crate::watch::Fired>, XsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let conflict = self
            .accessed
            .iter()
            .any(|(path, a)| db.get(path).map(|n| n.generation) != a.generation);
        if conflict {
            return Err(XsError::Eagain);
        }
        if let Some(domid) = quota_domid {
            let after = db
                .owned(domid)
                .saturating_add_signed(self.owned_delta(db, domid));
            if self.owned_delta(db, domid) > 0 && after > crate::quota::QUOTA_NODES {
                return Err(XsError::Enospc);
            }
        }
        for (path, a) in self.accessed {
            if a.modified {
                db.set(&path, a.node);
            }
        }
        Ok(self.events)
    }
}

/// The store as one request sees it: committed nodes, through the
/// request's transaction if it has one.
pub struct View<'a> {
    /// Committed nodes.
    pub db: &'a mut Db,
    /// The request's transaction.
    pub tx: Option<&'a mut Transaction>,
    /// Whether the caller is exempt from quotas.
    pub privileged: bool,
}

impl View<'_> {
    /// The node at `path` as the request sees it.
    pub fn get(&mut self, path: &str) -> Result<Option<Node>, XsError> {
        match self.tx.as_deref_mut() {
            None => Ok(self.db.get(path).cloned()),
            Some(tx) => Ok(access(tx, self.db, path, self.privileged)?.node.clone()),
        }
    }

    /// Replaces (or with `None` removes) the node at `path`.
    pub fn set(&mut self, path: &str, node: Option<Node>) -> Result<(), XsError> {
        match self.tx.as_deref_mut() {
            None => self.db.set(path, node),
            Some(tx) => {
                let a = access(tx, self.db, path, self.privileged)?;
                a.node = node;
                a.modified = true;
            }
        }
        Ok(())
    }

    /// Nodes `domid` would own, counting this transaction's changes.
    pub fn owned(&self, domid: DomId) -> usize {
        let base = self.db.owned(domid);
        match self.tx.as_deref() {
            None => base,
            Some(tx) => base.saturating_add_signed(tx.owned_delta(self.db, domid)),
        }
    }
}

/// The transaction's record of `path`, made on first access: `ENOSPC`
/// past `QUOTA_TRANSACTION_NODES` for unprivileged callers.
fn access<'t>(
    tx: &'t mut Transaction,
    db: &Db,
    path: &str,
    privileged: bool,
) -> Result<&'t mut Accessed, XsError> {
    if !tx.accessed.contains_key(path) {
        if !privileged && tx.accessed.len() >= QUOTA_TRANSACTION_NODES {
            tx.failed = Some(XsError::Enospc);
            return Err(XsError::Enospc);
        }
        let node = db.get(path).cloned();
        let generation = node.as_ref().map(|n| n.generation);
        tx.accessed.insert(
            String::from(path),
            Accessed {
                generation,
                node,
                modified: false,
            },
        );
    }
    tx.accessed.get_mut(path).ok_or(XsError::Eio)
}
