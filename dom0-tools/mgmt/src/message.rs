//! The messages: what the client (dom0ctl) asks and what the server (the
//! dom0 management agent) answers. Each is one postcard payload in one
//! frame.
//!
//! Sessions (protocol 2): the line carries no connect or disconnect
//! signal (COM2 is handed by QEMU to whichever client connects), so a
//! client is known by its session. Its first request is
//! [`Request::Hello`] with a fresh random `nonce`; the server answers with
//! [`ServerMessage::Welcome`] echoing the nonce and, if the versions are
//! compatible, a new [`SessionId`]. Every `Hello` ends the previous
//! session (its upload and console stream are dropped), whether or not
//! the new one opens. Every later [`ClientMessage`] carries the session;
//! a request without the current session gets
//! [`MgmtError::HandshakeRequired`].
//!
//! Every request carries an id chosen by the client; the server answers
//! each with exactly one [`ServerMessage::Reply`] carrying that id and
//! the request's session, in request order. Between replies the server may
//! send [`ServerMessage::Event`]s of the current session (console output
//! while a console is attached), and for bytes it could not read as a
//! frame [`ServerMessage::Dropped`] with the session that was current (the
//! client sends the lost request again) or, with no session,
//! [`ServerMessage::Rejected`].
//!
//! A client resynchronises at connect: whatever the line still holds
//! from an earlier client (replies to its requests, errors about its half
//! frame) comes before the `Welcome` that echoes this client's nonce, and
//! is discarded. After the `Welcome`, a client ignores every message
//! that does not carry its session.
//!
//! Creating a domain is a chunked upload: `CreateBegin` (config, image
//! length and CRC-32), then `ImageChunk`s in order, each at most
//! [`MAX_IMAGE_CHUNK`] bytes, then `CreateCommit`. The server buffers the
//! image and builds nothing before the commit; the upload belongs to its
//! session, so a client that goes away midway leaves nothing behind and
//! no other client can commit it ([`crate::Upload`] keeps these rules).
//!
//! A kernel larger than that buffer, or one with a ramdisk, is streamed
//! (2.8): `CreateStreamBegin` (config, the kernel's and ramdisk's lengths
//! and CRC-32s) makes the server create the domain, paused, with its
//! memory; the `ImageChunk`s (the kernel's bytes, then the ramdisk's, one
//! offset space) go straight into the domain's memory as they arrive;
//! `CreateCommit` checks the checksums, finishes and starts the domain.
//! A bad chunk, a failed check, `CreateAbort` or the session's end
//! destroys the half-built domain ([`crate::StreamUpload`] keeps the
//! order and checksums).
//!
//! Compatibility: postcard encodes an enum variant by its index, so new
//! variants are only ever appended (a minor version step).

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::auth::{Nonce, Tag};
use crate::network::{Mac, VifInfo, VifRef, VlanMode, VswitchSnapshot};
use crate::{
    BlockDevice, CountersSnapshot, CpuSet, DomId, DomainConfig, DomainCounters, DomainRef,
    DomainSummary, HostInfo, MgmtError, ProtocolVersion, SchedCredit, VolumeInfo, VolumeTable,
};

/// Largest kernel image an upload may announce, bytes.
pub const MAX_IMAGE_BYTES: u32 = 16 << 20;
/// Largest kernel a streamed create (`CreateStreamBegin`) may announce,
/// bytes (Debian's `vmlinux` is 63 MiB).
pub const MAX_KERNEL_BYTES: u32 = 128 << 20;
/// Largest ramdisk a streamed create may announce, bytes (the guest's
/// memory bounds it too).
pub const MAX_RAMDISK_BYTES: u32 = 128 << 20;
/// Largest `ImageChunk` data, bytes (leaves room for the rest of the frame).
pub const MAX_IMAGE_CHUNK: usize = 16 * 1024;
/// Largest console history in a [`Reply::ConsoleAttached`], bytes (the
/// newest output is kept).
pub const MAX_CONSOLE_HISTORY: usize = 16 * 1024;
/// Largest `ConsoleInput` or [`Event::ConsoleOutput`] data, bytes.
pub const MAX_CONSOLE_DATA: usize = 4 * 1024;
/// Largest [`Reply::Dmesg`] text, bytes (the newest lines are kept).
pub const MAX_DMESG_BYTES: usize = 24 * 1024;

/// Largest [`Request::Xenstore`], [`Reply::Xenstore`] or
/// [`Event::XenstoreOutput`] data, bytes: several whole `xsd_sockmsg`s
/// (each at most 16 + `XENSTORE_PAYLOAD_MAX` 4096 bytes).
pub const MAX_XENSTORE_DATA: usize = 16 * 1024;

/// A session, as [`ServerMessage::Welcome`] opened it. The server never
/// opens session 0: a client sends 0 before it has one (with `Hello`).
pub type SessionId = u32;

/// A request with its session and the id its reply will carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMessage {
    /// The session the request belongs to (0 with `Hello`).
    pub session: SessionId,
    /// Chosen by the client; [`ServerMessage::Reply`] echoes it.
    pub id: u32,
    /// What is asked.
    pub request: Request,
}

/// What a client can ask. Domain-naming requests take a [`DomainRef`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Version handshake and a new session; must be first. Answered by
    /// [`ServerMessage::Welcome`], not a `Reply`.
    Hello {
        /// The client's protocol version.
        version: ProtocolVersion,
        /// Fresh random number the `Welcome` echoes, so the client knows
        /// which `Welcome` is its own.
        nonce: u64,
    },
    /// Host and hypervisor facts. → [`Reply::Info`].
    Info,
    /// Every domain, by domid. → [`Reply::List`].
    List,
    /// One domain. → [`Reply::Domain`].
    DomainInfo {
        /// Which.
        domain: DomainRef,
    },
    /// Starts an upload (dropping any unfinished one on this connection).
    /// The server checks the config and size now. → [`Reply::UploadReady`].
    CreateBegin {
        /// The new domain.
        config: DomainConfig,
        /// Kernel image length, bytes, at most [`MAX_IMAGE_BYTES`].
        image_len: u32,
        /// CRC-32 of the whole image ([`crate::crc32`]).
        image_crc32: u32,
    },
    /// The next piece of the image. → [`Reply::ChunkAccepted`].
    ImageChunk {
        /// Where it goes: the number of bytes sent before it.
        offset: u32,
        /// At most [`MAX_IMAGE_CHUNK`] bytes.
        data: Vec<u8>,
    },
    /// Builds and starts the domain from the uploaded image, all or
    /// nothing. → [`Reply::Created`].
    CreateCommit,
    /// Drops the upload. → [`Reply::Done`].
    CreateAbort,
    /// Destroys a domain. → [`Reply::Done`].
    Destroy {
        /// Which.
        domain: DomainRef,
    },
    /// Pauses a domain; pauses nest, as Xen's and xl's do (each needs
    /// its own unpause). → [`Reply::Paused`].
    Pause {
        /// Which.
        domain: DomainRef,
    },
    /// Takes back one pause of a paused domain ([`MgmtError::NotPaused`]
    /// if it is not paused). → [`Reply::Unpaused`].
    Unpause {
        /// Which.
        domain: DomainRef,
    },
    /// Shuts a domain down through the hypervisor
    /// (`SCHEDOP_remote_shutdown`) without asking the guest: `dom0ctl
    /// shutdown -F`; dom0 with power-off stops the machine. (A guest is
    /// asked through its `control/shutdown` key over [`Request::Xenstore`]
    /// instead.) → [`Reply::Done`].
    Shutdown {
        /// Which.
        domain: DomainRef,
        /// What the guest is asked to do.
        kind: ShutdownKind,
    },
    /// Attaches this connection to a domain's console (one at a time).
    /// → [`Reply::ConsoleAttached`] with the history; then, if `follow`,
    /// [`Event::ConsoleOutput`] for new output until `ConsoleDetach` or
    /// [`Event::ConsoleClosed`].
    ConsoleAttach {
        /// Which.
        domain: DomainRef,
        /// Stream new output after the history.
        follow: bool,
    },
    /// Input for the attached console, at most [`MAX_CONSOLE_DATA`]
    /// bytes. → [`Reply::Done`].
    ConsoleInput {
        /// The bytes, as typed.
        data: Vec<u8>,
    },
    /// Stops the console stream. → [`Reply::Done`], after which no
    /// more console events come.
    ConsoleDetach,
    /// The hypervisor's log ring. → [`Reply::Dmesg`].
    Dmesg,
    /// Every domain's counters (CPU time, VM exits, hypercalls), for
    /// `list -l`. → [`Reply::Stats`]. Since 2.1.
    Stats,
    /// The answer to [`ServerMessage::Challenge`] on a TCP connection
    /// (protocol 2.2, [`crate::auth`]): the first and only message before
    /// the server's [`ServerMessage::Authenticated`]. Sent with session 0.
    Authenticate {
        /// Fresh random bytes of the client.
        client_nonce: Nonce,
        /// [`crate::auth::client_proof`] of the challenge and `client_nonce`.
        client_proof: Tag,
    },
    /// Raw `xsd_sockmsg` bytes (Xen's `io/xs_wire.h`; whole or partial
    /// messages, at most [`MAX_XENSTORE_DATA`]) for this session's own
    /// store connection, opened by the first such request and closed
    /// when the session ends. The connection is privileged (domain 0),
    /// as a xenstored socket client. → [`Reply::Xenstore`] with what
    /// the store answered so far; later output (watch events) comes as
    /// [`Event::XenstoreOutput`]. Since 2.3.
    Xenstore {
        /// The bytes, as a xenstored socket client writes them.
        data: Vec<u8>,
    },
    /// Creates a volume on dom0's disk (`dom0ctl volume create`): a GPT
    /// partition of `bytes` rounded up to whole MiB, zeroed.
    /// → [`Reply::Volume`]. Since 2.4.
    VolumeCreate {
        /// Its name ([`volumes::check_name`]).
        name: String,
        /// Its size, bytes.
        bytes: u64,
    },
    /// The volumes. → [`Reply::Volumes`]. Since 2.4.
    VolumeList,
    /// Deletes a volume; refused while it is attached. → [`Reply::Done`].
    /// Since 2.4.
    VolumeDelete {
        /// Which.
        name: String,
    },
    /// Attaches a volume to a domain as a virtual block device
    /// (`dom0ctl block-attach`, xl's `block-attach`).
    /// → [`Reply::BlockAttached`]. Since 2.4.
    BlockAttach {
        /// The guest.
        domain: DomainRef,
        /// The volume.
        volume: String,
        /// The device name the guest sees (`xvda`).
        vdev: String,
        /// Read-only.
        read_only: bool,
    },
    /// Detaches a domain's virtual block device. → [`Reply::Done`].
    /// Since 2.4.
    BlockDetach {
        /// The guest.
        domain: DomainRef,
        /// The device name it was attached as.
        vdev: String,
    },
    /// The attached block devices, of one domain or all.
    /// → [`Reply::BlockDevices`]. Since 2.4.
    BlockList {
        /// Only this domain's.
        domain: Option<DomainRef>,
    },
    /// Gives a running domain a new vif (`xl network-attach`): netback's
    /// backend and a vswitch port; the guest's netfront finds it through
    /// the store. → [`Reply::VifAttached`]. Since 2.5.
    NetworkAttach {
        /// Which.
        domain: DomainRef,
        /// The vif's MAC; `None`: derived from the domain's name and the
        /// devid ([`vswitch::default_mac`]).
        mac: Option<Mac>,
        /// Its VLAN membership.
        vlan: VlanMode,
    },
    /// Takes a vif away (`xl network-detach`): its backend closes, its
    /// port leaves the vswitch. → [`Reply::Done`]. Since 2.5.
    NetworkDetach {
        /// Which domain.
        domain: DomainRef,
        /// Which of its vifs.
        vif: VifRef,
    },
    /// The vifs of one domain, or of all (`xl network-list`).
    /// → [`Reply::Vifs`]. Since 2.5.
    NetworkList {
        /// Which; `None`: every domain.
        domain: Option<DomainRef>,
    },
    /// The vswitch: ports, learned MACs, counters. → [`Reply::Vswitch`].
    /// Since 2.5.
    VswitchShow,
    /// Sets a domain's memory target (`xl mem-set`): `memory/target` in
    /// its store home, which its balloon driver follows, and the
    /// hypervisor's maximum to the same (xl's enforcing
    /// `libxl_set_memory_target`). Refused above `memory/static-max`
    /// ([`MgmtError::MemoryAboveMax`]) and below
    /// [`crate::MEM_FLOOR_KIB`]. → [`Reply::Done`]. Since 2.6.
    MemSet {
        /// Which.
        domain: DomainRef,
        /// The new target, KiB.
        target_kib: u64,
    },
    /// Sets a domain's maximum memory (`xl mem-max`,
    /// `libxl_domain_setmaxmem`): the hypervisor's limit
    /// (`CONTROL_OP_SET_MAX_MEM`) and `memory/static-max`. Refused below
    /// the current `memory/target` ([`MgmtError::MaxBelowTarget`]).
    /// → [`Reply::Done`]. Since 2.6.
    MemMax {
        /// Which.
        domain: DomainRef,
        /// The new maximum, KiB.
        max_kib: u64,
    },
    /// Per-vCPU and per-domain counters of one domain or all, with the
    /// hypervisor's system time (`vcpu-list`, `top`).
    /// → [`Reply::Counters`]. Since 2.7.
    Counters {
        /// Which; `None`: every domain.
        domain: Option<DomainRef>,
    },
    /// Sets a vCPU's hard affinity (`xl vcpu-pin`). → [`Reply::VcpuPinned`].
    /// Since 2.7.
    VcpuPin {
        /// The domain.
        domain: DomainRef,
        /// Its vCPU.
        vcpu: u32,
        /// The pCPUs it may run on; must include an online one.
        cpus: CpuSet,
    },
    /// Reads, and with `weight` or `cap` sets, credit scheduler
    /// parameters (`xl sched-credit`): of one domain, or (reading only)
    /// of all. → [`Reply::SchedCredit`]. Since 2.7.
    SchedCredit {
        /// Which; `None`: every domain (no `weight` or `cap` then).
        domain: Option<DomainRef>,
        /// New weight, 1..=65535.
        weight: Option<u16>,
        /// New cap, percent of one pCPU, 0 (none) ..= 100 × pCPUs.
        cap: Option<u16>,
    },
    /// Starts a streamed create (dropping any unfinished upload of the
    /// session): the server checks the config and sizes, creates the
    /// domain paused and gives it its memory. The `ImageChunk`s that
    /// follow carry the kernel's bytes, then the ramdisk's (offsets
    /// count from the kernel's first byte); `CreateCommit` starts the
    /// domain. → [`Reply::UploadReady`]. Since 2.8.
    CreateStreamBegin {
        /// The new domain.
        config: DomainConfig,
        /// The kernel's length, bytes, at most [`MAX_KERNEL_BYTES`].
        kernel_len: u32,
        /// CRC-32 of the kernel ([`crate::crc32`]).
        kernel_crc32: u32,
        /// The ramdisk's length, bytes, at most [`MAX_RAMDISK_BYTES`]
        /// (0: none). It becomes the guest's start-info module.
        ramdisk_len: u32,
        /// CRC-32 of the ramdisk.
        ramdisk_crc32: u32,
    },
}

/// What a guest is asked to do by [`Request::Shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownKind {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// What the server sends.
///
/// The variants' order and `Rejected`'s place (index 2) are kept from
/// protocol 1: the one message sent to a protocol-1 peer is a `Rejected`
/// version mismatch, which that peer must be able to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to request `id` of `session`.
    Reply {
        /// The request's session (as the request carried it).
        session: SessionId,
        /// The request's id.
        id: u32,
        /// Its outcome.
        result: Result<Reply, MgmtError>,
    },
    /// Something happened that the current session subscribed to.
    Event {
        /// The session.
        session: SessionId,
        /// What happened.
        event: Event,
    },
    /// A frame that could not be read far enough to know its session and
    /// id: [`MgmtError::BadFrame`] or [`MgmtError::MalformedRequest`].
    Rejected(MgmtError),
    /// The answer to [`Request::Hello`].
    Welcome {
        /// The `Hello`'s nonce.
        nonce: u64,
        /// The new session, or why none was opened.
        result: Result<Welcome, MgmtError>,
    },
    /// Bytes that arrived while `session` was current could not be read
    /// as a frame ([`MgmtError::BadFrame`]) and were dropped. The line is
    /// the session's client's alone from its `Hello` on, and that client
    /// writes whole frames, so this is one of its requests cut or mangled
    /// on the way (e.g. the line went idle mid-frame on a loaded host): it
    /// was not carried out, and the client may send it again.
    Dropped {
        /// The session that was current.
        session: SessionId,
        /// Why the bytes were dropped.
        error: MgmtError,
    },
    /// The first message on every TCP connection (protocol 2.2,
    /// [`crate::auth`]); the client answers with
    /// [`Request::Authenticate`].
    Challenge {
        /// The server's protocol version.
        version: ProtocolVersion,
        /// Fresh, unpredictable bytes of the server, never used twice.
        server_nonce: Nonce,
    },
    /// The client's proof was right: requests (`Hello` first) may
    /// follow. A wrong proof gets [`ServerMessage::Rejected`] with
    /// [`MgmtError::AuthenticationRefused`] and the connection closes.
    Authenticated {
        /// [`crate::auth::server_proof`]: the server holds the key too.
        server_proof: Tag,
    },
}

/// A session opened by [`Request::Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version.
    pub version: ProtocolVersion,
    /// The session every later request must carry.
    pub session: SessionId,
}

/// A successful outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Host facts.
    Info(HostInfo),
    /// Every domain, by domid.
    List(Vec<DomainSummary>),
    /// One domain.
    Domain(DomainSummary),
    /// Send the image now.
    UploadReady,
    /// A chunk was stored.
    ChunkAccepted {
        /// Bytes received so far.
        received: u32,
    },
    /// The domain was built and unpaused.
    Created {
        /// Its id.
        domid: DomId,
    },
    /// Done, nothing to report.
    Done,
    /// `Pause` done.
    Paused {
        /// The domain after the pause.
        domain: DomainSummary,
        /// Whether it was paused before (this pause nests in the others).
        already_paused: bool,
    },
    /// `Unpause` done: one pause was taken back.
    Unpaused {
        /// The domain after it: still [`crate::DomainState::Paused`] if
        /// other pauses remain.
        domain: DomainSummary,
    },
    /// Attached to a console.
    ConsoleAttached {
        /// The domain.
        domid: DomId,
        /// Its name.
        name: String,
        /// Output so far (at most [`MAX_CONSOLE_HISTORY`] newest bytes).
        history: Vec<u8>,
    },
    /// The hypervisor's log (at most [`MAX_DMESG_BYTES`], newest kept).
    Dmesg {
        /// The text.
        text: String,
    },
    /// Every domain's counters, by domid.
    Stats(Vec<DomainCounters>),
    /// The store took `taken` bytes of a [`Request::Xenstore`] (the
    /// client sends the rest again later: the store holds too many
    /// unread replies) and answered `data` (replies and watch events,
    /// at most [`MAX_XENSTORE_DATA`] bytes). Since 2.3.
    Xenstore {
        /// Request bytes taken.
        taken: u32,
        /// Raw `xsd_sockmsg` bytes from the store.
        data: Vec<u8>,
    },
    /// The volume created. Since 2.4.
    Volume(VolumeInfo),
    /// The volumes. Since 2.4.
    Volumes(VolumeTable),
    /// The device attached. Since 2.4.
    BlockAttached(BlockDevice),
    /// The attached devices, by domid then devid. Since 2.4.
    BlockDevices(Vec<BlockDevice>),
    /// `NetworkAttach` done. Since 2.5.
    VifAttached(VifInfo),
    /// The vifs asked for, by domid then devid. Since 2.5.
    Vifs(Vec<VifInfo>),
    /// The vswitch (boxed: the largest reply by far). Since 2.5.
    Vswitch(alloc::boxed::Box<VswitchSnapshot>),
    /// The counters asked for. Since 2.7.
    Counters(CountersSnapshot),
    /// `VcpuPin` done. Since 2.7.
    VcpuPinned {
        /// The affinity in effect: the requested pCPUs that are online.
        effective: CpuSet,
    },
    /// Credit scheduler parameters (after the change, if one was asked
    /// for), by domid. Since 2.7.
    SchedCredit(Vec<SchedCredit>),
}

/// Something the server reports unasked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// New output of the attached console.
    ConsoleOutput {
        /// The domain.
        domid: DomId,
        /// At most [`MAX_CONSOLE_DATA`] bytes.
        data: Vec<u8>,
    },
    /// The attached console's domain went away; the stream ends.
    ConsoleClosed {
        /// The domain.
        domid: DomId,
        /// Why.
        reason: ConsoleEnd,
    },
    /// More raw `xsd_sockmsg` bytes from this session's store connection
    /// (watch events, replies that did not fit a [`Reply::Xenstore`]), at
    /// most [`MAX_XENSTORE_DATA`]. Since 2.3.
    XenstoreOutput {
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Why a console stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleEnd {
    /// The domain shut down.
    Shutdown(crate::ShutdownReason),
    /// The domain was destroyed.
    Destroyed,
}

impl core::fmt::Display for ConsoleEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Shutdown(reason) => write!(f, "the domain shut down ({reason})"),
            Self::Destroyed => f.write_str("the domain was destroyed"),
        }
    }
}
