//! The management protocol between `dom0ctl` on the Linux host and the
//! management agent in dom0, over COM2 (a UNIX socket on the host side).
//!
//! Layers, bottom up:
//! - [`frame`]: magic, bounded length, header check, payload, CRC-32;
//!   [`Decoder`] resynchronises after garbage and reports bad frames as
//!   [`FrameError`] values;
//! - [`message`]: [`ClientMessage`] / [`ServerMessage`] and what they
//!   hold, postcard-encoded ([`encode_message`], [`decode_client_message`],
//!   [`decode_server_message`]);
//! - [`ProtocolVersion`] and the handshake rule; [`Server`], the session
//!   rule of the server side; [`MgmtError`], the errors the operator
//!   reads; [`Upload`], the chunked kernel upload; [`StreamUpload`], the
//!   streamed create of a big kernel and its ramdisk.
//!
//! [`auth`]: the TCP transport's HMAC-SHA256 challenge-response, before
//! any request (protocol 2.2).
//!
//! no_std + alloc: the same code serves the agent in dom0.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod auth;
mod codec;
mod decoder;
mod domain;
mod error;
pub mod frame;
pub mod memory;
pub mod message;
pub mod network;
pub mod sched;
mod server;
pub mod storage;
mod stream_upload;
mod upload;
mod version;

/// The TCP port dom0's management agent listens on (the guest side of
/// QEMU's `hostfwd`; [`abi::machine`] says what else the machine gives).
pub use abi::machine::MGMT_TCP_PORT;
/// Clients the TCP agent serves at once; TCP resets a connection beyond
/// them (which QEMU's `hostfwd` shows its client as a close before the
/// challenge).
pub const MGMT_TCP_MAX_CONNECTIONS: usize = 4;
pub use codec::{
    decode_client_message, decode_server_message, encode_message, old_server_error,
    version_error_for_v1_peer, EncodeError,
};
pub use decoder::{Decoded, Decoder};
pub use domain::{
    validate_name, ControlAbiVersion, DomId, DomainConfig, DomainCounters, DomainRef, DomainState,
    DomainSummary, HostInfo, ShutdownReason, MAX_CMDLINE,
};
pub use error::{DomainOperation, MgmtError, Mib, UploadError};
pub use frame::{crc32, encode_frame, FrameError, MAX_FRAME, MAX_PAYLOAD};
pub use memory::MEM_FLOOR_KIB;
pub use message::{
    ClientMessage, ConsoleEnd, Event, Reply, Request, ServerMessage, SessionId, ShutdownKind,
    Welcome, MAX_CONSOLE_DATA, MAX_CONSOLE_HISTORY, MAX_DMESG_BYTES, MAX_IMAGE_BYTES,
    MAX_IMAGE_CHUNK, MAX_KERNEL_BYTES, MAX_RAMDISK_BYTES, MAX_XENSTORE_DATA,
};
pub use network::{VifInfo, VifRef, VifSpec, MAX_VIFS_PER_DOMAIN};
pub use sched::{
    CountersSnapshot, CpuSet, DomainSnapshot, SchedConfig, SchedCredit, VcpuCounters, VcpuState,
};
pub use server::{Answer, Outgoing, Server};
pub use storage::{
    BlockDevice, BlockFailure, DiskMode, DiskSpec, VolumeFailure, VolumeInfo, VolumeTable,
    MAX_DISKS,
};
pub use stream_upload::{stream_requests, Accepted, StreamUpload};
pub use upload::{create_requests, Upload};

pub use version::{check_compatible, ProtocolVersion, PROTOCOL_V1, PROTOCOL_VERSION};
