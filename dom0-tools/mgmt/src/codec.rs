//! Messages to frames and back: postcard inside [`crate::frame`]s.

use alloc::string::ToString;
use alloc::vec::Vec;

use serde::Serialize;

use crate::frame::{encode_frame, PayloadTooLarge};
use crate::{ClientMessage, MgmtError, Reply, ServerMessage, PROTOCOL_VERSION};

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
/// message to send back: a `Reply` with the request's id when the id could
/// be read (e.g. an unknown request from a newer client), else `Rejected`.
pub fn decode_client_message(payload: &[u8]) -> Result<ClientMessage, ServerMessage> {
    decode_exact(payload).map_err(|error| match postcard::take_from_bytes::<u32>(payload) {
        Ok((id, _)) => ServerMessage::Reply {
            id,
            result: Err(error),
        },
        Err(_) => ServerMessage::Rejected(error),
    })
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

/// The server's answer to `Hello { version }`: its own version if the
/// majors match (see [`crate::check_compatible`]).
pub fn answer_hello(client: crate::ProtocolVersion) -> Result<Reply, MgmtError> {
    crate::check_compatible(client, PROTOCOL_VERSION)?;
    Ok(Reply::Hello {
        version: PROTOCOL_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, ProtocolVersion, Request};

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        let mut input = frame;
        Decoder::new().decode(&mut input).unwrap().unwrap()
    }

    #[test]
    fn unknown_request_is_answered_with_its_id() {
        // id 5, then a variant index no request has.
        let payload = [5u8, 200];
        assert_eq!(
            decode_client_message(&payload).map_err(|reply| match reply {
                ServerMessage::Reply {
                    id,
                    result: Err(MgmtError::MalformedRequest(_)),
                } => id,
                other => panic!("{other:?}"),
            }),
            Err(5)
        );
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
                id: 1,
                request: Request::List,
            })
            .unwrap(),
        );
        assert!(decode_client_message(&payload).is_ok());
        payload.push(0);
        assert!(decode_client_message(&payload).is_err());
    }

    #[test]
    fn hello_answers_compatible_versions_only() {
        assert_eq!(
            answer_hello(PROTOCOL_VERSION),
            Ok(Reply::Hello {
                version: PROTOCOL_VERSION
            })
        );
        let newer = ProtocolVersion {
            major: PROTOCOL_VERSION.major + 1,
            minor: 0,
        };
        assert_eq!(
            answer_hello(newer),
            Err(MgmtError::VersionMismatch {
                client: newer,
                server: PROTOCOL_VERSION
            })
        );
    }
}
