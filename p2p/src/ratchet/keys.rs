//! The keys that seal the ratchet's records on disk ("state keys", see the
//! parent module's "State on disk").
//!
//! A record is sealed under a random 32-byte state key and names its key by a
//! small *epoch* number, so reading it takes no trial decryption:
//!
//! ```text
//! sealed := epoch (u32 BE) ‖ nonce (12) ‖ ChaCha20-Poly1305(plaintext), AAD = epoch ‖ the record's store key
//! ```
//!
//! The state keys live in the store's key file, itself sealed under a key derived
//! from the identity's Ed25519 seed (not its X25519 secret, which is rotatable:
//! rotating it must not lose the sessions):
//!
//! ```text
//! key file := nonce (12) ‖ ChaCha20-Poly1305(contents), AAD = KEY_FILE_AAD
//! contents := version (1) ‖ flags (bit 0: legacy records may remain) ‖ count ‖ (epoch (u32 BE) ‖ key (32))*
//! ```
//!
//! The newest key seals; the others (during a roll, or after one that failed
//! half-way) only open. Before state keys existed, records were sealed under a
//! key derived from the X25519 secret, without an epoch ("legacy"): read once at
//! the upgrade, and while the key file's legacy flag says some may remain.

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use super::RatchetError;
use crate::identity::Identity;

/// What derives the key that seals the key file, from the Ed25519 seed.
const KEY_FILE_DOMAIN: &str = "kith ratchet key file v1";
/// What derived the key that sealed records before state keys, from the X25519
/// secret (the name it always had).
const LEGACY_DOMAIN: &str = "kith ratchet state v1";
/// Binds the key file's sealing to what it is.
const KEY_FILE_AAD: &[u8] = b"kith ratchet key file";
const KEY_FILE_VERSION: u8 = 1;
const FLAG_LEGACY: u8 = 1;
const NONCE_LEN: usize = 12;
const EPOCH_LEN: usize = 4;
const KEY_LEN: usize = 32;

/// The most state keys the key file holds: the newest and those records not yet
/// re-sealed still need (one more per roll that failed half-way in a row).
pub(super) const MAX_KEYS: usize = 8;

// The key file must fit the store's slot with every key in it.
const _: () = assert!(NONCE_LEN + 16 + 3 + MAX_KEYS * (EPOCH_LEN + KEY_LEN) <= kith_storage::RATCHET_KEY_FILE_CAPACITY);

/// A 32-byte key, wiped when dropped.
pub(super) type Key = Zeroizing<[u8; 32]>;

/// The key that seals the key file: from the identity's Ed25519 seed.
pub(super) fn file_key(identity: &Identity) -> Key {
    let seed = Zeroizing::new(identity.ed25519_seed());
    Zeroizing::new(blake3::derive_key(KEY_FILE_DOMAIN, &*seed))
}

/// The key records were sealed under before state keys: from the X25519 secret.
pub(super) fn legacy_key(identity: &Identity) -> Key {
    let secret = Zeroizing::new(identity.x25519_secret());
    Zeroizing::new(blake3::derive_key(LEGACY_DOMAIN, &*secret))
}

/// The keys that seal and open the state's records.
pub(super) struct StateKeys {
    /// By epoch, oldest first; the last one seals.
    keys: Vec<(u32, Key)>,
    /// The legacy key, while records sealed under it may remain.
    legacy: Option<Key>,
}

impl StateKeys {
    /// No state key yet; records sealed the legacy way open with `legacy`.
    pub(super) fn legacy_only(legacy: Option<Key>) -> StateKeys {
        StateKeys { keys: Vec::new(), legacy }
    }

    /// The epoch of the key that seals, if there is one.
    pub(super) fn current_epoch(&self) -> Option<u32> {
        self.keys.last().map(|(epoch, _)| *epoch)
    }

    /// Whether records sealed the legacy way are still read.
    #[cfg(test)]
    pub(super) fn has_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// These keys plus a new random one under the next epoch, which seals from
    /// now on; of the old ones only those in `keep` (epochs records still use;
    /// `keep_legacy`: records sealed the legacy way remain).
    pub(super) fn rolled(&self, keep: &[u32], keep_legacy: bool) -> StateKeys {
        let next = self.keys.iter().map(|(e, _)| *e).max().map_or(1, |e| e.wrapping_add(1).max(1));
        let mut keys: Vec<(u32, Key)> = self.keys.iter().filter(|(e, _)| keep.contains(e)).map(|(e, k)| (*e, k.clone())).collect();
        keys.push((next, Zeroizing::new(rand::random())));
        let legacy = if keep_legacy { self.legacy.clone() } else { None };
        StateKeys { keys, legacy }
    }

    /// The newest key alone: every record is sealed under it.
    pub(super) fn newest_only(&self) -> StateKeys {
        StateKeys { keys: self.keys.last().map(|(e, k)| (*e, k.clone())).into_iter().collect(), legacy: None }
    }

    /// The keys held, oldest first.
    #[cfg(test)]
    pub(super) fn raw(&self) -> Vec<[u8; 32]> {
        self.keys.iter().map(|(_, k)| **k).collect()
    }

    /// The epochs of the keys held, oldest first.
    #[cfg(test)]
    pub(super) fn epochs(&self) -> Vec<u32> {
        self.keys.iter().map(|(e, _)| *e).collect()
    }

    /// Seals a record stored under `at` with the newest key.
    pub(super) fn seal(&self, at: &[u8], plain: &[u8]) -> Result<Vec<u8>, RatchetError> {
        let (epoch, key) = self.keys.last().ok_or_else(|| RatchetError::State("no ratchet state key to seal with".into()))?;
        let epoch = epoch.to_be_bytes();
        let sealed = seal_raw(key, &[&epoch[..], at].concat(), plain)?;
        Ok([&epoch[..], &sealed].concat())
    }

    /// Opens a record stored under `at`: the plaintext, and the epoch it was
    /// sealed under (`None`: the legacy way).
    pub(super) fn open(&self, at: &[u8], bytes: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Option<u32>), RatchetError> {
        if let Some((epoch, sealed)) = bytes.split_first_chunk::<EPOCH_LEN>() {
            let number = u32::from_be_bytes(*epoch);
            if let Some((_, key)) = self.keys.iter().find(|(e, _)| *e == number)
                && let Ok(plain) = open_raw(key, &[&epoch[..], at].concat(), sealed)
            {
                return Ok((plain, Some(number)));
            }
        }
        // Only while the upgrade may have left some: a legacy record has no
        // epoch, so its first bytes (a random nonce) may name one by chance.
        match &self.legacy {
            Some(legacy) => Ok((open_raw(legacy, at, bytes)?, None)),
            None => Err(RatchetError::State("a record does not open with the ratchet state keys".into())),
        }
    }

    /// The key file's contents, sealed under `file_key`.
    pub(super) fn to_file(&self, file_key: &Key) -> Result<Vec<u8>, RatchetError> {
        if self.keys.len() > MAX_KEYS {
            return Err(RatchetError::State(format!("{} ratchet state keys do not fit the key file", self.keys.len())));
        }
        let mut plain = Zeroizing::new(vec![KEY_FILE_VERSION, if self.legacy.is_some() { FLAG_LEGACY } else { 0 }, self.keys.len() as u8]);
        for (epoch, key) in &self.keys {
            plain.extend_from_slice(&epoch.to_be_bytes());
            plain.extend_from_slice(&key[..]);
        }
        seal_raw(file_key, KEY_FILE_AAD, &plain)
    }

    /// Reads a key file sealed under `file_key`; `legacy` is the legacy key, kept
    /// if the file says records sealed under it may remain.
    pub(super) fn from_file(file_key: &Key, bytes: &[u8], legacy: impl FnOnce() -> Key) -> Result<StateKeys, RatchetError> {
        let bad = || RatchetError::State("the ratchet key file does not open with this identity's key".into());
        let plain = open_raw(file_key, KEY_FILE_AAD, bytes).map_err(|_| bad())?;
        let [version, flags, count, rest @ ..] = plain.as_slice() else { return Err(bad()) };
        if *version != KEY_FILE_VERSION || rest.len() != usize::from(*count) * (EPOCH_LEN + KEY_LEN) || rest.is_empty() {
            return Err(bad());
        }
        let keys = rest
            .chunks_exact(EPOCH_LEN + KEY_LEN)
            .map(|chunk| {
                let (epoch, key) = chunk.split_at(EPOCH_LEN);
                let epoch = u32::from_be_bytes(epoch.try_into().map_err(|_| bad())?);
                let key: [u8; KEY_LEN] = key.try_into().map_err(|_| bad())?;
                Ok((epoch, Zeroizing::new(key)))
            })
            .collect::<Result<Vec<_>, RatchetError>>()?;
        Ok(StateKeys { keys, legacy: (flags & FLAG_LEGACY != 0).then(legacy) })
    }
}

/// `nonce ‖ ChaCha20-Poly1305(plain)` under `key`, bound to `aad`.
pub(super) fn seal_raw(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, RatchetError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let cipher = ChaCha20Poly1305::new(key.into());
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), AeadPayload { msg: plain, aad })
        .map_err(|_| RatchetError::State("encrypting a record failed".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// Opens what [`seal_raw`] made.
pub(super) fn open_raw(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
    let (nonce, sealed) = bytes.split_first_chunk::<NONCE_LEN>().ok_or_else(|| RatchetError::State("a record too short".into()))?;
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(&Nonce::from(*nonce), AeadPayload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| RatchetError::State("a record does not decrypt with this identity's key".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_key_and_the_key_file_reads_back() {
        let legacy = || Zeroizing::new([9u8; 32]);
        let first = StateKeys::legacy_only(Some(legacy())).rolled(&[], true);
        assert_eq!(first.current_epoch(), Some(1));
        let old = first.seal(b"p/x", b"old").unwrap();
        let second = first.rolled(&[1], false);
        assert_eq!((second.epochs(), second.has_legacy()), (vec![1, 2], false));
        let new = second.seal(b"p/x", b"new").unwrap();
        assert_eq!(second.open(b"p/x", &old).unwrap().1, Some(1));
        assert_eq!(second.open(b"p/x", &new).unwrap().1, Some(2));
        assert!(second.open(b"p/y", &new).is_err(), "bound to where it is stored");
        let mut moved = new.clone();
        moved[..4].copy_from_slice(&1u32.to_be_bytes());
        assert!(second.open(b"p/x", &moved).is_err(), "bound to its epoch");

        let file_key = Zeroizing::new([3u8; 32]);
        let file = second.to_file(&file_key).unwrap();
        let read = StateKeys::from_file(&file_key, &file, legacy).unwrap();
        assert_eq!(read.open(b"p/x", &old).unwrap().0.as_slice(), b"old");
        assert!(!read.has_legacy());
        assert!(StateKeys::from_file(&Zeroizing::new([4u8; 32]), &file, legacy).is_err(), "another identity's");
        let newest = read.newest_only();
        assert!(newest.open(b"p/x", &old).is_err(), "the older key is gone");
        assert_eq!(newest.open(b"p/x", &new).unwrap().0.as_slice(), b"new");

        // The legacy way: no epoch, the key derived from the X25519 secret.
        let legacy_record = seal_raw(&legacy(), b"account", b"before state keys").unwrap();
        assert_eq!(first.open(b"account", &legacy_record).unwrap(), (Zeroizing::new(b"before state keys".to_vec()), None));
        assert!(second.open(b"account", &legacy_record).is_err());
        let with_legacy = StateKeys::from_file(&file_key, &first.to_file(&file_key).unwrap(), legacy).unwrap();
        assert!(with_legacy.has_legacy() && with_legacy.open(b"account", &legacy_record).is_ok());
    }
}
