//! The store service: dom0 owns the one [`xenstore::Store`] and connects
//! it to its clients. Local (privileged, as domain 0) connections are
//! dom0's own: the toolstack's and one per management session that asks
//! (`mgmt::Request::Xenstore`); each takes raw `xsd_sockmsg` bytes and
//! gives back replies and `XS_WATCH_EVENT`s as bytes.

use alloc::vec::Vec;

use xenstore::{ConnError, ConnId, Store};

/// Largest output one [`StoreService::take_output`] returns, bytes (the
/// rest waits for the next call): what one management message carries.
pub const TAKE_OUTPUT_MAX: usize = mgmt::MAX_XENSTORE_DATA;

/// Local connections open at once, at most (sessions come and go one at a
/// time; the toolstack holds one).
pub const LOCAL_CONNECTIONS_MAX: usize = 16;

/// dom0's store and its connections.
pub struct StoreService {
    store: Store,
    /// Local connection ids in use.
    locals: Vec<u32>,
    /// The next local id to hand out (ids are not reused soon, so a stale
    /// id from an ended session finds nothing).
    next_local: u32,
}

/// Why a local request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalError {
    /// [`LOCAL_CONNECTIONS_MAX`] connections are open.
    TooManyConnections,
    /// The connection broke the protocol (a header announcing more than
    /// `XENSTORE_PAYLOAD_MAX`) and was dropped, or never existed.
    Dropped(ConnError),
}

impl Default for StoreService {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreService {
    /// A store with xenstored's initial tree and no connections.
    pub fn new() -> Self {
        StoreService {
            store: Store::new(),
            locals: Vec::new(),
            next_local: 1,
        }
    }

    /// Opens a new privileged local connection.
    pub fn connect_local(&mut self) -> Result<ConnId, LocalError> {
        if self.locals.len() >= LOCAL_CONNECTIONS_MAX {
            return Err(LocalError::TooManyConnections);
        }
        let id = self.next_local;
        self.next_local = self.next_local.wrapping_add(1).max(1);
        self.store.connect_local(id);
        self.locals.push(id);
        Ok(ConnId::Local(id))
    }

    /// Feeds `bytes` (one or more whole or partial `xsd_sockmsg`s) to
    /// local connection `conn`. A connection that breaks the protocol is
    /// dropped (its id then answers [`ConnError::NoConnection`]). Bytes
    /// the store could not take yet (too many replies waiting) are
    /// refused with nothing lost: the caller sends them again after
    /// [`Self::take_output`]; returns how many were taken.
    pub fn request(&mut self, conn: ConnId, bytes: &[u8]) -> Result<usize, LocalError> {
        let result = self.store.feed(conn, bytes);
        if let (Err(_), ConnId::Local(id)) = (result, conn) {
            self.locals.retain(|l| *l != id);
        }
        result.map_err(LocalError::Dropped)
    }

    /// Takes up to [`TAKE_OUTPUT_MAX`] bytes of `conn`'s replies and
    /// watch events.
    pub fn take_output(&mut self, conn: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        if self.store.has_output(conn) {
            out.resize(TAKE_OUTPUT_MAX, 0);
            let n = self.store.drain_output(conn, &mut out);
            out.truncate(n);
        }
        out
    }

    /// Whether `conn` has output waiting.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.store.has_output(conn)
    }

    /// Closes local connection `conn`: its watches and open transactions
    /// go.
    pub fn disconnect_local(&mut self, conn: ConnId) {
        if let ConnId::Local(id) = conn {
            self.locals.retain(|l| *l != id);
            self.store.disconnect(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::wire::{encode_message, MsgType};

    #[test]
    fn a_local_connection_writes_reads_and_is_told_of_watches() {
        let mut service = StoreService::new();
        let a = service.connect_local().unwrap();
        let b = service.connect_local().unwrap();
        assert_ne!(a, b);
        let write = encode_message(MsgType::Write, 7, 0, b"/tool/x\0hello");
        assert_eq!(service.request(a, &write), Ok(write.len()));
        let out = service.take_output(a);
        assert!(out.ends_with(b"OK\0"), "{out:?}");
        let read = encode_message(MsgType::Read, 8, 0, b"/tool/x\0");
        service.request(b, &read).unwrap();
        assert!(service.take_output(b).ends_with(b"hello"));
        // b watches; a's write fires it; the event waits for b alone.
        let watch = encode_message(MsgType::Watch, 9, 0, b"/tool\0tok\0");
        service.request(b, &watch).unwrap();
        service.take_output(b);
        service.request(a, &write).unwrap();
        service.take_output(a);
        assert!(service.has_output(b));
        let event = service.take_output(b);
        assert!(event.ends_with(b"/tool/x\0tok\0"), "{event:?}");
        service.disconnect_local(b);
        assert!(!service.has_output(b));
        assert!(service.request(b, &read).is_err());
    }

    #[test]
    fn an_oversize_header_drops_only_that_connection() {
        let mut service = StoreService::new();
        let bad = service.connect_local().unwrap();
        let good = service.connect_local().unwrap();
        let mut header = encode_message(MsgType::Read, 1, 0, b"");
        header[12..16].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            service.request(bad, &header),
            Err(LocalError::Dropped(_))
        ));
        let read = encode_message(MsgType::Read, 2, 0, b"/\0");
        assert_eq!(service.request(good, &read), Ok(read.len()));
    }

    #[test]
    fn local_connections_are_bounded() {
        let mut service = StoreService::new();
        let conns: Vec<_> = (0..LOCAL_CONNECTIONS_MAX)
            .map(|_| service.connect_local().unwrap())
            .collect();
        assert_eq!(service.connect_local(), Err(LocalError::TooManyConnections));
        service.disconnect_local(conns[0]);
        assert!(service.connect_local().is_ok());
    }
}
