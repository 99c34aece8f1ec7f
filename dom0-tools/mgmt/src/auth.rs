//! Authentication of a TCP connection (protocol 2.2): an HMAC-SHA256
//! challenge-response over a pre-shared [`Key`], both ways, before any
//! request.
//!
//! ```text
//! server                                         client
//!   Challenge { version, server_nonce }   ->
//!                                         <-  Authenticate { client_nonce,
//!                                                 client_proof }
//!   check client_proof (constant time)
//!   Authenticated { server_proof }        ->  check server_proof
//!   (or Rejected(AuthenticationRefused), then the connection closes)
//! ```
//!
//! with `proof = HMAC-SHA256(key, label ++ server_nonce ++ client_nonce)`
//! and a different fixed-length label each way ([`CLIENT_LABEL`],
//! [`SERVER_LABEL`]).
//!
//! Why this holds:
//! - **Replay**: a recorded `Authenticate` answers one server nonce, and
//!   the server never issues the same one twice ([`NonceSource`]).
//! - **Reflection**: the server's proof uses another label than the
//!   client's, so what one side sends is never a valid answer for the
//!   other; a client that sees its own proof come back does not accept it.
//! - **Oracle**: a server proof also covers the client's fresh nonce, so
//!   a fake server cannot collect proofs to replay elsewhere, and a client
//!   learns nothing usable from a server that lacks the key.
//! - Nothing is taken from the wire as a key or a length before the proof
//!   is checked; the comparison is constant-time (`hmac`'s `verify_slice`).
//!
//! Limits: only the handshake is authenticated. Frames after it carry no
//! MAC and nothing is encrypted, so someone who can rewrite the TCP
//! stream between the two ends could take over an authenticated
//! connection. The transport is loopback only (QEMU's user network with
//! `restrict=on`, forwarded from 127.0.0.1), which is what makes that
//! acceptable: the key keeps out other local users and processes that do
//! not hold the key file, not an attacker on the path.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    decode_client_message, ClientMessage, Decoded, MgmtError, Request, ServerMessage,
    PROTOCOL_VERSION,
};

/// Bytes of the pre-shared key.
pub const KEY_LEN: usize = 32;
/// Bytes of each nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// A nonce of the handshake.
pub type Nonce = [u8; NONCE_LEN];
/// An HMAC-SHA256 tag (a proof).
pub type Tag = [u8; TAG_LEN];

/// What the client's proof covers after the key: this label, then the
/// server's and the client's nonces.
pub const CLIENT_LABEL: &[u8; 32] = b"xen-core mgmt 2.2 client proof\0\0";
/// The label of the server's proof (same length as [`CLIENT_LABEL`]).
pub const SERVER_LABEL: &[u8; 32] = b"xen-core mgmt 2.2 server proof\0\0";
/// The label of the server's nonces ([`NonceSource`]).
pub const NONCE_LABEL: &[u8; 32] = b"xen-core mgmt 2.2 server nonce\0\0";

type HmacSha256 = Hmac<Sha256>;

/// The pre-shared management key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why bytes are not a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not [`KEY_LEN`] bytes (or not `2 * KEY_LEN` hex digits).
    #[error("a management key is {KEY_LEN} bytes, written as {} hex digits", 2 * KEY_LEN)]
    Length,
    /// A character that is no hex digit.
    #[error("a management key is written in hex digits only")]
    NotHex,
}

impl Key {
    /// The key made of these bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        bytes.try_into().map(Key).map_err(|_| KeyError::Length)
    }

    /// The key written as `2 * KEY_LEN` hex digits (the key file's
    /// format), surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let digits = text.trim().as_bytes();
        if digits.len() != 2 * KEY_LEN {
            return Err(KeyError::Length);
        }
        let mut key = [0u8; KEY_LEN];
        for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(Key(key))
    }

    /// The key as the key file holds it: `2 * KEY_LEN` lowercase hex
    /// digits.
    pub fn to_hex(&self) -> [u8; 2 * KEY_LEN] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 2 * KEY_LEN];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        text
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    fn keyed(&self, label: &[u8; 32], a: &[u8], b: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(label);
        mac.update(a);
        mac.update(b);
        mac
    }
}

fn hex_digit(c: u8) -> Result<u8, KeyError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(KeyError::NotHex),
    }
}

/// The client's proof for `server_nonce` and its own `client_nonce`.
pub fn client_proof(key: &Key, server_nonce: &Nonce, client_nonce: &Nonce) -> Tag {
    tag(key.keyed(CLIENT_LABEL, server_nonce, client_nonce))
}

/// The server's proof for the same two nonces.
pub fn server_proof(key: &Key, server_nonce: &Nonce, client_nonce: &Nonce) -> Tag {
    tag(key.keyed(SERVER_LABEL, server_nonce, client_nonce))
}

/// Whether `proof` is the client's proof for the nonces (constant time).
pub fn check_client_proof(
    key: &Key,
    server_nonce: &Nonce,
    client_nonce: &Nonce,
    proof: &Tag,
) -> bool {
    key.keyed(CLIENT_LABEL, server_nonce, client_nonce)
        .verify_slice(proof)
        .is_ok()
}

/// Whether `proof` is the server's proof for the nonces (constant time).
pub fn check_server_proof(
    key: &Key,
    server_nonce: &Nonce,
    client_nonce: &Nonce,
    proof: &Tag,
) -> bool {
    key.keyed(SERVER_LABEL, server_nonce, client_nonce)
        .verify_slice(proof)
        .is_ok()
}

fn tag(mac: HmacSha256) -> Tag {
    mac.finalize().into_bytes().into()
}

/// The server's nonces: `HMAC-SHA256(key, NONCE_LABEL ++ counter ++
/// entropy)`, the counter counting every nonce issued.
///
/// Why: dom0 runs on QEMU's `qemu64` CPU, which has no RDRAND, and has no
/// other entropy source at boot. A keyed hash of a counter is unique
/// (the counter never repeats while the agent runs) and unpredictable to
/// anyone without the key, which is all a challenge needs. The caller
/// mixes in what entropy it has (the TSC; RDRAND where the CPU has it),
/// so that a key reused across boots (the counter starts again at 0)
/// still gets different nonces; `cargo xtask up` writes a fresh key for
/// every boot, so with it, uniqueness rests on the counter alone.
#[derive(Debug)]
pub struct NonceSource {
    key: Key,
    counter: u64,
}

impl NonceSource {
    /// Nonces keyed by `key`, from counter 0.
    pub fn new(key: Key) -> Self {
        Self { key, counter: 0 }
    }

    /// A nonce never issued before by this source; `entropy` is whatever
    /// unpredictable bits the caller has (e.g. the TSC).
    pub fn next(&mut self, entropy: u64) -> Nonce {
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(1);
        tag(self
            .key
            .keyed(NONCE_LABEL, &counter.to_le_bytes(), &entropy.to_le_bytes()))
    }

    /// The key the nonces are made with (the server checks proofs with it).
    pub fn key(&self) -> &Key {
        &self.key
    }
}

/// One TCP connection's side of the handshake, server side: the
/// challenge it sent, until the client's answer comes.
#[derive(Debug)]
pub struct Gate {
    server_nonce: Nonce,
}

/// What the server does with the client's first frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The proof was right: send this ([`ServerMessage::Authenticated`])
    /// and serve the connection's requests from now on.
    Open(ServerMessage),
    /// Anything else (no key, a wrong key, a replayed answer, garbage, a
    /// request): send this refusal and close the connection. Nothing else
    /// is sent or done.
    Refused(ServerMessage),
}

impl Gate {
    /// A new connection's challenge, with a fresh nonce from `nonces`:
    /// the gate and the message to send first.
    pub fn challenge(nonces: &mut NonceSource, entropy: u64) -> (Gate, ServerMessage) {
        let server_nonce = nonces.next(entropy);
        let challenge = ServerMessage::Challenge {
            version: PROTOCOL_VERSION,
            server_nonce,
        };
        (Gate { server_nonce }, challenge)
    }

    /// Checks the client's first decoded item against `key`.
    pub fn answer(self, key: &Key, item: Decoded) -> Verdict {
        let refused =
            || Verdict::Refused(ServerMessage::Rejected(MgmtError::AuthenticationRefused));
        let Ok(payload) = item else {
            return refused();
        };
        let Ok(ClientMessage {
            request:
                Request::Authenticate {
                    client_nonce,
                    client_proof,
                },
            ..
        }) = decode_client_message(&payload)
        else {
            return refused();
        };
        if !check_client_proof(key, &self.server_nonce, &client_nonce, &client_proof) {
            return refused();
        }
        Verdict::Open(ServerMessage::Authenticated {
            server_proof: server_proof(key, &self.server_nonce, &client_nonce),
        })
    }
}

#[cfg(test)]
// Fixture bytes are chosen to fit.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::{encode_message, Decoder};

    fn item(request: Request) -> Decoded {
        let frame = encode_message(&ClientMessage {
            session: 0,
            id: 0,
            request,
        })
        .unwrap();
        Decoder::new().decode(&mut &frame[..]).unwrap()
    }

    fn nonce_of(challenge: &ServerMessage) -> Nonce {
        match challenge {
            ServerMessage::Challenge {
                version,
                server_nonce,
            } => {
                assert_eq!(*version, PROTOCOL_VERSION);
                *server_nonce
            }
            other => panic!("{other:?}"),
        }
    }

    fn refusal() -> Verdict {
        Verdict::Refused(ServerMessage::Rejected(MgmtError::AuthenticationRefused))
    }

    #[test]
    fn the_right_key_opens_and_the_server_proves_it_too() {
        let k = key(5);
        let mut nonces = NonceSource::new(k.clone());
        let (gate, challenge) = Gate::challenge(&mut nonces, 42);
        let s = nonce_of(&challenge);
        let c = [9u8; NONCE_LEN];
        let verdict = gate.answer(
            &k,
            item(Request::Authenticate {
                client_nonce: c,
                client_proof: client_proof(&k, &s, &c),
            }),
        );
        match verdict {
            Verdict::Open(ServerMessage::Authenticated { server_proof }) => {
                assert!(check_server_proof(&k, &s, &c, &server_proof))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_key_garbage_or_a_request_is_refused() {
        let k = key(5);
        let mut nonces = NonceSource::new(k.clone());
        let c = [9u8; NONCE_LEN];
        let (gate, challenge) = Gate::challenge(&mut nonces, 0);
        let s = nonce_of(&challenge);
        let wrong = Request::Authenticate {
            client_nonce: c,
            client_proof: client_proof(&key(6), &s, &c),
        };
        assert_eq!(gate.answer(&k, item(wrong)), refusal());
        let (gate, _) = Gate::challenge(&mut nonces, 0);
        assert_eq!(gate.answer(&k, item(Request::List)), refusal());
        let (gate, _) = Gate::challenge(&mut nonces, 0);
        assert_eq!(
            gate.answer(&k, Err(crate::FrameError::Garbage { skipped: 3 })),
            refusal()
        );
        let (gate, _) = Gate::challenge(&mut nonces, 0);
        assert_eq!(gate.answer(&k, Ok(alloc::vec![0xff; 70])), refusal());
    }

    #[test]
    fn a_replayed_answer_is_refused_on_the_next_connection() {
        let k = key(5);
        let mut nonces = NonceSource::new(k.clone());
        let c = [9u8; NONCE_LEN];
        let (gate, challenge) = Gate::challenge(&mut nonces, 7);
        let s = nonce_of(&challenge);
        let recorded = Request::Authenticate {
            client_nonce: c,
            client_proof: client_proof(&k, &s, &c),
        };
        assert!(matches!(
            gate.answer(&k, item(recorded.clone())),
            Verdict::Open(_)
        ));
        // The same entropy (a TSC that did not move): still a new nonce.
        let (gate, challenge) = Gate::challenge(&mut nonces, 7);
        assert_ne!(nonce_of(&challenge), s);
        assert_eq!(gate.answer(&k, item(recorded)), refusal());
    }

    proptest::proptest! {
        /// Whatever the key and nonces: the right proof passes, and a proof
        /// with any bit flipped, or checked under another key, fails.
        #[test]
        fn only_the_exact_proof_passes(
            k in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            s in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            c in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            byte in 0..TAG_LEN,
            bit in 0..8u8,
        ) {
            let key = Key(k);
            let proof = client_proof(&key, &s, &c);
            proptest::prop_assert!(check_client_proof(&key, &s, &c, &proof));
            let mut flipped = proof;
            flipped[byte] ^= 1 << bit;
            proptest::prop_assert!(!check_client_proof(&key, &s, &c, &flipped));
            let mut other = k;
            other[byte] ^= 1 << bit;
            proptest::prop_assert!(!check_client_proof(&Key(other), &s, &c, &proof));
        }
    }

    #[test]
    fn the_servers_own_proof_reflected_back_is_refused() {
        let k = key(5);
        let mut nonces = NonceSource::new(k.clone());
        let c = [9u8; NONCE_LEN];
        let (gate, challenge) = Gate::challenge(&mut nonces, 0);
        let s = nonce_of(&challenge);
        let reflected = Request::Authenticate {
            client_nonce: c,
            client_proof: server_proof(&k, &s, &c),
        };
        assert_eq!(gate.answer(&k, item(reflected)), refusal());
    }

    fn key(byte: u8) -> Key {
        Key([byte; KEY_LEN])
    }

    /// RFC 4231 test case 2: HMAC-SHA256 with key "Jefe". Pins the MAC the
    /// proofs are made of (a key of any length goes through the same code).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let got: Tag = mac.finalize().into_bytes().into();
        let hex: alloc::string::String = got.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn proofs_check_with_the_same_key_and_nonces_only() {
        let (s, c) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        let proof = client_proof(&key(7), &s, &c);
        assert!(check_client_proof(&key(7), &s, &c, &proof));
        assert!(!check_client_proof(&key(8), &s, &c, &proof));
        assert!(!check_client_proof(&key(7), &[3; NONCE_LEN], &c, &proof));
        assert!(!check_client_proof(&key(7), &s, &[3; NONCE_LEN], &proof));
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert!(!check_client_proof(&key(7), &s, &c, &flipped));
    }

    #[test]
    fn a_proof_is_never_valid_the_other_way() {
        let (s, c) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        let k = key(7);
        assert!(!check_server_proof(&k, &s, &c, &client_proof(&k, &s, &c)));
        assert!(!check_client_proof(&k, &s, &c, &server_proof(&k, &s, &c)));
        // Swapping the nonces does not turn one into the other either.
        assert!(!check_client_proof(&k, &c, &s, &server_proof(&k, &s, &c)));
    }

    #[test]
    fn nonces_never_repeat_and_depend_on_the_key() {
        let mut a = NonceSource::new(key(1));
        let mut b = NonceSource::new(key(2));
        let first = a.next(0);
        assert_ne!(first, a.next(0), "same entropy, later counter");
        assert_ne!(first, b.next(0), "another key");
        let mut again = NonceSource::new(key(1));
        assert_ne!(first, again.next(1), "same counter, other entropy");
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let k = Key(core::array::from_fn(|i| (i * 37) as u8));
        let text = k.to_hex();
        let text = core::str::from_utf8(&text).unwrap();
        assert_eq!(Key::from_hex(&alloc::format!("{text}\n")), Ok(k.clone()));
        assert_eq!(Key::from_hex(&text.to_uppercase()), Ok(k));
        assert_eq!(Key::from_hex(&text[1..]), Err(KeyError::Length));
        assert_eq!(
            Key::from_hex(&text.replacen('0', "g", 1)),
            Err(KeyError::NotHex)
        );
        assert_eq!(Key::from_bytes(&[0; 31]), Err(KeyError::Length));
        assert_eq!(alloc::format!("{:?}", key(9)), "Key(..)");
    }
}
