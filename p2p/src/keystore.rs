//! The identity file (`identity.key`), encrypted at rest.
//!
//! The file is a small, versioned JSON document so a user can see what it is without
//! tools:
//!
//! ```json
//! {
//!   "version": 1,
//!   "kind": "kith-keystore",
//!   "peer_id": "12D3KooW…",
//!   "encryption": "argon2id-xchacha20poly1305",
//!   "kdf": { "m_cost": 65536, "t_cost": 3, "p_cost": 4, "salt": "<hex, 16 bytes>" },
//!   "nonce": "<hex, 24 bytes>",
//!   "secret": "<hex of the ciphertext>"
//! }
//! ```
//!
//! The secret plaintext is 64 bytes: the Ed25519 seed ‖ the X25519 secret. With a
//! passphrase it is sealed with XChaCha20-Poly1305 under a key derived by Argon2id
//! (m = 64 MiB, t = 3, p = 4: RFC 9106's second recommended setting, about 0.3 s to
//! unlock here, see docs/PERFORMANCE.md), with a random salt and nonce per write. The
//! parameters are stored in the file and read back from it, so files written with
//! other costs (kith 0.1 used m = 19 MiB, t = 2, p = 1) still open; changing the
//! passphrase rewrites them with the current costs. The AEAD's associated data covers
//! every header field (version, kind, peer id, encryption, KDF parameters, salt), so
//! tampering with any of them makes decryption fail instead of silently weakening the
//! file. Without a passphrase
//! (`"encryption": "none"`, nonce and kdf absent) the secret is stored in the clear;
//! the user must opt into that explicitly with [`Protection::Unencrypted`].
//!
//! Writes are atomic: a temporary file (mode 0600) in the same directory is written,
//! fsynced, then moved into place and the directory fsynced, so a crash leaves either
//! the old file or the new one, never a torn one. [`create`] never replaces an
//! existing identity.
//!
//! Secrets are wiped after use (`zeroize`): the file's bytes, the parsed document's
//! secret field, the decoded and decrypted secret, the derived key and the encoded
//! file on the way out; the AEAD and Argon2 crates wipe their own state. Buffers are
//! sized up front so that growing them leaves no copies behind.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libp2p::PeerId;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::home::{Overwrite, write_private_file};
use crate::identity::Identity;

/// The only format version this build reads and writes.
const VERSION: u32 = 1;
/// The `kind` field, so a stray JSON file is not mistaken for a keystore.
const KIND: &str = "kith-keystore";
const ENCRYPTION_NONE: &str = "none";
const ENCRYPTION_ARGON2_XCHACHA: &str = "argon2id-xchacha20poly1305";

/// Argon2id cost of new files: RFC 9106's second recommended setting (the first,
/// 2 GiB, is too much for a terminal app). Each guess at the passphrase costs an
/// attacker 64 MiB and three passes over it; unlocking costs us about 0.3 s on the
/// project's 2-core machine (measured by `keystore-bench`, docs/PERFORMANCE.md), well
/// under a second even under load. OWASP's minimum (19 MiB, 2 passes), which kith
/// 0.1 used, is ~5x cheaper for an attacker.
const KDF_PARAMS: KdfParams = KdfParams {
    m_cost: KDF_M_COST_KIB,
    t_cost: KDF_T_COST_PASSES,
    p_cost: KDF_P_COST_LANES,
};
/// Memory cost of new files, in KiB (64 MiB).
const KDF_M_COST_KIB: u32 = 64 * 1024;
/// Time cost of new files, in passes over the memory.
const KDF_T_COST_PASSES: u32 = 3;
/// Parallelism of new files, in lanes. The argon2 crate computes lanes one after the
/// other, so 4 costs us no more time than 1 while letting a multi-core machine of
/// ours be used if the crate ever parallelises.
const KDF_P_COST_LANES: u32 = 4;
/// Upper bounds accepted when reading a file. The parameters come from the file, so
/// without a cap a tampered file could make us allocate gigabytes or spin for hours
/// before the AEAD check could reject it.
const KDF_M_COST_MAX: u32 = 1024 * 1024; // 1 GiB
const KDF_T_COST_MAX: u32 = 64;
const KDF_P_COST_MAX: u32 = 16;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const SECRET_LEN: usize = 64;
/// A keystore is well under 1 KiB; refuse to read anything much larger.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// How the secret keys are protected on disk.
#[derive(Clone, Copy)]
pub enum Protection<'a> {
    /// Encrypt under a key derived from this passphrase (Argon2id, XChaCha20-Poly1305).
    /// Must not be empty.
    Passphrase(&'a str),
    /// Store the secrets in the clear (file mode 0600 only). An explicit opt-out.
    Unencrypted,
}

impl std::fmt::Debug for Protection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protection::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            Protection::Unencrypted => f.write_str("Unencrypted"),
        }
    }
}

/// Errors from reading or writing the keystore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// There is no keystore at this path.
    #[error("no identity file at {0}")]
    NotFound(PathBuf),
    /// [`create`] refuses to replace an existing identity.
    #[error("an identity file already exists at {0}")]
    AlreadyExists(PathBuf),
    /// The file is encrypted and no passphrase was given.
    #[error("the identity file is encrypted; a passphrase is required")]
    PassphraseRequired,
    /// Decryption failed: the passphrase is wrong, or the encrypted file was altered.
    #[error("wrong passphrase (or the identity file was modified)")]
    WrongPassphrase,
    /// An empty passphrase was given for [`Protection::Passphrase`]; use
    /// [`Protection::Unencrypted`] to opt out of encryption explicitly.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// The file is not a valid keystore.
    #[error("the identity file is corrupt: {0}")]
    Corrupt(String),
    /// The file was written by a newer (or unknown) format version.
    #[error("unsupported identity file version {0}")]
    UnsupportedVersion(u32),
    /// Reading or writing failed.
    #[error("identity file I/O: {0}")]
    Io(#[from] io::Error),
}

/// The on-disk document. Field order is the order they are written in. Its `secret`
/// (the hex of the sealed or, unencrypted, plain secret) is wiped when it is dropped.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    kind: String,
    peer_id: String,
    encryption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    secret: String,
}

impl Drop for Document {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// The one field read before the rest, so a future format reports its version.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct KdfParams {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfDoc {
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// Writes a new keystore for `identity` at `path`.
///
/// Never overwrites: if `path` exists (even if created concurrently) this returns
/// [`KeystoreError::AlreadyExists`] and leaves it untouched. The file is created with
/// mode 0600 and is complete and durable when this returns `Ok`.
pub fn create(
    path: &Path,
    identity: &Identity,
    protection: Protection<'_>,
) -> Result<(), KeystoreError> {
    if path.symlink_metadata().is_ok() {
        return Err(KeystoreError::AlreadyExists(path.to_path_buf()));
    }
    let bytes = encode(identity, protection, KDF_PARAMS)?;
    write_private_file(path, &bytes, Overwrite::Never).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => KeystoreError::AlreadyExists(path.to_path_buf()),
        _ => KeystoreError::Io(e),
    })
}

/// Reads and decrypts the keystore at `path`.
///
/// `passphrase` is ignored for an unencrypted file. For an encrypted one, `None` gives
/// [`KeystoreError::PassphraseRequired`] and a wrong one
/// [`KeystoreError::WrongPassphrase`]; the file is never modified.
pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Identity, KeystoreError> {
    let doc = read_document(path)?;
    let header = Header::parse(&doc)?;
    let secret = decode_hex(&doc.secret, "secret")?;
    let plain = match &header.sealing {
        None => secret,
        Some(sealing) => {
            let passphrase = passphrase.ok_or(KeystoreError::PassphraseRequired)?;
            let cipher = cipher_for(passphrase, &sealing.params, &sealing.salt)?;
            let aad = header.aad(&doc);
            let plain = cipher
                .decrypt(
                    &XNonce::from(sealing.nonce),
                    Payload {
                        msg: &secret,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassphrase)?;
            Zeroizing::new(plain)
        }
    };
    let identity = identity_from_plain(&plain)?;
    // The header's peer id is only a label until here; for an unencrypted file nothing
    // else ties it to the secret.
    if identity.peer_id() != header.peer_id {
        return Err(KeystoreError::Corrupt(
            "peer_id does not match the stored key".into(),
        ));
    }
    Ok(identity)
}

/// Whether the keystore at `path` is passphrase-protected. Reads only the header.
pub fn is_encrypted(path: &Path) -> Result<bool, KeystoreError> {
    let doc = read_document(path)?;
    Ok(Header::parse(&doc)?.sealing.is_some())
}

/// The peer id recorded in the keystore's header, readable without the passphrase
/// (e.g. for `kith id` while the daemon is stopped).
///
/// Unverified: [`load`] checks it against the secret key, this function cannot.
pub fn peer_id(path: &Path) -> Result<PeerId, KeystoreError> {
    let doc = read_document(path)?;
    Ok(Header::parse(&doc)?.peer_id)
}

/// Re-encrypts the keystore at `path` under a new protection, atomically replacing it.
///
/// `old` unlocks the current file as in [`load`]. On any error the file is unchanged;
/// after `Ok` only the new protection opens it. The identity itself is unchanged.
pub fn change_passphrase(
    path: &Path,
    old: Option<&str>,
    new: Protection<'_>,
) -> Result<(), KeystoreError> {
    let identity = load(path, old)?;
    let bytes = encode(&identity, new, KDF_PARAMS)?;
    write_private_file(path, &bytes, Overwrite::Allowed)?;
    Ok(())
}

/// The parsed, validated header fields of a document.
struct Header {
    peer_id: PeerId,
    sealing: Option<Sealing>,
}

struct Sealing {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
}

impl Header {
    fn parse(doc: &Document) -> Result<Header, KeystoreError> {
        if doc.version != VERSION {
            return Err(KeystoreError::UnsupportedVersion(doc.version));
        }
        if doc.kind != KIND {
            return Err(KeystoreError::Corrupt(format!(
                "kind is {:?}, not {KIND:?}",
                doc.kind
            )));
        }
        let peer_id: PeerId = doc
            .peer_id
            .parse()
            .map_err(|e| KeystoreError::Corrupt(format!("peer_id: {e}")))?;
        let sealing = match doc.encryption.as_str() {
            ENCRYPTION_NONE => {
                if doc.kdf.is_some() || doc.nonce.is_some() {
                    return Err(KeystoreError::Corrupt(
                        "unencrypted file with kdf or nonce fields".into(),
                    ));
                }
                None
            }
            ENCRYPTION_ARGON2_XCHACHA => {
                let kdf = doc
                    .kdf
                    .as_ref()
                    .ok_or_else(|| KeystoreError::Corrupt("kdf missing".into()))?;
                let nonce = doc
                    .nonce
                    .as_ref()
                    .ok_or_else(|| KeystoreError::Corrupt("nonce missing".into()))?;
                let p = kdf.params;
                if !(1..=KDF_M_COST_MAX).contains(&p.m_cost)
                    || !(1..=KDF_T_COST_MAX).contains(&p.t_cost)
                    || !(1..=KDF_P_COST_MAX).contains(&p.p_cost)
                {
                    return Err(KeystoreError::Corrupt("kdf parameters out of range".into()));
                }
                Some(Sealing {
                    params: p,
                    salt: decode_hex_array(&kdf.salt, "kdf.salt")?,
                    nonce: decode_hex_array(nonce, "nonce")?,
                })
            }
            other => {
                return Err(KeystoreError::Corrupt(format!(
                    "unknown encryption {other:?}"
                )));
            }
        };
        Ok(Header { peer_id, sealing })
    }

    /// The AEAD associated data: every header field in a fixed, unambiguous layout
    /// (length-prefixed strings, big-endian integers).
    fn aad(&self, doc: &Document) -> Vec<u8> {
        let mut aad = Vec::with_capacity(128);
        let mut put = |bytes: &[u8]| {
            aad.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            aad.extend_from_slice(bytes);
        };
        put(b"kith-keystore-aad");
        put(&doc.version.to_be_bytes());
        put(doc.kind.as_bytes());
        put(doc.peer_id.as_bytes());
        put(doc.encryption.as_bytes());
        if let Some(sealing) = &self.sealing {
            put(&sealing.params.m_cost.to_be_bytes());
            put(&sealing.params.t_cost.to_be_bytes());
            put(&sealing.params.p_cost.to_be_bytes());
            put(&sealing.salt);
        }
        aad
    }
}

/// The file for `identity`, sealed (if at all) with Argon2id cost `params`.
fn encode(
    identity: &Identity,
    protection: Protection<'_>,
    params: KdfParams,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let mut plain = Zeroizing::new([0u8; SECRET_LEN]);
    plain[..32].copy_from_slice(Zeroizing::new(identity.ed25519_seed()).as_slice());
    plain[32..].copy_from_slice(Zeroizing::new(identity.x25519_secret()).as_slice());
    encode_plain(identity, &plain, protection, params)
}

/// Room for the whole JSON document, so writing it never reallocates (a keystore is
/// about 500 bytes; a reallocation would leave a copy of an unencrypted secret behind).
const DOCUMENT_CAPACITY: usize = 2048;

fn encode_plain(
    identity: &Identity,
    plain: &[u8; SECRET_LEN],
    protection: Protection<'_>,
    params: KdfParams,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let mut doc = Document {
        version: VERSION,
        kind: KIND.to_owned(),
        peer_id: identity.peer_id().to_base58(),
        encryption: ENCRYPTION_NONE.to_owned(),
        kdf: None,
        nonce: None,
        secret: String::new(),
    };
    match protection {
        Protection::Unencrypted => doc.secret = hex::encode(plain),
        Protection::Passphrase(passphrase) => {
            if passphrase.is_empty() {
                return Err(KeystoreError::EmptyPassphrase);
            }
            let mut salt = [0u8; SALT_LEN];
            let mut nonce = [0u8; NONCE_LEN];
            rand::rngs::OsRng
                .try_fill_bytes(&mut salt)
                .map_err(io::Error::other)?;
            rand::rngs::OsRng
                .try_fill_bytes(&mut nonce)
                .map_err(io::Error::other)?;
            doc.encryption = ENCRYPTION_ARGON2_XCHACHA.to_owned();
            doc.kdf = Some(KdfDoc {
                params,
                salt: hex::encode(salt),
            });
            doc.nonce = Some(hex::encode(nonce));
            let header = Header {
                peer_id: identity.peer_id(),
                sealing: Some(Sealing {
                    params,
                    salt,
                    nonce,
                }),
            };
            let aad = header.aad(&doc);
            let sealed = cipher_for(passphrase, &params, &salt)?
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: plain,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::Corrupt("encryption failed".into()))?;
            doc.secret = hex::encode(&sealed);
        }
    }
    // `doc` wipes its secret when dropped; the JSON copy is wiped by its owner.
    let mut json = Zeroizing::new(Vec::with_capacity(DOCUMENT_CAPACITY));
    serde_json::to_writer_pretty(&mut *json, &doc).map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
    json.push(b'\n');
    Ok(json)
}

/// The AEAD keyed from the passphrase; the derived key bytes are wiped here, the
/// cipher's copy when it is dropped (the crate's `zeroize` feature).
fn cipher_for(
    passphrase: &str,
    params: &KdfParams,
    salt: &[u8],
) -> Result<XChaCha20Poly1305, KeystoreError> {
    let derived = derive_key(passphrase, params, salt)?;
    Ok(aead(&derived))
}

/// XChaCha20-Poly1305 keyed with `key`, read in place (no copy to wipe); the
/// cipher's own copy is wiped when it is dropped (the crate's `zeroize` feature).
pub(crate) fn aead(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Argon2id over the passphrase bytes (used as given: no Unicode normalisation).
fn derive_key(
    passphrase: &str,
    params: &KdfParams,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let argon_params = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| KeystoreError::Corrupt(format!("kdf parameters: {e}")))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut_slice())
        .map_err(|e| KeystoreError::Corrupt(format!("kdf: {e}")))?;
    Ok(key)
}

fn identity_from_plain(plain: &[u8]) -> Result<Identity, KeystoreError> {
    if plain.len() != SECRET_LEN {
        return Err(KeystoreError::Corrupt(format!(
            "secret is {} bytes, expected {SECRET_LEN}",
            plain.len()
        )));
    }
    let mut ed = Zeroizing::new([0u8; 32]);
    let mut x = Zeroizing::new([0u8; 32]);
    ed.copy_from_slice(&plain[..32]);
    x.copy_from_slice(&plain[32..]);
    Ok(Identity::from_secrets(*ed, *x))
}

fn read_document(path: &Path) -> Result<Document, KeystoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeystoreError::NotFound(path.to_path_buf()));
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o077 != 0 {
        // Not fatal (the user may have reasons), but worth telling them.
        tracing::warn!(path = %path.display(), mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "identity file is readable by other users; it should be mode 0600");
    }
    // Sized from the file up front (plus one byte to notice growth) so reading never
    // reallocates and leaves a copy of the secret behind.
    let expected = usize::try_from(meta.len().min(MAX_FILE_LEN)).unwrap_or(0) + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(expected));
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(KeystoreError::Corrupt(
            "file is too large to be a keystore".into(),
        ));
    }
    // Read the version first, so a future format with other fields reports
    // UnsupportedVersion rather than a confusing parse error. Both parses read the
    // bytes in place: strings without escapes are copied once, into the document.
    let probe: VersionProbe = serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
    let version = probe
        .version
        .ok_or_else(|| KeystoreError::Corrupt("missing version".into()))?;
    if version != u64::from(VERSION) {
        return Err(KeystoreError::UnsupportedVersion(
            u32::try_from(version).unwrap_or(u32::MAX),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt(e.to_string()))
}

/// The bytes of a hex field, in a buffer that is wiped when dropped (the field may be
/// an unencrypted secret).
fn decode_hex(text: &str, field: &str) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    // Allocated once at its final size: growing would leave copies behind.
    let mut out = Zeroizing::new(vec![0u8; text.len() / 2]);
    hex::decode_to_slice(text, &mut out).map_err(|_| KeystoreError::Corrupt(format!("{field} is not valid hex")))?;
    Ok(out)
}

fn decode_hex_array<const N: usize>(text: &str, field: &str) -> Result<[u8; N], KeystoreError> {
    <[u8; N]>::try_from(decode_hex(text, field)?.as_slice())
        .map_err(|_| KeystoreError::Corrupt(format!("{field} must be {N} bytes")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        (dir, path, Identity::generate())
    }

    fn assert_same(a: &Identity, b: &Identity) {
        assert_eq!(a.ed25519_seed(), b.ed25519_seed());
        assert_eq!(a.x25519_secret(), b.x25519_secret());
    }

    #[test]
    fn encrypted_round_trip() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Passphrase("correct horse")).unwrap();
        assert!(is_encrypted(&path).unwrap());
        assert_eq!(peer_id(&path).unwrap(), id.peer_id());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(ENCRYPTION_ARGON2_XCHACHA));
        assert!(!text.contains(&hex::encode(id.ed25519_seed())));
        assert_same(&load(&path, Some("correct horse")).unwrap(), &id);
    }

    #[test]
    fn wrong_passphrase_fails_and_leaves_file_unchanged() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Passphrase("right")).unwrap();
        let before = fs::read(&path).unwrap();
        assert!(matches!(
            load(&path, Some("wrong")),
            Err(KeystoreError::WrongPassphrase)
        ));
        assert!(matches!(
            change_passphrase(&path, Some("wrong"), Protection::Unencrypted),
            Err(KeystoreError::WrongPassphrase)
        ));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn encrypted_without_passphrase_requires_one() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Passphrase("pw")).unwrap();
        assert!(matches!(
            load(&path, None),
            Err(KeystoreError::PassphraseRequired)
        ));
    }

    #[test]
    fn unencrypted_round_trip_ignores_passphrase() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        assert!(!is_encrypted(&path).unwrap());
        assert_same(&load(&path, None).unwrap(), &id);
        assert_same(&load(&path, Some("anything")).unwrap(), &id);
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        let before = fs::read(&path).unwrap();
        let other = Identity::generate();
        assert!(matches!(
            create(&path, &other, Protection::Unencrypted),
            Err(KeystoreError::AlreadyExists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), before);
        // No temp files left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn file_mode_is_0600() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let (_dir, path, id) = setup();
        assert!(matches!(
            create(&path, &id, Protection::Passphrase("")),
            Err(KeystoreError::EmptyPassphrase)
        ));
        assert!(!path.exists());
    }

    #[test]
    fn missing_file_is_not_found() {
        let (_dir, path, _) = setup();
        assert!(matches!(load(&path, None), Err(KeystoreError::NotFound(p)) if p == path));
        assert!(matches!(
            is_encrypted(&path),
            Err(KeystoreError::NotFound(_))
        ));
    }

    #[test]
    fn corrupted_files_are_corrupt() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        let good = fs::read_to_string(&path).unwrap();

        for bad in [
            "not json".to_owned(),
            "{}".to_owned(),
            good.replace("kith-keystore", "something-else"),
            good.replace("\"secret\": \"", "\"secret\": \"zz"),
            good.replace("\"secret\": \"", "\"secret\": \"00"),
            good.replace("\"none\"", "\"rot13\""),
        ] {
            fs::write(&path, &bad).unwrap();
            let result = load(&path, None);
            assert!(
                matches!(result, Err(KeystoreError::Corrupt(_))),
                "{bad}: {result:?}"
            );
        }

        // A header peer id that does not belong to the stored key.
        let other = Identity::generate().peer_id().to_base58();
        fs::write(&path, good.replace(&id.peer_id().to_base58(), &other)).unwrap();
        assert!(matches!(load(&path, None), Err(KeystoreError::Corrupt(_))));
    }

    #[test]
    fn tampered_encrypted_header_fails() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Passphrase("pw")).unwrap();
        let good = fs::read_to_string(&path).unwrap();
        // Lowering the KDF cost is detected by the AEAD, not accepted silently.
        fs::write(&path, good.replace("\"t_cost\": 3", "\"t_cost\": 1")).unwrap();
        assert!(matches!(
            load(&path, Some("pw")),
            Err(KeystoreError::WrongPassphrase)
        ));
        // Absurd costs are refused before deriving anything.
        fs::write(
            &path,
            good.replace("\"m_cost\": 65536", "\"m_cost\": 4000000000"),
        )
        .unwrap();
        assert!(matches!(
            load(&path, Some("pw")),
            Err(KeystoreError::Corrupt(_))
        ));
        // Flipping a ciphertext byte.
        let doc: serde_json::Value = serde_json::from_str(&good).unwrap();
        let secret = doc["secret"].as_str().unwrap();
        let flipped = format!(
            "{}{}",
            if secret.starts_with('0') { "1" } else { "0" },
            &secret[1..]
        );
        fs::write(&path, good.replace(secret, &flipped)).unwrap();
        assert!(matches!(
            load(&path, Some("pw")),
            Err(KeystoreError::WrongPassphrase)
        ));
    }

    #[test]
    fn future_version_is_unsupported() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        let good = fs::read_to_string(&path).unwrap();
        fs::write(&path, good.replace("\"version\": 1", "\"version\": 2")).unwrap();
        assert!(matches!(
            load(&path, None),
            Err(KeystoreError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn change_passphrase_round_trip() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Unencrypted).unwrap();
        change_passphrase(&path, None, Protection::Passphrase("new")).unwrap();
        assert!(matches!(
            load(&path, None),
            Err(KeystoreError::PassphraseRequired)
        ));
        assert_same(&load(&path, Some("new")).unwrap(), &id);
        change_passphrase(&path, Some("new"), Protection::Unencrypted).unwrap();
        assert_same(&load(&path, None).unwrap(), &id);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// A keystore written by kith 0.1 (Argon2id m = 19 MiB, t = 2, p = 1) for
    /// `Identity::from_secrets([7; 32], [8; 32])` under [`OLD_PASSPHRASE`] (also read
    /// by `keystore-bench`).
    const OLD_FILE: &str = include_str!("../tests/data/identity-kith-0.1.key");
    const OLD_PASSPHRASE: &str = "written by kith 0.1";

    fn kdf_of(path: &Path) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        doc["kdf"].clone()
    }

    #[test]
    fn new_files_use_the_raised_kdf_cost() {
        let (_dir, path, id) = setup();
        create(&path, &id, Protection::Passphrase("pw")).unwrap();
        assert_eq!(
            kdf_of(&path),
            serde_json::json!({ "m_cost": 64 * 1024, "t_cost": 3, "p_cost": 4, "salt": kdf_of(&path)["salt"] })
        );
        const { assert!(KDF_M_COST_KIB <= KDF_M_COST_MAX && KDF_T_COST_PASSES <= KDF_T_COST_MAX) };
        const { assert!(KDF_P_COST_LANES <= KDF_P_COST_MAX) };
    }

    #[test]
    fn a_file_written_with_the_old_kdf_cost_still_opens() {
        let (_dir, path, _) = setup();
        fs::write(&path, OLD_FILE).unwrap();
        let id = load(&path, Some(OLD_PASSPHRASE)).unwrap();
        assert_same(&id, &Identity::from_secrets([7; 32], [8; 32]));
        assert!(matches!(load(&path, Some("wrong")), Err(KeystoreError::WrongPassphrase)));
        // Changing the passphrase rewrites it with today's cost.
        change_passphrase(&path, Some(OLD_PASSPHRASE), Protection::Passphrase("new")).unwrap();
        assert_eq!(kdf_of(&path)["m_cost"], 64 * 1024);
        assert_same(&load(&path, Some("new")).unwrap(), &id);
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(*decode_hex(&hex::encode(&bytes), "x").unwrap(), bytes);
        assert!(decode_hex("abc", "x").is_err());
    }
}
