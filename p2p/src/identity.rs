//! The user's identity: one Ed25519 key that is also the libp2p identity, plus an
//! X25519 key for end-to-end encryption bound to it by a signature.
//!
//! The user id is the libp2p [`PeerId`] derived from the Ed25519 key. Ed25519 peer ids
//! inline the public key (an identity multihash of its protobuf encoding), so anyone
//! holding a peer id can verify that user's signatures without a lookup
//! ([`ed25519_public`], [`verify_signature`]).
//!
//! The X25519 key is separate so it can be rotated without changing who the user is.
//! It is tied to the identity by the *binding* ([`Binding`]): an Ed25519 signature over
//! [`BINDING_CONTEXT`] ‖ the X25519 public key, which every kith reads, and a second,
//! the *stamp*, over [`BINDING_CONTEXT_V2`] ‖ the key ‖ the key's version ‖ its expiry
//! (both u64, big-endian). The version is the time the key was taken into use (ms), so
//! a later key always has a higher one and an older binding cannot displace a newer
//! one ([`key_update`]). A binding without a stamp (made before versions existed, or
//! with the stamp stripped) counts as version 0 that never expires.
//! [`PublicIdentity`] carries the three public parts and [`PublicIdentity::verify`]
//! checks the binding.
//!
//! [`Fingerprint`]s are short, human-comparable digit strings derived from the Ed25519
//! public key; [`safety_number`] combines two of them so both users of a pair compare
//! the same string out of band.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use libp2p::PeerId;
use rand::RngCore;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

/// Domain-separation context for the signature binding the E2E key to the identity.
///
/// Prefixed to the signed message so a binding can never be confused with any other
/// signature made by the same key (peer records, challenges, …).
pub const BINDING_CONTEXT: &[u8] = b"kith/e2e-binding/v1";

/// Context of a versioned binding, which also signs the key's version and expiry.
pub const BINDING_CONTEXT_V2: &[u8] = b"kith/e2e-binding/v2";

/// How long a binding is valid after it is signed: a node signs its key again when
/// less than half of this is left, so a key it stopped using stops being accepted
/// from anyone else within this time.
pub const BINDING_LIFETIME_MS: u64 = 180 * 24 * 3600 * 1000;

/// Clock difference between two nodes tolerated when judging an expiry.
pub const CLOCK_SKEW_MS: u64 = 24 * 3600 * 1000;

/// Domain tag hashed into every fingerprint round, so the digits cannot collide with
/// any other BLAKE3 use of the same public key.
const FINGERPRINT_DOMAIN: &[u8] = b"kith/fingerprint/v1";

/// Hash rounds for a fingerprint. Like Signal's safety numbers, iterating makes a
/// brute-force search for a key with a look-alike fingerprint proportionally more
/// expensive, while one fingerprint still costs well under a millisecond.
const FINGERPRINT_ROUNDS: usize = 5200;

/// Number of 5-digit groups in a [`Fingerprint`].
const FINGERPRINT_GROUPS: usize = 12;

/// Multihash code of the identity "hash" (the digest is the input itself), which
/// libp2p uses for peer ids of small keys such as Ed25519.
const MULTIHASH_IDENTITY: u64 = 0x00;

/// Errors from identity operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The peer id does not inline an Ed25519 public key (e.g. an RSA or secp256k1
    /// peer id); kith identities are Ed25519 only.
    #[error("peer id is not an Ed25519 identity")]
    NotEd25519,
    /// A signature (or the E2E key binding) did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// Key or signature bytes could not be decoded.
    #[error("malformed key material: {0}")]
    Malformed(String),
}

/// The user's secret identity: the Ed25519 signing key (also the libp2p identity) and
/// the X25519 static secret for end-to-end encryption.
///
/// `Debug` prints only public parts; the secrets are never formatted.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    e2e: StaticSecret,
    /// The E2E key's version and binding expiry (both 0: an unversioned binding).
    e2e_version: u64,
    e2e_expires_ms: u64,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Generates a fresh identity from the operating system's CSPRNG.
    ///
    /// Panics only if the OS random source is unavailable, which leaves no safe way
    /// to create keys anyway.
    pub fn generate() -> Identity {
        let mut ed = [0u8; 32];
        let mut x = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut ed);
        rand::rngs::OsRng.fill_bytes(&mut x);
        let identity = Identity::from_secrets(ed, x);
        wipe(&mut ed);
        wipe(&mut x);
        identity
    }

    /// Rebuilds an identity from its two 32-byte secrets, as stored by the keystore.
    ///
    /// Every 32-byte string is a valid secret for both curves, so this cannot fail;
    /// the same bytes always give the same identity.
    pub fn from_secrets(ed25519_seed: [u8; 32], x25519_secret: [u8; 32]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(&ed25519_seed),
            e2e: StaticSecret::from(x25519_secret),
            e2e_version: 0,
            e2e_expires_ms: 0,
        }
    }

    /// This identity with `x25519_secret` as its E2E key, bound at `version` until
    /// `expires_ms` (see [`Binding`]). The Ed25519 key, and so the user, is the same.
    pub fn with_e2e(&self, x25519_secret: [u8; 32], version: u64, expires_ms: u64) -> Identity {
        Identity {
            signing: self.signing.clone(),
            e2e: StaticSecret::from(x25519_secret),
            e2e_version: version,
            e2e_expires_ms: expires_ms,
        }
    }

    /// The E2E key's version (0 for an unversioned binding).
    pub fn e2e_version(&self) -> u64 {
        self.e2e_version
    }

    /// When the E2E key's binding expires, ms since the epoch (0: never, unversioned).
    pub fn e2e_expires_ms(&self) -> u64 {
        self.e2e_expires_ms
    }

    /// The Ed25519 secret seed. Secret: for the keystore only.
    pub fn ed25519_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 static secret, unclamped, exactly as given to
    /// [`Identity::from_secrets`]. Secret: for the keystore and the Noise handshake.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.e2e.to_bytes()
    }

    /// The user id: the libp2p peer id of the Ed25519 key.
    pub fn peer_id(&self) -> PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// The same Ed25519 key as a libp2p keypair, for building the swarm.
    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        let mut seed = self.signing.to_bytes();
        // libp2p only checks that the seed is 32 bytes long, which the type guarantees,
        // so this cannot fail for any key we hold.
        #[allow(clippy::expect_used)]
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
            .expect("any 32-byte string is a valid Ed25519 seed");
        wipe(&mut seed);
        keypair
    }

    /// The X25519 public key used for end-to-end encryption.
    pub fn e2e_public(&self) -> [u8; 32] {
        X25519Public::from(&self.e2e).to_bytes()
    }

    /// Signs `msg` with the identity key (deterministic Ed25519).
    ///
    /// Callers should prefix `msg` with a domain-separation context of their own.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The binding of the E2E key to this identity, stamped with the key's version and
    /// expiry unless both are 0.
    pub fn binding(&self) -> Binding {
        let (version, expires_ms) = (self.e2e_version, self.e2e_expires_ms);
        let key = self.e2e_public();
        let signature = self.sign(&binding_message(&key, 0, 0));
        let stamped = version != 0 || expires_ms != 0;
        let stamp = stamped.then(|| self.sign(&binding_message(&key, version, expires_ms)));
        Binding { signature, version, expires_ms, stamp }
    }

    /// The public half: peer id, E2E public key and binding. Always verifies.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            peer_id: self.peer_id(),
            e2e_public: self.e2e_public(),
            binding: self.binding(),
        }
    }

    /// This identity's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_key(&self.signing.verifying_key())
    }
}

/// The public part of an identity, as shared in invites and peer records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    /// The user id (inlines the Ed25519 public key).
    pub peer_id: PeerId,
    /// The X25519 public key for end-to-end encryption.
    pub e2e_public: [u8; 32],
    /// Signature by `peer_id`'s key over `e2e_public` with its version and expiry.
    pub binding: Binding,
}

impl PublicIdentity {
    /// Checks that `binding` is a valid signature by `peer_id`'s Ed25519 key over
    /// `e2e_public`, its version and its expiry. Only after this succeeds may
    /// `e2e_public` be used to encrypt to `peer_id`. Does not judge the expiry (see
    /// [`key_update`]): an envelope sealed long ago still shows who sealed it.
    pub fn verify(&self) -> Result<(), IdentityError> {
        let b = &self.binding;
        verify_signature(&self.peer_id, &binding_message(&self.e2e_public, 0, 0), &b.signature)?;
        match b.stamp {
            Some(stamp) => verify_signature(&self.peer_id, &binding_message(&self.e2e_public, b.version, b.expires_ms), &stamp),
            None if b.version == 0 && b.expires_ms == 0 => Ok(()),
            None => Err(IdentityError::BadSignature),
        }
    }

    /// The fingerprint of `peer_id`.
    pub fn fingerprint(&self) -> Result<Fingerprint, IdentityError> {
        Fingerprint::of(&self.peer_id)
    }
}

/// What a binding's signature (version 0 without expiry) or its stamp signs.
fn binding_message(e2e_public: &[u8; 32], version: u64, expires_ms: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(BINDING_CONTEXT_V2.len() + e2e_public.len() + 16);
    if version == 0 && expires_ms == 0 {
        msg.extend_from_slice(BINDING_CONTEXT);
        msg.extend_from_slice(e2e_public);
    } else {
        msg.extend_from_slice(BINDING_CONTEXT_V2);
        msg.extend_from_slice(e2e_public);
        msg.extend_from_slice(&version.to_be_bytes());
        msg.extend_from_slice(&expires_ms.to_be_bytes());
    }
    msg
}

/// The signatures that bind an E2E key to an identity: the unversioned one every
/// kith reads, and the stamp with the key's version and the binding's expiry. Without
/// a stamp (kith before key rotation), version and expiry are 0: version 0, never
/// expires. Two signatures rather than one, so nodes that predate versions still
/// verify what newer ones send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Ed25519 signature over [`BINDING_CONTEXT`] ‖ key.
    pub signature: [u8; 64],
    /// When the key was taken into use, ms since the epoch: a newer key has a higher one.
    pub version: u64,
    /// After this (ms since the epoch) the binding no longer vouches for the key.
    pub expires_ms: u64,
    /// Ed25519 signature over [`BINDING_CONTEXT_V2`] ‖ key ‖ version ‖ expiry.
    pub stamp: Option<[u8; 64]>,
}

impl Binding {
    /// Length of [`Binding::to_bytes`] for a stamped binding (an unstamped one is the
    /// 64-byte signature alone).
    pub const STAMPED_LEN: usize = 64 + 16 + 64;

    /// An unstamped binding: the signature alone.
    pub fn unversioned(signature: [u8; 64]) -> Binding {
        Binding { signature, version: 0, expires_ms: 0, stamp: None }
    }

    /// A binding as it travels: the signature, and the version, expiry and stamp
    /// fields, an empty stamp meaning none (a stamp of another length never verifies).
    pub fn from_parts(signature: [u8; 64], version: u64, expires_ms: u64, stamp: &[u8]) -> Binding {
        let stamp = match stamp.len() {
            0 => None,
            _ => Some(stamp.try_into().unwrap_or([0; 64])),
        };
        Binding { signature, version, expires_ms, stamp }
    }

    /// The stamp as it travels: empty for none.
    pub fn stamp_bytes(&self) -> Vec<u8> {
        self.stamp.map(|s| s.to_vec()).unwrap_or_default()
    }

    /// Whether this binding has expired at `now_ms`, allowing [`CLOCK_SKEW_MS`]. An
    /// unversioned binding never expires.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && now_ms > self.expires_ms.saturating_add(CLOCK_SKEW_MS)
    }

    /// Stored form: the signature, then, if stamped, version ‖ expiry (big-endian) ‖ stamp.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signature.to_vec();
        if let Some(stamp) = self.stamp {
            out.extend_from_slice(&self.version.to_be_bytes());
            out.extend_from_slice(&self.expires_ms.to_be_bytes());
            out.extend_from_slice(&stamp);
        }
        out
    }

    /// Reads [`Binding::to_bytes`]; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Binding> {
        let signature: [u8; 64] = bytes.get(..64)?.try_into().ok()?;
        match bytes.len() {
            64 => Some(Binding::unversioned(signature)),
            Self::STAMPED_LEN => Some(Binding {
                signature,
                version: u64::from_be_bytes(bytes[64..72].try_into().ok()?),
                expires_ms: u64::from_be_bytes(bytes[72..80].try_into().ok()?),
                stamp: Some(bytes[80..].try_into().ok()?),
            }),
            _ => None,
        }
    }
}

/// What a verified binding for a peer means next to the key we hold for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUpdate {
    /// No key held for the peer yet: take this one.
    New,
    /// The key we hold; `renewed` when this binding is newer (a later expiry or
    /// version) and should replace the stored one.
    Same {
        /// Whether to store this binding instead of the held one.
        renewed: bool,
    },
    /// Another key, at least as new as the held one: a key change, shown to the user.
    Changed,
    /// Another key with a lower version than the held one: an old key replayed
    /// (possibly by someone who stole it). Refused.
    Stale,
    /// The binding has expired. Refused.
    Expired,
}

/// Judges a verified binding of `key` against the key and binding held for the peer
/// (`None`: none held; a held binding that does not read counts as unversioned).
pub fn key_update(held: Option<([u8; 32], Option<Binding>)>, key: &[u8; 32], binding: &Binding, now_ms: u64) -> KeyUpdate {
    if binding.is_expired(now_ms) {
        return KeyUpdate::Expired;
    }
    let Some((held_key, held_binding)) = held else { return KeyUpdate::New };
    let held_binding = held_binding.unwrap_or(Binding::unversioned([0; 64]));
    if held_key == *key {
        let renewed = (binding.version, binding.expires_ms) > (held_binding.version, held_binding.expires_ms);
        return KeyUpdate::Same { renewed };
    }
    if binding.version < held_binding.version {
        return KeyUpdate::Stale;
    }
    KeyUpdate::Changed
}

/// Extracts the Ed25519 public key from a peer id.
///
/// Ed25519 peer ids inline the key as an identity multihash of its protobuf
/// encoding; any other peer id (hashed RSA keys, secp256k1, …) gives
/// [`IdentityError::NotEd25519`].
pub fn ed25519_public(peer_id: &PeerId) -> Result<VerifyingKey, IdentityError> {
    let multihash = peer_id.as_ref();
    if multihash.code() != MULTIHASH_IDENTITY {
        return Err(IdentityError::NotEd25519);
    }
    let public = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest())
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let ed = public
        .try_into_ed25519()
        .map_err(|_| IdentityError::NotEd25519)?;
    VerifyingKey::from_bytes(&ed.to_bytes()).map_err(|e| IdentityError::Malformed(e.to_string()))
}

/// Verifies an Ed25519 signature by `peer_id` over `msg`.
///
/// `sig` must be exactly 64 bytes. Uses `verify_strict`, which also rejects weak
/// (small-order) public keys and non-canonical signatures, so a signature has one
/// valid encoding.
pub fn verify_signature(peer_id: &PeerId, msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
    let key = ed25519_public(peer_id)?;
    let sig: &[u8; 64] = sig.try_into().map_err(|_| {
        IdentityError::Malformed(format!("signature is {} bytes, expected 64", sig.len()))
    })?;
    key.verify_strict(msg, &Signature::from_bytes(sig))
        .map_err(|_| IdentityError::BadSignature)
}

/// A human-comparable fingerprint of an identity: 60 decimal digits shown as 12
/// space-separated groups of 5 (safety-number style).
///
/// Derived from the Ed25519 public key alone, by 5200 rounds of
/// BLAKE3 under a domain tag, so it is stable for the life of the identity and does
/// not change when the E2E key rotates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `peer_id`'s Ed25519 key.
    pub fn of(peer_id: &PeerId) -> Result<Fingerprint, IdentityError> {
        Ok(Fingerprint::of_key(&ed25519_public(peer_id)?))
    }

    fn of_key(key: &VerifyingKey) -> Fingerprint {
        let key = key.as_bytes();
        let mut digest = *blake3::hash(key).as_bytes();
        for _ in 0..FINGERPRINT_ROUNDS {
            let mut hasher = blake3::Hasher::new();
            hasher.update(FINGERPRINT_DOMAIN);
            hasher.update(&digest);
            hasher.update(key);
            digest = *hasher.finalize().as_bytes();
        }
        // Stretch the final digest to 5 bytes per group with the XOF, keyed by domain.
        let mut wide = [0u8; FINGERPRINT_GROUPS * 5];
        let mut hasher = blake3::Hasher::new();
        hasher.update(FINGERPRINT_DOMAIN);
        hasher.update(&digest);
        hasher.finalize_xof().fill(&mut wide);

        let groups: Vec<String> = wide
            .chunks_exact(5)
            .map(|chunk| {
                let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                // 2^40 ≫ 10^5, so the modulo bias is below 10^-7 per group.
                format!("{:05}", value % 100_000)
            })
            .collect();
        Fingerprint(groups.join(" "))
    }

    /// The formatted fingerprint: 12 groups of 5 digits separated by single spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn digits(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ')
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pair's safety number: both fingerprints' digits, ordered so both sides compute the
/// same string.
///
/// The lower fingerprint (by digits) comes first; the result is 24 space-separated
/// groups of 5 digits. `safety_number(a, b) == safety_number(b, a)` always.
pub fn safety_number(a: &PeerId, b: &PeerId) -> Result<String, IdentityError> {
    let fa = Fingerprint::of(a)?;
    let fb = Fingerprint::of(b)?;
    let (first, second) = if fa <= fb { (fa, fb) } else { (fb, fa) };
    Ok(first
        .digits()
        .chain(second.digits())
        .collect::<Vec<_>>()
        .join(" "))
}

/// Overwrites a secret buffer with zeros (`zeroize`: volatile writes the compiler
/// cannot elide).
pub(crate) fn wipe(bytes: &mut [u8]) {
    zeroize::Zeroize::zeroize(bytes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixed(n: u8) -> Identity {
        Identity::from_secrets([n; 32], [n.wrapping_add(100); 32])
    }

    #[test]
    fn peer_id_round_trips_to_ed25519_key() {
        let id = Identity::generate();
        let key = ed25519_public(&id.peer_id()).unwrap();
        assert_eq!(key, id.signing.verifying_key());
        assert_eq!(id.libp2p_keypair().public().to_peer_id(), id.peer_id());
    }

    #[test]
    fn secrets_round_trip() {
        let id = Identity::generate();
        let again = Identity::from_secrets(id.ed25519_seed(), id.x25519_secret());
        assert_eq!(again.peer_id(), id.peer_id());
        assert_eq!(again.e2e_public(), id.e2e_public());
        assert_eq!(again.public(), id.public());
    }

    #[test]
    fn non_ed25519_peer_id_is_rejected() {
        // PeerId::random() is a random identity multihash that does not decode as a key.
        let random = PeerId::random();
        assert!(ed25519_public(&random).is_err());
        // A SHA-256 peer id, as used for large (RSA) keys: the key is not inline.
        let hashed = libp2p::multihash::Multihash::<64>::wrap(0x12, &[7; 32]).unwrap();
        let hashed = PeerId::from_multihash(hashed).unwrap();
        assert!(matches!(
            ed25519_public(&hashed),
            Err(IdentityError::NotEd25519)
        ));
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let id = fixed(1);
        let sig = id.sign(b"hello");
        verify_signature(&id.peer_id(), b"hello", &sig).unwrap();
        assert!(matches!(
            verify_signature(&id.peer_id(), b"hellO", &sig),
            Err(IdentityError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(&fixed(2).peer_id(), b"hello", &sig),
            Err(IdentityError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(&id.peer_id(), b"hello", &sig[..63]),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn binding_verifies_and_tampered_binding_fails() {
        let id = Identity::generate();
        let public = id.public();
        public.verify().unwrap();

        let mut bad_sig = public.clone();
        bad_sig.binding.signature[10] ^= 1;
        assert!(matches!(bad_sig.verify(), Err(IdentityError::BadSignature)));

        let mut bad_key = public.clone();
        bad_key.e2e_public[0] ^= 1;
        assert!(matches!(bad_key.verify(), Err(IdentityError::BadSignature)));

        let mut other_peer = public;
        other_peer.peer_id = Identity::generate().peer_id();
        assert!(matches!(
            other_peer.verify(),
            Err(IdentityError::BadSignature)
        ));

        // A plain signature over the key without the context is not a binding.
        let mut no_context = id.public();
        no_context.binding = Binding::unversioned(id.sign(&id.e2e_public()));
        assert!(no_context.verify().is_err());
    }

    #[test]
    fn a_versioned_binding_signs_its_version_and_expiry() {
        let id = Identity::generate().with_e2e([5; 32], 1_000, 2_000);
        let public = id.public();
        assert_eq!((public.binding.version, public.binding.expires_ms), (1_000, 2_000));
        public.verify().unwrap();
        for tamper in [|b: &mut Binding| b.version += 1, |b: &mut Binding| b.expires_ms += 1, |b: &mut Binding| b.stamp = None] {
            let mut changed = public.clone();
            tamper(&mut changed.binding);
            assert!(matches!(changed.verify(), Err(IdentityError::BadSignature)));
        }
        // Stripped of its stamp it is the unversioned binding older nodes read, and it
        // counts as version 0: older than any stamped key held for the peer.
        let mut stripped = public.clone();
        stripped.binding = Binding::unversioned(public.binding.signature);
        stripped.verify().unwrap();
        let other = Identity::generate();
        let newer = id.with_e2e([6; 32], 1_500, 2_000).binding();
        assert_eq!(
            key_update(Some(([9; 32], Some(newer))), &stripped.e2e_public, &stripped.binding, 1_000),
            KeyUpdate::Stale
        );
        // Another identity's stamp does not verify.
        let mut foreign = public.clone();
        foreign.binding.stamp = other.with_e2e([5; 32], 1_000, 2_000).binding().stamp;
        assert!(foreign.verify().is_err());
        // Stored and read back.
        assert_eq!(Binding::from_bytes(&public.binding.to_bytes()), Some(public.binding));
        let old = Identity::generate().binding();
        assert_eq!(old.to_bytes().len(), 64);
        assert_eq!(public.binding.to_bytes().len(), Binding::STAMPED_LEN);
        assert_eq!(Binding::from_bytes(&old.to_bytes()), Some(old));
        assert_eq!(Binding::from_bytes(&[0; 70]), None);
    }

    #[test]
    fn a_key_update_refuses_an_older_key_and_an_expired_binding() {
        let day = 24 * 3600 * 1000;
        let base = Identity::generate();
        let old = base.with_e2e([1; 32], 10 * day, 200 * day);
        let new = base.with_e2e([2; 32], 20 * day, 210 * day);
        let (old_key, old_b) = (old.e2e_public(), old.binding());
        let (new_key, new_b) = (new.e2e_public(), new.binding());
        let now = 30 * day;
        assert_eq!(key_update(None, &old_key, &old_b, now), KeyUpdate::New);
        assert_eq!(key_update(Some((old_key, Some(old_b))), &new_key, &new_b, now), KeyUpdate::Changed);
        assert_eq!(key_update(Some((new_key, Some(new_b))), &old_key, &old_b, now), KeyUpdate::Stale, "a rollback");
        assert_eq!(key_update(Some((new_key, Some(new_b))), &new_key, &new_b, now), KeyUpdate::Same { renewed: false });
        let renewed = base.with_e2e([2; 32], 20 * day, 300 * day).binding();
        assert_eq!(key_update(Some((new_key, Some(new_b))), &new_key, &renewed, now), KeyUpdate::Same { renewed: true });
        // Expired, past the tolerated skew; a day's skew is still taken.
        assert_eq!(key_update(Some((old_key, Some(old_b))), &new_key, &new_b, 212 * day), KeyUpdate::Expired);
        assert_eq!(key_update(Some((old_key, Some(old_b))), &new_key, &new_b, 210 * day + day / 2), KeyUpdate::Changed);
        // Unversioned keys held or offered: never stale, never expired.
        let legacy = Identity::generate().binding();
        assert_eq!(key_update(Some((old_key, None)), &new_key, &new_b, now), KeyUpdate::Changed);
        assert_eq!(key_update(Some((old_key, Some(old_b))), &new_key, &legacy, now), KeyUpdate::Stale);
        assert_eq!(key_update(Some((old_key, Some(legacy))), &new_key, &legacy, u64::MAX), KeyUpdate::Changed);
    }

    #[test]
    fn fingerprint_is_stable_and_formatted() {
        let id = fixed(7);
        let fp = id.fingerprint();
        assert_eq!(fp, Fingerprint::of(&id.peer_id()).unwrap());
        assert_eq!(fp, fixed(7).fingerprint());
        assert_ne!(fp, fixed(8).fingerprint());
        // The E2E key does not enter the fingerprint.
        assert_eq!(fp, Identity::from_secrets([7; 32], [0; 32]).fingerprint());

        let groups: Vec<&str> = fp.as_str().split(' ').collect();
        assert_eq!(groups.len(), 12);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(fp.to_string(), fp.as_str());
        assert_eq!(fp.as_str().len(), 12 * 5 + 11);
    }

    #[test]
    fn fingerprint_is_pinned() {
        // Pins the derivation: changing it would silently break every user's
        // out-of-band comparison with an older peer.
        let fp = fixed(1).fingerprint();
        assert_eq!(
            fp.as_str(),
            PINNED_FINGERPRINT,
            "fingerprint derivation changed"
        );
    }

    const PINNED_FINGERPRINT: &str =
        "51039 66515 43539 99086 91221 17885 89853 24311 16740 92721 78334 98143";

    #[test]
    fn safety_number_is_symmetric() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let ab = safety_number(&a, &b).unwrap();
        assert_eq!(ab, safety_number(&b, &a).unwrap());
        assert_eq!(ab.split(' ').count(), 24);
        let fa = Fingerprint::of(&a).unwrap();
        let fb = Fingerprint::of(&b).unwrap();
        assert!(ab.contains(fa.as_str()) && ab.contains(fb.as_str()));
        assert_ne!(
            ab,
            safety_number(&a, &Identity::generate().peer_id()).unwrap()
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let id = fixed(3);
        let text = format!("{id:?}");
        assert!(text.contains("redacted"));
        assert!(!text.contains("3, 3, 3"));
    }
}
