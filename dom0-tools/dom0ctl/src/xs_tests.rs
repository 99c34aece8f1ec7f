//! Host tests of the store link, `shutdown`'s PV control and the proxy,
//! against the real store logic (`xenstore::Store`) through a pipe that
//! feeds it in-process.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use xenstore::wire::{encode_message, Header, MsgType, HEADER_SIZE};
use xenstore::{ConnId, Store};

use crate::error::CliError;
use crate::proxy::{self, ClientNote};
use crate::pvcontrol::{self, control_path, Ack, PvCommand};
use crate::xs_link::{Framer, StorePipe, TooLong, XsConn};

/// A privileged local connection of a shared in-process store.
struct LocalPipe {
    store: Arc<Mutex<Store>>,
    id: u32,
}

impl LocalPipe {
    fn new(store: &Arc<Mutex<Store>>, id: u32) -> Self {
        store.lock().unwrap().connect_local(id);
        Self {
            store: Arc::clone(store),
            id,
        }
    }

    fn drain(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self
            .store
            .lock()
            .unwrap()
            .drain_output(ConnId::Local(self.id), &mut buf);
        buf.truncate(n);
        buf
    }
}

impl StorePipe for LocalPipe {
    fn send(&mut self, messages: &[u8]) -> Result<(), CliError> {
        let taken = self
            .store
            .lock()
            .unwrap()
            .feed(ConnId::Local(self.id), messages);
        match taken {
            Ok(n) if n == messages.len() => Ok(()),
            other => Err(CliError::Protocol(format!("store took {other:?}"))),
        }
    }

    fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, CliError> {
        let deadline = Instant::now() + wait;
        loop {
            let out = self.drain();
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

const STEP: Duration = Duration::from_secs(10);

#[test]
fn framer_splits_messages_across_pushes() {
    let mut bytes = encode_message(MsgType::Read, 7, 0, b"/a\0");
    bytes.extend(encode_message(MsgType::Write, 8, 0, b"/b\0x"));
    let mut f = Framer::default();
    f.push(&bytes[..5]);
    assert_eq!(f.next_message(), Ok(None));
    f.push(&bytes[5..25]);
    let first = f.next_message().unwrap().unwrap();
    assert_eq!((first.header.req_id, &first.payload[..]), (7, &b"/a\0"[..]));
    assert_eq!(f.next_message(), Ok(None));
    f.push(&bytes[25..]);
    let second = f.next_message().unwrap().unwrap();
    assert_eq!(
        (second.header.req_id, &second.payload[..]),
        (8, &b"/b\0x"[..])
    );
    assert_eq!(second.to_bytes(), bytes[19..]);
}

#[test]
fn framer_refuses_a_message_longer_than_the_payload_maximum() {
    let header = Header {
        msg_type: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    let mut f = Framer::default();
    f.push(&header.encode());
    assert_eq!(f.next_message(), Err(TooLong(4097)));
}

#[test]
fn xs_conn_reads_writes_and_reports_missing_keys() {
    let store = Arc::new(Mutex::new(Store::new()));
    let mut xs = XsConn::new(LocalPipe::new(&store, 0));
    assert_eq!(xs.read("/local/domain/3/name", STEP).unwrap(), None);
    xs.write("/local/domain/3/name", b"web", STEP).unwrap();
    assert_eq!(
        xs.read("/local/domain/3/name", STEP).unwrap().as_deref(),
        Some(&b"web"[..])
    );
    let e = xs.write("/a//b", b"x", STEP).unwrap_err();
    assert!(e.to_string().contains("EINVAL"), "{e}");
}

/// A guest that clears `control/shutdown` when asked, as Linux's
/// `drivers/xen/manage.c` does; it returns what it was asked.
fn acking_guest(store: &Arc<Mutex<Store>>, domid: u16) -> thread::JoinHandle<Vec<u8>> {
    let mut xs = XsConn::new(LocalPipe::new(store, 100));
    let path = control_path(domid);
    xs.watch(&path, "guest", STEP).unwrap();
    thread::spawn(move || loop {
        let deadline = Instant::now() + STEP;
        xs.next_watch_event(deadline)
            .unwrap()
            .expect("a watch event");
        match xs.read(&path, STEP).unwrap() {
            Some(v) if !v.is_empty() => {
                xs.write(&path, b"", STEP).unwrap();
                return v;
            }
            _ => {}
        }
    })
}

#[test]
fn pvcontrol_request_is_acknowledged_by_a_guest_that_clears_the_key() {
    let store = Arc::new(Mutex::new(Store::new()));
    let guest = acking_guest(&store, 4);
    let mut xs = XsConn::new(LocalPipe::new(&store, 0));
    let ack = pvcontrol::request(&mut xs, 4, PvCommand::Reboot, STEP).unwrap();
    assert_eq!(ack, Ack::Acknowledged);
    assert_eq!(guest.join().unwrap(), b"reboot");
}

#[test]
fn pvcontrol_request_times_out_when_the_guest_ignores_it() {
    let store = Arc::new(Mutex::new(Store::new()));
    let mut xs = XsConn::new(LocalPipe::new(&store, 0));
    let ack =
        pvcontrol::request(&mut xs, 5, PvCommand::Poweroff, Duration::from_millis(300)).unwrap();
    assert_eq!(ack, Ack::TimedOut);
    // The request stays written, as libxl leaves it.
    let value = xs.read(&control_path(5), STEP).unwrap();
    assert_eq!(value.as_deref(), Some(&b"poweroff"[..]));
}

/// Starts a proxy on a fresh socket; returns its path (and the dir
/// keeping it) and the notes it gives.
fn start_proxy(
    store: &Arc<Mutex<Store>>,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Arc<Mutex<Vec<ClientNote>>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut pipe = LocalPipe::new(store, 0);
    let notes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notes);
    thread::spawn(move || {
        let _ = proxy::serve(&listener, &mut pipe, |n| sink.lock().unwrap().push(n));
    });
    (dir, path, notes)
}

/// Sends one message and reads one back, as a xenstored socket client.
fn exchange(s: &mut UnixStream, t: MsgType, req_id: u32, payload: &[u8]) -> (Header, Vec<u8>) {
    s.write_all(&encode_message(t, req_id, 0, payload)).unwrap();
    read_message(s)
}

fn read_message(s: &mut UnixStream) -> (Header, Vec<u8>) {
    let mut head = [0u8; HEADER_SIZE];
    s.read_exact(&mut head).unwrap();
    let header = Header::decode(&head);
    let mut payload = vec![0u8; header.len as usize];
    s.read_exact(&mut payload).unwrap();
    (header, payload)
}

#[test]
fn proxy_relays_requests_and_echoes_req_ids() {
    let store = Arc::new(Mutex::new(Store::new()));
    let (_dir, path, _) = start_proxy(&store);
    let mut s = UnixStream::connect(&path).unwrap();
    let (h, p) = exchange(&mut s, MsgType::Write, 41, b"/tool/key\0value");
    assert_eq!(
        (h.msg_type, h.req_id, &p[..]),
        (MsgType::Write as u32, 41, &b"OK\0"[..])
    );
    let (h, p) = exchange(&mut s, MsgType::Read, 42, b"/tool/key\0");
    assert_eq!(
        (h.msg_type, h.req_id, &p[..]),
        (MsgType::Read as u32, 42, &b"value"[..])
    );
    let (h, p) = exchange(&mut s, MsgType::Read, 43, b"/tool/none\0");
    assert_eq!(
        (h.msg_type, &p[..]),
        (MsgType::Error as u32, &b"ENOENT\0"[..])
    );
    // Written by someone else: the store has it.
    let value = store
        .lock()
        .unwrap()
        .read_committed("/tool/key")
        .map(<[u8]>::to_vec);
    assert_eq!(value.as_deref(), Some(&b"value"[..]));
}

#[test]
fn proxy_delivers_watch_events_while_the_tool_waits() {
    let store = Arc::new(Mutex::new(Store::new()));
    let (_dir, path, _) = start_proxy(&store);
    let mut s = UnixStream::connect(&path).unwrap();
    let (h, _) = exchange(&mut s, MsgType::Watch, 1, b"/w\0tok\0");
    // The event of registering may come before or after the reply.
    let mut types = vec![h.msg_type, read_message(&mut s).0.msg_type];
    types.sort_unstable();
    assert_eq!(types, [MsgType::Watch as u32, MsgType::WatchEvent as u32]);
    let mut other = XsConn::new(LocalPipe::new(&store, 7));
    other.write("/w/x", b"1", STEP).unwrap();
    let (h, p) = read_message(&mut s);
    assert_eq!(
        (h.msg_type, &p[..]),
        (MsgType::WatchEvent as u32, &b"/w/x\0tok\0"[..])
    );
}

#[test]
fn proxy_resets_watches_between_tools() {
    let store = Arc::new(Mutex::new(Store::new()));
    let (_dir, path, notes) = start_proxy(&store);
    for _ in 0..2 {
        let mut s = UnixStream::connect(&path).unwrap();
        // On one store connection a second identical watch is EEXIST: OK
        // the second time means the first tool's watch was dropped.
        let (h, _) = exchange(&mut s, MsgType::Watch, 9, b"/r\0same\0");
        let (h2, _) = read_message(&mut s);
        assert!(h.msg_type != MsgType::Error as u32 && h2.msg_type != MsgType::Error as u32);
    }
    let deadline = Instant::now() + STEP;
    while notes.lock().unwrap().len() < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let notes = notes.lock().unwrap();
    assert_eq!(
        notes[..3],
        [
            ClientNote::Connected,
            ClientNote::Left(None),
            ClientNote::Connected
        ]
    );
}

#[test]
fn proxy_drops_a_tool_that_sends_an_oversized_message() {
    let store = Arc::new(Mutex::new(Store::new()));
    let (_dir, path, notes) = start_proxy(&store);
    let mut s = UnixStream::connect(&path).unwrap();
    let header = Header {
        msg_type: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 5000,
    };
    s.write_all(&header.encode()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "the proxy hangs up");
    let deadline = Instant::now() + STEP;
    while notes.lock().unwrap().len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let notes = notes.lock().unwrap();
    assert!(
        matches!(&notes[1], ClientNote::Left(Some(why)) if why.contains("5000")),
        "{notes:?}"
    );
    // And the next tool is served.
    drop(notes);
    let mut s = UnixStream::connect(&path).unwrap();
    let (h, _) = exchange(&mut s, MsgType::Read, 2, b"/\0");
    assert_eq!(h.msg_type, MsgType::Read as u32);
}
