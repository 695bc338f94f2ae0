//! What the group tests share: people with fixed keys, a group one of them owns, and
//! the operations that add and remove members.
#![allow(clippy::unwrap_used)]

use kith_storage::Role;

use super::membership::{MemberCard, Membership, OpKind, SignedOp};
use crate::identity::Identity;

/// `n` identities with fixed secrets.
pub(crate) fn people(n: usize) -> Vec<Identity> {
    (0..n).map(|i| Identity::from_secrets([i as u8 + 1; 32], [i as u8 + 101; 32])).collect()
}

/// A group named "club" that `owner` just created.
pub(crate) fn group(owner: &Identity) -> Membership {
    let (_, create) = SignedOp::create(owner, "club", Vec::new(), 0).unwrap();
    Membership::new(create).unwrap()
}

/// Adds `who` with `role`.
pub(crate) fn add(who: &Identity, role: Role) -> OpKind {
    OpKind::Add { member: MemberCard::of(&who.public()), role }
}

/// Removes `who`.
pub(crate) fn remove(who: &Identity) -> OpKind {
    OpKind::Remove { peer: who.peer_id().to_bytes() }
}
