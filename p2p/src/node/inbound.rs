//! Handling a batch of incoming envelopes: open, authenticate, apply, store, answer.
//!
//! The order matters for durability: everything that the answer reports as
//! [`DmResult::Stored`] is written here and must be flushed before the answer leaves:
//! the caller holds the answer for the flush (one group commit covers the batch and
//! whatever else was written meanwhile). Blocked senders are dropped before anything
//! is stored.
//!
//! A text that storage will refuse — one deleted with its conversation, or one outside
//! the replay window ([`kith_storage::Refusal`]) — is answered before it has any side
//! effect, so a replayed envelope cannot bring back a deleted contact request either.
//! A `ContactRequest` or `ContactAccepted` payload carries no message id but the
//! time its sender issued it: one outside the window, or not issued after the last
//! one taken from its sender (a copy a relay kept), has no effect
//! ([`Store::contact_payload_refusal`]). Strangers' requests are bounded by
//! [`crate::requests`].

use std::collections::{HashMap, HashSet};
use std::collections::hash_map::Entry;

use kith_storage::{
    Contact, ContactPayload, ContactState, ConversationId, ConversationKind, Direction, GroupId, Inserted, Message, MessageId, MessageState, Refusal, Store,
};
use libp2p::PeerId;

use super::Event;
use crate::dm::{DmResult, RejectReason};
use crate::envelope::{self, Opener};
use crate::identity::{Binding, KeyUpdate};
use crate::ops::{self, OpError};
use crate::config::check_display_name;
use crate::payload::{Payload, ReceiptKind};
use crate::ratchet::{Learned, Offer, RatchetError, Ratchets, copy_digest};
use crate::requests::{self, MAX_CONTACT_ADDRS, MAX_CONTACT_RELAYS, QuotaError, Tally};
use crate::views::{ContactView, GroupReceiptsView};
use crate::wire::WireError;

/// What a batch did besides its answer.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Events to publish once the answer is on its way.
    pub(crate) events: Vec<Event>,
    /// Whether new outbox entries were queued (e.g. an acceptance to send back).
    pub(crate) queued: bool,
    /// Contacts whose keys or addresses changed (their queues may now proceed).
    pub(crate) touched: Vec<PeerId>,
    /// New messages from accepted contacts, by author: what a delivery receipt covers
    /// when they came through a relay (a direct sender learns it from the answer).
    pub(crate) stored: Vec<(String, MessageId)>,
    /// Group payloads, for the actor (which owns group state) to apply in arrival
    /// order and answer: their results here are provisional.
    pub(crate) group: Vec<GroupDelivery>,
    /// Typing events, published only with presence on.
    pub(crate) typing: Vec<Event>,
    /// Presence announcements of accepted contacts: (who, online, for how long).
    pub(crate) presence: Vec<(PeerId, bool, std::time::Duration)>,
    /// Contacts whose ratchet messages we could not open (no session, an unknown
    /// one-time key): they get new keys with `reset`.
    pub(crate) rekey: Vec<PeerId>,
    /// Contacts whose ratchet keys with us changed (a reset, another identity): what
    /// we sealed for them before must be sealed again.
    pub(crate) rekeyed: Vec<PeerId>,
    /// Contact payloads taken: (sender, kind, issue time). Their marks are written
    /// once the batch is stored ([`Store::note_contact_payload`]), so that one
    /// answered `Storage` comes again and is taken then; until then they refuse a
    /// copy later in the same batch.
    heard: Vec<(PeerId, ContactPayload, u64)>,
    /// Receipts taken: (their sender, the ids they name), so that no relay is sent
    /// again what the sender says it has (see `node::mailbox_client`).
    pub(crate) receipted: Vec<(PeerId, Vec<MessageId>)>,
    /// Contacts that lost their sessions with us (a reset offer): what we sent them
    /// that is not known delivered may never open there, so it goes again.
    pub(crate) resend: Vec<PeerId>,
    /// Ratchet messages opened: (index in the batch, copy digest, plaintext). The
    /// caller records each once its result is final, or holds its plaintext for the
    /// retry (see [`Ratchets::hold`]), then writes the ratchet state.
    pub(crate) ratcheted: Vec<(usize, [u8; 16], Vec<u8>)>,
}

/// A group payload ([`Payload::GroupOps`], [`Payload::GroupSync`], [`Payload::GroupKey`]) as it arrived.
pub(crate) struct GroupDelivery {
    /// Its position in the batch (its result's index).
    pub(crate) index: usize,
    /// The authenticated sender.
    pub(crate) sender: PeerId,
    /// The payload.
    pub(crate) payload: Payload,
}

/// The receiving context: who we are and where things go.
pub(crate) struct Inbound<'a> {
    pub(crate) store: &'a Store,
    pub(crate) me: PeerId,
    pub(crate) my_name: Option<&'a str>,
    pub(crate) opener: &'a mut Opener,
    pub(crate) ratchets: &'a mut Ratchets,
    /// How long a contact's payloads sealed without the ratchet are still taken after
    /// its first ratcheted one ([`crate::ratchet::LEGACY_GRACE`]).
    pub(crate) legacy_grace: std::time::Duration,
    /// What this batch adds to strangers' held requests (start with the default).
    pub(crate) tally: Tally,
    /// Whether the batch was drained from a relay (else a peer sent it directly).
    pub(crate) from_relay: bool,
}

enum Step {
    Done(DmResult),
    /// Store this message; the result follows from the insert.
    Insert(Message, bool),
}

impl Inbound<'_> {
    /// Apply a batch; returns one result per envelope, in order.
    pub(crate) fn apply(&mut self, envelopes: &[Vec<u8>]) -> (Vec<DmResult>, Outcome) {
        let mut outcome = Outcome::default();
        let mut steps = Vec::with_capacity(envelopes.len());
        for (index, bytes) in envelopes.iter().enumerate() {
            let step = match self.one(index, bytes, &mut outcome) {
                Ok(step) => step,
                Err(reason) => {
                    tracing::debug!(%reason, "rejected envelope");
                    Step::Done(DmResult::Rejected(reason))
                }
            };
            steps.push(step);
        }
        let to_insert: Vec<Message> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Insert(m, _) => Some(m.clone()),
                Step::Done(_) => None,
            })
            .collect();
        // One write for the batch; the caller's flush makes it durable with any
        // contact changes above.
        let inserted = match self.store.stage_incoming(&to_insert) {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::error!(error = %e, "storing incoming messages failed");
                // The state that opened them goes too, so the copies opened again;
                // and nothing of the batch is acted on. So no item may be answered as
                // taken, not even one that needed no message stored (a group key, new
                // pre-keys): its sender or relay keeps it and tries again.
                self.ratchets.rollback();
                let results = steps.iter().map(|s| match s {
                    Step::Done(r @ DmResult::Rejected(_)) => *r,
                    Step::Done(_) | Step::Insert(..) => DmResult::Rejected(RejectReason::Storage),
                });
                // Resets offered for relay mail refused for good (still answered so,
                // and deleted by the relay) must reach their senders all the same.
                let rekey = std::mem::take(&mut outcome.rekey);
                return (results.collect(), Outcome { rekey, ..Outcome::default() });
            }
        };
        for (peer, kind, issued_us) in std::mem::take(&mut outcome.heard) {
            // Only the replay guard of a payload already applied is lost.
            if let Err(e) = self.store.note_contact_payload(&peer, kind, issued_us) {
                tracing::error!(error = %e, %peer, "noting a contact payload taken failed");
            }
        }
        let mut inserted = inserted.into_iter();
        let results = steps
            .into_iter()
            .map(|s| match s {
                Step::Done(r) => r,
                Step::Insert(m, visible) => match inserted.next() {
                    Some(Inserted::New) => {
                        if visible {
                            let peer = m.author.clone();
                            match ops::stored_event(self.store, &m, Some(&peer)) {
                                Ok(Some(event)) => outcome.events.push(event),
                                Ok(None) => {}
                                Err(e) => tracing::warn!(error = %e, "reading a stored message back for its event failed"),
                            }
                            outcome.stored.push((peer, m.id));
                        }
                        DmResult::Stored
                    }
                    Some(Inserted::Refused(refusal)) => refused(refusal),
                    Some(Inserted::Duplicate) | None => DmResult::Stored,
                },
            })
            .collect();
        (results, outcome)
    }

    fn one(&mut self, index: usize, bytes: &[u8], outcome: &mut Outcome) -> Result<Step, RejectReason> {
        let opened = self.opener.open(bytes).map_err(|e| match e {
            envelope::OpenError::TooLarge { .. } => RejectReason::TooLarge,
            envelope::OpenError::UnsupportedVersion(_) => RejectReason::Unsupported,
            envelope::OpenError::BadBinding => RejectReason::Forged,
            envelope::OpenError::Decrypt => RejectReason::Decrypt,
            _ => RejectReason::Malformed,
        })?;
        let payload = Payload::decode(&opened.plaintext).map_err(|e| match e {
            WireError::UnsupportedVersion(_) => RejectReason::Unsupported,
            WireError::TooLarge { .. } | WireError::TooLong { .. } | WireError::TooMany { .. } => RejectReason::TooLarge,
            _ => RejectReason::Malformed,
        })?;
        let sender = opened.sender;
        let contact = self.store.contacts().get(&sender).map_err(|_| RejectReason::Storage)?;
        if contact.as_ref().is_some_and(|c| c.state == ContactState::Blocked) {
            // Dropped before storage. "Accepted" stops the sender's retries without
            // telling it that the message reached anyone.
            return Ok(Step::Done(DmResult::Accepted));
        }
        let mut keys = (opened.sender_e2e, opened.sender_binding);
        let contact = match contact {
            Some(c) if c.e2e_public.is_some() => {
                let mut judged = c.clone();
                match ops::take_key(&mut judged, keys.0, &keys.1, ops::now_ms()) {
                    // An older key of this contact's, or an expired binding: whoever
                    // holds that key is not to be taken for the contact. What proves
                    // its sender by itself still counts (mail the contact sealed
                    // before it rotated, waiting in a relay): a ratchet message opens
                    // only in a session with the contact, and key offers are signed
                    // by its identity. Everything else is refused. The contact keeps
                    // the key it has.
                    KeyUpdate::Stale | KeyUpdate::Expired => {
                        let held = c.e2e_public.zip(c.binding.as_deref().and_then(Binding::from_bytes));
                        match (held, &payload) {
                            (Some(held), Payload::Ratcheted { .. } | Payload::Prekeys { .. }) => {
                                keys = held;
                                Some(c)
                            }
                            _ => return Err(RejectReason::Forged),
                        }
                    }
                    KeyUpdate::Changed => Some(self.key_changed(c, keys, outcome).map_err(|_| RejectReason::Storage)?),
                    KeyUpdate::Same { renewed: true } => {
                        self.put_contact(&c, keys, outcome).map_err(|_| RejectReason::Storage)?;
                        Some(judged)
                    }
                    KeyUpdate::Same { renewed: false } | KeyUpdate::New => Some(c),
                }
            }
            other if keys.1.is_expired(ops::now_ms()) => {
                tracing::debug!(%sender, known = other.is_some(), "refused an envelope whose key binding expired");
                return Err(RejectReason::Forged);
            }
            other => other,
        };
        let accepted = contact.as_ref().is_some_and(|c| c.state == ContactState::Accepted);
        let Some(payload) = self.unwrap_ratchet(index, sender, accepted, payload, outcome)? else {
            // A copy of a ratchet message opened before (another path brought it).
            return Ok(Step::Done(DmResult::Stored));
        };
        self.payload(index, sender, keys, contact, payload, outcome)
            .map_err(|e| {
                tracing::warn!(error = %e, "applying payload failed");
                RejectReason::Storage
            })
    }

    /// The payload a ratchet message carries, opened (`None`: a copy of one opened
    /// before); any other payload as it came, unless it should have come ratcheted
    /// and the sender's grace for the old way is over.
    fn unwrap_ratchet(
        &mut self,
        index: usize,
        sender: PeerId,
        accepted: bool,
        payload: Payload,
        outcome: &mut Outcome,
    ) -> Result<Option<Payload>, RejectReason> {
        let now = ops::now_ms();
        match payload {
            // Only a contact we offered keys can hold a session with us: anyone else's
            // is refused before it costs state.
            Payload::Ratcheted { .. } if !accepted => Err(RejectReason::Decrypt),
            Payload::Ratcheted { kind, body } => {
                let digest = copy_digest(kind, &body);
                if outcome.ratcheted.iter().any(|(_, opened, _)| *opened == digest) {
                    // A copy in the batch that opened its original (a relay holds one
                    // per attempt to deposit it, each sealed anew): its key is spent,
                    // and whether the original is taken is known only once the batch
                    // is settled, so the copy waits and a later one finds it a copy.
                    tracing::debug!(%sender, "a copy of a ratchet message opened in this batch; later");
                    return Err(RejectReason::Unready);
                }
                match self.ratchets.open_digested(&sender, kind, &body, digest, now) {
                    Ok(inner) => {
                        let decoded = Payload::decode_ratcheted(&inner).map_err(|e| {
                            tracing::debug!(%sender, error = %e, "a ratchet message carried no valid payload");
                            RejectReason::Malformed
                        });
                        outcome.ratcheted.push((index, digest, inner));
                        decoded.map(Some)
                    }
                    Err(RatchetError::Duplicate) => Ok(None),
                    Err(e @ (RatchetError::NoSession | RatchetError::UnknownPrekey))
                        if self.from_relay
                            && (kind != crate::ratchet::PRE_KEY_MESSAGE || matches!(e, RatchetError::UnknownPrekey)) =>
                    {
                        // A normal message comes only in a session we once answered in,
                        // and a pre-key message names one of our one-time keys: with the
                        // session lost, or the key gone, it never opens. Kept by a relay
                        // it would come back (with a reset) at every drain, so it is
                        // refused and the relay drops it; the reset offered here makes
                        // its sender send again what we never confirmed.
                        tracing::info!(%sender, error = %e, "refused relay mail sealed in a session or to a key we no longer have");
                        outcome.rekey.push(sender);
                        Err(RejectReason::Decrypt)
                    }
                    Err(e @ (RatchetError::NoSession | RatchetError::UnknownPrekey)) => {
                        // Our state lost, or its session built on keys we no longer hold:
                        // new keys let it seal again; it keeps the item meanwhile.
                        tracing::info!(%sender, error = %e, "cannot open a ratchet message");
                        outcome.rekey.push(sender);
                        Err(RejectReason::Unready)
                    }
                    Err(RatchetError::State(e)) => {
                        tracing::error!(%sender, error = %e, "reading ratchet state failed");
                        Err(RejectReason::Storage)
                    }
                    Err(e) => {
                        tracing::warn!(%sender, error = %e, "refused a ratchet message");
                        Err(RejectReason::Decrypt)
                    }
                }
            }
            p if p.is_ratcheted_kind() && accepted => match self.ratchets.legacy_closed(&sender, now, self.legacy_grace) {
                Ok(false) => Ok(Some(p)),
                Ok(true) => {
                    tracing::warn!(%sender, "refused a payload sealed without the ratchet after the grace");
                    Err(RejectReason::Unsupported)
                }
                Err(e) => {
                    tracing::error!(%sender, error = %e, "reading ratchet state failed");
                    Err(RejectReason::Storage)
                }
            },
            p => Ok(Some(p)),
        }
    }

    fn payload(
        &mut self,
        index: usize,
        sender: PeerId,
        (sender_e2e, binding): ([u8; 32], Binding),
        contact: Option<Contact>,
        payload: Payload,
        outcome: &mut Outcome,
    ) -> Result<Step, OpError> {
        let now = ops::now_ms();
        match payload {
            Payload::Text { id, lamport, sent_at_ms, text, file, link } => {
                let conversation = ops::direct_conversation(&self.me, &sender);
                let message = Message {
                    id,
                    conversation,
                    author: kith_storage::peer_text(&sender),
                    lamport,
                    sent_at_ms,
                    received_at_ms: now,
                    text,
                    state: MessageState::Delivered,
                    direction: Direction::Incoming,
                    file: file.map(|f| Box::new(crate::files::file_of(f))),
                    link,
                };
                if let Some(refusal) = self.store.messages().refusal(&message)? {
                    tracing::debug!(%sender, %refusal, "refused a text");
                    return Ok(Step::Done(refused(refusal)));
                }
                let held = !contact.as_ref().is_some_and(|c| {
                    matches!(c.state, ContactState::Accepted | ContactState::PendingOut)
                });
                if held && message.link.as_ref().and_then(kith_storage::Link::changed).is_some() {
                    // Someone who is not our contact has no message of ours to change,
                    // and a change opens no contact request: taken and dropped.
                    return Ok(Step::Done(DmResult::Stored));
                }
                if held && self.store.messages().get_from(&message.author, id)?.is_none() {
                    let new_request = contact.as_ref().is_none_or(|c| c.state != ContactState::PendingIn);
                    let admitted =
                        self.tally.admit_text(self.store, &message.author, conversation, new_request, message.text.len())?;
                    if let Err(e) = admitted {
                        return Ok(Step::Done(over_quota(sender, e)));
                    }
                }
                let contact = match contact {
                    Some(mut c) if c.state == ContactState::Member => {
                        // A fellow group member writing 1:1 asks to become a contact.
                        c.state = ContactState::PendingIn;
                        let saved = self.put_contact(&c, (sender_e2e, binding), outcome)?;
                        outcome.events.push(Event::ContactRequest { contact: saved });
                        c
                    }
                    Some(mut c) => {
                        // Writing to us after we asked them is as good as accepting; a
                        // text written before our latest request (a relay held it back
                        // since before we asked again) is not.
                        if c.state == ContactState::PendingOut
                            && self.issued_after_our_request(&sender, message.sent_at_ms.saturating_mul(1000))?
                        {
                            c.state = ContactState::Accepted;
                            outcome.queued |= super::profiles::share(self.store, &self.me, &sender)?;
                            let saved = self.put_contact(&c, (sender_e2e, binding), outcome)?;
                            outcome.events.push(Event::ContactChanged { contact: saved });
                        }
                        c
                    }
                    None => {
                        let mut c = self.new_contact(sender, sender_e2e, ContactState::PendingIn, None);
                        c.binding = Some(binding.to_bytes());
                        self.store.contacts().put(&c)?;
                        outcome.events.push(Event::ContactRequest { contact: ContactView::from(&c) });
                        c
                    }
                };
                self.store.conversations().ensure(
                    conversation,
                    ConversationKind::Direct { peer_id: kith_storage::peer_text(&sender) },
                    now,
                )?;
                Ok(Step::Insert(message, contact.state == ContactState::Accepted))
            }
            Payload::Typing { group } => {
                // From an accepted contact (1:1) or an active member of a group we are
                // in; nothing is stored. The actor drops these with presence off.
                let conversation = match group {
                    None if contact.as_ref().is_some_and(|c| c.state == ContactState::Accepted) => {
                        Some(ops::direct_conversation(&self.me, &sender))
                    }
                    Some(id) => match self.store.groups().get(id)? {
                        Some(g) if g.active && g.has_member(&sender) => {
                            Some(crate::group::conversation(&g.id))
                        }
                        _ => None,
                    },
                    None => None,
                };
                if let Some(conversation) = conversation {
                    outcome.typing.push(Event::Typing {
                        conversation: conversation.to_string(),
                        group: group.map(|g| g.to_string()),
                        peer_id: sender.to_base58(),
                    });
                }
                Ok(Step::Done(DmResult::Stored))
            }
            Payload::Presence { online, ttl_s } => {
                // Only from accepted contacts; nothing is stored.
                if contact.is_some_and(|c| c.state == ContactState::Accepted) {
                    outcome.presence.push((sender, online, std::time::Duration::from_secs(u64::from(ttl_s))));
                }
                Ok(Step::Done(DmResult::Stored))
            }
            Payload::Receipt { kind, ids } => {
                self.receipt(sender, kind, &ids, outcome)?;
                outcome.receipted.push((sender, ids));
                Ok(Step::Done(DmResult::Stored))
            }
            Payload::ContactRequest { name, addrs, token, relays, keys, issued_us } => {
                // Before the token is spent: a copy must not redeem anything.
                let taken = (sender, ContactPayload::Request, issued_us);
                if let Some(refusal) = self.contact_payload_refusal(taken, now, outcome)? {
                    tracing::debug!(%sender, %refusal, "a contact request not taken");
                    return Ok(Step::Done(refused(refusal)));
                }
                let redeemed = match token {
                    Some(t) => self.store.invites().redeem(&t, now)?,
                    None => false,
                };
                if super::contact_rules::is_new_request(contact.as_ref())
                    && !redeemed
                    && let Err(e) = self.tally.admit_request(self.store)?
                {
                    return Ok(Step::Done(over_quota(sender, e)));
                }
                let known = contact.clone();
                let was_accepted = known.as_ref().is_some_and(|k| k.state == ContactState::Accepted);
                let mut c = contact.unwrap_or_else(|| self.new_contact(sender, sender_e2e, ContactState::PendingIn, None));
                if c.state == ContactState::Member {
                    // A fellow group member asking is a request like anyone's.
                    c.state = ContactState::PendingIn;
                }
                c.display_name = valid_name(name).or(c.display_name);
                c.addrs = requests::merge_addrs(&requests::bounded_addrs(&addrs, MAX_CONTACT_ADDRS), &c.addrs);
                let relays = requests::bounded_addrs(&relays, MAX_CONTACT_RELAYS);
                if !relays.is_empty() {
                    c.relays = relays;
                }
                if c.state == ContactState::PendingOut && !redeemed && !self.issued_after_our_request(&sender, issued_us)? {
                    // Issued before the request we made since (a relay held it back,
                    // or kept a copy): it says nothing about what they want now. Our
                    // request goes on waiting for its own answer, which their node
                    // gives by itself if they still asked us.
                    tracing::info!(%sender, "a contact request issued before our latest request to its sender; still waiting for the answer");
                    // Its ratchet keys still count: its sender will not offer them
                    // again, and our first messages once it answers use them.
                    self.learn_request_keys(&sender, keys);
                    outcome.heard.push(taken);
                    return Ok(Step::Done(DmResult::Stored));
                }
                let answer = redeemed || matches!(c.state, ContactState::Accepted | ContactState::PendingOut);
                let unchanged = known.is_some_and(|old| {
                    let new = Contact {
                        e2e_public: Some(sender_e2e),
                        binding: Some(binding.to_bytes()),
                        updated_at_ms: old.updated_at_ms,
                        ..c.clone()
                    };
                    old == new
                });
                if !answer && unchanged {
                    // A repeated request: nothing to write or tell (a flood costs no
                    // disk but its mark).
                    outcome.heard.push(taken);
                    return Ok(Step::Done(DmResult::Stored));
                }
                if answer {
                    c.state = ContactState::Accepted;
                    ops::enqueue(
                        self.store,
                        &c.peer_id,
                        &Payload::ContactAccepted {
                            name: self.my_name.map(str::to_owned),
                            issued_us: ops::issue_time_us(),
                            answers_us: issued_us,
                        },
                    )?;
                    // Our profile once, when they become a contact (not on every
                    // repeated request of an accepted contact).
                    if !was_accepted {
                        super::profiles::share(self.store, &self.me, &c.peer_id)?;
                    }
                    outcome.queued = true;
                }
                let saved = self.put_contact(&c, (sender_e2e, binding), outcome)?;
                // Kept for a request we hold (strangers' requests are bounded by their
                // quota above), so our first message after accepting is ratcheted.
                self.learn_request_keys(&sender, keys);
                outcome.heard.push(taken);
                outcome.events.push(if answer {
                    Event::ContactChanged { contact: saved }
                } else {
                    Event::ContactRequest { contact: saved }
                });
                Ok(Step::Done(DmResult::Stored))
            }
            payload @ (Payload::GroupOps { .. } | Payload::GroupKey { .. } | Payload::GroupSync { .. }) => {
                outcome.group.push(GroupDelivery { index, sender, payload });
                Ok(Step::Done(DmResult::Stored))
            }
            Payload::DepositTicket { ticket } => {
                // From a contact, or someone we asked (it may come before the
                // acceptance queued with it), and only one that admits us: anything
                // else would be attached to deposits for nothing.
                let accepted = contact.is_some_and(|c| matches!(c.state, ContactState::Accepted | ContactState::PendingOut));
                if accepted && crate::mailbox::ticket_admits(&ticket, &sender, &self.me, now) {
                    self.store.deposit_tickets().keep(&sender, &(&ticket).into())?;
                } else {
                    tracing::debug!(%sender, accepted, "dropped a deposit ticket that does not admit us");
                }
                Ok(Step::Done(DmResult::Stored))
            }
            Payload::Profile { signed } => {
                // Kept from accepted contacts only: a stranger's is no one's business.
                let Some(c) = contact.filter(|c| c.state == ContactState::Accepted) else {
                    tracing::debug!(%sender, "dropped a profile from someone who is not an accepted contact");
                    return Ok(Step::Done(DmResult::Stored));
                };
                match super::profiles::receive(self.store, &c, &signed) {
                    Ok(super::profiles::Received::Kept { view, contact }) => {
                        if let Some(renamed) = contact {
                            let saved = self.put_contact(&renamed, (sender_e2e, binding), outcome)?;
                            outcome.events.push(Event::ContactChanged { contact: saved });
                        }
                        outcome.events.push(Event::ProfileChanged { profile: view });
                        Ok(Step::Done(DmResult::Stored))
                    }
                    Ok(super::profiles::Received::Stale) => Ok(Step::Done(DmResult::Stored)),
                    Err(super::profiles::ReceiveError::Refused(e)) => {
                        tracing::debug!(%sender, error = %e, "refused a profile");
                        Ok(Step::Done(DmResult::Rejected(RejectReason::Malformed)))
                    }
                    Err(super::profiles::ReceiveError::Store(e)) => Err(e),
                }
            }
            Payload::Prekeys { identity, signature, one_time, reset, issued_us } => {
                let Some(c) = contact.filter(|c| matches!(c.state, ContactState::Accepted | ContactState::PendingOut)) else {
                    // A stranger's keys start nothing: taken and dropped.
                    return Ok(Step::Done(DmResult::Stored));
                };
                match self.ratchets.learn(&sender, &Offer { identity, signature, one_time, reset, issued_us }) {
                    Ok(Learned::IdentityChanged) => {
                        outcome.rekeyed.push(sender);
                        self.key_changed(c, (sender_e2e, binding), outcome)?;
                    }
                    Ok(Learned::Prekey) => {
                        if reset {
                            outcome.resend.push(sender);
                        }
                        outcome.rekeyed.push(sender);
                        outcome.touched.push(sender);
                    }
                    Ok(Learned::Ignored | Learned::Stale) => {}
                    Err(RatchetError::Forged) => return Ok(Step::Done(DmResult::Rejected(RejectReason::Forged))),
                    Err(e) => return Err(OpError::NotAllowed(format!("keeping a contact's ratchet keys: {e}"))),
                }
                Ok(Step::Done(DmResult::Stored))
            }
            // Opened before it gets here (see `unwrap_ratchet`); one inside another is
            // refused while decoding.
            Payload::Ratcheted { .. } => Ok(Step::Done(DmResult::Rejected(RejectReason::Malformed))),
            Payload::ContactAccepted { name, issued_us, answers_us } => {
                let taken = (sender, ContactPayload::Acceptance, issued_us);
                if let Some(refusal) = self.contact_payload_refusal(taken, now, outcome)? {
                    tracing::debug!(%sender, %refusal, "a contact acceptance not taken");
                    return Ok(Step::Done(refused(refusal)));
                }
                // Marked for anyone we hold a record of, a fellow member too (a
                // stranger's would only fill the marks): a copy must not accept a
                // request we make later. Marked once applied, below.
                let marked = contact.is_some();
                // From a stranger, or a fellow member we did not ask (or asked and
                // then removed): nothing to accept.
                // Taken only from an accepted contact (a newer copy may carry a new
                // name) or as the answer to our pending request: an acceptance of an
                // earlier request, or from someone we did not ask, changes nothing,
                // their name included.
                let taken_from = match contact {
                    Some(c) if c.state == ContactState::Accepted => Some(c),
                    Some(c) if c.state == ContactState::PendingOut && self.answers_our_request(&sender, answers_us, issued_us)? => {
                        // Now they may see our profile.
                        outcome.queued |= super::profiles::share(self.store, &self.me, &sender)?;
                        Some(Contact { state: ContactState::Accepted, ..c })
                    }
                    _ => None,
                };
                if let Some(mut c) = taken_from {
                    if let Some(name) = valid_name(name) {
                        c.display_name = Some(name);
                    }
                    let saved = self.put_contact(&c, (sender_e2e, binding), outcome)?;
                    outcome.events.push(Event::ContactChanged { contact: saved });
                }
                if marked {
                    outcome.heard.push(taken);
                }
                Ok(Step::Done(DmResult::Stored))
            }
        }
    }

    /// Whether an acceptance from `sender`, issued at `issued_us` and answering its
    /// request issued at `answers_us`, answers ours: our latest request to it was
    /// issued no later (or we keep none). One that names no request (0: its accepter
    /// kept no mark of it) must at least have been issued after our latest request,
    /// give or take [`MAX_CLOCK_SKEW`](kith_storage::MAX_CLOCK_SKEW).
    fn answers_our_request(&self, sender: &PeerId, answers_us: u64, issued_us: u64) -> Result<bool, OpError> {
        let answers = if answers_us == 0 {
            self.issued_after_our_request(sender, issued_us)?
        } else {
            self.store.contact_payload_mark(sender, ContactPayload::Asked)?.is_none_or(|asked| asked <= answers_us)
        };
        if !answers {
            // Ours goes on waiting for its own answer; the user may ask again.
            tracing::info!(%sender, "an acceptance of an earlier request of ours; still waiting for the answer to the latest");
        }
        Ok(answers)
    }

    /// Takes the ratchet keys a contact request from `sender` carried, if any
    /// (refused unless newer than those held, see [`Ratchets::learn`]).
    fn learn_request_keys(&mut self, sender: &PeerId, keys: Option<crate::payload::RequestKeys>) {
        let Some(k) = keys else { return };
        let offer = Offer { identity: k.identity, signature: k.signature, one_time: k.one_time, reset: false, issued_us: k.issued_us };
        match self.ratchets.learn(sender, &offer) {
            Ok(_) => {}
            Err(RatchetError::Forged) => tracing::debug!(%sender, "a contact request's ratchet keys are not signed by its sender"),
            Err(e) => tracing::warn!(%sender, error = %e, "keeping a contact request's ratchet keys failed"),
        }
    }

    /// Whether a contact payload `sender` issued at `issued_us` came after our latest
    /// request to it, give or take [`MAX_CLOCK_SKEW`](kith_storage::MAX_CLOCK_SKEW)
    /// (true when we keep no mark of one). The mark is pruned with the replay marks
    /// once it is older than the replay window; anything issued before it is then
    /// refused by the window itself.
    fn issued_after_our_request(&self, sender: &PeerId, issued_us: u64) -> Result<bool, OpError> {
        let Some(asked) = self.store.contact_payload_mark(sender, ContactPayload::Asked)? else { return Ok(true) };
        let skew_us = u64::try_from(kith_storage::MAX_CLOCK_SKEW.as_micros()).unwrap_or(u64::MAX);
        Ok(issued_us.saturating_add(skew_us) >= asked)
    }

    /// Whether the contact payload `(sender, kind, issued_us)` is refused: by the
    /// store's marks, or as a copy of one taken earlier in this batch.
    fn contact_payload_refusal(
        &self,
        (sender, kind, issued_us): (PeerId, ContactPayload, u64),
        now: u64,
        outcome: &Outcome,
    ) -> Result<Option<Refusal>, OpError> {
        if outcome.heard.iter().any(|(p, k, us)| *p == sender && *k == kind && *us >= issued_us) {
            return Ok(Some(Refusal::Replayed));
        }
        Ok(self.store.contact_payload_refusal(&sender, kind, issued_us, now)?)
    }

    fn new_contact(&self, peer: PeerId, e2e: [u8; 32], state: ContactState, name: Option<String>) -> Contact {
        let mut contact = ops::new_contact(&peer, state);
        contact.e2e_public = Some(e2e);
        contact.display_name = name;
        contact
    }

    /// A contact's envelope came under an end-to-end key other than the one we knew
    /// (bound to its identity, so the owner of that identity made it): take the new
    /// key, never silently: the contact is marked changed and the user told. A
    /// verified contact stays held (nothing is sent to it) until verified again.
    fn key_changed(&self, c: Contact, keys: ([u8; 32], Binding), outcome: &mut Outcome) -> Result<Contact, OpError> {
        tracing::warn!(peer = %c.peer_id, verified = c.verified_at_ms.is_some(), "a contact's end-to-end key changed");
        let changed = Contact { key_changed_at_ms: Some(ops::now_ms()), ..c };
        let view = self.put_contact(&changed, keys, outcome)?;
        outcome.events.push(Event::KeyChanged { contact: view });
        Ok(Contact { e2e_public: Some(keys.0), binding: Some(keys.1.to_bytes()), ..changed })
    }

    /// Save a contact with the sender's authenticated E2E key; the caller reports it.
    fn put_contact(&self, c: &Contact, (e2e, binding): ([u8; 32], Binding), outcome: &mut Outcome) -> Result<ContactView, OpError> {
        let mut c = c.clone();
        c.e2e_public = Some(e2e);
        c.binding = Some(binding.to_bytes());
        c.updated_at_ms = ops::now_ms();
        self.store.contacts().put(&c)?;
        outcome.touched.push(c.peer_id);
        Ok(ContactView::from(&c))
    }

    /// Apply a receipt, but only to our own messages in the 1:1 conversation with its
    /// sender, or in a group the sender is a member of: nobody can move the state of
    /// messages they were not sent. Each id is judged from the index in memory; a
    /// message is read from the disk only when the receipt moves it, so a receipt
    /// naming our ids many times over costs hash lookups, not reads.
    fn receipt(&self, sender: PeerId, kind: ReceiptKind, ids: &[MessageId], outcome: &mut Outcome) -> Result<(), OpError> {
        let conversation = ops::direct_conversation(&self.me, &sender);
        let me = self.me.to_string();
        let state = match kind {
            ReceiptKind::Delivered => MessageState::Delivered,
            ReceiptKind::Read => MessageState::Read,
        };
        // A receipt names many of one group's messages: its members are read once.
        let mut audiences: HashMap<ConversationId, Option<Vec<String>>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut sender_text: Option<String> = None;
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            let Some(placed) = self.store.messages().place_from(&me, *id) else { continue };
            if placed.direction != Direction::Outgoing {
                continue;
            }
            if placed.conversation != conversation {
                if placed.change {
                    continue;
                }
                let audience = match audiences.entry(placed.conversation) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(slot) => slot.insert(self.receipt_audience(placed.conversation, &me)?),
                };
                if let Some(audience) = audience {
                    let who = (sender_text.get_or_insert_with(|| sender.to_base58()).as_str(), me.as_str());
                    self.group_receipt(who, kind, (placed.conversation, *id), audience, outcome)?;
                }
                continue;
            }
            if let Some(new) = self.store.set_message_state(*id, state, true)?
                && !placed.change
            {
                outcome.events.push(Event::MessageStateChanged {
                    id: id.to_string(),
                    conversation: conversation.to_string(),
                    state: new,
                });
            }
        }
        Ok(())
    }

    /// Whom receipts for our messages in `conversation` count from: its group's
    /// members we count over (see [`GroupReceiptsView::audience`]), if the group is
    /// one we hold, are still in, and small enough to count.
    fn receipt_audience(&self, conversation: ConversationId, me: &str) -> Result<Option<Vec<String>>, OpError> {
        let group = GroupId(conversation.0);
        if !self.store.groups().get(group)?.is_some_and(|g| g.active) {
            return Ok(None);
        }
        Ok(GroupReceiptsView::audience(self.store, group, me)?)
    }

    /// A member's receipt for our message `id` in the group `conversation` (not a
    /// change), whose `audience` the sender must be in: counted. The message is
    /// read only when its count rose, for the event.
    fn group_receipt(
        &self,
        (sender, me): (&str, &str),
        kind: ReceiptKind,
        (conversation, id): (ConversationId, MessageId),
        audience: &[String],
        outcome: &mut Outcome,
    ) -> Result<(), OpError> {
        if !audience.iter().any(|member| member == sender) {
            return Ok(());
        }
        let reached = match kind {
            ReceiptKind::Delivered => kith_storage::Reached::Delivered,
            ReceiptKind::Read => kith_storage::Reached::Read,
        };
        let raised = match self.store.group_receipts().record(conversation, id, sender, reached) {
            Ok(raised) => raised,
            Err(e) => {
                // A damaged record loses this count; the sender must not retry forever.
                tracing::warn!(%id, error = %e, "recording a group receipt failed");
                false
            }
        };
        if raised && let Some(m) = self.store.messages().get_from(me, id)? {
            outcome.events.push(Event::MessageReceipts {
                id: m.id.to_string(),
                conversation: m.conversation.to_string(),
                receipts: GroupReceiptsView::over(self.store, &m, audience)?,
            });
        }
        Ok(())
    }
}

/// The answer for a text storage refuses, or a contact payload: a deleted or
/// replayed one was taken once, so it counts as stored (its sender, or the relay
/// holding the copy, stops); one outside the window never will be.
fn refused(refusal: Refusal) -> DmResult {
    match refusal {
        Refusal::Deleted | Refusal::Replayed => DmResult::Stored,
        _ => DmResult::Rejected(RejectReason::Stale),
    }
}

/// The answer for a stranger's item past a bound of [`crate::requests`].
fn over_quota(sender: PeerId, e: QuotaError) -> DmResult {
    tracing::debug!(%sender, reason = %e, "refused a stranger's item");
    DmResult::Rejected(RejectReason::Quota)
}

/// A display name a peer announced, if it is one we keep (see
/// [`check_display_name`]: bounded, no control characters).
fn valid_name(name: Option<String>) -> Option<String> {
    name.filter(|n| check_display_name(n).is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
