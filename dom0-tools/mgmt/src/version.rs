//! Protocol version and the handshake rule.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::MgmtError;

/// A protocol version, major.minor.
///
/// Major changes break existing peers (a message's layout or meaning
/// changes, a variant is removed or reordered); minor changes only append
/// (new request, reply, event or error variants at the end of their enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
}

/// The version this crate speaks.
/// 2.0: frames whose trailer covers the header (new magic), sessions.
/// 2.1: `Stats` (domain counters for `list -l`).
/// 2.2: the TCP transport's authentication ([`crate::auth`]):
/// `ServerMessage::Challenge` and `Authenticated`, `Request::Authenticate`
/// and `MgmtError::AuthenticationRefused`, appended to their enums. COM2
/// is unchanged: a 2.0 peer there is served as before.
/// 2.3: the store: `Request::Xenstore`, `Reply::Xenstore` and
/// `Event::XenstoreOutput` (raw `xsd_sockmsg` bytes of the session's own
/// store connection).
/// 2.4: volumes and block devices ([`crate::storage`]): `Request::
/// VolumeCreate`, `VolumeList`, `VolumeDelete`, `BlockAttach`,
/// `BlockDetach`, `BlockList`, their replies, `MgmtError::Volume` and
/// `Block`; `DomainConfig::disks` (appended to the struct: a 2.3
/// client's `CreateBegin` no longer decodes, so dom0ctl and dom0 come
/// from one tree, as `cargo xtask up` builds them).
/// 2.5: guests' networks: `Request::NetworkAttach`, `NetworkDetach`,
/// `NetworkList`, `VswitchShow`, their replies, `MgmtError::NoSuchVif`
/// and `NetworkRefused`; `DomainConfig::vifs` (appended after `disks`).
/// 2.6: ballooning: `Request::MemSet`, `MemMax`, `MgmtError::
/// MemoryAboveMax`, `MemoryBelowFloor`, `MaxBelowTarget`,
/// `DomainOperation::SetMemory`.
/// 2.7: scheduling ([`crate::sched`]): `Request::Counters`, `VcpuPin`,
/// `SchedCredit`, their replies, `MgmtError::InvalidSchedParam`
/// (appended after 2.6's variants).
/// 2.8: streamed create ([`crate::StreamUpload`]): `Request::
/// CreateStreamBegin` (a kernel up to `MAX_KERNEL_BYTES` and a ramdisk,
/// written into the new domain as they arrive), `UploadError::
/// RamdiskTooLarge` and `RamdiskChecksumMismatch`.
/// 2.9: `DomainConfig::sched` (xl.cfg's `cpus`, `weight`, `cap`;
/// appended to the struct, as 2.4's `disks`).
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion { major: 2, minor: 9 };
/// What a peer that sends protocol-1 frames speaks, as far as we know.
pub const PROTOCOL_V1: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The handshake rule, the same on both sides: peers talk if their major
/// versions match. Each side then uses only what the lower minor version
/// has (a server answers an unknown request with `MalformedRequest`).
pub fn check_compatible(client: ProtocolVersion, server: ProtocolVersion) -> Result<(), MgmtError> {
    if client.major == server.major {
        Ok(())
    } else {
        Err(MgmtError::VersionMismatch { client, server })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_must_match_minors_may_differ() {
        let v = |major, minor| ProtocolVersion { major, minor };
        assert_eq!(check_compatible(v(1, 0), v(1, 3)), Ok(()));
        assert_eq!(check_compatible(v(1, 4), v(1, 0)), Ok(()));
        assert_eq!(
            check_compatible(v(2, 0), v(1, 0)),
            Err(MgmtError::VersionMismatch {
                client: v(2, 0),
                server: v(1, 0)
            })
        );
    }
}
