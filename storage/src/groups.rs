//! Groups and their member lists, keyed by group id.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::error::{StoreError, db};
use crate::schema::GROUPS;
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
    /// Membership epoch; bumped by every membership change.
    pub epoch: u64,
    /// Creation time, in ms since the Unix epoch.
    pub created_at_ms: u64,
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

    /// Deletes a group; returns whether it existed. Its conversation is not
    /// touched. Not flushed.
    pub fn remove(&self, id: GroupId) -> Result<bool, StoreError> {
        Ok(self.tree().remove(id.0).map_err(db)?.is_some())
    }
}
