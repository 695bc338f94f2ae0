//! Profiles in the node: setting ours, keeping contacts' newest, sharing ours with
//! contacts, and the views of both. The format and its rules are
//! [`crate::profile`]'s.

use base64::Engine as _;
use kith_storage::{Contact, ContactState, Recipient, Store};
use libp2p::PeerId;

use crate::identity::Identity;
use crate::ops::{self, OpError};
use crate::payload::Payload;
use crate::profile::{Avatar, Profile, ProfileError, SignedProfile};
use crate::views::{AvatarView, ProfileView};

/// A change to our profile; what is `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// A new name (empty: none).
    pub name: Option<String>,
    /// A new status line (empty: none).
    pub status: Option<String>,
    /// A new picture, or `Some(None)` for none.
    pub avatar: Option<Option<Avatar>>,
}

/// What a received profile did.
#[derive(Debug)]
pub(crate) enum Received {
    /// Kept: newer than what we held. The contact, when its announced name changed.
    Kept { view: ProfileView, contact: Option<Box<Contact>> },
    /// Not newer than what we hold: nothing changed.
    Stale,
}

/// The profile stored for `peer` (ours or a contact's), opened.
pub fn stored(store: &Store, peer: &PeerId) -> Result<Option<Profile>, OpError> {
    let Some(bytes) = store.profiles().get(peer)? else { return Ok(None) };
    // Checked when it was written; a profile that no longer opens is treated as none.
    match SignedProfile::decode(&bytes).map_err(ProfileError::from).and_then(|s| s.open(peer)) {
        Ok(profile) => Ok(Some(profile)),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "a stored profile does not open; ignoring it");
            Ok(None)
        }
    }
}

/// The name we go by (in the peer record, invites and acceptances): our profile's
/// once we set one, else `configured` (the config's `display_name`).
pub fn name_we_go_by(store: &Store, me: &PeerId, configured: Option<String>) -> Option<String> {
    match stored(store, me) {
        Ok(Some(profile)) => profile.name,
        Ok(None) => configured,
        Err(e) => {
            tracing::warn!(error = %e, "reading our profile failed; using the configured name");
            configured
        }
    }
}

/// The view of `peer`'s profile (with the picture's bytes when `with_avatar`).
pub fn view(store: &Store, peer: &PeerId, with_avatar: bool) -> Result<ProfileView, OpError> {
    let profile = stored(store, peer)?;
    let alias = store.contacts().get(peer)?.and_then(|c| c.alias);
    Ok(view_of(peer, profile.as_ref(), alias, with_avatar))
}

fn view_of(peer: &PeerId, profile: Option<&Profile>, alias: Option<String>, with_avatar: bool) -> ProfileView {
    ProfileView {
        peer_id: peer.to_base58(),
        name: profile.and_then(|p| p.name.clone()),
        alias,
        status: profile.and_then(|p| p.status.clone()),
        avatar: profile.and_then(|p| p.avatar.as_ref()).map(|a| AvatarView {
            media_type: a.media_type.clone(),
            size: a.bytes.len(),
            data: with_avatar.then(|| base64::engine::general_purpose::STANDARD.encode(&a.bytes)),
        }),
        updated_at: profile.map(|p| p.version),
    }
}

/// Applies `change` to our profile, signs and stores it (not flushed); returns it.
/// A first profile starts from `configured_name` (the config's `display_name`), so
/// setting only a status keeps the name we went by. Its version is now, or one past
/// the last if the clock went back.
pub fn set_mine(
    store: &Store,
    identity: &Identity,
    change: ProfileChange,
    configured_name: Option<&str>,
) -> Result<Profile, OpError> {
    let me = identity.peer_id();
    let old = stored(store, &me)?
        .unwrap_or(Profile { name: configured_name.map(str::to_owned), status: None, avatar: None, version: 0 });
    let keep_or = |new: Option<String>, old: Option<String>| match new {
        None => old,
        Some(new) if new.trim().is_empty() => None,
        Some(new) => Some(new.trim().to_owned()),
    };
    let profile = Profile {
        name: keep_or(change.name, old.name),
        status: keep_or(change.status, old.status),
        avatar: change.avatar.unwrap_or(old.avatar),
        version: ops::now_ms().max(old.version.saturating_add(1)),
    };
    let signed = profile.sign(identity).map_err(invalid)?;
    store.profiles().put(&me, &signed.encode()?)?;
    Ok(profile)
}

/// Queues our profile (if we have one) for `peer` (not flushed), in place of any
/// older one still queued for it; returns whether anything was queued.
pub fn share(store: &Store, me: &PeerId, peer: &PeerId) -> Result<bool, OpError> {
    Ok(share_with(store, me, &[*peer])? > 0)
}

/// Queues our profile for every accepted contact (not flushed), in place of older
/// ones still queued; returns how many.
pub fn share_with_all(store: &Store, me: &PeerId) -> Result<usize, OpError> {
    let contacts: Vec<PeerId> =
        store.contacts().unsorted()?.into_iter().filter(|c| c.state == ContactState::Accepted).map(|c| c.peer_id).collect();
    share_with(store, me, &contacts)
}

/// Queues our profile for `peers`, dropping the older profiles still queued for
/// them: a contact offline through many changes gets the latest once, not every
/// version (each up to 34 KiB) in its relay's mailbox.
fn share_with(store: &Store, me: &PeerId, peers: &[PeerId]) -> Result<usize, OpError> {
    let Some(signed) = store.profiles().get(me)? else { return Ok(0) };
    if peers.is_empty() {
        return Ok(0);
    }
    let wanted: std::collections::HashSet<&PeerId> = peers.iter().collect();
    for entry in store.outbox().list()? {
        if let Recipient::Peer(peer) = &entry.recipient
            && wanted.contains(peer)
            && matches!(Payload::decode(&entry.payload), Ok(Payload::Profile { .. }))
        {
            store.outbox().remove(entry.id)?;
        }
    }
    for peer in peers {
        ops::enqueue(store, peer, &Payload::Profile { signed: signed.clone() })?;
    }
    Ok(peers.len())
}

/// A profile `contact` sent: kept if it is theirs, keeps the rules and is newer than
/// the one held (written, not flushed).
pub(crate) fn receive(store: &Store, contact: &Contact, signed: &[u8]) -> Result<Received, ReceiveError> {
    let peer = contact.peer_id;
    let decoded = SignedProfile::decode(signed).map_err(|e| ReceiveError::Refused(e.into()))?;
    let profile = decoded.open(&peer).map_err(ReceiveError::Refused)?;
    if stored(store, &peer)?.is_some_and(|held| held.version >= profile.version) {
        return Ok(Received::Stale);
    }
    store.profiles().put(&peer, signed).map_err(OpError::from)?;
    let view = view_of(&peer, Some(&profile), contact.alias.clone(), false);
    let contact = match &profile.name {
        Some(name) if contact.display_name.as_deref() != Some(name) => {
            Some(Box::new(Contact { display_name: Some(name.clone()), ..contact.clone() }))
        }
        _ => None,
    };
    Ok(Received::Kept { view, contact })
}

/// Why a received profile was not kept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiveError {
    /// Not the sender's, or breaking the rules: the payload is refused.
    #[error(transparent)]
    Refused(ProfileError),
    /// Our storage failed.
    #[error(transparent)]
    Store(#[from] OpError),
}

fn invalid(e: ProfileError) -> OpError {
    OpError::Invalid(e.to_string())
}
