//! Targets for group membership operations ([`SignedOp::decode`] and
//! [`Membership::insert_many`]) and for group posts ([`GroupPost::decode`]).

use kith_storage::Role;

use crate::group::GroupError;
use crate::group::membership::{
    MAX_MEMBERS, MAX_PARENTS, MemberCard, Membership, OpId, OpKind, SignedOp,
};
use crate::group::post::GroupPost;
use crate::payload::{MAX_LAMPORT, MAX_TEXT_LEN};

use super::fixtures::{self, IDENTITIES, identity, peer_id, public};

/// Most operations one input of [`group_op`]'s history mode generates: each costs
/// a signature and three verifications, and eight already make every kind of fork.
const MAX_GENERATED_OPS: usize = 8;

/// Bytes of input per generated operation: signer, kind, argument, parents.
const OP_SPEC_LEN: usize = 4;

/// Mode byte even: decode the rest as one signed operation and insert it into the
/// fixed group. Odd: generate a history from the rest — up to
/// [`MAX_GENERATED_OPS`] operations of the fixed identities, four bytes each
/// (signer, kind, argument, which recent operations are its parents), properly
/// signed — decode each, and deliver them in an order the remaining bytes choose.
///
/// Invariants: a decoded operation re-encodes to bytes that decode to the same
/// operation and id, with few distinct parents; decoding fails only as malformed or
/// badly signed. The operations a batch accepted fold to the same state when
/// delivered again in reverse, one by one, or through [`Membership::from_ops`]
/// (the cached and the full fold agree); the state has at most one owner (exactly
/// one while anyone is a member), counts every operation, and stays within
/// [`MAX_MEMBERS`].
pub fn group_op(bytes: &[u8]) {
    super::by_mode(bytes, decode_op, history);
}

fn decode_op(bytes: &[u8]) {
    let op = match SignedOp::decode(bytes) {
        Ok(op) => op,
        Err(e) => {
            assert!(matches!(e, GroupError::Malformed(_) | GroupError::BadSignature), "decode: unexpected error {e:?}");
            return;
        }
    };
    reencode(&op);
    let mut parents = op.op.parents.clone();
    parents.sort();
    parents.dedup();
    assert!(parents.len() == op.op.parents.len() && parents.len() <= MAX_PARENTS);
    let mut membership = fixtures::membership();
    // An operation already held (the fixed `Create`) is neither new nor refused.
    let known = op.id().is_ok_and(|id| membership.contains(&id));
    let merged = membership.insert_many(vec![op]);
    assert_eq!(merged.fresh.len() + merged.waiting.len() + merged.refused.len(), usize::from(!known));
    check_state(&membership);
}

/// `op` encoded and decoded again: equal, or a panic.
fn reencode(op: &SignedOp) -> SignedOp {
    let encoded = op.encode().unwrap_or_else(|e| panic!("encode a decoded operation: {e}"));
    let again = SignedOp::decode(&encoded).unwrap_or_else(|e| panic!("decode a re-encoded operation: {e}"));
    assert_eq!(&again, op, "an operation encoded and decoded again differs");
    again
}

fn history(bytes: &[u8]) {
    let base = fixtures::membership();
    let create_id = fixtures::create().id().unwrap_or_else(|e| panic!("id of the fixed Create: {e}"));
    let mut ids = vec![create_id];
    let mut ops = Vec::new();
    let specs = bytes.chunks_exact(OP_SPEC_LEN).take(MAX_GENERATED_OPS);
    let order_bytes = bytes.get(specs.len() * OP_SPEC_LEN..).unwrap_or_default();
    for (n, spec) in specs.enumerate() {
        let [signer, kind, arg, parent_bits] = [spec[0], spec[1], spec[2], spec[3]];
        let parents = pick_parents(&ids, parent_bits);
        let at_ms = 2 + u64::try_from(n).unwrap_or(0);
        let signed = base
            .sign_on(identity(usize::from(signer)), &parents, at_ms, op_kind(kind, arg))
            .unwrap_or_else(|e| panic!("sign a generated operation: {e}"));
        // Through the decoder, as it would arrive.
        let op = reencode(&signed);
        ids.push(op.id().unwrap_or_else(|e| panic!("id of a generated operation: {e}")));
        ops.push(op);
    }
    shuffle(&mut ops, order_bytes);

    let mut batch = base.clone();
    let merged = batch.insert_many(ops.clone());
    assert_eq!(merged.fresh.len() + merged.waiting.len() + merged.refused.len(), ops.len());
    check_state(&batch);

    // The accepted operations, delivered again in reverse: all accepted, same state.
    let mut reversed = base.clone();
    let again = reversed.insert_many(merged.fresh.iter().rev().cloned().collect());
    assert!(again.refused.is_empty() && again.waiting.is_empty(), "refused on redelivery: {:?}", again.refused);
    assert_eq!(reversed.state(), batch.state(), "reverse delivery folds to another state");
    assert_eq!(reversed.heads(), batch.heads());

    // One by one, in the order they were applied (each insert folds).
    let mut single = base.clone();
    for op in &merged.fresh {
        let fresh = single.insert(op.clone()).unwrap_or_else(|e| panic!("insert an accepted operation: {e}"));
        assert!(fresh);
    }
    assert_eq!(single.state(), batch.state(), "one-by-one delivery folds to another state");

    // From scratch, as a node loads a stored history.
    let mut stored = vec![fixtures::create().clone()];
    stored.extend(merged.fresh.iter().cloned());
    let (loaded, _) = Membership::from_ops(stored).unwrap_or_else(|e| panic!("load an accepted history: {e}"));
    assert_eq!(loaded.state(), batch.state(), "a loaded history folds to another state");
}

/// The operation kind a spec's `kind` and `arg` bytes choose: every kind but
/// `Create`, about the fixed identities, with both roles, and names that are valid or
/// blank.
fn op_kind(kind: u8, arg: u8) -> OpKind {
    let who = usize::from(arg) % IDENTITIES;
    let role = if arg & 0x40 == 0 { Role::Member } else { Role::Admin };
    match kind % 7 {
        0 => OpKind::Add { member: MemberCard::of(public(who)), role },
        1 => OpKind::Remove { peer: peer_id(who).to_bytes() },
        2 => OpKind::SetRole { peer: peer_id(who).to_bytes(), role },
        3 => OpKind::Rename { name: if arg & 0x80 == 0 { format!("name {arg}") } else { " ".into() } },
        4 => OpKind::Leave,
        5 => OpKind::Add { member: MemberCard::of(public(who)), role: Role::Owner },
        _ => OpKind::SetRole { peer: peer_id(who).to_bytes(), role: Role::Owner },
    }
}

/// Parents from the bits of `bits` over the eight most recent ids (bit 0: the
/// newest); the newest alone if no bit is set.
fn pick_parents(ids: &[OpId], bits: u8) -> Vec<OpId> {
    let chosen: Vec<OpId> =
        ids.iter().rev().take(8).enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, id)| *id).collect();
    if chosen.is_empty() { ids.last().copied().into_iter().collect() } else { chosen }
}

/// Reorders `items` by swaps that `order` chooses (a Fisher–Yates shuffle driven by
/// input bytes instead of a random source).
fn shuffle<T>(items: &mut [T], order: &[u8]) {
    for (i, byte) in (1..items.len()).rev().zip(order) {
        items.swap(i, usize::from(*byte) % (i + 1));
    }
}

/// What holds for every group state.
fn check_state(membership: &Membership) {
    let state = membership.state();
    let owners = state.members.values().filter(|m| m.role == Role::Owner).count();
    assert!(owners <= 1, "{owners} owners");
    assert!(state.members.is_empty() || owners == 1, "members but no owner");
    assert!(state.members.len() <= MAX_MEMBERS);
    assert_eq!(state.version, u64::try_from(membership.len()).unwrap_or(u64::MAX), "version is not the history's size");
    assert!(!membership.heads().is_empty());
}

/// Decode the rest as a group post.
///
/// Invariants: a decoded post has a Lamport counter within [`MAX_LAMPORT`] and a
/// text within [`MAX_TEXT_LEN`], encodes and decodes again to itself; failures are
/// typed decode errors.
pub fn group_post(bytes: &[u8]) {
    let post = match GroupPost::decode(bytes) {
        Ok(post) => post,
        Err(e) => return super::assert_decode_error(&e),
    };
    let GroupPost::Text { lamport, text, .. } = &post;
    assert!(*lamport <= MAX_LAMPORT && text.len() <= MAX_TEXT_LEN);
    let encoded = post.encode().unwrap_or_else(|e| panic!("encode a decoded post: {e}"));
    let again = GroupPost::decode(&encoded).unwrap_or_else(|e| panic!("decode a re-encoded post: {e}"));
    assert_eq!(again, post);
}
