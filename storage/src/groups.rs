//! Groups: the cached state of each group (`groups`), the signed membership
//! operations it is computed from (`group_ops`), members' sender keys
//! (`group_keys`) and group messages waiting for a key (`group_pending`).
//!
//! The operations and messages are opaque bytes here; their meaning (and every
//! check) lives in the node. Keys in the trees start with the group id, so a
//! group's entries are one contiguous range; keys and pending messages then name
//! their author by a digest of its peer id, so one author's entries are a range
//! too and can be counted and capped ([`MAX_KEY_GENERATIONS`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::{StoreError, db};
use crate::schema::{GROUP_KEYS, GROUP_PENDING, GROUPS};
use crate::store::Inner;
use crate::types::GroupId;

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the group; may do everything.
    Owner,
    /// May change membership.
    Admin,
    /// May read and post.
    Member,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's peer id.
    pub peer_id: String,
    /// Their role.
    pub role: Role,
}

/// A group as known locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Current members.
    pub members: Vec<Member>,
    /// Membership version: how many operations its history holds (grows with every
    /// change; members holding the same history agree on it).
    #[serde(alias = "epoch")]
    pub version: u64,
    /// Creation time, in ms since the Unix epoch.
    pub created_at_ms: u64,
    /// The group's relays (multiaddrs), which keep its log for offline members.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Whether we are still a member (false once we left or were removed; the
    /// history stays).
    #[serde(default = "yes")]
    pub active: bool,
    /// Set while the group is an invitation we have not answered: who added us
    /// (someone who is not an accepted contact). Such a group is not active.
    #[serde(default)]
    pub invited_by: Option<String>,
}

impl Group {
    /// Whether `peer` is one of its current members.
    pub fn has_member(&self, peer: &crate::PeerId) -> bool {
        let text = peer.to_base58();
        self.members.iter().any(|m| m.peer_id == text)
    }
}

fn yes() -> bool {
    true
}

/// Length of the digests that key operations and pending messages.
const DIGEST_LEN: usize = 32;
/// Length of the author digest in key and pending-message keys.
const AUTHOR_LEN: usize = 16;
/// Sender-key generations kept per group and author: the newest ones. A key
/// generation changes only when someone leaves, and a member offline through more
/// departures than this reads the older messages it missed no more.
pub const MAX_KEY_GENERATIONS: usize = 8;

fn author_digest(author: &str) -> [u8; AUTHOR_LEN] {
    let hash = blake3::hash(author.as_bytes());
    let mut out = [0u8; AUTHOR_LEN];
    out.copy_from_slice(&hash.as_bytes()[..AUTHOR_LEN]);
    out
}

/// Where a pending message is kept (its author's digest and its own): what
/// [`Groups::remove_pending`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingKey([u8; AUTHOR_LEN + DIGEST_LEN]);

/// A message waiting for its key: where it is kept and its bytes.
pub type PendingMessage = (PendingKey, Vec<u8>);

fn prefixed(group: GroupId, rest: &[&[u8]]) -> Vec<u8> {
    let mut key = group.0.to_vec();
    for part in rest {
        key.extend_from_slice(part);
    }
    key
}

/// Handle to the groups table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Groups {
    pub(crate) inner: Arc<Inner>,
}

impl Groups {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.groups
    }

    /// Inserts or replaces the group with this id. Not flushed.
    pub fn put(&self, group: &Group) -> Result<(), StoreError> {
        self.tree()
            .insert(&group.id.0[..], encode(group)?)
            .map_err(db)?;
        Ok(())
    }

    /// The group with this id, if any.
    pub fn get(&self, id: GroupId) -> Result<Option<Group>, StoreError> {
        match self.tree().get(id.0).map_err(db)? {
            Some(v) => decode(GROUPS, &v).map(Some),
            None => Ok(None),
        }
    }

    /// All groups, by name then id.
    pub fn list(&self) -> Result<Vec<Group>, StoreError> {
        let mut all = self
            .tree()
            .iter()
            .values()
            .map(|v| decode::<Group>(GROUPS, &v.map_err(db)?))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Deletes a group with its operations, keys and pending messages; returns
    /// whether it existed. Its conversation is not touched. Not flushed.
    pub fn remove(&self, id: GroupId) -> Result<bool, StoreError> {
        let t = &self.inner.trees;
        for tree in [&t.group_ops, &t.group_keys, &t.group_pending] {
            for key in tree.scan_prefix(id.0).keys() {
                tree.remove(key.map_err(db)?).map_err(db)?;
            }
        }
        Ok(self.tree().remove(id.0).map_err(db)?.is_some())
    }

    /// Keeps a membership operation (encoded and signed), under its height in the
    /// history (parents are lower) and digest; returns whether it was new. Not
    /// flushed.
    pub fn put_op(&self, group: GroupId, height: u64, digest: &[u8; DIGEST_LEN], op: &[u8]) -> Result<bool, StoreError> {
        let key = prefixed(group, &[&height.to_be_bytes(), digest]);
        Ok(self.inner.trees.group_ops.insert(key, op).map_err(db)?.is_none())
    }

    /// Forgets every operation of the group (kept: the record, keys, messages).
    /// Not flushed.
    pub fn clear_ops(&self, group: GroupId) -> Result<(), StoreError> {
        let tree = &self.inner.trees.group_ops;
        for key in tree.scan_prefix(group.0).keys() {
            tree.remove(key.map_err(db)?).map_err(db)?;
        }
        Ok(())
    }

    /// The group's operations, in (height, digest) order: parents first.
    pub fn ops(&self, group: GroupId) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner
            .trees
            .group_ops
            .scan_prefix(group.0)
            .values()
            .map(|v| v.map(|v| v.to_vec()).map_err(db))
            .collect()
    }

    /// Keeps `author`'s sender key of `generation` at the start of its chain (index
    /// 0); see [`Self::put_chain_key`].
    pub fn put_key(&self, group: GroupId, author: &str, generation: u32, key: &[u8; 32]) -> Result<(), StoreError> {
        self.put_chain_key(group, author, generation, 0, key)
    }

    /// Keeps `author`'s sender key of `generation` as the chain key at `index`,
    /// replacing any; only the newest [`MAX_KEY_GENERATIONS`] generations per author
    /// are kept. Not flushed. (Stored as the 32 key bytes at index 0, as before
    /// chains, and followed by the index otherwise.)
    pub fn put_chain_key(&self, group: GroupId, author: &str, generation: u32, index: u64, key: &[u8; 32]) -> Result<(), StoreError> {
        let tree = &self.inner.trees.group_keys;
        let prefix = prefixed(group, &[&author_digest(author)]);
        let k = prefixed(group, &[&author_digest(author), &generation.to_be_bytes()]);
        let value = if index == 0 { key.to_vec() } else { [&key[..], &index.to_be_bytes()].concat() };
        tree.insert(&k, value).map_err(db)?;
        let kept: Vec<sled::IVec> = tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>().map_err(db)?;
        // Keys sort by generation (big-endian): the oldest come first.
        for old in kept.iter().take(kept.len().saturating_sub(MAX_KEY_GENERATIONS)) {
            tree.remove(old).map_err(db)?;
        }
        Ok(())
    }

    /// `author`'s sender key of `generation` at the start of its chain, if we have
    /// one there (see [`Self::chain_key`]).
    pub fn key(&self, group: GroupId, author: &str, generation: u32) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self.chain_key(group, author, generation)?.filter(|(index, _)| *index == 0).map(|(_, key)| key))
    }

    /// `author`'s sender key of `generation`, if we have it: (chain index, key).
    pub fn chain_key(&self, group: GroupId, author: &str, generation: u32) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let k = prefixed(group, &[&author_digest(author), &generation.to_be_bytes()]);
        match self.inner.trees.group_keys.get(k).map_err(db)? {
            Some(v) if v.len() == 32 => crate::codec::fixed::<32>(GROUP_KEYS, &v).map(|key| Some((0, key))),
            Some(v) => {
                let (key, index) = v.split_at(v.len().min(32));
                Ok(Some((crate::codec::be_u64(GROUP_KEYS, index)?, crate::codec::fixed::<32>(GROUP_KEYS, key)?)))
            }
            None => Ok(None),
        }
    }

    /// Keeps a group message by `author` that cannot be read yet (its key or its
    /// author's membership has not arrived), under its digest. Not flushed.
    pub fn put_pending(&self, group: GroupId, author: &str, digest: &[u8; DIGEST_LEN], message: &[u8]) -> Result<(), StoreError> {
        let key = prefixed(group, &[&author_digest(author), digest]);
        self.inner.trees.group_pending.insert(key, message).map_err(db)?;
        Ok(())
    }

    /// How many messages by `author` of the group are pending.
    pub fn pending_count_by(&self, group: GroupId, author: &str) -> usize {
        self.inner.trees.group_pending.scan_prefix(prefixed(group, &[&author_digest(author)])).count()
    }

    /// The group's pending messages with their digests.
    pub fn pending(&self, group: GroupId) -> Result<Vec<PendingMessage>, StoreError> {
        self.inner
            .trees
            .group_pending
            .scan_prefix(group.0)
            .map(|kv| {
                let (k, v) = kv.map_err(db)?;
                let key = crate::codec::fixed::<{ AUTHOR_LEN + DIGEST_LEN }>(GROUP_PENDING, &k[group.0.len()..])?;
                Ok((PendingKey(key), v.to_vec()))
            })
            .collect()
    }

    /// How many messages of the group are pending.
    pub fn pending_count(&self, group: GroupId) -> usize {
        self.inner.trees.group_pending.scan_prefix(group.0).count()
    }

    /// Forgets a pending message. Not flushed.
    pub fn remove_pending(&self, group: GroupId, key: &PendingKey) -> Result<(), StoreError> {
        self.inner.trees.group_pending.remove(prefixed(group, &[&key.0])).map_err(db)?;
        Ok(())
    }
}
