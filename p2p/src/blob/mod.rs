//! Files as blobs: encrypted in fixed-size chunks and content-addressed, so whoever
//! holds or carries a blob (a peer, a media node) can check every chunk as it
//! arrives without being able to read it, and a transfer can resume or fetch ranges
//! chunk by chunk.
//!
//! Format, version 1 (docs/PROTOCOL.md, "Files"):
//!
//! - The plaintext is cut into chunks of [`CHUNK_SIZE`] bytes; the last one may be
//!   shorter, and an empty file is one empty chunk.
//! - Chunk `i` is sealed with ChaCha20-Poly1305 under the file's own random
//!   [`BlobKey`]: nonce = `i` (8 bytes, big-endian) ‖ a 4-byte flag word that is 1
//!   on the last chunk, associated data = [`AAD_PREFIX`] ‖ the plaintext length
//!   (8 bytes). The index in the nonce stops reordering; the last-chunk flag and the
//!   length stop truncation and extension. A sealed chunk is its plaintext plus a
//!   16-byte tag.
//! - Chunk `i`'s hash is BLAKE3 in derive-key mode ([`CHUNK_HASH_CONTEXT`]) over
//!   `i` (8 bytes) ‖ the sealed chunk, so a hash also says where its chunk goes.
//! - The outboard is the list of chunk hashes; the blob's id is BLAKE3
//!   ([`BLOB_ID_CONTEXT`]) over the plaintext length (8 bytes) ‖ the chunk hashes.
//!   A downloader fetches the outboard first (a 4 GiB file has 16,384 chunks: 512 KiB
//!   of hashes), checks it against the id, then checks each chunk against its hash
//!   before storing or decrypting it.
//!
//! The key, the id, the name, the size and the media type travel inside a sealed
//! message; a media node only ever sees the id, the outboard and sealed chunks.
//! Sealing and opening stream: memory is one chunk, never the file.

pub mod media;
mod store;
pub mod transfer;

pub use store::BlobStore;

use std::fmt;
use std::io::{self, Read, Write};

// ring's ChaCha20-Poly1305 is assembly, so it runs at full speed in every build
// profile (RustCrypto's generic code is compiled where it is used, unoptimised in
// debug builds) and about 1.6x faster than RustCrypto's here; the format is the
// same ChaCha20-Poly1305 either way (tested against RustCrypto below).
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroize;

/// Plaintext bytes per chunk (the last chunk may be shorter).
pub const CHUNK_SIZE: usize = 256 * 1024;
/// What sealing adds to each chunk: the Poly1305 tag.
pub const TAG_SIZE: usize = 16;
/// The largest file a blob may hold: 64 GiB, far above what is sent in practice, so
/// that lengths and chunk counts stay small and bounded on every platform.
pub const MAX_FILE_SIZE: u64 = 64 << 30;
/// Sealed chunks written between syncs that run beside the writing (16 MiB): an
/// interrupted fetch resumes close to where it stopped, and the sync that makes a
/// blob durable at the end finds little left. A fetch, sealing a file and taking a
/// push all use it.
pub(crate) const SYNC_EVERY: u64 = 64;
/// Associated data of every chunk, before the plaintext length.
pub const AAD_PREFIX: &[u8] = b"kith blob v1\0";
/// BLAKE3 derive-key context of chunk hashes.
pub const CHUNK_HASH_CONTEXT: &str = "kith 2026 blob chunk v1";
/// BLAKE3 derive-key context of blob ids.
pub const BLOB_ID_CONTEXT: &str = "kith 2026 blob id v1";

/// What went wrong with a blob. Nothing here panics on bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("the file is larger than {MAX_FILE_SIZE} bytes")]
    TooLarge,
    /// The outboard's hashes do not hash to the blob id, or their count does not fit
    /// the length.
    #[error("the chunk list does not match the blob id")]
    BadOutboard,
    /// A sealed chunk is not the one its hash names (corrupt, forged or misplaced).
    #[error("chunk {index} does not match its hash")]
    BadChunk {
        /// The chunk's index.
        index: u64,
    },
    /// A chunk matched its hash but did not decrypt: the key is not this blob's.
    #[error("chunk {index} does not open with this key")]
    WrongKey {
        /// The chunk's index.
        index: u64,
    },
    /// The input ended before the length said, or went on after it.
    #[error("the {0} has the wrong length")]
    WrongLength(&'static str),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A file's own encryption key: random, used for this one file only.
#[derive(Clone)]
pub struct BlobKey(pub [u8; 32]);

impl Drop for BlobKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl BlobKey {
    /// A fresh random key.
    pub fn generate() -> BlobKey {
        BlobKey(rand::random())
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKey(<secret>)")
    }
}

/// A blob's content address (see the module docs), shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// How many chunks a file of `len` plaintext bytes has (an empty file has one).
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// The plaintext length of chunk `index` of a file of `len` bytes.
fn plain_len(len: u64, index: u64) -> usize {
    let start = index * CHUNK_SIZE as u64;
    (len.saturating_sub(start)).min(CHUNK_SIZE as u64) as usize
}

/// The chunk hashes of a blob and the plaintext length they cover: everything needed
/// to check sealed chunks, and nothing that reveals the content.
#[derive(Clone, PartialEq, Eq)]
pub struct Outboard {
    len: u64,
    hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for Outboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outboard").field("len", &self.len).field("chunks", &self.hashes.len()).finish()
    }
}

impl Outboard {
    /// The outboard of a file of `len` bytes with these chunk hashes, checked against
    /// `id`: [`BlobError::BadOutboard`] unless the count fits the length and the
    /// hashes hash to `id`.
    pub fn new(id: &BlobId, len: u64, hashes: Vec<[u8; 32]>) -> Result<Outboard, BlobError> {
        if len > MAX_FILE_SIZE {
            return Err(BlobError::TooLarge);
        }
        let outboard = Outboard { len, hashes };
        if outboard.hashes.len() as u64 != chunk_count(len) || outboard.id() != *id {
            return Err(BlobError::BadOutboard);
        }
        Ok(outboard)
    }

    /// The outboard of a file of `len` bytes whose sealed chunks hash to `hashes`,
    /// whatever id that makes (what a media node computes from chunks pushed to it):
    /// [`BlobError::BadOutboard`] unless the count fits the length.
    pub fn hashed(len: u64, hashes: Vec<[u8; 32]>) -> Result<Outboard, BlobError> {
        if len > MAX_FILE_SIZE {
            return Err(BlobError::TooLarge);
        }
        if hashes.len() as u64 != chunk_count(len) {
            return Err(BlobError::BadOutboard);
        }
        Ok(Outboard { len, hashes })
    }

    /// The blob id these hashes make.
    pub fn id(&self) -> BlobId {
        let mut hasher = blake3::Hasher::new_derive_key(BLOB_ID_CONTEXT);
        hasher.update(&self.len.to_be_bytes());
        for hash in &self.hashes {
            hasher.update(hash);
        }
        BlobId(*hasher.finalize().as_bytes())
    }

    /// The file's plaintext length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk hashes, in order.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    /// How many chunks the blob has.
    pub fn chunks(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The size of sealed chunk `index`, or `None` past the end.
    pub fn sealed_len(&self, index: u64) -> Option<usize> {
        (index < self.chunks()).then(|| sealed_chunk_len(self.len, index))
    }

    /// The total size of the sealed chunks (what a media node stores).
    pub fn sealed_size(&self) -> u64 {
        sealed_size_of(self.len)
    }

    /// Checks that `sealed` is chunk `index` of this blob ([`BlobError::BadChunk`]
    /// otherwise, also for an index past the end or a chunk of the wrong size).
    pub fn check(&self, index: u64, sealed: &[u8]) -> Result<(), BlobError> {
        match self.hashes.get(index as usize) {
            Some(hash) if self.sealed_len(index) == Some(sealed.len()) && chunk_hash(index, sealed) == *hash => Ok(()),
            _ => Err(BlobError::BadChunk { index }),
        }
    }
}

/// The sealed size of a file of `len` plaintext bytes: its length plus a tag per
/// chunk (what a media node stores).
pub fn sealed_size_of(len: u64) -> u64 {
    len + chunk_count(len) * TAG_SIZE as u64
}

/// The plaintext length of a blob whose sealed chunks take `sealed_size` bytes in
/// all ([`sealed_size_of`] the other way), or `None` if no blob has that sealed size (or it is above the limit).
pub fn plain_size_of(sealed_size: u64) -> Option<u64> {
    let chunks = sealed_size.div_ceil((CHUNK_SIZE + TAG_SIZE) as u64).max(1);
    let len = sealed_size.checked_sub(chunks * TAG_SIZE as u64)?;
    (len <= MAX_FILE_SIZE && chunk_count(len) == chunks).then_some(len)
}

/// The size of sealed chunk `index` of a file of `len` plaintext bytes (`index`
/// below [`chunk_count`]).
pub fn sealed_chunk_len(len: u64, index: u64) -> usize {
    plain_len(len, index) + TAG_SIZE
}

/// The hash of sealed chunk `index` (see the module docs).
pub fn chunk_hash(index: u64, sealed: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(CHUNK_HASH_CONTEXT);
    hasher.update(&index.to_be_bytes());
    hasher.update(sealed);
    *hasher.finalize().as_bytes()
}

/// The nonce of chunk `index`: the index, then the last-chunk flag.
fn nonce(index: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_be_bytes());
    nonce[8..].copy_from_slice(&u32::from(last).to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// The associated data of every chunk of a file of `len` bytes.
fn aad(len: u64) -> Vec<u8> {
    [AAD_PREFIX, &len.to_be_bytes()].concat()
}

/// Reads exactly `buf.len()` bytes, or says which input was short.
fn read_exact(reader: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), BlobError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BlobError::WrongLength(what),
        _ => BlobError::Io(e),
    })
}

/// Seals the `len` bytes `plaintext` yields under `key`, writing the sealed chunks to
/// `sealed` in order, and returns the outboard (its [`Outboard::id`] is the blob's
/// id). Holds one chunk in memory. [`BlobError::WrongLength`] if `plaintext` yields
/// fewer or more than `len` bytes (a file that changed while it was read).
pub fn seal(key: &BlobKey, len: u64, plaintext: &mut impl Read, sealed: &mut impl Write) -> Result<Outboard, BlobError> {
    seal_each(key, len, plaintext, |_, chunk| Ok(sealed.write_all(&chunk)?))
}

/// [`seal`], handing each sealed chunk to `each` (its index, its bytes) in order
/// instead of writing it: one pass over the file can write the sealed blob and
/// stream it to a media node at once. Holds one chunk in memory besides what `each`
/// keeps. An error from `each` stops the sealing and is returned.
pub fn seal_each(
    key: &BlobKey,
    len: u64,
    plaintext: &mut impl Read,
    mut each: impl FnMut(u64, Vec<u8>) -> Result<(), BlobError>,
) -> Result<Outboard, BlobError> {
    if len > MAX_FILE_SIZE {
        return Err(BlobError::TooLarge);
    }
    let cipher = aead_key(key)?;
    let aad = aad(len);
    let count = chunk_count(len);
    let mut hashes = Vec::with_capacity(count as usize);
    let mut chunk = vec![0u8; CHUNK_SIZE];
    for index in 0..count {
        let plain = &mut chunk[..plain_len(len, index)];
        read_exact(plaintext, plain, "file")?;
        // A file that grew while it was read is refused before its last chunk goes
        // anywhere (a media node holds a push once every chunk is in).
        if index + 1 == count && plaintext.read(&mut [0u8; 1])? != 0 {
            chunk.zeroize();
            return Err(BlobError::WrongLength("file"));
        }
        let out = seal_with(&cipher, &aad, count, index, plain)?;
        hashes.push(chunk_hash(index, &out));
        each(index, out)?;
    }
    chunk.zeroize();
    Ok(Outboard { len, hashes })
}

/// The file's key as an AEAD key.
fn aead_key(key: &BlobKey) -> Result<LessSafeKey, BlobError> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, &key.0).map_err(|_| io::Error::other("the AEAD refused a 32-byte key"))?;
    Ok(LessSafeKey::new(key))
}

/// Seals plaintext chunk `index` of a file of `count` chunks.
fn seal_with(cipher: &LessSafeKey, aad: &[u8], count: u64, index: u64, plain: &[u8]) -> Result<Vec<u8>, BlobError> {
    let last = index + 1 == count;
    let mut sealed = Vec::with_capacity(plain.len() + TAG_SIZE);
    sealed.extend_from_slice(plain);
    let tag = cipher
        .seal_in_place_separate_tag(nonce(index, last), Aad::from(aad), &mut sealed)
        .map_err(|_| io::Error::other("chunk encryption failed"))?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(sealed)
}

/// Seals plaintext chunk `index` of the blob `outboard` describes again and checks
/// the result against its hash: sealing is deterministic (the nonce is the index),
/// so a node that keeps a received file as plaintext can serve the very chunks it
/// was sent, and a plaintext changed since (an edited file) is caught
/// ([`BlobError::BadChunk`]).
pub fn reseal_chunk(key: &BlobKey, outboard: &Outboard, index: u64, plain: &[u8]) -> Result<Vec<u8>, BlobError> {
    if outboard.sealed_len(index) != Some(plain.len() + TAG_SIZE) {
        return Err(BlobError::BadChunk { index });
    }
    let sealed = seal_with(&aead_key(key)?, &aad(outboard.len), outboard.chunks(), index, plain)?;
    outboard.check(index, &sealed)?;
    Ok(sealed)
}

/// The plaintext length of chunk `index` of the blob `outboard` describes (0 past
/// the end).
pub fn plain_chunk_len(outboard: &Outboard, index: u64) -> usize {
    plain_len(outboard.len, index)
}

/// Decrypts sealed chunk `index` of the blob `outboard` describes, after checking it
/// against its hash.
pub fn open_chunk(key: &BlobKey, outboard: &Outboard, index: u64, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let mut plain = vec![0u8; sealed.len().saturating_sub(TAG_SIZE)];
    open_chunk_into(key, outboard, index, sealed, &mut plain)?;
    Ok(plain)
}

/// [`open_chunk`] into the start of `out` (at least the plaintext's length, which it
/// returns), so a caller can reuse one buffer, e.g. one aligned for direct writes.
/// What `out` holds after a failure is unspecified.
pub fn open_chunk_into(key: &BlobKey, outboard: &Outboard, index: u64, sealed: &[u8], out: &mut [u8]) -> Result<usize, BlobError> {
    outboard.check(index, sealed)?;
    // Checked: `sealed` is exactly this chunk's sealed length, tag included.
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_SIZE);
    let plain = out.get_mut(..ciphertext.len()).ok_or(BlobError::WrongLength("chunk buffer"))?;
    plain.copy_from_slice(ciphertext);
    let tag = Tag::try_from(tag).map_err(|_| BlobError::BadChunk { index })?;
    let last = index + 1 == outboard.chunks();
    aead_key(key)?
        .open_in_place_separate_tag(nonce(index, last), Aad::from(aad(outboard.len)), tag, plain, 0..)
        .map_err(|_| BlobError::WrongKey { index })?;
    Ok(ciphertext.len())
}

/// Checks and decrypts the whole blob from `sealed` (its chunks in order) into
/// `plaintext`, one chunk in memory at a time. Fails at the first chunk that does
/// not match its hash or does not open; what was written before stays written, so
/// callers write to a temporary file and keep it only on success.
pub fn open(key: &BlobKey, outboard: &Outboard, sealed: &mut impl Read, plaintext: &mut impl Write) -> Result<(), BlobError> {
    let mut chunk = vec![0u8; CHUNK_SIZE + TAG_SIZE];
    for index in 0..outboard.chunks() {
        let size = outboard.sealed_len(index).unwrap_or(TAG_SIZE);
        let buf = &mut chunk[..size];
        read_exact(sealed, buf, "sealed blob")?;
        let mut plain = open_chunk(key, outboard, index, buf)?;
        plaintext.write_all(&plain)?;
        plain.zeroize();
    }
    if sealed.read(&mut [0u8; 1])? != 0 {
        return Err(BlobError::WrongLength("sealed blob"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Deterministic "file" bytes of `len`.
    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sealed_file(len: usize) -> (BlobKey, Outboard, Vec<u8>, Vec<u8>) {
        let key = BlobKey::generate();
        let plain = file(len);
        let mut sealed = Vec::new();
        let outboard = seal(&key, len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
        (key, outboard, plain, sealed)
    }

    #[test]
    fn files_of_every_boundary_size_round_trip() {
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5] {
            let (key, outboard, plain, sealed) = sealed_file(len);
            assert_eq!(outboard.chunks(), chunk_count(len as u64));
            assert_eq!(sealed.len() as u64, outboard.sealed_size(), "{len}");
            // The id alone brings the outboard back.
            let checked = Outboard::new(&outboard.id(), len as u64, outboard.hashes().to_vec()).unwrap();
            let mut out = Vec::new();
            open(&key, &checked, &mut sealed.as_slice(), &mut out).unwrap();
            assert_eq!(out, plain, "{len}");
        }
    }

    #[test]
    fn a_sealed_size_gives_back_its_plaintext_length_and_sizes_no_blob_has_are_refused() {
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5] {
            let (_, outboard, _, sealed) = sealed_file(len);
            assert_eq!(plain_size_of(outboard.sealed_size()), Some(len as u64), "{len}");
            // Hashing the pushed chunks again gives the same outboard, so the same id.
            let hashes = sealed
                .chunks(CHUNK_SIZE + TAG_SIZE)
                .enumerate()
                .map(|(i, chunk)| chunk_hash(i as u64, chunk))
                .collect();
            assert_eq!(Outboard::hashed(len as u64, hashes).unwrap().id(), outboard.id());
        }
        // Below one tag, or a last chunk shorter than its tag: no blob is that size.
        for size in [0, 15, (CHUNK_SIZE + TAG_SIZE) as u64 + 3, MAX_FILE_SIZE * 2] {
            assert_eq!(plain_size_of(size), None, "{size}");
        }
        assert!(matches!(Outboard::hashed(CHUNK_SIZE as u64 + 1, vec![[0; 32]]), Err(BlobError::BadOutboard)));
    }

    #[test]
    fn the_same_file_under_two_keys_has_two_ids_and_no_plaintext_shows() {
        let (_, a, plain, sealed) = sealed_file(2 * CHUNK_SIZE);
        let (_, b, _, _) = sealed_file(2 * CHUNK_SIZE);
        assert_ne!(a.id(), b.id());
        assert!(!sealed.windows(64).any(|w| w == &plain[..64]), "sealed chunks carry no plaintext");
    }

    #[test]
    fn a_changed_chunk_is_refused_before_decryption() {
        let (key, outboard, _, mut sealed) = sealed_file(2 * CHUNK_SIZE + 10);
        sealed[CHUNK_SIZE + TAG_SIZE + 3] ^= 1;
        let mut out = Vec::new();
        let error = open(&key, &outboard, &mut sealed.as_slice(), &mut out).unwrap_err();
        assert!(matches!(error, BlobError::BadChunk { index: 1 }), "{error}");
        assert_eq!(out.len(), CHUNK_SIZE, "only the good first chunk was written");
    }

    #[test]
    fn chunks_in_the_wrong_place_or_of_the_wrong_size_are_refused() {
        let (key, outboard, _, sealed) = sealed_file(2 * CHUNK_SIZE);
        let first = &sealed[..CHUNK_SIZE + TAG_SIZE];
        let second = &sealed[CHUNK_SIZE + TAG_SIZE..];
        assert!(open_chunk(&key, &outboard, 1, second).is_ok());
        assert!(matches!(outboard.check(1, first), Err(BlobError::BadChunk { index: 1 })));
        assert!(matches!(outboard.check(0, second), Err(BlobError::BadChunk { index: 0 })));
        assert!(matches!(outboard.check(2, second), Err(BlobError::BadChunk { index: 2 })));
        assert!(matches!(outboard.check(1, &second[1..]), Err(BlobError::BadChunk { index: 1 })));
    }

    #[test]
    fn a_forged_outboard_or_length_does_not_match_the_id() {
        let (_, outboard, _, _) = sealed_file(CHUNK_SIZE + 1);
        let id = outboard.id();
        let mut hashes = outboard.hashes().to_vec();
        hashes[1][0] ^= 1;
        assert!(matches!(Outboard::new(&id, outboard.len(), hashes), Err(BlobError::BadOutboard)));
        // A shorter length with the same chunk count still changes the id.
        assert!(matches!(Outboard::new(&id, outboard.len() - 1, outboard.hashes().to_vec()), Err(BlobError::BadOutboard)));
        // One chunk dropped: the count no longer fits the length.
        assert!(matches!(Outboard::new(&id, outboard.len(), outboard.hashes()[..1].to_vec()), Err(BlobError::BadOutboard)));
        assert!(matches!(Outboard::new(&id, MAX_FILE_SIZE + 1, vec![]), Err(BlobError::TooLarge)));
    }

    #[test]
    fn a_truncated_or_extended_stream_and_a_wrong_key_are_refused() {
        let (key, outboard, _, sealed) = sealed_file(CHUNK_SIZE + 100);
        let mut sink = Vec::new();
        let short = &sealed[..sealed.len() - 1];
        assert!(matches!(open(&key, &outboard, &mut &short[..], &mut sink), Err(BlobError::WrongLength(_))));
        let long = [sealed.as_slice(), b"x"].concat();
        assert!(matches!(open(&key, &outboard, &mut long.as_slice(), &mut Vec::new()), Err(BlobError::WrongLength(_))));
        let wrong = BlobKey::generate();
        assert!(matches!(open(&wrong, &outboard, &mut sealed.as_slice(), &mut Vec::new()), Err(BlobError::WrongKey { index: 0 })));
    }

    #[test]
    fn a_file_that_changes_while_it_is_sealed_is_refused() {
        let plain = file(1000);
        let key = BlobKey::generate();
        assert!(matches!(seal(&key, 1001, &mut plain.as_slice(), &mut Vec::new()), Err(BlobError::WrongLength("file"))));
        assert!(matches!(seal(&key, 999, &mut plain.as_slice(), &mut Vec::new()), Err(BlobError::WrongLength("file"))));
        assert!(matches!(seal(&key, MAX_FILE_SIZE + 1, &mut plain.as_slice(), &mut Vec::new()), Err(BlobError::TooLarge)));
        // A file that grew is refused before its last chunk is handed on (to a
        // media node that would hold a push once every chunk is in).
        let grown = file(2 * CHUNK_SIZE + 1);
        let mut handed = Vec::new();
        let result = seal_each(&key, 2 * CHUNK_SIZE as u64, &mut grown.as_slice(), |index, _| {
            handed.push(index);
            Ok(())
        });
        assert!(matches!(result, Err(BlobError::WrongLength("file"))));
        assert_eq!(handed, vec![0], "only the chunks before the last");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Whatever its size, a blob round-trips, and one flipped bit anywhere in
        /// its sealed stream is caught as a bad chunk before anything is decrypted.
        #[test]
        fn any_flipped_bit_is_caught(len in 0usize..(2 * CHUNK_SIZE + 50), at in proptest::prelude::any::<proptest::sample::Index>(), bit in 0u8..8) {
            let (key, outboard, plain, mut sealed) = sealed_file(len);
            let mut out = Vec::new();
            open(&key, &outboard, &mut sealed.as_slice(), &mut out).unwrap();
            proptest::prop_assert_eq!(&out, &plain);
            let at = at.index(sealed.len());
            sealed[at] ^= 1 << bit;
            let index = (at / (CHUNK_SIZE + TAG_SIZE)) as u64;
            let result = open(&key, &outboard, &mut sealed.as_slice(), &mut Vec::new());
            let caught = matches!(result, Err(BlobError::BadChunk { index: i }) if i == index);
            proptest::prop_assert!(caught, "flipped bit {} of byte {}: {:?}", bit, at, result);
        }
    }

    #[test]
    fn keys_do_not_show_in_debug_output() {
        let key = BlobKey([7; 32]);
        assert_eq!(format!("{key:?}"), "BlobKey(<secret>)");
        let id = BlobId([0xab; 32]);
        assert_eq!(id.to_string(), "ab".repeat(32));
    }

    /// The chunks are plain ChaCha20-Poly1305 under the documented nonce and
    /// associated data: RustCrypto's implementation (which sealed blobs before ring
    /// did) gives the same bytes, so blobs sealed by either open with the other.
    #[test]
    fn chunks_are_the_chacha20_poly1305_the_format_describes() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let key = BlobKey::generate();
        let len = 2 * CHUNK_SIZE + 5;
        let plain = file(len);
        let mut sealed = Vec::new();
        let outboard = seal(&key, len as u64, &mut plain.as_slice(), &mut sealed).unwrap();
        let reference = chacha20poly1305::ChaCha20Poly1305::new(&key.0.into());
        let mut expected = Vec::new();
        for (index, chunk) in plain.chunks(CHUNK_SIZE).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(index as u64).to_be_bytes());
            nonce[8..].copy_from_slice(&u32::from(index == 2).to_be_bytes());
            let payload = Payload { msg: chunk, aad: &aad(len as u64) };
            expected.extend(reference.encrypt(&chacha20poly1305::Nonce::from(nonce), payload).unwrap());
        }
        assert_eq!(sealed, expected);
        let mut out = Vec::new();
        open(&key, &outboard, &mut expected.as_slice(), &mut out).unwrap();
        assert_eq!(out, plain);
    }
}
