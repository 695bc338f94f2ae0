//! `/kith/mailbox/1`: store-and-forward of sealed envelopes through a relay's mailbox.
//!
//! A mailbox belongs to one peer, its *owner*, and is named on the wire by the owner's
//! peer id bytes ([`mailbox_id`]). The relay implements the server side, nodes the
//! client side. Every exchange is one request and one response:
//!
//! 1. **Deposit.** Any peer sends [`MailboxRequest::Deposit`] with up to
//!    [`MAX_DEPOSIT_BATCH`] sealed envelopes for the owner, and the owner's
//!    [`DepositTicket`] for it if it holds one (the owner gives one to each of its
//!    contacts): a deposit with a valid ticket may fill the mailbox's whole quota,
//!    one without only the share the relay leaves open to anyone (a stranger's
//!    contact request), so one stranger cannot fill a mailbox and shut the owner's
//!    contacts out (docs/RELAY.md). The relay answers
//!    [`MailboxResponse::Deposited`] with one [`DepositResult`] per envelope, in order;
//!    [`DepositResult::Stored`] and [`DepositResult::Duplicate`] both mean the relay
//!    holds the envelope durably, so the sender may stop retrying it.
//! 2. **Challenge.** The owner, authenticated by its libp2p connection, sends
//!    [`MailboxRequest::Challenge`]; the relay answers with a fresh random nonce that it
//!    binds to the requesting peer's mailbox and accepts once, for a short time.
//! 3. **Drain.** The owner signs [`drain_message`] over the nonce ([`sign_drain`]) and
//!    sends [`MailboxRequest::Drain`]; the relay verifies ([`verify_drain`]), consumes
//!    the nonce and answers [`MailboxResponse::Envelopes`]: a page of envelopes with
//!    sequence numbers above `after`, in ascending order, and whether more follow.
//!    **Every request that carries a nonce consumes it**: a node asks for a new
//!    challenge for each page and for each ack. This costs one extra round trip per
//!    page and keeps the relay's rule trivial (one nonce, one use).
//! 4. **Ack.** After the node has stored the envelopes durably, it sends
//!    [`MailboxRequest::Ack`] with their sequence numbers, signed over a fresh nonce
//!    ([`sign_ack`]); the relay deletes them and answers [`MailboxResponse::Acked`].
//!    Acking a sequence number that is not (or no longer) held is not an error, so an
//!    ack may be retried.
//!
//! Any request may instead be answered with [`MailboxResponse::Refused`]; [`Refusal`]
//! says why and whether retrying can help ([`Refusal::is_permanent`]).
//!
//! # Why the signatures bind what they bind
//! The libp2p connection already authenticates the requester; the signature adds a
//! fresh proof of possession of the owner's key that is scoped as narrowly as possible:
//! - the **relay's peer id** is signed, so a signature made for relay X is worthless at
//!   relay Y: a malicious relay X that hands the owner a nonce it obtained from Y, as
//!   if it were its own challenge, gets a signature naming X, which Y rejects. This
//!   holds even where the connection alone would not protect (a future transport or
//!   proxy in which the requester is not the owner's own connection);
//! - the **owner's peer id** is signed, so a signature cannot be presented for another
//!   mailbox;
//! - the **nonce** is single-use, so a captured request cannot be replayed at the same
//!   relay;
//! - for an ack, the **sequence numbers** are signed (through a BLAKE3 digest of the
//!   list), so a signature authorising the deletion of some envelopes cannot be reused
//!   to delete others.
//!
//! Each message starts with its own domain-separation context ([`DRAIN_CONTEXT`],
//! [`ACK_CONTEXT`]) so it can never be valid as any other kith signature.
//!
//! # Encoding and limits
//! Frames are length-prefixed CBOR `Frame { v: 1, body }` (see [`crate::wire`]), byte
//! fields as CBOR byte strings. The codec checks the frame length against
//! [`MAX_REQUEST_LEN`] / [`MAX_RESPONSE_LEN`] before allocating, the count limits
//! ([`MAX_DEPOSIT_BATCH`], [`MAX_ACK`], [`MAX_DRAIN_ITEMS`]) while decoding (the item
//! past a limit is refused before it is allocated, see [`wire::Max`]) and, after
//! decoding, the mailbox id length ([`MAX_MAILBOX_ID_LEN`]) and the signature length
//! ([`SIGNATURE_LEN`]); a violation is an [`std::io::ErrorKind::InvalidData`] error when
//! reading (carrying the typed [`wire::WireError`]) and an
//! [`std::io::ErrorKind::InvalidInput`] error when writing (so a sender learns locally
//! rather than from a reset stream). A [`Refusal`] is decoded without buffering its
//! map, so unknown entries in it cost no memory either. The size of a single envelope is
//! *not* a codec limit: the relay refuses oversized ones one by one
//! ([`Refusal::TooLarge`]), and a node that drains one it cannot open simply acks it.

use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use crate::{
    identity::{self, Identity},
    wire,
};

/// The protocol name negotiated on the stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/mailbox/1");

/// Cap on an encoded request (a full deposit batch of large envelopes fits).
pub const MAX_REQUEST_LEN: usize = 8 * 1024 * 1024;

/// Cap on an encoded response (one drain page).
///
/// The relay must fill a page by bytes as well as by count: see [`MAX_ITEM_OVERHEAD`].
pub const MAX_RESPONSE_LEN: usize = 8 * 1024 * 1024;

/// Most envelopes one [`MailboxRequest::Deposit`] may carry (and results one
/// [`MailboxResponse::Deposited`] may carry): one durable write on the relay.
/// Enforced while decoding, like every count limit here.
pub const MAX_DEPOSIT_BATCH: usize = 64;

/// Most sequence numbers one [`MailboxRequest::Ack`] may carry: four full drain pages,
/// so a node can ack what it stored in one request.
pub const MAX_ACK: usize = 1024;

/// Most items one [`MailboxResponse::Envelopes`] page may carry.
///
/// A relay clamps a drain's `max_items` to this (and to its own, possibly lower, limit).
pub const MAX_DRAIN_ITEMS: usize = 256;

/// Longest mailbox id in bytes (a peer id's bytes are far shorter).
pub const MAX_MAILBOX_ID_LEN: usize = 64;

/// Length of a challenge nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// Length of an Ed25519 signature in bytes; the only length the codec accepts.
pub const SIGNATURE_LEN: usize = 64;

/// Upper bound on the encoded size of one [`MailItem`] beyond its envelope bytes.
///
/// A page of items whose `envelope.len() + MAX_ITEM_OVERHEAD` sum, plus
/// [`MAX_PAGE_OVERHEAD`], to at most [`MAX_RESPONSE_LEN`] is guaranteed to encode within
/// [`MAX_RESPONSE_LEN`] (for envelopes below 4 GiB and any integer values).
pub const MAX_ITEM_OVERHEAD: usize = 64;

/// Upper bound on the encoded size of a [`MailboxResponse::Envelopes`] frame apart
/// from its items (see [`MAX_ITEM_OVERHEAD`]).
pub const MAX_PAGE_OVERHEAD: usize = 64;

/// Domain-separation prefix of the drain signature (see [`drain_message`]).
pub const DRAIN_CONTEXT: &[u8] = b"kith/mailbox/drain/1\0";

/// Domain-separation prefix of the ack signature (see [`ack_message`]).
pub const ACK_CONTEXT: &[u8] = b"kith/mailbox/ack/1\0";

/// Domain-separation prefix of a deposit ticket's signature (see [`ticket_message`]).
pub const TICKET_CONTEXT: &[u8] = b"kith/mailbox/ticket/1\0";

/// BLAKE3 key-derivation context for the digest of an ack's sequence numbers.
const ACK_SEQS_CONTEXT: &str = "kith mailbox ack seqs v1";

/// A request to a relay's mailbox service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxRequest {
    /// Store sealed envelopes for the owner of `mailbox`. Anyone may deposit.
    Deposit {
        /// The owner's peer id bytes ([`mailbox_id`]), 1 to [`MAX_MAILBOX_ID_LEN`] bytes.
        #[serde(with = "wire::bytes")]
        mailbox: Vec<u8>,
        /// Encoded [`crate::envelope`] envelopes, opaque to the relay; at most
        /// [`MAX_DEPOSIT_BATCH`].
        #[serde(
            serialize_with = "wire::bytes_seq::serialize",
            deserialize_with = "wire::Max::<MAX_DEPOSIT_BATCH>::bytes_seq"
        )]
        envelopes: Vec<Vec<u8>>,
        /// The owner's permission for the depositor (the requesting peer), if it has
        /// one: the deposit may then fill the mailbox's whole quota. Absent, invalid,
        /// expired or made for another peer, the deposit counts against the share
        /// open to anyone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<DepositTicket>,
    },
    /// Ask for a nonce to drain or ack the requester's own mailbox.
    Challenge,
    /// Fetch a page of the requester's mailbox.
    Drain {
        /// A nonce from [`MailboxResponse::Challenge`]; consumed by this request.
        #[serde(with = "wire::byte_array")]
        nonce: [u8; NONCE_LEN],
        /// The owner's signature over [`drain_message`] ([`SIGNATURE_LEN`] bytes).
        #[serde(with = "wire::bytes")]
        signature: Vec<u8>,
        /// Return only envelopes with a sequence number above this (`None`: from the
        /// start).
        after: Option<u64>,
        /// Most items wanted; the relay clamps it to its limits.
        max_items: u32,
    },
    /// Delete envelopes the owner has stored durably.
    Ack {
        /// A nonce from [`MailboxResponse::Challenge`]; consumed by this request.
        #[serde(with = "wire::byte_array")]
        nonce: [u8; NONCE_LEN],
        /// The owner's signature over [`ack_message`] ([`SIGNATURE_LEN`] bytes).
        #[serde(with = "wire::bytes")]
        signature: Vec<u8>,
        /// Sequence numbers to delete, at most [`MAX_ACK`].
        #[serde(deserialize_with = "wire::Max::<MAX_ACK>::seq")]
        seqs: Vec<u64>,
    },
}

/// A mailbox owner's signed permission for one peer to deposit into its mailboxes,
/// at any relay, until `not_after_ms` (see [`sign_ticket`], [`ticket_admits`]).
/// Bound to the depositor, so it is worth nothing to anyone else who sees it; it
/// travels to the depositor sealed, and to relays beside the deposits it covers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositTicket {
    /// Last moment (ms since the Unix epoch, the relay's clock) it admits a deposit.
    pub not_after_ms: u64,
    /// The owner's signature over [`ticket_message`].
    #[serde(with = "wire::byte_array")]
    pub signature: [u8; SIGNATURE_LEN],
}

/// As the node keeps one it holds.
impl From<kith_storage::HeldTicket> for DepositTicket {
    fn from(held: kith_storage::HeldTicket) -> DepositTicket {
        DepositTicket { not_after_ms: held.not_after_ms, signature: held.signature }
    }
}

impl From<&DepositTicket> for kith_storage::HeldTicket {
    fn from(ticket: &DepositTicket) -> kith_storage::HeldTicket {
        kith_storage::HeldTicket { not_after_ms: ticket.not_after_ms, signature: ticket.signature }
    }
}

impl std::fmt::Debug for DepositTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepositTicket").field("not_after_ms", &self.not_after_ms).finish_non_exhaustive()
    }
}

/// The bytes a mailbox owner signs to let `depositor` deposit until `not_after_ms`:
/// [`TICKET_CONTEXT`] ‖ owner ‖ depositor ‖ `not_after_ms` (`u64` big endian), peer
/// ids length-prefixed as in [`drain_message`]. No relay is named: a ticket holds at
/// every relay the owner uses, now or later.
pub fn ticket_message(owner: &PeerId, depositor: &PeerId, not_after_ms: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(TICKET_CONTEXT.len() + 2 * (8 + 40) + 8);
    msg.extend_from_slice(TICKET_CONTEXT);
    push_peer(&mut msg, owner);
    push_peer(&mut msg, depositor);
    msg.extend_from_slice(&not_after_ms.to_be_bytes());
    msg
}

/// `identity`'s ticket letting `depositor` deposit into its mailboxes until
/// `not_after_ms`.
pub fn sign_ticket(identity: &Identity, depositor: &PeerId, not_after_ms: u64) -> DepositTicket {
    DepositTicket { not_after_ms, signature: identity.sign(&ticket_message(&identity.peer_id(), depositor, not_after_ms)) }
}

/// Whether `ticket` lets `depositor` deposit into `owner`'s mailbox at `now_ms`:
/// signed by `owner` for `depositor`, and not expired.
pub fn ticket_admits(ticket: &DepositTicket, owner: &PeerId, depositor: &PeerId, now_ms: u64) -> bool {
    now_ms <= ticket.not_after_ms
        && identity::verify_signature(owner, &ticket_message(owner, depositor, ticket.not_after_ms), &ticket.signature).is_ok()
}

/// A relay's answer to a [`MailboxRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxResponse {
    /// The answer to a deposit: one result per envelope, in request order.
    Deposited {
        /// One entry per deposited envelope, at most [`MAX_DEPOSIT_BATCH`].
        #[serde(deserialize_with = "wire::Max::<MAX_DEPOSIT_BATCH>::seq")]
        results: Vec<DepositResult>,
    },
    /// The answer to a challenge request.
    Challenge {
        /// A fresh random nonce, valid once and briefly, for the requester's mailbox.
        #[serde(with = "wire::byte_array")]
        nonce: [u8; NONCE_LEN],
    },
    /// The answer to a drain: envelopes in ascending sequence order.
    Envelopes {
        /// At most [`MAX_DRAIN_ITEMS`] items.
        #[serde(deserialize_with = "wire::Max::<MAX_DRAIN_ITEMS>::seq")]
        items: Vec<MailItem>,
        /// Whether more envelopes follow the last item.
        more: bool,
    },
    /// The answer to an ack.
    Acked {
        /// How many envelopes were actually deleted (unknown sequence numbers count 0).
        removed: u32,
    },
    /// The whole request was refused.
    Refused(Refusal),
}

impl MailboxResponse {
    /// Which answer this is, for logs: a page of envelopes printed whole would be
    /// megabytes on one line.
    pub fn kind(&self) -> &'static str {
        match self {
            MailboxResponse::Deposited { .. } => "deposited",
            MailboxResponse::Challenge { .. } => "challenge",
            MailboxResponse::Envelopes { .. } => "envelopes",
            MailboxResponse::Acked { .. } => "acked",
            MailboxResponse::Refused(_) => "refused",
        }
    }
}

/// What the relay did with one deposited envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DepositResult {
    /// Stored durably (flushed before the response was sent).
    Stored,
    /// An identical envelope was already held durably; as good as `Stored`.
    Duplicate,
    /// Not stored.
    Refused(Refusal),
}

impl DepositResult {
    /// Whether the relay holds the envelope durably (`Stored` or `Duplicate`), so the
    /// sender may count it as sent.
    pub fn is_held(&self) -> bool {
        matches!(self, DepositResult::Stored | DepositResult::Duplicate)
    }
}

/// One envelope of a drained page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItem {
    /// Its sequence number in the mailbox: unique, never reused, ascending in a page.
    pub seq: u64,
    /// The sealed envelope, exactly as deposited.
    #[serde(with = "wire::bytes")]
    pub envelope: Vec<u8>,
    /// When the relay stored it (ms since the Unix epoch, relay clock).
    pub deposited_at_ms: u64,
}

/// Why a relay refused a request or one deposited envelope.
///
/// On the wire a refusal is a map with a `code` field (the [`Refusal::as_str`] code)
/// plus the variant's fields. A code this build does not know decodes as
/// [`Refusal::Unrecognized`] instead of failing the whole response, so relays can add
/// codes without breaking older nodes.
///
/// Decoding is written by hand rather than derived: serde's internally tagged enums
/// buffer the whole map before looking at the tag, so a hostile relay could make a
/// node hold millions of unknown entries; this decoder keeps only `code` and
/// `retry_after_ms` and skips everything else as it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The mailbox already holds as many envelopes as the relay allows.
    #[error("the recipient's mailbox is full (too many messages)")]
    QuotaCount,
    /// The mailbox would exceed the bytes the relay allows.
    #[error("the recipient's mailbox is full (too many bytes)")]
    QuotaBytes,
    /// The envelope (or request) is larger than this relay accepts.
    #[error("too large for this relay")]
    TooLarge,
    /// The relay's store as a whole is full.
    #[error("the relay's mailbox store is full")]
    StoreFull,
    /// Too many requests; wait before trying again.
    #[error("rate limited by the relay; retry in {retry_after_ms} ms")]
    RateLimited {
        /// How long to wait before retrying, in milliseconds.
        retry_after_ms: u64,
    },
    /// The relay does not serve this peer (its access policy excludes the requester or
    /// the mailbox owner).
    #[error("the relay does not serve this peer")]
    NotMember,
    /// The nonce is unknown, expired or already used, or the signature does not verify.
    #[error("challenge failed (unknown, expired or used nonce, or bad signature)")]
    BadChallenge,
    /// The relay's mailbox role is switched off.
    #[error("the relay's mailbox service is disabled")]
    Disabled,
    /// The request is malformed or inconsistent (e.g. a mailbox id that is no peer id).
    #[error("malformed mailbox request")]
    BadRequest,
    /// The relay's storage failed; retry later.
    #[error("relay storage failure; retry later")]
    Storage,
    /// A refusal code this build does not know (sent by a newer relay).
    #[error("refused by the relay for an unrecognized reason")]
    Unrecognized,
}

/// Longest refusal code accepted, in bytes; known codes are at most 13 bytes, and an
/// unknown one is only ever shown as [`Refusal::Unrecognized`].
pub const MAX_REFUSAL_CODE_LEN: usize = 64;

impl<'de> Deserialize<'de> for Refusal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Refusal, D::Error> {
        deserializer.deserialize_map(RefusalVisitor)
    }
}

/// The fields of a refusal map this build reads; everything else is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RefusalField {
    Code,
    RetryAfterMs,
    #[serde(other)]
    Other,
}

/// A refusal code, read as a bounded text.
#[derive(Deserialize)]
struct RefusalCode(#[serde(deserialize_with = "wire::Max::<MAX_REFUSAL_CODE_LEN>::text")] String);

struct RefusalVisitor;

impl<'de> serde::de::Visitor<'de> for RefusalVisitor {
    type Value = Refusal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a refusal map with a `code`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Refusal, A::Error> {
        use serde::de::Error as _;
        let mut code: Option<String> = None;
        let mut retry_after_ms: Option<u64> = None;
        while let Some(field) = map.next_key::<RefusalField>()? {
            match field {
                RefusalField::Code if code.is_some() => return Err(A::Error::duplicate_field("code")),
                RefusalField::Code => code = Some(map.next_value::<RefusalCode>()?.0),
                RefusalField::RetryAfterMs if retry_after_ms.is_some() => {
                    return Err(A::Error::duplicate_field("retry_after_ms"));
                }
                RefusalField::RetryAfterMs => retry_after_ms = Some(map.next_value()?),
                RefusalField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let code = code.ok_or_else(|| A::Error::missing_field("code"))?;
        if code == (Refusal::RateLimited { retry_after_ms: 0 }).as_str() {
            let retry_after_ms = retry_after_ms.ok_or_else(|| A::Error::missing_field("retry_after_ms"))?;
            return Ok(Refusal::RateLimited { retry_after_ms });
        }
        // `as_str` is the one table of codes; serializing uses the same names.
        Ok(Refusal::WITHOUT_FIELDS.into_iter().find(|r| r.as_str() == code).unwrap_or(Refusal::Unrecognized))
    }
}

impl Refusal {
    /// Every refusal that carries no fields, for decoding by code.
    const WITHOUT_FIELDS: [Refusal; 9] = [
        Refusal::QuotaCount,
        Refusal::QuotaBytes,
        Refusal::TooLarge,
        Refusal::StoreFull,
        Refusal::NotMember,
        Refusal::BadChallenge,
        Refusal::Disabled,
        Refusal::BadRequest,
        Refusal::Storage,
    ];
}

impl Refusal {
    /// A stable, machine-readable code (`"quota_count"`, `"rate_limited"`, …), the same
    /// as the `code` on the wire; for logs, metrics labels and `--json` output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::QuotaCount => "quota_count",
            Refusal::QuotaBytes => "quota_bytes",
            Refusal::TooLarge => "too_large",
            Refusal::StoreFull => "store_full",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::NotMember => "not_member",
            Refusal::BadChallenge => "bad_challenge",
            Refusal::Disabled => "disabled",
            Refusal::BadRequest => "bad_request",
            Refusal::Storage => "storage",
            Refusal::Unrecognized => "unrecognized",
        }
    }

    /// Whether sending the same bytes to the same relay again cannot succeed
    /// (`TooLarge`, `NotMember`, `BadRequest`, `Disabled`). Everything else (quotas,
    /// rate limits, storage, challenges, unknown codes) may clear up, so a sender
    /// retries with backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Refusal::TooLarge | Refusal::NotMember | Refusal::BadRequest | Refusal::Disabled
        )
    }
}

/// The mailbox id of `owner` as used on the wire: its peer id bytes.
pub fn mailbox_id(owner: &PeerId) -> Vec<u8> {
    owner.to_bytes()
}

/// The owner named by a mailbox id.
///
/// # Errors
/// [`Refusal::BadRequest`] if the bytes are not a peer id.
pub fn mailbox_owner(mailbox: &[u8]) -> Result<PeerId, Refusal> {
    PeerId::from_bytes(mailbox).map_err(|_| Refusal::BadRequest)
}

/// The bytes the owner signs to drain: [`DRAIN_CONTEXT`] ‖ relay ‖ owner ‖ nonce, each
/// peer id preceded by its length (`u64` big endian).
pub fn drain_message(relay: &PeerId, owner: &PeerId, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DRAIN_CONTEXT.len() + 2 * (8 + 40) + NONCE_LEN);
    msg.extend_from_slice(DRAIN_CONTEXT);
    push_peer(&mut msg, relay);
    push_peer(&mut msg, owner);
    msg.extend_from_slice(nonce);
    msg
}

/// The bytes the owner signs to ack: [`ACK_CONTEXT`] ‖ relay ‖ owner ‖ nonce ‖
/// BLAKE3 digest of the sequence numbers (count and each number as `u64` big endian,
/// in the given order), peer ids length-prefixed as in [`drain_message`].
pub fn ack_message(
    relay: &PeerId,
    owner: &PeerId,
    nonce: &[u8; NONCE_LEN],
    seqs: &[u64],
) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new_derive_key(ACK_SEQS_CONTEXT);
    hasher.update(&(seqs.len() as u64).to_be_bytes());
    for seq in seqs {
        hasher.update(&seq.to_be_bytes());
    }
    let digest = hasher.finalize();

    let mut msg = Vec::with_capacity(ACK_CONTEXT.len() + 2 * (8 + 40) + NONCE_LEN + 32);
    msg.extend_from_slice(ACK_CONTEXT);
    push_peer(&mut msg, relay);
    push_peer(&mut msg, owner);
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(digest.as_bytes());
    msg
}

fn push_peer(msg: &mut Vec<u8>, peer: &PeerId) {
    let bytes = peer.to_bytes();
    msg.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    msg.extend_from_slice(&bytes);
}

/// Signs a drain of `identity`'s mailbox at `relay` with `nonce`.
pub fn sign_drain(identity: &Identity, relay: &PeerId, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    identity
        .sign(&drain_message(relay, &identity.peer_id(), nonce))
        .to_vec()
}

/// Checks that `signature` is `owner`'s signature of a drain at `relay` with `nonce`.
/// Checks only the signature; whether the nonce was issued and is unused is the
/// relay's business.
///
/// # Errors
/// [`Refusal::BadChallenge`] if it does not verify (including malformed signatures and
/// owners whose peer id is not an Ed25519 key).
pub fn verify_drain(
    owner: &PeerId,
    relay: &PeerId,
    nonce: &[u8; NONCE_LEN],
    signature: &[u8],
) -> Result<(), Refusal> {
    identity::verify_signature(owner, &drain_message(relay, owner, nonce), signature)
        .map_err(|_| Refusal::BadChallenge)
}

/// Signs an ack of `seqs` in `identity`'s mailbox at `relay` with `nonce`.
pub fn sign_ack(
    identity: &Identity,
    relay: &PeerId,
    nonce: &[u8; NONCE_LEN],
    seqs: &[u64],
) -> Vec<u8> {
    identity
        .sign(&ack_message(relay, &identity.peer_id(), nonce, seqs))
        .to_vec()
}

/// Checks that `signature` is `owner`'s signature of an ack of exactly `seqs` (same
/// order) at `relay` with `nonce`.
///
/// # Errors
/// [`Refusal::BadChallenge`] if it does not verify.
pub fn verify_ack(
    owner: &PeerId,
    relay: &PeerId,
    nonce: &[u8; NONCE_LEN],
    seqs: &[u64],
    signature: &[u8],
) -> Result<(), Refusal> {
    identity::verify_signature(owner, &ack_message(relay, owner, nonce, seqs), signature)
        .map_err(|_| Refusal::BadChallenge)
}

impl MailboxRequest {
    /// A deposit of `envelopes` into `owner`'s mailbox, without a ticket.
    pub fn deposit(owner: &PeerId, envelopes: Vec<Vec<u8>>) -> MailboxRequest {
        MailboxRequest::deposit_with(owner, envelopes, None)
    }

    /// A deposit of `envelopes` into `owner`'s mailbox with `owner`'s `ticket` for us.
    pub fn deposit_with(owner: &PeerId, envelopes: Vec<Vec<u8>>, ticket: Option<DepositTicket>) -> MailboxRequest {
        MailboxRequest::Deposit {
            mailbox: mailbox_id(owner),
            envelopes,
            ticket,
        }
    }

    /// A signed drain of `identity`'s mailbox at `relay`.
    pub fn drain(
        identity: &Identity,
        relay: &PeerId,
        nonce: [u8; NONCE_LEN],
        after: Option<u64>,
        max_items: u32,
    ) -> MailboxRequest {
        MailboxRequest::Drain {
            signature: sign_drain(identity, relay, &nonce),
            nonce,
            after,
            max_items,
        }
    }

    /// A signed ack of `seqs` in `identity`'s mailbox at `relay`.
    pub fn ack(
        identity: &Identity,
        relay: &PeerId,
        nonce: [u8; NONCE_LEN],
        seqs: Vec<u64>,
    ) -> MailboxRequest {
        MailboxRequest::Ack {
            signature: sign_ack(identity, relay, &nonce, &seqs),
            nonce,
            seqs,
        }
    }
}

/// The request-response codec for [`PROTOCOL`] (see [`wire::Codec`]).
pub type Codec = wire::Codec<MailboxRequest, MailboxResponse>;

impl wire::Message for MailboxRequest {
    const MAX_LEN: usize = MAX_REQUEST_LEN;

    fn check(&self) -> Result<(), &'static str> {
        match self {
            MailboxRequest::Deposit { mailbox, envelopes, .. } => {
                if mailbox.is_empty() || mailbox.len() > MAX_MAILBOX_ID_LEN {
                    return Err("mailbox id length out of range");
                }
                if envelopes.len() > MAX_DEPOSIT_BATCH {
                    return Err("deposit batch too large");
                }
            }
            MailboxRequest::Challenge => {}
            MailboxRequest::Drain { signature, .. } => {
                if signature.len() != SIGNATURE_LEN {
                    return Err("signature has the wrong length");
                }
            }
            MailboxRequest::Ack {
                signature, seqs, ..
            } => {
                if signature.len() != SIGNATURE_LEN {
                    return Err("signature has the wrong length");
                }
                if seqs.len() > MAX_ACK {
                    return Err("too many sequence numbers in ack");
                }
            }
        }
        Ok(())
    }
}

impl wire::Message for MailboxResponse {
    const MAX_LEN: usize = MAX_RESPONSE_LEN;

    fn check(&self) -> Result<(), &'static str> {
        match self {
            MailboxResponse::Deposited { results } if results.len() > MAX_DEPOSIT_BATCH => {
                Err("too many deposit results")
            }
            MailboxResponse::Envelopes { items, .. } if items.len() > MAX_DRAIN_ITEMS => {
                Err("too many items in drain page")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use crate::wire::Message as _;
    use futures::{executor::block_on, io::Cursor};
    use libp2p::request_response::Codec as _;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{Frame, WireError, raw_frame, wire_error};

    fn fixed(n: u8) -> Identity {
        Identity::from_secrets([n; 32], [n.wrapping_add(100); 32])
    }

    fn requests() -> Vec<MailboxRequest> {
        let owner = fixed(1);
        let relay = fixed(2).peer_id();
        vec![
            MailboxRequest::deposit(
                &owner.peer_id(),
                vec![vec![1, 2, 3], vec![], vec![0xff; 300]],
            ),
            MailboxRequest::deposit(&owner.peer_id(), vec![]),
            MailboxRequest::deposit_with(&owner.peer_id(), vec![vec![4]], Some(sign_ticket(&owner, &relay, u64::MAX))),
            MailboxRequest::Challenge,
            MailboxRequest::drain(&owner, &relay, [7; NONCE_LEN], None, 10),
            MailboxRequest::drain(&owner, &relay, [8; NONCE_LEN], Some(u64::MAX), u32::MAX),
            MailboxRequest::ack(&owner, &relay, [9; NONCE_LEN], vec![1, 5, u64::MAX]),
            MailboxRequest::ack(&owner, &relay, [9; NONCE_LEN], vec![]),
        ]
    }

    fn responses() -> Vec<MailboxResponse> {
        let mut out = vec![
            MailboxResponse::Deposited {
                results: vec![
                    DepositResult::Stored,
                    DepositResult::Duplicate,
                    DepositResult::Refused(Refusal::QuotaBytes),
                    DepositResult::Refused(Refusal::RateLimited {
                        retry_after_ms: 1500,
                    }),
                ],
            },
            MailboxResponse::Challenge {
                nonce: [3; NONCE_LEN],
            },
            MailboxResponse::Envelopes {
                items: vec![
                    MailItem {
                        seq: 1,
                        envelope: vec![1; 10],
                        deposited_at_ms: 42,
                    },
                    MailItem {
                        seq: u64::MAX,
                        envelope: vec![],
                        deposited_at_ms: u64::MAX,
                    },
                ],
                more: true,
            },
            MailboxResponse::Envelopes {
                items: vec![],
                more: false,
            },
            MailboxResponse::Acked { removed: 3 },
        ];
        out.extend(all_refusals().into_iter().map(MailboxResponse::Refused));
        out
    }

    fn all_refusals() -> Vec<Refusal> {
        vec![
            Refusal::QuotaCount,
            Refusal::QuotaBytes,
            Refusal::TooLarge,
            Refusal::StoreFull,
            Refusal::RateLimited { retry_after_ms: 0 },
            Refusal::RateLimited {
                retry_after_ms: u64::MAX,
            },
            Refusal::NotMember,
            Refusal::BadChallenge,
            Refusal::Disabled,
            Refusal::BadRequest,
            Refusal::Storage,
            Refusal::Unrecognized,
        ]
    }

    async fn read_req(bytes: Vec<u8>) -> io::Result<MailboxRequest> {
        Codec::default().read_request(&PROTOCOL, &mut Cursor::new(bytes)).await
    }

    async fn read_res(bytes: Vec<u8>) -> io::Result<MailboxResponse> {
        Codec::default()
            .read_response(&PROTOCOL, &mut Cursor::new(bytes))
            .await
    }

    fn assert_invalid<T: std::fmt::Debug>(r: io::Result<T>) {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn every_request_round_trips() {
        for req in requests() {
            let mut buf = Cursor::new(Vec::new());
            Codec::default()
                .write_request(&PROTOCOL, &mut buf, req.clone())
                .await
                .unwrap();
            assert_eq!(read_req(buf.into_inner()).await.unwrap(), req);
        }
    }

    #[tokio::test]
    async fn every_response_round_trips() {
        for res in responses() {
            let mut buf = Cursor::new(Vec::new());
            Codec::default()
                .write_response(&PROTOCOL, &mut buf, res.clone())
                .await
                .unwrap();
            assert_eq!(read_res(buf.into_inner()).await.unwrap(), res);
        }
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        let mut buf = Cursor::new(Vec::new());
        Codec::default()
            .write_request(&PROTOCOL, &mut buf, requests().remove(0))
            .await
            .unwrap();
        let bytes = buf.into_inner();

        // Truncated anywhere.
        for cut in [1, 4, 5, bytes.len() - 1] {
            assert!(
                read_req(bytes[..cut].to_vec()).await.is_err(),
                "cut at {cut}"
            );
        }
        // Announced length above the caps: refused before reading the body.
        let huge = u32::MAX.to_be_bytes().to_vec();
        assert_invalid(read_req(huge.clone()).await);
        assert_invalid(read_res(huge).await);
        let just_over = u32::try_from(MAX_RESPONSE_LEN + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        assert_invalid(read_res(just_over).await);
        // Garbage body.
        let mut garbage = 8u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\xffnonsens");
        assert_invalid(read_req(garbage.clone()).await);
        assert_invalid(read_res(garbage).await);
        // A well-formed frame of the wrong type.
        assert_invalid(read_req(raw_frame(MailboxResponse::Acked { removed: 1 }, 1)).await);
        // Unknown variant name.
        assert_invalid(read_req(raw_frame("shutdown", 1)).await);
    }

    #[tokio::test]
    async fn unsupported_frame_version_is_typed() {
        for bytes in [
            raw_frame(MailboxRequest::Challenge, 2),
            raw_frame("a future body layout", 2),
        ] {
            let err = read_req(bytes).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
            assert!(
                matches!(inner, Some(WireError::UnsupportedVersion(2))),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn count_and_length_limits_are_enforced() {
        let owner = fixed(1).peer_id();
        let at_limit = [
            MailboxRequest::deposit(&owner, vec![vec![0]; MAX_DEPOSIT_BATCH]),
            MailboxRequest::Deposit {
                mailbox: vec![1; MAX_MAILBOX_ID_LEN],
                envelopes: vec![],
                ticket: None,
            },
            MailboxRequest::Ack {
                nonce: [0; NONCE_LEN],
                signature: vec![0; SIGNATURE_LEN],
                seqs: vec![7; MAX_ACK],
            },
        ];
        for req in at_limit {
            assert!(read_req(raw_frame(&req, 1)).await.is_ok());
        }

        let over_limit = [
            MailboxRequest::deposit(&owner, vec![vec![0]; MAX_DEPOSIT_BATCH + 1]),
            MailboxRequest::Deposit {
                mailbox: vec![1; MAX_MAILBOX_ID_LEN + 1],
                envelopes: vec![],
                ticket: None,
            },
            MailboxRequest::Deposit {
                mailbox: vec![],
                envelopes: vec![vec![1]],
                ticket: None,
            },
            MailboxRequest::Ack {
                nonce: [0; NONCE_LEN],
                signature: vec![0; SIGNATURE_LEN],
                seqs: vec![7; MAX_ACK + 1],
            },
            MailboxRequest::Ack {
                nonce: [0; NONCE_LEN],
                signature: vec![0; 63],
                seqs: vec![],
            },
            MailboxRequest::Drain {
                nonce: [0; NONCE_LEN],
                signature: vec![0; 65],
                after: None,
                max_items: 1,
            },
            MailboxRequest::Drain {
                nonce: [0; NONCE_LEN],
                signature: vec![],
                after: None,
                max_items: 1,
            },
        ];
        for req in over_limit {
            assert_invalid(read_req(raw_frame(&req, 1)).await);
            // The writer refuses locally.
            let err = Codec::default()
                .write_request(&PROTOCOL, &mut Cursor::new(Vec::new()), req)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }

        let item = MailItem {
            seq: 1,
            envelope: vec![1],
            deposited_at_ms: 0,
        };
        let over_limit = [
            MailboxResponse::Deposited {
                results: vec![DepositResult::Stored; MAX_DEPOSIT_BATCH + 1],
            },
            MailboxResponse::Envelopes {
                items: vec![item.clone(); MAX_DRAIN_ITEMS + 1],
                more: false,
            },
        ];
        for res in over_limit {
            assert_invalid(read_res(raw_frame(&res, 1)).await);
            let err = Codec::default()
                .write_response(&PROTOCOL, &mut Cursor::new(Vec::new()), res)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let full = MailboxResponse::Envelopes {
            items: vec![item; MAX_DRAIN_ITEMS],
            more: true,
        };
        assert!(read_res(raw_frame(&full, 1)).await.is_ok());

        // A nonce of the wrong length does not decode.
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum ShortNonce {
            Drain {
                #[serde(with = "wire::bytes")]
                nonce: Vec<u8>,
                #[serde(with = "wire::bytes")]
                signature: Vec<u8>,
                after: Option<u64>,
                max_items: u32,
            },
        }
        let short = ShortNonce::Drain {
            nonce: vec![0; 31],
            signature: vec![0; 64],
            after: None,
            max_items: 1,
        };
        assert_invalid(read_req(raw_frame(short, 1)).await);
    }

    fn assert_too_many<T: std::fmt::Debug>(r: io::Result<T>, limit: usize) {
        let err = r.unwrap_err();
        assert!(matches!(wire_error(&err), Some(WireError::TooMany { max }) if *max == limit), "{err:?}");
    }

    #[tokio::test]
    async fn count_limits_at_and_past_while_decoding() {
        let owner = fixed(1).peer_id();
        let deposit = |n| MailboxRequest::deposit(&owner, vec![vec![]; n]);
        let ack = |n| MailboxRequest::Ack { nonce: [0; NONCE_LEN], signature: vec![0; SIGNATURE_LEN], seqs: vec![0; n] };
        for (at, past, limit) in [
            (deposit(MAX_DEPOSIT_BATCH), deposit(MAX_DEPOSIT_BATCH + 1), MAX_DEPOSIT_BATCH),
            (ack(MAX_ACK), ack(MAX_ACK + 1), MAX_ACK),
        ] {
            assert_eq!(read_req(raw_frame(&at, 1)).await.unwrap(), at);
            assert_too_many(read_req(raw_frame(&past, 1)).await, limit);
        }
        let deposited = |n| MailboxResponse::Deposited { results: vec![DepositResult::Duplicate; n] };
        let item = MailItem { seq: 0, envelope: vec![], deposited_at_ms: 0 };
        let page = |n| MailboxResponse::Envelopes { items: vec![item.clone(); n], more: false };
        for (at, past, limit) in [
            (deposited(MAX_DEPOSIT_BATCH), deposited(MAX_DEPOSIT_BATCH + 1), MAX_DEPOSIT_BATCH),
            (page(MAX_DRAIN_ITEMS), page(MAX_DRAIN_ITEMS + 1), MAX_DRAIN_ITEMS),
        ] {
            assert_eq!(read_res(raw_frame(&at, 1)).await.unwrap(), at);
            assert_too_many(read_res(raw_frame(&past, 1)).await, limit);
        }
    }

    #[test]
    fn refusals_are_decoded_without_buffering_and_bound_their_code() {
        #[derive(Serialize)]
        struct Raw<'a> {
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_ms: Option<u64>,
            junk: Vec<Vec<u64>>,
        }
        let raw = |code: &str, retry_after_ms, junk| wire::encode(&Raw { code, retry_after_ms, junk }).unwrap();
        // Unknown entries are skipped, whatever they hold.
        let r: Refusal = wire::decode(&raw("rate_limited", Some(9), vec![vec![1; 50]; 50]), 1 << 20).unwrap();
        assert_eq!(r, Refusal::RateLimited { retry_after_ms: 9 });
        // A code of MAX_REFUSAL_CODE_LEN bytes is merely unknown; one byte more is refused.
        let at = "x".repeat(MAX_REFUSAL_CODE_LEN);
        assert_eq!(wire::decode::<Refusal>(&raw(&at, None, vec![]), 1024).unwrap(), Refusal::Unrecognized);
        let past = "x".repeat(MAX_REFUSAL_CODE_LEN + 1);
        let r = wire::decode::<Refusal>(&raw(&past, None, vec![]), 1024);
        assert!(
            matches!(r, Err(WireError::TooLong { len, max: MAX_REFUSAL_CODE_LEN }) if len == MAX_REFUSAL_CODE_LEN + 1),
            "{r:?}"
        );
        // A rate limit without its delay, a refusal without a code, a second code.
        assert!(matches!(wire::decode::<Refusal>(&raw("rate_limited", None, vec![]), 1024), Err(WireError::Malformed(_))));
        let no_code = wire::encode(&std::collections::BTreeMap::from([("retry_after_ms", 1u64)])).unwrap();
        assert!(matches!(wire::decode::<Refusal>(&no_code, 1024), Err(WireError::Malformed(_))));
        let twice = [0xa2, 0x64, b'c', b'o', b'd', b'e', 0x63, b'a', b'b', b'c', 0x64, b'c', b'o', b'd', b'e', 0x60];
        assert!(matches!(wire::decode::<Refusal>(&twice, 1024), Err(WireError::Malformed(_))));
    }

    #[tokio::test]
    async fn oversized_frames_fail_on_write() {
        // 9 envelopes of 1 MiB exceed the 8 MiB request cap.
        let req = MailboxRequest::deposit(&fixed(1).peer_id(), vec![vec![0; 1 << 20]; 9]);
        let err = Codec::default()
            .write_request(&PROTOCOL, &mut Cursor::new(Vec::new()), req)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn page_overhead_bounds_hold() {
        // Worst case integers, a large envelope, a full page.
        let envelope_len = 256 * 1024;
        let item = MailItem {
            seq: u64::MAX,
            envelope: vec![0; envelope_len],
            deposited_at_ms: u64::MAX,
        };
        let one = wire::encode(&item).unwrap().len();
        assert!(
            one <= envelope_len + MAX_ITEM_OVERHEAD,
            "item encodes to {one}"
        );
        let small = MailItem {
            seq: u64::MAX,
            envelope: vec![0; 70_000],
            deposited_at_ms: u64::MAX,
        };
        let page = MailboxResponse::Envelopes {
            items: vec![small; MAX_DRAIN_ITEMS],
            more: true,
        };
        let len = wire::encode(&Frame {
            v: wire::PROTOCOL_FRAME_VERSION,
            body: &page,
        })
        .unwrap()
        .len();
        let bound = MAX_PAGE_OVERHEAD + MAX_DRAIN_ITEMS * (70_000 + MAX_ITEM_OVERHEAD);
        assert!(len <= bound, "page encodes to {len}, bound {bound}");
    }

    #[test]
    fn refusal_codes_match_the_wire() {
        for refusal in all_refusals() {
            let value: ciborium::Value =
                ciborium::de::from_reader(wire::encode(&refusal).unwrap().as_slice()).unwrap();
            let code = value
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_text() == Some("code"))
                .and_then(|(_, v)| v.as_text().map(str::to_owned))
                .unwrap();
            assert_eq!(code, refusal.as_str());
            assert!(!refusal.to_string().is_empty());
        }
        assert_eq!(
            Refusal::RateLimited {
                retry_after_ms: 250
            }
            .to_string(),
            "rate limited by the relay; retry in 250 ms"
        );
    }

    #[test]
    fn unknown_refusal_codes_decode_as_unrecognized() {
        #[derive(Serialize)]
        struct Future {
            code: &'static str,
            detail: u32,
        }
        let bytes = wire::encode(&Future {
            code: "banned_forever",
            detail: 3,
        })
        .unwrap();
        let refusal: Refusal = wire::decode(&bytes, 1024).unwrap();
        assert_eq!(refusal, Refusal::Unrecognized);
        assert!(!refusal.is_permanent());
        // Inside a response too.
        let res: MailboxResponse = wire::decode(
            &wire::encode(&std::collections::BTreeMap::from([(
                "refused",
                Future {
                    code: "banned_forever",
                    detail: 3,
                },
            )]))
            .unwrap(),
            1024,
        )
        .unwrap();
        assert_eq!(res, MailboxResponse::Refused(Refusal::Unrecognized));
    }

    #[test]
    fn permanence() {
        let permanent: Vec<&str> = all_refusals()
            .into_iter()
            .filter(Refusal::is_permanent)
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            permanent,
            ["too_large", "not_member", "disabled", "bad_request"]
        );
        assert!(DepositResult::Stored.is_held());
        assert!(DepositResult::Duplicate.is_held());
        assert!(!DepositResult::Refused(Refusal::Storage).is_held());
    }

    #[test]
    fn mailbox_ids_round_trip() {
        let owner = fixed(4).peer_id();
        let id = mailbox_id(&owner);
        assert!(!id.is_empty() && id.len() <= MAX_MAILBOX_ID_LEN);
        assert_eq!(mailbox_owner(&id), Ok(owner));
        assert_eq!(mailbox_owner(b"not a peer id"), Err(Refusal::BadRequest));
        assert_eq!(mailbox_owner(&[]), Err(Refusal::BadRequest));
    }

    #[test]
    fn drain_signatures() {
        let owner = fixed(1);
        let relay = fixed(2).peer_id();
        let nonce = [5; NONCE_LEN];
        let sig = sign_drain(&owner, &relay, &nonce);
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert_eq!(verify_drain(&owner.peer_id(), &relay, &nonce, &sig), Ok(()));

        let other = fixed(3).peer_id();
        let bad = Err(Refusal::BadChallenge);
        // Wrong relay, owner, nonce.
        assert_eq!(verify_drain(&owner.peer_id(), &other, &nonce, &sig), bad);
        assert_eq!(verify_drain(&other, &relay, &nonce, &sig), bad);
        assert_eq!(
            verify_drain(&owner.peer_id(), &relay, &[6; NONCE_LEN], &sig),
            bad
        );
        // Garbage signatures.
        let mut flipped = sig.clone();
        flipped[0] ^= 1;
        assert_eq!(
            verify_drain(&owner.peer_id(), &relay, &nonce, &flipped),
            bad
        );
        for garbage in [&[][..], &sig[..63], &[0xff; 64][..], &[0; 200][..]] {
            assert_eq!(verify_drain(&owner.peer_id(), &relay, &nonce, garbage), bad);
        }
        // An owner that is no Ed25519 key.
        assert_eq!(verify_drain(&PeerId::random(), &relay, &nonce, &sig), bad);
        // Relay and owner swapped.
        let swapped = fixed(2);
        let sig2 = sign_drain(&swapped, &owner.peer_id(), &nonce);
        assert_eq!(verify_drain(&owner.peer_id(), &relay, &nonce, &sig2), bad);
        // An ack signature is not a drain signature and vice versa.
        let ack = sign_ack(&owner, &relay, &nonce, &[]);
        assert_eq!(verify_drain(&owner.peer_id(), &relay, &nonce, &ack), bad);
        assert_eq!(verify_ack(&owner.peer_id(), &relay, &nonce, &[], &sig), bad);
    }

    #[test]
    fn ack_signatures() {
        let owner = fixed(1);
        let relay = fixed(2).peer_id();
        let nonce = [5; NONCE_LEN];
        let seqs = [1, 2, 40];
        let sig = sign_ack(&owner, &relay, &nonce, &seqs);
        assert_eq!(
            verify_ack(&owner.peer_id(), &relay, &nonce, &seqs, &sig),
            Ok(())
        );

        let other = fixed(3).peer_id();
        let bad = Err(Refusal::BadChallenge);
        assert_eq!(
            verify_ack(&owner.peer_id(), &other, &nonce, &seqs, &sig),
            bad
        );
        assert_eq!(verify_ack(&other, &relay, &nonce, &seqs, &sig), bad);
        assert_eq!(
            verify_ack(&owner.peer_id(), &relay, &[0; NONCE_LEN], &seqs, &sig),
            bad
        );
        // Tampered sequence numbers: changed, added, dropped, reordered.
        for tampered in [&[1, 2, 41][..], &[1, 2, 40, 41], &[1, 2], &[2, 1, 40], &[]] {
            assert_eq!(
                verify_ack(&owner.peer_id(), &relay, &nonce, tampered, &sig),
                bad
            );
        }
        assert_eq!(
            verify_ack(&owner.peer_id(), &relay, &nonce, &seqs, &[1; 64]),
            bad
        );
        assert_eq!(
            verify_ack(&owner.peer_id(), &relay, &nonce, &seqs, &sig[1..]),
            bad
        );

        // The request constructors sign what they carry.
        let MailboxRequest::Ack {
            nonce: n,
            signature,
            seqs: s,
        } = MailboxRequest::ack(&owner, &relay, nonce, seqs.to_vec())
        else {
            panic!("not an ack");
        };
        assert_eq!(
            verify_ack(&owner.peer_id(), &relay, &n, &s, &signature),
            Ok(())
        );
        let MailboxRequest::Drain {
            nonce: n,
            signature,
            ..
        } = MailboxRequest::drain(&owner, &relay, nonce, Some(3), 5)
        else {
            panic!("not a drain");
        };
        assert_eq!(
            verify_drain(&owner.peer_id(), &relay, &n, &signature),
            Ok(())
        );
    }

    #[test]
    fn signed_messages_are_domain_separated() {
        let relay = fixed(2).peer_id();
        let owner = fixed(1).peer_id();
        let nonce = [0; NONCE_LEN];
        let drain = drain_message(&relay, &owner, &nonce);
        let ack = ack_message(&relay, &owner, &nonce, &[]);
        assert!(drain.starts_with(DRAIN_CONTEXT));
        assert!(ack.starts_with(ACK_CONTEXT));
        assert_ne!(drain_message(&owner, &relay, &nonce), drain);
        for other in [
            identity::BINDING_CONTEXT,
            crate::peer_record::RECORD_SIGNATURE_CONTEXT,
        ] {
            assert!(!drain.starts_with(other) && !ack.starts_with(other));
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = wire::decode::<Frame<MailboxRequest>>(&bytes, MAX_REQUEST_LEN);
            let _ = wire::decode::<Frame<MailboxResponse>>(&bytes, MAX_RESPONSE_LEN);
            let _ = wire::decode::<Refusal>(&bytes, 1024);
            let mut framed = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = block_on(read_req(framed.clone()));
            let _ = block_on(read_res(framed));
            let _ = block_on(read_req(bytes));
        }

        #[test]
        fn corrupted_requests_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>(), which in 0usize..7) {
            let req = requests().swap_remove(which);
            let mut bytes = raw_frame(&req, 1);
            let i = index.index(bytes.len());
            bytes[i] = byte;
            if let Ok(got) = block_on(read_req(bytes)) {
                prop_assert!(got.check().is_ok());
            }
        }

        #[test]
        fn arbitrary_pages_round_trip(
            items in proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), any::<u64>()),
                0..16,
            ),
            more in any::<bool>(),
        ) {
            let res = MailboxResponse::Envelopes {
                items: items
                    .into_iter()
                    .map(|(seq, envelope, deposited_at_ms)| MailItem { seq, envelope, deposited_at_ms })
                    .collect(),
                more,
            };
            let got = block_on(read_res(raw_frame(&res, 1))).unwrap();
            prop_assert_eq!(got, res);
        }
    }

    #[test]
    fn a_ticket_admits_only_its_depositor_into_its_owners_mailbox_until_it_expires() {
        let (owner, depositor, other) = (fixed(1), fixed(2).peer_id(), fixed(3));
        let ticket = sign_ticket(&owner, &depositor, 1_000);
        assert!(ticket_admits(&ticket, &owner.peer_id(), &depositor, 999));
        assert!(ticket_admits(&ticket, &owner.peer_id(), &depositor, 1_000), "at the edge");
        assert!(!ticket_admits(&ticket, &owner.peer_id(), &depositor, 1_001), "expired");
        assert!(!ticket_admits(&ticket, &owner.peer_id(), &other.peer_id(), 999), "borrowed by another peer");
        assert!(!ticket_admits(&ticket, &other.peer_id(), &depositor, 999), "for another mailbox");
        let forged = sign_ticket(&other, &depositor, 1_000);
        assert!(!ticket_admits(&forged, &owner.peer_id(), &depositor, 999), "not signed by the owner");
        let stretched = DepositTicket { not_after_ms: 5_000, ..ticket.clone() };
        assert!(!ticket_admits(&stretched, &owner.peer_id(), &depositor, 999), "its expiry is signed");
    }
}
