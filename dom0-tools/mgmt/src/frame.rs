//! The frame format: how one message travels on the byte stream (COM2 in
//! dom0, a UNIX socket on the host).
//!
//! | offset    | bytes | field                                            |
//! |-----------|-------|--------------------------------------------------|
//! | 0         | 4     | [`MAGIC`]                                        |
//! | 4         | 4     | payload length `n`, u32 LE, `<=` [`MAX_PAYLOAD`] |
//! | 8         | 4     | CRC-32 of bytes 0..8 (header check), u32 LE      |
//! | 12        | n     | payload: one postcard-encoded message            |
//! | 12 + n    | 4     | CRC-32 of bytes 0..12+n (header and payload), LE |
//!
//! CRC-32 is CRC-32/ISO-HDLC (zlib's). The header check lets a receiver
//! that resynchronises after garbage tell a real frame start from a stray
//! magic at once, instead of waiting for a bogus length's worth of bytes.
//!
//! The trailer covers the header too (protocol 2). In protocol 1 it
//! covered only the payload, with the same CRC as the header check, so
//! the 12 bytes of any genuine header were also a valid 8-byte payload
//! plus its CRC: a header announcing 8 bytes followed by a frame decoded
//! as a phantom frame and the real one was lost. Now the trailer of that
//! phantom would have to be `crc32(phantom header ++ 8 bytes)`, which the
//! real header's check (`crc32(8 bytes)`) never equals: CRC-32 is affine,
//! so the two differ by a constant of the phantom header alone, and the
//! regression test `a_header_announcing_8_bytes_never_swallows_the_next_frame`
//! shows that constant is not zero.
//!
//! Protocol 1's frames (magic [`MAGIC_V1`]) are recognised so that an old
//! peer gets a clear version error ([`FrameError::OldProtocol`],
//! [`encode_v1_frame`]) instead of silence.

use alloc::vec::Vec;

use crc::{Crc, CRC_32_ISO_HDLC};
use serde::{Deserialize, Serialize};

/// First bytes of every frame (a non-ASCII byte first, so console text
/// rarely looks like a frame start), protocol 2.
pub const MAGIC: [u8; 4] = [0xF5, b'X', b'C', b'2'];
/// The magic of protocol 1's frames (trailer over the payload only).
pub const MAGIC_V1: [u8; 4] = [0xF5, b'X', b'C', b'M'];
/// Bytes before the payload: magic, length, header CRC.
pub const HEADER_LEN: usize = 12;
/// Bytes after the payload: its CRC.
pub const TRAILER_LEN: usize = 4;
/// Largest payload a frame may carry, bytes. A receiver buffers at most
/// one frame, so this bounds the agent's buffer.
pub const MAX_PAYLOAD: usize = 32 * 1024;
/// Largest frame on the wire, bytes.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + TRAILER_LEN;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// CRC-32/ISO-HDLC of `bytes` (frames, and whole kernel images at upload).
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Why bytes on the stream did not make a frame. The receiver reports it
/// and goes on with the next frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FrameError {
    /// Bytes that are not part of any frame were dropped.
    #[error("{skipped} bytes of garbage (no frame start) were dropped")]
    Garbage {
        /// How many.
        skipped: u32,
    },
    /// A frame header announced a payload larger than [`MAX_PAYLOAD`].
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    Oversized {
        /// Announced payload length.
        len: u32,
        /// [`MAX_PAYLOAD`].
        max: u32,
    },
    /// The payload's CRC did not match: corrupted or cut short and
    /// followed by other bytes.
    #[error("frame checksum mismatch (corrupted or cut-short frame)")]
    BadCrc,
    /// A frame of protocol 1 (magic [`MAGIC_V1`]): the peer is too old to
    /// talk to. The frame is dropped.
    #[error("a frame of protocol 1 (the peer is older than this side's protocol 2)")]
    OldProtocol,
    /// The stream went idle in the middle of a frame.
    #[error("frame cut short: {received} of {expected} bytes arrived")]
    Truncated {
        /// Frame bytes received.
        received: u32,
        /// Frame bytes announced (header, payload and CRC).
        expected: u32,
    },
}

/// The frame header for a payload of `len` bytes (`len <= MAX_PAYLOAD`).
pub(crate) fn header(len: u32) -> [u8; HEADER_LEN] {
    header_with(MAGIC, len)
}

fn header_with(magic: [u8; 4], len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&magic);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    let check = crc32(&h[..8]);
    h[8..].copy_from_slice(&check.to_le_bytes());
    h
}

/// Which protocol's frame a genuine header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Generation {
    /// [`MAGIC`]: this protocol.
    Current,
    /// [`MAGIC_V1`]: protocol 1.
    V1,
}

/// The frame kind and payload length announced by `h`, if `h` is a
/// genuine header (a known magic and a matching header check); the length
/// may still exceed [`MAX_PAYLOAD`].
pub(crate) fn parse_header(h: &[u8; HEADER_LEN]) -> Option<(Generation, u32)> {
    let [m0, m1, m2, m3, l0, l1, l2, l3, c0, c1, c2, c3] = *h;
    let generation = match [m0, m1, m2, m3] {
        MAGIC => Generation::Current,
        MAGIC_V1 => Generation::V1,
        _ => return None,
    };
    let checked = u32::from_le_bytes([c0, c1, c2, c3]) == crc32(&h[..8]);
    checked.then_some((generation, u32::from_le_bytes([l0, l1, l2, l3])))
}

/// The trailer a frame starting with `header_and_payload` must end with.
pub(crate) fn trailer(header_and_payload: &[u8]) -> [u8; TRAILER_LEN] {
    crc32(header_and_payload).to_le_bytes()
}

/// A payload larger than [`MAX_PAYLOAD`] cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("message of {len} bytes does not fit in a frame (limit {MAX_PAYLOAD} bytes)")]
pub struct PayloadTooLarge {
    /// The payload's length.
    pub len: usize,
}

/// Wraps `payload` in a frame.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, PayloadTooLarge> {
    let len = match u32::try_from(payload.len()) {
        Ok(len) if payload.len() <= MAX_PAYLOAD => len,
        _ => return Err(PayloadTooLarge { len: payload.len() }),
    };
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    frame.extend_from_slice(&header(len));
    frame.extend_from_slice(payload);
    let check = trailer(&frame);
    frame.extend_from_slice(&check);
    Ok(frame)
}

/// Wraps `payload` in a frame of protocol 1 (trailer over the payload
/// only), for the one message a protocol-2 side sends an old peer: that
/// it is too old ([`crate::version_error_for_v1_peer`]).
pub fn encode_v1_frame(payload: &[u8]) -> Result<Vec<u8>, PayloadTooLarge> {
    let len = match u32::try_from(payload.len()) {
        Ok(len) if payload.len() <= MAX_PAYLOAD => len,
        _ => return Err(PayloadTooLarge { len: payload.len() }),
    };
    let mut frame = header_with(MAGIC_V1, len).to_vec();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&crc32(payload).to_le_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let f = encode_frame(b"abc").unwrap();
        assert_eq!(f.len(), HEADER_LEN + 3 + TRAILER_LEN);
        assert_eq!(f[..4], MAGIC);
        assert_eq!(f[4..8], 3u32.to_le_bytes());
        assert_eq!(f[8..12], crc32(&f[..8]).to_le_bytes());
        assert_eq!(&f[12..15], b"abc");
        assert_eq!(f[15..], crc32(&f[..15]).to_le_bytes());
        // The zlib CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn header_check_rejects_a_changed_length() {
        let mut h = header(10);
        assert_eq!(parse_header(&h), Some((Generation::Current, 10)));
        h[4] ^= 1;
        assert_eq!(parse_header(&h), None);
    }

    #[test]
    fn v1_frames_keep_their_old_layout() {
        let f = encode_v1_frame(b"abc").unwrap();
        assert_eq!(f[..4], MAGIC_V1);
        let h: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_header(&h), Some((Generation::V1, 3)));
        assert_eq!(f[15..], crc32(b"abc").to_le_bytes());
    }

    #[test]
    fn oversized_payloads_are_refused() {
        assert!(encode_frame(&[0; MAX_PAYLOAD]).is_ok());
        assert_eq!(
            encode_frame(&[0; MAX_PAYLOAD + 1]),
            Err(PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
    }
}
