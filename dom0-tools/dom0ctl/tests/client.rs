//! dom0ctl against a fake management agent on a real UNIX socket: each
//! subcommand's requests, output, errors and exit status.

// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod fake_agent;

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use dom0ctl::error::{EXIT_CONFIG, EXIT_NOT_LISTENING, EXIT_PROTOCOL, EXIT_REFUSED};
use dom0ctl::{run, Cli, CliError, Input};
use fake_agent::FakeAgent;
use mgmt::{DomainState, MgmtError, ProtocolVersion, MAX_IMAGE_CHUNK};
use pvh_builder::test_images;

const EM_X86_64: u16 = 62;

/// Runs `dom0ctl --connect SOCKET ARGS…` with `input` as console input;
/// stdout and the result.
fn dom0ctl_with_input(
    socket: &Path,
    args: &[&str],
    input: &[u8],
) -> (String, Result<(), CliError>) {
    let mut argv = vec!["dom0ctl", "--connect", socket.to_str().unwrap()];
    if !args.contains(&"--timeout") {
        argv.extend(["--timeout", "5"]);
    }
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let input = Input {
        reader: Box::new(io::Cursor::new(input.to_vec())),
        terminal: false,
    };
    let result = run(cli, &mut out, input);
    (String::from_utf8(out).unwrap(), result)
}

fn dom0ctl(socket: &Path, args: &[&str]) -> (String, Result<(), CliError>) {
    dom0ctl_with_input(socket, args, b"")
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let (out, result) = dom0ctl(socket, args);
    if let Err(e) = result {
        panic!("dom0ctl {args:?} failed: {e}");
    }
    out
}

/// The error's exit status and message.
fn fails(socket: &Path, args: &[&str]) -> (u8, String) {
    let (_, result) = dom0ctl(socket, args);
    let e = result.expect_err("dom0ctl should have failed");
    (e.exit_code(), e.to_string())
}

/// A config `NAME.toml` with a PVH kernel of `kernel_bytes` code bytes.
fn guest_config(dir: &Path, name: &str, memory_mib: u32, kernel_bytes: usize) -> PathBuf {
    let code = vec![0x90u8; kernel_bytes];
    let image = test_images::elf(
        true,
        EM_X86_64,
        &[
            test_images::load(test_images::KERNEL_GPA, &code, kernel_bytes as u64),
            test_images::xen_note(
                test_images::PHYS32_ENTRY_NOTE,
                &test_images::KERNEL_GPA.to_le_bytes(),
            ),
        ],
    );
    std::fs::write(dir.join(format!("{name}.elf")), image).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!("name = \"{name}\"\nkernel = \"{name}.elf\"\nmemory = {memory_mib}\nvcpus = 2\ncmdline = \"quiet\"\n"),
    )
    .unwrap();
    config
}

#[test]
fn list_shows_a_table_and_json() {
    let agent = FakeAgent::start();
    let table = ok(&agent.path, &["list"]);
    assert_eq!(
        table,
        "Name  ID  State    Mem(MiB)  VCPUs  Time(s)\ndom0   0  running        64      1      1.5\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&agent.path, &["list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "dom0");
    assert_eq!(json[0]["memory_kib"], 64 * 1024);
    // Named domains, by name or domid.
    assert!(ok(&agent.path, &["list", "0", "dom0"]).lines().count() == 3);
    assert_eq!(
        fails(&agent.path, &["list", "web"]),
        (EXIT_REFUSED, "unknown domain 'web'".into())
    );
}

#[test]
fn info_shows_host_facts() {
    let agent = FakeAgent::start();
    let text = ok(&agent.path, &["info"]);
    assert!(
        text.contains("hypervisor    : Xen 4.19.0-xen-core\n"),
        "{text}"
    );
    assert!(text.contains("free_memory   : 192 MiB\n"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&agent.path, &["info", "--json"])).unwrap();
    assert_eq!(json["free_memory_kib"], 192 * 1024);
    assert_eq!(json["control_abi"], "1.2");
}

#[test]
fn create_uploads_the_kernel_in_chunks_then_destroy_returns_memory() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 32, MAX_IMAGE_CHUNK * 2 + 100);
    let out = ok(&agent.path, &["create", config.to_str().unwrap()]);
    assert_eq!(out, "Created domain 'web' (domid 1).\n");
    {
        let s = agent.state.lock().unwrap();
        assert_eq!(s.chunks_per_upload, [3]);
        assert_eq!(
            s.images[0],
            std::fs::read(dir.path().join("web.elf")).unwrap()
        );
        assert_eq!(s.free_kib, 160 * 1024);
    }
    let web = agent.domain("web").unwrap();
    assert_eq!((web.domid, web.vcpus, web.memory_kib), (1, 2, 32 * 1024));
    assert_eq!(
        ok(&agent.path, &["list"]),
        "\
Name  ID  State    Mem(MiB)  VCPUs  Time(s)
dom0   0  running        64      1      1.5
web    1  running        32      2      0.0
"
    );

    assert_eq!(
        ok(&agent.path, &["destroy", "web"]),
        "Destroyed domain 'web'.\n"
    );
    assert!(agent.domain("web").is_none());
    assert_eq!(agent.state.lock().unwrap().free_kib, 192 * 1024);
}

#[test]
fn create_streams_a_kernel_with_its_ramdisk() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "linux", 32, MAX_IMAGE_CHUNK + 100);
    let ramdisk: Vec<u8> = (0..MAX_IMAGE_CHUNK * 2)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    std::fs::write(dir.path().join("initrd.cpio"), &ramdisk).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("ramdisk = \"initrd.cpio\"\n");
    std::fs::write(&config, text).unwrap();
    let out = ok(&agent.path, &["create", config.to_str().unwrap()]);
    assert_eq!(out, "Created domain 'linux' (domid 1).\n");
    let s = agent.state.lock().unwrap();
    assert_eq!(
        s.images[0],
        std::fs::read(dir.path().join("linux.elf")).unwrap()
    );
    assert_eq!(s.ramdisks, [ramdisk]);
    // The kernel's end and the ramdisk's start share a chunk.
    let total = s.images[0].len() + MAX_IMAGE_CHUNK * 2;
    assert_eq!(s.chunks_per_upload, [total.div_ceil(MAX_IMAGE_CHUNK)]);
}

#[test]
fn create_errors_from_the_agent_exit_1_with_its_message() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let big = guest_config(dir.path(), "big", 4096, 64);
    assert_eq!(
        fails(&agent.path, &["create", big.to_str().unwrap()]),
        (
            EXIT_REFUSED,
            "not enough memory: the domain needs 4096 MiB but only 192 MiB is free".into()
        )
    );
    let web = guest_config(dir.path(), "web", 16, 64);
    ok(&agent.path, &["create", web.to_str().unwrap()]);
    assert_eq!(
        fails(&agent.path, &["create", web.to_str().unwrap()]),
        (EXIT_REFUSED, "a domain named 'web' already exists".into())
    );
}

#[test]
fn bad_config_or_kernel_exits_3_and_sends_nothing() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "g", 16, 64);
    std::fs::write(dir.path().join("g.elf"), b"MZ not an ELF").unwrap();
    let (code, message) = fails(&agent.path, &["create", config.to_str().unwrap()]);
    assert_eq!(code, EXIT_CONFIG);
    assert!(
        message.contains("g.toml:2:10: field `kernel`:"),
        "{message}"
    );
    assert!(
        message.contains("not a little-endian ELF image"),
        "{message}"
    );
    // Checked before connecting: no agent needed.
    let (code, _) = fails(
        Path::new("/nonexistent/socket"),
        &["create", config.to_str().unwrap()],
    );
    assert_eq!(code, EXIT_CONFIG);
    assert!(agent.state.lock().unwrap().chunks_per_upload.is_empty());
}

#[test]
fn life_cycle_commands_and_dom0_protection() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    ok(
        &agent.path,
        &[
            "create",
            guest_config(dir.path(), "g", 8, 64).to_str().unwrap(),
        ],
    );
    assert_eq!(ok(&agent.path, &["pause", "g"]), "Paused domain 'g'.\n");
    assert_eq!(agent.domain("g").unwrap().state, DomainState::Paused);
    assert_eq!(ok(&agent.path, &["unpause", "1"]), "Unpaused domain 1.\n");
    assert_eq!(agent.domain("g").unwrap().state, DomainState::Running);
    assert_eq!(
        ok(&agent.path, &["shutdown", "-F", "-w", "g"]),
        "Asked domain 'g' to power off.\nShut down: domain 'g' (poweroff).\n"
    );
    assert_eq!(
        fails(&agent.path, &["unpause", "g"]),
        (
            EXIT_REFUSED,
            "cannot unpause domain 1: it is shutdown (poweroff)".into()
        )
    );
    assert_eq!(
        fails(&agent.path, &["destroy", "0"]),
        (
            EXIT_REFUSED,
            "cannot destroy dom0: it is the privileged domain that serves these requests".into()
        )
    );
    assert_eq!(
        fails(&agent.path, &["pause", "nope"]).1,
        "unknown domain 'nope'"
    );
    assert!(agent.domain("dom0").is_some());
}

#[test]
fn console_shows_history_forwards_input_and_detaches_on_ctrl_bracket() {
    let agent = FakeAgent::start();
    let (out, result) =
        dom0ctl_with_input(&agent.path, &["console", "dom0"], b"ls\npwd\n\x1dignored\n");
    result.unwrap();
    assert_eq!(out, "hello from dom0\necho: ls\necho: pwd\n");
    let (out, result) = dom0ctl(&agent.path, &["console", "--no-follow", "0"]);
    result.unwrap();
    assert_eq!(out, "hello from dom0\n");
    assert!(agent.state.lock().unwrap().errors.is_empty());
}

#[test]
fn create_with_console_attaches_to_the_new_domain() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "hello", 8, 64);
    let (out, result) = dom0ctl_with_input(
        &agent.path,
        &["create", "-c", config.to_str().unwrap()],
        b"\x1d",
    );
    result.unwrap();
    assert_eq!(out, "Created domain 'hello' (domid 1).\nhello from hello\n");
}

#[test]
fn volumes_are_created_listed_and_deleted_with_clear_errors() {
    let agent = FakeAgent::start();
    let socket = &agent.path;
    assert_eq!(
        ok(socket, &["volume", "create", "data", "4MiB"]),
        "Created volume 'data' (4MiB).\n"
    );
    let table = ok(socket, &["volume", "list"]);
    assert!(
        table.starts_with("Name  Size  FirstLBA  Attached\ndata  4MiB      2048  -\n"),
        "{table}"
    );
    assert!(
        table.ends_with("Disk 16MiB, largest free space 10MiB.\n"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(socket, &["volume", "list", "--json"])).unwrap();
    assert_eq!(json["volumes"][0]["bytes"], 4u64 << 20);
    let (code, text) = fails(socket, &["volume", "create", "data", "1MiB"]);
    assert_eq!(
        (code, text.as_str()),
        (1, "a volume named 'data' already exists")
    );
    let (code, text) = fails(socket, &["volume", "create", "big", "11M"]);
    assert_eq!(
        (code, text.as_str()),
        (
            1,
            "dom0's disk is full: no free space for 11MiB; the largest free space is 10MiB"
        )
    );
    let (code, text) = fails(socket, &["volume", "create", "huge", "1GiB"]);
    assert_eq!(
        (code, text.as_str()),
        (
            1,
            "1GiB is too large: dom0's disk holds at most 14MiB of volumes"
        )
    );
    assert_eq!(
        ok(socket, &["volume", "delete", "data"]),
        "Deleted volume 'data'.\n"
    );
    let (code, text) = fails(socket, &["volume", "delete", "data"]);
    assert_eq!(
        (code, text.as_str()),
        (1, "no volume named 'data' (see `dom0ctl volume list`)")
    );
}

#[test]
fn dmesg_prints_the_log() {
    let agent = FakeAgent::start();
    assert_eq!(
        ok(&agent.path, &["dmesg"]),
        "(XEN) xen-core 0.1.0\n(XEN) dom0 built\n"
    );
}

#[test]
fn nothing_listening_exits_4_and_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let (code, message) = fails(&missing, &["list"]);
    assert_eq!(code, EXIT_NOT_LISTENING);
    assert!(message.contains("cargo xtask up"), "{message}");
    assert!(message.contains("No such file"), "{message}");
    // A socket file nobody listens on any more.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let (code, message) = fails(&stale, &["info"]);
    assert_eq!(code, EXIT_NOT_LISTENING);
    assert!(message.contains("Connection refused"), "{message}");
}

#[test]
fn version_mismatch_exits_5_and_names_both_versions() {
    let agent = FakeAgent::start();
    agent.state.lock().unwrap().version = ProtocolVersion { major: 9, minor: 1 };
    let (code, message) = fails(&agent.path, &["list"]);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.contains(&format!(
            "the client speaks {}, the management agent speaks 9.1",
            mgmt::PROTOCOL_VERSION
        )),
        "{message}"
    );
}

#[test]
fn silent_agent_times_out_with_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut argv = vec![
        "dom0ctl",
        "--connect",
        path.to_str().unwrap(),
        "--timeout",
        "1",
        "list",
    ];
    let cli = Cli::try_parse_from(argv.drain(..)).unwrap();
    let keep = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let input = Input {
        reader: Box::new(io::empty()),
        terminal: false,
    };
    let e = run(cli, &mut Vec::new(), input).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_PROTOCOL);
    assert!(
        e.to_string().contains(
            "the management agent did not answer within 1 s: it is busy serving another client"
        ),
        "{e}"
    );
    drop(keep.join());
}

/// A frame decoder with the bytes it has not taken yet.
#[derive(Default)]
struct Incoming {
    decoder: mgmt::Decoder,
    unread: Vec<u8>,
}

/// The next server message on `stream`.
fn read_message(stream: &mut UnixStream, incoming: &mut Incoming) -> mgmt::ServerMessage {
    loop {
        let mut input = &incoming.unread[..];
        let item = incoming.decoder.decode(&mut input);
        let used = incoming.unread.len() - input.len();
        incoming.unread.drain(..used);
        if let Some(item) = item {
            return mgmt::decode_server_message(&item.unwrap()).unwrap();
        }
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        incoming.unread.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn garbage_gets_an_error_reply_and_the_connection_stays_usable() {
    let agent = FakeAgent::start();
    let mut stream = UnixStream::connect(&agent.path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut decoder = Incoming::default();
    // Reported when the line goes idle (the agent's read timeout).
    stream
        .write_all(b"\x00\xffthis is not a frame\xf5XC")
        .unwrap();
    assert_eq!(
        read_message(&mut stream, &mut decoder),
        mgmt::ServerMessage::Rejected(MgmtError::BadFrame(mgmt::FrameError::Garbage {
            skipped: 24
        }))
    );
    let hello = mgmt::ClientMessage {
        session: 0,
        id: 7,
        request: mgmt::Request::Hello {
            version: mgmt::PROTOCOL_VERSION,
            nonce: 42,
        },
    };
    stream
        .write_all(&mgmt::encode_message(&hello).unwrap())
        .unwrap();
    assert!(matches!(
        read_message(&mut stream, &mut decoder),
        mgmt::ServerMessage::Welcome {
            nonce: 42,
            result: Ok(_)
        }
    ));
}

/// What an earlier client can leave on the line: half a frame, the
/// agent's complaints, replies and events of its session, its `Welcome`.
fn stale_bytes() -> Vec<u8> {
    use mgmt::{encode_message, Event, Reply, ServerMessage};
    let mut bytes = mgmt::encode_frame(&[7u8; 100]).unwrap()[..40].to_vec();
    for m in [
        ServerMessage::Rejected(MgmtError::BadFrame(mgmt::FrameError::BadCrc)),
        ServerMessage::Reply {
            session: 5,
            id: 1,
            result: Ok(Reply::ChunkAccepted { received: 16384 }),
        },
        ServerMessage::Reply {
            session: 5,
            id: 2,
            result: Err(MgmtError::HandshakeRequired),
        },
        ServerMessage::Event {
            session: 5,
            event: Event::ConsoleOutput {
                domid: 1,
                data: b"not yours".to_vec(),
            },
        },
        ServerMessage::Welcome {
            nonce: 1,
            result: Err(MgmtError::HandshakeRequired),
        },
    ] {
        bytes.extend(encode_message(&m).unwrap());
    }
    bytes.extend_from_slice(b"\xf5XC2 junk");
    bytes
}

#[test]
fn what_an_earlier_client_left_on_the_line_never_fails_the_next() {
    let agent = FakeAgent::start();
    agent.state.lock().unwrap().stale = stale_bytes();
    assert!(ok(&agent.path, &["list"]).starts_with("Name"));
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 16, MAX_IMAGE_CHUNK + 1);
    assert_eq!(
        ok(&agent.path, &["create", config.to_str().unwrap()]),
        "Created domain 'web' (domid 1).\n"
    );
    let (out, result) = dom0ctl_with_input(&agent.path, &["console", "web"], b"hi\n\x1d");
    result.unwrap();
    assert_eq!(out, "hello from web\necho: hi\n");
}

/// A `create` killed mid-upload leaves an upload in its session; the
/// next client's `Hello` ends that session, so the upload is gone and
/// nothing is created from it.
#[test]
fn an_abandoned_upload_is_dropped_by_the_next_session() {
    use mgmt::{ClientMessage, Request, ServerMessage};
    let agent = FakeAgent::start();
    let mut stream = UnixStream::connect(&agent.path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut decoder = Incoming::default();
    let send = |stream: &mut UnixStream, session, id, request| {
        let m = ClientMessage {
            session,
            id,
            request,
        };
        stream
            .write_all(&mgmt::encode_message(&m).unwrap())
            .unwrap();
    };
    send(
        &mut stream,
        0,
        1,
        Request::Hello {
            version: mgmt::PROTOCOL_VERSION,
            nonce: 9,
        },
    );
    let session = match read_message(&mut stream, &mut decoder) {
        ServerMessage::Welcome { result: Ok(w), .. } => w.session,
        other => panic!("{other:?}"),
    };
    let config = mgmt::DomainConfig {
        name: "half".into(),
        memory_mib: 8,
        vcpus: 1,
        cmdline: String::new(),
        disks: Vec::new(),
        vifs: vec![],
        sched: Default::default(),
    };
    send(
        &mut stream,
        session,
        2,
        Request::CreateBegin {
            config,
            image_len: 10,
            image_crc32: 0,
        },
    );
    send(
        &mut stream,
        session,
        3,
        Request::ImageChunk {
            offset: 0,
            data: vec![0; 5],
        },
    );
    for _ in 0..2 {
        read_message(&mut stream, &mut decoder);
    }
    drop(stream);
    // An innocent client, then someone trying to commit the old upload.
    assert!(ok(&agent.path, &["list"]).contains("dom0"));
    let mut stream = UnixStream::connect(&agent.path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut decoder = Incoming::default();
    send(&mut stream, session, 4, Request::CreateCommit);
    assert_eq!(
        read_message(&mut stream, &mut decoder),
        ServerMessage::Reply {
            session,
            id: 4,
            result: Err(MgmtError::HandshakeRequired)
        }
    );
    assert!(agent.domain("half").is_none());
    assert_eq!(agent.state.lock().unwrap().free_kib, 192 * 1024);
}

#[test]
fn a_request_reported_broken_on_the_way_is_sent_again() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 16, MAX_IMAGE_CHUNK * 2 + 100);
    agent.state.lock().unwrap().break_chunks = 2;
    assert_eq!(
        ok(&agent.path, &["create", config.to_str().unwrap()]),
        "Created domain 'web' (domid 1).\n"
    );
    {
        let s = agent.state.lock().unwrap();
        assert_eq!(s.chunks_per_upload, [3]);
        assert_eq!(
            s.images[0],
            std::fs::read(dir.path().join("web.elf")).unwrap()
        );
    }
    // Broken every time: a clear error, not a hang.
    agent.state.lock().unwrap().break_chunks = 100;
    let other = guest_config(dir.path(), "db", 16, 100);
    let (code, message) = fails(&agent.path, &["create", other.to_str().unwrap()]);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.contains("our requests keep arriving broken"),
        "{message}"
    );
    assert!(message.contains("frame cut short"), "{message}");
}

#[test]
fn pauses_nest_as_in_xl_and_unpause_reports_the_real_state() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "g", 8, 64);
    ok(&agent.path, &["create", config.to_str().unwrap()]);
    assert_eq!(
        fails(&agent.path, &["unpause", "g"]),
        (
            EXIT_REFUSED,
            "domain 1 is not paused (it is running); there is nothing to unpause".into()
        )
    );
    assert_eq!(ok(&agent.path, &["pause", "g"]), "Paused domain 'g'.\n");
    assert!(ok(&agent.path, &["pause", "g"])
        .starts_with("Paused domain 'g' again: it was paused already"));
}

#[test]
fn a_full_connection_queue_is_reported_as_busy_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    // Nobody accepts: fill the queue as other clients would.
    let mut queued = Vec::new();
    while let Some(s) = nonblocking_connect(&path) {
        queued.push(s);
        assert!(queued.len() < 10_000, "the queue never filled");
    }
    let started = std::time::Instant::now();
    let (code, message) = fails(&path, &["--timeout", "1", "list"]);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.contains("the management agent is busy"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A connection if the queue takes one more without waiting.
fn nonblocking_connect(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK,
        None,
    )
    .unwrap();
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &UnixAddr::new(path).unwrap(),
    )
    .ok()?;
    Some(fd)
}

#[test]
fn a_client_behind_another_says_the_agent_is_busy() {
    let agent = FakeAgent::start();
    // The first client holds the line (the fake serves one at a time).
    let _first = UnixStream::connect(&agent.path).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let (code, message) = fails(&agent.path, &["--timeout", "3", "list"]);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(message.contains("busy serving another client"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_agent_of_protocol_1_gets_a_version_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let old = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // What a protocol-1 agent answers a frame it cannot read.
        let rejected = [2u8, 3, 0, 12];
        s.write_all(&mgmt::frame::encode_v1_frame(&rejected).unwrap())
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let (code, message) = fails(&path, &["list"]);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.contains(&format!(
            "the client speaks {}, the management agent speaks 1.0",
            mgmt::PROTOCOL_VERSION
        )),
        "{message}"
    );
    drop(old);
}

// --- TCP -------------------------------------------------------------------

/// `dom0ctl --connect tcp://… --key-file KEY ARGS…` against `agent`.
fn tcp_args<'a>(_agent: &'a FakeAgent, key_file: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--key-file", key_file.to_str().unwrap()];
    all.extend_from_slice(args);
    all
}

#[test]
fn over_tcp_with_the_key_every_command_works() {
    let agent = FakeAgent::start_tcp();
    let url = Path::new(&agent.url);
    let key = agent.key_file.clone();
    let out = ok(url, &tcp_args(&agent, &key, &["info"]));
    assert!(
        out.contains(&format!("mgmt_protocol : {}", mgmt::PROTOCOL_VERSION)),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 32, MAX_IMAGE_CHUNK * 2 + 100);
    let created = ok(
        url,
        &tcp_args(&agent, &key, &["create", config.to_str().unwrap()]),
    );
    assert_eq!(created, "Created domain 'web' (domid 1).\n");
    assert_eq!(
        agent.state.lock().unwrap().images[0],
        std::fs::read(dir.path().join("web.elf")).unwrap()
    );
    assert!(ok(url, &tcp_args(&agent, &key, &["list"])).contains("web    1  running"));
    ok(url, &tcp_args(&agent, &key, &["destroy", "web"]));
    assert!(agent.domain("web").is_none());
    assert_eq!(agent.state.lock().unwrap().refused, 0);
}

#[test]
fn over_tcp_a_wrong_key_is_refused_with_exit_5() {
    let agent = FakeAgent::start_tcp();
    let wrong = agent.file("wrong.key");
    std::fs::write(&wrong, "17".repeat(32)).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, message) = fails(Path::new(&agent.url), &tcp_args(&agent, &wrong, &["list"]));
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.starts_with("authentication refused by the management agent"),
        "{message}"
    );
    assert_eq!(agent.state.lock().unwrap().refused, 1);
}

#[test]
fn over_tcp_a_bad_key_file_exits_3_before_connecting() {
    let agent = FakeAgent::start_tcp();
    let url = Path::new(&agent.url);
    let missing = agent.file("missing.key");
    let (code, message) = fails(url, &tcp_args(&agent, &missing, &["list"]));
    assert_eq!(code, EXIT_CONFIG);
    assert!(message.contains("does not exist"), "{message}");
    let open = agent.file("open.key");
    std::fs::write(&open, "17".repeat(32)).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, message) = fails(url, &tcp_args(&agent, &open, &["list"]));
    assert_eq!(code, EXIT_CONFIG);
    assert!(message.contains("mode is 0644"), "{message}");
    // Nothing reached the agent.
    assert_eq!(agent.state.lock().unwrap().refused, 0);
}

/// Regression (`linux-create` in CI): a connection dom0 refused, which
/// QEMU's port forward shows as closed before the challenge, failed the
/// command at once.
#[test]
fn over_tcp_a_connection_closed_before_the_challenge_is_tried_again() {
    let agent = FakeAgent::start_tcp_closing_first(3);
    let url = Path::new(&agent.url);
    let out = ok(url, &tcp_args(&agent, &agent.key_file, &["list"]));
    assert!(out.starts_with("Name"), "{out}");
    assert_eq!(agent.state.lock().unwrap().closed_at_once, 3);
}

#[test]
fn over_tcp_an_agent_that_closes_every_connection_exits_5_within_the_timeout() {
    let agent = FakeAgent::start_tcp_closing_first(usize::MAX);
    let url = Path::new(&agent.url);
    let args = tcp_args(&agent, &agent.key_file, &["--timeout", "1", "list"]);
    let (code, message) = fails(url, &args);
    assert_eq!(code, EXIT_PROTOCOL);
    assert!(
        message.contains("closed every connection before its challenge for 1 s")
            && message.contains("at most 4 clients at once"),
        "{message}"
    );
    assert!(agent.state.lock().unwrap().closed_at_once > 1);
}

#[test]
fn over_tcp_nothing_listening_exits_4() {
    let agent = FakeAgent::start_tcp();
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let (code, message) = fails(
        Path::new(&url),
        &tcp_args(&agent, &agent.key_file, &["list"]),
    );
    assert_eq!(code, EXIT_NOT_LISTENING);
    assert!(message.contains(&url), "{message}");
}

#[test]
fn network_commands_attach_list_show_and_detach() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 8, 100);
    ok(&agent.path, &["create", config.to_str().unwrap()]);
    let mac = vswitch::MacDisplay(&vswitch::default_mac("web", 0)).to_string();
    assert_eq!(
        ok(&agent.path, &["network-attach", "web"]),
        format!("Attached vif 0 to domain 1: MAC {mac}, access 1, switch port 0.\n")
    );
    assert_eq!(
        ok(
            &agent.path,
            &[
                "network-attach",
                "1",
                "--trunk",
                "10,20",
                "--mac",
                "00:16:3e:00:00:0a"
            ]
        ),
        "Attached vif 1 to domain 1: MAC 00:16:3e:00:00:0a, trunk 10,20, switch port 1.\n"
    );
    assert_eq!(
        ok(&agent.path, &["network-list", "web"]),
        format!(
            "\
Name  Domid  Idx  Mac Addr.          VLAN         BE state      Port
web       1    0  {mac}  access 1     2 (InitWait)     0
web       1    1  00:16:3e:00:00:0a  trunk 10,20  2 (InitWait)     1
"
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&agent.path, &["network-list", "--json"])).unwrap();
    assert_eq!(json[1]["vlan"]["trunk"][0], 10);
    let show: serde_json::Value =
        serde_json::from_str(&ok(&agent.path, &["vswitch", "show", "--json"])).unwrap();
    assert_eq!(show["ports"][1]["name"], "vif1.1");
    assert_eq!(show["learned"].as_array().unwrap().len(), 3, "{show}");
    // The same MAC again in a VLAN it is in: refused with the switch's reason.
    let (code, message) = fails(
        &agent.path,
        &[
            "network-attach",
            "web",
            "--vlan",
            "10",
            "--mac",
            "00:16:3e:00:00:0a",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(
        message,
        "network: domain 1: MAC 00:16:3e:00:00:0a is already another vif's in VLAN 10"
    );
    // Bad arguments never reach the agent.
    let (code, message) = fails(&agent.path, &["network-attach", "web", "--vlan", "4095"]);
    assert_eq!(code, 1);
    assert!(
        message.contains("VLAN 4095 is not a VLAN id (1 to 4094)"),
        "{message}"
    );
    let (code, message) = fails(&agent.path, &["network-detach", "web", "eth0"]);
    assert_eq!(code, 1);
    assert!(message.contains("neither a devid"), "{message}");
    assert_eq!(
        ok(&agent.path, &["network-detach", "web", "00:16:3e:00:00:0a"]),
        "Detached the vif with MAC 00:16:3e:00:00:0a from domain 'web'.\n"
    );
    let (code, message) = fails(&agent.path, &["network-detach", "web", "1"]);
    assert_eq!(code, 1);
    assert_eq!(
        message,
        "domain 1 has no vif 1 (see `dom0ctl network-list 1`)"
    );
    let (code, message) = fails(&agent.path, &["network-attach", "nope"]);
    assert_eq!((code, message.as_str()), (1, "unknown domain 'nope'"));
}

#[test]
fn mem_set_and_mem_max_as_xl() {
    let agent = FakeAgent::start();
    let dir = tempfile::tempdir().unwrap();
    let config = guest_config(dir.path(), "web", 32, 64);
    ok(&agent.path, &["create", config.to_str().unwrap()]);
    assert_eq!(
        ok(&agent.path, &["mem-set", "web", "24m"]),
        "Set the memory target of domain 'web' to 24 MiB.\n"
    );
    // The fake's guest balloons at once: list and info follow.
    assert!(ok(&agent.path, &["list", "web"]).contains("web    1  running        24"));
    assert!(ok(&agent.path, &["info"]).contains("free_memory   : 168 MiB\n"));
    // xl's default unit is MiB.
    ok(&agent.path, &["mem-set", "1", "32"]);
    assert!(ok(&agent.path, &["info"]).contains("free_memory   : 160 MiB\n"));
    assert_eq!(
        fails(&agent.path, &["mem-set", "web", "64m"]),
        (
            EXIT_REFUSED,
            "cannot set the memory of domain 1 to 64 MiB: its maximum is 32 MiB (raise it \
             first with `dom0ctl mem-max 1 SIZE`)"
                .into()
        )
    );
    assert_eq!(
        ok(&agent.path, &["mem-max", "web", "1g"]),
        "Set the maximum memory of domain 'web' to 1024 MiB.\n"
    );
    ok(&agent.path, &["mem-set", "web", "64m"]);
    assert_eq!(
        fails(&agent.path, &["mem-max", "web", "48m"]).1,
        "cannot set the maximum memory of domain 1 to 48 MiB: its target is 64 MiB (lower it \
         first with `dom0ctl mem-set 1 SIZE`)"
    );
    assert_eq!(
        fails(&agent.path, &["mem-set", "web", "512k"]).1,
        "cannot give domain 1 0.5 MiB: the least a domain may have is 1 MiB"
    );
    assert_eq!(
        fails(&agent.path, &["mem-set", "nope", "16m"]),
        (EXIT_REFUSED, "unknown domain 'nope'".into())
    );
    assert_eq!(
        fails(&agent.path, &["mem-set", "0", "16m"]).1,
        "cannot set the memory of dom0: it is the privileged domain that serves these requests"
    );
    // A size xl would not read never reaches the agent.
    let argv = ["dom0ctl", "mem-set", "web", "12mb"];
    let e = Cli::try_parse_from(argv).unwrap_err().to_string();
    assert!(e.contains("invalid memory size: 12mb"), "{e}");
}
