//! The rules of recovering a lost 1:1 ratchet session, apart from the swarm and the
//! store: when a contact whose messages we cannot open gets new keys again, and which
//! of our messages go again to a contact that lost its sessions with us. The actor
//! keeps when it last did either, asks these, and queues what they pick.

use std::time::{Duration, Instant};

use kith_storage::{Direction, Message, MessageId, MessageState};

/// Whether a contact may be offered new keys with `reset` now. `last` is when the
/// previous offer was made and the outbox id it was queued under (`None`: making it
/// failed). Not within `spacing` of the previous one (a peer that keeps sending what
/// we cannot open gets new keys once per spacing, not once per envelope), and not
/// while the previous one is still queued (a contact away for days gets one).
pub(crate) fn may_offer_reset(
    last: Option<&(Instant, Option<MessageId>)>,
    now: Instant,
    spacing: Duration,
    is_queued: impl Fn(&MessageId) -> bool,
) -> bool {
    match last {
        None => true,
        Some((at, queued)) => now.duration_since(*at) >= spacing && !queued.as_ref().is_some_and(is_queued),
    }
}

/// Whether our messages may be sent again to a contact that lost its sessions, at
/// most once per `spacing` (a contact sending resets cannot make us send the same
/// thing over and over). `last` is when we last did.
pub(crate) fn may_resend(last: Option<&Instant>, now: Instant, spacing: Duration) -> bool {
    last.is_none_or(|at| now.duration_since(*at) >= spacing)
}

/// Which of `newest` (a conversation's newest messages) go again to a contact that
/// lost its sessions with us: ours that left but are not known delivered (`sent`),
/// sent within the replay window (`window_ms`; older ones the receiver would refuse)
/// and not queued now (those go anyway). Those sealed in the lost session wait in a
/// relay where they will never open; the receiver keeps one copy of any it had.
pub(crate) fn to_resend(
    newest: &[Message],
    now_ms: u64,
    window_ms: u64,
    is_queued: impl Fn(&MessageId) -> bool,
) -> Vec<&Message> {
    newest
        .iter()
        .filter(|m| {
            m.direction == Direction::Outgoing
                && m.state == MessageState::Sent
                && now_ms.saturating_sub(m.sent_at_ms) < window_ms
                && !is_queued(&m.id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kith_storage::ConversationId;

    use super::*;

    const SPACING: Duration = Duration::from_secs(60);

    #[test]
    fn a_reset_waits_for_the_spacing_and_for_the_last_one_to_leave() {
        let t0 = Instant::now();
        let id = MessageId([1; 16]);
        let nothing_queued = |_: &MessageId| false;
        assert!(may_offer_reset(None, t0, SPACING, nothing_queued), "the first one goes");
        let last = (t0, Some(id));
        assert!(!may_offer_reset(Some(&last), t0 + SPACING / 2, SPACING, nothing_queued), "within the spacing");
        assert!(may_offer_reset(Some(&last), t0 + SPACING, SPACING, nothing_queued));
        let still_queued = |queued: &MessageId| *queued == id;
        assert!(!may_offer_reset(Some(&last), t0 + SPACING * 100, SPACING, still_queued), "the last one has not left");
        // A failed offer was never queued: only the spacing holds the next.
        assert!(may_offer_reset(Some(&(t0, None)), t0 + SPACING, SPACING, |_: &MessageId| true));
        assert!(!may_resend(Some(&t0), t0 + SPACING / 2, SPACING));
        assert!(may_resend(Some(&t0), t0 + SPACING, SPACING) && may_resend(None, t0, SPACING));
    }

    fn message(n: u8, direction: Direction, state: MessageState, sent_at_ms: u64) -> Message {
        Message {
            id: MessageId([n; 16]),
            conversation: ConversationId([0; 16]),
            author: String::new(),
            lamport: u64::from(n),
            sent_at_ms,
            received_at_ms: sent_at_ms,
            text: format!("m{n}"),
            state,
            direction,
            file: None,
            link: None,
        }
    }

    #[test]
    fn only_ours_that_left_undelivered_within_the_window_and_not_queued_go_again() {
        let (now, window) = (1_000_000, 10_000);
        let newest = [
            message(1, Direction::Outgoing, MessageState::Sent, now - 1),
            message(2, Direction::Outgoing, MessageState::Delivered, now - 1),
            message(3, Direction::Outgoing, MessageState::Read, now - 1),
            message(4, Direction::Outgoing, MessageState::Pending, now - 1),
            message(5, Direction::Outgoing, MessageState::Failed, now - 1),
            message(6, Direction::Incoming, MessageState::Sent, now - 1),
            message(7, Direction::Outgoing, MessageState::Sent, now - window),
            message(8, Direction::Outgoing, MessageState::Sent, now - window + 1),
            message(9, Direction::Outgoing, MessageState::Sent, now - 5),
        ];
        let queued = MessageId([9; 16]);
        let picked: Vec<u8> =
            to_resend(&newest, now, window, |id| *id == queued).iter().map(|m| m.id.0[0]).collect();
        assert_eq!(picked, [1, 8], "sent, inside the window, not queued");
    }
}
