//! The state a group's history folds to, and the rules of the fold: who may make
//! which operation ([`permitted`]), whom it revokes ([`revocation`]) and what it
//! changes ([`apply`]). Roles and seniority are described in [`super::membership`].

use std::collections::{BTreeMap, BTreeSet};

use kith_storage::Role;
use libp2p::PeerId;

use super::op::{MemberCard, OpId, OpKind};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most members a group may have.
pub const MAX_MEMBERS: usize = 1024;

/// How senior a member is: lower is more senior. The owner is above every admin;
/// among admins (and members), whoever got the role earlier in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub(crate) tier: u8,
    pub(crate) height: u32,
    pub(crate) op: OpId,
}

fn tier(role: Role) -> u8 {
    match role {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::Member => 2,
    }
}

/// A member as the fold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Role now.
    pub role: Role,
    /// How to reach them.
    pub card: MemberCard,
    /// Who made them a member (for the owner: the owner).
    pub added_by: PeerId,
    /// Where in the history they got their current role: (height, operation).
    pub(crate) since: (u32, OpId),
}

impl MemberState {
    /// Their seniority.
    pub fn rank(&self) -> Rank {
        Rank { tier: tier(self.role), height: self.since.0, op: self.since.1 }
    }
}

/// The membership every member computes from the same operations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupState {
    /// The group's name.
    pub name: String,
    /// Members by peer id.
    pub members: BTreeMap<PeerId, MemberState>,
    /// How many operations the history holds (grows with every change; members that
    /// hold the same history agree on it).
    pub version: u64,
    /// Everyone ever removed or departed and not re-added (their sender keys are stale).
    pub departed: BTreeSet<PeerId>,
    /// The relays that keep the group's log (multiaddr bytes, from `Create`).
    pub relays: Vec<Vec<u8>>,
}

impl GroupState {
    /// The role of `peer`, if a member.
    pub fn role(&self, peer: &PeerId) -> Option<Role> {
        self.members.get(peer).map(|m| m.role)
    }

    /// Whether `peer` may change membership.
    pub fn is_admin(&self, peer: &PeerId) -> bool {
        matches!(self.role(peer), Some(Role::Owner | Role::Admin))
    }

    pub(crate) fn rank(&self, peer: &PeerId) -> Option<Rank> {
        self.members.get(peer).map(MemberState::rank)
    }

    /// Whether `author` may revoke `target`'s role: the owner may revoke anyone but
    /// itself; an admin may revoke members and junior admins.
    fn outranks(&self, author: &PeerId, target: &PeerId) -> bool {
        match (self.rank(author), self.rank(target)) {
            (Some(a), Some(t)) => a.tier <= 1 && t.tier > 0 && (t.tier == 2 || a < t),
            _ => false,
        }
    }
}

/// Who an operation takes rights from, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revokes {
    /// Membership (remove, leave): every concurrent operation of the target is void.
    Membership(PeerId),
    /// Admin rights (demotion): the target's concurrent operations other than leaving
    /// are void.
    Admin(PeerId),
}

fn peer(bytes: &[u8]) -> Option<PeerId> {
    PeerId::from_bytes(bytes).ok()
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS
}

/// Whether `author` may make `kind` in `state`; the reason if not.
pub(crate) fn permitted(state: &GroupState, author: &PeerId, kind: &OpKind) -> Result<(), String> {
    let admin = state.is_admin(author);
    let need_admin = || if admin { Ok(()) } else { Err("only the group's owner and admins can do that".to_owned()) };
    match kind {
        OpKind::Create { .. } => Err("a group has exactly one Create".into()),
        OpKind::Add { member, role } => {
            need_admin()?;
            let who = peer(&member.peer_id).ok_or("the card's peer id is malformed")?;
            if !matches!(role, Role::Admin | Role::Member) {
                return Err("members are added as admin or member".into());
            }
            if state.members.contains_key(&who) {
                return Err(format!("{who} is already a member"));
            }
            if state.members.len() >= MAX_MEMBERS {
                return Err(format!("the group has {MAX_MEMBERS} members"));
            }
            member.verify().map_err(|_| "the member's card does not verify".to_owned())?;
            Ok(())
        }
        OpKind::Remove { peer: target } | OpKind::SetRole { peer: target, .. } => {
            need_admin()?;
            let who = peer(target).ok_or("malformed peer id")?;
            let role = state.role(&who).ok_or_else(|| format!("{who} is not a member"))?;
            if role == Role::Owner || who == *author {
                return Err("the owner cannot be removed or demoted, nor can one remove oneself".into());
            }
            if let OpKind::SetRole { role: new, .. } = kind
                && (!matches!(new, Role::Admin | Role::Member) || *new == role)
            {
                return Err(format!("{who} already has that role"));
            }
            let revoking = matches!(kind, OpKind::Remove { .. }) || matches!(kind, OpKind::SetRole { role: Role::Member, .. });
            if revoking && role == Role::Admin && !state.outranks(author, &who) {
                return Err(format!("{who} is an admin: only the owner or a more senior admin can remove or demote them"));
            }
            Ok(())
        }
        OpKind::Rename { name } => {
            need_admin()?;
            if !valid_name(name) {
                return Err(format!("a group name is 1 to {MAX_NAME_CHARS} characters"));
            }
            if *name == state.name {
                return Err("the group already has that name".into());
            }
            Ok(())
        }
        OpKind::Leave => {
            if state.members.contains_key(author) {
                Ok(())
            } else {
                Err(format!("{author} is not a member"))
            }
        }
    }
}

/// Whom a permitted operation revokes, judged in its causal state.
pub(crate) fn revocation(state: &GroupState, author: &PeerId, kind: &OpKind) -> Option<Revokes> {
    match kind {
        OpKind::Remove { peer: target } => peer(target).map(Revokes::Membership),
        OpKind::SetRole { peer: target, role: Role::Member } => {
            let who = peer(target)?;
            (state.role(&who) == Some(Role::Admin)).then_some(Revokes::Admin(who))
        }
        OpKind::Leave => Some(Revokes::Membership(*author)),
        _ => None,
    }
}

/// Apply an effective operation's change. Its author's right was checked in its
/// causal state; here the author must still hold the role it needs in the state
/// the fold has reached (an admin for every change but a leave, a member to leave).
/// Otherwise the right came from an operation a revocation voided — a removed
/// admin's back-dated promotion of an accomplice, say — and the change does
/// nothing, as do changes that no longer fit (adding a member twice, removing one
/// who is gone).
pub(crate) fn apply(state: &mut GroupState, author: PeerId, at: (u32, OpId), kind: &OpKind) {
    let still_entitled = match kind {
        OpKind::Create { .. } => return,
        OpKind::Leave => state.members.contains_key(&author),
        _ => state.is_admin(&author),
    };
    if !still_entitled {
        return;
    }
    match kind {
        OpKind::Create { .. } => {}
        OpKind::Add { member, role } => {
            let Some(who) = peer(&member.peer_id) else { return };
            if state.members.contains_key(&who) || state.members.len() >= MAX_MEMBERS {
                return;
            }
            state.departed.remove(&who);
            state.members.insert(who, MemberState { role: *role, card: member.clone(), added_by: author, since: at });
        }
        OpKind::Remove { peer: target } => {
            let Some(who) = peer(target) else { return };
            if matches!(state.role(&who), Some(Role::Admin | Role::Member)) {
                state.members.remove(&who);
                state.departed.insert(who);
            }
        }
        OpKind::SetRole { peer: target, role } => {
            let Some(who) = peer(target) else { return };
            if let Some(m) = state.members.get_mut(&who)
                && m.role != Role::Owner
                && m.role != *role
            {
                m.role = *role;
                m.since = at;
            }
        }
        OpKind::Rename { name } => state.name = name.clone(),
        OpKind::Leave => {
            let Some(left) = state.members.remove(&author) else { return };
            state.departed.insert(author);
            if left.role == Role::Owner {
                // Succession by seniority: the most senior admin, else member.
                let heir = state.members.iter().min_by_key(|(_, m)| m.rank()).map(|(p, _)| *p);
                if let Some(heir) = heir.and_then(|p| state.members.get_mut(&p)) {
                    heir.role = Role::Owner;
                    heir.since = at;
                }
            }
        }
    }
}

