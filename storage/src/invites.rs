//! One-time invite tokens with an expiry.
//!
//! A token maps to its expiry (u64 BE, ms). Redeeming removes it in a
//! transaction, so each token succeeds at most once even under concurrency.

use std::sync::Arc;

use crate::codec::{be_u64, fixed};
use crate::error::{StoreError, db, tx};
use crate::schema::INVITES;
use crate::store::Inner;

/// Handle to the invite tokens. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Invites {
    pub(crate) inner: Arc<Inner>,
}

impl Invites {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.invites
    }

    /// Stores a one-time token valid while `now_ms < expires_at_ms`
    /// (re-creating a token resets its expiry). Not flushed.
    pub fn create(&self, token: [u8; 16], expires_at_ms: u64) -> Result<(), StoreError> {
        self.tree()
            .insert(&token[..], &expires_at_ms.to_be_bytes()[..])
            .map_err(db)?;
        Ok(())
    }

    /// Atomically consumes a token: `true` only the first time and only if
    /// it has not expired at `now_ms`. An expired token is removed too.
    /// Not flushed.
    pub fn redeem(&self, token: &[u8; 16], now_ms: u64) -> Result<bool, StoreError> {
        use sled::transaction::ConflictableTransactionError::Abort;
        tx(self.tree().transaction(|t| {
            let Some(v) = t.remove(&token[..])? else {
                return Ok(false);
            };
            let expires = be_u64(INVITES, &v).map_err(Abort)?;
            Ok(now_ms < expires)
        }))
    }

    /// Tokens still valid at `now_ms`, with their expiry, in token order.
    pub fn list_active(&self, now_ms: u64) -> Result<Vec<([u8; 16], u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree().iter() {
            let (k, v) = kv.map_err(db)?;
            let expires = be_u64(INVITES, &v)?;
            if now_ms < expires {
                out.push((fixed(INVITES, &k)?, expires));
            }
        }
        Ok(out)
    }

    /// How many tokens are stored, expired or not (expired ones stay until
    /// [`Invites::purge_expired`] or a redemption removes them).
    pub fn len(&self) -> usize {
        self.tree().len()
    }

    /// Whether no token is stored, expired or not.
    pub fn is_empty(&self) -> bool {
        self.tree().is_empty()
    }

    /// Deletes tokens expired at `now_ms`; returns how many. Not flushed.
    pub fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.tree().iter() {
            let (k, v) = kv.map_err(db)?;
            // Compare-and-swap so a token re-created meanwhile survives.
            if be_u64(INVITES, &v)? <= now_ms
                && self
                    .tree()
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)
                    .map_err(db)?
                    .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
