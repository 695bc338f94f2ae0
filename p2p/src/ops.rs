//! Local operations over the store, shared by the running node and the offline CLI.
//!
//! Everything here is storage only: outgoing items are queued in the persistent
//! outbox and a running node's actor sends them (immediately, or when it next starts).
//! The node calls these same functions, so online and offline behaviour cannot drift.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use kith_storage::{
    Contact, ContactState, Conversation, ConversationId, ConversationKind, Direction, Message,
    MessageId, MessageState, OutboxEntry, Store, StoreError,
};
use libp2p::PeerId;

use crate::payload::{MAX_TEXT_LEN, Payload, ReceiptKind};
use crate::views::{ContactView, InboxEntry, MessageView, RequestView};

/// Why a local operation failed. Variants map to control-socket error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// No contact matches.
    #[error("no contact matches {0:?}")]
    UnknownContact(String),
    /// More than one contact matches the prefix.
    #[error("{query:?} is ambiguous: {candidates:?}")]
    AmbiguousContact {
        /// What was asked for.
        query: String,
        /// The labels of the matching contacts.
        candidates: Vec<String>,
    },
    /// The operation does not apply to the contact in its current state.
    #[error("{peer} is {state:?}: {why}")]
    WrongState {
        /// The contact.
        peer: String,
        /// Its state.
        state: ContactState,
        /// What would have been needed.
        why: &'static str,
    },
    /// A message id given by the user is not known.
    #[error("no message {0}")]
    UnknownMessage(String),
    /// The text is longer than a message may be.
    #[error("message is {len} bytes; the limit is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Invalid input, e.g. an empty message or a bad id.
    #[error("{0}")]
    Invalid(String),
    /// Encoding an item failed.
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store failed a write shared by several requests (a group commit); each
    /// gets the failure as text.
    #[error("not stored: {0}")]
    NotStored(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random message id.
pub fn new_message_id() -> MessageId {
    MessageId(rand::random())
}

/// The id of the 1:1 conversation between `a` and `b`; both sides compute the same.
pub fn direct_conversation(a: &PeerId, b: &PeerId) -> ConversationId {
    let (a, b) = (a.to_bytes(), b.to_bytes());
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key("kith 2026 direct conversation id v1");
    hasher.update(&(lo.len() as u32).to_be_bytes());
    hasher.update(&lo);
    hasher.update(&hi);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    ConversationId(id)
}

/// Find a contact by alias, peer id, or a unique prefix of either (case-sensitive for
/// peer ids, case-insensitive for aliases).
pub fn resolve_contact(store: &Store, query: &str) -> Result<Contact, OpError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(OpError::Invalid("empty contact name".into()));
    }
    let contacts = store.contacts().list()?;
    let lower = query.to_lowercase();
    let alias_of = |c: &Contact| c.alias.as_ref().map(|a| a.to_lowercase());
    if let Some(c) = contacts.iter().find(|c| c.peer_id == query || alias_of(c) == Some(lower.clone())) {
        return Ok(c.clone());
    }
    let matches: Vec<&Contact> = contacts
        .iter()
        .filter(|c| {
            c.peer_id.starts_with(query)
                || alias_of(c).is_some_and(|a| a.starts_with(&lower))
                || c.display_name.as_ref().is_some_and(|n| n.to_lowercase() == lower)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpError::UnknownContact(query.to_owned())),
        many => Err(OpError::AmbiguousContact {
            query: query.to_owned(),
            candidates: many.iter().map(|c| ContactView::from(*c).label().to_owned()).collect(),
        }),
    }
}

/// Queue `payload` for `recipient` in the outbox (not flushed: callers flush or batch).
pub fn enqueue(store: &Store, recipient: &str, payload: &Payload) -> Result<MessageId, OpError> {
    let id = match payload {
        Payload::Text { id, .. } => *id,
        _ => new_message_id(),
    };
    let now = now_ms();
    store.outbox().put(&OutboxEntry {
        id,
        recipient: recipient.to_owned(),
        payload: payload.encode()?,
        attempts: 0,
        next_attempt_ms: now,
        created_at_ms: now,
    })?;
    Ok(id)
}

/// Compose a text message to `contact` and its outbox entry, without storing them:
/// the caller stores a whole batch with [`Store::stage_outgoing`] (one transaction) and
/// flushes (group commit) before it reports any of them as stored. `used_lamports`
/// carries the counters already handed out in this batch, so messages composed
/// together still get strictly increasing Lamport counters. The conversation is
/// created if needed.
pub fn compose_text(
    store: &Store,
    me: &PeerId,
    contact: &Contact,
    text: &str,
    used_lamports: &mut HashMap<ConversationId, u64>,
) -> Result<(Message, OutboxEntry), OpError> {
    if text.is_empty() {
        return Err(OpError::Invalid("empty message".into()));
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(OpError::TooLong { len: text.len(), max: MAX_TEXT_LEN });
    }
    match contact.state {
        ContactState::Accepted | ContactState::PendingOut => {}
        state => {
            return Err(OpError::WrongState {
                peer: contact.peer_id.clone(),
                state,
                why: "messages go only to contacts you added or accepted",
            });
        }
    }
    let peer: PeerId = contact
        .peer_id
        .parse()
        .map_err(|_| OpError::Invalid(format!("stored peer id {} is invalid", contact.peer_id)))?;
    let conversation = direct_conversation(me, &peer);
    let now = now_ms();
    let lamport = match used_lamports.get(&conversation) {
        Some(last) => last + 1,
        None => {
            let existing = store.conversations().get_or_create(
                conversation,
                ConversationKind::Direct { peer_id: contact.peer_id.clone() },
                now,
            )?;
            existing.last_lamport + 1
        }
    };
    used_lamports.insert(conversation, lamport);
    let message = Message {
        id: new_message_id(),
        conversation,
        author: me.to_string(),
        lamport,
        sent_at_ms: now,
        received_at_ms: now,
        text: text.to_owned(),
        state: MessageState::Pending,
        direction: Direction::Outgoing,
    };
    let payload = Payload::Text {
        id: message.id,
        lamport: message.lamport,
        sent_at_ms: message.sent_at_ms,
        text: message.text.clone(),
    };
    let entry = OutboxEntry {
        id: message.id,
        recipient: contact.peer_id.clone(),
        payload: payload.encode()?,
        attempts: 0,
        next_attempt_ms: now,
        created_at_ms: now,
    };
    Ok((message, entry))
}

/// Change a contact's state, creating nothing. Returns the updated contact.
pub fn set_state(store: &Store, contact: &Contact, state: ContactState) -> Result<Contact, OpError> {
    let mut updated = contact.clone();
    updated.state = state;
    updated.updated_at_ms = now_ms();
    store.contacts().put(&updated)?;
    store.flush()?;
    Ok(updated)
}

/// Accept a pending incoming request: the contact becomes `accepted` and a
/// `ContactAccepted` is queued for it. Accepting an accepted contact is a no-op.
pub fn accept(store: &Store, contact: &Contact, my_name: Option<&str>) -> Result<Contact, OpError> {
    match contact.state {
        ContactState::Accepted => return Ok(contact.clone()),
        ContactState::PendingIn | ContactState::PendingOut => {}
        ContactState::Blocked => {
            return Err(OpError::WrongState {
                peer: contact.peer_id.clone(),
                state: contact.state,
                why: "unblock the contact first",
            });
        }
    }
    enqueue(store, &contact.peer_id, &Payload::ContactAccepted { name: my_name.map(str::to_owned) })?;
    set_state(store, contact, ContactState::Accepted)
}

/// Reject a request: the contact and any messages it sent are deleted.
pub fn reject(store: &Store, me: &PeerId, contact: &Contact) -> Result<(), OpError> {
    if contact.state != ContactState::PendingIn {
        return Err(OpError::WrongState {
            peer: contact.peer_id.clone(),
            state: contact.state,
            why: "only incoming requests can be rejected (use remove or block)",
        });
    }
    remove(store, me, contact)
}

/// Forget a contact and its conversation.
pub fn remove(store: &Store, me: &PeerId, contact: &Contact) -> Result<(), OpError> {
    if let Ok(peer) = contact.peer_id.parse::<PeerId>() {
        store.conversations().remove(direct_conversation(me, &peer))?;
    }
    store.contacts().remove(&contact.peer_id)?;
    store.flush()?;
    Ok(())
}

/// Set or clear the local alias of a contact.
pub fn rename(store: &Store, contact: &Contact, alias: &str) -> Result<Contact, OpError> {
    let alias = alias.trim();
    let mut updated = contact.clone();
    updated.alias = (!alias.is_empty()).then(|| alias.to_owned());
    updated.updated_at_ms = now_ms();
    store.contacts().put(&updated)?;
    store.flush()?;
    Ok(updated)
}

/// Mark a 1:1 conversation read; queues a read receipt unless `send_receipts` is off.
/// Returns how many messages became read.
pub fn mark_read(store: &Store, me: &PeerId, contact: &Contact, send_receipts: bool) -> Result<usize, OpError> {
    let peer: PeerId = contact
        .peer_id
        .parse()
        .map_err(|_| OpError::Invalid(format!("stored peer id {} is invalid", contact.peer_id)))?;
    let newly_read = store.mark_read(direct_conversation(me, &peer))?;
    if send_receipts && !newly_read.is_empty() && contact.state == ContactState::Accepted {
        let ids = newly_read.iter().map(|m| m.id).collect();
        enqueue(store, &contact.peer_id, &Payload::Receipt { kind: ReceiptKind::Read, ids })?;
        store.flush()?;
    }
    Ok(newly_read.len())
}

/// A page of a 1:1 conversation, oldest first, ending before `before` (or at the newest).
pub fn history(
    store: &Store,
    me: &PeerId,
    contact: &Contact,
    limit: usize,
    before: Option<&str>,
) -> Result<Vec<MessageView>, OpError> {
    let peer: PeerId = contact
        .peer_id
        .parse()
        .map_err(|_| OpError::Invalid(format!("stored peer id {} is invalid", contact.peer_id)))?;
    let before = before
        .map(|s| s.parse::<MessageId>().map_err(|_| OpError::Invalid(format!("bad message id {s:?}"))))
        .transpose()?;
    if let Some(id) = before
        && store.messages().get(id)?.is_none()
    {
        return Err(OpError::UnknownMessage(id.to_string()));
    }
    let page = store.messages().page(direct_conversation(me, &peer), before, limit)?;
    Ok(page.iter().map(|m| MessageView::new(m, Some(&contact.peer_id))).collect())
}

/// Contacts in a listing order, optionally only those in `state`.
pub fn contacts(store: &Store, state: Option<ContactState>) -> Result<Vec<ContactView>, OpError> {
    Ok(store
        .contacts()
        .list()?
        .iter()
        .filter(|c| state.is_none_or(|s| c.state == s))
        .map(ContactView::from)
        .collect())
}

/// Pending incoming requests with a preview of what each stranger sent.
pub fn requests(store: &Store, me: &PeerId) -> Result<Vec<RequestView>, OpError> {
    let mut out = Vec::new();
    for contact in store.contacts().list()? {
        if contact.state != ContactState::PendingIn {
            continue;
        }
        let (held_messages, preview) = match contact.peer_id.parse::<PeerId>() {
            Ok(peer) => {
                let conv = direct_conversation(me, &peer);
                let latest = store.messages().latest(conv)?;
                (store.messages().count(conv)?, latest.map(|m| m.text))
            }
            Err(_) => (0, None),
        };
        out.push(RequestView { contact: ContactView::from(&contact), held_messages, preview });
    }
    Ok(out)
}

/// Conversations with unread messages from accepted contacts, newest activity first.
pub fn inbox(store: &Store) -> Result<Vec<InboxEntry>, OpError> {
    let mut out = Vec::new();
    for conv in store.conversations().list()? {
        if conv.unread == 0 {
            continue;
        }
        if let Some(entry) = inbox_entry(store, &conv)? {
            out.push(entry);
        }
    }
    Ok(out)
}

fn inbox_entry(store: &Store, conv: &Conversation) -> Result<Option<InboxEntry>, OpError> {
    let ConversationKind::Direct { peer_id } = &conv.kind else {
        return Ok(None);
    };
    let Some(contact) = store.contacts().get(peer_id)? else {
        return Ok(None);
    };
    if contact.state != ContactState::Accepted {
        return Ok(None);
    }
    let last = store.messages().latest(conv.id)?.map(|m| MessageView::new(&m, Some(peer_id)));
    Ok(Some(InboxEntry {
        conversation: conv.id.to_string(),
        contact: Some(ContactView::from(&contact)),
        unread: conv.unread,
        last,
    }))
}

/// Block a peer that is not a contact yet, by its full peer id.
pub fn block_stranger(store: &Store, peer_id: &str) -> Result<Contact, OpError> {
    let peer: PeerId = peer_id
        .trim()
        .parse()
        .map_err(|_| OpError::UnknownContact(peer_id.to_owned()))?;
    let now = now_ms();
    let contact = Contact {
        peer_id: peer.to_string(),
        alias: None,
        display_name: None,
        state: ContactState::Blocked,
        e2e_public: None,
        binding: None,
        addrs: Vec::new(),
        relays: Vec::new(),
        added_at_ms: now,
        updated_at_ms: now,
    };
    store.contacts().put(&contact)?;
    store.flush()?;
    Ok(contact)
}
