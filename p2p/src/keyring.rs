//! The end-to-end key ring: which X25519 key the node uses now, with its version
//! and binding expiry, and the keys it rotated out, kept only while mail sealed to
//! them may still be waiting in relays.
//!
//! The keystore (`identity.key`) holds the identity and the first E2E key. Rotating
//! needs no passphrase: the ring lives beside it in its own file ([`FILE_NAME`],
//! mode 0600, replaced atomically), sealed with XChaCha20-Poly1305 under a key
//! derived from the Ed25519 seed, so it is as protected at rest as the keystore that
//! holds the seed, and only that identity opens it.
//!
//! A key's version is the time it was taken into use (ms since the epoch): the first
//! start with a ring takes the keystore's key at that moment, a rotation takes a new
//! one, each strictly later. The binding's expiry is renewed when less than half of
//! [`BINDING_LIFETIME_MS`] is left. A key rotated out is wiped from the ring
//! [`RETIRED_KEEP_MS`] later (the relays' replay window: nothing sealed to it is
//! accepted after that anyway).

use std::io;
use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::home::{Overwrite, write_private_file};
use crate::identity::{BINDING_LIFETIME_MS, Identity};
use crate::wire;

/// The ring's file name in the kith home.
pub const FILE_NAME: &str = "e2e-keys";

/// How long a rotated-out key still opens what was sealed to it: the relays' and
/// the receivers' replay window (35 days).
pub const RETIRED_KEEP_MS: u64 = 35 * 24 * 3600 * 1000;

/// Most keys kept rotated out at once: rotating more often than this within
/// [`RETIRED_KEEP_MS`] drops the oldest early (each costs a failed handshake when
/// opening mail not sealed to the current key).
pub const MAX_RETIRED: usize = 8;

/// Domain of the key that seals the ring, derived from the Ed25519 seed.
const SEAL_DOMAIN: &str = "kith e2e key ring v1 seal";
/// Associated data of the seal: the format, so another file's bytes never open as a ring.
const AAD: &[u8] = b"kith-e2e-keys-v1";
const NONCE_LEN: usize = 24;
/// Largest ring file read: a ring is a few hundred bytes.
const MAX_FILE_LEN: usize = 16 * 1024;

/// Why the ring could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The file could not be read or written.
    #[error("key ring file: {0}")]
    Io(#[from] io::Error),
    /// The file does not open with this identity or does not decode.
    #[error("key ring file is unreadable: {0}")]
    Unreadable(String),
}

/// An E2E key in use or rotated out.
#[derive(Clone, Serialize, Deserialize)]
struct RingKey {
    #[serde(with = "wire::byte_array")]
    secret: [u8; 32],
    version: u64,
    expires_ms: u64,
    /// When it was rotated out (0 while current).
    retired_at_ms: u64,
}

impl Drop for RingKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl RingKey {
    fn public(&self) -> [u8; 32] {
        PublicKey::from(&StaticSecret::from(self.secret)).to_bytes()
    }
}

/// The ring as stored.
#[derive(Serialize, Deserialize)]
struct RingFile {
    current: RingKey,
    #[serde(deserialize_with = "wire::Max::<MAX_RETIRED>::seq")]
    retired: Vec<RingKey>,
}

/// The node's E2E keys: the current one and those rotated out but still kept.
pub struct KeyRing {
    current: RingKey,
    retired: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("version", &self.current.version)
            .field("retired", &self.retired.len())
            .finish_non_exhaustive()
    }
}

/// A rotated-out key, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetiredKey {
    /// Its public half.
    pub public: [u8; 32],
    /// Its version.
    pub version: u64,
    /// When it was rotated out.
    pub retired_at_ms: u64,
    /// When it is wiped.
    pub wiped_at_ms: u64,
}

impl KeyRing {
    /// The ring at `path` for `keystore`'s identity, made up to date at `now_ms`:
    /// without a file, the keystore's key is taken into use now; a keystore key the
    /// ring does not know (a keystore restored or replaced with another E2E key) is
    /// taken in as a new key; expiries are renewed and retired keys past
    /// [`RETIRED_KEEP_MS`] wiped. Returns the ring and whether it changed (then
    /// [`KeyRing::save`] it before the keys are used). A file that does not open
    /// with this identity is replaced, with a warning. With `rotated_before` (the
    /// node has rotated its key), a missing or unreadable ring starts from a fresh
    /// random key, never from the keystore's first key, which the user rotated away
    /// from.
    pub fn open(path: &Path, keystore: &Identity, now_ms: u64, rotated_before: bool) -> Result<(KeyRing, bool), KeyRingError> {
        let loaded = match Self::read(path, keystore) {
            Ok(ring) => ring,
            Err(KeyRingError::Unreadable(why)) => {
                tracing::warn!(path = %path.display(), %why, "the end-to-end key ring is not this identity's; starting a new one");
                None
            }
            Err(e) => return Err(e),
        };
        let from_keystore = Zeroizing::new(keystore.x25519_secret());
        let mut changed = false;
        let mut ring = match loaded {
            Some(ring) => ring,
            None if rotated_before => {
                tracing::warn!("the end-to-end key ring is gone but this node rotated its key before; taking a new key");
                let mut secret = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(secret.as_mut());
                let ring = KeyRing { current: new_key(*secret, now_ms, 0), retired: Vec::new() };
                return Ok((ring, true));
            }
            None => {
                changed = true;
                KeyRing { current: new_key(*from_keystore, now_ms, 0), retired: Vec::new() }
            }
        };
        let known = ring.current.secret == *from_keystore || ring.retired.iter().any(|k| k.secret == *from_keystore);
        if !known {
            tracing::warn!("the keystore holds an end-to-end key the key ring does not know; taking it into use");
            ring.take(*from_keystore, now_ms);
            changed = true;
        }
        changed |= ring.maintain(now_ms);
        Ok((ring, changed))
    }

    /// The ring at `path` as it is, without changing anything (`None`: no file).
    pub fn read(path: &Path, keystore: &Identity) -> Result<Option<KeyRing>, KeyRingError> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // At most one byte past the limit is read: a larger file is refused unread.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN + 1));
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_LEN as u64 + 1), &mut bytes)?;
        if bytes.len() > MAX_FILE_LEN || bytes.len() < NONCE_LEN {
            return Err(KeyRingError::Unreadable(format!("{} bytes", bytes.len())));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyRingError::Unreadable("nonce".into()))?;
        let plain = Zeroizing::new(
            cipher(keystore)
                .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: AAD })
                .map_err(|_| KeyRingError::Unreadable("does not open with this identity".into()))?,
        );
        let file: RingFile = wire::decode(&plain, MAX_FILE_LEN).map_err(|e| KeyRingError::Unreadable(e.to_string()))?;
        Ok(Some(KeyRing { current: file.current, retired: file.retired }))
    }

    /// Writes the ring to `path`, sealed for `keystore`'s identity; atomic and durable.
    pub fn save(&self, path: &Path, keystore: &Identity) -> Result<(), KeyRingError> {
        let file = RingFile { current: self.current.clone(), retired: self.retired.clone() };
        let plain = Zeroizing::new(wire::encode(&file).map_err(|e| KeyRingError::Unreadable(e.to_string()))?);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher(keystore)
            .encrypt(&XNonce::from(nonce), Payload { msg: &plain, aad: AAD })
            .map_err(|_| KeyRingError::Unreadable("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        write_private_file(path, &out, Overwrite::Allowed)?;
        Ok(())
    }

    /// `keystore`'s identity with the current key, version and expiry.
    pub fn identity(&self, keystore: &Identity) -> Identity {
        keystore.with_e2e(self.current.secret, self.current.version, self.current.expires_ms)
    }

    /// The secrets of the keys rotated out, newest first: still opened.
    pub fn retired_secrets(&self) -> Vec<Zeroizing<[u8; 32]>> {
        self.retired.iter().map(|k| Zeroizing::new(k.secret)).collect()
    }

    /// The keys rotated out, newest first, for display.
    pub fn retired(&self) -> Vec<RetiredKey> {
        self.retired
            .iter()
            .map(|k| RetiredKey {
                public: k.public(),
                version: k.version,
                retired_at_ms: k.retired_at_ms,
                wiped_at_ms: k.retired_at_ms.saturating_add(RETIRED_KEEP_MS),
            })
            .collect()
    }

    /// Takes a fresh random key into use at `now_ms`; the current one is kept, rotated
    /// out, for [`RETIRED_KEEP_MS`]. Not saved.
    pub fn rotate(&mut self, now_ms: u64) {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        self.take(*secret, now_ms);
    }

    /// Renews the binding's expiry when less than half of its lifetime is left and
    /// wipes retired keys past [`RETIRED_KEEP_MS`]. Returns whether anything changed
    /// (then save the ring, and use [`KeyRing::identity`] again).
    pub fn maintain(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        if self.current.expires_ms.saturating_sub(now_ms) < BINDING_LIFETIME_MS / 2 {
            self.current.expires_ms = now_ms.saturating_add(BINDING_LIFETIME_MS);
            changed = true;
        }
        let before = self.retired.len();
        self.retired.retain(|k| now_ms.saturating_sub(k.retired_at_ms) <= RETIRED_KEEP_MS);
        changed | (self.retired.len() != before)
    }

    /// `secret` becomes the current key, at a version later than any before.
    fn take(&mut self, secret: [u8; 32], now_ms: u64) {
        let floor = self.current.version.saturating_add(1);
        let mut old = std::mem::replace(&mut self.current, new_key(secret, now_ms, floor));
        old.retired_at_ms = now_ms;
        self.retired.retain(|k| k.secret != secret);
        self.retired.insert(0, old);
        self.retired.truncate(MAX_RETIRED);
    }
}

fn new_key(secret: [u8; 32], now_ms: u64, floor: u64) -> RingKey {
    RingKey { secret, version: now_ms.max(floor).max(1), expires_ms: now_ms.saturating_add(BINDING_LIFETIME_MS), retired_at_ms: 0 }
}

fn cipher(keystore: &Identity) -> XChaCha20Poly1305 {
    let seed = Zeroizing::new(keystore.ed25519_seed());
    let derived = Zeroizing::new(blake3::derive_key(SEAL_DOMAIN, seed.as_ref()));
    crate::keystore::aead(&derived)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    #[test]
    fn a_new_ring_takes_the_keystore_key_and_reads_back_only_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keystore = Identity::generate();
        let (ring, changed) = KeyRing::open(&path, &keystore, 100 * DAY, false).unwrap();
        assert!(changed);
        let me = ring.identity(&keystore);
        assert_eq!(me.e2e_public(), keystore.e2e_public(), "the keystore's key, now versioned");
        assert_eq!((me.e2e_version(), me.e2e_expires_ms()), (100 * DAY, 100 * DAY + BINDING_LIFETIME_MS));
        me.public().verify().unwrap();
        ring.save(&path, &keystore).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let (again, changed) = KeyRing::open(&path, &keystore, 101 * DAY, false).unwrap();
        assert!(!changed, "nothing to renew yet");
        assert_eq!(again.identity(&keystore).binding(), me.binding());
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(32).any(|w| w == keystore.x25519_secret()), "the secret is sealed");
        assert!(matches!(KeyRing::read(&path, &Identity::generate()), Err(KeyRingError::Unreadable(_))));
    }

    #[test]
    fn rotating_keeps_the_old_key_for_the_window_then_wipes_it_and_a_lost_ring_never_brings_back_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keystore = Identity::generate();
        let (mut ring, _) = KeyRing::open(&path, &keystore, 100 * DAY, false).unwrap();
        let first = ring.identity(&keystore);
        ring.rotate(100 * DAY);
        let second = ring.identity(&keystore);
        assert_ne!(second.e2e_public(), first.e2e_public());
        assert!(second.e2e_version() > first.e2e_version(), "same millisecond, still a later version");
        assert_eq!(ring.retired_secrets(), vec![Zeroizing::new(first.x25519_secret())]);
        ring.save(&path, &keystore).unwrap();

        // Reopened: the keystore's key is known (retired), so it is not taken again.
        let (mut ring, changed) = KeyRing::open(&path, &keystore, 110 * DAY, true).unwrap();
        assert!(!changed);
        assert_eq!(ring.identity(&keystore).e2e_public(), second.e2e_public());
        assert!(!ring.maintain(100 * DAY + RETIRED_KEEP_MS));
        assert!(ring.maintain(101 * DAY + RETIRED_KEEP_MS), "wiped after the window");
        assert!(ring.retired_secrets().is_empty());

        // The ring lost (deleted, or damaged) after a rotation: never the first key again.
        std::fs::remove_file(&path).unwrap();
        let (fresh, changed) = KeyRing::open(&path, &keystore, 111 * DAY, true).unwrap();
        assert!(changed);
        let key = fresh.identity(&keystore).e2e_public();
        assert_ne!(key, first.e2e_public(), "not the keystore's first key");
        assert_ne!(key, second.e2e_public());
        std::fs::write(&path, b"damaged").unwrap();
        let (fresh, _) = KeyRing::open(&path, &keystore, 111 * DAY, true).unwrap();
        assert_ne!(fresh.identity(&keystore).e2e_public(), first.e2e_public());
    }

    #[test]
    fn the_binding_is_renewed_at_half_its_lifetime_and_a_replaced_keystore_key_is_taken_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keystore = Identity::generate();
        let (ring, _) = KeyRing::open(&path, &keystore, DAY, false).unwrap();
        ring.save(&path, &keystore).unwrap();
        let half = DAY + BINDING_LIFETIME_MS / 2 + 1;
        let (renewed, changed) = KeyRing::open(&path, &keystore, half, false).unwrap();
        assert!(changed);
        assert_eq!(renewed.identity(&keystore).e2e_expires_ms(), half + BINDING_LIFETIME_MS);
        assert_eq!(renewed.identity(&keystore).e2e_version(), DAY, "same key, same version");

        // The same identity with another E2E key in its keystore (restored from elsewhere).
        let replaced = Identity::from_secrets(keystore.ed25519_seed(), [9; 32]);
        let (ring, changed) = KeyRing::open(&path, &replaced, 2 * DAY, false).unwrap();
        assert!(changed);
        assert_eq!(ring.identity(&replaced).e2e_public(), replaced.e2e_public());
        assert!(ring.identity(&replaced).e2e_version() > DAY);
        assert_eq!(ring.retired_secrets(), vec![Zeroizing::new(keystore.x25519_secret())]);
    }
}
