//! What travels inside a sealed envelope: the end-to-end plaintext of kith's 1:1 channel.
//!
//! Relays and the transport never see these; only the recipient, after
//! [`crate::envelope::Opener::open`] has authenticated the sender. Every variant is
//! safe to apply twice (texts are de-duplicated by id, the rest are idempotent), so
//! every delivery path may retry.

use kith_storage::{GroupId, Link, MessageId};
use serde::{Deserialize, Serialize};

use crate::group::membership::MAX_MEMBERS;
use crate::peer_record::{MAX_ADDRS, MAX_DISPLAY_NAME_BYTES};
use crate::wire::{self, WireError};

/// The encoding version of [`Payload`]; an unknown version is rejected, not guessed.
pub const PAYLOAD_VERSION: u32 = 1;

/// Largest text body a message may carry, in bytes of UTF-8. Enforced while decoding.
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

/// What a [`Payload::Ratcheted`] may add around the payload it carries (Olm's
/// header, padding and MAC are under 200 bytes).
pub const RATCHET_OVERHEAD: usize = 512;

/// Most message ids one [`Payload::Receipt`] may carry.
///
/// An id encodes to more than [`kith_storage::ID_LEN`] bytes, so no payload of
/// [`MAX_PAYLOAD_LEN`] can hold more: the limit refuses nothing that could arrive, it
/// only makes the bound explicit while decoding.
pub const MAX_RECEIPT_IDS: usize = MAX_PAYLOAD_LEN / kith_storage::ID_LEN;

/// Most operations one [`Payload::GroupOps`] may carry.
///
/// Every encoded operation holds a 64-byte signature, so no payload of
/// [`MAX_PAYLOAD_LEN`] can hold more; enforced while decoding so that a payload of
/// empty byte strings is refused before it becomes thousands of `Vec`s.
pub const MAX_GROUP_OPS: usize = MAX_PAYLOAD_LEN / 64;

/// Most [`PeerHint`]s one [`Payload::GroupOps`] may carry: one per member.
pub const MAX_HINTS: usize = MAX_MEMBERS;

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
        /// The message body, at most [`MAX_TEXT_LEN`] bytes; a file's caption (maybe
        /// empty) when `file` is set.
        #[serde(deserialize_with = "wire::Max::<MAX_TEXT_LEN>::text")]
        text: String,
        /// The file the message carries. Absent in plain texts and from older
        /// versions (which ignore it and show the caption).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileOffer>,
        /// The message it answers, or changes (an edit, a delete, a reaction).
        /// Absent in plain texts; checked by [`check_link`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Link>,
    },
    /// The recipient stored (`Delivered`) or read (`Read`) these messages of the sender.
    Receipt {
        /// Which milestone the messages reached.
        kind: ReceiptKind,
        /// The messages, all authored by the receipt's recipient; at most
        /// [`MAX_RECEIPT_IDS`].
        #[serde(deserialize_with = "wire::Max::<MAX_RECEIPT_IDS>::seq")]
        ids: Vec<MessageId>,
    },
    /// "Add me": a contact request, or an invite redemption when it carries the token.
    ContactRequest {
        /// The requester's display name, at most [`MAX_DISPLAY_NAME_BYTES`].
        #[serde(default, deserialize_with = "wire::Max::<MAX_DISPLAY_NAME_BYTES>::opt_text")]
        name: Option<String>,
        /// The requester's addresses (multiaddr bytes) so the answer can find it; at
        /// most [`MAX_ADDRS`].
        #[serde(deserialize_with = "wire::Max::<MAX_ADDRS>::seq")]
        addrs: Vec<Vec<u8>>,
        /// The one-time token of the recipient's invite, if redeeming one.
        token: Option<[u8; 16]>,
        /// The requester's pinned relays (multiaddr bytes), where mail for it can be
        /// left while it is offline. Absent in payloads from older versions. At most
        /// [`MAX_ADDRS`].
        #[serde(default, deserialize_with = "wire::Max::<MAX_ADDRS>::seq")]
        relays: Vec<Vec<u8>>,
        /// The requester's ratchet keys, so that what the recipient sends once it
        /// accepts is ratcheted from the first message. Absent from older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<RequestKeys>,
        /// When the requester issued it, µs since the Unix epoch (its clock; every
        /// contact payload a node issues later than the one before). A copy of one
        /// not newer than the last taken from its sender, or outside the replay
        /// window, is not taken ([`kith_storage::Store::contact_payload_refusal`]).
        /// 0 (older versions, which sent none): never taken.
        #[serde(default)]
        issued_us: u64,
    },
    /// The sender is online for the next `ttl_s` seconds (renewed before then), or
    /// offline (`online: false`). Never stored, never queued: sent on connections
    /// as they open and every half `ttl_s` (see `crate::node::presence`).
    Presence {
        /// Online, or going offline.
        online: bool,
        /// How long the announcement holds, in seconds (at most an hour is taken).
        ttl_s: u32,
    },
    /// The sender is typing in the 1:1 conversation with the recipient, or in
    /// `group`. Never stored or queued; sent at most every few seconds while typing,
    /// only to peers connected now, and only with presence on.
    Typing {
        /// The group it types in; absent for the 1:1 conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<GroupId>,
    },
    /// The sender's profile, signed (a [`crate::profile::SignedProfile`]): kept by
    /// an accepted contact if newer than the one it holds.
    Profile {
        /// The encoded signed profile, at most [`crate::profile::MAX_SIGNED_PROFILE_LEN`].
        #[serde(with = "wire::bytes")]
        signed: Vec<u8>,
    },
    /// The sender's deposit ticket for the recipient: the recipient's deposits into
    /// the sender's relay mailboxes may then fill more than the share a relay leaves
    /// open to anyone. Kept from an accepted contact or someone the recipient asked,
    /// and only if it admits the recipient.
    DepositTicket {
        /// The ticket, as the recipient shows it to relays.
        ticket: crate::mailbox::DepositTicket,
    },
    /// The recipient of a contact request (or invite) accepts the sender as a contact.
    ContactAccepted {
        /// The accepter's display name, at most [`MAX_DISPLAY_NAME_BYTES`].
        #[serde(default, deserialize_with = "wire::Max::<MAX_DISPLAY_NAME_BYTES>::opt_text")]
        name: Option<String>,
        /// When the accepter issued it, as in [`Payload::ContactRequest`].
        #[serde(default)]
        issued_us: u64,
        /// The `issued_us` of the request it answers (0: not known). A requester
        /// takes it as accepting only a request it made no later than that, so an
        /// acceptance of an earlier request (a copy a relay held back) does not
        /// accept a request made again since.
        #[serde(default)]
        answers_us: u64,
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
        #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_GROUP_OPS>::bytes_seq")]
        ops: Vec<Vec<u8>>,
        /// How to reach members the recipient may not know.
        #[serde(default, deserialize_with = "wire::Max::<MAX_HINTS>::seq")]
        hints: Vec<PeerHint>,
    },
    /// "Send me the operations of this group I lack": the sender holds operations
    /// whose parents it has not seen, or an invitation it accepted. Answered with
    /// [`Payload::GroupOps`] holding everything that is not an ancestor of `heads`.
    GroupSync {
        /// The group.
        group: GroupId,
        /// The sender's heads (at most [`crate::group::membership::MAX_PARENTS`]).
        #[serde(deserialize_with = "wire::Max::<{ crate::group::membership::MAX_PARENTS }>::seq")]
        heads: Vec<crate::group::membership::OpId>,
    },
    /// Keys to start a ratchet session with the sender (see [`crate::ratchet`]): its
    /// Olm identity key, signed by its identity, and a one-time key made for the
    /// recipient alone. Never ratcheted itself (it starts the ratchet).
    Prekeys {
        /// The sender's Olm identity key.
        #[serde(with = "wire::byte_array")]
        identity: [u8; 32],
        /// The sender's ed25519 signature over it.
        #[serde(with = "wire::byte_array")]
        signature: [u8; 64],
        /// A one-time key for the recipient.
        #[serde(with = "wire::byte_array")]
        one_time: [u8; 32],
        /// The sender could not open the recipient's ratchet messages (its state was
        /// lost or restored): drop the sessions and start a new one with these keys.
        #[serde(default)]
        reset: bool,
        /// When the offer was made (µs, strictly increasing per sender; signed with
        /// the rest): a replayed or older offer changes nothing.
        #[serde(default)]
        issued_us: u64,
    },
    /// Another payload, encrypted in the ratchet session between sender and
    /// recipient (see [`crate::ratchet`]).
    Ratcheted {
        /// The Olm message type: [`crate::ratchet::PRE_KEY_MESSAGE`] or
        /// [`crate::ratchet::NORMAL_MESSAGE`].
        kind: u8,
        /// The Olm message; its plaintext is an encoded [`Payload`].
        #[serde(with = "wire::bytes")]
        body: Vec<u8>,
    },
    /// The sender's sender key for a group (see [`crate::group::sender_key`]).
    GroupKey {
        /// The group.
        group: GroupId,
        /// The key's generation.
        generation: u32,
        /// The point of the sender's chain the key is at (see
        /// [`crate::group::sender_key`]): the first of its messages it opens.
        #[serde(default)]
        index: u64,
        /// The key.
        #[serde(with = "wire::byte_array")]
        key: [u8; 32],
    },
}

/// Ratchet keys offered inside a contact request: the fields of
/// [`Payload::Prekeys`] without `reset`, signed the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKeys {
    /// The requester's Olm identity key.
    #[serde(with = "wire::byte_array")]
    pub identity: [u8; 32],
    /// The requester's ed25519 signature over the offer.
    #[serde(with = "wire::byte_array")]
    pub signature: [u8; 64],
    /// A one-time key for the recipient.
    #[serde(with = "wire::byte_array")]
    pub one_time: [u8; 32],
    /// When the offer was made (µs).
    pub issued_us: u64,
}

/// Where a peer can be reached: what one member tells another about a third.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHint {
    /// Peer id bytes.
    #[serde(with = "wire::bytes")]
    pub peer_id: Vec<u8>,
    /// Multiaddr bytes.
    #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_ADDRS>::bytes_seq")]
    pub addrs: Vec<Vec<u8>>,
    /// Its relays' multiaddr bytes.
    #[serde(serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<MAX_ADDRS>::bytes_seq")]
    pub relays: Vec<Vec<u8>>,
}

/// Longest file name a [`FileOffer`] may carry, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest media type a [`FileOffer`] may carry.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Most media nodes one [`FileOffer`] may name.
pub const MAX_FILE_SOURCES: usize = 4;

/// A file inside a message: how to fetch it, check it and read it. Only the
/// message's recipients see it (it travels sealed); see [`crate::blob`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOffer {
    /// The blob's content address.
    #[serde(with = "wire::byte_array")]
    pub blob: [u8; 32],
    /// The file's own key.
    #[serde(with = "wire::byte_array")]
    pub key: [u8; 32],
    /// The file name, at most [`MAX_FILE_NAME_BYTES`] (receivers keep only its last
    /// path component, see [`crate::files::safe_file_name`]).
    #[serde(deserialize_with = "wire::Max::<MAX_FILE_NAME_BYTES>::text")]
    pub name: String,
    /// The plaintext size in bytes.
    pub size: u64,
    /// The media type, at most [`MAX_MEDIA_TYPE_BYTES`].
    #[serde(deserialize_with = "wire::Max::<MAX_MEDIA_TYPE_BYTES>::text")]
    pub media_type: String,
    /// Media nodes holding the blob besides the author; at most [`MAX_FILE_SOURCES`].
    #[serde(default, deserialize_with = "wire::Max::<MAX_FILE_SOURCES>::seq")]
    pub sources: Vec<PeerHint>,
}

impl std::fmt::Debug for FileOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOffer")
            .field("blob", &hex::encode(self.blob))
            .field("key", &"<secret>")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("media_type", &self.media_type)
            .field("sources", &self.sources.len())
            .finish()
    }
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
    /// Whether this payload travels inside the ratchet to an accepted contact with
    /// a session: everything but what starts contacts and sessions, and the
    /// ephemeral notices (presence, typing), which are sealed as they are, and deposit
    /// tickets, which may arrive before the acceptance queued with them (a ratchet
    /// message from someone not yet a contact is refused).
    pub fn is_ratcheted_kind(&self) -> bool {
        !matches!(
            self,
            Payload::ContactRequest { .. }
                | Payload::ContactAccepted { .. }
                | Payload::Presence { .. }
                | Payload::Typing { .. }
                | Payload::Prekeys { .. }
                | Payload::Ratcheted { .. }
                | Payload::DepositTicket { .. }
        )
    }

    /// Decodes the plaintext of a [`Payload::Ratcheted`]: any payload that travels
    /// inside the ratchet, never another wrapper.
    pub fn decode_ratcheted(bytes: &[u8]) -> Result<Payload, WireError> {
        let inner = Payload::decode(bytes)?;
        if !inner.is_ratcheted_kind() {
            return Err(WireError::Malformed("a ratchet message carries a payload that never travels in one".into()));
        }
        Ok(inner)
    }

    /// Encode for sealing.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(&VersionedRef { v: PAYLOAD_VERSION, p: self })
    }

    /// Decode an opened envelope's plaintext, enforcing size, version and the limits
    /// of every list and text (while decoding: [`WireError::TooMany`],
    /// [`WireError::TooLong`]).
    pub fn decode(bytes: &[u8]) -> Result<Payload, WireError> {
        let versioned: Versioned = wire::decode(bytes, MAX_PAYLOAD_LEN + RATCHET_OVERHEAD)?;
        if versioned.v != PAYLOAD_VERSION {
            return Err(WireError::UnsupportedVersion(versioned.v));
        }
        match &versioned.p {
            Payload::Ratcheted { kind, .. } if *kind > crate::ratchet::NORMAL_MESSAGE => {
                return Err(WireError::Malformed(format!("ratchet message type {kind}")));
            }
            Payload::Ratcheted { .. } => {}
            // Only a ratchet message may use the overhead's room.
            _ if bytes.len() > MAX_PAYLOAD_LEN => return Err(WireError::TooLarge { len: bytes.len(), max: MAX_PAYLOAD_LEN }),
            _ => {}
        }
        if let Payload::Text { lamport, link, .. } = &versioned.p {
            if *lamport > MAX_LAMPORT {
                return Err(WireError::Malformed(format!("Lamport counter {lamport} above {MAX_LAMPORT}")));
            }
            check_link(link.as_ref())?;
        }
        Ok(versioned.p)
    }
}

/// Refuses a link no peer may send: a local-only [`Link::Hide`], or a reaction that
/// is empty or over [`MAX_EMOJI_LEN`] bytes. Shared by 1:1 payloads and group posts.
pub fn check_link(link: Option<&Link>) -> Result<(), WireError> {
    match link {
        Some(Link::Hide(_)) => Err(WireError::Malformed("a hide is never sent".into())),
        Some(Link::React { emoji, .. }) if !kith_storage::valid_emoji(emoji) => {
            Err(WireError::Malformed(format!("a reaction of {} bytes that is no emoji", emoji.len())))
        }
        _ => Ok(()),
    }
}

/// Message ids one receipt carries at most when we send it: far below what a payload
/// may hold ([`MAX_RECEIPT_IDS`], and the [`MAX_PAYLOAD_LEN`] that binds first), so a
/// receipt for any number of messages is split into payloads every receiver decodes.
pub const RECEIPT_IDS_PER_PAYLOAD: usize = 2048;

impl Payload {
    /// Receipts of `kind` for `ids`, as many payloads as they need.
    pub fn receipts(kind: ReceiptKind, ids: &[MessageId]) -> Vec<Payload> {
        ids.chunks(RECEIPT_IDS_PER_PAYLOAD).map(|part| Payload::Receipt { kind, ids: part.to_vec() }).collect()
    }
}

#[derive(Serialize)]
struct VersionedRef<'a> {
    v: u32,
    p: &'a Payload,
}

/// Addresses as the byte strings payloads carry.
pub fn addr_bytes(addrs: &[libp2p::Multiaddr]) -> Vec<Vec<u8>> {
    addrs.iter().map(|a| a.to_vec()).collect()
}

/// Multiaddr byte strings from a payload; malformed ones are left out.
pub fn addrs_of(bytes: &[Vec<u8>]) -> Vec<libp2p::Multiaddr> {
    bytes.iter().filter_map(|b| libp2p::Multiaddr::try_from(b.clone()).ok()).collect()
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
            file: None,
            link: None,
        };
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        let future = wire::encode(&VersionedRef { v: 9, p: &p }).unwrap();
        assert!(matches!(Payload::decode(&future), Err(WireError::UnsupportedVersion(9))));
        assert!(Payload::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn receipts_for_many_messages_split_into_payloads_that_decode() {
        let ids: Vec<MessageId> = (0..10_000u32).map(|i| MessageId([i as u8; 16])).collect();
        let parts = Payload::receipts(ReceiptKind::Read, &ids);
        assert_eq!(parts.len(), 10_000usize.div_ceil(RECEIPT_IDS_PER_PAYLOAD));
        let mut back = Vec::new();
        for part in parts {
            let Payload::Receipt { ids, .. } = Payload::decode(&part.encode().unwrap()).unwrap() else { panic!() };
            back.extend(ids);
        }
        assert_eq!(back, ids);
    }

    #[test]
    fn lamport_counters_are_capped() {
        let at = |lamport| Payload::Text { id: MessageId([7; 16]), lamport, sent_at_ms: 1, text: "x".into(), file: None, link: None };
        assert!(Payload::decode(&at(MAX_LAMPORT).encode().unwrap()).is_ok());
        assert!(matches!(Payload::decode(&at(MAX_LAMPORT + 1).encode().unwrap()), Err(WireError::Malformed(_))));
        assert!(matches!(Payload::decode(&at(u64::MAX).encode().unwrap()), Err(WireError::Malformed(_))));
    }

    /// Decodes `p` with no frame cap, so that limits beyond what fits in
    /// [`MAX_PAYLOAD_LEN`] can be tested at their value.
    fn decode_uncapped(p: &Payload) -> Result<Payload, WireError> {
        let bytes = wire::encode(&VersionedRef { v: PAYLOAD_VERSION, p }).unwrap();
        wire::decode::<Versioned>(&bytes, usize::MAX).map(|v| v.p)
    }

    fn assert_too_many(p: &Payload, limit: usize) {
        let r = decode_uncapped(p);
        assert!(matches!(r, Err(WireError::TooMany { max }) if max == limit), "{r:?}");
    }

    fn text(text: String) -> Payload {
        Payload::Text { id: MessageId([1; 16]), lamport: 1, sent_at_ms: 1, text, file: None, link: None }
    }

    #[test]
    fn text_and_name_lengths_at_and_past_while_decoding() {
        let at = text("é".repeat(MAX_TEXT_LEN / 2));
        assert_eq!(Payload::decode(&at.encode().unwrap()).unwrap(), at);
        let r = Payload::decode(&text("x".repeat(MAX_TEXT_LEN + 1)).encode().unwrap());
        assert!(matches!(r, Err(WireError::TooLong { len, max: MAX_TEXT_LEN }) if len == MAX_TEXT_LEN + 1), "{r:?}");

        let request = |name: String| Payload::ContactRequest { name: Some(name), addrs: vec![], token: None, relays: vec![], keys: None, issued_us: 1 };
        let accepted = |name: String| Payload::ContactAccepted { name: Some(name), issued_us: 1, answers_us: 0 };
        for make in [request, accepted] {
            let at = make("x".repeat(MAX_DISPLAY_NAME_BYTES));
            assert_eq!(Payload::decode(&at.encode().unwrap()).unwrap(), at);
            let r = Payload::decode(&make("x".repeat(MAX_DISPLAY_NAME_BYTES + 1)).encode().unwrap());
            assert!(matches!(r, Err(WireError::TooLong { max: MAX_DISPLAY_NAME_BYTES, .. })), "{r:?}");
        }
    }

    #[test]
    fn list_lengths_at_and_past_while_decoding() {
        let receipt = |n| Payload::Receipt { kind: ReceiptKind::Read, ids: vec![MessageId([2; 16]); n] };
        let request = |addrs, relays| Payload::ContactRequest { name: None, addrs, token: Some([3; 16]), relays, keys: None, issued_us: 1 };
        let ops = |n| Payload::GroupOps { group: GroupId([4; 16]), ops: vec![vec![]; n], hints: vec![] };
        let hint = |addrs: usize, relays: usize| PeerHint {
            peer_id: vec![5; 38],
            addrs: vec![vec![6]; addrs],
            relays: vec![vec![7]; relays],
        };
        let hints = |hints| Payload::GroupOps { group: GroupId([4; 16]), ops: vec![], hints };
        let addrs = |n| vec![vec![8; 8]; n];
        let cases = [
            (receipt(MAX_RECEIPT_IDS), receipt(MAX_RECEIPT_IDS + 1), MAX_RECEIPT_IDS),
            (request(addrs(MAX_ADDRS), vec![]), request(addrs(MAX_ADDRS + 1), vec![]), MAX_ADDRS),
            (request(vec![], addrs(MAX_ADDRS)), request(vec![], addrs(MAX_ADDRS + 1)), MAX_ADDRS),
            (ops(MAX_GROUP_OPS), ops(MAX_GROUP_OPS + 1), MAX_GROUP_OPS),
            (hints(vec![hint(0, 0); MAX_HINTS]), hints(vec![hint(0, 0); MAX_HINTS + 1]), MAX_HINTS),
            (hints(vec![hint(MAX_ADDRS, 0)]), hints(vec![hint(MAX_ADDRS + 1, 0)]), MAX_ADDRS),
            (hints(vec![hint(0, MAX_ADDRS)]), hints(vec![hint(0, MAX_ADDRS + 1)]), MAX_ADDRS),
        ];
        for (at, past, limit) in cases {
            assert_eq!(decode_uncapped(&at).unwrap(), at);
            assert_too_many(&past, limit);
        }
        // The count limits never refuse a payload the length cap lets through.
        const { assert!(MAX_RECEIPT_IDS * (kith_storage::ID_LEN + 1) > MAX_PAYLOAD_LEN) };
        const { assert!(MAX_GROUP_OPS * (64 + 2) > MAX_PAYLOAD_LEN) };
    }
}
