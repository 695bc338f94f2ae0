//! What keeps deleted and stale messages from coming back: the replay window
//! and tombstones.
//!
//! Relays keep sealed mail and group logs for a while and may hand the same
//! envelope out again (a retry, a second relay, or a hostile operator). An
//! incoming message is refused when
//!
//! - its authenticated `sent_at_ms` is more than [`REPLAY_WINDOW`] before the
//!   time it is received, or more than [`MAX_CLOCK_SKEW`] after it
//!   ([`Refusal::Expired`], [`Refusal::Future`]); or
//! - its (author, id) was deleted with its conversation ([`Refusal::Deleted`]).
//!
//! Contact requests and acceptances carry no message id, only the time their
//! sender issued them (µs): one is refused outside the same window, or when it
//! was not issued after the newest one already taken from its sender
//! ([`Refusal::Replayed`]). That newest time is kept per peer and kind
//! ([`ContactPayload`]), after the contact is removed too, until the window alone
//! would refuse a copy.
//!
//! Deleting a conversation leaves a tombstone `id ‖ author digest → sent_at_ms`
//! for each of its messages still inside the window; a tombstone whose message
//! would now be refused by the window anyway is no longer needed and is pruned
//! ([`Store::prune_tombstones`](crate::Store::prune_tombstones)). So the
//! tombstones are bounded by the messages deleted within one window.

use std::time::Duration;

use libp2p_identity::PeerId;

use crate::codec::be_u64;
use crate::error::{StoreError, db};
use crate::messages::{Direction, Message};
use crate::schema::TOMBSTONES;

/// How long after it was written (its `sent_at_ms`) an incoming message is
/// still accepted: 35 days. Relays delete undelivered mail and group-log
/// items after 30 days by default (`mailbox.ttl_days`, `grouplog.ttl_days` in
/// kith-relay's config); the extra five days cover the relay's expiry sweep,
/// a message that waited in its sender's outbox before reaching a relay, and
/// clocks that disagree. Anything older could only be a replay.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(35 * 24 * 3600);

/// How far an incoming message's `sent_at_ms` may lie ahead of the receiver's
/// clock: one day, generous for badly set clocks. A later timestamp would keep
/// a message (and its tombstone) inside the window for longer than the window.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(24 * 3600);

/// Why an insert refused a message (see [`Inserted::Refused`](crate::Inserted::Refused)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// This author's message with this id was deleted (with its
    /// conversation); it stays deleted.
    #[error("the message was deleted")]
    Deleted,
    /// Its `sent_at_ms` is more than [`REPLAY_WINDOW`] before its
    /// `received_at_ms`.
    #[error("older than the replay window")]
    Expired,
    /// Its `sent_at_ms` is more than [`MAX_CLOCK_SKEW`] after its
    /// `received_at_ms`.
    #[error("dated in the future")]
    Future,
    /// A contact request or acceptance not issued after the last one taken
    /// from its sender: a copy (see
    /// [`Store::contact_payload_refusal`](crate::Store::contact_payload_refusal)).
    #[error("not newer than one already taken from its sender")]
    Replayed,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the window refuses `msg`: only incoming messages are checked, with
/// their `received_at_ms` (set by the receiver) as "now".
pub(crate) fn window(msg: &Message) -> Option<Refusal> {
    if msg.direction != Direction::Incoming {
        return None;
    }
    outside(msg.sent_at_ms, msg.received_at_ms)
}

/// Whether something written at `sent_at_ms` and received at `now_ms` lies
/// outside the replay window.
pub(crate) fn outside(sent_at_ms: u64, now_ms: u64) -> Option<Refusal> {
    if sent_at_ms.saturating_add(ms(REPLAY_WINDOW)) < now_ms {
        Some(Refusal::Expired)
    } else if sent_at_ms > now_ms.saturating_add(ms(MAX_CLOCK_SKEW)) {
        Some(Refusal::Future)
    } else {
        None
    }
}

/// Whether a message written at `sent_at_ms` still needs a tombstone at
/// `now_ms`: a replay of it received now would pass the window.
pub(crate) fn needs_tombstone(sent_at_ms: u64, now_ms: u64) -> bool {
    sent_at_ms.saturating_add(ms(REPLAY_WINDOW)) >= now_ms
}

/// Deletes the tombstones no longer needed at `now_ms`; returns how many.
pub(crate) fn prune(tombstones: &sled::Tree, now_ms: u64) -> Result<usize, StoreError> {
    let mut pruned = 0;
    for kv in tombstones.iter() {
        let (k, v) = kv.map_err(db)?;
        if !needs_tombstone(be_u64(TOMBSTONES, &v)?, now_ms) {
            tombstones.remove(k).map_err(db)?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// A kind of contact payload: each kind has its own mark per peer, so that a newer
/// acceptance never hides an older request still on its way (two people adding
/// each other at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactPayload {
    /// A contact request (or an invite's redemption).
    Request,
    /// The acceptance of one.
    Acceptance,
    /// Our own request to the peer, as we issued it: the acceptance that makes the
    /// peer a contact must answer it (or a later one).
    Asked,
}

/// The key of `peer`'s mark for `kind` in the `contact_heard` tree.
pub(crate) fn heard_key(peer: &PeerId, kind: ContactPayload) -> Vec<u8> {
    let mut key = crate::peer::text(peer).into_bytes();
    key.extend_from_slice(match kind {
        ContactPayload::Request => b"/request",
        ContactPayload::Acceptance => b"/acceptance",
        ContactPayload::Asked => b"/asked",
    });
    key
}

/// A mark's issue time (µs); `None` for a damaged one.
pub(crate) fn heard_us(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

/// Deletes the contact payloads' marks that the window alone now guards (a copy
/// issued at or before one of them would be refused as expired), and damaged ones.
pub(crate) fn prune_heard(heard: &sled::Tree, now_ms: u64) -> Result<(), StoreError> {
    for kv in heard.iter() {
        let (k, v) = kv.map_err(db)?;
        if heard_us(&v).is_none_or(|us| !needs_tombstone(us / 1000, now_ms)) {
            heard.remove(k).map_err(db)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConversationId, MessageId, MessageState};

    fn incoming(sent_at_ms: u64, received_at_ms: u64) -> Message {
        Message {
            id: MessageId([1; 16]),
            conversation: ConversationId([2; 16]),
            author: "a".into(),
            lamport: 1,
            sent_at_ms,
            received_at_ms,
            text: String::new(),
            state: MessageState::Delivered,
            direction: Direction::Incoming,
            file: None,
            link: None,
        }
    }

    #[test]
    fn window_edges() {
        let w = ms(REPLAY_WINDOW);
        let s = ms(MAX_CLOCK_SKEW);
        let now = 10 * w;
        assert_eq!(window(&incoming(now - w, now)), None, "at the edge");
        assert_eq!(window(&incoming(now - w - 1, now)), Some(Refusal::Expired));
        assert_eq!(window(&incoming(now + s, now)), None, "at the edge");
        assert_eq!(window(&incoming(now + s + 1, now)), Some(Refusal::Future));
        assert_eq!(window(&incoming(u64::MAX, u64::MAX)), None, "no overflow");
        assert_eq!(window(&incoming(0, u64::MAX)), Some(Refusal::Expired));
        let outgoing = Message {
            direction: Direction::Outgoing,
            ..incoming(0, now)
        };
        assert_eq!(window(&outgoing), None, "our own messages are not checked");
        assert!(needs_tombstone(now - w, now));
        assert!(!needs_tombstone(now - w - 1, now));
    }
}
