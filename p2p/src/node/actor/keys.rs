//! Our end-to-end keys seen from the actor: the key ring loaded at start, renewed
//! with the peer record, and rotation (see [`crate::keyring`]).

use std::path::PathBuf;


use super::{Actor, OPENER_CACHE};
use crate::envelope::{Opener, Sealer, SealerConfig};
use crate::identity::Identity;
use crate::keyring::{KeyRing, KeyRingError};
use crate::node::{NodeError, StartError};
use crate::ops::{self, OpError};
use crate::views::{KeysView, RetiredKeyView};

/// The ring, where it is kept, and the keystore identity that seals it.
pub(super) struct RingState {
    path: PathBuf,
    keystore: Identity,
    ring: KeyRing,
}

impl std::fmt::Debug for RingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingState").field("path", &self.path).field("ring", &self.ring).finish_non_exhaustive()
    }
}

/// The setting that records that this node has rotated its key: from then on a lost
/// ring must never bring back the keystore's first key.
const ROTATED_SETTING: &str = "e2e_key_rotated";

/// Opens the ring at `path` for the keystore identity `keystore` (saving it if it
/// changed) and returns it with the identity the node goes by: the ring's current key.
pub(super) fn load(path: PathBuf, keystore: Identity, store: &kith_storage::Store) -> Result<(RingState, Identity), StartError> {
    let rotated = store
        .settings()
        .get::<bool>(ROTATED_SETTING)
        .map_err(|e| StartError::Build(format!("cannot read the key settings: {e}")))?
        .unwrap_or(false);
    let (ring, changed) = KeyRing::open(&path, &keystore, ops::now_ms(), rotated)
        .map_err(|e| StartError::Build(format!("cannot open the end-to-end key ring: {e}")))?;
    if changed {
        ring.save(&path, &keystore).map_err(|e| StartError::Build(format!("cannot write the end-to-end key ring: {e}")))?;
    }
    let identity = ring.identity(&keystore);
    Ok((RingState { path, keystore, ring }, identity))
}

/// An opener for the current key and every key rotated out but still kept.
pub(super) fn opener(identity: &Identity, ring: Option<&RingState>) -> Opener {
    let retired = ring.map(|r| r.ring.retired_secrets()).unwrap_or_default();
    Opener::new(identity, OPENER_CACHE).with_retired(retired)
}

impl Actor {
    /// Our keys as the control API shows them.
    pub(super) fn keys_view(&self) -> KeysView {
        let identity = &self.config.identity;
        let retired = self.key_ring.as_ref().map(|r| r.ring.retired()).unwrap_or_default();
        KeysView {
            e2e_public: bs58::encode(identity.e2e_public()).into_string(),
            version: identity.e2e_version(),
            expires_ms: identity.e2e_expires_ms(),
            retired: retired
                .into_iter()
                .map(|k| RetiredKeyView {
                    e2e_public: bs58::encode(k.public).into_string(),
                    version: k.version,
                    retired_at_ms: k.retired_at_ms,
                    wiped_at_ms: k.wiped_at_ms,
                })
                .collect(),
        }
    }

    /// Takes a new E2E key into use: the ring is written first (a crash after it
    /// leaves the new key in use at the next start), then envelopes are sealed with
    /// it, and every accepted contact is sent a new ratchet key offer, which carries
    /// the new key and binding in its envelope, through the outbox (so those offline
    /// get it from relays). The peer record is published again. Fellow group members
    /// who are not contacts learn it only from what we next seal to them (their
    /// member card for us keeps the old key).
    pub(super) fn rotate_key(&mut self) -> Result<KeysView, NodeError> {
        let Some(state) = self.key_ring.as_mut() else {
            return Err(OpError::NotAllowed("this node runs without a key ring, so its key cannot rotate".into()).into());
        };
        let now = ops::now_ms();
        state.ring.rotate(now);
        if let Err(e) = state.ring.save(&state.path, &state.keystore) {
            reload(state);
            return Err(OpError::NotAllowed(format!("writing the new key failed; the old one stays in use: {e}")).into());
        }
        let identity = state.ring.identity(&state.keystore);
        tracing::info!(version = identity.e2e_version(), "rotated our end-to-end key");
        self.use_identity(identity);
        self.note_rotated();
        if !self.offer_to_accepted(false) {
            tracing::error!("the new key's announcements could not be queued; contacts learn it from our next message");
        }
        self.directory.record_changed();
        self.publish_record();
        Ok(self.keys_view())
    }

    /// Renews our binding's expiry and wipes keys past their window when due (with
    /// each peer record refresh).
    pub(super) fn maintain_keys(&mut self) {
        let Some(state) = self.key_ring.as_mut() else { return };
        if !state.ring.maintain(ops::now_ms()) {
            return;
        }
        if let Err(e) = state.ring.save(&state.path, &state.keystore) {
            tracing::error!(error = %e, "writing the renewed end-to-end key ring failed; trying again later");
            reload(state);
            return;
        }
        let identity = state.ring.identity(&state.keystore);
        self.use_identity(identity);
        self.directory.record_changed();
    }

    /// Records that this node has rotated its key (see [`ROTATED_SETTING`]); durable
    /// with the flush that comes before the rotation is answered.
    fn note_rotated(&self) {
        if let Err(e) = self.store.settings().set(ROTATED_SETTING, &true) {
            tracing::error!(error = %e, "recording the rotation failed; a lost key ring would bring back the first key");
        }
    }

    /// Seals and opens with `identity`'s key from now on (and the ring's retired keys).
    fn use_identity(&mut self, identity: Identity) {
        self.sealer = Sealer::new(&identity, SealerConfig::default());
        self.opener = opener(&identity, self.key_ring.as_ref());
        self.config.identity = identity;
    }
}

/// Puts the ring back as it is on disk after a change that could not be written.
fn reload(state: &mut RingState) {
    match KeyRing::read(&state.path, &state.keystore) {
        Ok(Some(ring)) => state.ring = ring,
        Ok(None) | Err(KeyRingError::Io(_) | KeyRingError::Unreadable(_)) => {
            tracing::error!("the end-to-end key ring could not be read back; keeping the change in memory only");
        }
    }
}
