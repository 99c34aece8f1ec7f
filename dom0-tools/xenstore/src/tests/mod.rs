//! Host tests: a small client speaking the wire protocol to a [`Store`],
//! unit tests per operation, hostile input, and model-based properties.

mod hostile;
mod model;
mod model_perms;
mod model_tx;
mod model_watch;
mod ops;

use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::{Header, MsgType, HEADER_SIZE};
use crate::{ConnId, DomId, Store};

/// One message from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Splits a byte stream from the store into messages.
pub fn parse_stream(mut bytes: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_SIZE {
        let header = Header::decode(bytes[..HEADER_SIZE].try_into().unwrap());
        let end = HEADER_SIZE + header.len as usize;
        out.push(Msg {
            header,
            payload: bytes[HEADER_SIZE..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    assert!(bytes.is_empty(), "partial message left");
    out
}

/// A test client on one connection: sends requests, collects replies and
/// watch events ("path", "token").
pub struct Client {
    pub id: ConnId,
    pub events: Vec<(String, String)>,
    req_id: u32,
}

/// The payload for `args`, each NUL-terminated.
pub fn args(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

impl Client {
    /// dom0's local connection `n`.
    pub fn local(store: &mut Store, n: u32) -> Self {
        store.connect_local(n);
        Self {
            id: ConnId::Local(n),
            events: Vec::new(),
            req_id: 0,
        }
    }

    /// Introduces `domid` and returns its connection.
    pub fn domain(store: &mut Store, domid: DomId) -> Self {
        store
            .introduce(domid, 0x1000 + u64::from(domid), 5)
            .unwrap();
        Self {
            id: ConnId::Domain(domid),
            events: Vec::new(),
            req_id: 0,
        }
    }

    /// Takes everything the store queued; events go to `self.events`,
    /// replies are returned.
    pub fn drain(&mut self, store: &mut Store) -> Vec<Msg> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = store.drain_output(self.id, &mut buf);
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let mut replies = Vec::new();
        for m in parse_stream(&bytes) {
            if m.header.msg_type == MsgType::WatchEvent as u32 {
                let parts: Vec<&[u8]> = m.payload.split(|b| *b == 0).collect();
                self.events.push((text(parts[0]), text(parts[1])));
            } else {
                replies.push(m);
            }
        }
        replies
    }

    /// Sends one raw request and returns its reply: `Ok(payload)` or
    /// `Err("EINVAL")`.
    pub fn raw(
        &mut self,
        store: &mut Store,
        msg_type: u32,
        tx: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.req_id += 1;
        let header = Header {
            msg_type,
            req_id: self.req_id,
            tx_id: tx,
            len: u32::try_from(payload.len()).unwrap(),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        assert_eq!(store.feed(self.id, &bytes), Ok(bytes.len()));
        let replies = self.drain(store);
        assert_eq!(replies.len(), 1, "one reply per request");
        let r = &replies[0];
        assert_eq!(
            (r.header.req_id, r.header.tx_id),
            (self.req_id, tx),
            "reply echoes ids"
        );
        if r.header.msg_type == MsgType::Error as u32 {
            let (_, s) = r.payload.split_last().unwrap();
            return Err(text(s));
        }
        assert_eq!(r.header.msg_type, msg_type);
        Ok(r.payload.clone())
    }

    pub fn req(
        &mut self,
        store: &mut Store,
        t: MsgType,
        tx: u32,
        a: &[&str],
    ) -> Result<Vec<u8>, String> {
        self.raw(store, t as u32, tx, &args(a))
    }

    pub fn read(&mut self, store: &mut Store, tx: u32, path: &str) -> Result<String, String> {
        self.req(store, MsgType::Read, tx, &[path])
            .map(|v| text(&v))
    }

    pub fn write(
        &mut self,
        store: &mut Store,
        tx: u32,
        path: &str,
        value: &str,
    ) -> Result<(), String> {
        let mut p = args(&[path]);
        p.extend_from_slice(value.as_bytes());
        self.raw(store, MsgType::Write as u32, tx, &p).map(|_| ())
    }

    pub fn mkdir(&mut self, store: &mut Store, tx: u32, path: &str) -> Result<(), String> {
        self.req(store, MsgType::Mkdir, tx, &[path]).map(|_| ())
    }

    pub fn rm(&mut self, store: &mut Store, tx: u32, path: &str) -> Result<(), String> {
        self.req(store, MsgType::Rm, tx, &[path]).map(|_| ())
    }

    pub fn dir(&mut self, store: &mut Store, tx: u32, path: &str) -> Result<Vec<String>, String> {
        let v = self.req(store, MsgType::Directory, tx, &[path])?;
        Ok(v.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(text)
            .collect())
    }

    pub fn set_perms(
        &mut self,
        store: &mut Store,
        path: &str,
        perms: &[&str],
    ) -> Result<(), String> {
        let mut a = alloc::vec![path];
        a.extend_from_slice(perms);
        self.req(store, MsgType::SetPerms, 0, &a).map(|_| ())
    }

    pub fn get_perms(&mut self, store: &mut Store, path: &str) -> Result<Vec<String>, String> {
        let v = self.req(store, MsgType::GetPerms, 0, &[path])?;
        Ok(v.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(text)
            .collect())
    }

    pub fn watch(&mut self, store: &mut Store, path: &str, token: &str) -> Result<(), String> {
        self.req(store, MsgType::Watch, 0, &[path, token])
            .map(|_| ())
    }

    pub fn unwatch(&mut self, store: &mut Store, path: &str, token: &str) -> Result<(), String> {
        self.req(store, MsgType::Unwatch, 0, &[path, token])
            .map(|_| ())
    }

    pub fn start(&mut self, store: &mut Store) -> Result<u32, String> {
        let v = self.req(store, MsgType::TransactionStart, 0, &[""])?;
        Ok(text(&v[..v.len() - 1]).parse().unwrap())
    }

    pub fn end(&mut self, store: &mut Store, tx: u32, commit: bool) -> Result<(), String> {
        self.req(
            store,
            MsgType::TransactionEnd,
            tx,
            &[if commit { "T" } else { "F" }],
        )
        .map(|_| ())
    }

    pub fn take_events(&mut self) -> Vec<(String, String)> {
        core::mem::take(&mut self.events)
    }
}

/// The usual start: dom0's toolstack gives each domain in `domids` its
/// home `/local/domain/<n>`, owned by it, as libxl does.
pub fn with_domains(domids: &[DomId]) -> (Store, Client, Vec<Client>) {
    let mut store = Store::new();
    let mut dom0 = Client::local(&mut store, 0);
    let mut domus = Vec::new();
    for &d in domids {
        let home = alloc::format!("/local/domain/{d}");
        dom0.mkdir(&mut store, 0, &home).unwrap();
        dom0.set_perms(&mut store, &home, &[&alloc::format!("n{d}")])
            .unwrap();
        domus.push(Client::domain(&mut store, d));
    }
    dom0.take_events();
    store.take_effects();
    (store, dom0, domus)
}
