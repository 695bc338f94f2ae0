//! Ratchet state as opaque records: the network layer encrypts what it keeps here
//! (the Olm account and each peer's sessions) and decides what the keys mean.
//!
//! Writes are not flushed: the caller flushes them together with whatever they
//! belong to (an incoming message, or before an envelope sealed with them leaves).

use std::sync::Arc;

use crate::error::{StoreError, db};
use crate::store::Inner;

/// A stored record: its key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Handle to the ratchet tree. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RatchetState {
    pub(crate) inner: Arc<Inner>,
}

impl RatchetState {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.ratchet
    }

    /// The record under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree().get(key).map_err(db)?.map(|v| v.to_vec()))
    }

    /// Keeps `value` under `key`, replacing any. Not flushed.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree().insert(key, value).map_err(db)?;
        Ok(())
    }

    /// Removes the record under `key`. Not flushed.
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree().remove(key).map_err(db)?;
        Ok(())
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        self.tree()
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(db))
            .collect()
    }
}
