//! End-to-end sealing of messages: Noise `X` handshakes amortised over sessions.
//!
//! # Baseline
//! Every message leaves its author sealed for its recipient with the one-way Noise
//! pattern `X` ([`NOISE_PARAMS`]): the sender's ephemeral and static keys against the
//! recipient's static X25519 key. It authenticates the sender and needs no round trip,
//! so a sealed message can wait in a relay's mailbox until the recipient comes online.
//!
//! # Sessions
//! One `X` handshake per message costs about three X25519 operations on each side
//! (plus a signature check on the receiver), which would cap throughput near 10k
//! messages per second. So a [`Sealer`] keeps, per recipient E2E key, a *send session*:
//! one handshake message `hs` plus the transport keys it yields, used as a
//! [`snow::StatelessTransportState`] with explicit nonces. Each message reserves as many
//! consecutive nonces as it has chunks. A session rotates after
//! [`SealerConfig::session_max_messages`] messages or [`SealerConfig::session_max_age`].
//!
//! The handshake payload carries the sender's peer id and the binding signature of its
//! E2E key ([`crate::identity::PublicIdentity`]); the receiver checks that the Noise
//! remote static key is bound to that peer id, so the Noise authentication of the key
//! becomes authentication of the user.
//!
//! # Envelopes
//! Every envelope is self-contained so it can travel any path, in any order, any number
//! of times: CBOR `{ v: 1, hs, nonce, chunks }` where `hs` (about 220 bytes) is repeated
//! in every envelope of the session and `chunks` are Noise transport messages under
//! consecutive nonces starting at `nonce`. Plaintext longer than one Noise message
//! (65535 bytes including the tag) is split into chunks of [`CHUNK_PLAINTEXT_LEN`].
//! Each chunk's plaintext ends in a flags byte (first / last chunk of the message), so
//! chunks cannot be dropped, reordered or spliced across messages of one session without
//! detection: the only nonce ranges that start with a "first" chunk, end with a "last"
//! chunk and have neither flag inside are exactly the messages the sender sealed.
//!
//! The [`Opener`] caches receive sessions by `blake3(hs)` in a bounded map, so it does
//! the DH and signature work once per session; a miss (eviction, restart) just redoes
//! the handshake from the `hs` in the envelope.
//!
//! # What this does not do
//! - **Replays decrypt again.** An envelope opened twice yields the same plaintext twice;
//!   de-duplication by message id is the job of the layer above. [`Opened`] exposes the
//!   session id and nonce so that layer can also track them if it wants.
//! - **No forward secrecy against the recipient's static key**: whoever later learns it
//!   can open every envelope ever sealed to it (inherent to one-way patterns; a ratchet
//!   for online peers is a later milestone). Compromise of the *sender's* keys does not
//!   expose past sessions once their transport keys are dropped, which rotation bounds.
//! - **Linkability**: every envelope of one session carries the same `hs`, so a relay
//!   can tell that they belong together (not who sent them: the sender's static key
//!   and identity are encrypted). Rotation bounds that too.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use snow::{StatelessTransportState, params::NoiseParams};

use crate::{
    identity::{Binding, Identity, PublicIdentity, wipe},
    wire::{self, WireError},
};

/// The Noise protocol name used for sealing.
pub const NOISE_PARAMS: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";

/// Noise prologue: mixed into the handshake hash so these handshakes cannot be confused
/// with any other use of the same keys and pattern, and so the format version is bound
/// into the keys.
const PROLOGUE: &[u8] = b"kith/envelope/v1";

/// The only envelope version this build reads and writes.
const VERSION: u32 = 1;

/// Largest encoded envelope accepted, in bytes.
///
/// Leaves room for [`MAX_PLAINTEXT_LEN`] plus the handshake, one tag and flags byte per
/// chunk, and CBOR framing; the relay mailbox and DM protocols use it as their body cap.
pub const MAX_ENVELOPE_LEN: usize = 256 * 1024;

/// Most bytes sealing adds to a plaintext, handshake included (a new session's
/// first envelope carries it): what a sender budgets per envelope before sealing.
pub const MAX_SEAL_OVERHEAD: usize = 1024;

/// Largest plaintext one envelope can carry, in bytes.
///
/// Messages are text and small structured data; files go through the blob protocol.
/// 192 KiB fits any sane message while keeping every envelope well under relay limits.
pub const MAX_PLAINTEXT_LEN: usize = 192 * 1024;

/// Noise's hard limit on one message, tag included.
const NOISE_MAX_MESSAGE_LEN: usize = 65535;

/// ChaCha20-Poly1305 tag length.
const TAG_LEN: usize = 16;

/// The flags byte at the end of every chunk's plaintext.
const FLAGS_LEN: usize = 1;

/// Flag: this chunk is the first of its message.
const FLAG_FIRST: u8 = 0b01;

/// Flag: this chunk is the last of its message.
const FLAG_LAST: u8 = 0b10;

/// Message bytes per chunk: one Noise transport message minus tag and flags byte.
pub const CHUNK_PLAINTEXT_LEN: usize = NOISE_MAX_MESSAGE_LEN - TAG_LEN - FLAGS_LEN;

/// Most chunks a valid envelope can have: enough for [`MAX_PLAINTEXT_LEN`]. Enforced
/// while decoding, so an envelope of empty byte strings costs nothing.
pub const MAX_CHUNKS: usize = MAX_PLAINTEXT_LEN.div_ceil(CHUNK_PLAINTEXT_LEN);

/// Largest handshake message accepted, in bytes.
///
/// A real one is e (32) + encrypted s (48) + encrypted payload (~140); the cap keeps a
/// hostile `hs` from costing more than a fixed stack buffer and one handshake.
const MAX_HANDSHAKE_LEN: usize = 512;

/// Largest handshake payload (peer id + binding), in bytes. A real one is ~120 bytes.
const MAX_HANDSHAKE_PAYLOAD_LEN: usize = MAX_HANDSHAKE_LEN - 32 - 48 - TAG_LEN;

/// Default messages per send session before a new handshake.
///
/// High enough that the handshake cost is negligible (one per 100k messages), low
/// enough that one transport key protects a bounded amount of traffic.
pub const SESSION_MAX_MESSAGES: u64 = 100_000;

/// Default lifetime of a send session.
///
/// Bounds how long the session's transport key lives in the sender's memory (after
/// rotation a compromise of the sender cannot decrypt older sessions) and how many
/// envelopes a relay can link by their shared `hs`.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// Default number of recipients a [`Sealer`] keeps send sessions for.
///
/// Sessions are cheap (under 1 KiB each); the bound only guards against unbounded growth
/// when sealing to very many recipients. Evicting one costs a handshake later.
pub const MAX_SEND_SESSIONS: usize = 4096;

/// Suggested capacity of an [`Opener`]'s receive-session cache: a user rarely hears
/// from more than a few thousand distinct sender sessions in a rotation period.
pub const OPENER_CACHE_CAPACITY: usize = 4096;

/// Tunables of a [`Sealer`]; [`Default`] gives the production values.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SealerConfig {
    /// Messages sealed in one session before rotating (default [`SESSION_MAX_MESSAGES`]).
    pub session_max_messages: u64,
    /// Age after which a session rotates (default [`SESSION_MAX_AGE`]).
    pub session_max_age: Duration,
    /// Recipients with a live send session; the oldest session is dropped past this
    /// (default [`MAX_SEND_SESSIONS`]; at least 1 is used).
    pub max_sessions: usize,
}

impl Default for SealerConfig {
    fn default() -> Self {
        SealerConfig {
            session_max_messages: SESSION_MAX_MESSAGES,
            session_max_age: SESSION_MAX_AGE,
            max_sessions: MAX_SEND_SESSIONS,
        }
    }
}

/// Why a message could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The plaintext is longer than [`MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Plaintext length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The recipient's E2E key is a low-order point: anyone could decrypt.
    #[error("recipient E2E key is unusable (low-order point)")]
    BadRecipient,
    /// The Noise library failed (a bug, not a property of the input).
    #[error("noise error: {0}")]
    Noise(String),
    /// The envelope could not be encoded (a bug, not a property of the input).
    #[error("cannot encode envelope: {0}")]
    Encode(String),
}

/// Why an envelope could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope (or its plaintext) exceeds the size limits.
    #[error("envelope of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The bytes are not a well-formed envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The envelope has a version this build does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u32),
    /// Authentication failed: sealed for someone else, tampered with, or chunks
    /// dropped, reordered or spliced.
    #[error("envelope does not decrypt (wrong recipient or tampered)")]
    Decrypt,
    /// The sender's Noise static key is not bound to the identity it claims (or is a
    /// low-order point that anyone could impersonate).
    #[error("sender key is not bound to the claimed identity")]
    BadBinding,
    /// The Noise library failed (a bug, not a property of the input).
    #[error("noise error: {0}")]
    Noise(String),
}

impl From<WireError> for OpenError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooLarge { len, max } => OpenError::TooLarge { len, max },
            WireError::UnsupportedVersion(v) => OpenError::UnsupportedVersion(v),
            other => OpenError::Malformed(other.to_string()),
        }
    }
}

/// An opened envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated sender.
    pub sender: PeerId,
    /// The sender's E2E key (the Noise static key, verified to be bound to `sender`).
    pub sender_e2e: [u8; 32],
    /// The signature binding `sender_e2e` to `sender` (verified), so the receiver can
    /// vouch for the pair to third parties (e.g. in a group member card).
    pub sender_binding: Binding,
    /// The message.
    pub plaintext: Vec<u8>,
    /// Session id: `blake3(hs)`. Together with `nonce` it identifies the envelope's
    /// ciphertext uniquely, for layers that want to detect replays.
    pub session: [u8; 32],
    /// Nonce of the first chunk within the session.
    pub nonce: u64,
}

impl fmt::Debug for Opened {
    // Plaintext is the user's message: never formatted into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("sender", &self.sender)
            .field("plaintext_len", &self.plaintext.len())
            .field("session", &Hex(&self.session[..8]))
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The envelope as decoded.
#[derive(Deserialize)]
struct Envelope {
    v: u32,
    #[serde(with = "wire::bytes")]
    hs: Vec<u8>,
    nonce: u64,
    #[serde(deserialize_with = "wire::Max::<MAX_CHUNKS>::bytes_seq")]
    chunks: Vec<Vec<u8>>,
}

/// The envelope as encoded, borrowing its parts (the `hs` is shared by many envelopes).
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    #[serde(with = "wire::bytes")]
    hs: &'a [u8],
    nonce: u64,
    #[serde(with = "wire::bytes_seq")]
    chunks: &'a [Vec<u8>],
}

/// The handshake payload: who the sender claims to be. The binding's version, expiry
/// and stamp (`kv`, `kx`, `ks`) are left out for an unstamped binding, which then
/// encodes as before they existed; nodes that predate them ignore them and check the
/// unversioned signature.
#[derive(Serialize, Deserialize)]
struct HandshakePayload {
    #[serde(with = "wire::bytes")]
    peer_id: Vec<u8>,
    #[serde(with = "wire::byte_array")]
    binding: [u8; 64],
    #[serde(default, rename = "kv", skip_serializing_if = "wire::is_zero")]
    key_version: u64,
    #[serde(default, rename = "kx", skip_serializing_if = "wire::is_zero")]
    key_expires_ms: u64,
    #[serde(default, rename = "ks", skip_serializing_if = "Vec::is_empty", with = "wire::bytes")]
    key_stamp: Vec<u8>,
}

impl HandshakePayload {
    fn of(peer_id: &PeerId, binding: &Binding) -> HandshakePayload {
        HandshakePayload {
            peer_id: peer_id.to_bytes(),
            binding: binding.signature,
            key_version: binding.version,
            key_expires_ms: binding.expires_ms,
            key_stamp: binding.stamp_bytes(),
        }
    }

    fn binding(&self) -> Binding {
        Binding::from_parts(self.binding, self.key_version, self.key_expires_ms, &self.key_stamp)
    }
}

/// Seals messages from one identity, keeping a session per recipient.
///
/// `Send`, so it can live inside the node actor; not `Sync` by design (`&mut self`).
pub struct Sealer {
    local_secret: [u8; 32],
    peer_id: PeerId,
    binding: Binding,
    config: SealerConfig,
    sessions: HashMap<[u8; 32], SendSession>,
}

struct SendSession {
    hs: Vec<u8>,
    transport: StatelessTransportState,
    next_nonce: u64,
    messages: u64,
    created: Instant,
}

impl SendSession {
    /// Whether this session must not seal a message of `chunks` chunks at `now`.
    fn exhausted(&self, config: &SealerConfig, chunks: u64, now: Instant) -> bool {
        self.messages >= config.session_max_messages
            || now.saturating_duration_since(self.created) >= config.session_max_age
            // Noise reserves u64::MAX; unreachable with sane limits but cheap to honour.
            || self.next_nonce.checked_add(chunks).is_none_or(|end| end == u64::MAX)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("peer_id", &self.peer_id)
            .field("sessions", &self.sessions.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        wipe(&mut self.local_secret);
    }
}

impl Sealer {
    /// A sealer for messages authored by `identity` (its secrets are copied).
    pub fn new(identity: &Identity, config: SealerConfig) -> Sealer {
        Sealer {
            local_secret: identity.x25519_secret(),
            peer_id: identity.peer_id(),
            binding: identity.binding(),
            config,
            sessions: HashMap::new(),
        }
    }

    /// Seals `plaintext` for the holder of `recipient_e2e` and returns the encoded
    /// envelope (at most [`MAX_ENVELOPE_LEN`] bytes).
    ///
    /// `recipient_e2e` must come from a verified binding ([`PublicIdentity::verify`]),
    /// or the message is confidential to whoever chose that key.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] past [`MAX_PLAINTEXT_LEN`], [`SealError::BadRecipient`]
    /// for a low-order key; the other variants indicate bugs.
    pub fn seal(
        &mut self,
        recipient_e2e: &[u8; 32],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let chunk_count = plaintext.len().div_ceil(CHUNK_PLAINTEXT_LEN).max(1);
        // usize → u64 never truncates on supported targets; MAX_CHUNKS is tiny anyway.
        let chunk_count_u64 = chunk_count as u64;
        let now = Instant::now();

        // Take the session out and put it back at the end: keeps the borrow simple, and
        // if sealing fails half-way the session is simply dropped (a fresh one follows).
        let mut session = match self.sessions.remove(recipient_e2e) {
            Some(s) if !s.exhausted(&self.config, chunk_count_u64, now) => s,
            _ => {
                let payload = wire::encode(&HandshakePayload::of(&self.peer_id, &self.binding))
                .map_err(|e| SealError::Encode(e.to_string()))?;
                let s = start_session(&self.local_secret, &payload, recipient_e2e, now)?;
                let id = blake3::hash(&s.hs);
                tracing::trace!(session = %Hex(&id.as_bytes()[..8]), "new send session");
                s
            }
        };
        // Reserve the nonces before using them, so no nonce is ever used twice.
        let nonce = session.next_nonce;
        session.next_nonce += chunk_count_u64;
        session.messages += 1;

        let chunks = encrypt_chunks(&session.transport, nonce, plaintext, chunk_count)?;
        let encoded = wire::encode(&EnvelopeRef {
            v: VERSION,
            hs: &session.hs,
            nonce,
            chunks: &chunks,
        })
        .map_err(|e| SealError::Encode(e.to_string()))?;
        // Only now, so a failed handshake never evicts a working session.
        self.make_room();
        self.sessions.insert(*recipient_e2e, session);
        if encoded.len() > MAX_ENVELOPE_LEN {
            // The constants guarantee this cannot happen; fail loudly rather than emit
            // an envelope every receiver rejects.
            return Err(SealError::Encode(format!(
                "envelope of {} bytes exceeds {MAX_ENVELOPE_LEN}",
                encoded.len()
            )));
        }
        Ok(encoded)
    }

    /// Number of recipients with a live send session.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Drops the oldest session if adding one would exceed the bound (the session being
    /// used is out of the map while sealing, so it is never the one dropped).
    fn make_room(&mut self) {
        if self.sessions.len() < self.config.max_sessions.max(1) {
            return;
        }
        // O(n) scan, but only when a new session is created, which already costs three
        // X25519 operations — far more than scanning a few thousand entries.
        let oldest = self
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.created)
            .map(|(k, _)| *k);
        if let Some(key) = oldest {
            self.sessions.remove(&key);
        }
    }
}

/// Runs the initiator side of `X` and turns it into a send session.
/// Seals `plaintext` with `noise_key`'s E2E secret while claiming to be `claimed` —
/// what an impostor's client would send. For tests of receivers only (cargo feature
/// `test-support`): a correct receiver refuses the result with [`OpenError::BadBinding`].
#[cfg(feature = "test-support")]
pub fn seal_forged(
    noise_key: &Identity,
    claimed: &crate::identity::PublicIdentity,
    recipient_e2e: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let payload = wire::encode(&HandshakePayload::of(&claimed.peer_id, &claimed.binding))
        .map_err(|e| SealError::Encode(e.to_string()))?;
    let session = start_session(&noise_key.x25519_secret(), &payload, recipient_e2e, Instant::now())?;
    let chunk_count = plaintext.len().div_ceil(CHUNK_PLAINTEXT_LEN).max(1);
    let chunks = encrypt_chunks(&session.transport, 0, plaintext, chunk_count)?;
    wire::encode(&EnvelopeRef { v: VERSION, hs: &session.hs, nonce: 0, chunks: &chunks })
        .map_err(|e| SealError::Encode(e.to_string()))
}

fn start_session(
    local_secret: &[u8; 32],
    payload: &[u8],
    recipient_e2e: &[u8; 32],
    now: Instant,
) -> Result<SendSession, SealError> {
    if is_low_order(recipient_e2e) {
        return Err(SealError::BadRecipient);
    }
    if payload.len() > MAX_HANDSHAKE_PAYLOAD_LEN {
        return Err(SealError::Encode(format!(
            "handshake payload of {} bytes",
            payload.len()
        )));
    }
    let noise = |e: snow::Error| SealError::Noise(e.to_string());
    let mut handshake = snow::Builder::new(noise_params().map_err(noise)?)
        .local_private_key(local_secret)
        .and_then(|b| b.remote_public_key(recipient_e2e))
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_initiator())
        .map_err(noise)?;
    let mut hs = vec![0u8; MAX_HANDSHAKE_LEN];
    let len = handshake.write_message(payload, &mut hs).map_err(noise)?;
    hs.truncate(len);
    let transport = handshake.into_stateless_transport_mode().map_err(noise)?;
    Ok(SendSession {
        hs,
        transport,
        next_nonce: 0,
        messages: 0,
        created: now,
    })
}

/// Splits `plaintext` into `chunk_count` chunks and encrypts them under consecutive
/// nonces from `nonce`, each with its flags byte appended.
fn encrypt_chunks(
    transport: &StatelessTransportState,
    nonce: u64,
    plaintext: &[u8],
    chunk_count: usize,
) -> Result<Vec<Vec<u8>>, SealError> {
    let mut chunks = Vec::with_capacity(chunk_count);
    let mut scratch = Vec::with_capacity(plaintext.len().min(CHUNK_PLAINTEXT_LEN) + FLAGS_LEN);
    // `chunks()` yields nothing for an empty slice; an empty message is one empty chunk.
    let pieces = plaintext
        .chunks(CHUNK_PLAINTEXT_LEN)
        .chain(plaintext.is_empty().then_some(&[][..]));
    for (i, (piece, n)) in pieces.zip(nonce..).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(piece);
        scratch.push(chunk_flags(i, chunk_count));
        let mut out = vec![0u8; scratch.len() + TAG_LEN];
        let len = transport
            .write_message(n, &scratch, &mut out)
            .map_err(|e| SealError::Noise(e.to_string()))?;
        out.truncate(len);
        chunks.push(out);
    }
    Ok(chunks)
}

fn chunk_flags(index: usize, count: usize) -> u8 {
    let mut flags = 0;
    if index == 0 {
        flags |= FLAG_FIRST;
    }
    if index + 1 == count {
        flags |= FLAG_LAST;
    }
    flags
}

/// Opens envelopes sealed to one identity, caching receive sessions.
///
/// `Send`, so it can live inside the node actor.
pub struct Opener {
    local_secret: [u8; 32],
    /// Earlier E2E secrets still opened (see [`Opener::with_retired`]).
    retired: Vec<zeroize::Zeroizing<[u8; 32]>>,
    capacity: usize,
    sessions: HashMap<[u8; 32], RecvSession>,
    /// Session ids in insertion order (oldest first), each exactly once; evicting from
    /// the front keeps the cache bounded in O(1).
    order: VecDeque<[u8; 32]>,
}

struct RecvSession {
    transport: StatelessTransportState,
    sender: PeerId,
    sender_e2e: [u8; 32],
    sender_binding: Binding,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("sessions", &self.sessions.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        wipe(&mut self.local_secret);
    }
}

impl Opener {
    /// An opener for envelopes sealed to `identity`'s E2E key, caching at most
    /// `cache_capacity` sessions (0 disables caching: every envelope redoes its
    /// handshake). See [`OPENER_CACHE_CAPACITY`].
    pub fn new(identity: &Identity, cache_capacity: usize) -> Opener {
        Opener {
            local_secret: identity.x25519_secret(),
            retired: Vec::new(),
            capacity: cache_capacity,
            sessions: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Also opens envelopes sealed to these earlier E2E secrets of ours (keys rotated
    /// out whose mail may still be in relays), tried in order after the current one.
    pub fn with_retired(mut self, secrets: Vec<zeroize::Zeroizing<[u8; 32]>>) -> Opener {
        self.retired = secrets;
        self
    }

    /// Authenticates and decrypts an envelope.
    ///
    /// A replayed envelope opens again (see the module docs).
    ///
    /// # Errors
    /// [`OpenError::TooLarge`], [`OpenError::Malformed`] and
    /// [`OpenError::UnsupportedVersion`] for bad encodings (checked before any
    /// cryptography), [`OpenError::Decrypt`] if it was not sealed for us or was altered,
    /// [`OpenError::BadBinding`] if the sender's key is not bound to its claimed id.
    pub fn open(&mut self, envelope: &[u8]) -> Result<Opened, OpenError> {
        let env: Envelope =
            wire::decode_versioned(envelope, MAX_ENVELOPE_LEN, VERSION, |e: &Envelope| e.v)?;
        check_shape(&env)?;
        let session_id: [u8; 32] = *blake3::hash(&env.hs).as_bytes();
        if let Some(session) = self.sessions.get(&session_id) {
            return decrypt(session, session_id, &env);
        }
        let mut accepted = accept_session(&self.local_secret, &env.hs);
        for retired in &self.retired {
            if !matches!(accepted, Err(OpenError::Decrypt)) {
                break;
            }
            accepted = accept_session(retired, &env.hs);
        }
        let session = accepted?;
        tracing::trace!(
            sender = %session.sender,
            session = %Hex(&session_id[..8]),
            "new receive session"
        );
        // Cache even if the chunks below fail: the handshake proved a real, bound sender,
        // and its next envelope will use the same session.
        let opened = decrypt(&session, session_id, &env);
        self.insert(session_id, session);
        opened
    }

    /// Number of cached receive sessions.
    pub fn cached_sessions(&self) -> usize {
        self.sessions.len()
    }

    fn insert(&mut self, id: [u8; 32], session: RecvSession) {
        if self.capacity == 0 {
            return;
        }
        while self.sessions.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.sessions.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id);
        self.sessions.insert(id, session);
    }
}

/// Structural checks that need no cryptography, so garbage is rejected cheaply and
/// snow only ever sees inputs within its documented limits.
fn check_shape(env: &Envelope) -> Result<(), OpenError> {
    if env.hs.len() > MAX_HANDSHAKE_LEN {
        return Err(OpenError::Malformed(format!(
            "handshake of {} bytes",
            env.hs.len()
        )));
    }
    if env.chunks.is_empty() || env.chunks.len() > MAX_CHUNKS {
        return Err(OpenError::Malformed(format!("{} chunks", env.chunks.len())));
    }
    let mut plaintext_len = 0usize;
    for chunk in &env.chunks {
        if chunk.len() < TAG_LEN + FLAGS_LEN || chunk.len() > NOISE_MAX_MESSAGE_LEN {
            return Err(OpenError::Malformed(format!(
                "chunk of {} bytes",
                chunk.len()
            )));
        }
        plaintext_len += chunk.len() - TAG_LEN - FLAGS_LEN;
    }
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(OpenError::TooLarge {
            len: plaintext_len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    // The last nonce must exist and must not be Noise's reserved u64::MAX.
    let last = env.nonce.checked_add(env.chunks.len() as u64 - 1);
    if last.is_none_or(|n| n == u64::MAX) {
        return Err(OpenError::Malformed("nonce out of range".into()));
    }
    Ok(())
}

/// Runs the responder side of `X` on `hs` and checks the sender's identity binding.
fn accept_session(local_secret: &[u8; 32], hs: &[u8]) -> Result<RecvSession, OpenError> {
    let noise = |e: snow::Error| OpenError::Noise(e.to_string());
    let mut handshake = snow::Builder::new(noise_params().map_err(noise)?)
        .local_private_key(local_secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_responder())
        .map_err(noise)?;
    // `hs` is at most MAX_HANDSHAKE_LEN (checked), so its payload fits.
    let mut payload = [0u8; MAX_HANDSHAKE_LEN];
    let len = handshake
        .read_message(hs, &mut payload)
        .map_err(|e| match e {
            snow::Error::Decrypt => OpenError::Decrypt,
            snow::Error::Input => OpenError::Malformed("handshake message too short".into()),
            other => OpenError::Noise(other.to_string()),
        })?;
    let sender_e2e: [u8; 32] = handshake
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| OpenError::Noise("no remote static key after X handshake".into()))?;
    let claimed: HandshakePayload = wire::decode(&payload[..len], MAX_HANDSHAKE_PAYLOAD_LEN)
        .map_err(|e| OpenError::Malformed(format!("handshake payload: {e}")))?;
    let sender = PeerId::from_bytes(&claimed.peer_id)
        .map_err(|e| OpenError::Malformed(format!("handshake peer id: {e}")))?;
    let binding = claimed.binding();
    PublicIdentity {
        peer_id: sender,
        e2e_public: sender_e2e,
        binding,
    }
    .verify()
    .map_err(|_| OpenError::BadBinding)?;
    // A low-order static key makes the `ss` DH output predictable, so anyone could
    // forge this sender's messages; only a broken client would bind one, but refuse it.
    if is_low_order(&sender_e2e) {
        return Err(OpenError::BadBinding);
    }
    let transport = handshake.into_stateless_transport_mode().map_err(noise)?;
    Ok(RecvSession {
        transport,
        sender,
        sender_e2e,
        sender_binding: binding,
    })
}

/// Decrypts every chunk of `env` and checks the first/last flags.
fn decrypt(
    session: &RecvSession,
    session_id: [u8; 32],
    env: &Envelope,
) -> Result<Opened, OpenError> {
    let count = env.chunks.len();
    let capacity: usize = env.chunks.iter().map(|c| c.len() - TAG_LEN).sum();
    let mut plaintext = vec![0u8; capacity];
    let mut filled = 0;
    for (i, (chunk, n)) in env.chunks.iter().zip(env.nonce..).enumerate() {
        let len = session
            .transport
            .read_message(n, chunk, &mut plaintext[filled..])
            .map_err(|e| match e {
                snow::Error::Decrypt => OpenError::Decrypt,
                other => OpenError::Noise(other.to_string()),
            })?;
        // Decrypted in place; the flags byte is the chunk's last and is cut off by
        // advancing `filled` past the data only (the next chunk overwrites it).
        let Some(flags_at) = (filled + len).checked_sub(FLAGS_LEN) else {
            return Err(OpenError::Decrypt);
        };
        if plaintext[flags_at] != chunk_flags(i, count) {
            // Authentic chunk, wrong place: a splice of chunks from other messages.
            return Err(OpenError::Decrypt);
        }
        filled = flags_at;
    }
    plaintext.truncate(filled);
    Ok(Opened {
        sender: session.sender,
        sender_e2e: session.sender_e2e,
        sender_binding: session.sender_binding,
        plaintext,
        session: session_id,
        nonce: env.nonce,
    })
}

fn noise_params() -> Result<NoiseParams, snow::Error> {
    NOISE_PARAMS.parse()
}

/// Whether `point` is a low-order X25519 public key (or one that behaves as such).
///
/// Multiplying by a clamped scalar clears the cofactor, so the result is the
/// all-zero u-coordinate exactly for points in the small subgroups (on the curve
/// or its twist); any fixed scalar works.
fn is_low_order(point: &[u8; 32]) -> bool {
    x25519_dalek::x25519([0x5a; 32], *point) == [0u8; 32]
}

/// Hex formatting for ids in logs and `Debug` output.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    fn pair() -> (Identity, Identity) {
        (Identity::generate(), Identity::generate())
    }

    fn decode_env(bytes: &[u8]) -> Envelope {
        wire::decode(bytes, MAX_ENVELOPE_LEN).unwrap()
    }

    fn encode_env(env: &Envelope) -> Vec<u8> {
        wire::encode(&EnvelopeRef {
            v: env.v,
            hs: &env.hs,
            nonce: env.nonce,
            chunks: &env.chunks,
        })
        .unwrap()
    }

    #[test]
    fn a_node_that_predates_stamps_reads_a_stamped_claim_as_the_unversioned_binding() {
        /// The handshake payload as kith before key versions decoded it.
        #[derive(Deserialize)]
        struct Before {
            #[serde(with = "wire::bytes")]
            peer_id: Vec<u8>,
            #[serde(with = "wire::byte_array")]
            binding: [u8; 64],
        }
        let alice = Identity::generate().with_e2e([1; 32], 5, 1_000_000);
        let claim = wire::encode(&HandshakePayload::of(&alice.peer_id(), &alice.binding())).unwrap();
        let old: Before = wire::decode(&claim, MAX_HANDSHAKE_PAYLOAD_LEN).unwrap();
        let old_view = PublicIdentity {
            peer_id: PeerId::from_bytes(&old.peer_id).unwrap(),
            e2e_public: alice.e2e_public(),
            binding: Binding::unversioned(old.binding),
        };
        old_view.verify().unwrap();
        // And an unstamped claim encodes exactly as before stamps existed.
        let plain = Identity::generate();
        let claim = wire::encode(&HandshakePayload::of(&plain.peer_id(), &plain.binding())).unwrap();
        let before = wire::encode(&BeforeOut { peer_id: plain.peer_id().to_bytes(), binding: plain.binding().signature }).unwrap();
        assert_eq!(claim, before);
    }

    /// [`HandshakePayload`] as kith before key versions encoded it.
    #[derive(Serialize)]
    struct BeforeOut {
        #[serde(with = "wire::bytes")]
        peer_id: Vec<u8>,
        #[serde(with = "wire::byte_array")]
        binding: [u8; 64],
    }

    #[test]
    fn sealing_adds_at_most_max_seal_overhead() {
        let (alice, bob) = pair();
        for len in [0, 1, CHUNK_PLAINTEXT_LEN, CHUNK_PLAINTEXT_LEN + 1, MAX_PLAINTEXT_LEN] {
            // A new sealer each time: the first envelope of a session carries the handshake.
            let mut sealer = Sealer::new(&alice, SealerConfig::default());
            let env = sealer.seal(&bob.e2e_public(), &vec![7; len]).unwrap();
            assert!(env.len() <= len + MAX_SEAL_OVERHEAD, "{len} bytes sealed into {}", env.len());
            let next = sealer.seal(&bob.e2e_public(), &vec![7; len]).unwrap();
            assert!(next.len() <= env.len(), "a session's later envelope is no larger than its first");
        }
    }

    #[test]
    fn a_retired_key_still_opens_what_was_sealed_to_it_and_the_binding_travels() {
        let alice = Identity::generate().with_e2e([1; 32], 5, 1_000_000);
        let bob_old = Identity::generate();
        let bob_new = bob_old.with_e2e([2; 32], 10, 2_000_000);
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let to_old = sealer.seal(&bob_old.e2e_public(), b"to the old key").unwrap();
        let to_new = sealer.seal(&bob_new.e2e_public(), b"to the new key").unwrap();

        let mut current_only = Opener::new(&bob_new, 0);
        assert!(matches!(current_only.open(&to_old), Err(OpenError::Decrypt)));
        let mut with_retired = Opener::new(&bob_new, 0).with_retired(vec![zeroize::Zeroizing::new(bob_old.x25519_secret())]);
        let opened = with_retired.open(&to_old).unwrap();
        assert_eq!(opened.plaintext, b"to the old key");
        assert_eq!(opened.sender_binding, alice.binding(), "version and expiry come with the sender's key");
        assert_eq!(with_retired.open(&to_new).unwrap().plaintext, b"to the new key");
        // Someone else's key still fails as before.
        let stranger = Identity::generate();
        let mut other = Opener::new(&stranger, 0).with_retired(vec![zeroize::Zeroizing::new([3; 32])]);
        assert!(matches!(other.open(&to_old), Err(OpenError::Decrypt)));
    }

    #[test]
    fn chunk_count_at_and_past_while_decoding() {
        let chunks = |n| encode_env(&Envelope { v: VERSION, hs: vec![0; 8], nonce: 0, chunks: vec![vec![]; n] });
        assert_eq!(decode_env(&chunks(MAX_CHUNKS)).chunks.len(), MAX_CHUNKS);
        let r = wire::decode::<Envelope>(&chunks(MAX_CHUNKS + 1), MAX_ENVELOPE_LEN);
        assert!(matches!(r, Err(WireError::TooMany { max: MAX_CHUNKS })), "{:?}", r.err());
        // A maximum-size envelope of empty byte strings: refused while decoding, as an
        // opener error (malformed), not after building 256 K vectors.
        let mut opener = Opener::new(&Identity::generate(), 4);
        let mut evil = vec![0xa4, 0x61, b'v', 0x01, 0x62, b'h', b's', 0x40, 0x65];
        evil.extend_from_slice(b"nonce");
        evil.push(0x00);
        evil.push(0x66);
        evil.extend_from_slice(b"chunks");
        evil.push(0x9f); // an array of indefinite length
        evil.resize(MAX_ENVELOPE_LEN - 1, 0x40);
        evil.push(0xff);
        let r = opener.open(&evil);
        assert!(matches!(r, Err(OpenError::Malformed(_))), "{r:?}");
        assert!(r.unwrap_err().to_string().contains(&format!("more than {MAX_CHUNKS} items")));
    }

    #[test]
    fn sealer_and_opener_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Sealer>();
        assert_send::<Opener>();
    }

    #[test]
    fn round_trip_sizes() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut opener = Opener::new(&bob, OPENER_CACHE_CAPACITY);
        let sizes = [
            0,
            1,
            100,
            CHUNK_PLAINTEXT_LEN - 1,
            CHUNK_PLAINTEXT_LEN,
            CHUNK_PLAINTEXT_LEN + 1,
            2 * CHUNK_PLAINTEXT_LEN,
            60 * 1024,
            MAX_PLAINTEXT_LEN - 1,
            MAX_PLAINTEXT_LEN,
        ];
        for size in sizes {
            let msg: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let env = sealer.seal(&bob.e2e_public(), &msg).unwrap();
            assert!(
                env.len() <= MAX_ENVELOPE_LEN,
                "size {size}: envelope {}",
                env.len()
            );
            assert_eq!(
                decode_env(&env).chunks.len(),
                size.div_ceil(CHUNK_PLAINTEXT_LEN).max(1)
            );
            let opened = opener.open(&env).unwrap();
            assert_eq!(opened.plaintext, msg, "size {size}");
            assert_eq!(opened.sender, alice.peer_id());
            assert_eq!(opened.sender_e2e, alice.e2e_public());
        }
    }

    #[test]
    fn too_large_plaintext() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let err = sealer
            .seal(&bob.e2e_public(), &vec![0; MAX_PLAINTEXT_LEN + 1])
            .unwrap_err();
        assert!(matches!(err, SealError::TooLarge { len, max }
                if len == MAX_PLAINTEXT_LEN + 1 && max == MAX_PLAINTEXT_LEN));
    }

    #[test]
    fn too_large_envelope() {
        let (_, bob) = pair();
        let mut opener = Opener::new(&bob, 16);
        let err = opener.open(&vec![0; MAX_ENVELOPE_LEN + 1]).unwrap_err();
        assert!(matches!(err, OpenError::TooLarge { .. }));
    }

    #[test]
    fn unicode_bytes_are_exact() {
        let (alice, bob) = pair();
        let msg = "Привет, мир! 👋🏽 Ёлка 🎄 — ‘quotes’ \u{200d}\u{0301}";
        let env = Sealer::new(&alice, SealerConfig::default())
            .seal(&bob.e2e_public(), msg.as_bytes())
            .unwrap();
        let opened = Opener::new(&bob, 16).open(&env).unwrap();
        assert_eq!(opened.plaintext, msg.as_bytes());
        assert_eq!(std::str::from_utf8(&opened.plaintext).unwrap(), msg);
    }

    #[test]
    fn wrong_recipient_cannot_open() {
        let (alice, bob) = pair();
        let carol = Identity::generate();
        let env = Sealer::new(&alice, SealerConfig::default())
            .seal(&bob.e2e_public(), b"for bob")
            .unwrap();
        assert!(matches!(
            Opener::new(&carol, 16).open(&env),
            Err(OpenError::Decrypt)
        ));
        // The sender itself cannot open it either.
        assert!(matches!(
            Opener::new(&alice, 16).open(&env),
            Err(OpenError::Decrypt)
        ));
    }

    #[test]
    fn low_order_recipient_is_refused() {
        let alice = Identity::generate();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one] {
            assert!(matches!(
                sealer.seal(&bad, b"x"),
                Err(SealError::BadRecipient)
            ));
        }
    }

    /// Seals with an arbitrary handshake payload, as a malicious client could.
    fn seal_with_payload(
        noise_secret: &[u8; 32],
        payload: &[u8],
        recipient: &[u8; 32],
        msg: &[u8],
    ) -> Vec<u8> {
        let session = start_session(noise_secret, payload, recipient, Instant::now()).unwrap();
        let chunks = encrypt_chunks(&session.transport, 0, msg, 1).unwrap();
        wire::encode(&EnvelopeRef {
            v: VERSION,
            hs: &session.hs,
            nonce: 0,
            chunks: &chunks,
        })
        .unwrap()
    }

    #[test]
    fn forged_identity_is_bad_binding() {
        let (alice, bob) = pair();
        let mallory = Identity::generate();
        // Mallory's Noise key, claiming Alice's peer id with Alice's real binding
        // (which binds Alice's E2E key, not Mallory's).
        let claim = wire::encode(&HandshakePayload::of(&alice.peer_id(), &alice.binding()))
        .unwrap();
        let env = seal_with_payload(
            &mallory.x25519_secret(),
            &claim,
            &bob.e2e_public(),
            b"hi, it's alice",
        );
        assert!(matches!(
            Opener::new(&bob, 16).open(&env),
            Err(OpenError::BadBinding)
        ));

        // Claiming Alice's peer id with Mallory's own binding: signed by the wrong key.
        let claim = wire::encode(&HandshakePayload::of(&alice.peer_id(), &mallory.binding()))
        .unwrap();
        let env = seal_with_payload(&mallory.x25519_secret(), &claim, &bob.e2e_public(), b"hi");
        assert!(matches!(
            Opener::new(&bob, 16).open(&env),
            Err(OpenError::BadBinding)
        ));

        // Garbage payload: authenticated, but not a claim.
        let env = seal_with_payload(
            &mallory.x25519_secret(),
            b"\x01\x02",
            &bob.e2e_public(),
            b"hi",
        );
        assert!(matches!(
            Opener::new(&bob, 16).open(&env),
            Err(OpenError::Malformed(_))
        ));

        // Mallory's honest claim works, as Mallory.
        let claim = wire::encode(&HandshakePayload::of(&mallory.peer_id(), &mallory.binding()))
        .unwrap();
        let env = seal_with_payload(&mallory.x25519_secret(), &claim, &bob.e2e_public(), b"hi");
        assert_eq!(
            Opener::new(&bob, 16).open(&env).unwrap().sender,
            mallory.peer_id()
        );
    }

    #[test]
    fn sessions_are_reused_and_survive_a_fresh_opener() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut opener = Opener::new(&bob, 16);
        let e1 = sealer.seal(&bob.e2e_public(), b"one").unwrap();
        let e2 = sealer.seal(&bob.e2e_public(), b"two").unwrap();
        assert_eq!(decode_env(&e1).hs, decode_env(&e2).hs);
        let o1 = opener.open(&e1).unwrap();
        let o2 = opener.open(&e2).unwrap();
        assert_eq!(opener.cached_sessions(), 1);
        assert_eq!(o1.session, o2.session);
        assert_eq!((o1.nonce, o2.nonce), (0, 1));
        assert_eq!(o2.plaintext, b"two");
        // A restarted receiver (empty cache) opens mid-session envelopes too.
        let o2_fresh = Opener::new(&bob, 16).open(&e2).unwrap();
        assert_eq!(o2_fresh, o2);
        assert_eq!(sealer.session_count(), 1);
    }

    #[test]
    fn multi_chunk_messages_reserve_nonces() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut opener = Opener::new(&bob, 16);
        let big = sealer
            .seal(&bob.e2e_public(), &vec![1; 2 * CHUNK_PLAINTEXT_LEN + 5])
            .unwrap();
        let small = sealer.seal(&bob.e2e_public(), b"after").unwrap();
        assert_eq!(opener.open(&big).unwrap().nonce, 0);
        assert_eq!(opener.open(&small).unwrap().nonce, 3);
    }

    #[test]
    fn rotation_after_max_messages() {
        let (alice, bob) = pair();
        let config = SealerConfig {
            session_max_messages: 3,
            ..SealerConfig::default()
        };
        let mut sealer = Sealer::new(&alice, config);
        let mut opener = Opener::new(&bob, 16);
        let sessions: Vec<[u8; 32]> = (0..7)
            .map(|i| {
                opener
                    .open(&sealer.seal(&bob.e2e_public(), &[i]).unwrap())
                    .unwrap()
                    .session
            })
            .collect();
        assert_eq!(sessions[0], sessions[2]);
        assert_ne!(sessions[2], sessions[3]);
        assert_eq!(sessions[3], sessions[5]);
        assert_ne!(sessions[5], sessions[6]);
        assert_eq!(opener.cached_sessions(), 3);
    }

    #[test]
    fn rotation_after_max_age() {
        let (alice, bob) = pair();
        let config = SealerConfig {
            session_max_age: Duration::ZERO,
            ..SealerConfig::default()
        };
        let mut sealer = Sealer::new(&alice, config);
        let mut opener = Opener::new(&bob, 16);
        let a = opener
            .open(&sealer.seal(&bob.e2e_public(), b"a").unwrap())
            .unwrap();
        let b = opener
            .open(&sealer.seal(&bob.e2e_public(), b"b").unwrap())
            .unwrap();
        assert_ne!(a.session, b.session);
        assert_eq!((a.nonce, b.nonce), (0, 0));
    }

    #[test]
    fn out_of_order_and_replayed_envelopes_open() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let msgs: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                if i % 2 == 0 {
                    vec![i; 10]
                } else {
                    vec![i; CHUNK_PLAINTEXT_LEN + 7]
                }
            })
            .collect();
        let envs: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| sealer.seal(&bob.e2e_public(), m).unwrap())
            .collect();
        let mut opener = Opener::new(&bob, 16);
        for i in [5, 2, 0, 4, 1, 3, 3, 0] {
            assert_eq!(opener.open(&envs[i]).unwrap().plaintext, msgs[i]);
        }
        // Replays decrypt again, with the same (session, nonce) for the layer above.
        let a = opener.open(&envs[1]).unwrap();
        let b = opener.open(&envs[1]).unwrap();
        assert_eq!((a.session, a.nonce), (b.session, b.nonce));
    }

    #[test]
    fn spliced_chunks_are_rejected() {
        let (alice, bob) = pair();
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut opener = Opener::new(&bob, 16);
        let three = decode_env(
            &sealer
                .seal(&bob.e2e_public(), &vec![7; 2 * CHUNK_PLAINTEXT_LEN + 1])
                .unwrap(),
        );
        let next = decode_env(&sealer.seal(&bob.e2e_public(), b"next").unwrap());
        assert_eq!(next.nonce, 3);

        // Last chunk dropped: truncation.
        let mut e = Envelope {
            v: 1,
            hs: three.hs.clone(),
            nonce: 0,
            chunks: three.chunks[..2].to_vec(),
        };
        assert!(matches!(
            opener.open(&encode_env(&e)),
            Err(OpenError::Decrypt)
        ));
        // A middle chunk on its own.
        e.nonce = 1;
        e.chunks = vec![three.chunks[1].clone()];
        assert!(matches!(
            opener.open(&encode_env(&e)),
            Err(OpenError::Decrypt)
        ));
        // Chunks swapped.
        e.nonce = 0;
        e.chunks = vec![
            three.chunks[1].clone(),
            three.chunks[0].clone(),
            three.chunks[2].clone(),
        ];
        assert!(matches!(
            opener.open(&encode_env(&e)),
            Err(OpenError::Decrypt)
        ));
        // The next message appended to the first.
        e.chunks = three.chunks.clone();
        e.chunks.push(next.chunks[0].clone());
        assert!(matches!(
            opener.open(&encode_env(&e)),
            Err(OpenError::Decrypt)
        ));
        // Wrong nonce.
        e.chunks = three.chunks.clone();
        e.nonce = 1;
        assert!(matches!(
            opener.open(&encode_env(&e)),
            Err(OpenError::Decrypt)
        ));
        // The genuine article still opens.
        e.nonce = 0;
        assert_eq!(
            opener.open(&encode_env(&e)).unwrap().plaintext.len(),
            2 * CHUNK_PLAINTEXT_LEN + 1
        );
    }

    #[test]
    fn malformed_shapes() {
        let (alice, bob) = pair();
        let good = decode_env(
            &Sealer::new(&alice, SealerConfig::default())
                .seal(&bob.e2e_public(), b"x")
                .unwrap(),
        );
        let mut opener = Opener::new(&bob, 16);
        let with = |f: &dyn Fn(&mut Envelope)| {
            let mut e = Envelope {
                v: good.v,
                hs: good.hs.clone(),
                nonce: good.nonce,
                chunks: good.chunks.clone(),
            };
            f(&mut e);
            encode_env(&e)
        };
        for bad in [
            with(&|e| e.chunks.clear()),
            with(&|e| e.chunks = vec![vec![0; TAG_LEN]]),
            with(&|e| e.chunks = vec![vec![0; NOISE_MAX_MESSAGE_LEN + 1]]),
            with(&|e| e.chunks = vec![vec![0; 100]; MAX_CHUNKS + 1]),
            with(&|e| e.hs = vec![0; MAX_HANDSHAKE_LEN + 1]),
            with(&|e| e.hs.truncate(40)),
            with(&|e| e.nonce = u64::MAX),
            with(&|e| {
                e.nonce = u64::MAX - 1;
                e.chunks.push(e.chunks[0].clone());
            }),
        ] {
            assert!(
                matches!(opener.open(&bad), Err(OpenError::Malformed(_))),
                "{:?}",
                opener.open(&bad)
            );
        }
        assert!(matches!(
            opener.open(&with(&|e| e.v = 2)),
            Err(OpenError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            opener.open(&with(&|e| e.hs.clear())),
            Err(OpenError::Malformed(_))
        ));
        assert!(matches!(opener.open(b""), Err(OpenError::Malformed(_))));
    }

    #[test]
    fn caches_are_bounded() {
        let bob = Identity::generate();
        let senders: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
        let envs: Vec<Vec<u8>> = senders
            .iter()
            .map(|s| {
                Sealer::new(s, SealerConfig::default())
                    .seal(&bob.e2e_public(), b"hi")
                    .unwrap()
            })
            .collect();
        let mut opener = Opener::new(&bob, 2);
        for env in &envs {
            opener.open(env).unwrap();
            assert!(opener.cached_sessions() <= 2);
        }
        // Evicted sessions re-handshake transparently.
        assert_eq!(opener.open(&envs[0]).unwrap().sender, senders[0].peer_id());

        let mut uncached = Opener::new(&bob, 0);
        assert_eq!(
            uncached.open(&envs[1]).unwrap().sender,
            senders[1].peer_id()
        );
        assert_eq!(uncached.cached_sessions(), 0);

        let config = SealerConfig {
            max_sessions: 2,
            ..SealerConfig::default()
        };
        let mut sealer = Sealer::new(&bob, config);
        for s in &senders {
            sealer.seal(&s.e2e_public(), b"x").unwrap();
            assert!(sealer.session_count() <= 2);
        }
    }

    #[test]
    fn debug_output_hides_plaintext() {
        let (alice, bob) = pair();
        let env = Sealer::new(&alice, SealerConfig::default())
            .seal(&bob.e2e_public(), b"secret words")
            .unwrap();
        let opened = Opener::new(&bob, 1).open(&env).unwrap();
        let shown = format!(
            "{opened:?} {:?} {:?}",
            Sealer::new(&alice, SealerConfig::default()),
            Opener::new(&bob, 1)
        );
        assert!(
            !shown.contains("secret") && !shown.contains("115, 101, 99"),
            "{shown}"
        );
    }

    struct Fixture {
        bob: Identity,
        single: Vec<u8>,
        multi: Vec<u8>,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let (alice, bob) = pair();
            let mut sealer = Sealer::new(&alice, SealerConfig::default());
            let single = sealer
                .seal(&bob.e2e_public(), "проверка 🔐".as_bytes())
                .unwrap();
            let multi = sealer
                .seal(&bob.e2e_public(), &vec![3; CHUNK_PLAINTEXT_LEN + 10])
                .unwrap();
            Fixture { bob, single, multi }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random flips anywhere in the encoded envelope: never a panic, and never a
        /// different plaintext.
        #[test]
        fn prop_flips_anywhere(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            multi in any::<bool>(),
        ) {
            let f = fixture();
            let original = if multi { &f.multi } else { &f.single };
            let expected = Opener::new(&f.bob, 1).open(original).unwrap().plaintext;
            let mut bytes = original.clone();
            for (at, mask) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            if let Ok(opened) = Opener::new(&f.bob, 1).open(&bytes) {
                prop_assert_eq!(opened.plaintext, expected);
            }
        }

        /// A flipped bit inside the handshake or a chunk is always a typed rejection.
        #[test]
        fn prop_flips_in_hs_or_chunks(
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            in_hs in any::<bool>(),
        ) {
            let f = fixture();
            let mut env = decode_env(&f.multi);
            let target = if in_hs { &mut env.hs } else { &mut env.chunks[1] };
            let i = at.index(target.len());
            target[i] ^= 1 << bit;
            let r = Opener::new(&f.bob, 1).open(&encode_env(&env));
            prop_assert!(
                matches!(
                    r,
                    Err(OpenError::Decrypt | OpenError::Malformed(_) | OpenError::BadBinding)
                ),
                "{:?}",
                r
            );
        }

        /// Garbage never panics, with and without a plausible envelope around it.
        #[test]
        fn prop_garbage(
            garbage in proptest::collection::vec(any::<u8>(), 0..700),
            nonce in any::<u64>(),
            n in 1usize..4,
        ) {
            let f = fixture();
            let mut opener = Opener::new(&f.bob, 4);
            prop_assert!(opener.open(&garbage).is_err());
            let chunks = vec![garbage.clone(); n];
            let env = Envelope { v: 1, hs: garbage.clone(), nonce, chunks };
            prop_assert!(opener.open(&encode_env(&env)).is_err());
            let mut env = decode_env(&f.single);
            env.chunks = vec![garbage; n];
            env.nonce = nonce;
            prop_assert!(opener.open(&encode_env(&env)).is_err());
        }
    }
}
