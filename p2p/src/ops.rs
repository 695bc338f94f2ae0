//! Local operations over the store, shared by the running node and the offline CLI.
//!
//! Everything here is storage only: outgoing items are queued in the persistent
//! outbox and a running node's actor sends them (immediately, or when it next starts).
//! The node calls these same functions, so online and offline behaviour cannot drift.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kith_storage::{
    Contact, ContactPayload, ContactState, Conversation, ConversationId, ConversationKind, Direction, FileRef, Group, Link, Message,
    MAX_DRAFT_LEN, MessageId, MessageState, Mute, OutboxEntry, Recipient, Store, StoreError,
};
use libp2p::PeerId;

use crate::payload::{MAX_TEXT_LEN, Payload, ReceiptKind};
use crate::views::{ContactView, ConversationView, InboxEntry, MessageView, RequestView};

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
    /// No group matches.
    #[error("no group matches {0:?}")]
    UnknownGroup(String),
    /// The group operation is not allowed (not an admin, not a member, the owner...).
    #[error("{0}")]
    NotAllowed(String),
    /// A message id given by the user is not known.
    #[error("no message {0}")]
    UnknownMessage(String),
    /// No file has an id starting with what the user gave.
    #[error("no file {0}")]
    UnknownFile(String),
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
    /// The search index failed (it can be rebuilt from the store).
    #[error("search index: {0}")]
    Search(String),
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

/// The time to stamp a contact request or acceptance with (`issued_us`): µs since
/// the Unix epoch, and later than every earlier answer in this process, so that two
/// issued within one clock tick are still told apart (the receiver takes only one
/// newer than the last it took, see [`Store::contact_payload_refusal`]).
pub fn issue_time_us() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    after_last(&LAST, now)
}

/// `now`, or one more than the last value `last` handed out if that is not earlier,
/// and remembered as the last: strictly increasing across calls.
fn after_last(last: &AtomicU64, now: u64) -> u64 {
    let mut seen = last.load(Ordering::Relaxed);
    loop {
        let next = now.max(seen.saturating_add(1));
        match last.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(value) => seen = value,
        }
    }
}

/// The `created_at_ms` of an item [`enqueue`] queues: the time, but later than
/// every earlier one in this process. A recipient's queue goes in creation order,
/// and items queued within one millisecond would otherwise go in the order of their
/// random ids: an acceptance's profile, sealed in the ratchet, could reach the
/// contact before the acceptance, which refuses it. Items queued faster than one a
/// millisecond drift ahead of the clock by as many milliseconds, never behind it.
pub fn queued_at_ms() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    after_last(&LAST, now_ms())
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
    // A whole peer id: one lookup, no scan (scripts and the node's own paths use these).
    if let Ok(peer) = query.parse::<PeerId>()
        && let Some(c) = store.contacts().get(&peer)?.filter(|c| c.state != ContactState::Member)
    {
        return Ok(c);
    }
    // Every send by name comes here: only the contacts that match are copied out of
    // the store, and only they are sorted (sorting encodes peer ids in base58) into
    // the order `list` gives.
    let lower = query.to_lowercase();
    let alias_of = |c: &Contact| c.alias.as_ref().map(|a| a.to_lowercase());
    // A peer id in base58 starts with `1` (identity multihash, as every Ed25519 key)
    // or `Q` (SHA-256); any other query cannot be a prefix of one.
    let may_be_peer_id = query.starts_with('1') || query.starts_with('Q');
    let candidates = store.contacts().matching(|c| {
        // Fellow group members we never added are not contacts.
        c.state != ContactState::Member
            && ((may_be_peer_id && c.peer_id.to_base58().starts_with(query))
                || alias_of(c).is_some_and(|a| a.starts_with(&lower))
                || c.display_name.as_ref().is_some_and(|n| n.to_lowercase() == lower))
    })?;
    // A whole alias wins over everything that merely starts with the query.
    let by_alias = candidates.iter().filter(|c| alias_of(c).as_deref() == Some(lower.as_str()));
    if let Some(c) = by_alias.min_by_key(|c| c.list_order()) {
        return Ok(c.clone());
    }
    let mut matches: Vec<&Contact> = candidates.iter().collect();
    matches.sort_by_cached_key(|c| c.list_order());
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpError::UnknownContact(query.to_owned())),
        many => Err(OpError::AmbiguousContact {
            query: query.to_owned(),
            candidates: many.iter().map(|c| ContactView::from(*c).label().to_owned()).collect(),
        }),
    }
}

/// Queue `payload` for the peer `recipient` in the outbox (not flushed: callers flush or batch).
pub fn enqueue(store: &Store, recipient: &PeerId, payload: &Payload) -> Result<MessageId, OpError> {
    let id = match payload {
        Payload::Text { id, .. } => *id,
        _ => new_message_id(),
    };
    store.outbox().put(&OutboxEntry {
        id,
        recipient: Recipient::Peer(*recipient),
        payload: payload.encode()?,
        attempts: 0,
        next_attempt_ms: now_ms(),
        created_at_ms: queued_at_ms(),
    })?;
    Ok(id)
}

/// Queues receipts of `kind` for `ids`, messages `author` wrote (as many payloads as
/// they need; not flushed).
pub fn enqueue_receipts(store: &Store, author: &PeerId, kind: ReceiptKind, ids: &[MessageId]) -> Result<(), OpError> {
    for receipt in Payload::receipts(kind, ids) {
        enqueue(store, author, &receipt)?;
    }
    Ok(())
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
    file: Option<&FileRef>,
    link: Option<&Link>,
    used_lamports: &mut HashMap<ConversationId, u64>,
) -> Result<(Message, OutboxEntry), OpError> {
    check_text(text, file, link)?;
    match contact.state {
        ContactState::Accepted | ContactState::PendingOut => {}
        state => {
            return Err(OpError::WrongState {
                peer: contact.peer_id.to_string(),
                state,
                why: "messages go only to contacts you added or accepted",
            });
        }
    }
    let peer = contact.peer_id;
    let kind = ConversationKind::Direct { peer_id: kith_storage::peer_text(&peer) };
    let message = next_message(store, me, (direct_conversation(me, &peer), kind), (text, file, link), used_lamports)?;
    let now = message.sent_at_ms;
    let payload = Payload::Text {
        id: message.id,
        lamport: message.lamport,
        sent_at_ms: message.sent_at_ms,
        text: message.text.clone(),
        file: file.map(crate::files::offer_of),
        link: message.link.clone(),
    };
    let entry = OutboxEntry {
        id: message.id,
        recipient: Recipient::Peer(peer),
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
                peer: contact.peer_id.to_string(),
                state: contact.state,
                why: "unblock the contact first",
            });
        }
        ContactState::Member => {
            return Err(OpError::WrongState {
                peer: contact.peer_id.to_string(),
                state: contact.state,
                why: "they did not ask; add them with their invite",
            });
        }
    }
    // The request it answers, as its mark keeps it (none for a stranger who only
    // wrote, or one pruned: 0, taken as any).
    let answers_us = store.contact_payload_mark(&contact.peer_id, ContactPayload::Request)?.unwrap_or(0);
    let accepted = Payload::ContactAccepted { name: my_name.map(str::to_owned), issued_us: issue_time_us(), answers_us };
    enqueue(store, &contact.peer_id, &accepted)?;
    set_state(store, contact, ContactState::Accepted)
}

/// Reject a request: the contact and any messages it sent are deleted.
pub fn reject(store: &Store, me: &PeerId, contact: &Contact) -> Result<(), OpError> {
    if contact.state != ContactState::PendingIn {
        return Err(OpError::WrongState {
            peer: contact.peer_id.to_string(),
            state: contact.state,
            why: "only incoming requests can be rejected (use remove or block)",
        });
    }
    remove(store, me, contact)
}

/// Forget a contact and its conversation. A fellow member of a group we are in stays
/// known as a hidden `member` record (its keys kept), so that group keys and changes
/// still reach it end to end.
pub fn remove(store: &Store, me: &PeerId, contact: &Contact) -> Result<(), OpError> {
    store.conversations().remove(direct_conversation(me, &contact.peer_id), now_ms())?;
    // Added again, it gets a new ticket at once (the one it holds runs out by itself).
    store.deposit_tickets().forget(&contact.peer_id)?;
    if in_a_group_with_us(store, &contact.peer_id)? {
        let member = Contact {
            state: ContactState::Member,
            alias: None,
            verified_at_ms: None,
            updated_at_ms: now_ms(),
            ..contact.clone()
        };
        store.contacts().put(&member)?;
    } else {
        store.contacts().remove(&contact.peer_id)?;
    }
    Ok(())
}

/// Whether `peer` is a member of a group we take part in.
fn in_a_group_with_us(store: &Store, peer: &PeerId) -> Result<bool, OpError> {
    Ok(store.groups().list()?.iter().any(|g| g.active && g.has_member(peer)))
}

/// A contact's safety number, and with `mark` `Some(true)` marks it verified (which
/// also clears a key change: the user checked the key it has now), `Some(false)`
/// unmarks it. Only accepted contacts have one to compare.
pub fn verify(store: &Store, me: &PeerId, contact: &Contact, mark: Option<bool>) -> Result<crate::views::VerifyView, OpError> {
    if contact.state != ContactState::Accepted {
        return Err(OpError::WrongState {
            peer: contact.peer_id.to_base58(),
            state: contact.state,
            why: "only accepted contacts are verified",
        });
    }
    let safety_number =
        crate::identity::safety_number(me, &contact.peer_id).map_err(|e| OpError::Invalid(e.to_string()))?;
    let mut contact = contact.clone();
    if let Some(mark) = mark {
        let now = now_ms();
        contact.verified_at_ms = mark.then_some(now);
        if mark {
            contact.key_changed_at_ms = None;
        }
        contact.updated_at_ms = now;
        store.contacts().put(&contact)?;
    }
    let qr = crate::invite::qr_text(&safety_number, crate::invite::QrColors::LightOnDark)
        .map_err(|e| OpError::Invalid(e.to_string()))?;
    Ok(crate::views::VerifyView {
        contact: ContactView::from(&contact),
        safety_number,
        qr,
        verified_at: contact.verified_at_ms,
    })
}

/// Set or clear the local alias of a contact.
pub fn rename(store: &Store, contact: &Contact, alias: &str) -> Result<Contact, OpError> {
    let alias = alias.trim();
    let mut updated = contact.clone();
    updated.alias = (!alias.is_empty()).then(|| alias.to_owned());
    updated.updated_at_ms = now_ms();
    store.contacts().put(&updated)?;
    Ok(updated)
}

/// Mark a 1:1 conversation read; queues a read receipt unless `send_receipts` is off.
/// Returns how many messages became read.
pub fn mark_read(store: &Store, me: &PeerId, contact: &Contact, send_receipts: bool) -> Result<usize, OpError> {
    let peer = contact.peer_id;
    let newly_read = store.stage_read(direct_conversation(me, &peer))?;
    if send_receipts && !newly_read.is_empty() && contact.state == ContactState::Accepted {
        let ids: Vec<MessageId> = newly_read.iter().map(|m| m.id).collect();
        enqueue_receipts(store, &contact.peer_id, ReceiptKind::Read, &ids)?;
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
    let peer = contact.peer_id;
    let page = page_of(store, direct_conversation(me, &peer), limit, before)?;
    shown_page(store, &page, Some(&peer.to_base58()))
}

/// A page of a group's conversation, oldest first, ending before `before`. Its
/// messages have no `peer`; their `conversation` is the group id.
pub fn group_history(store: &Store, group: &Group, limit: usize, before: Option<&str>) -> Result<Vec<MessageView>, OpError> {
    let page = page_of(store, crate::group::conversation(&group.id), limit, before)?;
    shown_page(store, &page, None)
}

/// A page's messages as shown: changes applied, quotes filled in, those the user
/// hid left out.
fn shown_page(store: &Store, page: &[Message], peer: Option<&str>) -> Result<Vec<MessageView>, OpError> {
    let mut out = Vec::with_capacity(page.len());
    // A group page's counts are over one audience, read once for the page.
    let mut audience: Option<Option<Vec<String>>> = None;
    for m in page {
        let annotations = store.messages().annotations(m)?;
        if annotations.hidden {
            continue;
        }
        let mut view = MessageView::annotated_with(store, m, peer, &annotations)?;
        if peer.is_none() && crate::views::counted(m) {
            let audience = match &audience {
                Some(known) => known,
                None => audience.insert(crate::views::GroupReceiptsView::audience(store, kith_storage::GroupId(m.conversation.0), &m.author)?),
            };
            if let Some(audience) = audience {
                view.receipts = Some(crate::views::GroupReceiptsView::over(store, m, audience)?);
            }
        }
        out.push(view);
    }
    Ok(out)
}

/// One stored message as it is shown now (changes applied, its quote filled in),
/// with `peer` set when it is in a 1:1 conversation.
pub fn message_view(store: &Store, message: &Message) -> Result<MessageView, OpError> {
    let peer = match store.conversations().get(message.conversation)? {
        Some(Conversation { kind: ConversationKind::Direct { peer_id }, .. }) => Some(peer_id),
        _ => None,
    };
    Ok(MessageView::annotated(store, message, peer.as_deref())?)
}

/// The message whose id is `id` (hex), which must be a message shown, not a change.
pub fn message_by_id(store: &Store, id: &str) -> Result<Message, OpError> {
    let parsed: MessageId = id.parse().map_err(|_| OpError::Invalid(format!("bad message id {id:?}")))?;
    let mut all = store.messages().with_id(parsed)?;
    if all.is_empty() {
        return Err(OpError::UnknownMessage(id.to_owned()));
    }
    all.retain(|m| m.link.as_ref().and_then(Link::changed).is_none());
    // A peer may have reused an id it saw: then ours is meant, or nothing is.
    if all.len() > 1 {
        all.retain(|m| m.direction == Direction::Outgoing);
    }
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(OpError::Invalid(format!("{id} is an edit, a delete or a reaction, or several people's messages have it"))),
        _ => Err(OpError::Invalid(format!("several messages have the id {id}"))),
    }
}

/// The conversation messages to `target` (a contact or group, as the user names
/// it) go to.
pub fn conversation_of(store: &Store, me: &PeerId, target: &str) -> Result<ConversationId, OpError> {
    Ok(match resolve_target(store, target)? {
        Target::Contact(contact) => direct_conversation(me, &contact.peer_id),
        Target::Group(group) => crate::group::conversation(&group.id),
    })
}

/// How to name `message`'s conversation when sending to it: the peer id of a 1:1
/// conversation's contact, the id of a group.
pub fn target_of(store: &Store, message: &Message) -> Result<String, OpError> {
    match store.conversations().get(message.conversation)? {
        Some(Conversation { kind: ConversationKind::Direct { peer_id }, .. }) => Ok(peer_id),
        Some(Conversation { kind: ConversationKind::Group { group_id }, .. }) => Ok(group_id.to_string()),
        None => Err(OpError::UnknownMessage(message.id.to_string())),
    }
}

/// Hides message `id` on this node only ("delete for me"): stores a hide that is
/// never sent. Returns the hidden message's id. Not flushed.
pub fn hide(store: &Store, me: &PeerId, id: &str) -> Result<String, OpError> {
    let message = message_by_id(store, id)?;
    let conversation = store
        .conversations()
        .get(message.conversation)?
        .ok_or_else(|| OpError::UnknownMessage(id.to_owned()))?;
    let link = Link::Hide(message.id);
    let place = (conversation.id, conversation.kind);
    let mut hide = next_message(store, me, place, ("", None, Some(&link)), &mut HashMap::new())?;
    // Nothing sends it, so nothing may wait for it either.
    hide.state = MessageState::Read;
    store.messages().insert(&hide)?;
    Ok(message.id.to_string())
}

/// What clients hear when `message` was just stored (by a peer, or for a change
/// also by us): a message received (shown with its quote), or the message a
/// change changed, as it is now. Nothing for a change whose message is not
/// here (yet) or is hidden, nor for a hide. `peer` names the other party of a 1:1
/// conversation.
pub fn stored_event(store: &Store, message: &Message, peer: Option<&str>) -> Result<Option<crate::node::Event>, OpError> {
    use crate::node::Event;
    let Some(target) = message.link.as_ref().and_then(Link::changed) else {
        return Ok(Some(Event::MessageReceived { message: MessageView::annotated(store, message, peer)? }));
    };
    if matches!(message.link, Some(Link::Hide(_))) {
        return Ok(None);
    }
    // An edit or a delete counts only on its author's own message: that one, not
    // another with the same id (a peer may copy an id it saw), is the one changed.
    let changed = match message.link {
        Some(Link::Edit(_) | Link::Delete(_)) => {
            store.messages().get_from(&message.author, target)?.filter(|t| t.conversation == message.conversation)
        }
        _ => store.messages().get_in(message.conversation, target)?,
    };
    match changed {
        Some(t) if !store.messages().annotations(&t)?.hidden => {
            Ok(Some(Event::MessageChanged { message: MessageView::annotated(store, &t, peer)? }))
        }
        _ => Ok(None),
    }
}

/// Our messages still `pending` or `failed`, oldest first (by when we wrote them).
/// Reads every conversation's messages, a page at a time.
pub fn unsent(store: &Store) -> Result<Vec<MessageView>, OpError> {
    const PAGE: usize = 512;
    let mut unsent = Vec::new();
    for conversation in store.conversations().list()? {
        let peer = match &conversation.kind {
            ConversationKind::Direct { peer_id } => Some(peer_id.as_str()),
            ConversationKind::Group { .. } => None,
        };
        let mut before = None;
        loop {
            let page = store.messages().page(conversation.id, before, PAGE)?;
            unsent.extend(
                page.iter()
                    .filter(|m| m.direction == Direction::Outgoing)
                    .filter(|m| matches!(m.state, MessageState::Pending | MessageState::Failed))
                    .map(|m| MessageView::new(m, peer)),
            );
            match page.first() {
                Some(oldest) if page.len() >= PAGE => before = Some(oldest.id),
                _ => break,
            }
        }
    }
    unsent.sort_by_key(|m| (m.sent_at, m.lamport));
    Ok(unsent)
}

fn page_of(store: &Store, conversation: ConversationId, limit: usize, before: Option<&str>) -> Result<Vec<Message>, OpError> {
    let before = before
        .map(|s| s.parse::<MessageId>().map_err(|_| OpError::Invalid(format!("bad message id {s:?}"))))
        .transpose()?;
    if let Some(id) = before
        && store.messages().get(id)?.is_none()
    {
        return Err(OpError::UnknownMessage(id.to_string()));
    }
    Ok(store.messages().page(conversation, before, limit)?)
}

/// Mark a group's conversation read; unless `send_receipts` is off, each author of a
/// message that became read gets a read receipt (for "read by 3 of 5"), if still a
/// member and not blocked, in groups of at most [`crate::group::MAX_COUNTED_MEMBERS`].
/// Returns how many messages became read.
pub fn mark_group_read(store: &Store, me: &PeerId, group: &Group, send_receipts: bool) -> Result<usize, OpError> {
    let newly_read = store.stage_read(crate::group::conversation(&group.id))?;
    if send_receipts && group.active && group.members.len() <= crate::group::MAX_COUNTED_MEMBERS {
        let mut by_author: HashMap<&str, Vec<MessageId>> = HashMap::new();
        for m in &newly_read {
            if m.author != me.to_base58() && group.members.iter().any(|member| member.peer_id == m.author) {
                by_author.entry(&m.author).or_default().push(m.id);
            }
        }
        for (author, ids) in by_author {
            let Ok(author) = author.parse::<PeerId>() else { continue };
            if !store.contacts().is_blocked(&author)? {
                enqueue_receipts(store, &author, ReceiptKind::Read, &ids)?;
            }
        }
    }
    Ok(newly_read.len())
}

/// A group by id, unique id prefix, or name (case-insensitive; unique prefix too).
pub fn resolve_group(store: &Store, query: &str) -> Result<Group, OpError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(OpError::Invalid("empty group name".into()));
    }
    let groups = store.groups().list()?;
    let lower = query.to_lowercase();
    if let Some(g) = groups.iter().find(|g| g.id.to_string() == lower || g.name.to_lowercase() == lower) {
        return Ok(g.clone());
    }
    let matches: Vec<&Group> = groups
        .iter()
        .filter(|g| g.id.to_string().starts_with(&lower) || g.name.to_lowercase().starts_with(&lower))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpError::UnknownGroup(query.to_owned())),
        many => Err(OpError::AmbiguousContact {
            query: query.to_owned(),
            candidates: many.iter().map(|g| format!("{} ({})", g.name, g.id)).collect(),
        }),
    }
}

/// What a user can write to or read: a contact or a group.
#[derive(Debug, Clone)]
pub enum Target {
    /// A 1:1 conversation.
    Contact(Contact),
    /// A group conversation.
    Group(Group),
}

/// Resolve a name to a contact or, when no contact matches, a group. A name that
/// matches neither is reported as an unknown contact.
pub fn resolve_target(store: &Store, query: &str) -> Result<Target, OpError> {
    match resolve_contact(store, query) {
        Ok(c) => Ok(Target::Contact(c)),
        Err(OpError::UnknownContact(q)) => match resolve_group(store, query) {
            Ok(g) => Ok(Target::Group(g)),
            Err(OpError::UnknownGroup(_)) => Err(OpError::UnknownContact(q)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Compose a text message to a group, without storing it (the caller seals it with
/// its sender key and stores it with the batch; see [`compose_text`]).
pub fn compose_group_text(
    store: &Store,
    me: &PeerId,
    group: &Group,
    text: &str,
    file: Option<&FileRef>,
    link: Option<&Link>,
    used_lamports: &mut HashMap<ConversationId, u64>,
) -> Result<Message, OpError> {
    check_text(text, file, link)?;
    if group.invited_by.is_some() {
        return Err(OpError::NotAllowed(format!("{} is an invitation: accept it first (kith group accept)", group.name)));
    }
    if !group.active {
        return Err(OpError::NotAllowed(format!("you are no longer a member of {}", group.name)));
    }
    let conversation = crate::group::conversation(&group.id);
    let kind = ConversationKind::Group { group_id: group.id };
    next_message(store, me, (conversation, kind), (text, file, link), used_lamports)
}

/// A text is refused when empty, unless it is a file's caption or the message is a
/// delete, a hide or a reaction (which carry none).
fn check_text(text: &str, file: Option<&FileRef>, link: Option<&Link>) -> Result<(), OpError> {
    let textless = matches!(link, Some(Link::Delete(_) | Link::Hide(_) | Link::React { .. }));
    if text.is_empty() && file.is_none() && !textless {
        return Err(OpError::Invalid("empty message".into()));
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(OpError::TooLong { len: text.len(), max: MAX_TEXT_LEN });
    }
    Ok(())
}

/// The next outgoing message of a conversation (created if needed), with a Lamport
/// counter above the stored one and any handed out in this batch, carrying
/// `text`, `file` and `link`.
fn next_message(
    store: &Store,
    me: &PeerId,
    (conversation, kind): (ConversationId, ConversationKind),
    (text, file, link): (&str, Option<&FileRef>, Option<&Link>),
    used_lamports: &mut HashMap<ConversationId, u64>,
) -> Result<Message, OpError> {
    let now = now_ms();
    let last = match used_lamports.get(&conversation) {
        Some(last) => *last,
        None => store.conversations().get_or_create(conversation, kind, now)?.last_lamport,
    };
    // Incoming counters are capped at MAX_LAMPORT when decoded. A peer that pushed a
    // conversation to the cap leaves its counter there: later messages tie on it and
    // are ordered by id, and nothing overflows.
    let lamport = last.saturating_add(1).min(crate::payload::MAX_LAMPORT);
    used_lamports.insert(conversation, lamport);
    Ok(Message {
        id: new_message_id(),
        conversation,
        author: kith_storage::peer_text(me),
        lamport,
        sent_at_ms: now,
        received_at_ms: now,
        text: text.to_owned(),
        state: MessageState::Pending,
        direction: Direction::Outgoing,
        file: file.map(|f| Box::new(f.clone())),
        link: link.cloned(),
    })
}

/// Files this node sent and received, oldest first; only those of `target`'s
/// conversation (a contact or group) when given.
pub fn files(store: &Store, me: &PeerId, target: Option<&str>) -> Result<Vec<crate::views::FileEntryView>, OpError> {
    let conversation = match target {
        None => None,
        Some(target) => Some(match resolve_target(store, target)? {
            Target::Contact(c) => direct_conversation(me, &c.peer_id),
            Target::Group(g) => crate::group::conversation(&g.id),
        }),
    };
    let records = store.files().list()?;
    Ok(records
        .iter()
        .filter(|r| conversation.is_none_or(|c| r.conversation == c))
        .map(crate::views::FileEntryView::from)
        .collect())
}

/// Contacts in a listing order, optionally only those in `state`.
pub fn contacts(store: &Store, state: Option<ContactState>) -> Result<Vec<ContactView>, OpError> {
    Ok(store
        .contacts()
        .list()?
        .iter()
        .filter(|c| state.map_or(c.state != ContactState::Member, |s| c.state == s))
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
        let conv = direct_conversation(me, &contact.peer_id);
        let latest = store.messages().latest(conv)?;
        let (held_messages, preview) = (store.messages().count(conv)?, latest.map(|m| m.text));
        out.push(RequestView { contact: ContactView::from(&contact), held_messages, preview });
    }
    Ok(out)
}

/// Conversations with unread messages from accepted contacts and from groups (the
/// group id is the conversation id; `contact` is empty), newest activity first.
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
    let peer_id = match &conv.kind {
        ConversationKind::Direct { peer_id } => peer_id,
        ConversationKind::Group { .. } => {
            let last = store.messages().latest(conv.id)?.map(|m| MessageView::new(&m, None));
            let (muted, muted_until) = muted(store, conv.id)?;
            return Ok(Some(InboxEntry {
                conversation: conv.id.to_string(),
                contact: None,
                unread: conv.unread,
                last,
                muted,
                muted_until,
            }));
        }
    };
    let Ok(peer) = peer_id.parse::<PeerId>() else {
        return Ok(None);
    };
    let Some(contact) = store.contacts().get(&peer)? else {
        return Ok(None);
    };
    if contact.state != ContactState::Accepted {
        return Ok(None);
    }
    let last = store.messages().latest(conv.id)?.map(|m| MessageView::new(&m, Some(peer_id)));
    let (muted, muted_until) = muted(store, conv.id)?;
    Ok(Some(InboxEntry {
        conversation: conv.id.to_string(),
        contact: Some(ContactView::from(&contact)),
        unread: conv.unread,
        last,
        muted,
        muted_until,
    }))
}

/// Whether `conversation` is muted now, and until when (`None`: forever or not muted).
fn muted(store: &Store, conversation: ConversationId) -> Result<(bool, Option<u64>), OpError> {
    let mute = store.mutes().get(conversation, now_ms())?;
    Ok((mute.is_some(), mute.and_then(Mute::until_ms)))
}

/// The conversation `target` (a contact or group) names, created empty if it has
/// none yet, so its preferences show in [`conversations`].
fn target_conversation(store: &Store, me: &PeerId, target: &str, now: u64) -> Result<Conversation, OpError> {
    let (id, kind) = match resolve_target(store, target)? {
        Target::Contact(c) => (direct_conversation(me, &c.peer_id), ConversationKind::Direct { peer_id: c.peer_id.to_base58() }),
        Target::Group(g) => (crate::group::conversation(&g.id), ConversationKind::Group { group_id: g.id }),
    };
    Ok(store.conversations().get_or_create(id, kind, now)?)
}

fn conversation_view(store: &Store, conv: &Conversation, now: u64) -> Result<ConversationView, OpError> {
    let mute = store.mutes().get(conv.id, now)?;
    Ok(ConversationView::new(conv, mute, store.drafts().get(conv.id)?))
}

/// Mutes the conversation with `target` (`mute`), or unmutes it (`None`). A mute
/// that would already be over at `now` is [`OpError::Invalid`].
pub fn set_mute(store: &Store, me: &PeerId, target: &str, mute: Option<Mute>, now: u64) -> Result<ConversationView, OpError> {
    let conv = target_conversation(store, me, target, now)?;
    match mute {
        Some(mute) if !mute.holds(now) => return Err(OpError::Invalid("the mute would end in the past".into())),
        Some(mute) => store.mutes().set(conv.id, mute)?,
        None => drop(store.mutes().remove(conv.id, now)?),
    }
    conversation_view(store, &conv, now)
}

/// Keeps `text` as the draft of the conversation with `target` (empty: none). At
/// most [`MAX_DRAFT_LEN`] bytes.
pub fn set_draft(store: &Store, me: &PeerId, target: &str, text: &str, now: u64) -> Result<ConversationView, OpError> {
    if text.len() > MAX_DRAFT_LEN {
        return Err(OpError::TooLong { len: text.len(), max: MAX_DRAFT_LEN });
    }
    let conv = target_conversation(store, me, target, now)?;
    store.drafts().set(conv.id, text)?;
    conversation_view(store, &conv, now)
}

/// Every conversation with its mute (as of `now`) and draft, most recently active first.
pub fn conversations(store: &Store, now: u64) -> Result<Vec<ConversationView>, OpError> {
    let mutes: HashMap<ConversationId, Mute> = store.mutes().list(now)?.into_iter().collect();
    let mut drafts: HashMap<ConversationId, String> = store.drafts().list()?.into_iter().collect();
    Ok(store
        .conversations()
        .list()?
        .iter()
        .map(|c| ConversationView::new(c, mutes.get(&c.id).copied(), drafts.remove(&c.id)))
        .collect())
}

/// A duration as people type it: a number and a unit, `s`, `m`, `h`, `d` or `w`
/// (`90s`, `30m`, `8h`, `2d`), or several in a row (`1h30m`). `None` for anything
/// else, and for zero.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(secs)?)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    (total > 0).then(|| std::time::Duration::from_secs(total))
}

/// Takes a verified `binding` of `key` for `contact` by the rules of
/// [`crate::identity::key_update`]: a new key or a newer binding of the held one is
/// stored; another key is stored and marked changed (`key_changed_at_ms`, which holds
/// a verified contact); a stale or expired one leaves the contact as it was. Returns
/// the judgement, for the caller to tell the user or refuse.
pub fn take_key(contact: &mut Contact, key: [u8; 32], binding: &crate::identity::Binding, now_ms: u64) -> crate::identity::KeyUpdate {
    use crate::identity::{Binding, KeyUpdate, key_update};
    let held = contact.e2e_public.map(|k| (k, contact.binding.as_deref().and_then(Binding::from_bytes)));
    let update = key_update(held, &key, binding, now_ms);
    match update {
        KeyUpdate::New | KeyUpdate::Same { renewed: true } | KeyUpdate::Changed => {
            if update == KeyUpdate::Changed {
                contact.key_changed_at_ms = Some(now_ms);
            }
            contact.e2e_public = Some(key);
            contact.binding = Some(binding.to_bytes());
        }
        KeyUpdate::Same { renewed: false } => {}
        KeyUpdate::Stale | KeyUpdate::Expired => {
            tracing::warn!(peer = %contact.peer_id, ?update, "refused an end-to-end key for a contact");
        }
    }
    update
}

/// A contact record for `peer` in `state` that knows nothing else about it yet.
pub fn new_contact(peer: &PeerId, state: ContactState) -> Contact {
    let now = now_ms();
    Contact {
        peer_id: *peer,
        alias: None,
        display_name: None,
        state,
        e2e_public: None,
        binding: None,
        addrs: Vec::new(),
        relays: Vec::new(),
        added_at_ms: now,
        updated_at_ms: now,
        last_seen_ms: None,
        verified_at_ms: None,
        key_changed_at_ms: None,
    }
}

/// Block a peer that is not a contact yet, by its full peer id.
pub fn block_stranger(store: &Store, peer_id: &str) -> Result<Contact, OpError> {
    let peer: PeerId = peer_id
        .trim()
        .parse()
        .map_err(|_| OpError::UnknownContact(peer_id.to_owned()))?;
    let contact = new_contact(&peer, ContactState::Blocked);
    store.contacts().put(&contact)?;
    Ok(contact)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn items_queued_within_one_millisecond_keep_their_order_in_a_recipients_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let peer = PeerId::random();
        let queued: Vec<MessageId> =
            (0..200).map(|_| enqueue(&store, &peer, &Payload::Typing { group: None }).unwrap()).collect();
        // As the node's queues load them: by creation time, ties in list order.
        let mut entries = store.outbox().list().unwrap();
        entries.sort_by_key(|e| e.created_at_ms);
        let loaded: Vec<MessageId> = entries.iter().map(|e| e.id).collect();
        assert_eq!(loaded, queued);
    }

    #[test]
    fn a_stamp_is_the_time_unless_that_is_not_after_the_last() {
        let last = AtomicU64::new(0);
        assert_eq!(after_last(&last, 100), 100);
        assert_eq!(after_last(&last, 100), 101, "one tick: one more");
        assert_eq!(after_last(&last, 100), 102);
        assert_eq!(after_last(&last, 500), 500, "the clock passed it: the clock");
        assert_eq!(after_last(&last, 400), 501, "the clock went back: still later");
    }

    #[test]
    fn a_delete_announces_its_authors_message_not_another_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let conversation = kith_storage::ConversationId::from_bytes([3; 16]);
        let kind = ConversationKind::Group { group_id: kith_storage::GroupId([3; 16]) };
        store.conversations().ensure(conversation, kind, 0).unwrap();
        let (author, copier) = (PeerId::random().to_base58(), PeerId::random().to_base58());
        let message = |id: u128, by: &str, lamport: u64, link: Option<Link>| Message {
            id: MessageId::from_bytes(id.to_be_bytes()),
            conversation,
            author: by.to_owned(),
            lamport,
            sent_at_ms: 1_000,
            received_at_ms: 1_000,
            text: "hi".into(),
            state: MessageState::Delivered,
            direction: kith_storage::Direction::Incoming,
            file: None,
            link,
        };
        // A member copies the id of the author's message into one of their own,
        // ordered before it.
        store.insert_incoming_batch(&[message(1, &author, 5, None), message(1, &copier, 2, None)]).unwrap();
        let delete = message(2, &author, 6, Some(Link::Delete(MessageId::from_bytes(1u128.to_be_bytes()))));
        store.insert_incoming_batch(std::slice::from_ref(&delete)).unwrap();
        match stored_event(&store, &delete, None).unwrap() {
            Some(crate::node::Event::MessageChanged { message }) => {
                assert_eq!((message.author.as_str(), message.deleted), (author.as_str(), true));
            }
            other => panic!("the author's message changed, not {other:?}"),
        }
    }

    #[test]
    fn durations_read_as_people_type_them() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("30m"), Some(1_800));
        assert_eq!(secs("8h"), Some(28_800));
        assert_eq!(secs("2d"), Some(172_800));
        assert_eq!(secs("1h30m"), Some(5_400));
        assert_eq!(secs(" 2s "), Some(2));
        for bad in ["", "0m", "10", "m", "5x", "-1h", "1.5h", "99999999999999999999d"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_peer_id_in_base58_starts_with_1_or_q() {
        for _ in 0..50 {
            let ed25519 = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id().to_base58();
            assert!(ed25519.starts_with('1'), "{ed25519}");
        }
        // A key too long to inline is hashed with SHA-256: `Qm…`.
        let sha256 = PeerId::from_bytes(&[&[0x12, 0x20][..], &[9; 32]].concat()).unwrap().to_base58();
        assert!(sha256.starts_with('Q'), "{sha256}");
        assert!(PeerId::random().to_base58().starts_with('1'));
    }

    #[test]
    fn removing_a_fellow_group_member_keeps_it_as_a_hidden_member_and_anyone_else_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let me = PeerId::random();
        let (fellow, other) = (PeerId::random(), PeerId::random());
        let group = |active: bool, members: &[PeerId]| kith_storage::Group {
            id: kith_storage::GroupId([u8::from(active); 16]),
            name: "club".into(),
            members: members.iter().map(|p| kith_storage::Member { peer_id: p.to_base58(), role: kith_storage::Role::Member }).collect(),
            version: 1,
            created_at_ms: 0,
            relays: Vec::new(),
            active,
            invited_by: None,
        };
        store.groups().put(&group(true, &[me, fellow])).unwrap();
        // A group we left does not keep anyone.
        store.groups().put(&group(false, &[me, other])).unwrap();
        for peer in [fellow, other] {
            let contact = Contact {
                alias: Some("pal".into()),
                e2e_public: Some([5; 32]),
                verified_at_ms: Some(1),
                ..new_contact(&peer, ContactState::Accepted)
            };
            store.contacts().put(&contact).unwrap();
            remove(&store, &me, &contact).unwrap();
        }
        let kept = store.contacts().get(&fellow).unwrap().expect("the fellow member stays known");
        assert_eq!(kept.state, ContactState::Member);
        assert_eq!((kept.alias, kept.verified_at_ms, kept.e2e_public), (None, None, Some([5; 32])));
        assert!(resolve_contact(&store, &fellow.to_base58()).is_err(), "no longer a contact");
        assert_eq!(store.contacts().get(&other).unwrap(), None);
    }

    #[test]
    fn contacts_resolve_by_alias_peer_id_prefix_and_name_and_ambiguity_lists_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let add = |alias: Option<&str>, name: Option<&str>, state: ContactState| {
            let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
            let contact = Contact {
                alias: alias.map(str::to_owned),
                display_name: name.map(str::to_owned),
                ..new_contact(&peer, state)
            };
            store.contacts().put(&contact).unwrap();
            contact
        };
        let bob = add(Some("Bob"), None, ContactState::Accepted);
        let bobby = add(Some("bobby"), None, ContactState::Accepted);
        let ann = add(None, Some("Ann"), ContactState::Accepted);
        add(Some("zed"), None, ContactState::Member);
        let found = |q: &str| resolve_contact(&store, q).map(|c| c.peer_id);

        assert_eq!(found("bob").unwrap(), bob.peer_id, "an exact alias wins over a prefix of another");
        assert_eq!(found("bobb").unwrap(), bobby.peer_id);
        assert_eq!(found("ann").unwrap(), ann.peer_id, "a display name, whole");
        assert_eq!(found(&ann.peer_id.to_base58()[..20]).unwrap(), ann.peer_id, "a peer id prefix");
        assert!(matches!(found("zed"), Err(OpError::UnknownContact(_))), "group members are not contacts");
        match resolve_contact(&store, "b") {
            Err(OpError::AmbiguousContact { candidates, .. }) => assert_eq!(candidates, ["Bob", "bobby"]),
            other => panic!("{other:?}"),
        }
        match resolve_contact(&store, "12D3KooW") {
            Err(OpError::AmbiguousContact { candidates, .. }) => assert_eq!(candidates.len(), 3),
            other => panic!("{other:?}"),
        }
    }
}
