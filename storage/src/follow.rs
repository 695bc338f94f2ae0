//! Following the message log from outside the store: what was added and
//! forgotten since a reader last looked, in the order it was written. The
//! search index (kith-search) keeps itself up to date this way, without the
//! store knowing about it.

use crate::messages::Message;
use crate::types::ConversationId;

/// Bytes of the log before a cursor's offset kept in [`LogCursor::check`].
pub const CHECK_LEN: usize = 16;

/// A reader's place in the message log: the offset of the next frame, and the
/// bytes just before it.
///
/// The bytes tell whether the file is still the one the cursor was taken from:
/// a compaction or migration at open rewrites the log, and after an operating
/// system crash its unsynced tail may differ. When they no longer match, the
/// reader starts again from the beginning ([`LogEvent::Reset`]). Plain data, so
/// a reader can keep it beside what it built (e.g. in an index's commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogCursor {
    /// Offset in the file of the next frame to read.
    pub offset: u64,
    /// The [`CHECK_LEN`] bytes before `offset` (zero-padded at the file's start).
    pub check: [u8; CHECK_LEN],
}

impl LogCursor {
    /// The cursor as 8 + [`CHECK_LEN`] bytes (offset big-endian, then the check).
    pub fn to_bytes(&self) -> [u8; 8 + CHECK_LEN] {
        let mut out = [0; 8 + CHECK_LEN];
        out[..8].copy_from_slice(&self.offset.to_be_bytes());
        out[8..].copy_from_slice(&self.check);
        out
    }

    /// Reads [`LogCursor::to_bytes`] back; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<LogCursor> {
        if bytes.len() != 8 + CHECK_LEN {
            return None;
        }
        let mut offset = [0; 8];
        offset.copy_from_slice(&bytes[..8]);
        let mut check = [0; CHECK_LEN];
        check.copy_from_slice(&bytes[8..]);
        Some(LogCursor { offset: u64::from_be_bytes(offset), check })
    }
}

/// Where a message lies in the message log: a number that grows with every
/// message stored, so later messages have larger places. Valid while the log
/// is not rewritten — i.e. for as long as a [`LogCursor`] taken with it fits
/// (a follower that sees [`LogEvent::Reset`] drops the places it kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessagePlace(pub u64);

/// One change to the messages, as the log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// The cursor no longer fits the file: forget everything built from it;
    /// the events that follow start from the beginning of the log.
    Reset,
    /// A message was stored (its `state` is the one it was stored with), at
    /// `place` in the log.
    Added {
        /// The message.
        message: Message,
        /// Where it lies: [`Messages::at`](crate::Messages::at) reads it back.
        place: MessagePlace,
    },
    /// Every message of a conversation stored before this was dropped (the
    /// conversation was removed).
    Forgotten(ConversationId),
}
