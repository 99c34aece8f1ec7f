//! Turning a byte stream back into frames, whatever arrives: frames split
//! across reads, garbage between them, corrupted, cut-short or oversized
//! frames. Each bad stretch is reported once, as a [`FrameError`], and
//! decoding goes on with the next genuine frame.

use alloc::vec::Vec;

use abi::convert::u32_const;

use crate::frame::{
    parse_header, trailer, FrameError, Generation, HEADER_LEN, MAGIC, MAGIC_V1, MAX_FRAME,
    MAX_PAYLOAD, TRAILER_LEN,
};

/// One decoded item: a frame's payload, or why some bytes were dropped.
pub type Decoded = Result<Vec<u8>, FrameError>;

/// Incremental frame decoder. It buffers at most one frame
/// ([`MAX_FRAME`] bytes) and takes from the input only what it needs.
///
/// ```
/// # use mgmt::{encode_frame, Decoder};
/// let mut decoder = Decoder::new();
/// let wire = encode_frame(b"hello").unwrap();
/// let mut input = &wire[..];
/// assert_eq!(decoder.decode(&mut input), Some(Ok(b"hello".to_vec())));
/// assert_eq!(decoder.decode(&mut input), None);
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes taken from the input; `buf[start..]` is not yet decoded.
    buf: Vec<u8>,
    start: usize,
    /// Garbage dropped and not yet reported.
    skipped: usize,
    /// Bytes of an already reported bad frame still to drop silently.
    quiet: usize,
}

/// What one look at the buffer found.
enum Step {
    Item(Decoded),
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes taken from the input and not yet decoded (at most [`MAX_FRAME`]).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next item, taking bytes from the front of `input` as needed;
    /// `None` once `input` is used up without completing one. Call again
    /// until `None`: one read may hold several frames.
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Decoded> {
        loop {
            match self.step() {
                Step::Item(item) => return Some(item),
                Step::NeedMore(_) if input.is_empty() => return None,
                Step::NeedMore(n) => {
                    let take = n.min(input.len());
                    self.buf.drain(..self.start);
                    self.start = 0;
                    self.buf.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                }
            }
        }
    }

    /// The stream went idle (the caller's timeout, a few hundred ms):
    /// decodes what is buffered, calling an incomplete frame truncated and
    /// left-over bytes garbage. Call until `None`; the buffer is then empty.
    pub fn flush(&mut self) -> Option<Decoded> {
        if let Some(item) = self.decode(&mut &[][..]) {
            return Some(item);
        }
        if let Some((_, len)) = self.front_header() {
            // `step` reported any garbage before this header and refused
            // oversized ones, so this is a frame in progress.
            let expected = HEADER_LEN + len as usize + TRAILER_LEN;
            let received = self.buffered();
            self.start += 1;
            self.quiet = expected - 1;
            // Both are below MAX_FRAME: the header's length was checked.
            return Some(Err(FrameError::Truncated {
                received: u32::try_from(received).unwrap_or(u32::MAX),
                expected: u32::try_from(expected).unwrap_or(u32::MAX),
            }));
        }
        self.drop_front(self.buffered());
        self.quiet = 0;
        self.take_garbage()
    }

    fn live(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn step(&mut self) -> Step {
        loop {
            let candidate = magic_candidate(self.live());
            self.drop_front(candidate);
            if self.buffered() < HEADER_LEN {
                return Step::NeedMore(HEADER_LEN - self.buffered());
            }
            let Some((generation, len)) = self.front_header() else {
                self.drop_front(1);
                continue;
            };
            if let Some(garbage) = self.take_garbage() {
                return Step::Item(garbage);
            }
            return match generation {
                Generation::Current => self.frame(len),
                Generation::V1 => self.old_frame(len),
            };
        }
    }

    /// The frame behind a genuine header announcing `len` payload bytes.
    fn frame(&mut self, len: u32) -> Step {
        let payload_len = len as usize;
        if payload_len > MAX_PAYLOAD {
            self.start += HEADER_LEN;
            self.quiet = payload_len.saturating_add(TRAILER_LEN);
            return Step::Item(Err(FrameError::Oversized {
                len,
                max: u32_const::<MAX_PAYLOAD>(),
            }));
        }
        let total = HEADER_LEN + payload_len + TRAILER_LEN;
        let live = self.live();
        if live.len() < total {
            return Step::NeedMore(total - live.len());
        }
        let covered = &live[..HEADER_LEN + payload_len];
        if live[HEADER_LEN + payload_len..total] == trailer(covered) {
            let payload = covered[HEADER_LEN..].to_vec();
            self.start += total;
            self.quiet = 0;
            Step::Item(Ok(payload))
        } else {
            // Perhaps cut short with the next frame inside: look from the
            // next byte on, silently up to where this frame would end.
            self.start += 1;
            self.quiet = total - 1;
            Step::Item(Err(FrameError::BadCrc))
        }
    }

    /// A protocol-1 frame: reported once, its bytes (as announced, however
    /// many) dropped without waiting for them.
    fn old_frame(&mut self, len: u32) -> Step {
        self.start += HEADER_LEN;
        self.quiet = (len as usize).saturating_add(TRAILER_LEN);
        Step::Item(Err(FrameError::OldProtocol))
    }

    /// The frame's generation and payload length if a genuine header
    /// starts the buffer.
    fn front_header(&self) -> Option<(Generation, u32)> {
        let header: &[u8; HEADER_LEN] = self.live().get(..HEADER_LEN)?.try_into().ok()?;
        parse_header(header)
    }

    /// Drops `n` bytes from the front; those past the quiet stretch are garbage.
    fn drop_front(&mut self, n: usize) {
        let silent = n.min(self.quiet);
        self.quiet -= silent;
        self.skipped = self.skipped.saturating_add(n - silent);
        self.start += n;
    }

    fn take_garbage(&mut self) -> Option<Decoded> {
        let skipped = core::mem::take(&mut self.skipped);
        (skipped > 0).then(|| {
            Err(FrameError::Garbage {
                skipped: u32::try_from(skipped).unwrap_or(u32::MAX),
            })
        })
    }
}

/// Index of the first byte that could start a frame: where [`MAGIC`] or
/// [`MAGIC_V1`], or as much of one as the bytes hold, begins.
fn magic_candidate(bytes: &[u8]) -> usize {
    (0..bytes.len())
        .find(|&i| {
            let tail = &bytes[i..];
            let k = tail.len().min(MAGIC.len());
            tail[..k] == MAGIC[..k] || tail[..k] == MAGIC_V1[..k]
        })
        .unwrap_or(bytes.len())
}

const _: () = assert!(MAX_FRAME == HEADER_LEN + MAX_PAYLOAD + TRAILER_LEN);

#[cfg(test)]
// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::frame::{crc32, encode_frame, encode_v1_frame, header};

    fn all(decoder: &mut Decoder, mut input: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(&mut input) {
            out.push(item);
        }
        out
    }

    fn flushed(decoder: &mut Decoder) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(item) = decoder.flush() {
            out.push(item);
        }
        out
    }

    /// The input that made protocol 1 lose frames: a genuine header
    /// announcing 8 bytes, then any frame. The header's claimed frame ends
    /// inside the real one's header; it must be reported as broken and the
    /// real frame must decode.
    #[test]
    fn a_header_announcing_8_bytes_never_swallows_the_next_frame() {
        let phantom = header(8);
        // CRC-32 is affine: crc32(phantom ++ x) ^ crc32(x) is the same for
        // every 8-byte x. Not zero, so no frame can complete the phantom.
        let zeros = [0u8; 8];
        let mut with_zeros = phantom.to_vec();
        with_zeros.extend_from_slice(&zeros);
        assert_ne!(crc32(&with_zeros), crc32(&zeros));
        for payload in [&b""[..], b"x", b"12345678", &[0u8; 300], b"hello world"] {
            let mut wire = phantom.to_vec();
            wire.extend(encode_frame(payload).unwrap());
            let mut d = Decoder::new();
            assert_eq!(
                all(&mut d, &wire),
                [Err(FrameError::BadCrc), Ok(payload.to_vec())],
                "{payload:?}"
            );
        }
    }

    #[test]
    fn a_protocol_1_frame_is_reported_as_such_then_skipped() {
        let mut wire = encode_v1_frame(b"old hello").unwrap();
        wire.extend(encode_frame(b"new").unwrap());
        let mut d = Decoder::new();
        assert_eq!(
            all(&mut d, &wire),
            [Err(FrameError::OldProtocol), Ok(b"new".to_vec())]
        );
    }

    #[test]
    fn garbage_before_a_frame_is_reported_once_then_the_frame() {
        let mut wire = b"noise\xF5XC".to_vec();
        wire.extend(encode_frame(b"ok").unwrap());
        let mut d = Decoder::new();
        assert_eq!(
            all(&mut d, &wire),
            [Err(FrameError::Garbage { skipped: 8 }), Ok(b"ok".to_vec())]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn pure_garbage_is_reported_when_the_stream_goes_idle() {
        let mut d = Decoder::new();
        assert_eq!(all(&mut d, b"random junk\xF5X"), []);
        assert_eq!(flushed(&mut d), [Err(FrameError::Garbage { skipped: 13 })]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn corrupted_frame_is_bad_crc_and_the_next_frame_decodes() {
        let mut wire = encode_frame(b"first").unwrap();
        wire[13] ^= 0x40;
        wire.extend(encode_frame(b"second").unwrap());
        let mut d = Decoder::new();
        assert_eq!(
            all(&mut d, &wire),
            [Err(FrameError::BadCrc), Ok(b"second".to_vec())]
        );
    }

    #[test]
    fn cut_short_frame_followed_by_a_frame_inside_its_length() {
        let long = encode_frame(&[7u8; 200]).unwrap();
        let mut wire = long[..50].to_vec();
        wire.extend(encode_frame(b"next").unwrap());
        let mut d = Decoder::new();
        // The short frame waits for its announced length...
        assert_eq!(all(&mut d, &wire), []);
        // ...until the stream goes idle.
        assert_eq!(
            flushed(&mut d),
            [
                Err(FrameError::Truncated {
                    received: 50 + 20,
                    expected: 216
                }),
                Ok(b"next".to_vec())
            ]
        );
    }

    #[test]
    fn cut_short_frame_followed_by_enough_bytes_is_bad_crc() {
        let long = encode_frame(&[7u8; 20]).unwrap();
        let mut wire = long[..20].to_vec();
        for _ in 0..3 {
            wire.extend(encode_frame(b"next").unwrap());
        }
        let mut d = Decoder::new();
        let got = all(&mut d, &wire);
        assert_eq!(got[0], Err(FrameError::BadCrc));
        assert_eq!(
            got[1..],
            [
                Ok(b"next".to_vec()),
                Ok(b"next".to_vec()),
                Ok(b"next".to_vec())
            ]
        );
    }

    #[test]
    fn oversized_header_is_refused_without_waiting_and_stays_quiet() {
        let mut wire = header(MAX_PAYLOAD as u32 + 1).to_vec();
        wire.extend_from_slice(b"body bytes of the big frame");
        wire.extend(encode_frame(b"after").unwrap());
        let mut d = Decoder::new();
        assert_eq!(
            all(&mut d, &wire),
            [
                Err(FrameError::Oversized {
                    len: MAX_PAYLOAD as u32 + 1,
                    max: MAX_PAYLOAD as u32
                }),
                Ok(b"after".to_vec())
            ]
        );
    }

    #[test]
    fn stray_magic_with_a_bad_header_is_just_garbage() {
        let mut wire = MAGIC.to_vec();
        wire.extend_from_slice(&[0xff; 8]);
        wire.extend(encode_frame(b"x").unwrap());
        let mut d = Decoder::new();
        assert_eq!(
            all(&mut d, &wire),
            [Err(FrameError::Garbage { skipped: 12 }), Ok(b"x".to_vec())]
        );
    }

    #[test]
    fn empty_payload_round_trips() {
        let mut d = Decoder::new();
        assert_eq!(all(&mut d, &encode_frame(b"").unwrap()), [Ok(Vec::new())]);
    }
}
