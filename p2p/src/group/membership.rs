//! Group membership: a causal history of signed operations that every member folds
//! to the same state.
//!
//! A group is not a mutable record but the set of operations its members signed.
//! The first is its `Create`, and the group's id is a hash of that `Create`
//! ([`group_id_of`]), so no other `Create` can ever belong to the group. Every later
//! operation names the operations it builds on (its *parents*: the heads of the
//! history its author had seen), so the operations form a DAG rooted at the `Create`.
//!
//! **Rights come from the causal past.** An operation is accepted only if its author
//! had the right to make it in the state its parents reached (its *causal state*,
//! the fold of its ancestors), never by a number the author chose. The causal state
//! of an operation depends on nothing but its ancestors, so every member accepts or
//! refuses it alike, whatever order operations arrive in. An operation whose author
//! had no right is refused and never stored.
//!
//! **Revocations win over what they did not see.** Removing a member, demoting an
//! admin and leaving are *revocations*. An operation by the revoked member that is
//! concurrent with its revocation (neither an ancestor nor a descendant of it) has no
//! effect — this is what stops a removed admin from back-dating operations by naming
//! old parents. Revocations are considered in order of their author's seniority, so
//! a senior admin's revocation of a junior one is settled before the junior's own
//! revocations are looked at.
//!
//! **Roles and seniority.** The owner may do everything and cannot be removed. Admins
//! add members and admins, remove and demote members and *junior* admins (appointed
//! after them), promote members, and rename. Members may only leave. Seniority is the
//! position in the history of the operation that gave someone their current role. If
//! the owner leaves, the most senior admin (else the most senior member) becomes owner.
//!
//! **The fold.** Operations are ordered by (height, id) — height is the longest path
//! from the `Create`, so parents come before children — and the effective ones are
//! applied in that order. Two members holding the same operations compute the same
//! state, whatever order the operations arrived in.
//!
//! Bounds: at most [`MAX_OPS`] operations per group, [`MAX_PARENTS`] parents per
//! operation, and [`MAX_MEMBER_OPS`] operations by an author who is not an admin in
//! the operation's causal state (a member can only leave, so a member cannot fill the
//! history).


use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use kith_storage::{GroupId, Role};
use libp2p::PeerId;

use super::state::{Revokes, apply, permitted, revocation, valid_name};
pub use super::op::{MAX_GROUP_RELAYS, MAX_OP_LEN, MAX_PARENTS, MemberCard, OP_CONTEXT, Op, OpId, OpKind, SignedOp, group_id_of};
pub use super::state::{GroupState, MAX_MEMBERS, MAX_NAME_CHARS, MemberState, Rank};
use super::{GroupError, GroupSecret};
use crate::identity::Identity;

/// Most operations one group's history may hold: room for every member of a full
/// group to be added, re-added, promoted and demoted several times.
pub const MAX_OPS: usize = 8 * MAX_MEMBERS;
/// Most operations by one author who is not an admin in the operation's causal state.
/// A member can only leave; concurrent forks of a leave add nothing, so a handful
/// covers being added, leaving and being added again.
pub const MAX_MEMBER_OPS: usize = 4;
/// Causal states kept for recent operations, so that a chain of operations (the
/// usual case: one parent each) is checked without folding the history again.
const STATE_CACHE: usize = 16;
/// Cached states tried as the starting point of a fold (newest first).
const CUT_CANDIDATES: usize = 4;
/// Most operations folded on top of a cached state; past it, a full fold is cheaper
/// than the search.
const MAX_CUT_SPAN: usize = 1024;

/// One accepted operation and what its causal state said about it.
#[derive(Debug, Clone)]
struct Node {
    op: SignedOp,
    author: PeerId,
    height: u32,
    parents: Vec<OpId>,
    children: Vec<OpId>,
    /// The author's seniority in the operation's causal state.
    author_rank: Rank,
    revokes: Option<Revokes>,
}

impl Node {
    fn key(&self, id: OpId) -> (u32, OpId) {
        (self.height, id)
    }
}

/// Which way [`Membership::reach`] walks the history.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// What [`Membership::insert_many`] did with a batch.
#[derive(Debug, Default)]
pub struct Merged {
    /// Operations that were new and are now part of the history, in the order applied.
    pub fresh: Vec<SignedOp>,
    /// Operations whose parents are not known yet: keep them and ask for the rest.
    pub waiting: Vec<SignedOp>,
    /// Operations refused for good (no right, caps, malformed), with the reason.
    pub refused: Vec<GroupError>,
}

/// All operations of one group and the state they fold to.
#[derive(Debug, Clone)]
pub struct Membership {
    group: GroupId,
    secret: GroupSecret,
    nodes: HashMap<OpId, Node>,
    /// Every operation in fold order: (height, id).
    order: BTreeSet<(u32, OpId)>,
    heads: BTreeSet<OpId>,
    /// Operations per author that were made without admin rights.
    member_ops: HashMap<PeerId, usize>,
    /// The state right after recent operations, in their own causal view.
    after: VecDeque<(OpId, GroupState)>,
    state: GroupState,
}

impl Membership {
    /// A group from its `Create` operation (already verified by [`SignedOp::decode`] or
    /// made by [`SignedOp::create`]).
    pub fn new(create: SignedOp) -> Result<Membership, GroupError> {
        let OpKind::Create { name, owner, relays, secret } = &create.op.kind else {
            return Err(GroupError::NoCreate);
        };
        create.check_shape()?;
        create.check_signature()?;
        let author = create.author()?;
        if PeerId::from_bytes(&owner.peer_id).ok() != Some(author) || !valid_name(name) {
            return Err(GroupError::Malformed("a Create names its author as owner and a valid name".into()));
        }
        owner.verify()?;
        let id = create.id()?;
        let group = group_id_of(&create)?;
        let mut state = GroupState { name: name.clone(), relays: relays.clone(), version: 1, ..GroupState::default() };
        let since = (0, id);
        state.members.insert(author, MemberState { role: Role::Owner, card: owner.clone(), added_by: author, since });
        let node = Node {
            author_rank: Rank { tier: 0, height: 0, op: id },
            op: create.clone(),
            author,
            height: 0,
            parents: Vec::new(),
            children: Vec::new(),
            revokes: None,
        };
        Ok(Membership {
            group,
            secret: secret.clone(),
            nodes: HashMap::from([(id, node)]),
            order: BTreeSet::from([(0, id)]),
            heads: BTreeSet::from([id]),
            member_ops: HashMap::new(),
            after: VecDeque::from([(id, state.clone())]),
            state,
        })
    }

    /// A group from stored or received operations: the `Create` among them, then the
    /// rest (see [`Membership::insert_many`]).
    pub fn from_ops(ops: Vec<SignedOp>) -> Result<(Membership, Merged), GroupError> {
        let (creates, rest): (Vec<SignedOp>, Vec<SignedOp>) =
            ops.into_iter().partition(|o| matches!(o.op.kind, OpKind::Create { .. }));
        let create = creates.into_iter().next().ok_or(GroupError::NoCreate)?;
        let mut membership = Membership::new(create)?;
        let merged = membership.insert_many(rest);
        Ok((membership, merged))
    }

    /// The group id.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The group's secret (from its `Create`).
    pub fn secret(&self) -> &GroupSecret {
        &self.secret
    }

    /// The current state.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// The operations nothing builds on yet, newest first, at most [`MAX_PARENTS`]:
    /// what a new operation names as parents. (More heads than that only after a
    /// storm of concurrent changes; the next operations merge the rest.)
    pub fn heads(&self) -> Vec<OpId> {
        let mut heads: Vec<(u32, OpId)> =
            self.heads.iter().filter_map(|id| self.nodes.get(id).map(|n| n.key(*id))).collect();
        heads.sort_unstable_by(|a, b| b.cmp(a));
        heads.into_iter().take(MAX_PARENTS).map(|(_, id)| id).collect()
    }

    /// The operations that are neither ancestors nor descendants of `id` (made
    /// without knowledge of it, or it without knowledge of them), parents first.
    pub fn concurrent_with(&self, id: &OpId) -> Vec<&SignedOp> {
        let all: HashSet<OpId> = self.nodes.keys().copied().collect();
        let mut related = self.ancestors_of(&[*id], true);
        related.extend(self.descendants_of(*id, &all));
        self.order
            .iter()
            .filter(|(_, other)| !related.contains(other))
            .filter_map(|(_, other)| self.nodes.get(other))
            .map(|n| &n.op)
            .collect()
    }

    /// Whether the history holds this operation.
    pub fn contains(&self, id: &OpId) -> bool {
        self.nodes.contains_key(id)
    }

    /// How many operations the history holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the history is just the `Create` (never empty).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every operation, parents before children (what a new member is sent).
    pub fn ops(&self) -> impl Iterator<Item = &SignedOp> {
        self.order.iter().filter_map(|(_, id)| self.nodes.get(id)).map(|n| &n.op)
    }

    /// The position of an operation in fold order (its height), if known.
    pub fn height(&self, id: &OpId) -> Option<u32> {
        self.nodes.get(id).map(|n| n.height)
    }

    /// Operations a member whose heads are `theirs` lacks: everything that is not
    /// an ancestor of (or one of) the heads we know, parents before children. Heads
    /// we do not know are ignored (they are news for us, not for them).
    pub fn missing_from(&self, theirs: &[OpId]) -> Vec<&SignedOp> {
        let known: Vec<OpId> = theirs.iter().filter(|h| self.nodes.contains_key(h)).copied().collect();
        let have = self.ancestors_of(&known, true);
        self.order
            .iter()
            .filter(|(_, id)| !have.contains(id))
            .filter_map(|(_, id)| self.nodes.get(id))
            .map(|n| &n.op)
            .collect()
    }

    /// Sign `kind` as `identity` on top of the current heads. The operation is not
    /// inserted: see [`Membership::insert`].
    pub fn sign(&self, identity: &Identity, at_ms: u64, kind: OpKind) -> Result<SignedOp, GroupError> {
        self.sign_on(identity, &self.heads(), at_ms, kind)
    }

    /// Sign `kind` as `identity` on chosen `parents` (tools and tests: an honest
    /// author always builds on its heads, see [`Membership::sign`]).
    pub fn sign_on(&self, identity: &Identity, parents: &[OpId], at_ms: u64, kind: OpKind) -> Result<SignedOp, GroupError> {
        if matches!(kind, OpKind::Create { .. }) {
            return Err(GroupError::SecondCreate);
        }
        SignedOp::sign_raw(identity, Some(self.group), parents.to_vec(), at_ms, kind)
    }

    /// Add one operation; returns whether it was new. Refused (and not kept) if its
    /// parents are unknown ([`GroupError::MissingParents`]), if its author had no right
    /// to it in its causal state ([`GroupError::NoRight`]) or past the caps.
    pub fn insert(&mut self, op: SignedOp) -> Result<bool, GroupError> {
        let fresh = self.admit(op)?;
        if fresh.is_some() {
            self.refold();
        }
        Ok(fresh.is_some())
    }

    /// Add a batch in any order: each operation is admitted once its parents are in.
    /// The state is folded once at the end.
    pub fn insert_many(&mut self, ops: Vec<SignedOp>) -> Merged {
        let mut merged = Merged::default();
        let mut queue = ops;
        loop {
            let mut progress = false;
            let mut later = Vec::new();
            for op in queue {
                match self.admit(op.clone()) {
                    Ok(Some(_)) => {
                        merged.fresh.push(op);
                        progress = true;
                    }
                    Ok(None) => {}
                    Err(GroupError::MissingParents(_)) => later.push(op),
                    Err(e) => merged.refused.push(e),
                }
            }
            queue = later;
            if !progress || queue.is_empty() {
                break;
            }
        }
        merged.waiting = queue;
        if !merged.fresh.is_empty() {
            self.refold();
        }
        merged
    }

    /// Check and keep one operation without refolding; `Some(id)` if it was new.
    fn admit(&mut self, op: SignedOp) -> Result<Option<OpId>, GroupError> {
        op.check_shape()?;
        let id = op.id()?;
        if self.nodes.contains_key(&id) {
            return Ok(None);
        }
        if matches!(op.op.kind, OpKind::Create { .. }) {
            return Err(GroupError::SecondCreate);
        }
        if op.op.group != Some(self.group) {
            return Err(GroupError::WrongGroup);
        }
        // Parents first: an operation that waits for them is checked (signature
        // included) once, when they are in, not on every attempt before.
        let missing: Vec<OpId> = op.op.parents.iter().filter(|p| !self.nodes.contains_key(p)).copied().collect();
        if !missing.is_empty() {
            return Err(GroupError::MissingParents(missing));
        }
        op.check_signature()?;
        if self.nodes.len() >= MAX_OPS {
            return Err(GroupError::HistoryFull);
        }
        let author = op.author()?;
        let causal = self.causal_state(&op.op.parents);
        permitted(&causal, &author, &op.op.kind).map_err(GroupError::NoRight)?;
        let admin = causal.is_admin(&author);
        if !admin && self.member_ops.get(&author).copied().unwrap_or(0) >= MAX_MEMBER_OPS {
            return Err(GroupError::NoRight(format!("{author} made {MAX_MEMBER_OPS} changes without admin rights")));
        }
        let height = op.op.parents.iter().filter_map(|p| self.nodes.get(p)).map(|n| n.height).max().unwrap_or(0) + 1;
        let revokes = revocation(&causal, &author, &op.op.kind);
        let author_rank = causal.rank(&author).unwrap_or(Rank { tier: u8::MAX, height, op: id });
        // The causal state counts the operation's ancestors; with it, one more.
        let mut after = causal;
        apply(&mut after, author, (height, id), &op.op.kind);
        after.version += 1;
        for parent in &op.op.parents {
            if let Some(p) = self.nodes.get_mut(parent) {
                p.children.push(id);
            }
            self.heads.remove(parent);
        }
        self.heads.insert(id);
        self.order.insert((height, id));
        if !admin {
            *self.member_ops.entry(author).or_default() += 1;
        }
        let parents = op.op.parents.clone();
        self.nodes.insert(id, Node { op, author, height, parents, children: Vec::new(), author_rank, revokes });
        self.after.push_back((id, after));
        if self.after.len() > STATE_CACHE {
            self.after.pop_front();
        }
        Ok(Some(id))
    }

    /// The state the operations `parents` and their ancestors fold to.
    fn causal_state(&self, parents: &[OpId]) -> GroupState {
        if let [one] = parents
            && let Some((_, state)) = self.after.iter().find(|(id, _)| id == one)
        {
            return state.clone();
        }
        if let Some(state) = self.fold_from_cache(parents) {
            return state;
        }
        let set = self.ancestors_of(parents, true);
        self.fold(&set)
    }

    /// Recompute the current state from the whole history.
    fn refold(&mut self) {
        let heads: Vec<OpId> = self.heads.iter().copied().collect();
        if let [head] = heads.as_slice()
            && let Some((_, state)) = self.after.iter().find(|(id, _)| id == head)
        {
            // One head: everything is its ancestor, and its own view is the state.
            self.state = state.clone();
            return;
        }
        if let Some(state) = self.fold_from_cache(&heads) {
            self.state = state;
            return;
        }
        let all: HashSet<OpId> = self.nodes.keys().copied().collect();
        self.state = self.fold(&all);
    }

    /// The fold of `from` and its ancestors, continued from the cached state of a
    /// recent operation `c` that every path from `from` down to the `Create` passes
    /// through (the last merge, typically). Then the ancestors are `c`'s closure plus
    /// descendants of `c`: all of `c`'s closure comes first in fold order, and no
    /// operation of one part is concurrent with one of the other, so no revocation in
    /// one voids anything in the other. None if no cached operation is such a cut.
    fn fold_from_cache(&self, from: &[OpId]) -> Option<GroupState> {
        // A cut lies below every operation of `from` (heads are never ancestors of
        // each other, so none of them is a cut for the others).
        let lowest = from.iter().filter_map(|id| self.nodes.get(id)).map(|n| n.height).min()?;
        let below = self.after.iter().rev().filter_map(|(cut, state)| {
            let height = self.nodes.get(cut)?.height;
            (height < lowest).then_some((cut, state, height))
        });
        for (cut, cut_state, cut_height) in below.take(CUT_CANDIDATES) {
            let mut above = HashSet::new();
            let mut stack = from.to_vec();
            let mut is_cut = true;
            while let Some(id) = stack.pop() {
                if id == *cut || above.contains(&id) {
                    continue;
                }
                let node = self.nodes.get(&id)?;
                // A path that reaches this low without meeting `cut` goes around it.
                if node.height <= cut_height || above.len() >= MAX_CUT_SPAN {
                    is_cut = false;
                    break;
                }
                above.insert(id);
                stack.extend(node.parents.iter().copied());
            }
            if !is_cut {
                continue;
            }
            let mut state = cut_state.clone();
            self.apply_set(&mut state, &above);
            state.version += above.len() as u64;
            return Some(state);
        }
        None
    }

    /// The ancestors of `from` (and, with `inclusive`, `from` themselves).
    fn ancestors_of(&self, from: &[OpId], inclusive: bool) -> HashSet<OpId> {
        let start = if inclusive {
            from.to_vec()
        } else {
            from.iter().filter_map(|id| self.nodes.get(id)).flat_map(|n| n.parents.iter().copied()).collect()
        };
        self.reach(start, Direction::Up, None)
    }

    /// `from` and its ancestors within `within` (a set that holds every operation on a
    /// path between two of its members).
    fn ancestors_within(&self, from: OpId, within: &HashSet<OpId>) -> HashSet<OpId> {
        self.reach(vec![from], Direction::Up, Some(within))
    }

    /// The descendants of `from` within `within` (not `from` itself).
    fn descendants_of(&self, from: OpId, within: &HashSet<OpId>) -> HashSet<OpId> {
        let start = self.nodes.get(&from).map(|n| n.children.clone()).unwrap_or_default();
        self.reach(start, Direction::Down, Some(within))
    }

    /// Everything reachable from `start` (included) along parents (`Up`) or children
    /// (`Down`), without leaving `within` if given.
    fn reach(&self, start: Vec<OpId>, direction: Direction, within: Option<&HashSet<OpId>>) -> HashSet<OpId> {
        let mut seen = HashSet::new();
        let mut stack = start;
        while let Some(id) = stack.pop() {
            if within.is_some_and(|w| !w.contains(&id)) || !seen.insert(id) {
                continue;
            }
            if let Some(node) = self.nodes.get(&id) {
                let next = match direction {
                    Direction::Up => &node.parents,
                    Direction::Down => &node.children,
                };
                stack.extend(next.iter().copied());
            }
        }
        seen
    }

    /// Fold an ancestor-closed set of operations: find the operations voided by a
    /// concurrent revocation, then apply the rest in (height, id) order.
    fn fold(&self, set: &HashSet<OpId>) -> GroupState {
        let mut state = GroupState::default();
        self.apply_set(&mut state, set);
        state.version = set.len() as u64;
        state
    }

    /// Apply the operations of `set` to `state` in fold order, leaving out those a
    /// revocation in `set` voids.
    fn apply_set(&self, state: &mut GroupState, set: &HashSet<OpId>) {
        let mut in_order: Vec<(u32, OpId)> =
            set.iter().filter_map(|id| self.nodes.get(id).map(|n| n.key(*id))).collect();
        in_order.sort_unstable();
        let void = self.voided(set);
        for (_, id) in &in_order {
            let Some(node) = self.nodes.get(id) else { continue };
            if void.contains(id) {
                continue;
            }
            if let OpKind::Create { name, owner, relays, .. } = &node.op.op.kind {
                state.name = name.clone();
                state.relays = relays.clone();
                let owner_state = MemberState { role: Role::Owner, card: owner.clone(), added_by: node.author, since: (0, *id) };
                state.members.insert(node.author, owner_state);
                continue;
            }
            apply(state, node.author, (node.height, *id), &node.op.op.kind);
        }
    }

    /// The operations in `set` that a revocation in `set` voids: those of the revoked
    /// member concurrent with its revocation. Revocations are settled most senior
    /// author first, and a voided revocation voids nothing.
    fn voided(&self, set: &HashSet<OpId>) -> HashSet<OpId> {
        let mut revocations: Vec<(Rank, u32, OpId, Revokes)> = set
            .iter()
            .filter_map(|id| {
                let n = self.nodes.get(id)?;
                Some((n.author_rank, n.height, *id, n.revokes?))
            })
            .collect();
        if revocations.is_empty() {
            return HashSet::new();
        }
        revocations.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        let mut by_author: HashMap<PeerId, Vec<OpId>> = HashMap::new();
        for id in set {
            if let Some(n) = self.nodes.get(id) {
                by_author.entry(n.author).or_default().push(*id);
            }
        }
        let mut void = HashSet::new();
        for (_, _, id, revokes) in revocations {
            if void.contains(&id) {
                continue;
            }
            let (target, keep_leave) = match revokes {
                Revokes::Membership(t) => (t, false),
                Revokes::Admin(t) => (t, true),
            };
            let Some(theirs) = by_author.get(&target) else { continue };
            let mut related = self.ancestors_within(id, set);
            related.extend(self.descendants_of(id, set));
            for op in theirs {
                if related.contains(op) {
                    continue;
                }
                let leaving = self.nodes.get(op).is_some_and(|n| matches!(n.op.op.kind, OpKind::Leave));
                if keep_leave && leaving {
                    continue;
                }
                void.insert(*op);
            }
        }
        void
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::group::test_support::{add, group, people, remove};

    /// Sign `kind` by `by` on the current heads of `m` and insert it.
    fn act(m: &mut Membership, by: &Identity, kind: OpKind) -> Result<SignedOp, GroupError> {
        let op = m.sign(by, 0, kind)?;
        m.insert(op.clone())?;
        Ok(op)
    }

    #[test]
    fn the_group_id_is_the_hash_of_its_create() {
        let p = people(2);
        let (id, create) = SignedOp::create(&p[0], "club", Vec::new(), 0).unwrap();
        let m = Membership::new(create.clone()).unwrap();
        assert_eq!(m.group(), id);
        assert_eq!(group_id_of(&create).unwrap(), id);
        // Another Create is another group, never this one.
        let (other, _) = SignedOp::create(&p[0], "club", Vec::new(), 0).unwrap();
        assert_ne!(other, id, "a fresh secret makes a fresh id");
    }

    #[test]
    fn admins_change_membership_members_cannot() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin)).unwrap();
        act(&mut m, &p[1], add(&p[2], Role::Member)).unwrap();
        // A plain member's add is refused and not kept.
        assert!(matches!(act(&mut m, &p[2], add(&p[3], Role::Member)), Err(GroupError::NoRight(_))));
        assert_eq!(m.state().members.len(), 3);
        assert_eq!(m.len(), 3);
        assert_eq!(m.state().role(&p[0].peer_id()), Some(Role::Owner));
        // Nobody removes the owner; a junior admin cannot remove a senior one.
        assert!(act(&mut m, &p[1], remove(&p[0])).is_err());
        act(&mut m, &p[0], add(&p[3], Role::Admin)).unwrap();
        assert!(matches!(act(&mut m, &p[3], remove(&p[1])), Err(GroupError::NoRight(_))));
        act(&mut m, &p[1], remove(&p[3])).unwrap();
        assert!(!m.state().members.contains_key(&p[3].peer_id()));
        // Duplicates are not new.
        let again = m.ops().nth(1).unwrap().clone();
        assert!(!m.insert(again).unwrap());
    }

    #[test]
    fn a_strangers_create_and_forged_operations_are_refused() {
        let p = people(3);
        let mut m = group(&p[0]);
        // A second Create, even one that claims this group's parents, is refused.
        let (_, theirs) = SignedOp::create(&p[2], "club", Vec::new(), 0).unwrap();
        assert_eq!(m.insert(theirs), Err(GroupError::SecondCreate));
        // A stranger's operation on our heads has no right.
        let takeover = m.sign(&p[2], 0, add(&p[1], Role::Admin)).unwrap();
        assert!(matches!(m.insert(takeover), Err(GroupError::NoRight(_))));
        // Tampering breaks the signature; another group's operation is foreign.
        let mut op = m.sign(&p[0], 0, OpKind::Rename { name: "x".into() }).unwrap();
        op.op.kind = OpKind::Rename { name: "hijacked".into() };
        assert_eq!(m.insert(op), Err(GroupError::BadSignature));
        let other = group(&p[0]);
        let foreign = other.sign(&p[0], 0, OpKind::Rename { name: "y".into() }).unwrap();
        assert_eq!(m.insert(foreign), Err(GroupError::WrongGroup));
        // Parents nobody has seen: held back, not guessed.
        let mut orphan = m.sign(&p[0], 0, OpKind::Rename { name: "z".into() }).unwrap();
        orphan.op.parents = vec![OpId([7; 32])];
        let orphan = SignedOp::sign_raw(&p[0], orphan.op.group, orphan.op.parents, 0, orphan.op.kind).unwrap();
        assert!(matches!(m.insert(orphan), Err(GroupError::MissingParents(_))));
        assert_eq!(m.state().name, "club");
        assert_eq!(m.state().members.len(), 1);
    }

    #[test]
    fn decode_refuses_bad_shapes() {
        let p = people(1);
        let m = group(&p[0]);
        let bytes = m.sign(&p[0], 0, OpKind::Leave).unwrap().encode().unwrap();
        assert!(SignedOp::decode(&bytes).is_ok());
        assert!(SignedOp::decode(&bytes[..bytes.len() - 3]).is_err());
        let parents = vec![OpId([1; 32]); 2];
        let twice = SignedOp::sign_raw(&p[0], Some(m.group()), parents, 0, OpKind::Leave).unwrap();
        assert!(matches!(SignedOp::decode(&twice.encode().unwrap()), Err(GroupError::Malformed(_))));
        let many: Vec<OpId> = (0..=MAX_PARENTS).map(|i| OpId([i as u8; 32])).collect();
        let too_many = SignedOp::sign_raw(&p[0], Some(m.group()), many, 0, OpKind::Leave).unwrap();
        assert!(matches!(SignedOp::decode(&too_many.encode().unwrap()), Err(GroupError::Malformed(_))));
        let at_limit: Vec<OpId> = (0..MAX_PARENTS).map(|i| OpId([i as u8; 32])).collect();
        let fits = SignedOp::sign_raw(&p[0], Some(m.group()), at_limit, 0, OpKind::Leave).unwrap();
        assert!(SignedOp::decode(&fits.encode().unwrap()).is_ok());
        let orphan_create = SignedOp::sign_raw(&p[0], Some(m.group()), Vec::new(), 0, OpKind::Leave).unwrap();
        assert!(SignedOp::decode(&orphan_create.encode().unwrap()).is_err());
    }

    #[test]
    fn a_removed_admin_cannot_back_date() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin)).unwrap();
        act(&mut m, &p[0], add(&p[2], Role::Member)).unwrap();
        // Bob keeps the heads from when he was admin; then Alice removes him.
        let old = m.clone();
        act(&mut m, &p[0], remove(&p[1])).unwrap();
        let state = m.state().clone();
        // Bob signs operations on the old heads: valid in their causal past...
        for kind in [add(&p[3], Role::Admin), remove(&p[2]), OpKind::Rename { name: "bob's now".into() }] {
            let back_dated = old.sign(&p[1], 0, kind).unwrap();
            assert!(m.insert(back_dated).unwrap(), "kept: it was within Bob's rights in its causal past");
        }
        // ...but void: concurrent with his removal.
        assert_eq!(m.state().members, state.members);
        assert_eq!(m.state().name, "club");
        // After the removal Bob has no right at all.
        assert!(matches!(act(&mut m, &p[1], add(&p[3], Role::Member)), Err(GroupError::NoRight(_))));
    }

    #[test]
    fn a_demoted_admin_may_still_leave() {
        let p = people(3);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin)).unwrap();
        act(&mut m, &p[0], add(&p[2], Role::Member)).unwrap();
        let before = m.clone();
        act(&mut m, &p[0], OpKind::SetRole { peer: p[1].peer_id().to_bytes(), role: Role::Member }).unwrap();
        // Concurrently Bob removed Carol and left: the removal is void, the leave stands.
        let removal = before.sign(&p[1], 0, remove(&p[2])).unwrap();
        m.insert(removal.clone()).unwrap();
        let mut branch = before.clone();
        branch.insert(removal).unwrap();
        m.insert(branch.sign(&p[1], 0, OpKind::Leave).unwrap()).unwrap();
        assert!(m.state().members.contains_key(&p[2].peer_id()));
        assert!(!m.state().members.contains_key(&p[1].peer_id()));
    }

    #[test]
    fn owner_leaving_passes_ownership_to_the_most_senior() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[3], Role::Member)).unwrap();
        act(&mut m, &p[0], add(&p[2], Role::Admin)).unwrap();
        act(&mut m, &p[0], add(&p[1], Role::Admin)).unwrap();
        act(&mut m, &p[0], OpKind::Leave).unwrap();
        let owners: Vec<_> = m.state().members.iter().filter(|(_, s)| s.role == Role::Owner).map(|(p, _)| *p).collect();
        assert_eq!(owners, vec![p[2].peer_id()], "Carol was made admin first");
        assert!(m.state().departed.contains(&p[0].peer_id()));
    }

    /// Found by the `group_op` fuzz target: the owner's leave, back-dated to the
    /// `Create`, voids its own promotion of an admin; that admin's addition of a
    /// member then has no right behind it either. Nobody is left without an owner:
    /// nobody is left.
    #[test]
    fn a_change_whose_right_was_voided_does_nothing() {
        let p = people(3);
        let base = group(&p[0]);
        let mut m = base.clone();
        let made_admin = act(&mut m, &p[0], add(&p[1], Role::Admin)).unwrap();
        let added = act(&mut m, &p[1], add(&p[2], Role::Member)).unwrap();
        let left = base.sign(&p[0], 0, OpKind::Leave).unwrap();
        let ops = [made_admin, added, left];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut m = base.clone();
            let merged = m.insert_many(order.iter().map(|&i| ops[i].clone()).collect());
            assert_eq!(merged.fresh.len(), 3, "{:?}", merged.refused);
            assert!(m.state().members.is_empty(), "order {order:?}: {:?}", m.state().members);
        }
    }

    /// A removed admin back-dates the promotion of an accomplice, who then adds a
    /// third key on top: the promotion is voided by the removal, and the accomplice's
    /// addition with it, in every delivery order.
    #[test]
    fn a_removed_admins_accomplice_gets_nobody_in() {
        let p = people(5);
        let (owner, rogue, accomplice, third, bystander) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
        let mut m = group(owner);
        act(&mut m, owner, add(rogue, Role::Admin)).unwrap();
        let before_removal = m.clone();
        let removed = act(&mut m, owner, remove(rogue)).unwrap();
        let honest = act(&mut m, owner, add(bystander, Role::Member)).unwrap();
        let mut forged = before_removal.clone();
        let promote = act(&mut forged, rogue, add(accomplice, Role::Admin)).unwrap();
        let smuggle = act(&mut forged, accomplice, add(third, Role::Admin)).unwrap();
        let ops = [removed, honest, promote, smuggle];
        for order in [[0, 1, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut m = before_removal.clone();
            m.insert_many(order.iter().map(|&i| ops[i].clone()).collect());
            let members: BTreeSet<_> = m.state().members.keys().copied().collect();
            assert_eq!(members, BTreeSet::from([owner.peer_id(), bystander.peer_id()]), "order {order:?}");
        }
    }

    #[test]
    fn members_cannot_fill_the_history() {
        let p = people(2);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member)).unwrap();
        let base = m.clone();
        // Forks of a leave on the same heads: each is new, until the cap.
        for i in 0..MAX_MEMBER_OPS {
            let leave = base.sign(&p[1], i as u64, OpKind::Leave).unwrap();
            assert!(m.insert(leave).unwrap());
        }
        let one_more = base.sign(&p[1], 99, OpKind::Leave).unwrap();
        assert!(matches!(m.insert(one_more), Err(GroupError::NoRight(_))));
    }

    #[test]
    fn missing_ops_are_what_the_other_side_lacks() {
        let p = people(3);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member)).unwrap();
        let theirs = m.heads();
        act(&mut m, &p[0], add(&p[2], Role::Member)).unwrap();
        act(&mut m, &p[0], OpKind::Rename { name: "new".into() }).unwrap();
        assert_eq!(m.missing_from(&theirs).len(), 2);
        assert_eq!(m.missing_from(&[]).len(), 4);
        assert!(m.missing_from(&m.heads()).is_empty());
        // Sent in the wrong order, a batch still lands whole.
        let mut all: Vec<SignedOp> = m.ops().cloned().collect();
        all.reverse();
        let (copy, merged) = Membership::from_ops(all).unwrap();
        assert!(merged.waiting.is_empty() && merged.refused.is_empty());
        assert_eq!(copy.state(), m.state());
    }

    /// Ops of a scenario: Alice owns; Bob and Carol are admins (Bob senior); Dave and
    /// Erin are members. Then, concurrently on the same heads: Bob adds Frank, Carol
    /// removes Dave, Bob removes Carol, Alice renames, Erin leaves, Carol demotes...
    /// (refused: Bob is senior) — Carol adds Gus instead.
    fn scenario() -> (Vec<SignedOp>, Vec<SignedOp>) {
        let p = people(8);
        let mut m = group(&p[0]);
        let mut setup = vec![m.ops().next().unwrap().clone()];
        for (who, role) in [(1, Role::Admin), (2, Role::Admin), (3, Role::Member), (4, Role::Member)] {
            setup.push(act(&mut m, &p[0], add(&p[who], role)).unwrap());
        }
        let concurrent = vec![
            m.sign(&p[1], 0, add(&p[5], Role::Member)).unwrap(),
            m.sign(&p[2], 0, remove(&p[3])).unwrap(),
            m.sign(&p[1], 0, remove(&p[2])).unwrap(),
            m.sign(&p[0], 0, OpKind::Rename { name: "renamed".into() }).unwrap(),
            m.sign(&p[4], 0, OpKind::Leave).unwrap(),
            m.sign(&p[2], 0, add(&p[6], Role::Member)).unwrap(),
        ];
        (setup, concurrent)
    }

    #[test]
    fn concurrent_changes_resolve_by_seniority() {
        let (setup, concurrent) = scenario();
        let p = people(8);
        let (m, merged) = Membership::from_ops(setup.into_iter().chain(concurrent).collect()).unwrap();
        assert!(merged.refused.is_empty(), "{:?}", merged.refused);
        let members: BTreeSet<PeerId> = m.state().members.keys().copied().collect();
        // Bob's removal of Carol voids Carol's concurrent removal of Dave and add of Gus.
        let want: BTreeSet<PeerId> = [0, 1, 3, 5].iter().map(|i| p[*i].peer_id()).collect();
        assert_eq!(members, want);
        assert_eq!(m.state().name, "renamed");
    }

    proptest! {
        /// Concurrent operations by several authors, delivered in any order to any
        /// member, fold to the same state; a late-joining member that receives the
        /// history in any order agrees too.
        #[test]
        fn any_delivery_order_converges(order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(), reverse_setup in any::<bool>()) {
            let (setup, concurrent) = scenario();
            let mut reference = Membership::new(setup[0].clone()).unwrap();
            let merged = reference.insert_many(setup[1..].iter().chain(concurrent.iter()).cloned().collect());
            prop_assert!(merged.waiting.is_empty());
            let mut history: Vec<SignedOp> = setup[1..].to_vec();
            if reverse_setup {
                history.reverse();
            }
            let mut shuffled = Membership::new(setup[0].clone()).unwrap();
            shuffled.insert_many(history);
            for i in order {
                shuffled.insert(concurrent[i].clone()).unwrap();
            }
            prop_assert_eq!(shuffled.state(), reference.state());
        }

        /// Random histories (random authors, kinds and parents, most of them refused)
        /// converge whatever the delivery order.
        #[test]
        fn random_histories_converge(seed in any::<u64>(), shuffle in any::<u64>()) {
            use rand::{Rng, SeedableRng, seq::SliceRandom};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let p = people(6);
            let mut m = group(&p[0]);
            let mut accepted = Vec::new();
            for _ in 0..40 {
                let by = &p[rng.gen_range(0..p.len())];
                let target = &p[rng.gen_range(0..p.len())];
                let kind = match rng.gen_range(0..5) {
                    0 => add(target, if rng.gen_bool(0.5) { Role::Admin } else { Role::Member }),
                    1 => remove(target),
                    2 => OpKind::SetRole { peer: target.peer_id().to_bytes(), role: if rng.gen_bool(0.5) { Role::Admin } else { Role::Member } },
                    3 => OpKind::Rename { name: format!("n{}", rng.gen_range(0..1000)) },
                    _ => OpKind::Leave,
                };
                // Build on a random subset of the history's ops, not always the heads.
                let all: Vec<OpId> = m.ops().map(|o| o.id().unwrap()).collect();
                let parents: Vec<OpId> = if rng.gen_bool(0.6) { m.heads() } else {
                    let mut pick: Vec<OpId> = all.choose_multiple(&mut rng, 2).copied().collect();
                    pick.sort(); pick.dedup(); pick
                };
                let op = SignedOp::sign_raw(by, Some(m.group()), parents, 0, kind).unwrap();
                if m.insert(op.clone()).is_ok() {
                    accepted.push(op);
                }
            }
            // Every shortcut agrees with folding the whole causal past.
            let all: HashSet<OpId> = m.nodes.keys().copied().collect();
            prop_assert_eq!(m.state(), &m.fold(&all));
            for id in all.iter() {
                let parents = m.nodes[id].parents.clone();
                if parents.is_empty() {
                    continue;
                }
                let full = m.fold(&m.ancestors_of(&parents, true));
                if let Some(cached) = m.fold_from_cache(&parents) {
                    prop_assert_eq!(&cached, &full);
                }
                prop_assert_eq!(&m.causal_state(&parents), &full);
            }
            let create = m.ops().next().unwrap().clone();
            let mut rng2 = rand::rngs::StdRng::seed_from_u64(shuffle);
            accepted.shuffle(&mut rng2);
            let mut copy = Membership::new(create).unwrap();
            let merged = copy.insert_many(accepted);
            prop_assert!(merged.waiting.is_empty() && merged.refused.is_empty());
            prop_assert_eq!(copy.state(), m.state());
        }
    }
}

