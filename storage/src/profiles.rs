//! Profiles as their owners signed them: ours and our contacts'.
//!
//! One tree keyed by peer id (base58) holding each profile's signed encoding as it
//! arrived; the network layer checks signatures and versions before it writes
//! (this table only keeps bytes). A contact's profile goes when the contact does.

use std::sync::Arc;

use libp2p_identity::PeerId;

use crate::error::{StoreError, db};
use crate::store::Inner;

/// Handle to the stored profiles. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub(crate) inner: Arc<Inner>,
}

impl Profiles {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.profiles
    }

    /// The signed profile of `peer`, as stored.
    pub fn get(&self, peer: &PeerId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree().get(peer.to_base58()).map_err(db)?.map(|v| v.to_vec()))
    }

    /// Keeps `signed` as `peer`'s profile, replacing any. Not flushed.
    pub fn put(&self, peer: &PeerId, signed: &[u8]) -> Result<(), StoreError> {
        self.tree().insert(peer.to_base58(), signed).map_err(db)?;
        Ok(())
    }

    /// Forgets `peer`'s profile; returns whether there was one. Not flushed.
    pub fn remove(&self, peer: &PeerId) -> Result<bool, StoreError> {
        Ok(self.tree().remove(peer.to_base58()).map_err(db)?.is_some())
    }
}
