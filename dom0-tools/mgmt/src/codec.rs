//! Messages to frames and back: postcard inside [`crate::frame`]s.

use alloc::string::ToString;
use alloc::vec::Vec;

use serde::Serialize;

use crate::frame::{encode_frame, encode_v1_frame, PayloadTooLarge};
use crate::{
    ClientMessage, MgmtError, ProtocolVersion, ServerMessage, PROTOCOL_V1, PROTOCOL_VERSION,
};

/// A message that cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// postcard could not serialize it (out of memory).
    #[error("cannot encode the message: {0}")]
    Postcard(postcard::Error),
    /// It is larger than a frame can carry.
    #[error(transparent)]
    TooLarge(#[from] PayloadTooLarge),
}

/// The frame carrying `message` (a [`ClientMessage`] or [`ServerMessage`]).
pub fn encode_message<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let payload = postcard::to_allocvec(message).map_err(EncodeError::Postcard)?;
    Ok(encode_frame(&payload)?)
}

/// Reads a request from a frame's payload (server side). On failure, the
/// message to send back: a `Reply` with the request's session and id when
/// they could be read (e.g. an unknown request from a newer client), else
/// `Rejected`.
pub fn decode_client_message(payload: &[u8]) -> Result<ClientMessage, ServerMessage> {
    decode_exact(payload).map_err(
        |error| match postcard::take_from_bytes::<(u32, u32)>(payload) {
            Ok(((session, id), _)) => ServerMessage::Reply {
                session,
                id,
                result: Err(error),
            },
            Err(_) => ServerMessage::Rejected(error),
        },
    )
}

/// Reads a server message from a frame's payload (client side).
pub fn decode_server_message(payload: &[u8]) -> Result<ServerMessage, MgmtError> {
    decode_exact(payload)
}

/// Payload bytes must hold exactly one message: trailing bytes mean the
/// sender meant something else.
fn decode_exact<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, MgmtError> {
    match postcard::take_from_bytes(payload) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(MgmtError::MalformedRequest(alloc::format!(
            "{} unexpected bytes after the message",
            rest.len()
        ))),
        Err(e) => Err(MgmtError::MalformedRequest(e.to_string())),
    }
}

/// What a protocol-2 side sends a peer whose frames are protocol 1: a
/// protocol-1 frame holding `Rejected(VersionMismatch)`, which a
/// protocol-1 `dom0ctl` reports as "protocol version mismatch: the client
/// speaks 1.0, the management agent speaks 2.0" (the layout of
/// `ServerMessage::Rejected` and `MgmtError::VersionMismatch` did not
/// change).
pub fn version_error_for_v1_peer() -> Vec<u8> {
    let message = ServerMessage::Rejected(MgmtError::VersionMismatch {
        client: PROTOCOL_V1,
        server: PROTOCOL_VERSION,
    });
    // A few bytes: postcard and the frame cannot fail.
    let payload = postcard::to_allocvec(&message).unwrap_or_default();
    encode_v1_frame(&payload).unwrap_or_default()
}

/// The protocol-1 error a client reports when the agent's frames are
/// protocol 1 (an agent older than this client).
pub fn old_server_error() -> MgmtError {
    MgmtError::VersionMismatch {
        client: PROTOCOL_VERSION,
        server: PROTOCOL_V1,
    }
}

/// Whether a server speaking [`PROTOCOL_VERSION`] serves `client`.
pub fn hello_compatible(client: ProtocolVersion) -> Result<(), MgmtError> {
    crate::check_compatible(client, PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, FrameError, Request};

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        let mut input = frame;
        Decoder::new().decode(&mut input).unwrap().unwrap()
    }

    #[test]
    fn unknown_request_is_answered_with_its_session_and_id() {
        // session 9, id 5, then a variant index no request has.
        let payload = [9u8, 5, 200];
        match decode_client_message(&payload) {
            Err(ServerMessage::Reply {
                session: 9,
                id: 5,
                result: Err(MgmtError::MalformedRequest(_)),
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreadable_id_is_rejected_without_one() {
        // A varint that never ends.
        let reply = decode_client_message(&[0xff; 6]).unwrap_err();
        assert!(matches!(
            reply,
            ServerMessage::Rejected(MgmtError::MalformedRequest(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut payload = payload_of(
            &encode_message(&ClientMessage {
                session: 1,
                id: 1,
                request: Request::List,
            })
            .unwrap(),
        );
        assert!(decode_client_message(&payload).is_ok());
        payload.push(0);
        assert!(decode_client_message(&payload).is_err());
    }

    /// The bytes a protocol-1 dom0ctl reads: a protocol-1 frame holding
    /// its `ServerMessage::Rejected` (variant 2) of
    /// `MgmtError::VersionMismatch` (variant 0) with two versions, each
    /// two varints. Written out by hand: protocol 1 is frozen.
    #[test]
    fn an_old_peer_gets_a_version_error_it_can_read() {
        let frame = version_error_for_v1_peer();
        let mut d = Decoder::new();
        assert_eq!(
            d.decode(&mut &frame[..]),
            Some(Err(FrameError::OldProtocol))
        );
        let payload = &frame[12..frame.len() - 4];
        assert_eq!(payload, [2, 0, 1, 0, 2, 8]);
        assert_eq!(
            frame[frame.len() - 4..],
            crate::crc32(payload).to_le_bytes()
        );
        assert_eq!(
            ServerMessage::Rejected(old_server_error()),
            decode_server_message(&[2, 0, 2, 8, 1, 0]).unwrap()
        );
    }

    #[test]
    fn hello_accepts_compatible_versions_only() {
        assert_eq!(hello_compatible(PROTOCOL_VERSION), Ok(()));
        let newer = ProtocolVersion {
            major: PROTOCOL_VERSION.major + 1,
            minor: 0,
        };
        assert_eq!(
            hello_compatible(newer),
            Err(MgmtError::VersionMismatch {
                client: newer,
                server: PROTOCOL_VERSION
            })
        );
    }
}
