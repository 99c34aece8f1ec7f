//! What can go wrong, the message the operator reads, and the exit status.

use std::io;
use std::path::PathBuf;

use mgmt::MgmtError;

use crate::config::ConfigError;
use crate::transport::Endpoint;

/// Exit status: the hypervisor refused the request.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad arguments (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: bad config file, kernel image or key file; nothing was
/// sent.
pub const EXIT_CONFIG: u8 = 3;
/// Exit status: nothing listens on the management socket.
pub const EXIT_NOT_LISTENING: u8 = 4;
/// Exit status: protocol or connection failure.
pub const EXIT_PROTOCOL: u8 = 5;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The management agent refused the request.
    #[error("{0}")]
    Refused(MgmtError),
    /// The config file or the kernel it names is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Nothing accepts connections on the socket.
    #[error(
        "cannot connect to the management socket {endpoint}: {source}\n\
         Is the hypervisor running? Start it with `cargo xtask up` (it prints where to \
         connect), or name the socket with --connect PATH|tcp://HOST:PORT or DOM0CTL_SOCKET."
    )]
    NotListening {
        /// The socket.
        endpoint: Endpoint,
        /// What connect said.
        source: io::Error,
    },
    /// The key file for a TCP connection is unusable; nothing was sent.
    #[error("the key file {} is unusable: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The guest did not acknowledge a `shutdown`/`reboot` request in
    /// time (libxl's "guest didn't acknowledge control request").
    #[error(
        "{domain} did not acknowledge the {request} request within {secs} s: it does not \
         watch control/shutdown (no PV control) or is busy. The request stays written. \
         Force it down with `dom0ctl shutdown -F {arg}` (or wait longer with --timeout)."
    )]
    NotAcknowledged {
        /// The domain, described.
        domain: String,
        /// The domain as the operator named it.
        arg: String,
        /// "poweroff" or "reboot".
        request: &'static str,
        /// How long we waited.
        secs: u64,
    },
    /// The conversation with the agent broke down.
    #[error("{0}")]
    Protocol(String),
    /// The agent closed the connection while a message was awaited.
    #[error("the management agent closed the connection")]
    Closed,
    /// The store refused a request with this Xen error (`ENOENT`,
    /// `EACCES`, ...; `xsd_errors`).
    #[error("the store refused the request: {0}")]
    Store(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused(
                MgmtError::VersionMismatch { .. }
                | MgmtError::HandshakeRequired
                | MgmtError::AuthenticationRefused,
            ) => EXIT_PROTOCOL,
            Self::Refused(_) | Self::Store(_) | Self::NotAcknowledged { .. } => EXIT_REFUSED,
            Self::Config(_) | Self::KeyFile { .. } => EXIT_CONFIG,
            Self::NotListening { .. } => EXIT_NOT_LISTENING,
            Self::Protocol(_) | Self::Closed => EXIT_PROTOCOL,
        }
    }

    /// A lost or failed connection, said plainly.
    pub fn io(what: &str, e: io::Error) -> Self {
        Self::Protocol(format!("{what}: {e}"))
    }
}
