//! Where the management agent is and how bytes get there: a UNIX socket
//! (QEMU's COM2) or TCP (dom0's management NIC, `tcp://HOST:PORT`), and
//! the key file that TCP connections authenticate with.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use mgmt::auth::Key;

use crate::error::CliError;

/// The URL scheme of a TCP endpoint.
pub const TCP_SCHEME: &str = "tcp://";

/// What `--connect` (or `DOM0CTL_SOCKET`) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A UNIX socket path (COM2 of the hypervisor machine).
    Unix(PathBuf),
    /// `tcp://HOST:PORT`: the agent on the management NIC, as forwarded
    /// by QEMU (HOST:PORT as written, resolved at connect).
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(address) = s.strip_prefix(TCP_SCHEME) else {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Endpoint::Tcp(address.to_string()))
            }
            _ => Err(format!(
                "`{s}` is not tcp://HOST:PORT (e.g. tcp://127.0.0.1:7000, as `cargo xtask up` prints)"
            )),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp(address) => write!(f, "{TCP_SCHEME}{address}"),
        }
    }
}

/// A connection to the agent, either kind.
#[derive(Debug)]
pub enum Stream {
    /// Over COM2.
    Unix(UnixStream),
    /// Over TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// A second handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Bounds each read (`None`: no bound).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// Bounds each write.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Connects to `address` (HOST:PORT) within `timeout`, trying each
/// address the host resolves to.
pub fn connect_tcp(address: &str, timeout: Duration) -> Result<TcpStream, CliError> {
    let not_listening = |source: io::Error| CliError::NotListening {
        endpoint: Endpoint::Tcp(address.to_string()),
        source,
    };
    let addresses: Vec<SocketAddr> = address.to_socket_addrs().map_err(not_listening)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for a in addresses {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => {
                // Requests are small frames answered one by one.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(not_listening(last))
}

/// Reads the management key from `path`: it must exist, be readable by
/// its owner only (mode 0600 or stricter), and hold the key in hex.
pub fn read_key_file(path: &Path) -> Result<Key, CliError> {
    let bad = |reason: String| CliError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad(
            "it does not exist; `cargo xtask up` writes it when it starts the hypervisor \
             (and prints where), or name another with --key-file"
                .into(),
        ),
        _ => bad(e.to_string()),
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "its mode is {mode:04o}: a key others can read is no secret; `chmod 600 {}`",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    Key::from_hex(&text).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_as_unix_paths_or_tcp_urls() {
        assert_eq!(
            "/tmp/x.sock".parse(),
            Ok(Endpoint::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:7000".parse(),
            Ok(Endpoint::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "tcp://localhost:1".parse::<Endpoint>().unwrap().to_string(),
            "tcp://localhost:1"
        );
        for bad in [
            "tcp://127.0.0.1",
            "tcp://:7000",
            "tcp://h:99999",
            "tcp://h:x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files_must_exist_be_private_and_hold_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let missing = read_key_file(&path).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = read_key_file(&path).unwrap_err().to_string();
        assert!(open.contains("mode is 0644"), "{open}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path).unwrap().as_bytes(), &[0xab; 32]);
        std::fs::write(&path, "not a key").unwrap();
        let junk = read_key_file(&path).unwrap_err().to_string();
        assert!(junk.contains("hex digits"), "{junk}");
    }
}
