//! The rules of group membership, apart from the swarm and the store: what this node
//! does when new operations change who is in a group (gossip, its sender key, dials,
//! the relays' log, forwarding), who gets an operation it authored and in what form,
//! how a history is cut into payloads, and which concurrent operations go to whom.
//! The actor applies the operations, asks these, and carries out what they say.

use std::collections::BTreeMap;

use libp2p::PeerId;

use crate::group::membership::{GroupState, Membership, OpKind, SignedOp};

/// Operations forwarded to one member per payload (they are small; a history is cut
/// by bytes instead, see [`split_history`]).
pub(crate) const FORWARDED_OPS_PER_PAYLOAD: usize = 64;

/// What this node's gossip subscription to a group's topic does after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gossip {
    /// We became a member: hear the group's messages.
    Subscribe,
    /// We stopped being one: hear nothing more.
    Unsubscribe,
}

/// What follows a change of a group we take part in (not an invitation: an
/// invitation is stored and shown, nothing else).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reaction {
    /// Subscribe to or leave the group's gossip topic.
    pub(crate) gossip: Option<Gossip>,
    /// Start a new generation of our sender key before sharing it: someone left, and
    /// must not read what we send from now on.
    pub(crate) rotate_key: bool,
    /// Members who get our (current, or rotated) sender key over the 1:1 channel.
    pub(crate) share_key_with: Vec<PeerId>,
    /// Members to dial, so that group traffic reaches them soon.
    pub(crate) dial: Vec<PeerId>,
    /// Fetch the group's log from its relays (what was said before we joined).
    pub(crate) fetch_log: bool,
    /// Forward the new operations that were concurrent with an addition (see
    /// [`concurrent_forwards`]).
    pub(crate) forward_concurrent: bool,
}

/// What this node does after operations moved a group it takes part in from
/// `before` to `after`. `from` is the peer they came from (`None`: our own).
///
/// - We joined: subscribe, give our key to every other member, dial them and fetch
///   the log.
/// - Someone else left or was removed: a new key generation, for those who stay only.
/// - Members were added: our key to them, and dial them.
/// - We left or were removed: unsubscribe.
///
/// Only a node that already was a member forwards concurrent operations: one that
/// just joined holds nothing the others lack.
pub(crate) fn after_change(me: &PeerId, before: &GroupState, after: &GroupState, from: Option<PeerId>) -> Reaction {
    let was_member = before.members.contains_key(me);
    let is_member = after.members.contains_key(me);
    let others: Vec<PeerId> = after.members.keys().filter(|p| *p != me).copied().collect();
    let mut reaction = Reaction { forward_concurrent: from.is_some() && was_member, ..Reaction::default() };
    if is_member && !was_member {
        reaction.gossip = Some(Gossip::Subscribe);
        reaction.share_key_with = others.clone();
        reaction.dial = others;
        reaction.fetch_log = true;
    } else if is_member {
        let departed = after.departed.difference(&before.departed).any(|p| p != me);
        if departed {
            reaction.rotate_key = true;
            reaction.share_key_with = others;
        } else {
            let added: Vec<PeerId> = others.into_iter().filter(|p| !before.members.contains_key(p)).collect();
            reaction.share_key_with = added.clone();
            reaction.dial = added;
        }
    } else if was_member {
        reaction.gossip = Some(Gossip::Unsubscribe);
    }
    reaction
}

/// What one recipient of an operation we authored gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Carry {
    /// The whole history (a member the operation adds: it knows nothing yet).
    History,
    /// The operation alone.
    Op,
}

/// Who gets an operation of `kind` that we authored, which moved the group from
/// `before` to `after`, and in what form: every member of `after` but us, and a
/// member it removes (so it learns it is out).
pub(crate) fn authored_recipients(me: &PeerId, before: &GroupState, after: &GroupState, kind: &OpKind) -> Vec<(PeerId, Carry)> {
    let mut recipients: Vec<PeerId> = after.members.keys().copied().collect();
    if let OpKind::Remove { peer } = kind
        && let Ok(removed) = PeerId::from_bytes(peer)
        && !recipients.contains(&removed)
    {
        recipients.push(removed);
    }
    recipients
        .into_iter()
        .filter(|peer| peer != me)
        .map(|peer| {
            let added = !before.members.contains_key(&peer) && after.members.contains_key(&peer);
            (peer, if added { Carry::History } else { Carry::Op })
        })
        .collect()
}

/// Cut encoded operations (parents first) into payloads of at most `max_bytes` of
/// operations each, keeping their order. An operation longer than `max_bytes` goes
/// alone. No operations, no payloads.
pub(crate) fn split_history(encoded: impl IntoIterator<Item = Vec<u8>>, max_bytes: usize) -> Vec<Vec<Vec<u8>>> {
    let mut parts: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0;
    for op in encoded {
        match parts.last_mut() {
            Some(part) if bytes + op.len() <= max_bytes => {
                bytes += op.len();
                part.push(op);
            }
            _ => {
                bytes = op.len();
                parts.push(vec![op]);
            }
        }
    }
    parts
}

/// The member an operation adds, if it is an `Add`.
fn added_by(op: &SignedOp) -> Option<PeerId> {
    match &op.op.kind {
        OpKind::Add { member, .. } => PeerId::from_bytes(&member.peer_id).ok(),
        _ => None,
    }
}

/// Operations that must be forwarded after `fresh` ones came from `from`, as
/// payloads per member (at most [`FORWARDED_OPS_PER_PAYLOAD`] each).
///
/// An operation made without knowledge of a concurrent `Add` never reached the added
/// member from its author, and an `Add` we just learned was sent with a history that
/// lacked the concurrent operations we hold: each goes to the member the other adds.
/// Never to us, to `from` (it has them) or to anyone no longer a member. Duplicates
/// are dropped here and harmless at the receiver.
pub(crate) fn concurrent_forwards(
    me: &PeerId,
    from: &PeerId,
    membership: &Membership,
    fresh: &[SignedOp],
) -> Vec<(PeerId, Vec<Vec<u8>>)> {
    let state = membership.state();
    let mut by_peer: BTreeMap<PeerId, Vec<Vec<u8>>> = BTreeMap::new();
    let mut send = |peer: PeerId, op: &SignedOp| {
        if peer == *me || peer == *from || !state.members.contains_key(&peer) {
            return;
        }
        if let Ok(bytes) = op.encode() {
            let list = by_peer.entry(peer).or_default();
            if !list.contains(&bytes) {
                list.push(bytes);
            }
        }
    };
    for op in fresh {
        let Ok(id) = op.id() else { continue };
        for other in membership.concurrent_with(&id) {
            if let Some(member) = added_by(other) {
                send(member, op);
            }
            if let Some(member) = added_by(op) {
                send(member, other);
            }
        }
    }
    by_peer
        .into_iter()
        .flat_map(|(peer, ops)| {
            ops.chunks(FORWARDED_OPS_PER_PAYLOAD).map(|part| (peer, part.to_vec())).collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_storage::Role;

    use super::*;
    use crate::group::test_support::{add, group, people, remove};
    use crate::identity::Identity;

    /// Sign `kind` by `by` on the heads of `m`, insert it, and give the state before.
    fn act(m: &mut Membership, by: &Identity, kind: OpKind) -> (GroupState, SignedOp) {
        let before = m.state().clone();
        let op = m.sign(by, 0, kind).unwrap();
        assert!(m.insert(op.clone()).unwrap());
        (before, op)
    }

    fn ids(people: &[&Identity]) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = people.iter().map(|p| p.peer_id()).collect();
        ids.sort();
        ids
    }

    fn sorted(mut peers: Vec<PeerId>) -> Vec<PeerId> {
        peers.sort();
        peers
    }

    #[test]
    fn joining_subscribes_gives_our_key_to_everyone_dials_them_and_fetches_the_log() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member));
        let (before, _) = act(&mut m, &p[0], add(&p[2], Role::Member));
        // p[2] hears of its own addition from p[0].
        let r = after_change(&p[2].peer_id(), &before, m.state(), Some(p[0].peer_id()));
        assert_eq!(r.gossip, Some(Gossip::Subscribe));
        assert!(!r.rotate_key);
        assert_eq!(sorted(r.share_key_with), ids(&[&p[0], &p[1]]));
        assert_eq!(sorted(r.dial), ids(&[&p[0], &p[1]]));
        assert!(r.fetch_log);
        assert!(!r.forward_concurrent, "a member that just joined has nothing the others lack");
        // The owner creating the group is the same rule with nobody else yet.
        let fresh = group(&p[3]);
        let r = after_change(&p[3].peer_id(), &GroupState::default(), fresh.state(), None);
        assert_eq!(r.gossip, Some(Gossip::Subscribe));
        assert!(r.share_key_with.is_empty() && r.dial.is_empty());
    }

    #[test]
    fn an_addition_gives_our_key_to_and_dials_only_the_added_member() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member));
        let (before, _) = act(&mut m, &p[0], add(&p[2], Role::Member));
        let r = after_change(&p[1].peer_id(), &before, m.state(), Some(p[0].peer_id()));
        assert_eq!(r.gossip, None);
        assert!(!r.rotate_key);
        assert_eq!(r.share_key_with, vec![p[2].peer_id()]);
        assert_eq!(r.dial, vec![p[2].peer_id()]);
        assert!(!r.fetch_log);
        assert!(r.forward_concurrent, "a member that was one forwards what came from another");
        // Our own operation forwards nothing: nobody sent it to us.
        let (before, _) = act(&mut m, &p[0], add(&p[3], Role::Member));
        let r = after_change(&p[0].peer_id(), &before, m.state(), None);
        assert_eq!(r.share_key_with, vec![p[3].peer_id()]);
        assert!(!r.forward_concurrent);
    }

    #[test]
    fn when_someone_is_removed_or_leaves_our_key_rotates_for_those_who_stay_only() {
        let p = people(4);
        let mut m = group(&p[0]);
        for who in &p[1..4] {
            act(&mut m, &p[0], add(who, Role::Member));
        }
        let (before, _) = act(&mut m, &p[0], remove(&p[3]));
        let r = after_change(&p[1].peer_id(), &before, m.state(), Some(p[0].peer_id()));
        assert!(r.rotate_key);
        assert_eq!(sorted(r.share_key_with), ids(&[&p[0], &p[2]]), "never to the removed member");
        assert!(r.dial.is_empty());
        assert_eq!(r.gossip, None);
        // Leaving is the same for those who stay.
        let (before, _) = act(&mut m, &p[2], OpKind::Leave);
        let r = after_change(&p[0].peer_id(), &before, m.state(), Some(p[2].peer_id()));
        assert!(r.rotate_key);
        assert_eq!(r.share_key_with, vec![p[1].peer_id()]);
    }

    #[test]
    fn when_we_are_removed_we_unsubscribe_and_hand_out_nothing() {
        let p = people(3);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member));
        act(&mut m, &p[0], add(&p[2], Role::Member));
        let (before, _) = act(&mut m, &p[0], remove(&p[1]));
        let r = after_change(&p[1].peer_id(), &before, m.state(), Some(p[0].peer_id()));
        assert_eq!(r.gossip, Some(Gossip::Unsubscribe));
        assert!(!r.rotate_key && r.share_key_with.is_empty() && r.dial.is_empty() && !r.fetch_log);
        // A change that never involved us does nothing either.
        let stranger = people(5).pop().unwrap();
        let r = after_change(&stranger.peer_id(), &before, m.state(), Some(p[0].peer_id()));
        assert_eq!(r, Reaction::default());
    }

    #[test]
    fn an_authored_addition_sends_the_history_to_the_new_member_and_the_op_to_the_rest() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Member));
        let (before, op) = act(&mut m, &p[0], add(&p[2], Role::Member));
        let mut sent = authored_recipients(&p[0].peer_id(), &before, m.state(), &op.op.kind);
        sent.sort();
        let mut expected = vec![(p[1].peer_id(), Carry::Op), (p[2].peer_id(), Carry::History)];
        expected.sort();
        assert_eq!(sent, expected, "never to ourselves");
        // A removal also goes to the removed member, which gets the operation only.
        let (before, op) = act(&mut m, &p[0], remove(&p[1]));
        let mut sent = authored_recipients(&p[0].peer_id(), &before, m.state(), &op.op.kind);
        sent.sort();
        let mut expected = vec![(p[1].peer_id(), Carry::Op), (p[2].peer_id(), Carry::Op)];
        expected.sort();
        assert_eq!(sent, expected);
    }

    #[test]
    fn a_history_is_cut_into_payloads_that_fit_in_order() {
        let ops: Vec<Vec<u8>> = [40, 50, 20, 90, 10, 200, 5].iter().map(|&n| vec![n as u8; n]).collect();
        let parts = split_history(ops.clone(), 100);
        let lens: Vec<Vec<usize>> = parts.iter().map(|p| p.iter().map(Vec::len).collect()).collect();
        assert_eq!(lens, vec![vec![40, 50], vec![20], vec![90, 10], vec![200], vec![5]]);
        assert_eq!(parts.concat(), ops, "nothing lost, nothing reordered");
        assert!(split_history(Vec::new(), 100).is_empty(), "no history, no payload");
    }

    #[test]
    fn operations_concurrent_with_an_addition_reach_the_added_member() {
        let p = people(5);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin));
        // On the same heads: the owner adds p[2] while the admin adds p[3].
        let theirs = m.sign(&p[1], 0, add(&p[3], Role::Member)).unwrap();
        let (_, ours) = act(&mut m, &p[0], add(&p[2], Role::Member));
        assert!(m.insert(theirs.clone()).unwrap());
        // The admin's operation reaches the owner: the owner's Add goes to the member
        // the admin added, and the admin's Add to the member the owner added.
        let forwards = concurrent_forwards(&p[0].peer_id(), &p[1].peer_id(), &m, std::slice::from_ref(&theirs));
        let mut expected = vec![
            (p[2].peer_id(), vec![theirs.encode().unwrap()]),
            (p[3].peer_id(), vec![ours.encode().unwrap()]),
        ];
        expected.sort();
        assert_eq!(forwards, expected);
        // Never to us: p[2] holding both sends only p[3] its missing operation.
        let forwards = concurrent_forwards(&p[2].peer_id(), &p[1].peer_id(), &m, std::slice::from_ref(&theirs));
        assert_eq!(forwards, vec![(p[3].peer_id(), vec![ours.encode().unwrap()])]);
        // Never back to whoever sent them: had p[3] itself passed the admin's Add on,
        // only p[2] would get it.
        let forwards = concurrent_forwards(&p[0].peer_id(), &p[3].peer_id(), &m, std::slice::from_ref(&theirs));
        assert_eq!(forwards, vec![(p[2].peer_id(), vec![theirs.encode().unwrap()])]);
        // An operation concurrent with nothing goes nowhere.
        let (_, later) = act(&mut m, &p[0], add(&p[4], Role::Member));
        assert!(concurrent_forwards(&p[0].peer_id(), &p[1].peer_id(), &m, &[later]).is_empty());
    }

    #[test]
    fn many_forwarded_operations_go_in_payloads_of_at_most_64() {
        let p = people(3);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin));
        // The admin renames 70 times while the owner, knowing none of it, adds p[2].
        let mut renames = Vec::new();
        let mut theirs = m.clone();
        for i in 0..70 {
            let (_, op) = act(&mut theirs, &p[1], OpKind::Rename { name: format!("club {i}") });
            renames.push(op);
        }
        act(&mut m, &p[0], add(&p[2], Role::Member));
        for op in &renames {
            assert!(m.insert(op.clone()).unwrap());
        }
        let forwards = concurrent_forwards(&p[0].peer_id(), &p[1].peer_id(), &m, &renames);
        let sizes: Vec<(PeerId, usize)> = forwards.iter().map(|(peer, ops)| (*peer, ops.len())).collect();
        assert_eq!(sizes, vec![(p[2].peer_id(), 64), (p[2].peer_id(), 6)], "all 70 reach the added member");
        let sent: Vec<Vec<u8>> = forwards.into_iter().flat_map(|(_, ops)| ops).collect();
        assert_eq!(sent, renames.iter().map(|op| op.encode().unwrap()).collect::<Vec<_>>(), "in order, once each");
    }

    #[test]
    fn a_removed_member_gets_no_forwarded_operations() {
        let p = people(4);
        let mut m = group(&p[0]);
        act(&mut m, &p[0], add(&p[1], Role::Admin));
        let theirs = m.sign(&p[1], 0, add(&p[3], Role::Member)).unwrap();
        act(&mut m, &p[0], add(&p[2], Role::Member));
        assert!(m.insert(theirs.clone()).unwrap());
        act(&mut m, &p[0], remove(&p[2]));
        let forwards = concurrent_forwards(&p[0].peer_id(), &p[1].peer_id(), &m, std::slice::from_ref(&theirs));
        assert!(forwards.iter().all(|(peer, _)| *peer != p[2].peer_id()), "p[2] is no longer a member");
        assert_eq!(forwards.len(), 1);
    }
}
