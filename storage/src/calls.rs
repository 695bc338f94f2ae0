//! The call history: one record per call that ended (who, which way, when, how long,
//! why it ended), newest last, at most [`MAX_CALL_RECORDS`] kept.

use std::sync::Arc;

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::{StoreError, db};
use crate::schema::CALLS;
use crate::store::Inner;

/// Records kept; the oldest go first.
pub const MAX_CALL_RECORDS: usize = 1000;

/// One call as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's random id.
    pub id: [u8; 16],
    /// The other side.
    #[serde(with = "crate::peer::peer_text")]
    pub peer: PeerId,
    /// Whether we placed it.
    pub outgoing: bool,
    /// When it was placed or rang here (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When it was answered, if it was.
    pub answered_at_ms: Option<u64>,
    /// When it ended.
    pub ended_at_ms: u64,
    /// Why it ended, as the control API names it (`hung_up`, `remote_hung_up`,
    /// `declined`, `no_answer`, `unreachable`, `refused`, `failed`, `busy`).
    pub reason: String,
}

impl CallRecord {
    /// How long the call was connected, in ms (0 when never answered).
    pub fn duration_ms(&self) -> u64 {
        self.answered_at_ms.map_or(0, |a| self.ended_at_ms.saturating_sub(a))
    }

    /// An incoming call nobody answered.
    pub fn missed(&self) -> bool {
        !self.outgoing && self.answered_at_ms.is_none()
    }
}

/// Handle to the call history. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Calls {
    pub(crate) inner: Arc<Inner>,
}

impl Calls {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.calls
    }

    /// Adds an ended call (again with the same id and start: replaces it), dropping
    /// the oldest records past [`MAX_CALL_RECORDS`]. Not flushed.
    pub fn record(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.tree().insert(key(call), encode(call)?).map_err(db)?;
        while self.tree().len() > MAX_CALL_RECORDS {
            if self.tree().pop_min().map_err(db)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// The newest `limit` calls, oldest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = self
            .tree()
            .iter()
            .rev()
            .take(limit)
            .map(|kv| decode(CALLS, &kv.map_err(db)?.1))
            .collect::<Result<Vec<CallRecord>, _>>()?;
        out.reverse();
        Ok(out)
    }
}

/// Start time first, so the tree's order is the history's.
fn key(call: &CallRecord) -> Vec<u8> {
    let mut key = call.started_at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(&call.id);
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Store;

    fn call(n: u64, answered: bool) -> CallRecord {
        CallRecord {
            id: [n as u8; 16],
            peer: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".parse().unwrap(),
            outgoing: n.is_multiple_of(2),
            started_at_ms: 1_000 * n,
            answered_at_ms: answered.then_some(1_000 * n + 100),
            ended_at_ms: 1_000 * n + 5_100,
            reason: "hung_up".into(),
        }
    }

    #[test]
    fn history_is_in_start_order_bounded_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for n in (1..=(MAX_CALL_RECORDS as u64 + 5)).rev() {
                store.calls().record(&call(n, n % 3 == 0)).unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.calls().recent(usize::MAX).unwrap();
        assert_eq!(all.len(), MAX_CALL_RECORDS);
        assert_eq!(all.first().unwrap().started_at_ms, 6_000, "the five oldest went");
        assert!(all.windows(2).all(|w| w[0].started_at_ms < w[1].started_at_ms));
        let last = store.calls().recent(2).unwrap();
        assert_eq!(last.iter().map(|c| c.started_at_ms).collect::<Vec<_>>(), vec![1_004_000, 1_005_000]);
        let c = call(3, true);
        assert_eq!(c.duration_ms(), 5_000);
        assert!(call(3, false).missed());
        assert!(!call(4, false).missed(), "an outgoing call is never missed");
    }
}
