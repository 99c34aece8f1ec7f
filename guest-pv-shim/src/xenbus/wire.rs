//! The client's view of Xen's store wire protocol
//! (`xen/include/public/io/xs_wire.h`): the operations a guest sends, the
//! `xsd_errors` strings it may get back, the `xsd_sockmsg` header and the
//! size limits. All fields are little-endian `u32` on x86.
//!
//! dom0's `xenstore` crate has the server's copy of these; it needs
//! `alloc`, which guests linking the shim do not have, so the shim keeps
//! this allocation-free copy and the host tests check both agree.

use core::fmt;

/// `XENSTORE_PAYLOAD_MAX`: the largest payload after a header, bytes.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: the longest absolute path, bytes.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Size of `struct xsd_sockmsg`, bytes.
pub const HEADER_SIZE: usize = 16;

/// `enum xsd_sockmsg_type`: the operations, with Xen's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum XsOp {
    /// `XS_DIRECTORY`: a node's children, NUL-separated.
    Directory = 1,
    /// `XS_READ`: a node's value.
    Read = 2,
    /// `XS_GET_PERMS`: a node's permissions.
    GetPerms = 3,
    /// `XS_WATCH`: path, token.
    Watch = 4,
    /// `XS_UNWATCH`: path, token.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: replies with the transaction id.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: "T" commits, "F" aborts.
    TransactionEnd = 7,
    /// `XS_GET_DOMAIN_PATH`: domid → `/local/domain/<domid>`.
    GetDomainPath = 10,
    /// `XS_WRITE`: path, value.
    Write = 11,
    /// `XS_MKDIR`: path.
    Mkdir = 12,
    /// `XS_RM`: path (and its subtree).
    Rm = 13,
    /// `XS_SET_PERMS`: path, then permission strings.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: store → client, path and token.
    WatchEvent = 15,
    /// `XS_ERROR`: store → client, an `xsd_errors` string.
    Error = 16,
    /// `XS_RESET_WATCHES`: drops the connection's watches and transactions.
    ResetWatches = 21,
}

/// `xsd_errors`: what the store answers in an `XS_ERROR` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsError {
    /// Invalid argument.
    Einval,
    /// Permission denied.
    Eacces,
    /// Already exists.
    Eexist,
    /// Is a directory.
    Eisdir,
    /// No such node, watch or transaction.
    Enoent,
    /// Out of memory.
    Enomem,
    /// A quota was exceeded.
    Enospc,
    /// I/O error.
    Eio,
    /// Directory not empty.
    Enotempty,
    /// Unknown operation.
    Enosys,
    /// Read-only.
    Erofs,
    /// Busy.
    Ebusy,
    /// The transaction conflicted with another change: retry it.
    Eagain,
    /// Already connected.
    Eisconn,
    /// A reply would not fit in a payload.
    E2big,
    /// Operation not permitted.
    Eperm,
}

/// Every [`XsError`] with its `xsd_errors` string.
const ERRORS: [(XsError, &str); 16] = [
    (XsError::Einval, "EINVAL"),
    (XsError::Eacces, "EACCES"),
    (XsError::Eexist, "EEXIST"),
    (XsError::Eisdir, "EISDIR"),
    (XsError::Enoent, "ENOENT"),
    (XsError::Enomem, "ENOMEM"),
    (XsError::Enospc, "ENOSPC"),
    (XsError::Eio, "EIO"),
    (XsError::Enotempty, "ENOTEMPTY"),
    (XsError::Enosys, "ENOSYS"),
    (XsError::Erofs, "EROFS"),
    (XsError::Ebusy, "EBUSY"),
    (XsError::Eagain, "EAGAIN"),
    (XsError::Eisconn, "EISCONN"),
    (XsError::E2big, "E2BIG"),
    (XsError::Eperm, "EPERM"),
];

impl XsError {
    /// Its `xsd_errors` string ("ENOENT", ...).
    pub fn as_str(self) -> &'static str {
        ERRORS
            .iter()
            .find(|(e, _)| *e == self)
            .map_or("EINVAL", |(_, s)| s)
    }

    /// The error an `XS_ERROR` payload names (its string, NUL optional);
    /// `None` for a string not in `xsd_errors`.
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        let name = payload.strip_suffix(&[0]).unwrap_or(payload);
        ERRORS
            .iter()
            .find(|(_, s)| s.as_bytes() == name)
            .map(|(e, _)| *e)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `struct xsd_sockmsg`: the header in front of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `type`: an [`XsOp`] number (raw: hostile tests send unknown ones).
    pub msg_type: u32,
    /// `req_id`: chosen by the client, echoed in the reply.
    pub req_id: u32,
    /// `tx_id`: the transaction, 0 for none.
    pub tx_id: u32,
    /// `len`: payload bytes after the header.
    pub len: u32,
}

impl Header {
    /// Decodes the 16 header bytes.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[i..i + 4]);
            u32::from_le_bytes(w)
        };
        Self {
            msg_type: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    /// Encodes the header as 16 little-endian bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let words = [self.msg_type, self.req_id, self.tx_id, self.len];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}
