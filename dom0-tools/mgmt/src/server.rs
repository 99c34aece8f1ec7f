//! The server's side of sessions: one rule for the agent in dom0 and for
//! the test agents, so the two cannot drift.
//!
//! The server holds at most one session, with the per-session state `S`
//! of its user (the agent's: an upload in progress, a console stream).
//! Every `Hello` ends the current session and drops its state, whether or
//! not a new session opens (a version mismatch opens none); a request
//! that does not carry the current session is answered
//! `HandshakeRequired` and never reaches the state.

use alloc::vec::Vec;

use crate::codec::{hello_compatible, version_error_for_v1_peer};
use crate::{
    decode_client_message, ClientMessage, Decoded, FrameError, MgmtError, Reply, Request,
    ServerMessage, SessionId, Welcome, PROTOCOL_VERSION,
};

/// What to send back.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A message of this protocol.
    Message(ServerMessage),
    /// A finished protocol-1 frame, for a peer too old for this protocol
    /// (it says so in a way that peer reads).
    V1Frame(Vec<u8>),
}

/// The answer to one decoded item.
#[derive(Debug)]
pub struct Answer<S> {
    /// What to send back.
    pub reply: Outgoing,
    /// The session this item ended (a `Hello`, or an old peer's frame)
    /// and its state, dropped unless the caller keeps it: the caller may
    /// say what it drops (an unfinished upload).
    pub ended: Option<(SessionId, S)>,
}

/// Sessions, server side. `S` is what one session holds.
#[derive(Debug)]
pub struct Server<S> {
    current: Option<(SessionId, S)>,
    next_session: SessionId,
}

impl<S: Default> Server<S> {
    /// No session yet; the first one gets an id derived from `seed` (e.g.
    /// the clock, so that a client of an earlier boot does not find its
    /// old id in use).
    pub fn new(seed: u32) -> Self {
        Self {
            current: None,
            next_session: seed.max(1),
        }
    }

    /// The current session and its state.
    pub fn session(&mut self) -> Option<(SessionId, &mut S)> {
        self.current.as_mut().map(|(id, state)| (*id, state))
    }

    /// Ends the current session (the transport closed): its id and state.
    pub fn end_session(&mut self) -> Option<(SessionId, S)> {
        self.current.take()
    }

    /// Answers one item from the decoder. `handle` serves a request of
    /// the current session with its state.
    pub fn answer(
        &mut self,
        item: Decoded,
        handle: impl FnOnce(&mut S, Request) -> Result<Reply, MgmtError>,
    ) -> Answer<S> {
        let message = match item {
            Ok(payload) => decode_client_message(&payload),
            Err(FrameError::OldProtocol) => {
                // A protocol-1 client: whoever had the line has gone.
                return Answer {
                    reply: Outgoing::V1Frame(version_error_for_v1_peer()),
                    ended: self.current.take(),
                };
            }
            Err(e) => Err(match &self.current {
                Some((session, _)) => ServerMessage::Dropped {
                    session: *session,
                    error: MgmtError::BadFrame(e),
                },
                None => ServerMessage::Rejected(MgmtError::BadFrame(e)),
            }),
        };
        match message {
            Ok(ClientMessage {
                request: Request::Hello { version, nonce },
                ..
            }) => self.hello(version, nonce),
            Ok(ClientMessage {
                session,
                id,
                request,
            }) => {
                let result = match &mut self.current {
                    Some((current, state)) if *current == session => handle(state, request),
                    _ => Err(MgmtError::HandshakeRequired),
                };
                self.message(ServerMessage::Reply {
                    session,
                    id,
                    result,
                })
            }
            Err(reply) => self.message(reply),
        }
    }

    fn hello(&mut self, version: crate::ProtocolVersion, nonce: u64) -> Answer<S> {
        let ended = self.current.take();
        let result = hello_compatible(version).map(|()| {
            let session = self.next_session;
            self.next_session = self.next_session.wrapping_add(1).max(1);
            self.current = Some((session, S::default()));
            Welcome {
                version: PROTOCOL_VERSION,
                session,
            }
        });
        Answer {
            reply: Outgoing::Message(ServerMessage::Welcome { nonce, result }),
            ended,
        }
    }

    fn message(&self, message: ServerMessage) -> Answer<S> {
        Answer {
            reply: Outgoing::Message(message),
            ended: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_v1_frame;
    use crate::{encode_message, Decoder, ProtocolVersion, Upload, UploadError};

    /// A session's state in these tests: an upload, as the agent's has.
    type State = Option<Upload>;

    /// What the test server does with a request: the upload part of the
    /// agent, and `List` answered with an empty list.
    fn serve(state: &mut State, request: Request) -> Result<Reply, MgmtError> {
        match request {
            Request::CreateBegin {
                config,
                image_len,
                image_crc32,
            } => {
                *state = Some(Upload::begin(config, image_len, image_crc32)?);
                Ok(Reply::UploadReady)
            }
            Request::ImageChunk { offset, data } => {
                let upload = state.as_mut().ok_or(UploadError::NotStarted)?;
                let received = upload.add_chunk(offset, &data)?;
                Ok(Reply::ChunkAccepted { received })
            }
            Request::CreateCommit => {
                let upload = state.take().ok_or(UploadError::NotStarted)?;
                upload.finish()?;
                Ok(Reply::Created { domid: 1 })
            }
            _ => Ok(Reply::List(Vec::new())),
        }
    }

    /// The bytes of `message` as the decoder hands them to the server.
    fn item(message: &ClientMessage) -> Decoded {
        let frame = encode_message(message).unwrap();
        Decoder::new().decode(&mut &frame[..]).unwrap()
    }

    fn send(
        server: &mut Server<State>,
        session: SessionId,
        id: u32,
        request: Request,
    ) -> Answer<State> {
        server.answer(
            item(&ClientMessage {
                session,
                id,
                request,
            }),
            serve,
        )
    }

    fn hello(server: &mut Server<State>, version: ProtocolVersion, nonce: u64) -> Answer<State> {
        send(server, 0, 0, Request::Hello { version, nonce })
    }

    /// The session a successful `Hello` opened.
    fn open(server: &mut Server<State>, nonce: u64) -> SessionId {
        match hello(server, PROTOCOL_VERSION, nonce).reply {
            Outgoing::Message(ServerMessage::Welcome {
                nonce: echoed,
                result: Ok(Welcome { session, .. }),
            }) if echoed == nonce => session,
            other => panic!("{other:?}"),
        }
    }

    fn result(answer: Answer<State>) -> Result<Reply, MgmtError> {
        match answer.reply {
            Outgoing::Message(ServerMessage::Reply { result, .. }) => result,
            other => panic!("{other:?}"),
        }
    }

    /// Starts an upload of 2 bytes in `session` and sends the first one.
    fn half_upload(server: &mut Server<State>, session: SessionId) {
        let begin = Request::CreateBegin {
            config: crate::DomainConfig::fixture(),
            image_len: 2,
            image_crc32: crate::crc32(b"ab"),
        };
        assert_eq!(
            result(send(server, session, 1, begin)),
            Ok(Reply::UploadReady)
        );
        let chunk = Request::ImageChunk {
            offset: 0,
            data: b"a".to_vec(),
        };
        assert_eq!(
            result(send(server, session, 2, chunk)),
            Ok(Reply::ChunkAccepted { received: 1 })
        );
    }

    #[test]
    fn a_request_without_hello_gets_handshake_required() {
        let mut server = Server::<State>::new(7);
        assert_eq!(
            result(send(&mut server, 0, 1, Request::List)),
            Err(MgmtError::HandshakeRequired)
        );
        // Not even a guessed session id works before a Hello.
        assert_eq!(
            result(send(&mut server, 7, 1, Request::List)),
            Err(MgmtError::HandshakeRequired)
        );
        assert!(server.session().is_none());
    }

    #[test]
    fn each_hello_opens_a_new_session_and_ends_the_last() {
        let mut server = Server::<State>::new(7);
        let a = open(&mut server, 1);
        assert_eq!(
            result(send(&mut server, a, 1, Request::List)),
            Ok(Reply::List(Vec::new()))
        );
        let b = open(&mut server, 2);
        assert_ne!(a, b);
        assert_eq!(
            result(send(&mut server, a, 2, Request::List)),
            Err(MgmtError::HandshakeRequired)
        );
        assert_eq!(
            result(send(&mut server, b, 1, Request::List)),
            Ok(Reply::List(Vec::new()))
        );
        // The reply names the session the request carried.
        match send(&mut server, a, 3, Request::List).reply {
            Outgoing::Message(ServerMessage::Reply { session, id: 3, .. }) => {
                assert_eq!(session, a)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_session_drops_the_pending_upload_and_nobody_can_commit_it() {
        let mut server = Server::<State>::new(7);
        let a = open(&mut server, 1);
        half_upload(&mut server, a);
        // A killed client's upload, then someone else connects.
        let answer = hello(&mut server, PROTOCOL_VERSION, 2);
        let (ended, state) = answer.ended.expect("the session ended");
        assert_eq!(ended, a);
        assert!(state.is_some(), "the upload is handed back to be dropped");
        let b = match answer.reply {
            Outgoing::Message(ServerMessage::Welcome { result: Ok(w), .. }) => w.session,
            other => panic!("{other:?}"),
        };
        // The new session has no upload; the old session cannot commit.
        assert_eq!(
            result(send(&mut server, b, 1, Request::CreateCommit)),
            Err(MgmtError::Upload(UploadError::NotStarted))
        );
        assert_eq!(
            result(send(&mut server, a, 3, Request::CreateCommit)),
            Err(MgmtError::HandshakeRequired)
        );
        assert_eq!(
            result(send(&mut server, 0, 1, Request::CreateCommit)),
            Err(MgmtError::HandshakeRequired)
        );
        assert!(server.session().unwrap().1.is_none());
    }

    #[test]
    fn a_version_mismatched_hello_opens_no_session_and_ends_the_last() {
        let mut server = Server::<State>::new(7);
        let a = open(&mut server, 1);
        half_upload(&mut server, a);
        let newer = ProtocolVersion {
            major: PROTOCOL_VERSION.major + 1,
            minor: 0,
        };
        let answer = hello(&mut server, newer, 5);
        assert!(answer.ended.is_some());
        assert_eq!(
            answer.reply,
            Outgoing::Message(ServerMessage::Welcome {
                nonce: 5,
                result: Err(MgmtError::VersionMismatch {
                    client: newer,
                    server: PROTOCOL_VERSION
                })
            })
        );
        for session in [0, a, a + 1] {
            assert_eq!(
                result(send(&mut server, session, 1, Request::List)),
                Err(MgmtError::HandshakeRequired)
            );
        }
    }

    #[test]
    fn an_old_peer_gets_the_v1_version_error_and_ends_the_session() {
        let mut server = Server::<State>::new(7);
        open(&mut server, 1);
        let old = encode_v1_frame(&[1, 0, 1, 0]).unwrap();
        let item = Decoder::new().decode(&mut &old[..]).unwrap();
        let answer = server.answer(item, serve);
        assert_eq!(answer.reply, Outgoing::V1Frame(version_error_for_v1_peer()));
        assert!(answer.ended.is_some());
        assert!(server.session().is_none());
    }

    #[test]
    fn bad_frames_are_reported_to_the_session_without_touching_it() {
        let mut server = Server::<State>::new(7);
        let bad = || Err(FrameError::BadCrc);
        assert_eq!(
            server.answer(bad(), serve).reply,
            Outgoing::Message(ServerMessage::Rejected(MgmtError::BadFrame(
                FrameError::BadCrc
            )))
        );
        let a = open(&mut server, 1);
        half_upload(&mut server, a);
        let answer = server.answer(bad(), serve);
        assert_eq!(
            answer.reply,
            Outgoing::Message(ServerMessage::Dropped {
                session: a,
                error: MgmtError::BadFrame(FrameError::BadCrc)
            })
        );
        assert!(answer.ended.is_none());
        assert!(server.session().unwrap().1.is_some());
    }

    #[test]
    fn session_ids_are_never_zero() {
        let mut server = Server::<State>::new(u32::MAX);
        assert_eq!(open(&mut server, 1), u32::MAX);
        assert_eq!(open(&mut server, 2), 1);
        assert_eq!(Server::<State>::new(0).next_session, 1);
    }
}
