//! The cryptographic layer for secure rooms: a Noise
//! handshake that authenticates the server by its static key, transport keys used statelessly
//! with an explicit nonce per datagram, and a replay window, as WireGuard does.
//!
//! # Why Noise NX
//!
//! `Noise_NX_25519_ChaChaPoly_BLAKE2s`: the client has no long-term key (N); the server's static
//! key is transmitted (X), encrypted, in the second message, and proven by the `es` Diffie-Hellman
//! it takes part in. So a client that has never met the server learns its key during the
//! handshake and can pin it (trust on first use, like SSH's known_hosts), and a client that has
//! pinned it (or was given it with `--server-key`) refuses any other: a man in the middle
//! cannot complete the handshake with the real key without the real private key. NK would need
//! the key before the first contact; XX would give clients keys they do not need.
//!
//! Over UDP, datagrams are lost and reordered, so the transport keys are used with
//! [`snow::StatelessTransportState`]: each datagram carries its 64-bit nonce in clear, and the
//! receiver keeps a [`ReplayWindow`] of the nonces it has accepted.
//!
//! # Randomness
//!
//! The handshakes' ephemeral keys are drawn from the [`RandomSource`] the caller passes in,
//! not from the operating system (snow's default): an `InjectedResolver` gives snow the default
//! primitives but a generator seeded from that source. The drivers pass an unpredictable
//! source (`udpchat_net::OsRandom`), so the keys are as secret as before; a simulation passes
//! a seeded one, and a seed replays a secure run byte for byte.

use std::cell::Cell;

use blake2::Blake2sMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use bytes::BytesMut;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::rng::{RandomSource, fill_bytes};
use crate::wire::packet::{ConnectionId, put_sealed_header};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_NX_25519_ChaChaPoly_BLAKE2s";
/// Bytes of a static public key.
pub const KEY_LEN: usize = 32;
/// Bytes the AEAD adds to each message.
pub const TAG_LEN: usize = 16;
/// Bytes of the handshake's first message (the client's ephemeral key).
pub const HANDSHAKE_1_LEN: usize = 32;
/// Bytes of the second message before its payload: ephemeral key, encrypted static key + tag,
/// and the payload's tag.
pub const HANDSHAKE_2_OVERHEAD: usize = 32 + KEY_LEN + TAG_LEN + TAG_LEN;
/// Bytes sealing adds to a datagram: the Sealed header (12) and nonce (8), and the AEAD tag.
pub const SEAL_OVERHEAD: usize = 12 + 8 + TAG_LEN;
/// Spare room in output buffers (snow checks buffer sizes conservatively).
const SLACK: usize = 64;
/// How many nonces below the highest accepted one are still accepted once (out of order).
pub const REPLAY_WINDOW: u64 = 1024;

/// What can go wrong. Everything but `Internal` means "the peer sent something we reject".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A handshake or transport message did not authenticate (tampered, or the wrong key).
    #[error("message failed authentication")]
    BadMessage,
    /// A nonce seen before, or too far behind the newest one.
    #[error("replayed or too old")]
    Replayed,
    /// The server's key is not the one pinned for it.
    #[error("the server's key changed: pinned {pinned}, offered {offered}")]
    KeyMismatch {
        /// The pinned key's fingerprint.
        pinned: String,
        /// The offered key's fingerprint.
        offered: String,
    },
    /// A local misuse or a failure of the crypto library.
    #[error("internal crypto error: {0}")]
    Internal(String),
}

fn params() -> NoiseParams {
    // A constant, valid protocol name: parsing cannot fail.
    NOISE_PARAMS
        .parse()
        .unwrap_or_else(|_| unreachable!("valid Noise protocol name"))
}

fn internal(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Internal(e.to_string())
}

/// A snow builder whose randomness comes from `rng` (see [`InjectedResolver`]).
fn builder(rng: &mut dyn RandomSource) -> snow::Builder<'static> {
    snow::Builder::with_resolver(params(), Box::new(InjectedResolver::new(rng)))
}

/// snow's [`DefaultResolver`] primitives (X25519, ChaCha20-Poly1305, BLAKE2s), with randomness
/// from a 256-bit seed drawn from the injected [`RandomSource`] when a handshake starts.
///
/// Each generator it resolves is its own stream of that seed (snow resolves one per
/// handshake, for the ephemeral key).
struct InjectedResolver {
    seed: [u8; 32],
    /// The next stream to hand out.
    streams: Cell<u64>,
}

impl InjectedResolver {
    fn new(rng: &mut dyn RandomSource) -> Self {
        let mut seed = [0u8; 32];
        fill_bytes(rng, &mut seed);
        Self {
            seed,
            streams: Cell::new(0),
        }
    }
}

impl CryptoResolver for InjectedResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let stream = self.streams.get();
        self.streams.set(stream.wrapping_add(1));
        Some(Box::new(SeededRandom {
            key: self.seed,
            stream,
            block: 0,
        }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// A deterministic random bit generator: keyed BLAKE2s (a PRF) over (stream, block counter),
/// 32 bytes per block. As unpredictable as its key, which [`InjectedResolver`] draws from the
/// injected source.
struct SeededRandom {
    key: [u8; 32],
    stream: u64,
    block: u64,
}

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        for chunk in dest.chunks_mut(32) {
            // BLAKE2s takes keys of up to 32 bytes: this one is its full size, no error possible.
            let mut mac = <Blake2sMac<U32> as KeyInit>::new(&self.key.into());
            mac.update(b"udpchat noise rng");
            mac.update(&self.stream.to_le_bytes());
            mac.update(&self.block.to_le_bytes());
            self.block = self.block.wrapping_add(1);
            let block: [u8; 32] = mac.finalize().into_bytes().into();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

/// A server's long-term X25519 key pair.
#[derive(Clone)]
pub struct StaticKeypair {
    /// The private key; keep it secret (mode 0600 on disk).
    pub private: [u8; KEY_LEN],
    /// The public key clients pin.
    pub public: [u8; KEY_LEN],
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StaticKeypair {{ public: {} }}",
            fingerprint(&self.public)
        )
    }
}

impl StaticKeypair {
    /// The key pair whose private key is `private` (32 random bytes from a good source).
    ///
    /// # Errors
    /// Only if the crypto library fails.
    pub fn from_private(private: [u8; KEY_LEN]) -> Result<Self, CryptoError> {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .ok_or_else(|| internal("no X25519"))?;
        dh.set(&private);
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(dh.pubkey());
        Ok(Self { private, public })
    }
}

/// A key's fingerprint in a form people can read to each other: the first 20 bytes of the key
/// in Crockford base32 (no I, L, O, U to confuse), in eight groups of four.
pub fn fingerprint(public: &[u8; KEY_LEN]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut chars = String::new();
    for &byte in &public[..20] {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            chars.push(char::from(ALPHABET[((bits >> nbits) & 31) as usize]));
        }
    }
    chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses a fingerprint as [`fingerprint`] writes it (case, dashes and spaces ignored; `O` is
/// read as 0 and `I`/`L` as 1, as Crockford allows), for comparison with a key's fingerprint.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    if cleaned.len() != 32
        || !cleaned
            .chars()
            .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c))
    {
        return None;
    }
    Some(
        cleaned
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-"),
    )
}

/// The client's side of the handshake.
pub struct ClientHandshake {
    state: snow::HandshakeState,
    /// The key the server must have, if pinned.
    pinned: Option<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("pinned", &self.pinned.map(|k| fingerprint(&k)))
            .finish()
    }
}

/// The server's side of the handshake, after the client's first message.
pub struct ServerHandshake {
    state: snow::HandshakeState,
}

/// Keys for one direction-pair, after the handshake.
pub struct Transport {
    state: snow::StatelessTransportState,
    next_send_nonce: u64,
    replay: ReplayWindow,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("next_send_nonce", &self.next_send_nonce)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake; with `pinned`, only that server key is accepted. The ephemeral key
    /// is drawn from `rng`.
    ///
    /// # Errors
    /// Only if the crypto library fails.
    pub fn new(
        pinned: Option<[u8; KEY_LEN]>,
        rng: &mut dyn RandomSource,
    ) -> Result<(Self, Vec<u8>), CryptoError> {
        let mut state = builder(rng).build_initiator().map_err(internal)?;
        let mut msg = vec![0u8; HANDSHAKE_1_LEN + SLACK];
        let n = state.write_message(&[], &mut msg).map_err(internal)?;
        msg.truncate(n);
        Ok((Self { state, pinned }, msg))
    }

    /// Reads the server's answer: checks its key against the pin, returns the transport keys,
    /// the server's key (to pin when it was not) and the payload the server sent.
    ///
    /// # Errors
    /// [`CryptoError::BadMessage`] for anything that does not authenticate,
    /// [`CryptoError::KeyMismatch`] for the wrong server key.
    pub fn finish(
        mut self,
        message: &[u8],
    ) -> Result<(Transport, [u8; KEY_LEN], Vec<u8>), CryptoError> {
        let mut payload = vec![0u8; message.len() + SLACK];
        let n = self
            .state
            .read_message(message, &mut payload)
            .map_err(|_| CryptoError::BadMessage)?;
        payload.truncate(n);
        let mut server_key = [0u8; KEY_LEN];
        let remote = self
            .state
            .get_remote_static()
            .ok_or(CryptoError::BadMessage)?;
        if remote.len() != KEY_LEN {
            return Err(CryptoError::BadMessage);
        }
        server_key.copy_from_slice(remote);
        if let Some(pinned) = self.pinned
            && pinned != server_key
        {
            return Err(CryptoError::KeyMismatch {
                pinned: fingerprint(&pinned),
                offered: fingerprint(&server_key),
            });
        }
        let state = self
            .state
            .into_stateless_transport_mode()
            .map_err(internal)?;
        Ok((Transport::new(state), server_key, payload))
    }
}

impl ServerHandshake {
    /// Answers a client's first message with the second, carrying `payload` encrypted, and
    /// returns the transport keys. The ephemeral key is drawn from `rng`.
    ///
    /// # Errors
    /// [`CryptoError::BadMessage`] if the first message is malformed.
    pub fn respond(
        keys: &StaticKeypair,
        message: &[u8],
        payload: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<(Transport, Vec<u8>), CryptoError> {
        let mut state = builder(rng)
            .local_private_key(&keys.private)
            .map_err(internal)?
            .build_responder()
            .map_err(internal)?;
        let mut scratch = [0u8; HANDSHAKE_1_LEN + SLACK];
        state
            .read_message(message, &mut scratch)
            .map_err(|_| CryptoError::BadMessage)?;
        let mut out = vec![0u8; HANDSHAKE_2_OVERHEAD + payload.len() + SLACK];
        let n = state.write_message(payload, &mut out).map_err(internal)?;
        out.truncate(n);
        let server = ServerHandshake { state };
        let state = server
            .state
            .into_stateless_transport_mode()
            .map_err(internal)?;
        Ok((Transport::new(state), out))
    }
}

impl Transport {
    fn new(state: snow::StatelessTransportState) -> Self {
        Self {
            state,
            next_send_nonce: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Encrypts `plaintext`; returns the nonce to send in clear with the ciphertext.
    ///
    /// # Errors
    /// Only if the crypto library fails (or after 2^64 messages).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<(u64, Vec<u8>), CryptoError> {
        let nonce = self.take_nonce()?;
        let mut out = vec![0u8; plaintext.len() + TAG_LEN + SLACK];
        let n = self
            .state
            .write_message(nonce, plaintext, &mut out)
            .map_err(internal)?;
        out.truncate(n);
        Ok((nonce, out))
    }

    /// The next nonce to send with.
    fn take_nonce(&mut self) -> Result<u64, CryptoError> {
        let nonce = self.next_send_nonce;
        self.next_send_nonce = nonce
            .checked_add(1)
            .ok_or_else(|| internal("nonces exhausted"))?;
        Ok(nonce)
    }

    /// `datagram` (a Data or Close of `connection`) encrypted as a Sealed datagram; `None` only
    /// once 2^64 nonces are used up.
    pub fn seal_datagram(&mut self, connection: ConnectionId, datagram: &[u8]) -> Option<Vec<u8>> {
        let mut out = BytesMut::with_capacity(SEAL_OVERHEAD + datagram.len() + SLACK);
        self.seal_datagram_into(connection, datagram, &mut out)
            .then(|| Vec::from(out))
    }

    /// [`seal_datagram`](Self::seal_datagram) appended to `out` (a buffer the caller reuses:
    /// no allocation while it has room); returns whether it was written.
    ///
    /// The ciphertext is written in place behind the header (a Sealed datagram ends with its
    /// ciphertext), not copied from a second buffer.
    pub fn seal_datagram_into(
        &mut self,
        connection: ConnectionId,
        datagram: &[u8],
        out: &mut BytesMut,
    ) -> bool {
        let Ok(nonce) = self.take_nonce() else {
            return false;
        };
        // Room for all of it at once (in a reused buffer, usually there already).
        out.reserve(SEAL_OVERHEAD + datagram.len() + SLACK);
        let start = out.len();
        put_sealed_header(out, connection, nonce);
        let body = out.len();
        out.resize(body + datagram.len() + TAG_LEN + SLACK, 0);
        match self.state.write_message(nonce, datagram, &mut out[body..]) {
            Ok(n) => {
                out.truncate(body + n);
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    /// Decrypts a datagram's body sent with `nonce`, once: a replay or a tampered byte is
    /// refused.
    ///
    /// # Errors
    /// [`CryptoError::Replayed`] or [`CryptoError::BadMessage`].
    pub fn open(&mut self, nonce: u64, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        self.open_into(nonce, ciphertext, &mut out)?;
        Ok(out)
    }

    /// [`open`](Self::open) into `out` (cleared first; a buffer the caller reuses, so that
    /// receiving allocates nothing once it has grown to a datagram's size).
    ///
    /// # Errors
    /// As [`open`](Self::open); `out` is then empty.
    pub fn open_into(
        &mut self,
        nonce: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        out.clear();
        if !self.replay.may_accept(nonce) {
            return Err(CryptoError::Replayed);
        }
        out.resize(ciphertext.len() + SLACK, 0);
        match self.state.read_message(nonce, ciphertext, out) {
            Ok(n) => out.truncate(n),
            Err(_) => {
                out.clear();
                return Err(CryptoError::BadMessage);
            }
        }
        // Only an authentic datagram moves the window.
        self.replay.accept(nonce);
        Ok(())
    }
}

/// Which nonces have been accepted: the highest, and a bitmap of the [`REPLAY_WINDOW`] below
/// it (RFC 6479's sliding window, as WireGuard uses).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One more than the highest nonce accepted (0: none yet).
    top: u64,
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            top: 0,
            bits: [0; (REPLAY_WINDOW / 64) as usize],
        }
    }
}

impl ReplayWindow {
    fn slot(nonce: u64) -> (usize, u64) {
        let index = (nonce % REPLAY_WINDOW) as usize;
        (index / 64, 1u64 << (index % 64))
    }

    /// Whether `nonce` is new and not too old.
    pub fn may_accept(&self, nonce: u64) -> bool {
        if nonce >= self.top {
            return true;
        }
        if self.top - nonce > REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(nonce);
        self.bits[word] & bit == 0
    }

    /// Records `nonce` (call only after [`may_accept`](Self::may_accept) and authentication).
    pub fn accept(&mut self, nonce: u64) {
        if nonce >= self.top {
            // Clear the slots the window slides over.
            let advance = (nonce + 1 - self.top).min(REPLAY_WINDOW);
            for n in 0..advance {
                let (word, bit) = Self::slot(self.top + n);
                self.bits[word] &= !bit;
            }
            self.top = nonce + 1;
        }
        let (word, bit) = Self::slot(nonce);
        self.bits[word] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::wire::packet::Packet;

    fn rng() -> SplitMix64 {
        SplitMix64::new(9)
    }

    fn server_keys(seed: u8) -> StaticKeypair {
        StaticKeypair::from_private([seed; KEY_LEN]).unwrap()
    }

    fn handshake(
        keys: &StaticKeypair,
        pinned: Option<[u8; KEY_LEN]>,
    ) -> Result<(Transport, Transport), CryptoError> {
        let (client, hello) = ClientHandshake::new(pinned, &mut rng())?;
        assert_eq!(hello.len(), HANDSHAKE_1_LEN);
        let (server_transport, welcome) =
            ServerHandshake::respond(keys, &hello, b"session 42", &mut rng())?;
        assert_eq!(welcome.len(), HANDSHAKE_2_OVERHEAD + 10);
        let (client_transport, learned, payload) = client.finish(&welcome)?;
        assert_eq!(learned, keys.public);
        assert_eq!(payload, b"session 42");
        Ok((client_transport, server_transport))
    }

    #[test]
    fn handshake_then_messages_both_ways() {
        let keys = server_keys(1);
        let (mut client, mut server) = handshake(&keys, None).unwrap();
        let (nonce, sealed) = client.seal(b"hello room").unwrap();
        assert!(
            !sealed.windows(4).any(|w| w == b"room"),
            "ciphertext shows the text"
        );
        assert_eq!(server.open(nonce, &sealed).unwrap(), b"hello room");
        let (nonce, sealed) = server.seal(b"welcome").unwrap();
        assert_eq!(client.open(nonce, &sealed).unwrap(), b"welcome");
    }

    #[test]
    fn a_sealed_datagram_decodes_and_opens_to_what_was_sealed() {
        let keys = server_keys(1);
        let (mut client, mut server) = handshake(&keys, None).unwrap();
        let bodies: [&[u8]; 3] = [b"", b"x", &[7u8; 1200]];
        for (i, body) in bodies.into_iter().enumerate() {
            let sealed = server.seal_datagram(ConnectionId(42), body).unwrap();
            let Packet::Sealed {
                connection,
                nonce,
                ciphertext,
            } = Packet::decode(&sealed).unwrap()
            else {
                panic!("not a Sealed datagram");
            };
            assert_eq!(connection, ConnectionId(42));
            assert_eq!(nonce, i as u64);
            assert_eq!(ciphertext.len(), body.len() + TAG_LEN);
            assert_eq!(client.open(nonce, &ciphertext).unwrap(), body);
        }
    }

    #[test]
    fn a_pinned_key_is_required_and_a_changed_key_is_refused() {
        let real = server_keys(1);
        let impostor = server_keys(2);
        assert!(handshake(&real, Some(real.public)).is_ok());
        let err = handshake(&impostor, Some(real.public)).err().unwrap();
        assert!(matches!(err, CryptoError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn tampered_messages_are_refused() {
        let keys = server_keys(1);
        let (client, hello) = ClientHandshake::new(None, &mut rng()).unwrap();
        let (_, mut welcome) = ServerHandshake::respond(&keys, &hello, b"x", &mut rng()).unwrap();
        welcome[40] ^= 1;
        assert_eq!(client.finish(&welcome).err(), Some(CryptoError::BadMessage));

        let (mut client, mut server) = handshake(&keys, None).unwrap();
        let (nonce, mut sealed) = client.seal(b"pay 10 euros").unwrap();
        sealed[3] ^= 0x80;
        assert_eq!(server.open(nonce, &sealed), Err(CryptoError::BadMessage));
        // A valid ciphertext under the wrong nonce does not open either.
        let (nonce, sealed) = client.seal(b"again").unwrap();
        assert_eq!(
            server.open(nonce + 1, &sealed),
            Err(CryptoError::BadMessage)
        );
        assert_eq!(
            server.open(nonce, &sealed).unwrap(),
            b"again",
            "a failed attempt does not burn the nonce"
        );
    }

    #[test]
    fn replays_are_refused_and_reordering_within_the_window_is_fine() {
        let keys = server_keys(1);
        let (mut client, mut server) = handshake(&keys, None).unwrap();
        let sealed: Vec<(u64, Vec<u8>)> = (0..5).map(|i| client.seal(&[i]).unwrap()).collect();
        for i in [3usize, 0, 4, 1] {
            assert_eq!(server.open(sealed[i].0, &sealed[i].1).unwrap(), [i as u8]);
        }
        assert_eq!(
            server.open(sealed[3].0, &sealed[3].1),
            Err(CryptoError::Replayed)
        );
        assert_eq!(server.open(sealed[2].0, &sealed[2].1).unwrap(), [2]);
        assert_eq!(
            server.open(sealed[2].0, &sealed[2].1),
            Err(CryptoError::Replayed)
        );
    }

    #[test]
    fn the_replay_window_slides() {
        let mut w = ReplayWindow::default();
        w.accept(0);
        w.accept(5000);
        assert!(!w.may_accept(0), "far behind");
        assert!(!w.may_accept(5000 - REPLAY_WINDOW - 1));
        assert!(w.may_accept(5000 - 100));
        w.accept(4900);
        assert!(!w.may_accept(4900));
        assert!(w.may_accept(5001));
        // A slot reused after the window moved on is free again.
        w.accept(5000 + REPLAY_WINDOW + 4900 % REPLAY_WINDOW);
        assert!(!w.may_accept(4900));
    }

    #[test]
    fn fingerprints_read_aloud_and_parse_back() {
        let keys = server_keys(7);
        let fp = fingerprint(&keys.public);
        assert_eq!(fp.len(), 8 * 4 + 7);
        assert!(
            fp.chars()
                .all(|c| c == '-' || "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)),
            "{fp}"
        );
        assert_eq!(
            normalize_fingerprint(&fp.to_lowercase().replace('-', " ")),
            Some(fp.clone())
        );
        let with_o = fp.replace('0', "o");
        assert_eq!(normalize_fingerprint(&with_o), Some(fp));
        assert_eq!(normalize_fingerprint("not a key"), None);
        assert_ne!(
            fingerprint(&server_keys(8).public),
            fingerprint(&keys.public)
        );
    }

    #[test]
    fn ephemeral_keys_come_from_the_injected_source() {
        let hello = |seed| {
            ClientHandshake::new(None, &mut SplitMix64::new(seed))
                .unwrap()
                .1
        };
        assert_eq!(hello(1), hello(1), "the same seed, the same ephemeral key");
        assert_ne!(hello(1), hello(2));
        let keys = server_keys(1);
        let welcome = |seed| {
            ServerHandshake::respond(&keys, &hello(1), b"x", &mut SplitMix64::new(seed))
                .unwrap()
                .1
        };
        assert_eq!(welcome(3), welcome(3));
        assert_ne!(welcome(3), welcome(4));
        // Each generator the resolver hands out is a stream of its own.
        let resolver = InjectedResolver::new(&mut SplitMix64::new(5));
        let draw = |r: &InjectedResolver| {
            let mut out = [0u8; 40];
            r.resolve_rng().unwrap().try_fill_bytes(&mut out).unwrap();
            out
        };
        assert_ne!(draw(&resolver), draw(&resolver));
    }
}
