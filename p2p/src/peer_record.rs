//! Signed, expiring peer records, published in the DHT under [`dht_key`].
//!
//! A [`PeerRecord`] tells others how to reach a user: the E2E key and its binding,
//! direct addresses, pinned relays, a display name. The owner signs it with the
//! identity key, so anyone can check it against the peer id alone; DHT nodes and relays
//! that store it cannot alter it.
//!
//! Wire format: a CBOR `SignedPeerRecord { v: 1, record: bytes, sig: 64 bytes }` where
//! `record` is the CBOR encoding of the record and `sig` signs
//! [`RECORD_SIGNATURE_CONTEXT`] ‖ `record`. Signing the *bytes* (not a re-encoding)
//! means verification never depends on canonical encoding; the context keeps the
//! signature from being valid as any other kith signature (E2E binding, challenges)
//! and pins the format version.
//!
//! Freshness has two parts: `expires_at_secs` bounds how long a record is usable at
//! all (checked by [`PeerRecord::verify`]), and `seq` orders the records of one peer
//! so an old record replayed by a DHT node cannot replace a newer one
//! ([`RecordCache::accept`]).

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::{
    identity::{self, Binding, Identity, IdentityError, PublicIdentity},
    wire::{self, WireError},
};

/// Largest encoded signed record accepted or produced, in bytes.
///
/// DHT records should stay small (Kademlia stores and replicates them on many nodes);
/// 8 KiB fits dozens of addresses and is cheap to verify.
pub const MAX_RECORD_LEN: usize = 8 * 1024;

/// Largest number of entries in each of `addrs` and `relays`, here and wherever a
/// peer's addresses or relays travel (contact requests, group hints, group relays).
///
/// Bounds the work of dialing a record's addresses; a real node has a handful.
/// Enforced while decoding.
pub const MAX_ADDRS: usize = 32;

/// Largest display name in bytes (UTF-8), here and wherever a display name travels.
///
/// A name may have [`crate::config::MAX_DISPLAY_NAME_CHARS`] characters of up to 4
/// bytes each, so any name a node accepts for itself fits (64 CJK characters are
/// 192 bytes). Enforced while decoding.
pub const MAX_DISPLAY_NAME_BYTES: usize = 4 * crate::config::MAX_DISPLAY_NAME_CHARS;

/// Domain-separation prefix of the record signature.
pub const RECORD_SIGNATURE_CONTEXT: &[u8] = b"kith/peer-record/v1";

/// Prefix of the DHT key of a peer record.
const DHT_KEY_PREFIX: &[u8] = b"/kith/peer/";

/// The only wire version this build reads and writes.
const VERSION: u32 = 1;

/// Why a peer record was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The encoded record is larger than [`MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The bytes are not a valid signed record, or a field is out of bounds.
    #[error("malformed peer record: {0}")]
    Malformed(String),
    /// The record uses a wire version this build does not understand.
    #[error("unsupported peer record version {0}")]
    UnsupportedVersion(u32),
    /// The signature is not by the record's peer id.
    #[error("peer record signature does not verify")]
    BadSignature,
    /// The E2E key is not bound to the record's peer id.
    #[error("E2E key binding does not verify")]
    BadBinding,
    /// The record's expiry time has passed.
    #[error("peer record expired")]
    Expired,
    /// The record is for another peer than expected (or than the signing identity).
    #[error("peer record is for another peer")]
    WrongPeer,
    /// An equal or newer record of the same peer is already known.
    #[error("stale peer record: have seq {have}, got {got}")]
    Stale {
        /// Sequence number already accepted.
        have: u64,
        /// Sequence number of the rejected record.
        got: u64,
    },
}

impl From<WireError> for RecordError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooLarge { len, max } => RecordError::TooLarge { len, max },
            WireError::UnsupportedVersion(v) => RecordError::UnsupportedVersion(v),
            other => RecordError::Malformed(other.to_string()),
        }
    }
}

/// How to reach a peer, as its owner published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// The user the record describes; must be the signer.
    pub peer_id: PeerId,
    /// X25519 key for end-to-end encryption to this peer.
    pub e2e_public: [u8; 32],
    /// `peer_id`'s binding of `e2e_public` (see [`PublicIdentity::verify`]).
    pub binding: Binding,
    /// Directly dialable addresses (at most [`MAX_ADDRS`]).
    pub addrs: Vec<Multiaddr>,
    /// Pinned relays: circuit addresses and mailboxes (at most [`MAX_ADDRS`]).
    pub relays: Vec<Multiaddr>,
    /// Self-chosen display name (at most [`MAX_DISPLAY_NAME_BYTES`]); untrusted, for
    /// display only.
    pub display_name: Option<String>,
    /// Increases with every record the peer publishes; higher replaces lower.
    pub seq: u64,
    /// Unix time in seconds after which the record must not be used.
    pub expires_at_secs: u64,
}

/// The DHT key under which `peer_id`'s record is stored: `/kith/peer/` ‖ peer id bytes.
pub fn dht_key(peer_id: &PeerId) -> Vec<u8> {
    let id = peer_id.to_bytes();
    let mut key = Vec::with_capacity(DHT_KEY_PREFIX.len() + id.len());
    key.extend_from_slice(DHT_KEY_PREFIX);
    key.extend_from_slice(&id);
    key
}

/// The outer, signed container.
#[derive(Serialize, Deserialize)]
struct SignedPeerRecord {
    v: u32,
    #[serde(with = "wire::bytes")]
    record: Vec<u8>,
    #[serde(with = "wire::byte_array")]
    sig: [u8; 64],
}

/// The record as encoded on the wire: libp2p types as their canonical byte forms, so
/// the encoding does not depend on libp2p's optional serde support.
#[derive(Serialize, Deserialize)]
struct RecordBody {
    #[serde(with = "wire::bytes")]
    peer_id: Vec<u8>,
    #[serde(with = "wire::byte_array")]
    e2e_public: [u8; 32],
    #[serde(with = "wire::byte_array")]
    binding: [u8; 64],
    #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_ADDRS>::bytes_seq")]
    addrs: Vec<Vec<u8>>,
    #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_ADDRS>::bytes_seq")]
    relays: Vec<Vec<u8>>,
    #[serde(default, deserialize_with = "wire::Max::<MAX_DISPLAY_NAME_BYTES>::opt_text")]
    display_name: Option<String>,
    seq: u64,
    expires_at_secs: u64,
    /// The binding's key version, expiry and stamp; absent for an unstamped binding
    /// (nodes that predate them ignore them and check the unversioned signature).
    #[serde(default, rename = "kv", skip_serializing_if = "wire::is_zero")]
    key_version: u64,
    #[serde(default, rename = "kx", skip_serializing_if = "wire::is_zero")]
    key_expires_ms: u64,
    #[serde(default, rename = "ks", skip_serializing_if = "Vec::is_empty", with = "wire::bytes")]
    key_stamp: Vec<u8>,
}

impl RecordBody {
    /// The wire body of `r`.
    fn of(r: &PeerRecord) -> RecordBody {
        RecordBody {
            peer_id: r.peer_id.to_bytes(),
            e2e_public: r.e2e_public,
            binding: r.binding.signature,
            addrs: r.addrs.iter().map(|a| a.to_vec()).collect(),
            relays: r.relays.iter().map(|a| a.to_vec()).collect(),
            display_name: r.display_name.clone(),
            seq: r.seq,
            expires_at_secs: r.expires_at_secs,
            key_version: r.binding.version,
            key_expires_ms: r.binding.expires_ms,
            key_stamp: r.binding.stamp_bytes(),
        }
    }
}

impl PeerRecord {
    /// Encodes and signs the record with `identity`.
    ///
    /// Checks what [`PeerRecord::verify`] would check (except expiry, which depends on
    /// the reader's clock), so a node never publishes a record others reject.
    ///
    /// # Errors
    /// [`RecordError::WrongPeer`] if `peer_id` is not `identity`'s,
    /// [`RecordError::BadBinding`] if the binding does not verify,
    /// [`RecordError::Malformed`] if a list or the name is over its limit,
    /// [`RecordError::TooLarge`] if the result exceeds [`MAX_RECORD_LEN`].
    pub fn sign(&self, identity: &Identity) -> Result<Vec<u8>, RecordError> {
        if self.peer_id != identity.peer_id() {
            return Err(RecordError::WrongPeer);
        }
        self.check_bounds()?;
        self.check_binding()?;
        let record = wire::encode(&RecordBody::of(self))?;
        let sig = identity.sign(&signed_message(&record));
        let out = wire::encode(&SignedPeerRecord {
            v: VERSION,
            record,
            sig,
        })?;
        if out.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge {
                len: out.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(out)
    }

    /// Decodes and verifies a signed record.
    ///
    /// Checks, in order: size, version and shape, the expected peer (if given), the
    /// signature by the record's own peer id, the E2E key binding, and expiry against
    /// `now_secs` (Unix seconds; passed in so callers and tests control the clock).
    ///
    /// # Errors
    /// One [`RecordError`] variant per failed check.
    pub fn verify(
        bytes: &[u8],
        expected: Option<&PeerId>,
        now_secs: u64,
    ) -> Result<PeerRecord, RecordError> {
        let signed: SignedPeerRecord =
            wire::decode_versioned(bytes, MAX_RECORD_LEN, VERSION, |s: &SignedPeerRecord| s.v)?;
        // The inner bytes are bounded by the outer length check.
        let body: RecordBody = wire::decode(&signed.record, MAX_RECORD_LEN)?;
        let peer_id = PeerId::from_bytes(&body.peer_id)
            .map_err(|e| RecordError::Malformed(format!("peer id: {e}")))?;
        // Cheap comparison before the signature check: a DHT node answering for the
        // wrong key is common enough (misbehaving or buggy) to reject early.
        if expected.is_some_and(|want| *want != peer_id) {
            return Err(RecordError::WrongPeer);
        }
        identity::verify_signature(&peer_id, &signed_message(&signed.record), &signed.sig)
            .map_err(|e| match e {
                IdentityError::BadSignature => RecordError::BadSignature,
                other => RecordError::Malformed(other.to_string()),
            })?;
        let record = PeerRecord {
            peer_id,
            e2e_public: body.e2e_public,
            binding: Binding::from_parts(body.binding, body.key_version, body.key_expires_ms, &body.key_stamp),
            addrs: parse_addrs(body.addrs, "addrs")?,
            relays: parse_addrs(body.relays, "relays")?,
            display_name: body.display_name,
            seq: body.seq,
            expires_at_secs: body.expires_at_secs,
        };
        record.check_bounds()?;
        record.check_binding()?;
        if now_secs >= record.expires_at_secs {
            return Err(RecordError::Expired);
        }
        Ok(record)
    }

    /// The identity part of the record (peer id, E2E key, binding).
    pub fn public_identity(&self) -> PublicIdentity {
        PublicIdentity {
            peer_id: self.peer_id,
            e2e_public: self.e2e_public,
            binding: self.binding,
        }
    }

    fn check_binding(&self) -> Result<(), RecordError> {
        self.public_identity()
            .verify()
            .map_err(|_| RecordError::BadBinding)
    }

    fn check_bounds(&self) -> Result<(), RecordError> {
        if self.addrs.len() > MAX_ADDRS || self.relays.len() > MAX_ADDRS {
            return Err(RecordError::Malformed(format!(
                "more than {MAX_ADDRS} addresses"
            )));
        }
        if self
            .display_name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_DISPLAY_NAME_BYTES)
        {
            return Err(RecordError::Malformed(format!(
                "display name longer than {MAX_DISPLAY_NAME_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

fn signed_message(record: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RECORD_SIGNATURE_CONTEXT.len() + record.len());
    msg.extend_from_slice(RECORD_SIGNATURE_CONTEXT);
    msg.extend_from_slice(record);
    msg
}

fn parse_addrs(raw: Vec<Vec<u8>>, field: &str) -> Result<Vec<Multiaddr>, RecordError> {
    if raw.len() > MAX_ADDRS {
        return Err(RecordError::Malformed(format!(
            "{field}: more than {MAX_ADDRS} addresses"
        )));
    }
    raw.into_iter()
        .map(|bytes| {
            Multiaddr::try_from(bytes).map_err(|e| RecordError::Malformed(format!("{field}: {e}")))
        })
        .collect()
}

/// Remembers the newest verified record per peer, so replays of older ones are refused.
///
/// Bounded: past `capacity` peers, the peer whose record was stored longest ago is
/// forgotten. Forgetting a peer also forgets its sequence high-water mark, so an old
/// (but unexpired, validly signed) record of that peer would be accepted again; records
/// expire, which bounds that window. Callers should pass only records that went through
/// [`PeerRecord::verify`].
#[derive(Debug)]
pub struct RecordCache {
    capacity: usize,
    records: HashMap<PeerId, PeerRecord>,
    /// Peers in the order their current entry was first stored (oldest first); each
    /// peer appears exactly once.
    order: VecDeque<PeerId>,
}

impl RecordCache {
    /// An empty cache holding at most `capacity` peers (at least one).
    pub fn new(capacity: usize) -> RecordCache {
        let capacity = capacity.max(1);
        RecordCache {
            capacity,
            records: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Offers a verified record.
    ///
    /// Returns `Ok(true)` if it is newer than what was known (and is now stored),
    /// `Ok(false)` if the identical record is already stored.
    ///
    /// # Errors
    /// [`RecordError::Stale`] if a record with a higher sequence number is stored, or one
    /// with the same sequence number but different content (a peer must bump `seq` on
    /// every change; two contents under one `seq` are at best a bug).
    pub fn accept(&mut self, record: PeerRecord) -> Result<bool, RecordError> {
        if let Some(have) = self.records.get_mut(&record.peer_id) {
            if record.seq > have.seq {
                *have = record;
                return Ok(true);
            }
            if record.seq == have.seq && record == *have {
                return Ok(false);
            }
            return Err(RecordError::Stale {
                have: have.seq,
                got: record.seq,
            });
        }
        while self.records.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.records.remove(&oldest);
        }
        self.order.push_back(record.peer_id);
        self.records.insert(record.peer_id, record);
        Ok(true)
    }

    /// The newest accepted record of `peer_id`, if any. It may have expired since.
    pub fn get(&self, peer_id: &PeerId) -> Option<&PeerRecord> {
        self.records.get(peer_id)
    }

    /// Number of peers with a stored record.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn record_of(identity: &Identity, seq: u64) -> PeerRecord {
        PeerRecord {
            peer_id: identity.peer_id(),
            e2e_public: identity.e2e_public(),
            binding: identity.binding(),
            addrs: vec![
                "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                "/ip6/::1/udp/4001/quic-v1".parse().unwrap(),
            ],
            relays: vec!["/dns4/relay.example/tcp/443".parse().unwrap()],
            display_name: Some("Ёжик 🦔".into()),
            seq,
            expires_at_secs: NOW + 3600,
        }
    }

    /// Signs an arbitrary body with `signer`, bypassing `PeerRecord::sign`'s checks.
    fn sign_raw(signer: &Identity, body: &RecordBody, v: u32) -> Vec<u8> {
        let record = wire::encode(body).unwrap();
        let sig = signer.sign(&signed_message(&record));
        wire::encode(&SignedPeerRecord { v, record, sig }).unwrap()
    }

    #[test]
    fn round_trip() {
        let id = Identity::generate();
        let rec = record_of(&id, 7);
        let bytes = rec.sign(&id).unwrap();
        assert!(bytes.len() <= MAX_RECORD_LEN);
        assert_eq!(
            PeerRecord::verify(&bytes, Some(&id.peer_id()), NOW).unwrap(),
            rec
        );
        assert_eq!(PeerRecord::verify(&bytes, None, NOW).unwrap(), rec);
        let mut bare = rec.clone();
        bare.addrs.clear();
        bare.relays.clear();
        bare.display_name = None;
        let bytes = bare.sign(&id).unwrap();
        assert_eq!(PeerRecord::verify(&bytes, None, NOW).unwrap(), bare);
    }

    #[test]
    fn a_versioned_binding_round_trips_and_an_unversioned_record_encodes_as_before() {
        let id = Identity::generate().with_e2e([6; 32], 1_700_000_000_000, 1_800_000_000_000);
        let rec = record_of(&id, 3);
        let back = PeerRecord::verify(&rec.sign(&id).unwrap(), None, NOW).unwrap();
        assert_eq!(back.binding, id.binding());
        // A record without a stamped binding has no `kv`/`kx`/`ks` keys at all.
        let old = Identity::generate();
        let body = wire::encode(&RecordBody::of(&record_of(&old, 1))).unwrap();
        assert!(!body.windows(2).any(|w| w == b"kv"));
    }

    #[test]
    fn dht_key_is_prefixed_peer_id() {
        let id = Identity::generate();
        let key = dht_key(&id.peer_id());
        assert!(key.starts_with(b"/kith/peer/"));
        assert_eq!(
            &key[DHT_KEY_PREFIX.len()..],
            id.peer_id().to_bytes().as_slice()
        );
    }

    #[test]
    fn too_large() {
        let id = Identity::generate();
        let mut huge = record_of(&id, 1).sign(&id).unwrap();
        huge.resize(MAX_RECORD_LEN + 1, 0);
        assert!(matches!(
            PeerRecord::verify(&huge, None, NOW),
            Err(RecordError::TooLarge { .. })
        ));

        // Many long addresses: within MAX_ADDRS but over the byte limit when signing.
        let mut rec = record_of(&id, 1);
        let long: Multiaddr = format!("/dns4/{}/tcp/1", "a".repeat(250)).parse().unwrap();
        rec.addrs = vec![long; MAX_ADDRS];
        assert!(matches!(rec.sign(&id), Err(RecordError::TooLarge { .. })));
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            PeerRecord::verify(b"\x00garbage", None, NOW),
            Err(RecordError::Malformed(_))
        ));
        let id = Identity::generate();
        let rec = record_of(&id, 1);

        let mut body = RecordBody::of(&rec);
        body.addrs.push(vec![0xff, 0xff, 0xff]);
        assert!(matches!(
            PeerRecord::verify(&sign_raw(&id, &body, 1), None, NOW),
            Err(RecordError::Malformed(_))
        ));

        let mut body = RecordBody::of(&rec);
        body.peer_id = vec![1, 2, 3];
        assert!(matches!(
            PeerRecord::verify(&sign_raw(&id, &body, 1), None, NOW),
            Err(RecordError::Malformed(_))
        ));

        let mut body = RecordBody::of(&rec);
        body.display_name = Some("x".repeat(MAX_DISPLAY_NAME_BYTES + 1));
        assert!(matches!(
            PeerRecord::verify(&sign_raw(&id, &body, 1), None, NOW),
            Err(RecordError::Malformed(_))
        ));

        let mut body = RecordBody::of(&rec);
        body.relays = vec![rec.relays[0].to_vec(); MAX_ADDRS + 1];
        assert!(matches!(
            PeerRecord::verify(&sign_raw(&id, &body, 1), None, NOW),
            Err(RecordError::Malformed(_))
        ));

        let mut long = rec.clone();
        long.display_name = Some("x".repeat(MAX_DISPLAY_NAME_BYTES + 1));
        assert!(matches!(long.sign(&id), Err(RecordError::Malformed(_))));
    }

    #[test]
    fn limits_at_and_past_while_decoding() {
        let id = Identity::generate();
        let rec = record_of(&id, 1);
        let addr = rec.addrs[0].to_vec();
        let mut at = RecordBody::of(&rec);
        at.addrs = vec![addr.clone(); MAX_ADDRS];
        at.relays = vec![addr.clone(); MAX_ADDRS];
        at.display_name = Some("x".repeat(MAX_DISPLAY_NAME_BYTES));
        let got = PeerRecord::verify(&sign_raw(&id, &at, 1), None, NOW).unwrap();
        assert_eq!((got.addrs.len(), got.relays.len()), (MAX_ADDRS, MAX_ADDRS));

        for past in [
            RecordBody { addrs: vec![addr.clone(); MAX_ADDRS + 1], ..RecordBody::of(&rec) },
            RecordBody { relays: vec![addr.clone(); MAX_ADDRS + 1], ..RecordBody::of(&rec) },
        ] {
            let r = wire::decode::<RecordBody>(&wire::encode(&past).unwrap(), MAX_RECORD_LEN);
            assert!(matches!(r, Err(WireError::TooMany { max: MAX_ADDRS })), "{:?}", r.err());
        }
        let long = RecordBody { display_name: Some("x".repeat(MAX_DISPLAY_NAME_BYTES + 1)), ..RecordBody::of(&rec) };
        let r = wire::decode::<RecordBody>(&wire::encode(&long).unwrap(), MAX_RECORD_LEN);
        assert!(matches!(r, Err(WireError::TooLong { max: MAX_DISPLAY_NAME_BYTES, .. })), "{:?}", r.err());
    }

    #[test]
    fn every_name_a_node_accepts_fits_a_record() {
        // The longest name `config` allows, in a script of 3-byte characters.
        let id = Identity::generate();
        let mut rec = record_of(&id, 1);
        rec.display_name = Some("漢".repeat(crate::config::MAX_DISPLAY_NAME_CHARS));
        let got = PeerRecord::verify(&rec.sign(&id).unwrap(), None, NOW).unwrap();
        assert_eq!(got.display_name, rec.display_name);
    }

    #[test]
    fn unsupported_version() {
        let id = Identity::generate();
        let bytes = sign_raw(&id, &RecordBody::of(&record_of(&id, 1)), 2);
        assert!(matches!(
            PeerRecord::verify(&bytes, None, NOW),
            Err(RecordError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn bad_signature() {
        let id = Identity::generate();
        let mallory = Identity::generate();
        // Signed by someone else.
        let bytes = sign_raw(&mallory, &RecordBody::of(&record_of(&id, 1)), 1);
        assert!(matches!(
            PeerRecord::verify(&bytes, None, NOW),
            Err(RecordError::BadSignature)
        ));

        // Content altered after signing.
        let good = record_of(&id, 1).sign(&id).unwrap();
        let mut signed: SignedPeerRecord = wire::decode(&good, MAX_RECORD_LEN).unwrap();
        let mut body: RecordBody = wire::decode(&signed.record, MAX_RECORD_LEN).unwrap();
        body.seq = 1000;
        signed.record = wire::encode(&body).unwrap();
        let bytes = wire::encode(&signed).unwrap();
        assert!(matches!(
            PeerRecord::verify(&bytes, None, NOW),
            Err(RecordError::BadSignature)
        ));

        // Signature made without the domain context.
        let record = wire::encode(&RecordBody::of(&record_of(&id, 1))).unwrap();
        let sig = id.sign(&record);
        let bytes = wire::encode(&SignedPeerRecord { v: 1, record, sig }).unwrap();
        assert!(matches!(
            PeerRecord::verify(&bytes, None, NOW),
            Err(RecordError::BadSignature)
        ));
    }

    #[test]
    fn bad_binding() {
        let id = Identity::generate();
        let other = Identity::generate();
        let mut rec = record_of(&id, 1);
        // Another user's (validly bound) E2E key: the binding is not by `id`.
        rec.e2e_public = other.e2e_public();
        rec.binding = other.binding();
        assert!(matches!(rec.sign(&id), Err(RecordError::BadBinding)));
        let bytes = sign_raw(&id, &RecordBody::of(&rec), 1);
        assert!(matches!(
            PeerRecord::verify(&bytes, None, NOW),
            Err(RecordError::BadBinding)
        ));
    }

    #[test]
    fn expired() {
        let id = Identity::generate();
        let rec = record_of(&id, 1);
        let bytes = rec.sign(&id).unwrap();
        assert!(PeerRecord::verify(&bytes, None, rec.expires_at_secs - 1).is_ok());
        assert!(matches!(
            PeerRecord::verify(&bytes, None, rec.expires_at_secs),
            Err(RecordError::Expired)
        ));
    }

    #[test]
    fn wrong_peer() {
        let id = Identity::generate();
        let other = Identity::generate();
        let bytes = record_of(&id, 1).sign(&id).unwrap();
        assert!(matches!(
            PeerRecord::verify(&bytes, Some(&other.peer_id()), NOW),
            Err(RecordError::WrongPeer)
        ));
        assert!(matches!(
            record_of(&id, 1).sign(&other),
            Err(RecordError::WrongPeer)
        ));
    }

    #[test]
    fn cache_orders_by_seq() {
        let id = Identity::generate();
        let mut cache = RecordCache::new(8);
        assert!(cache.accept(record_of(&id, 5)).unwrap());
        assert!(!cache.accept(record_of(&id, 5)).unwrap());
        assert!(matches!(
            cache.accept(record_of(&id, 4)),
            Err(RecordError::Stale { have: 5, got: 4 })
        ));
        let mut changed = record_of(&id, 5);
        changed.display_name = None;
        assert!(matches!(
            cache.accept(changed),
            Err(RecordError::Stale { have: 5, got: 5 })
        ));
        assert!(cache.accept(record_of(&id, 6)).unwrap());
        assert_eq!(cache.get(&id.peer_id()).unwrap().seq, 6);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_is_bounded() {
        let ids: Vec<Identity> = (0..5).map(|_| Identity::generate()).collect();
        let mut cache = RecordCache::new(3);
        for id in &ids {
            cache.accept(record_of(id, 1)).unwrap();
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&ids[0].peer_id()).is_none());
        assert!(cache.get(&ids[1].peer_id()).is_none());
        assert!(cache.get(&ids[4].peer_id()).is_some());
        // Updating a present peer does not evict anyone.
        cache.accept(record_of(&ids[2], 2)).unwrap();
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&ids[3].peer_id()).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_corruption_is_rejected_without_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            garbage in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let id = Identity::generate();
            let mut bytes = record_of(&id, 1).sign(&id).unwrap();
            for (at, mask) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            // A flip may land in a CBOR length or tag and still decode to the same
            // record only if it is in a don't-care position, which this format has none
            // of; every accepted result must at least be the signed content.
            if let Ok(rec) = PeerRecord::verify(&bytes, None, NOW) {
                prop_assert_eq!(rec, record_of(&id, 1));
            }
            let _ = PeerRecord::verify(&garbage, None, NOW);
        }
    }
}
