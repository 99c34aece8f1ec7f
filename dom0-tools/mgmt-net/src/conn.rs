//! One TCP connection's protocol state, apart from the socket: the
//! authentication gate, then its own [`Server`] (one session at a time,
//! by the protocol's rules), its frame decoder and the bytes it still has
//! to send.

use alloc::vec::Vec;

use mgmt::auth::{Gate, Key, NonceSource, Verdict};
use mgmt::{encode_message, Answer, Decoder, Outgoing, Server, ServerMessage};

use crate::{Service, AUTH_TIMEOUT_NS};

/// Where a connection is in its life.
enum Phase<S> {
    /// Challenge sent, waiting for the client's answer (until
    /// [`AUTH_TIMEOUT_NS`] after the connection opened).
    Gate(Gate),
    /// Authenticated: requests are served.
    Open(Server<S>),
    /// Refused or timed out: what is left to send goes out, nothing more
    /// is read, then the connection closes.
    Closing,
}

/// What the connection manager does with the socket after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep it.
    Keep,
    /// Send what is pending, then close it (FIN).
    Close,
}

/// One connection.
pub struct Conn<S> {
    phase: Phase<S>,
    decoder: Decoder,
    /// When the connection was seen first, ns.
    opened_ns: u64,
    /// Encoded frames not yet taken by the socket.
    pub out: Vec<u8>,
}

impl<S: Default> Conn<S> {
    /// A new connection at `now_ns`: its challenge is queued first.
    pub fn accept(nonces: &mut NonceSource, entropy: u64, now_ns: u64) -> Self {
        let (gate, challenge) = Gate::challenge(nonces, entropy);
        let mut conn = Conn {
            phase: Phase::Gate(gate),
            decoder: Decoder::new(),
            opened_ns: now_ns,
            out: Vec::new(),
        };
        conn.queue(&challenge);
        conn
    }

    /// Whether the client has proved it holds the key.
    pub fn authenticated(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Whether more input is wanted (not closing).
    pub fn reading(&self) -> bool {
        !matches!(self.phase, Phase::Closing)
    }

    /// Whether the connection has not authenticated within
    /// [`AUTH_TIMEOUT_NS`] of opening.
    pub fn timed_out(&self, now_ns: u64) -> bool {
        matches!(self.phase, Phase::Gate(_))
            && now_ns.saturating_sub(self.opened_ns) >= AUTH_TIMEOUT_NS
    }

    /// When this connection needs a look even if nothing arrives: the
    /// end of its time to authenticate, ns.
    pub fn deadline_ns(&self) -> Option<u64> {
        match self.phase {
            Phase::Gate(_) => Some(self.opened_ns + AUTH_TIMEOUT_NS),
            _ => None,
        }
    }

    /// Takes `bytes` (all of them) and answers every complete frame.
    /// After the gate's refusal the rest is ignored.
    ///
    /// A partial frame waits for the rest however long it takes, unlike
    /// on COM2: TCP neither loses nor inserts bytes, so a pause inside a
    /// frame is a slow or loaded peer (a retransmission alone takes
    /// 200 ms or more), never a cut frame to resynchronise after. What
    /// bounds a silent client is the connection's own timeouts
    /// ([`AUTH_TIMEOUT_NS`], `OPEN_TIMEOUT_NS`) and the decoder's frame
    /// limit.
    pub fn receive<V: Service<Session = S>>(
        &mut self,
        bytes: &[u8],
        key: &Key,
        service: &mut V,
    ) -> Flow {
        let mut input = bytes;
        while self.reading() {
            let Some(item) = self.decoder.decode(&mut input) else {
                break;
            };
            self.answer(item, key, service);
        }
        if self.reading() {
            Flow::Keep
        } else {
            Flow::Close
        }
    }

    /// The open session's new console output, if any.
    pub fn events<V: Service<Session = S>>(&mut self, service: &mut V) {
        let Phase::Open(server) = &mut self.phase else {
            return;
        };
        if let Some((id, session)) = server.session() {
            let out = &mut self.out;
            service.events(id, session, &mut |message| queue_into(out, message));
        }
    }

    /// Ends the connection: its session (if any) goes to `service`.
    pub fn end<V: Service<Session = S>>(self, service: &mut V) {
        if let Phase::Open(mut server) = self.phase {
            if let Some(ended) = server.end_session() {
                service.ended(ended.0, ended.1);
            }
        }
    }

    fn answer<V: Service<Session = S>>(&mut self, item: mgmt::Decoded, key: &Key, service: &mut V) {
        match core::mem::replace(&mut self.phase, Phase::Closing) {
            Phase::Gate(gate) => match gate.answer(key, item) {
                Verdict::Open(message) => {
                    self.queue(&message);
                    self.phase = Phase::Open(Server::new(service.next_session_seed()));
                }
                Verdict::Refused(message) => {
                    service.log(format_args!("a client was refused: wrong or no key"));
                    self.queue(&message);
                }
            },
            Phase::Open(mut server) => {
                let Answer { reply, ended } = server.answer(item, |s, r| service.handle(s, r));
                if let Some((id, state)) = ended {
                    service.ended(id, state);
                }
                match reply {
                    Outgoing::Message(message) => self.queue(&message),
                    // A protocol-1 client does not exist on TCP (it came
                    // with 2.2), but its frame is answered as on COM2.
                    Outgoing::V1Frame(frame) => self.out.extend_from_slice(&frame),
                }
                self.phase = Phase::Open(server);
            }
            Phase::Closing => {}
        }
    }

    fn queue(&mut self, message: &ServerMessage) {
        queue_into(&mut self.out, message);
    }
}

fn queue_into(out: &mut Vec<u8>, message: &ServerMessage) {
    // Only a message larger than a frame fails, which the agent never
    // builds (its data fields are bounded below the frame limit).
    if let Ok(frame) = encode_message(message) {
        out.extend_from_slice(&frame);
    }
}
