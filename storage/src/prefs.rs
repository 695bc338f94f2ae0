//! Per-conversation preferences of this device: mutes and unsent drafts.
//!
//! Two trees keyed by conversation id. A mute is its end time (u64 BE, ms since the
//! Unix epoch; [`u64::MAX`] for forever) and lapses by itself: readers pass the time
//! and a lapsed mute reads as absent (it stays stored until replaced or removed, which
//! is harmless). A draft is the UTF-8 text typed and not sent, at most
//! [`MAX_DRAFT_LEN`] bytes; an empty draft is no draft. Neither leaves the device.

use std::sync::Arc;

use crate::codec::{be_u64, fixed};
use crate::error::{StoreError, db};
use crate::schema::{DRAFTS, MUTES};
use crate::store::Inner;
use crate::types::ConversationId;

/// The longest draft kept, in bytes: far above a message (so a draft is never cut
/// short of one) and small enough that a client cannot fill the disk with them.
pub const MAX_DRAFT_LEN: usize = 64 * 1024;

/// How long a conversation stays muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mute {
    /// Until this time (ms since the Unix epoch), then it lapses.
    Until(u64),
    /// Until unmuted.
    Forever,
}

impl Mute {
    /// Whether it still holds at `now_ms`.
    pub fn holds(self, now_ms: u64) -> bool {
        match self {
            Mute::Until(end) => now_ms < end,
            Mute::Forever => true,
        }
    }

    /// Its end time, `None` for forever.
    pub fn until_ms(self) -> Option<u64> {
        match self {
            Mute::Until(end) => Some(end),
            Mute::Forever => None,
        }
    }

    fn to_stored(self) -> [u8; 8] {
        // An end at u64::MAX would be forever anyway.
        self.until_ms().unwrap_or(u64::MAX).to_be_bytes()
    }

    fn from_stored(bytes: &[u8]) -> Result<Mute, StoreError> {
        Ok(match be_u64(MUTES, bytes)? {
            u64::MAX => Mute::Forever,
            end => Mute::Until(end),
        })
    }
}

/// Handle to the conversation mutes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mutes {
    pub(crate) inner: Arc<Inner>,
}

impl Mutes {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.mutes
    }

    /// Mutes `conversation` (replacing any earlier mute). Not flushed.
    pub fn set(&self, conversation: ConversationId, mute: Mute) -> Result<(), StoreError> {
        self.tree()
            .insert(conversation.0, &mute.to_stored()[..])
            .map_err(db)?;
        Ok(())
    }

    /// Unmutes `conversation`; returns whether a mute that still held at `now_ms`
    /// was there. Not flushed.
    pub fn remove(&self, conversation: ConversationId, now_ms: u64) -> Result<bool, StoreError> {
        match self.tree().remove(conversation.0).map_err(db)? {
            Some(v) => Ok(Mute::from_stored(&v)?.holds(now_ms)),
            None => Ok(false),
        }
    }

    /// The mute of `conversation` if it holds at `now_ms`.
    pub fn get(
        &self,
        conversation: ConversationId,
        now_ms: u64,
    ) -> Result<Option<Mute>, StoreError> {
        match self.tree().get(conversation.0).map_err(db)? {
            Some(v) => Ok(Some(Mute::from_stored(&v)?).filter(|m| m.holds(now_ms))),
            None => Ok(None),
        }
    }

    /// Every mute that holds at `now_ms`, by conversation id.
    pub fn list(&self, now_ms: u64) -> Result<Vec<(ConversationId, Mute)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().iter() {
            let (k, v) = kv.map_err(db)?;
            let mute = Mute::from_stored(&v)?;
            if mute.holds(now_ms) {
                out.push((ConversationId(fixed(MUTES, &k)?), mute));
            }
        }
        Ok(out)
    }
}

/// Handle to the drafts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Drafts {
    pub(crate) inner: Arc<Inner>,
}

impl Drafts {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.drafts
    }

    /// Keeps `text` as the draft of `conversation`; an empty text removes it. A text
    /// over [`MAX_DRAFT_LEN`] bytes is [`StoreError::TooLarge`] and nothing changes.
    /// Not flushed.
    pub fn set(&self, conversation: ConversationId, text: &str) -> Result<(), StoreError> {
        if text.len() > MAX_DRAFT_LEN {
            return Err(StoreError::TooLarge {
                len: text.len(),
                max: MAX_DRAFT_LEN,
            });
        }
        if text.is_empty() {
            self.tree().remove(conversation.0).map_err(db)?;
        } else {
            self.tree()
                .insert(conversation.0, text.as_bytes())
                .map_err(db)?;
        }
        Ok(())
    }

    /// The draft of `conversation`, if any.
    pub fn get(&self, conversation: ConversationId) -> Result<Option<String>, StoreError> {
        self.tree()
            .get(conversation.0)
            .map_err(db)?
            .map(|v| text(&v))
            .transpose()
    }

    /// Every draft, by conversation id.
    pub fn list(&self) -> Result<Vec<(ConversationId, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().iter() {
            let (k, v) = kv.map_err(db)?;
            out.push((ConversationId(fixed(DRAFTS, &k)?), text(&v)?));
        }
        Ok(out)
    }
}

fn text(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| StoreError::Corrupt {
        tree: DRAFTS,
        detail: format!("draft is not UTF-8: {e}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Store;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_mute_lapses_at_its_end_and_forever_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (
            ConversationId::from_bytes([1; 16]),
            ConversationId::from_bytes([2; 16]),
        );
        store.mutes().set(a, Mute::Until(NOW + 1_000)).unwrap();
        store.mutes().set(b, Mute::Forever).unwrap();
        assert_eq!(
            store.mutes().get(a, NOW).unwrap(),
            Some(Mute::Until(NOW + 1_000))
        );
        assert_eq!(
            store.mutes().get(a, NOW + 999).unwrap(),
            Some(Mute::Until(NOW + 1_000))
        );
        assert_eq!(
            store.mutes().get(a, NOW + 1_000).unwrap(),
            None,
            "lapsed at its end"
        );
        assert_eq!(
            store.mutes().get(b, u64::MAX - 1).unwrap(),
            Some(Mute::Forever)
        );
        assert_eq!(
            store.mutes().list(NOW).unwrap(),
            vec![(a, Mute::Until(NOW + 1_000)), (b, Mute::Forever)]
        );
        assert_eq!(
            store.mutes().list(NOW + 5_000).unwrap(),
            vec![(b, Mute::Forever)]
        );
        // A lapsed mute is no mute to remove; a holding one is.
        assert!(!store.mutes().remove(a, NOW + 5_000).unwrap());
        assert!(store.mutes().remove(b, NOW).unwrap());
        assert!(!store.mutes().remove(b, NOW).unwrap());
        assert_eq!(store.mutes().get(b, NOW).unwrap(), None);
    }

    #[test]
    fn a_mute_can_be_replaced_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let a = ConversationId::from_bytes([3; 16]);
        {
            let store = Store::open(dir.path()).unwrap();
            store.mutes().set(a, Mute::Forever).unwrap();
            store.mutes().set(a, Mute::Until(NOW + 60_000)).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.mutes().get(a, NOW).unwrap(),
            Some(Mute::Until(NOW + 60_000))
        );
    }

    #[test]
    fn drafts_are_kept_cleared_by_empty_text_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            ConversationId::from_bytes([4; 16]),
            ConversationId::from_bytes([5; 16]),
        );
        {
            let store = Store::open(dir.path()).unwrap();
            store.drafts().set(a, "половина мысли…").unwrap();
            store.drafts().set(b, "gone soon").unwrap();
            store.drafts().set(b, "").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.drafts().get(a).unwrap().as_deref(),
            Some("половина мысли…")
        );
        assert_eq!(store.drafts().get(b).unwrap(), None);
        assert_eq!(
            store.drafts().list().unwrap(),
            vec![(a, "половина мысли…".to_owned())]
        );
        let big = "x".repeat(MAX_DRAFT_LEN + 1);
        assert!(matches!(
            store.drafts().set(a, &big),
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(
            store.drafts().get(a).unwrap().as_deref(),
            Some("половина мысли…"),
            "unchanged"
        );
        store.drafts().set(a, &big[1..]).unwrap();
    }

    #[test]
    fn removing_a_conversation_forgets_its_mute_and_draft() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ConversationId::from_bytes([6; 16]);
        let kind = crate::ConversationKind::Direct {
            peer_id: "12D3KooWexample".into(),
        };
        store.conversations().get_or_create(a, kind, NOW).unwrap();
        store.mutes().set(a, Mute::Forever).unwrap();
        store.drafts().set(a, "hi").unwrap();
        assert!(store.conversations().remove(a, NOW).unwrap());
        assert_eq!(store.mutes().get(a, NOW).unwrap(), None);
        assert_eq!(store.drafts().get(a).unwrap(), None);
    }
}
