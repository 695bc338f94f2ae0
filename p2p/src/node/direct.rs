//! The rules of 1:1 delivery, apart from the swarm and the store: whether a
//! contact's queue may send now, which way a batch goes, what a peer's answer does
//! to each item it carried, and where a batch goes after a failed direct attempt.
//! The actor gathers the inputs, asks these, and carries out what they say (the
//! queues themselves are [`super::outbox::Queues`]).

use kith_storage::{Contact, ContactState, MessageId, MessageState};

use crate::dm::{DmResult, RejectReason};
use crate::payload::Payload;

/// How many times a failed dial is tried again with a contact's own addresses
/// before its batch goes to the relays, until a connection opens.
pub(crate) const MAX_REDIALS: u8 = 3;

/// Whether a queued payload may go to a fellow group member who is not a contact (a
/// `member` record): the group's operations, syncs and keys, and receipts for the
/// member's group messages. Anything else (a text, a contact request or answer, a
/// profile queued before the user removed the contact) may not, and is dropped.
pub(crate) fn goes_to_a_member(payload: &[u8]) -> bool {
    matches!(
        Payload::decode(payload),
        Ok(Payload::GroupOps { .. } | Payload::GroupSync { .. } | Payload::GroupKey { .. } | Payload::Receipt { .. })
    )
}

/// Whether a contact's queue may send now, judged from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The contact was removed: its items have nowhere to go.
    Removed,
    /// Blocked: its items leave the queues (the store keeps them).
    Blocked,
    /// Verified, and its key changed since: nothing leaves until the user verifies
    /// it again; the items stay queued.
    Held,
    /// Its end-to-end key is not known yet: it is looked up, and the queue waits.
    NeedsKey,
    /// A fellow group member who is not a contact (a `member` record, perhaps a
    /// contact the user removed): its group payloads may be sealed and sent; anything
    /// else queued for it is dropped (see [`goes_to_a_member`]).
    GroupOnly,
    /// Items may be sealed to its key and sent.
    Open,
}

/// The [`Gate`] of a contact's queue; `None` for a contact that is gone.
pub(crate) fn gate(contact: Option<&Contact>) -> Gate {
    match contact {
        None => Gate::Removed,
        Some(c) if c.state == ContactState::Blocked => Gate::Blocked,
        Some(c) if c.held() => Gate::Held,
        Some(c) if c.e2e_public.is_none() => Gate::NeedsKey,
        Some(c) if c.state == ContactState::Member => Gate::GroupOnly,
        Some(_) => Gate::Open,
    }
}

/// Which way a sealed batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A request to the contact itself (dialing it if need be).
    Direct,
    /// Deposits to the relays the contact pinned, to wait there until it is back.
    Relays,
}

/// The [`Route`] of a batch: to the relays only once a direct attempt failed, while
/// the contact is not connected, and if it pinned any.
pub(crate) fn route(prefers_relays: bool, connected: bool, has_relays: bool) -> Route {
    if prefers_relays && !connected && has_relays { Route::Relays } else { Route::Direct }
}

/// What a peer's answer does to the items of the request it answers.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The state each item moves to, in request order: `Delivered` for one stored,
    /// `Sent` for one only taken, `Failed` for one refused for good. An item the peer
    /// could not store now (its storage failed, or it was not ready) is not here: it
    /// stays queued and goes again.
    pub(crate) moves: Vec<(MessageId, MessageState)>,
    /// The items refused for good, with the peer's reason (for the log).
    pub(crate) refused: Vec<(MessageId, RejectReason)>,
    /// The answer carried another number of results than the request had items;
    /// those without a result stay queued.
    pub(crate) miscounted: bool,
}

/// Reads a peer's `results` for the items `ids` of its request.
pub(crate) fn answered(ids: &[MessageId], results: &[DmResult]) -> Answered {
    let mut answer = Answered { miscounted: ids.len() != results.len(), ..Answered::default() };
    for (id, result) in ids.iter().zip(results) {
        let state = match result {
            DmResult::Stored => MessageState::Delivered,
            DmResult::Accepted => MessageState::Sent,
            DmResult::Rejected(RejectReason::Storage | RejectReason::Unready) => continue,
            DmResult::Rejected(reason) => {
                answer.refused.push((*id, *reason));
                MessageState::Failed
            }
        };
        answer.moves.push((*id, state));
    }
    answer
}

/// Where a batch goes after its direct attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Dial again now with the contact's own addresses: the failed dial did not try
    /// them all (it was a DHT query's, made with what the DHT knew).
    Redial,
    /// Deposit it to the contact's relays, which hold it until the contact is back.
    Relays,
    /// Try again directly after the queue's backoff.
    Backoff,
}

/// The [`AfterFailure`] of a failed direct attempt: `dial_failed` when no connection
/// could be made, `untried_addresses` when the contact has addresses the failed dial
/// did not try, `redials` how many times this has redialed since the last connection.
pub(crate) fn after_failure(dial_failed: bool, untried_addresses: bool, redials: u8, has_relays: bool) -> AfterFailure {
    if dial_failed && untried_addresses && redials < MAX_REDIALS {
        AfterFailure::Redial
    } else if has_relays {
        AfterFailure::Relays
    } else {
        AfterFailure::Backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted contact whose key is known.
    fn contact() -> Contact {
        let contact = crate::node::test_support::accepted_contact(libp2p::PeerId::random());
        Contact { e2e_public: Some([7; 32]), ..contact }
    }

    #[test]
    fn a_queue_sends_only_to_a_present_unblocked_unheld_contact_whose_key_is_known() {
        assert_eq!(gate(None), Gate::Removed);
        let open = contact();
        assert_eq!(gate(Some(&open)), Gate::Open);
        let blocked = Contact { state: ContactState::Blocked, ..contact() };
        assert_eq!(gate(Some(&blocked)), Gate::Blocked);
        let keyless = Contact { e2e_public: None, ..contact() };
        assert_eq!(gate(Some(&keyless)), Gate::NeedsKey);
        // Verified, then its key changed: held, even though a key is known.
        let held = Contact { verified_at_ms: Some(1), key_changed_at_ms: Some(2), ..contact() };
        assert_eq!(gate(Some(&held)), Gate::Held);
        // A key change of a contact never verified holds nothing.
        let changed = Contact { key_changed_at_ms: Some(2), ..contact() };
        assert_eq!(gate(Some(&changed)), Gate::Open);
        // A fellow member with its card's key: group payloads only.
        let member = Contact { state: ContactState::Member, ..contact() };
        assert_eq!(gate(Some(&member)), Gate::GroupOnly);
        // Blocking wins over everything else.
        let blocked_held = Contact { state: ContactState::Blocked, ..held };
        assert_eq!(gate(Some(&blocked_held)), Gate::Blocked);
    }

    #[test]
    fn a_fellow_member_gets_group_payloads_and_receipts_only() {
        use kith_storage::{GroupId, MessageId};

        use crate::payload::ReceiptKind;
        let group = GroupId([1; 16]);
        let goes = |p: Payload| goes_to_a_member(&p.encode().expect("a payload encodes"));
        assert!(goes(Payload::GroupOps { group, ops: Vec::new(), hints: Vec::new() }));
        assert!(goes(Payload::GroupSync { group, heads: Vec::new() }));
        assert!(goes(Payload::GroupKey { group, generation: 1, index: 0, key: [0; 32] }));
        assert!(goes(Payload::Receipt { kind: ReceiptKind::Delivered, ids: vec![MessageId([2; 16])] }));
        let text = Payload::Text { id: MessageId([3; 16]), lamport: 1, sent_at_ms: 0, text: "hi".into(), file: None, link: None };
        assert!(!goes(text));
        assert!(!goes(Payload::ContactRequest { name: None, addrs: Vec::new(), token: None, relays: Vec::new(), keys: None, issued_us: 1 }));
        assert!(!goes(Payload::ContactAccepted { name: None, issued_us: 1, answers_us: 0 }));
        assert!(!goes_to_a_member(b"not a payload"));
    }

    #[test]
    fn a_batch_goes_to_the_relays_only_after_a_failure_while_disconnected_and_if_there_are_any() {
        assert_eq!(route(true, false, true), Route::Relays);
        assert_eq!(route(false, false, true), Route::Direct, "first try is direct");
        assert_eq!(route(true, true, true), Route::Direct, "connected again");
        assert_eq!(route(true, false, false), Route::Direct, "no relays pinned");
    }

    #[test]
    fn an_answer_moves_stored_taken_and_refused_items_and_leaves_the_rest_queued() {
        let ids: Vec<MessageId> = (1..=6).map(|n| MessageId([n; 16])).collect();
        let results = [
            DmResult::Stored,
            DmResult::Accepted,
            DmResult::Rejected(RejectReason::Storage),
            DmResult::Rejected(RejectReason::Unready),
            DmResult::Rejected(RejectReason::Decrypt),
            DmResult::Rejected(RejectReason::TooLarge),
        ];
        let answer = answered(&ids, &results);
        assert_eq!(
            answer.moves,
            [
                (ids[0], MessageState::Delivered),
                (ids[1], MessageState::Sent),
                (ids[4], MessageState::Failed),
                (ids[5], MessageState::Failed),
            ]
        );
        assert_eq!(answer.refused, [(ids[4], RejectReason::Decrypt), (ids[5], RejectReason::TooLarge)]);
        assert!(!answer.miscounted);
    }

    #[test]
    fn items_an_answer_has_no_result_for_stay_queued() {
        let ids: Vec<MessageId> = (1..=3).map(|n| MessageId([n; 16])).collect();
        let short = answered(&ids, &[DmResult::Stored]);
        assert_eq!(short.moves, [(ids[0], MessageState::Delivered)]);
        assert!(short.miscounted);
        // Results beyond the request's items name nothing.
        let long = answered(&ids[..1], &[DmResult::Stored, DmResult::Stored, DmResult::Rejected(RejectReason::Forged)]);
        assert_eq!(long.moves, [(ids[0], MessageState::Delivered)]);
        assert!(long.refused.is_empty());
        assert!(long.miscounted);
    }

    #[test]
    fn a_failed_dial_redials_untried_addresses_a_few_times_then_falls_back_to_the_relays() {
        assert_eq!(after_failure(true, true, 0, true), AfterFailure::Redial);
        assert_eq!(after_failure(true, true, MAX_REDIALS - 1, false), AfterFailure::Redial);
        assert_eq!(after_failure(true, true, MAX_REDIALS, true), AfterFailure::Relays, "enough redials");
        assert_eq!(after_failure(true, false, 0, true), AfterFailure::Relays, "every address was tried");
        assert_eq!(after_failure(false, true, 0, true), AfterFailure::Relays, "connected, but the request failed");
        assert_eq!(after_failure(true, true, MAX_REDIALS, false), AfterFailure::Backoff);
        assert_eq!(after_failure(false, false, 0, false), AfterFailure::Backoff);
    }
}
