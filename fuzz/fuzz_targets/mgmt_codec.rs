//! The management protocol's decoders through their public API: any byte
//! stream, cut into reads anywhere, through the frame [`Decoder`] (and
//! its idle flush); every payload it yields through both message
//! decoders. A message that decodes must encode back to a frame that
//! decodes to the same message, and the decoder's buffer stays bounded.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mgmt::{decode_client_message, decode_server_message, encode_message, Decoder, MAX_FRAME};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The stream, in reads of these sizes.
    reads: Vec<Vec<u8>>,
    /// Whether the line goes idle after each read.
    idle: Vec<bool>,
}

/// The one frame `wire` holds, decoded.
fn reframe(wire: &[u8]) -> Vec<u8> {
    let mut decoder = Decoder::new();
    let mut input = wire;
    let payload = decoder
        .decode(&mut input)
        .expect("a whole frame")
        .expect("a good frame");
    assert!(input.is_empty() && decoder.decode(&mut input).is_none());
    payload
}

fn check_payload(payload: &[u8]) {
    if let Ok(message) = decode_client_message(payload) {
        let wire = encode_message(&message).expect("a decoded message encodes");
        assert_eq!(decode_client_message(&reframe(&wire)).ok(), Some(message));
    }
    if let Ok(message) = decode_server_message(payload) {
        let wire = encode_message(&message).expect("a decoded message encodes");
        assert_eq!(decode_server_message(&reframe(&wire)).ok(), Some(message));
    }
}

fuzz_target!(|input: Input| {
    let mut decoder = Decoder::new();
    for (i, read) in input.reads.iter().enumerate() {
        let mut rest = &read[..];
        while let Some(item) = decoder.decode(&mut rest) {
            if let Ok(payload) = item {
                check_payload(&payload);
            }
        }
        assert!(rest.is_empty(), "the decoder left input unread");
        assert!(decoder.buffered() <= MAX_FRAME);
        if input.idle.get(i).copied().unwrap_or(false) {
            while let Some(item) = decoder.flush() {
                if let Ok(payload) = item {
                    check_payload(&payload);
                }
            }
            assert_eq!(decoder.buffered(), 0, "flush left bytes buffered");
        }
    }
});
