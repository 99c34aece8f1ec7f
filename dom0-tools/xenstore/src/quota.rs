//! The per-domain limits, with xenstored's defaults
//! (`tools/xenstored/domain.c`, `quotas[]`). They bind unprivileged
//! domains only, as in xenstored; dom0's connections are exempt, except
//! for [`QUOTA_OUTSTANDING`] and [`PENDING_WATCH_EVENTS_MAX`], which bound
//! the store's own memory for every connection.

/// `quota-nb-entry-per-domain` ("nodes"): nodes a domain may own.
pub const QUOTA_NODES: usize = 1000;
/// `node-size`: largest node (header, permissions, value, child names),
/// in bytes, as xenstored's `calc_node_acc_size`.
pub const QUOTA_NODE_SIZE: usize = 2048;
/// "watches": watches per domain.
pub const QUOTA_WATCHES: usize = 128;
/// "transactions": open transactions per domain.
pub const QUOTA_TRANSACTIONS: usize = 10;
/// "outstanding": requests whose replies are not yet taken by the ring.
/// Past it the store reads no more requests from the connection (as
/// xenstored stops reading), so input stays bounded.
pub const QUOTA_OUTSTANDING: usize = 20;
/// "transaction-nodes": distinct nodes one transaction may touch.
pub const QUOTA_TRANSACTION_NODES: usize = 1024;
/// "node-permissions": entries in one node's permissions.
pub const QUOTA_NODE_PERMISSIONS: usize = 5;
/// Watch events queued for one connection and not yet taken by its ring;
/// later events are dropped (ours: xenstored bounds them by its 2.5 MB
/// per-domain memory quota instead).
pub const PENDING_WATCH_EVENTS_MAX: usize = 1024;
/// Size of xenstored's `struct node_hdr` (generation, counts), counted in
/// [`QUOTA_NODE_SIZE`].
pub const NODE_HEADER_SIZE: usize = 16;
/// Size of one `struct xs_permissions`, counted in [`QUOTA_NODE_SIZE`].
pub const PERM_ENTRY_SIZE: usize = 4;
