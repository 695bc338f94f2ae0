//! What travels inside a sealed envelope: the end-to-end plaintext of kith's 1:1 channel.
//!
//! Relays and the transport never see these; only the recipient, after
//! [`crate::envelope::Opener::open`] has authenticated the sender. Every variant is
//! safe to apply twice (texts are de-duplicated by id, the rest are idempotent), so
//! every delivery path may retry.

use kith_storage::{GroupId, MessageId};
use serde::{Deserialize, Serialize};

use crate::wire::{self, WireError};

/// The encoding version of [`Payload`]; an unknown version is rejected, not guessed.
pub const PAYLOAD_VERSION: u32 = 1;

/// Largest text body a message may carry, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Largest Lamport counter a message may carry (2^53: exact in every JSON reader).
/// A peer's counter moves ours forward, so without a cap one message at `u64::MAX`
/// would overflow the next one we write; past the cap a message is refused as
/// malformed, and our own counter stops at the cap (see [`crate::ops`]).
pub const MAX_LAMPORT: u64 = 1 << 53;

/// Addresses (and, separately, relays) taken from one [`PeerHint`] about a peer.
pub const MAX_HINT_ADDRS: usize = 8;

/// Upper bound on an encoded payload, checked before decoding.
pub const MAX_PAYLOAD_LEN: usize = MAX_TEXT_LEN + 4 * 1024;

/// One end-to-end item from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Payload {
    /// A chat message in the 1:1 conversation between sender and recipient.
    Text {
        /// Random id; receivers de-duplicate by it.
        id: MessageId,
        /// The sender's Lamport counter for the conversation.
        lamport: u64,
        /// The sender's wall clock when written, ms since the Unix epoch.
        sent_at_ms: u64,
        /// The message body.
        text: String,
    },
    /// The recipient stored (`Delivered`) or read (`Read`) these messages of the sender.
    Receipt {
        /// Which milestone the messages reached.
        kind: ReceiptKind,
        /// The messages, all authored by the receipt's recipient.
        ids: Vec<MessageId>,
    },
    /// "Add me": a contact request, or an invite redemption when it carries the token.
    ContactRequest {
        /// The requester's display name.
        name: Option<String>,
        /// The requester's addresses (multiaddr bytes) so the answer can find it.
        addrs: Vec<Vec<u8>>,
        /// The one-time token of the recipient's invite, if redeeming one.
        token: Option<[u8; 16]>,
        /// The requester's pinned relays (multiaddr bytes), where mail for it can be
        /// left while it is offline. Absent in payloads from older versions.
        #[serde(default)]
        relays: Vec<Vec<u8>>,
    },
    /// The recipient of a contact request (or invite) accepts the sender as a contact.
    ContactAccepted {
        /// The accepter's display name.
        name: Option<String>,
    },
    /// Signed membership operations of a group (see [`crate::group::membership`]):
    /// the whole history for a new member (in parts, parents first), single
    /// operations for the others, what a member lacks in answer to a
    /// [`Payload::GroupSync`]. Each operation carries its own signature and is
    /// checked against its causal state, so who forwards it does not matter.
    GroupOps {
        /// The group.
        group: GroupId,
        /// Encoded [`crate::group::membership::SignedOp`]s.
        #[serde(with = "wire::bytes_seq")]
        ops: Vec<Vec<u8>>,
        /// How to reach members the recipient may not know.
        #[serde(default)]
        hints: Vec<PeerHint>,
    },
    /// "Send me the operations of this group I lack": the sender holds operations
    /// whose parents it has not seen, or an invitation it accepted. Answered with
    /// [`Payload::GroupOps`] holding everything that is not an ancestor of `heads`.
    GroupSync {
        /// The group.
        group: GroupId,
        /// The sender's heads (at most [`crate::group::membership::MAX_PARENTS`]).
        heads: Vec<crate::group::membership::OpId>,
    },
    /// The sender's sender key for a group (see [`crate::group::sender_key`]).
    GroupKey {
        /// The group.
        group: GroupId,
        /// The key's generation.
        generation: u32,
        /// The key.
        #[serde(with = "wire::byte_array")]
        key: [u8; 32],
    },
}

/// Where a peer can be reached: what one member tells another about a third.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHint {
    /// Peer id bytes.
    #[serde(with = "wire::bytes")]
    pub peer_id: Vec<u8>,
    /// Multiaddr bytes.
    #[serde(with = "wire::bytes_seq")]
    pub addrs: Vec<Vec<u8>>,
    /// Its relays' multiaddr bytes.
    #[serde(with = "wire::bytes_seq")]
    pub relays: Vec<Vec<u8>>,
}

/// Which delivery milestone a [`Payload::Receipt`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptKind {
    /// Stored by the recipient's node.
    Delivered,
    /// Shown to and marked read by the recipient.
    Read,
}

#[derive(Serialize, Deserialize)]
struct Versioned {
    v: u32,
    p: Payload,
}

impl Payload {
    /// Encode for sealing.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(&VersionedRef { v: PAYLOAD_VERSION, p: self })
    }

    /// Decode an opened envelope's plaintext, enforcing size and version.
    pub fn decode(bytes: &[u8]) -> Result<Payload, WireError> {
        let versioned: Versioned = wire::decode(bytes, MAX_PAYLOAD_LEN)?;
        if versioned.v != PAYLOAD_VERSION {
            return Err(WireError::UnsupportedVersion(versioned.v));
        }
        if let Payload::Text { text, lamport, .. } = &versioned.p {
            if text.len() > MAX_TEXT_LEN {
                return Err(WireError::TooLarge { len: text.len(), max: MAX_TEXT_LEN });
            }
            if *lamport > MAX_LAMPORT {
                return Err(WireError::Malformed(format!("Lamport counter {lamport} above {MAX_LAMPORT}")));
            }
        }
        Ok(versioned.p)
    }
}

#[derive(Serialize)]
struct VersionedRef<'a> {
    v: u32,
    p: &'a Payload,
}

/// Multiaddrs stored as text, as the byte strings payloads carry; text that is not a
/// multiaddr is left out.
pub fn addr_bytes(addrs: &[String]) -> Vec<Vec<u8>> {
    addrs.iter().filter_map(|a| a.parse::<libp2p::Multiaddr>().ok()).map(|a| a.to_vec()).collect()
}

/// Multiaddr byte strings from a payload as text; malformed ones are left out.
pub fn addr_strings(bytes: &[Vec<u8>]) -> Vec<String> {
    bytes.iter().filter_map(|b| libp2p::Multiaddr::try_from(b.clone()).ok()).map(|a| a.to_string()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let p = Payload::Text {
            id: MessageId([7; 16]),
            lamport: 3,
            sent_at_ms: 1,
            text: "привет 👋\nworld".into(),
        };
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        let future = wire::encode(&VersionedRef { v: 9, p: &p }).unwrap();
        assert!(matches!(Payload::decode(&future), Err(WireError::UnsupportedVersion(9))));
        assert!(Payload::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn lamport_counters_are_capped() {
        let at = |lamport| Payload::Text { id: MessageId([7; 16]), lamport, sent_at_ms: 1, text: "x".into() };
        assert!(Payload::decode(&at(MAX_LAMPORT).encode().unwrap()).is_ok());
        assert!(matches!(Payload::decode(&at(MAX_LAMPORT + 1).encode().unwrap()), Err(WireError::Malformed(_))));
        assert!(matches!(Payload::decode(&at(u64::MAX).encode().unwrap()), Err(WireError::Malformed(_))));
    }
}
