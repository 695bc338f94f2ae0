//! What a group message carries once its sender key has opened it.

use kith_storage::MessageId;
use serde::{Deserialize, Serialize};

use crate::payload::{MAX_LAMPORT, MAX_TEXT_LEN};
use crate::wire::{self, WireError};

const POST_VERSION: u32 = 1;

/// The plaintext of a group message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GroupPost {
    /// A text message; the id de-duplicates it across gossip and the relays' logs.
    Text {
        /// Message id, chosen by the author.
        id: MessageId,
        /// The author's Lamport counter in the group's conversation.
        lamport: u64,
        /// The author's clock when sent, in ms since the Unix epoch.
        sent_at_ms: u64,
        /// The text; a file's caption (maybe empty) when `file` is set.
        #[serde(deserialize_with = "wire::Max::<MAX_TEXT_LEN>::text")]
        text: String,
        /// The file the message carries (absent in plain texts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<crate::payload::FileOffer>,
        /// The message it answers or changes (see [`kith_storage::Link`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<kith_storage::Link>,
    },
}

#[derive(Serialize, Deserialize)]
struct Versioned {
    v: u32,
    p: GroupPost,
}

impl GroupPost {
    /// Encodes the post with its version.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(&Versioned { v: POST_VERSION, p: self.clone() })
    }

    /// Decodes a post, refusing unknown versions and over-long texts.
    pub fn decode(bytes: &[u8]) -> Result<GroupPost, WireError> {
        let versioned: Versioned = wire::decode(bytes, MAX_TEXT_LEN + 1024)?;
        if versioned.v != POST_VERSION {
            return Err(WireError::UnsupportedVersion(versioned.v));
        }
        let GroupPost::Text { text, lamport, link, .. } = &versioned.p;
        crate::payload::check_link(link.as_ref())?;
        if text.len() > MAX_TEXT_LEN {
            return Err(WireError::TooLarge { len: text.len(), max: MAX_TEXT_LEN });
        }
        if *lamport > MAX_LAMPORT {
            return Err(WireError::Malformed(format!("Lamport counter {lamport} above {MAX_LAMPORT}")));
        }
        Ok(versioned.p)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let post = GroupPost::Text { id: MessageId([1; 16]), lamport: 2, sent_at_ms: 3, text: "всем привет 🎉".into(), file: None, link: None };
        assert_eq!(GroupPost::decode(&post.encode().unwrap()).unwrap(), post);
        assert!(GroupPost::decode(b"garbage").is_err());
        let long = GroupPost::Text { id: MessageId([1; 16]), lamport: 2, sent_at_ms: 3, text: "x".repeat(MAX_TEXT_LEN + 1), file: None, link: None };
        assert!(GroupPost::decode(&long.encode().unwrap()).is_err());
        // Counters up to the cap pass; one past it (or at u64::MAX) is malformed.
        let at = |lamport| GroupPost::Text { id: MessageId([1; 16]), lamport, sent_at_ms: 3, text: "x".into(), file: None, link: None };
        assert!(GroupPost::decode(&at(MAX_LAMPORT).encode().unwrap()).is_ok());
        assert!(matches!(GroupPost::decode(&at(MAX_LAMPORT + 1).encode().unwrap()), Err(WireError::Malformed(_))));
        assert!(matches!(GroupPost::decode(&at(u64::MAX).encode().unwrap()), Err(WireError::Malformed(_))));
    }
}
