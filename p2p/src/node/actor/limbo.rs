//! Groups we do not know yet: the operations of a group that might add us, held until
//! it does, or until newer arrivals push them out ([`MAX_LIMBO_BYTES`] in all, the
//! group that arrived first goes first).
//!
//! A group's operations are kept as they came until its `Create` arrives, then as a
//! built [`Membership`] that each later operation is inserted into, as for a group we
//! are in. So an arrival costs the checks of its own operations; folding everything
//! held again on every arrival let a stranger make each of its messages cost more than
//! the last (quadratic in what it had sent).

use std::collections::{HashMap, VecDeque};

use kith_storage::GroupId;
use libp2p::PeerId;

use super::groups::{MAX_LIMBO_BYTES, MAX_WAITING_OPS};
use crate::group::membership::{self, Membership, OpKind, SignedOp};

/// What a group held in limbo is, so far.
enum Parts {
    /// No `Create` yet (or none that could start a history): the operations as they came.
    Loose(Vec<SignedOp>),
    /// Built from its `Create`, with the operations whose parents are still missing.
    Built { membership: Box<Membership>, waiting: Vec<SignedOp> },
}

/// One group held, with the encoded size of everything that arrived for it.
struct Held {
    parts: Parts,
    bytes: usize,
}

/// What became of a group after an arrival ([`Limbo::arrive`]).
pub(super) enum Arrival {
    /// Still held: no `Create` yet, the group does not have us in it, or the last part
    /// came from someone not in it.
    Held {
        /// Whether parts are missing: the `Create`, or parents some operations wait
        /// for (worth asking the sender for them).
        incomplete: bool,
        /// For a group that has us but came from someone not in it: the member who
        /// added us (worth asking for the group, if a contact).
        adder: Option<PeerId>,
    },
    /// The group has us in it now: out of limbo, for the caller to take or offer.
    HasUs {
        /// Its history.
        membership: Box<Membership>,
        /// Operations still waiting for their parents.
        waiting: Vec<SignedOp>,
    },
}

/// The groups held (see the module docs).
pub(super) struct Limbo {
    groups: HashMap<GroupId, Held>,
    /// The ids of the groups held, by first arrival, oldest first.
    order: VecDeque<GroupId>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Limbo {
    fn default() -> Limbo {
        Limbo::with_max_bytes(MAX_LIMBO_BYTES)
    }
}

impl Limbo {
    /// An empty limbo holding at most `max_bytes` of encoded operations.
    pub(super) fn with_max_bytes(max_bytes: usize) -> Limbo {
        Limbo { groups: HashMap::new(), order: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// Bytes of operations held.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `group` is held.
    pub(super) fn holds(&self, group: &GroupId) -> bool {
        self.groups.contains_key(group)
    }

    /// Operations of `group` arrived from `sender`: add them to what is held and say
    /// whether the group has `me` in it now. A group that has us leaves limbo only when
    /// a member of it sent the last part: from anyone else (a removed member replaying
    /// operations) it stays held for a member's next message.
    pub(super) fn arrive(&mut self, group: GroupId, ops: Vec<SignedOp>, me: &PeerId, sender: &PeerId) -> Arrival {
        let added: usize = ops.iter().map(encoded_len).sum();
        let (parts, bytes) = match self.groups.remove(&group) {
            Some(held) => {
                self.bytes -= held.bytes;
                (held.parts, held.bytes + added)
            }
            None => {
                self.order.push_back(group);
                (Parts::Loose(Vec::new()), added)
            }
        };
        let parts = match parts {
            Parts::Loose(mut loose) => {
                loose.extend(ops);
                build(loose)
            }
            Parts::Built { mut membership, mut waiting } => {
                waiting.extend(ops);
                let mut merged = membership.insert_many(waiting);
                merged.waiting.truncate(MAX_WAITING_OPS);
                Parts::Built { membership, waiting: merged.waiting }
            }
        };
        match parts {
            Parts::Built { membership, waiting }
                if membership.state().members.contains_key(me) && membership.state().members.contains_key(sender) =>
            {
                self.order.retain(|g| *g != group);
                Arrival::HasUs { membership, waiting }
            }
            parts => {
                let incomplete = match &parts {
                    Parts::Loose(_) => true,
                    Parts::Built { waiting, .. } => !waiting.is_empty(),
                };
                // Has us, but came from outside: the member who added us can confirm.
                let adder = match &parts {
                    Parts::Built { membership, .. } => membership.state().members.get(me).map(|m| m.added_by),
                    Parts::Loose(_) => None,
                };
                self.bytes += bytes;
                self.groups.insert(group, Held { parts, bytes });
                self.evict();
                let held = self.holds(&group);
                Arrival::Held { incomplete: incomplete && held, adder: adder.filter(|_| held) }
            }
        }
    }

    /// Drops the groups that arrived first until what is held fits.
    fn evict(&mut self) {
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(held) = self.groups.remove(&oldest) {
                self.bytes -= held.bytes;
            }
        }
    }
}

/// Loose operations with a `Create` among them become a built history; without one
/// (or with one that cannot start a history) they stay loose.
fn build(loose: Vec<SignedOp>) -> Parts {
    let (creates, rest): (Vec<SignedOp>, Vec<SignedOp>) =
        loose.into_iter().partition(|o| matches!(o.op.kind, OpKind::Create { .. }));
    let Some(create) = creates.into_iter().next() else { return Parts::Loose(rest) };
    match Membership::new(create) {
        Ok(mut membership) => {
            let mut merged = membership.insert_many(rest);
            merged.waiting.truncate(MAX_WAITING_OPS);
            Parts::Built { membership: Box::new(membership), waiting: merged.waiting }
        }
        // A `Create` that cannot start a history never will: drop it rather than retry
        // (and copy everything held) on every later arrival.
        Err(_) => Parts::Loose(rest),
    }
}

fn encoded_len(op: &SignedOp) -> usize {
    op.encode().map_or(membership::MAX_OP_LEN, |b| b.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::membership::MemberCard;
    use crate::identity::Identity;
    use kith_storage::Role;

    /// A group by `owner`: its `Create` and `renames` renames on top, in order.
    fn history(owner: &Identity, renames: usize) -> (GroupId, Membership, Vec<SignedOp>) {
        let (group, create) = SignedOp::create(owner, "g", Vec::new(), 1).unwrap();
        let mut membership = Membership::new(create.clone()).unwrap();
        let mut ops = vec![create];
        for n in 0..renames {
            let op = membership.sign(owner, 2, OpKind::Rename { name: format!("g{n}") }).unwrap();
            membership.insert(op.clone()).unwrap();
            ops.push(op);
        }
        (group, membership, ops)
    }

    fn add(membership: &mut Membership, owner: &Identity, who: &Identity) -> SignedOp {
        let member = MemberCard::of(&who.public());
        let op = membership.sign(owner, 3, OpKind::Add { member, role: Role::Member }).unwrap();
        membership.insert(op.clone()).unwrap();
        op
    }

    #[test]
    fn a_group_that_has_us_leaves_limbo_only_through_one_of_its_members() {
        let (owner, me, outsider) = (Identity::generate(), Identity::generate(), Identity::generate());
        let (group, mut membership, mut ops) = history(&owner, 1);
        ops.push(add(&mut membership, &owner, &me));
        let mut limbo = Limbo::default();
        let from_outsider = limbo.arrive(group, ops, &me.peer_id(), &outsider.peer_id());
        assert!(
            matches!(from_outsider, Arrival::Held { incomplete: false, adder: Some(a) } if a == owner.peer_id()),
            "kept, not taken nor dropped, and the member who added us named"
        );
        assert!(limbo.holds(&group));
        // The owner's next message (nothing new in it) brings it out.
        match limbo.arrive(group, Vec::new(), &me.peer_id(), &owner.peer_id()) {
            Arrival::HasUs { membership, .. } => assert!(membership.state().members.contains_key(&me.peer_id())),
            Arrival::Held { .. } => panic!("a member sent it"),
        }
        assert!(!limbo.holds(&group));
    }

    #[test]
    fn parts_in_any_order_become_a_group_once_it_has_us() {
        let (owner, me) = (Identity::generate(), Identity::generate());
        let (group, mut membership, mut ops) = history(&owner, 3);
        ops.push(add(&mut membership, &owner, &me));
        let mut limbo = Limbo::default();
        // The addition first (its parents missing, and no Create yet), then the rest.
        let last = ops.pop().unwrap();
        assert!(matches!(limbo.arrive(group, vec![last], &me.peer_id(), &owner.peer_id()), Arrival::Held { .. }));
        let create = ops.remove(0);
        assert!(matches!(limbo.arrive(group, ops, &me.peer_id(), &owner.peer_id()), Arrival::Held { .. }));
        assert!(limbo.holds(&group));
        match limbo.arrive(group, vec![create], &me.peer_id(), &owner.peer_id()) {
            Arrival::HasUs { membership, waiting } => {
                assert!(waiting.is_empty());
                assert_eq!(membership.len(), 5);
                assert_eq!(membership.state().name, "g2");
            }
            Arrival::Held { .. } => panic!("the group has us"),
        }
        assert!(!limbo.holds(&group));
        assert_eq!(limbo.bytes(), 0);
    }

    #[test]
    fn a_built_group_takes_later_operations_one_by_one() {
        let (owner, me) = (Identity::generate(), Identity::generate());
        let (group, mut membership, ops) = history(&owner, 0);
        let mut limbo = Limbo::default();
        assert!(matches!(limbo.arrive(group, ops, &me.peer_id(), &owner.peer_id()), Arrival::Held { incomplete: false, .. }));
        for n in 0..20 {
            let op = membership.sign(&owner, 2, OpKind::Rename { name: format!("r{n}") }).unwrap();
            membership.insert(op.clone()).unwrap();
            assert!(matches!(limbo.arrive(group, vec![op], &me.peer_id(), &owner.peer_id()), Arrival::Held { incomplete: false, .. }));
        }
        let op = add(&mut membership, &owner, &me);
        match limbo.arrive(group, vec![op], &me.peer_id(), &owner.peer_id()) {
            Arrival::HasUs { membership: held, .. } => assert_eq!(held.state(), membership.state()),
            Arrival::Held { .. } => panic!("the group has us"),
        }
    }

    #[test]
    fn what_does_not_fit_pushes_out_the_group_that_came_first() {
        let me = Identity::generate();
        let (first, _, first_ops) = history(&Identity::generate(), 2);
        let (second, _, second_ops) = history(&Identity::generate(), 2);
        let one_group: usize = first_ops.iter().map(encoded_len).sum();
        let mut limbo = Limbo::with_max_bytes(one_group + one_group / 2);
        limbo.arrive(first, first_ops, &me.peer_id(), &me.peer_id());
        limbo.arrive(second, second_ops, &me.peer_id(), &me.peer_id());
        assert!(!limbo.holds(&first), "the first group made room");
        assert!(limbo.holds(&second));
        assert!(limbo.bytes() <= one_group + one_group / 2);
    }
}
