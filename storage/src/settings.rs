//! Named settings: any serde value under a string key, CBOR-encoded.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{decode, encode};
use crate::error::{StoreError, db};
use crate::schema::SETTINGS;
use crate::store::Inner;

/// Handle to the settings table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) inner: Arc<Inner>,
}

impl Settings {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.settings
    }

    /// The value stored under `key`, if any. A stored value that does not
    /// decode as `T` is [`StoreError::Corrupt`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.tree().get(key).map_err(db)? {
            Some(v) => decode(SETTINGS, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, replacing any previous value. Not flushed.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.tree().insert(key, encode(value)?).map_err(db)?;
        Ok(())
    }

    /// Deletes a setting; returns whether it existed. Not flushed.
    pub fn remove(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.tree().remove(key).map_err(db)?.is_some())
    }
}
