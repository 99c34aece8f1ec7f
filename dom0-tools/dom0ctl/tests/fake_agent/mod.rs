//! A management agent for tests: a thread serving the `mgmt` protocol on a
//! real UNIX socket, with the session rule of `mgmt::Server`, an
//! in-memory domain table, the chunked upload rules of `mgmt::Upload` and
//! the kernel check of the domain builder. Like QEMU's COM2 it serves one
//! connection at a time, the next ones wait in the socket's queue, and
//! its sessions outlive connections.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mgmt::*;

/// What the agent holds; tests read and change it.
pub struct State {
    pub version: ProtocolVersion,
    pub domains: Vec<DomainSummary>,
    pub total_kib: u64,
    pub free_kib: u64,
    pub next_domid: DomId,
    /// Chunks received by each upload, in order.
    pub chunks_per_upload: Vec<usize>,
    /// Images of committed creates.
    pub images: Vec<Vec<u8>>,
    /// Ramdisks of committed streamed creates.
    pub ramdisks: Vec<Vec<u8>>,
    /// Every error reply sent.
    pub errors: Vec<MgmtError>,
    /// Bytes written to each new connection before anything else: what
    /// an earlier client left on the line.
    pub stale: Vec<u8>,
    /// How many `ImageChunk`s to treat as arrived broken (answered
    /// `Dropped`, not carried out), as a line that went idle mid-frame.
    pub break_chunks: u32,
    /// Connections refused for a wrong key (TCP).
    pub refused: u32,
    /// Connections closed before the challenge (TCP).
    pub closed_at_once: u32,
    /// dom0's disk (16 MiB in memory) with the real volume table on it.
    pub disk: Vec<u8>,
    pub volumes: volumes::Table,
    /// The vifs attached, with their switch ports.
    pub vifs: Vec<VifInfo>,
    /// The vswitch the vifs are ports of (the real one, no uplink).
    pub switch: vswitch::Switch,
}

pub struct FakeAgent {
    pub path: PathBuf,
    pub state: Arc<Mutex<State>>,
    /// `tcp://127.0.0.1:PORT` of the TCP agent ([`FakeAgent::start_tcp`]).
    pub url: String,
    /// The key file a client of the TCP agent uses (mode 0600).
    pub key_file: PathBuf,
    dir: tempfile::TempDir,
}

/// The key of the TCP agent.
pub const KEY: [u8; 32] = [0x42; 32];

const IDLE: Duration = Duration::from_millis(100);

impl FakeAgent {
    /// An agent with dom0 (64 MiB of 256 MiB total).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mgmt.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let state = new_state();
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            let mut server = Server::<Session>::new(100);
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                stream.set_read_timeout(Some(IDLE)).unwrap();
                serve(&shared, &mut server, stream);
            }
        });
        Self::with(dir, path, state, String::new())
    }

    /// The same agent on TCP, as dom0's: every connection authenticates
    /// first (mgmt::auth, with [`KEY`]) and has its own session. Serves
    /// one connection at a time.
    pub fn start_tcp() -> Self {
        Self::start_tcp_closing_first(0)
    }

    /// [`Self::start_tcp`], but the first `refused` connections are
    /// closed at once, as QEMU's `hostfwd` closes one dom0 reset (all
    /// of its connections taken).
    pub fn start_tcp_closing_first(refused: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let state = new_state();
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            let key = auth::Key::from_bytes(&KEY).unwrap();
            let mut nonces = auth::NonceSource::new(key.clone());
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                if i < refused {
                    shared.lock().unwrap().closed_at_once += 1;
                    continue;
                }
                stream.set_read_timeout(Some(IDLE)).unwrap();
                let (gate, challenge) = auth::Gate::challenge(&mut nonces, i as u64);
                if stream
                    .write_all(&encode_message(&challenge).unwrap())
                    .is_err()
                {
                    continue;
                }
                let mut decoder = Decoder::new();
                let Some(first) = first_item(&mut stream, &mut decoder) else {
                    continue;
                };
                match gate.answer(&key, first) {
                    auth::Verdict::Open(m) => {
                        if stream.write_all(&encode_message(&m).unwrap()).is_ok() {
                            let mut server = Server::<Session>::new(100 * (i as u32 + 1));
                            serve(&shared, &mut server, stream);
                        }
                    }
                    auth::Verdict::Refused(m) => {
                        shared.lock().unwrap().refused += 1;
                        let _ = stream.write_all(&encode_message(&m).unwrap());
                    }
                }
            }
        });
        let path = dir.path().join("unused.sock");
        Self::with(dir, path, state, url)
    }

    fn with(dir: tempfile::TempDir, path: PathBuf, state: Arc<Mutex<State>>, url: String) -> Self {
        let key_file = dir.path().join("mgmt.key");
        let hex = auth::Key::from_bytes(&KEY).unwrap().to_hex();
        std::fs::write(&key_file, hex).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            path,
            state,
            url,
            key_file,
            dir,
        }
    }

    /// A file in the agent's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn domain(&self, name: &str) -> Option<DomainSummary> {
        self.state
            .lock()
            .unwrap()
            .domains
            .iter()
            .find(|d| d.name == name)
            .cloned()
    }
}

/// An agent's state with dom0 (64 MiB of 256 MiB total).
fn new_state() -> Arc<Mutex<State>> {
    let mut disk = vec![0u8; 16 << 20];
    Arc::new(Mutex::new(State {
        version: PROTOCOL_VERSION,
        domains: vec![summary(0, "dom0", 64 * 1024, DomainState::Running)],
        total_kib: 256 * 1024,
        free_kib: 192 * 1024,
        next_domid: 1,
        chunks_per_upload: Vec::new(),
        images: Vec::new(),
        ramdisks: Vec::new(),
        errors: Vec::new(),
        stale: Vec::new(),
        break_chunks: 0,
        refused: 0,
        closed_at_once: 0,
        volumes: volumes::Table::open(disk_io(&mut disk), 1).unwrap().0,
        disk,
        vifs: Vec::new(),
        switch: vswitch::Switch::new(),
    }))
}

/// The first item a client sends, within a few idle periods.
fn first_item(stream: &mut impl Read, decoder: &mut Decoder) -> Option<Decoded> {
    let mut buf = [0u8; 4096];
    for _ in 0..50 {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                if let Some(item) = decoder.decode(&mut &buf[..n]) {
                    return Some(item);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    None
}

pub fn summary(domid: DomId, name: &str, memory_kib: u64, state: DomainState) -> DomainSummary {
    DomainSummary {
        domid,
        name: name.into(),
        state,
        memory_kib,
        max_memory_kib: memory_kib,
        vcpus: 1,
        cpu_time_ns: 1_500_000_000,
    }
}

/// What one session holds.
#[derive(Default)]
struct Session {
    upload: Option<Upload>,
    /// A streamed create: its config, bookkeeping and the bytes so far.
    streamed: Option<(DomainConfig, StreamUpload, Vec<u8>)>,
    chunks: usize,
    console: Option<DomId>,
    /// Events to send after the reply.
    events: Vec<Event>,
}

/// Serves one connection until the client goes away.
fn serve(state: &Arc<Mutex<State>>, server: &mut Server<Session>, mut stream: impl Read + Write) {
    let stale = state.lock().unwrap().stale.clone();
    if stream.write_all(&stale).is_err() {
        return;
    }
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut items = Vec::new();
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut input = &buf[..n];
                while let Some(item) = decoder.decode(&mut input) {
                    items.push(item);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                while let Some(item) = decoder.flush() {
                    items.push(item);
                }
            }
            Err(_) => return,
        }
        for item in items {
            if let Some(dropped) = broken_chunk(state, server, &item) {
                if stream
                    .write_all(&encode_message(&dropped).unwrap())
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let answer = server.answer(item, |session, request| {
                handle(&mut state.lock().unwrap(), session, request)
            });
            let version = state.lock().unwrap().version;
            let mut messages = match answer.reply {
                // A test may make the agent speak another version.
                Outgoing::Message(ServerMessage::Welcome {
                    nonce,
                    result: Ok(welcome),
                }) => vec![ServerMessage::Welcome {
                    nonce,
                    result: Ok(Welcome { version, ..welcome }),
                }],
                Outgoing::Message(m) => vec![m],
                Outgoing::V1Frame(_) => unreachable!("tests speak protocol 2"),
            };
            if let Some((session, s)) = server.session() {
                messages.extend(
                    s.events
                        .drain(..)
                        .map(|event| ServerMessage::Event { session, event }),
                );
            }
            for m in messages {
                if let ServerMessage::Reply { result: Err(e), .. } | ServerMessage::Rejected(e) = &m
                {
                    state.lock().unwrap().errors.push(e.clone());
                }
                if stream.write_all(&encode_message(&m).unwrap()).is_err() {
                    return;
                }
            }
        }
    }
}

/// `Dropped` for an `ImageChunk` the test wants broken on the way.
fn broken_chunk(
    state: &Mutex<State>,
    server: &mut Server<Session>,
    item: &Decoded,
) -> Option<ServerMessage> {
    let Ok(payload) = item else { return None };
    let Ok(ClientMessage {
        request: Request::ImageChunk { .. },
        ..
    }) = decode_client_message(payload)
    else {
        return None;
    };
    let mut s = state.lock().unwrap();
    if s.break_chunks == 0 {
        return None;
    }
    s.break_chunks -= 1;
    let session = server.session()?.0;
    Some(ServerMessage::Dropped {
        session,
        error: MgmtError::BadFrame(FrameError::Truncated {
            received: 100,
            expected: 16_000,
        }),
    })
}

/// A create's commit: the domain from `image`, running.
fn created(s: &mut State, config: &DomainConfig, image: Vec<u8>) -> Result<Reply, MgmtError> {
    pvh_builder::elf_image::parse(&image).map_err(|e| MgmtError::BadKernelImage(e.to_string()))?;
    let needed_kib = u64::from(config.memory_mib) * 1024;
    if needed_kib > s.free_kib {
        return Err(MgmtError::NotEnoughMemory {
            needed_kib,
            free_kib: s.free_kib,
        });
    }
    let domid = s.next_domid;
    s.next_domid += 1;
    s.free_kib -= needed_kib;
    let mut d = summary(domid, &config.name, needed_kib, DomainState::Running);
    d.vcpus = config.vcpus;
    d.cpu_time_ns = 0;
    s.domains.push(d);
    s.images.push(image);
    Ok(Reply::Created { domid })
}

/// What a request of `session` does.
fn handle(s: &mut State, session: &mut Session, request: Request) -> Result<Reply, MgmtError> {
    match request {
        Request::Hello { .. } => unreachable!("mgmt::Server answers Hello"),
        Request::Authenticate { .. } => {
            Err(MgmtError::MalformedRequest("authenticated already".into()))
        }
        Request::Info => Ok(Reply::Info(HostInfo {
            hypervisor_version: "Xen 4.19.0-xen-core".into(),
            control_abi: ControlAbiVersion { major: 1, minor: 2 },
            nr_pcpus: 1,
            nr_domains: s.domains.len() as u32,
            total_memory_kib: s.total_kib,
            free_memory_kib: s.free_kib,
        })),
        Request::List => Ok(Reply::List(s.domains.clone())),
        Request::DomainInfo { domain } => Ok(Reply::Domain(find(s, &domain)?.clone())),
        Request::CreateBegin {
            config,
            image_len,
            image_crc32,
        } => {
            if s.domains.iter().any(|d| d.name == config.name) {
                return Err(MgmtError::DuplicateName(config.name));
            }
            session.upload = Some(Upload::begin(config, image_len, image_crc32)?);
            session.chunks = 0;
            Ok(Reply::UploadReady)
        }
        Request::CreateStreamBegin {
            config,
            kernel_len,
            kernel_crc32,
            ramdisk_len,
            ramdisk_crc32,
        } => {
            let upload = StreamUpload::begin(kernel_len, kernel_crc32, ramdisk_len, ramdisk_crc32)?;
            session.streamed = Some((config, upload, Vec::new()));
            session.chunks = 0;
            Ok(Reply::UploadReady)
        }
        Request::ImageChunk { offset, data } if session.streamed.is_some() => {
            let (_, upload, bytes) = session.streamed.as_mut().unwrap();
            session.chunks += 1;
            if upload.accept(offset, &data)? == Accepted::New {
                bytes.extend_from_slice(&data);
            }
            Ok(Reply::ChunkAccepted {
                received: upload.received(),
            })
        }
        Request::CreateCommit if session.streamed.is_some() => {
            let (config, upload, mut image) = session.streamed.take().unwrap();
            let (kernel_len, _) = upload.lengths();
            upload.finish()?;
            s.chunks_per_upload.push(session.chunks);
            let ramdisk = image.split_off(kernel_len as usize);
            s.ramdisks.push(ramdisk);
            created(s, &config, image)
        }
        Request::ImageChunk { offset, data } => {
            let upload = session.upload.as_mut().ok_or(UploadError::NotStarted)?;
            session.chunks += 1;
            let received = upload.add_chunk(offset, &data)?;
            Ok(Reply::ChunkAccepted { received })
        }
        Request::CreateCommit => {
            let (config, image) = session
                .upload
                .take()
                .ok_or(UploadError::NotStarted)?
                .finish()?;
            s.chunks_per_upload.push(session.chunks);
            created(s, &config, image)
        }
        Request::CreateAbort => {
            session.upload = None;
            session.streamed = None;
            Ok(Reply::Done)
        }
        Request::Destroy { domain } => {
            let domid = find(s, &domain)?.domid;
            if domid == 0 {
                return Err(MgmtError::Dom0Protected(DomainOperation::Destroy));
            }
            let index = s.domains.iter().position(|d| d.domid == domid).unwrap();
            let gone = s.domains.remove(index);
            s.free_kib += gone.memory_kib;
            Ok(Reply::Done)
        }
        Request::Pause { domain } => {
            let before = find(s, &domain)?.state;
            set_state(s, &domain, DomainOperation::Pause, DomainState::Paused)?;
            Ok(Reply::Paused {
                domain: find(s, &domain)?.clone(),
                already_paused: before == DomainState::Paused,
            })
        }
        Request::Unpause { domain } => {
            let d = find(s, &domain)?;
            if !matches!(d.state, DomainState::Paused | DomainState::Shutdown(_)) {
                return Err(MgmtError::NotPaused {
                    domid: d.domid,
                    state: d.state,
                });
            }
            set_state(s, &domain, DomainOperation::Unpause, DomainState::Running)?;
            Ok(Reply::Unpaused {
                domain: find(s, &domain)?.clone(),
            })
        }
        Request::Shutdown { domain, kind } => {
            let reason = match kind {
                ShutdownKind::Poweroff => ShutdownReason::Poweroff,
                ShutdownKind::Reboot => ShutdownReason::Reboot,
            };
            set_state(
                s,
                &domain,
                DomainOperation::Shutdown,
                DomainState::Shutdown(reason),
            )
        }
        Request::ConsoleAttach { domain, follow } => {
            let d = find(s, &domain)?.clone();
            if follow {
                session.console = Some(d.domid);
            }
            Ok(Reply::ConsoleAttached {
                domid: d.domid,
                name: d.name.clone(),
                history: format!("hello from {}\n", d.name).into_bytes(),
            })
        }
        Request::ConsoleInput { data } => {
            let domid = session.console.ok_or(MgmtError::ConsoleNotAttached)?;
            let mut echo = b"echo: ".to_vec();
            echo.extend_from_slice(&data);
            session
                .events
                .push(Event::ConsoleOutput { domid, data: echo });
            Ok(Reply::Done)
        }
        Request::ConsoleDetach => {
            session
                .console
                .take()
                .ok_or(MgmtError::ConsoleNotAttached)?;
            Ok(Reply::Done)
        }
        Request::Dmesg => Ok(Reply::Dmesg {
            text: "(XEN) xen-core 0.1.0\n(XEN) dom0 built".into(),
        }),
        Request::Stats => Ok(Reply::Stats(
            s.domains
                .iter()
                .map(|d| DomainCounters {
                    domid: d.domid,
                    cpu_time_ns: d.cpu_time_ns,
                    vm_exits: 1000 + u64::from(d.domid),
                    hypercalls: 100 + u64::from(d.domid),
                })
                .collect(),
        )),
        Request::Xenstore { .. } => Err(MgmtError::Unsupported("xenstore (fake agent)".into())),
        Request::VolumeCreate { name, bytes } => {
            let created = s.volumes.create(disk_io(&mut s.disk), &name, bytes);
            let v = created.map_err(volume_error)?;
            Ok(Reply::Volume(info(&v)))
        }
        Request::VolumeList => Ok(Reply::Volumes(VolumeTable {
            disk_bytes: s.disk.len() as u64,
            largest_free_bytes: s.volumes.largest_free_bytes(),
            volumes: s.volumes.list().iter().map(info).collect(),
        })),
        Request::VolumeDelete { name } => {
            let deleted = s.volumes.delete(disk_io(&mut s.disk), &name);
            deleted.map_err(volume_error)?;
            Ok(Reply::Done)
        }
        Request::BlockAttach { .. } | Request::BlockDetach { .. } | Request::BlockList { .. } => {
            Err(MgmtError::Unsupported("block devices (fake agent)".into()))
        }
        Request::NetworkAttach { domain, mac, vlan } => network_attach(s, &domain, mac, vlan),
        Request::NetworkDetach { domain, vif } => {
            let domid = find(s, &domain)?.domid;
            let index = s
                .vifs
                .iter()
                .position(|v| v.domid == domid && vif.matches(v.devid, &v.mac))
                .ok_or(MgmtError::NoSuchVif { domid, vif })?;
            let gone = s.vifs.remove(index);
            s.switch
                .remove_port(vswitch::PortId(gone.switch_port))
                .unwrap();
            Ok(Reply::Done)
        }
        Request::NetworkList { domain } => {
            let only = domain.map(|d| find(s, &d).map(|d| d.domid)).transpose()?;
            Ok(Reply::Vifs(
                s.vifs
                    .iter()
                    .filter(|v| only.is_none_or(|d| d == v.domid))
                    .cloned()
                    .collect(),
            ))
        }
        Request::VswitchShow => Ok(Reply::Vswitch(s.switch.snapshot().into())),
        Request::MemSet { domain, target_kib } => mem_set(s, &domain, target_kib),
        Request::MemMax { domain, max_kib } => {
            let d = memory_domain(s, &domain)?;
            mgmt::memory::check_max(d.domid, max_kib, d.memory_kib)?;
            d.max_memory_kib = max_kib;
            Ok(Reply::Done)
        }
        // The scheduler's requests are tested against the real agent
        // and hypervisor (scenario sched-credit).
        Request::Counters { .. } | Request::VcpuPin { .. } | Request::SchedCredit { .. } => Err(
            MgmtError::Unsupported("scheduling in the fake agent".into()),
        ),
    }
}

/// `MemSet` with the agent's rules (`max_memory_kib` standing for
/// `memory/static-max`), and a guest whose balloon follows at once.
fn mem_set(s: &mut State, domain: &DomainRef, target_kib: u64) -> Result<Reply, MgmtError> {
    let d = memory_domain(s, domain)?;
    mgmt::memory::check_target(d.domid, target_kib, d.max_memory_kib)?;
    let old = std::mem::replace(&mut d.memory_kib, target_kib);
    s.free_kib = s.free_kib + old - target_kib;
    Ok(Reply::Done)
}

/// A domU `mem-set`/`mem-max` may change.
fn memory_domain<'a>(
    s: &'a mut State,
    domain: &DomainRef,
) -> Result<&'a mut DomainSummary, MgmtError> {
    let domid = find(s, domain)?.domid;
    if domid == 0 {
        return Err(MgmtError::Dom0Protected(DomainOperation::SetMemory));
    }
    Ok(s.domains.iter_mut().find(|d| d.domid == domid).unwrap())
}

fn disk_io(disk: &mut [u8]) -> gpt_disk_io::BlockIoAdapter<&mut [u8]> {
    gpt_disk_io::BlockIoAdapter::new(disk, gpt_disk_io::gpt_disk_types::BlockSize::BS_512)
}

fn info(v: &volumes::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name.clone(),
        bytes: v.bytes(),
        first_lba: v.first_lba,
        guid: v.guid.to_string(),
        attached: Vec::new(),
    }
}

/// The real agent's mapping, for the errors the tests provoke.
fn volume_error(e: volumes::VolumeError<gpt_disk_io::SliceBlockIoError>) -> MgmtError {
    MgmtError::Volume(match e {
        volumes::VolumeError::NameTaken { name } => VolumeFailure::NameTaken(name),
        volumes::VolumeError::NotFound { name } => VolumeFailure::NotFound(name),
        volumes::VolumeError::DiskFull {
            requested,
            largest_free,
        } => VolumeFailure::DiskFull {
            requested,
            largest_free,
        },
        volumes::VolumeError::TooLarge { requested, max } => {
            VolumeFailure::TooLarge { requested, max }
        }
        other => VolumeFailure::Io(other.to_string()),
    })
}

/// As dom0 does it: the next devid, the default MAC, a switch port.
fn network_attach(
    s: &mut State,
    domain: &DomainRef,
    mac: Option<[u8; 6]>,
    vlan: vswitch::VlanMode,
) -> Result<Reply, MgmtError> {
    let d = find(s, domain)?.clone();
    let devid = (0..)
        .find(|n| !s.vifs.iter().any(|v| v.domid == d.domid && v.devid == *n))
        .unwrap();
    let mac = mac.unwrap_or_else(|| vswitch::default_mac(&d.name, devid));
    let port = s
        .switch
        .add_port(vswitch::PortConfig {
            name: format!("vif{}.{devid}", d.domid),
            kind: vswitch::PortKind::Vif {
                domid: d.domid,
                devid,
                mac,
            },
            vlan: vlan.clone(),
        })
        .map_err(|e| MgmtError::NetworkRefused {
            domid: d.domid,
            reason: e.to_string(),
        })?;
    let vif = VifInfo {
        domid: d.domid,
        devid,
        mac,
        vlan,
        backend_state: 2,
        switch_port: port.0,
    };
    s.vifs.push(vif.clone());
    Ok(Reply::VifAttached(vif))
}

fn find<'a>(s: &'a State, domain: &DomainRef) -> Result<&'a DomainSummary, MgmtError> {
    s.domains
        .iter()
        .find(|d| domain.matches(d.domid, &d.name))
        .ok_or_else(|| MgmtError::UnknownDomain(domain.clone()))
}

fn set_state(
    s: &mut State,
    domain: &DomainRef,
    operation: DomainOperation,
    state: DomainState,
) -> Result<Reply, MgmtError> {
    let domid = find(s, domain)?.domid;
    if domid == 0 {
        return Err(MgmtError::Dom0Protected(operation));
    }
    let d = s.domains.iter_mut().find(|d| d.domid == domid).unwrap();
    if matches!(d.state, DomainState::Shutdown(_)) {
        return Err(MgmtError::InvalidState {
            domid,
            operation,
            state: d.state,
        });
    }
    d.state = state;
    Ok(Reply::Done)
}
