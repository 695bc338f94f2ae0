//! Contact requests from strangers: how much of them a node keeps.
//!
//! Anyone can seal an envelope to a node whose key they know, and a text from
//! a stranger is held as a contact request (a `pending_in` contact with its
//! conversation, out of the inbox) until the user accepts, rejects or blocks.
//! Without bounds, one stranger (or many cheap identities) could fill the disk.
//! So a node holds at most
//!
//! - [`MAX_HELD_MESSAGES`] texts and [`MAX_HELD_BYTES`] bytes of text per
//!   stranger, and
//! - [`MAX_PENDING_REQUESTS`] strangers' requests at once, hence at most
//!   [`MAX_HELD_BYTES_TOTAL`] bytes of strangers' text in all.
//!
//! Past a bound, the new item is refused with
//! [`RejectReason::Quota`](crate::dm::RejectReason::Quota) and nothing is
//! written; what is held stays (no eviction: a flood cannot push out the
//! requests that came first, and the sender learns that its message failed).
//! Accepting, rejecting or blocking a request frees its room. An invite's
//! token is never refused: redeeming it makes a contact, not a request.
//!
//! A contact request also brings addresses and relays; a contact keeps at most
//! [`MAX_CONTACT_ADDRS`] addresses (the newest announced first) and
//! [`MAX_CONTACT_RELAYS`] relays, each at most [`MAX_ADDR_LEN`] bytes as text.

use std::collections::HashMap;

use kith_storage::{ContactState, ConversationId, Multiaddr, Store, StoreError, Usage};

use crate::payload::{self, MAX_TEXT_LEN};

/// Texts held per stranger: enough to introduce oneself.
pub const MAX_HELD_MESSAGES: usize = 20;

/// Bytes of text held per stranger: one text of the largest size
/// ([`MAX_TEXT_LEN`]) fits.
pub const MAX_HELD_BYTES: usize = MAX_TEXT_LEN;

/// Strangers whose requests are held at once (contacts in `pending_in`).
pub const MAX_PENDING_REQUESTS: usize = 256;

/// Texts held from all strangers together (derived).
pub const MAX_HELD_MESSAGES_TOTAL: usize = MAX_PENDING_REQUESTS * MAX_HELD_MESSAGES;

/// Bytes of text held from all strangers together (derived): 16 MiB.
pub const MAX_HELD_BYTES_TOTAL: usize = MAX_PENDING_REQUESTS * MAX_HELD_BYTES;

/// Addresses kept per contact: a node rarely has more than a handful (IPv4,
/// IPv6, TCP, QUIC, a relay circuit or two).
pub const MAX_CONTACT_ADDRS: usize = 16;

/// Relays kept per contact (users pin two or three).
pub const MAX_CONTACT_RELAYS: usize = 8;

/// Longest address or relay kept, in bytes of its text form: a relay circuit
/// address with two peer ids is about 200.
pub const MAX_ADDR_LEN: usize = 256;

/// Why a stranger's item was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// This stranger already has [`MAX_HELD_MESSAGES`] texts or
    /// [`MAX_HELD_BYTES`] bytes held.
    #[error("this stranger's request holds as much as it may")]
    StrangerFull,
    /// [`MAX_PENDING_REQUESTS`] requests are already waiting for an answer.
    #[error("too many contact requests are waiting")]
    TooManyRequests,
}

/// What one batch of envelopes adds to the held requests, on top of what is
/// stored: the stored counts are read once per batch, then kept up to date
/// here as the batch's items are admitted.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Per stranger (peer id): what its conversation holds, with this batch.
    held: HashMap<String, Usage>,
    /// Requests waiting, with this batch (read from the store on first use).
    pending: Option<usize>,
}

impl Tally {
    /// Admits a text of `len` bytes from `peer` into the request held in
    /// `conversation`; `new_request` if that request does not exist yet.
    /// On success the text is counted; on refusal nothing changes.
    pub(crate) fn admit_text(
        &mut self,
        store: &Store,
        peer: &str,
        conversation: ConversationId,
        new_request: bool,
        len: usize,
    ) -> Result<Result<(), QuotaError>, StoreError> {
        if new_request && let Err(e) = self.room_for_request(store)? {
            return Ok(Err(e));
        }
        let usage = match self.held.get(peer) {
            Some(usage) => *usage,
            None => store.messages().usage(conversation)?,
        };
        if usage.messages >= MAX_HELD_MESSAGES || usage.text_bytes.saturating_add(len) > MAX_HELD_BYTES {
            return Ok(Err(QuotaError::StrangerFull));
        }
        self.held.insert(
            peer.to_owned(),
            Usage { messages: usage.messages + 1, text_bytes: usage.text_bytes + len },
        );
        if new_request {
            self.count_request();
        }
        Ok(Ok(()))
    }

    /// Admits a new request that holds no text (a bare contact request).
    pub(crate) fn admit_request(&mut self, store: &Store) -> Result<Result<(), QuotaError>, StoreError> {
        if let Err(e) = self.room_for_request(store)? {
            return Ok(Err(e));
        }
        self.count_request();
        Ok(Ok(()))
    }

    fn room_for_request(&mut self, store: &Store) -> Result<Result<(), QuotaError>, StoreError> {
        let pending = match self.pending {
            Some(n) => n,
            None => *self.pending.insert(store.contacts().count(ContactState::PendingIn)?),
        };
        Ok(if pending >= MAX_PENDING_REQUESTS { Err(QuotaError::TooManyRequests) } else { Ok(()) })
    }

    fn count_request(&mut self) {
        if let Some(n) = &mut self.pending {
            *n += 1;
        }
    }
}

/// Multiaddr byte strings from a payload, bounded: at most `max` that parse
/// and are at most [`MAX_ADDR_LEN`] bytes as text, in the order given.
pub(crate) fn bounded_addrs(bytes: &[Vec<u8>], max: usize) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in payload::addrs_of(bytes) {
        if out.len() == max {
            break;
        }
        if addr.to_string().len() <= MAX_ADDR_LEN && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// A contact's addresses after it announced `fresh` ones: those first, then
/// the ones it had, without repeats, at most [`MAX_CONTACT_ADDRS`].
pub(crate) fn merge_addrs(fresh: &[Multiaddr], known: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::with_capacity(MAX_CONTACT_ADDRS);
    for addr in fresh.iter().chain(known) {
        if out.len() == MAX_CONTACT_ADDRS {
            break;
        }
        if !out.contains(addr) {
            out.push(addr.clone());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_storage::{Contact, ConversationKind, Direction, Message, MessageId, MessageState};

    use super::*;

    fn tcp(port: u16) -> libp2p::Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn addresses_are_bounded_newest_first() {
        let many: Vec<Vec<u8>> = (0..100).map(|p| tcp(p).to_vec()).collect();
        let fresh = bounded_addrs(&many, MAX_CONTACT_ADDRS);
        assert_eq!(fresh.len(), MAX_CONTACT_ADDRS);
        assert_eq!(fresh[0], tcp(0));
        // An over-long address (a long DNS name) is left out; garbage too.
        let long: libp2p::Multiaddr = format!("/dns4/{}/tcp/1", "a".repeat(MAX_ADDR_LEN)).parse().unwrap();
        let kept = bounded_addrs(&[long.to_vec(), b"garbage".to_vec(), tcp(7).to_vec(), tcp(7).to_vec()], 4);
        assert_eq!(kept, [tcp(7)]);
        let known: Vec<libp2p::Multiaddr> = (200..220).map(tcp).collect();
        let merged = merge_addrs(&[tcp(1), tcp(200)], &known);
        assert_eq!(merged.len(), MAX_CONTACT_ADDRS);
        assert_eq!(&merged[..3], [tcp(1), tcp(200), tcp(201)]);
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_stranger_is_held_up_to_its_bounds() {
        let (_dir, store) = store();
        let conv = ConversationId([1; 16]);
        let mut tally = Tally::default();
        for _ in 0..MAX_HELD_MESSAGES {
            assert_eq!(tally.admit_text(&store, "s", conv, false, 1).unwrap(), Ok(()));
        }
        assert_eq!(tally.admit_text(&store, "s", conv, false, 1).unwrap(), Err(QuotaError::StrangerFull));
        let other = ConversationId([2; 16]);
        assert_eq!(tally.admit_text(&store, "t", other, false, MAX_HELD_BYTES).unwrap(), Ok(()));
        assert_eq!(tally.admit_text(&store, "t", other, false, 1).unwrap(), Err(QuotaError::StrangerFull));

        // What is stored counts: a new batch (tally) sees the held texts.
        let kind = ConversationKind::Direct { peer_id: "u".into() };
        store.conversations().get_or_create(conv, kind, 0).unwrap();
        let held: Vec<Message> = (0..MAX_HELD_MESSAGES as u8)
            .map(|n| Message {
                id: MessageId([n; 16]),
                conversation: conv,
                author: "u".into(),
                lamport: 1,
                sent_at_ms: 1,
                received_at_ms: 1,
                text: "x".into(),
                state: MessageState::Delivered,
                direction: Direction::Incoming,
                file: None,
                link: None,
            })
            .collect();
        store.insert_incoming_batch(&held).unwrap();
        let mut next_batch = Tally::default();
        assert_eq!(next_batch.admit_text(&store, "u", conv, false, 1).unwrap(), Err(QuotaError::StrangerFull));
    }

    #[test]
    fn requests_are_bounded_in_number() {
        let (_dir, store) = store();
        for _ in 0..MAX_PENDING_REQUESTS - 1 {
            let contact = Contact {
                peer_id: libp2p::PeerId::random(),
                alias: None,
                display_name: None,
                state: ContactState::PendingIn,
                e2e_public: None,
                binding: None,
                addrs: vec![],
                relays: vec![],
                added_at_ms: 0,
                updated_at_ms: 0,
                last_seen_ms: None,
                verified_at_ms: None,
                key_changed_at_ms: None,
            };
            store.contacts().put(&contact).unwrap();
        }
        let mut tally = Tally::default();
        let conv = ConversationId([9; 16]);
        assert_eq!(tally.admit_text(&store, "last", conv, true, 1).unwrap(), Ok(()));
        assert_eq!(tally.admit_request(&store).unwrap(), Err(QuotaError::TooManyRequests));
        assert_eq!(
            tally.admit_text(&store, "one more", ConversationId([8; 16]), true, 1).unwrap(),
            Err(QuotaError::TooManyRequests)
        );
        // The one admitted may go on writing.
        assert_eq!(tally.admit_text(&store, "last", conv, false, 1).unwrap(), Ok(()));
    }
}
