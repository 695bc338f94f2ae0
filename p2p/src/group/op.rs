//! A group membership operation: what it does, how it is signed and encoded, and the
//! group id its `Create` defines. Whether an operation takes effect is the history's
//! business ([`super::membership`]).

use std::collections::BTreeSet;

use kith_storage::{GroupId, Role};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{GroupError, GroupSecret};
use crate::identity::{Binding, Identity, PublicIdentity, verify_signature};
use crate::wire;

/// Domain separation for operation signatures.
pub const OP_CONTEXT: &[u8] = b"kith/group-op/2\0";
/// BLAKE3 key-derivation context of [`group_id_of`].
const GROUP_ID_CONTEXT: &str = "kith group id v2";
/// Largest encoded operation accepted, in bytes.
pub const MAX_OP_LEN: usize = 16 * 1024;
/// Most parents one operation may name: an honest author names its current heads,
/// which are few unless many admins acted at once.
pub const MAX_PARENTS: usize = 32;
/// Most relays a group's `Create` may name.
pub const MAX_GROUP_RELAYS: usize = 8;
const OP_VERSION: u32 = 2;

/// An operation's id: the BLAKE3 hash of its signed encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(#[serde(with = "wire::byte_array")] pub [u8; 32]);

impl std::fmt::Debug for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpId({}…)", hex::encode(&self.0[..6]))
    }
}

/// The id of the group that `create` starts: the first 16 bytes of
/// `blake3::derive_key("kith group id v2", encoding of the signed Create)`.
pub fn group_id_of(create: &SignedOp) -> Result<GroupId, GroupError> {
    let bytes = create.encode()?;
    let hash = blake3::derive_key(GROUP_ID_CONTEXT, &bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    Ok(GroupId(id))
}

/// How other members reach a member end to end: its identity and bound E2E key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCard {
    /// Peer id bytes.
    #[serde(with = "wire::bytes")]
    pub peer_id: Vec<u8>,
    /// X25519 key for pairwise sealing.
    #[serde(with = "wire::byte_array")]
    pub e2e_public: [u8; 32],
    /// Signature binding `e2e_public` to `peer_id` (unstamped: a card lives inside
    /// signed operations that every member, whatever its version, re-encodes to
    /// check, so it keeps the fields it always had; see [`Binding`]).
    #[serde(with = "wire::byte_array")]
    pub binding: [u8; 64],
}

impl MemberCard {
    /// The card of a public identity (its binding without the stamp).
    pub fn of(public: &PublicIdentity) -> MemberCard {
        MemberCard { peer_id: public.peer_id.to_bytes(), e2e_public: public.e2e_public, binding: public.binding.signature }
    }

    /// The card's binding: unstamped, so version 0.
    pub fn binding(&self) -> Binding {
        Binding::unversioned(self.binding)
    }

    /// The card as a verified public identity.
    pub fn verify(&self) -> Result<PublicIdentity, GroupError> {
        let peer_id = PeerId::from_bytes(&self.peer_id).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let public = PublicIdentity { peer_id, e2e_public: self.e2e_public, binding: self.binding() };
        public.verify().map_err(|_| GroupError::BadSignature)?;
        Ok(public)
    }
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// Start the group; its author is the owner. Its hash is the group's id.
    Create {
        /// The group's name.
        #[serde(deserialize_with = "wire::Max::<{ super::MAX_NAME_BYTES }>::text")]
        name: String,
        /// The owner's card.
        owner: MemberCard,
        /// The relays (multiaddr bytes) that keep the group's log.
        #[serde(default, serialize_with = "wire::bytes_seq::serialize", deserialize_with = "wire::Max::<{ crate::peer_record::MAX_ADDRS }>::bytes_seq")]
        relays: Vec<Vec<u8>>,
        /// The secret only members hold: names the group's relay log and gossip topic
        /// and keys the outer layer of its messages (see [`GroupSecret`]).
        secret: GroupSecret,
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
    /// The group; `None` in its `Create`, whose hash is the group id.
    pub group: Option<GroupId>,
    /// Author's peer id bytes.
    #[serde(with = "wire::bytes")]
    pub author: Vec<u8>,
    /// The operations this one builds on (the author's heads); empty only in `Create`.
    #[serde(deserialize_with = "wire::Max::<MAX_PARENTS>::seq")]
    pub parents: Vec<OpId>,
    /// Author's clock, ms since the Unix epoch (informational: orders nothing).
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

fn malformed(e: impl std::fmt::Display) -> GroupError {
    GroupError::Malformed(e.to_string())
}

fn signed_bytes(op: &Op) -> Result<Vec<u8>, GroupError> {
    let body = wire::encode(op).map_err(malformed)?;
    Ok([OP_CONTEXT, &body].concat())
}

impl SignedOp {
    /// Start a new group named `name` with us as owner and a fresh secret; returns the
    /// group's id with its `Create`.
    pub fn create(identity: &Identity, name: &str, relays: Vec<Vec<u8>>, at_ms: u64) -> Result<(GroupId, SignedOp), GroupError> {
        let kind = OpKind::Create {
            name: name.trim().to_owned(),
            owner: MemberCard::of(&identity.public()),
            relays,
            secret: GroupSecret::generate(),
        };
        let create = SignedOp::sign_raw(identity, None, Vec::new(), at_ms, kind)?;
        Ok((group_id_of(&create)?, create))
    }

    pub(crate) fn sign_raw(
        identity: &Identity,
        group: Option<GroupId>,
        parents: Vec<OpId>,
        at_ms: u64,
        kind: OpKind,
    ) -> Result<SignedOp, GroupError> {
        let op = Op { v: OP_VERSION, group, author: identity.peer_id().to_bytes(), parents, at_ms, kind };
        let sig = identity.sign(&signed_bytes(&op)?);
        Ok(SignedOp { op, sig })
    }

    /// Encode for the wire or the store.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        wire::encode(self).map_err(malformed)
    }

    /// Decode and check the signature and size caps (not yet the author's rights:
    /// those depend on the operation's causal state).
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, GroupError> {
        let op: SignedOp = wire::decode(bytes, MAX_OP_LEN).map_err(malformed)?;
        if op.op.v != OP_VERSION {
            return Err(GroupError::Malformed(format!("unsupported operation version {}", op.op.v)));
        }
        op.check_shape()?;
        op.check_signature()?;
        Ok(op)
    }

    /// Structure that holds whatever the history: a `Create` and only a `Create` has no
    /// parents and no group, parents are few and distinct.
    pub(crate) fn check_shape(&self) -> Result<(), GroupError> {
        let create = matches!(self.op.kind, OpKind::Create { .. });
        if create != self.op.parents.is_empty() || create != self.op.group.is_none() {
            return Err(GroupError::Malformed("only a Create has no parents and no group".into()));
        }
        if self.op.parents.len() > MAX_PARENTS {
            return Err(GroupError::Malformed(format!("{} parents, at most {MAX_PARENTS}", self.op.parents.len())));
        }
        let distinct: BTreeSet<&OpId> = self.op.parents.iter().collect();
        if distinct.len() != self.op.parents.len() {
            return Err(GroupError::Malformed("a parent named twice".into()));
        }
        if let OpKind::Create { relays, .. } = &self.op.kind
            && relays.len() > MAX_GROUP_RELAYS
        {
            return Err(GroupError::Malformed(format!("{} relays, at most {MAX_GROUP_RELAYS}", relays.len())));
        }
        Ok(())
    }

    pub(crate) fn check_signature(&self) -> Result<(), GroupError> {
        let author = self.author()?;
        verify_signature(&author, &signed_bytes(&self.op)?, &self.sig).map_err(|_| GroupError::BadSignature)
    }

    /// The author.
    pub fn author(&self) -> Result<PeerId, GroupError> {
        PeerId::from_bytes(&self.op.author).map_err(malformed)
    }

    /// Content hash: the operation's identity, named by its children.
    pub fn id(&self) -> Result<OpId, GroupError> {
        Ok(OpId(*blake3::hash(&self.encode()?).as_bytes()))
    }
}
