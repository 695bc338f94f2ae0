//! The records of the message log and their bodies.
//!
//! | kind | body |
//! | --- | --- |
//! | [`MESSAGE`] | [`MessageHeader`] (66 bytes) ‖ the message as CBOR |
//! | [`STATE`] | message reference (id ‖ author digest, 32 bytes) ‖ state (u8) |
//! | [`OUTBOX_PUT`] | the outbox entry as CBOR |
//! | [`OUTBOX_DROP`] | the entry's id (16 bytes) |
//! | [`FORGET`] | a conversation id (16 bytes): its earlier messages are gone |
//! | [`CHANGE`] | as [`MESSAGE`], for a message that changes another (an edit, a delete, a reaction) |
//! | [`KV_PUT`] | key length (u16) ‖ key ‖ value: a key/value record set or replaced |
//! | [`KV_DROP`] | key length (u16) ‖ key: a key/value record removed |
//!
//! Key/value records hold state that is not messages (the ratchet's, opaque to
//! the store): the log replaces a sled tree for it so that one `fdatasync`
//! covers it together with the messages it belongs to.
//!
//! A message's header repeats what the in-memory index needs, so opening the
//! log decodes no CBOR for messages. Integers are little-endian here (the
//! frame's too); nothing sorts these bytes.

use crate::keys::{REF_LEN, RefKey};
use crate::messages::{Direction, Message, MessageState};
use crate::types::{ConversationId, ID_LEN, MessageId};

/// A message, written once.
pub(crate) const MESSAGE: u8 = 1;
/// A message's delivery state moved.
pub(crate) const STATE: u8 = 2;
/// An outbox entry was queued or rescheduled.
pub(crate) const OUTBOX_PUT: u8 = 3;
/// An outbox entry left the queue.
pub(crate) const OUTBOX_DROP: u8 = 4;
/// A conversation was removed with its messages.
pub(crate) const FORGET: u8 = 5;
/// A change to another message: laid out as [`MESSAGE`]; opening decodes its
/// CBOR (changes only) to learn the message it names.
pub(crate) const CHANGE: u8 = 6;
/// A key/value record was set or replaced.
pub(crate) const KV_PUT: u8 = 7;
/// A key/value record was removed.
pub(crate) const KV_DROP: u8 = 8;

/// The longest key of a key/value record (its length is a u16).
pub(crate) const MAX_KV_KEY: usize = u16::MAX as usize;

/// Length of [`MessageHeader`]'s encoding.
pub(crate) const MESSAGE_HEADER_LEN: usize = ID_LEN + 8 + REF_LEN + 2 + 8;

/// What the index needs of a message, in front of its CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageHeader {
    pub(crate) conversation: ConversationId,
    pub(crate) lamport: u64,
    pub(crate) reference: RefKey,
    pub(crate) direction: Direction,
    pub(crate) state: MessageState,
    pub(crate) activity_ms: u64,
}

impl MessageHeader {
    pub(crate) fn of(msg: &Message) -> MessageHeader {
        MessageHeader {
            conversation: msg.conversation,
            lamport: msg.lamport,
            reference: msg.ref_key(),
            direction: msg.direction,
            state: msg.state,
            activity_ms: msg.activity_ms(),
        }
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.conversation.0);
        out.extend_from_slice(&self.lamport.to_le_bytes());
        out.extend_from_slice(&self.reference);
        out.push(direction_byte(self.direction));
        out.push(state_byte(self.state));
        out.extend_from_slice(&self.activity_ms.to_le_bytes());
    }

    /// Reads a header from the front of a record body; `None` if it is short or
    /// holds an unknown direction or state.
    pub(crate) fn decode(body: &[u8]) -> Option<MessageHeader> {
        let b = body.get(..MESSAGE_HEADER_LEN)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let conversation = ConversationId(take(ID_LEN).try_into().ok()?);
        let lamport = u64::from_le_bytes(take(8).try_into().ok()?);
        let reference: RefKey = take(REF_LEN).try_into().ok()?;
        let direction = direction_of(take(1)[0])?;
        let state = state_of(take(1)[0])?;
        let activity_ms = u64::from_le_bytes(take(8).try_into().ok()?);
        Some(MessageHeader { conversation, lamport, reference, direction, state, activity_ms })
    }
}

/// The body of a [`STATE`] record.
pub(crate) fn state_body(reference: &RefKey, state: MessageState) -> [u8; REF_LEN + 1] {
    let mut body = [0; REF_LEN + 1];
    body[..REF_LEN].copy_from_slice(reference);
    body[REF_LEN] = state_byte(state);
    body
}

/// Reads a [`STATE`] record's body.
pub(crate) fn decode_state(body: &[u8]) -> Option<(RefKey, MessageState)> {
    if body.len() != REF_LEN + 1 {
        return None;
    }
    Some((body[..REF_LEN].try_into().ok()?, state_of(body[REF_LEN])?))
}

/// Reads a 16-byte id body ([`OUTBOX_DROP`], [`FORGET`]).
pub(crate) fn decode_id(body: &[u8]) -> Option<[u8; ID_LEN]> {
    body.try_into().ok()
}

/// Reads an [`OUTBOX_DROP`] body.
pub(crate) fn decode_drop(body: &[u8]) -> Option<MessageId> {
    decode_id(body).map(MessageId)
}

/// Writes a key/value body's front, `key length ‖ key`, into `out`; the
/// caller appends the value of a [`KV_PUT`]. The key must be at most
/// [`MAX_KV_KEY`] bytes (checked by the caller before anything is written).
pub(crate) fn kv_key_into(out: &mut Vec<u8>, key: &[u8]) {
    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&key[..usize::from(len)]);
}

/// Reads a [`KV_PUT`] body: the key and the value's offset in the body.
pub(crate) fn decode_kv_put(body: &[u8]) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_le_bytes(body.get(..2)?.try_into().ok()?));
    let key = body.get(2..2 + len)?;
    Some((key, 2 + len))
}

/// Reads a [`KV_DROP`] body: the key, which must fill it.
pub(crate) fn decode_kv_drop(body: &[u8]) -> Option<&[u8]> {
    match decode_kv_put(body)? {
        (key, end) if end == body.len() => Some(key),
        _ => None,
    }
}

fn direction_byte(d: Direction) -> u8 {
    match d {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

fn direction_of(b: u8) -> Option<Direction> {
    match b {
        0 => Some(Direction::Outgoing),
        1 => Some(Direction::Incoming),
        _ => None,
    }
}

fn state_byte(s: MessageState) -> u8 {
    match s {
        MessageState::Failed => 0,
        MessageState::Pending => 1,
        MessageState::Sent => 2,
        MessageState::Delivered => 3,
        MessageState::Read => 4,
    }
}

fn state_of(b: u8) -> Option<MessageState> {
    Some(match b {
        0 => MessageState::Failed,
        1 => MessageState::Pending,
        2 => MessageState::Sent,
        3 => MessageState::Delivered,
        4 => MessageState::Read,
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_states_read_back() {
        for direction in [Direction::Outgoing, Direction::Incoming] {
            for state in [MessageState::Failed, MessageState::Pending, MessageState::Sent, MessageState::Delivered, MessageState::Read] {
                let h = MessageHeader {
                    conversation: ConversationId([3; 16]),
                    lamport: u64::MAX - 1,
                    reference: [9; REF_LEN],
                    direction,
                    state,
                    activity_ms: 1_700_000_000_123,
                };
                let mut body = Vec::new();
                h.encode_into(&mut body);
                assert_eq!(body.len(), MESSAGE_HEADER_LEN);
                body.extend_from_slice(b"cbor follows");
                assert_eq!(MessageHeader::decode(&body), Some(h));
                assert_eq!(decode_state(&state_body(&h.reference, state)), Some((h.reference, state)));
            }
        }
        assert_eq!(MessageHeader::decode(&[0; MESSAGE_HEADER_LEN - 1]), None, "short");
        let mut bad = vec![0; MESSAGE_HEADER_LEN];
        bad[ID_LEN + 8 + REF_LEN] = 7;
        assert_eq!(MessageHeader::decode(&bad), None, "unknown direction");
        assert_eq!(decode_state(&[0; REF_LEN]), None);
    }

    #[test]
    fn key_value_bodies_read_back_and_short_ones_do_not() {
        let mut body = Vec::new();
        kv_key_into(&mut body, b"p/key");
        let drop_body = body.clone();
        body.extend_from_slice(b"the value");
        assert_eq!(decode_kv_put(&body), Some((&b"p/key"[..], 7)));
        assert_eq!(&body[7..], b"the value");
        assert_eq!(decode_kv_drop(&drop_body), Some(&b"p/key"[..]));
        assert_eq!(decode_kv_drop(&body), None, "a drop has no value");
        assert_eq!(decode_kv_put(&body[..4]), None, "the key runs past the body");
        assert_eq!(decode_kv_put(&[1]), None);
        let mut empty = Vec::new();
        kv_key_into(&mut empty, b"");
        assert_eq!(decode_kv_put(&empty), Some((&b""[..], 2)));
    }
}
