//! Group membership: signed operations and their deterministic fold.
//!
//! A group's membership is not a mutable record but the set of operations its admins
//! signed. Each operation names the epoch it was made at (the author's current epoch
//! plus one). Every member keeps every operation it has seen and computes the state by
//! applying them in `(epoch, operation hash)` order, checking each against the state
//! reached so far (is the author an admin *then*?). Operations that fail the check are
//! kept but have no effect. So two members that have seen the same operations compute
//! the same membership, whatever order the operations arrived in: concurrent changes by
//! two admins converge.
//!
//! Roles: the owner may do everything; admins add, remove and rename, and promote or
//! demote non-owners; members may only leave. The owner cannot be removed; if the owner
//! leaves, the admin (else the member) with the smallest peer id becomes owner.

use std::collections::{BTreeMap, BTreeSet};

use kith_storage::{GroupId, Role};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::GroupError;
use crate::identity::{Identity, PublicIdentity, verify_signature};
use crate::wire;

/// Domain separation for operation signatures.
pub const OP_CONTEXT: &[u8] = b"kith/group-op/1\0";
/// Largest encoded operation accepted.
pub const MAX_OP_LEN: usize = 16 * 1024;
/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most members a group may have.
pub const MAX_MEMBERS: usize = 1024;
const OP_VERSION: u32 = 1;

/// How other members reach a member end to end: its identity and bound E2E key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCard {
    /// Peer id bytes.
    #[serde(with = "wire::bytes")]
    pub peer_id: Vec<u8>,
    /// X25519 key for pairwise sealing.
    #[serde(with = "wire::byte_array")]
    pub e2e_public: [u8; 32],
    /// Signature binding `e2e_public` to `peer_id`.
    #[serde(with = "wire::byte_array")]
    pub binding: [u8; 64],
}

impl MemberCard {
    /// The card of a public identity.
    pub fn of(public: &PublicIdentity) -> MemberCard {
        MemberCard { peer_id: public.peer_id.to_bytes(), e2e_public: public.e2e_public, binding: public.binding }
    }

    /// The card as a verified public identity.
    pub fn verify(&self) -> Result<PublicIdentity, GroupError> {
        let peer_id = PeerId::from_bytes(&self.peer_id).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let public = PublicIdentity { peer_id, e2e_public: self.e2e_public, binding: self.binding };
        public.verify().map_err(|_| GroupError::BadSignature)?;
        Ok(public)
    }
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// Start the group; its author is the owner. Only the first `Create` counts.
    Create {
        /// The group's name.
        #[serde(deserialize_with = "wire::Max::<{ super::MAX_NAME_BYTES }>::text")]
        name: String,
        /// The owner's card.
        owner: MemberCard,
        /// The relays (multiaddr bytes) that keep the group's log.
        #[serde(default, serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<{ crate::peer_record::MAX_ADDRS }>::bytes_seq")]
        relays: Vec<Vec<u8>>,
    },
    /// Add a member (role `Admin` or `Member`).
    Add {
        /// Who.
        member: MemberCard,
        /// With which role.
        role: Role,
    },
    /// Remove a member.
    Remove {
        /// Peer id bytes of the member.
        #[serde(with = "wire::bytes")]
        peer: Vec<u8>,
    },
    /// Change a non-owner's role (promote or demote).
    SetRole {
        /// Peer id bytes of the member.
        #[serde(with = "wire::bytes")]
        peer: Vec<u8>,
        /// The new role (`Admin` or `Member`).
        role: Role,
    },
    /// Rename the group.
    Rename {
        /// The new name.
        #[serde(deserialize_with = "wire::Max::<{ super::MAX_NAME_BYTES }>::text")]
        name: String,
    },
    /// The author leaves.
    Leave,
}

/// An operation before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    v: u32,
    /// The group.
    pub group: GroupId,
    /// Author's peer id bytes.
    #[serde(with = "wire::bytes")]
    pub author: Vec<u8>,
    /// The author's epoch when writing plus one: orders operations.
    pub epoch: u64,
    /// Author's clock, ms since the Unix epoch (informational).
    pub at_ms: u64,
    /// What it does.
    pub kind: OpKind,
}

/// A signed operation as it travels and is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    /// The operation.
    pub op: Op,
    /// The author's Ed25519 signature over [`OP_CONTEXT`] ‖ CBOR(op).
    #[serde(with = "wire::byte_array")]
    pub sig: [u8; 64],
}

fn signed_bytes(op: &Op) -> Result<Vec<u8>, GroupError> {
    let body = wire::encode(op).map_err(|e| GroupError::Malformed(e.to_string()))?;
    Ok([OP_CONTEXT, &body].concat())
}

impl SignedOp {
    /// Sign `kind` for `group` at `epoch` as `identity`.
    pub fn sign(identity: &Identity, group: GroupId, epoch: u64, at_ms: u64, kind: OpKind) -> Result<SignedOp, GroupError> {
        let op = Op { v: OP_VERSION, group, author: identity.peer_id().to_bytes(), epoch, at_ms, kind };
        let sig = identity.sign(&signed_bytes(&op)?);
        Ok(SignedOp { op, sig })
    }

    /// Encode for the wire or the store.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        wire::encode(self).map_err(|e| GroupError::Malformed(e.to_string()))
    }

    /// Decode and check the signature and size caps (not yet the author's rights:
    /// those depend on the state it is applied to).
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, GroupError> {
        let op: SignedOp = wire::decode(bytes, MAX_OP_LEN).map_err(|e| GroupError::Malformed(e.to_string()))?;
        if op.op.v != OP_VERSION {
            return Err(GroupError::Malformed(format!("unsupported operation version {}", op.op.v)));
        }
        op.check_signature()?;
        Ok(op)
    }

    fn check_signature(&self) -> Result<(), GroupError> {
        let author = self.author()?;
        verify_signature(&author, &signed_bytes(&self.op)?, &self.sig).map_err(|_| GroupError::BadSignature)
    }

    /// The author.
    pub fn author(&self) -> Result<PeerId, GroupError> {
        PeerId::from_bytes(&self.op.author).map_err(|e| GroupError::Malformed(e.to_string()))
    }

    /// Content hash: the operation's identity and its tie-breaker within an epoch.
    pub fn id(&self) -> [u8; 32] {
        let bytes = self.encode().unwrap_or_default();
        *blake3::hash(&bytes).as_bytes()
    }
}

/// A member as the fold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Role now.
    pub role: Role,
    /// How to reach them.
    pub card: MemberCard,
}

/// The membership every member computes from the same operations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupState {
    /// The group's name.
    pub name: String,
    /// Members by peer id.
    pub members: BTreeMap<PeerId, MemberState>,
    /// The highest epoch of an applied operation.
    pub epoch: u64,
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
}

/// All operations of one group and the state they fold to.
#[derive(Debug, Clone)]
pub struct Membership {
    group: GroupId,
    ops: BTreeMap<(u64, [u8; 32]), SignedOp>,
    state: GroupState,
}

impl Membership {
    /// A group from its `Create` operation (already verified by [`SignedOp::decode`] or
    /// made by [`SignedOp::sign`]).
    pub fn new(create: SignedOp) -> Result<Membership, GroupError> {
        if !matches!(create.op.kind, OpKind::Create { .. }) {
            return Err(GroupError::NoCreate);
        }
        let mut m = Membership { group: create.op.group, ops: BTreeMap::new(), state: GroupState::default() };
        m.insert(create)?;
        Ok(m)
    }

    /// The group id.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Add an operation; returns whether it was new. The state is recomputed.
    pub fn insert(&mut self, op: SignedOp) -> Result<bool, GroupError> {
        if op.op.group != self.group {
            return Err(GroupError::WrongGroup);
        }
        op.check_signature()?;
        let key = (op.op.epoch, op.id());
        if self.ops.contains_key(&key) {
            return Ok(false);
        }
        self.ops.insert(key, op);
        self.state = fold(&self.ops);
        Ok(true)
    }

    /// The current state.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// The epoch a new operation by a member should carry.
    pub fn next_epoch(&self) -> u64 {
        self.state.epoch + 1
    }

    /// Every operation, in application order (what a new member is sent).
    pub fn ops(&self) -> impl Iterator<Item = &SignedOp> {
        self.ops.values()
    }
}

/// Apply the operations in `(epoch, id)` order, each checked against the state so far.
fn fold(ops: &BTreeMap<(u64, [u8; 32]), SignedOp>) -> GroupState {
    let mut state = GroupState::default();
    let mut created = false;
    for op in ops.values() {
        let Ok(author) = op.author() else { continue };
        if apply(&mut state, &mut created, author, &op.op.kind) {
            state.epoch = state.epoch.max(op.op.epoch);
        }
    }
    state
}

fn peer(bytes: &[u8]) -> Option<PeerId> {
    PeerId::from_bytes(bytes).ok()
}

fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS
}

/// One operation; returns whether it took effect.
fn apply(state: &mut GroupState, created: &mut bool, author: PeerId, kind: &OpKind) -> bool {
    match kind {
        OpKind::Create { name, owner, relays } => {
            if *created || peer(&owner.peer_id) != Some(author) || !valid_name(name) || owner.verify().is_err() {
                return false;
            }
            *created = true;
            state.name = name.clone();
            state.relays = relays.clone();
            state.members.insert(author, MemberState { role: Role::Owner, card: owner.clone() });
            true
        }
        _ if !*created => false,
        OpKind::Add { member, role } => {
            let Some(who) = peer(&member.peer_id) else { return false };
            let role_ok = matches!(role, Role::Admin | Role::Member);
            if !state.is_admin(&author) || !role_ok || state.members.contains_key(&who) || state.members.len() >= MAX_MEMBERS {
                return false;
            }
            if member.verify().is_err() {
                return false;
            }
            state.departed.remove(&who);
            state.members.insert(who, MemberState { role: *role, card: member.clone() });
            true
        }
        OpKind::Remove { peer: target } => {
            let Some(who) = peer(target) else { return false };
            let removable = matches!(state.role(&who), Some(Role::Admin | Role::Member));
            if !state.is_admin(&author) || !removable {
                return false;
            }
            state.members.remove(&who);
            state.departed.insert(who);
            true
        }
        OpKind::SetRole { peer: target, role } => {
            let Some(who) = peer(target) else { return false };
            let target_ok = matches!(state.role(&who), Some(Role::Admin | Role::Member));
            let role_ok = matches!(role, Role::Admin | Role::Member);
            if !state.is_admin(&author) || !target_ok || !role_ok {
                return false;
            }
            if let Some(m) = state.members.get_mut(&who) {
                m.role = *role;
            }
            true
        }
        OpKind::Rename { name } => {
            if !state.is_admin(&author) || !valid_name(name) {
                return false;
            }
            state.name = name.clone();
            true
        }
        OpKind::Leave => {
            let Some(left) = state.members.remove(&author) else { return false };
            state.departed.insert(author);
            if left.role == Role::Owner {
                // Deterministic succession: the smallest admin, else the smallest member.
                let heir = state
                    .members
                    .iter()
                    .find(|(_, m)| m.role == Role::Admin)
                    .or_else(|| state.members.iter().next())
                    .map(|(p, _)| *p);
                if let Some(heir) = heir.and_then(|p| state.members.get_mut(&p)) {
                    heir.role = Role::Owner;
                }
            }
            true
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn people(n: usize) -> Vec<Identity> {
        (0..n).map(|i| Identity::from_secrets([i as u8 + 1; 32], [i as u8 + 101; 32])).collect()
    }

    fn card(i: &Identity) -> MemberCard {
        MemberCard::of(&i.public())
    }

    const G: GroupId = GroupId([9; 16]);

    fn create(owner: &Identity) -> SignedOp {
        SignedOp::sign(owner, G, 1, 0, OpKind::Create { name: "club".into(), owner: card(owner), relays: Vec::new() }).unwrap()
    }

    #[test]
    fn admins_change_membership_members_cannot() {
        let p = people(4);
        let mut m = Membership::new(create(&p[0])).unwrap();
        let add = |by: &Identity, who: &Identity, role, epoch| {
            SignedOp::sign(by, G, epoch, 0, OpKind::Add { member: card(who), role }).unwrap()
        };
        assert!(m.insert(add(&p[0], &p[1], Role::Admin, 2)).unwrap());
        assert!(m.insert(add(&p[1], &p[2], Role::Member, 3)).unwrap());
        // A plain member's add is kept but has no effect.
        m.insert(add(&p[2], &p[3], Role::Member, 4)).unwrap();
        assert_eq!(m.state().members.len(), 3);
        assert_eq!(m.state().role(&p[0].peer_id()), Some(Role::Owner));
        assert_eq!(m.state().epoch, 3);
        // Nobody removes the owner.
        let remove_owner = SignedOp::sign(&p[1], G, 4, 0, OpKind::Remove { peer: p[0].peer_id().to_bytes() }).unwrap();
        m.insert(remove_owner).unwrap();
        assert!(m.state().members.contains_key(&p[0].peer_id()));
        // Duplicates are not new.
        assert!(!m.insert(add(&p[0], &p[1], Role::Admin, 2)).unwrap());
    }

    #[test]
    fn forged_and_foreign_operations_are_refused() {
        let p = people(3);
        let mut m = Membership::new(create(&p[0])).unwrap();
        let mut op = SignedOp::sign(&p[0], G, 2, 0, OpKind::Rename { name: "x".into() }).unwrap();
        op.op.kind = OpKind::Rename { name: "hijacked".into() };
        assert_eq!(m.insert(op.clone()), Err(GroupError::BadSignature));
        let bytes = SignedOp::sign(&p[0], G, 2, 0, OpKind::Leave).unwrap().encode().unwrap();
        assert!(SignedOp::decode(&bytes).is_ok());
        assert!(SignedOp::decode(&bytes[..bytes.len() - 3]).is_err());
        let other = SignedOp::sign(&p[0], GroupId([1; 16]), 2, 0, OpKind::Leave).unwrap();
        assert_eq!(m.insert(other), Err(GroupError::WrongGroup));
    }

    #[test]
    fn owner_leaving_passes_ownership_deterministically() {
        let p = people(3);
        let mut m = Membership::new(create(&p[0])).unwrap();
        for (i, who) in p[1..].iter().enumerate() {
            let op = SignedOp::sign(&p[0], G, 2 + i as u64, 0, OpKind::Add { member: card(who), role: Role::Member }).unwrap();
            m.insert(op).unwrap();
        }
        m.insert(SignedOp::sign(&p[0], G, 4, 0, OpKind::Leave).unwrap()).unwrap();
        let owners: Vec<_> = m.state().members.iter().filter(|(_, s)| s.role == Role::Owner).collect();
        assert_eq!(owners.len(), 1);
        assert_eq!(*owners[0].0, *m.state().members.keys().next().unwrap());
        assert!(m.state().departed.contains(&p[0].peer_id()));
    }

    proptest! {
        /// Concurrent operations by two admins, delivered in any order to any member,
        /// fold to the same state.
        #[test]
        fn any_delivery_order_converges(order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle()) {
            let p = people(5);
            let create = create(&p[0]);
            let mut base = Membership::new(create.clone()).unwrap();
            let setup = [
                SignedOp::sign(&p[0], G, 2, 0, OpKind::Add { member: card(&p[1]), role: Role::Admin }).unwrap(),
                SignedOp::sign(&p[0], G, 3, 0, OpKind::Add { member: card(&p[2]), role: Role::Admin }).unwrap(),
            ];
            for op in &setup {
                base.insert(op.clone()).unwrap();
            }
            // Both admins act at epoch 4 without seeing each other.
            let concurrent = [
                SignedOp::sign(&p[1], G, 4, 0, OpKind::Add { member: card(&p[3]), role: Role::Member }).unwrap(),
                SignedOp::sign(&p[2], G, 4, 0, OpKind::Remove { peer: p[1].peer_id().to_bytes() }).unwrap(),
                SignedOp::sign(&p[1], G, 4, 0, OpKind::Remove { peer: p[2].peer_id().to_bytes() }).unwrap(),
                SignedOp::sign(&p[2], G, 4, 0, OpKind::Add { member: card(&p[4]), role: Role::Member }).unwrap(),
            ];
            let all: Vec<SignedOp> = setup.iter().chain(concurrent.iter()).cloned().collect();
            let mut reference = Membership::new(create.clone()).unwrap();
            for op in &all {
                reference.insert(op.clone()).unwrap();
            }
            let mut shuffled = Membership::new(create).unwrap();
            for i in order {
                shuffled.insert(all[i].clone()).unwrap();
            }
            prop_assert_eq!(shuffled.state(), reference.state());
        }
    }
}
