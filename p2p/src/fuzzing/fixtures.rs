//! Fixed keys shared by the fuzz targets and their seeds.
//!
//! Seeds are sealed and signed with these keys, so a committed corpus stays valid
//! for every later build: the same secrets always give the same identities.

use std::sync::OnceLock;

use kith_storage::GroupId;
use libp2p::PeerId;

use crate::group::GroupSecret;
use crate::group::membership::{MemberCard, Membership, OpKind, SignedOp};
use crate::group::sender_key::SenderKey;
use crate::identity::{Identity, PublicIdentity};

/// How many fixed identities there are ([`identity`] wraps around).
pub const IDENTITIES: usize = 4;

/// A fixed identity and its peer id (computing a peer id derives a public key, so
/// it is done once).
struct Fixed {
    identity: Identity,
    peer_id: PeerId,
    public: PublicIdentity,
}

fn all() -> &'static [Fixed; IDENTITIES] {
    static ALL: OnceLock<[Fixed; IDENTITIES]> = OnceLock::new();
    ALL.get_or_init(|| {
        std::array::from_fn(|i| {
            let n = u8::try_from(i).unwrap_or(u8::MAX);
            let identity = Identity::from_secrets([0x10 + n; 32], [0x20 + n; 32]);
            let peer_id = identity.peer_id();
            let public = identity.public();
            Fixed { identity, peer_id, public }
        })
    })
}

/// Fixed identity number `n` (modulo [`IDENTITIES`]). Identity 0 receives the
/// envelopes and owns the group; identity 1 sends envelopes and group messages.
pub fn identity(n: usize) -> &'static Identity {
    &all()[n % IDENTITIES].identity
}

/// The peer id of [`identity`]`(n)`.
pub fn peer_id(n: usize) -> PeerId {
    all()[n % IDENTITIES].peer_id
}

/// The public identity (peer id, E2E key, binding) of [`identity`]`(n)`.
pub fn public(n: usize) -> &'static PublicIdentity {
    &all()[n % IDENTITIES].public
}

/// The group secret of the fixed group.
pub fn group_secret() -> GroupSecret {
    GroupSecret::from_bytes([0x42; 32])
}

/// The fixed group's id (the id its `Create` defines).
pub fn group_id() -> GroupId {
    static ID: OnceLock<GroupId> = OnceLock::new();
    *ID.get_or_init(|| membership().group())
}

/// The sender key of identity 1 in the fixed group.
pub fn sender_key() -> SenderKey {
    SenderKey { generation: 3, index: 4, key: [0x33; 32] }
}

/// The fixed group's `Create`, by identity 0, at a fixed time. Deterministic:
/// Ed25519 signatures are.
pub fn create() -> &'static SignedOp {
    static CREATE: OnceLock<SignedOp> = OnceLock::new();
    CREATE.get_or_init(|| {
        let owner = identity(0);
        let kind = OpKind::Create {
            name: "fuzz".into(),
            owner: MemberCard::of(public(0)),
            relays: Vec::new(),
            secret: group_secret(),
        };
        // Signing a fixed, well-formed `Create` cannot fail.
        SignedOp::sign_raw(owner, None, Vec::new(), 1, kind).unwrap_or_else(|e| unreachable!("fixed Create: {e}"))
    })
}

/// A fresh membership of the fixed group (only its `Create`).
pub fn membership() -> Membership {
    static EMPTY: OnceLock<Membership> = OnceLock::new();
    EMPTY
        .get_or_init(|| Membership::new(create().clone()).unwrap_or_else(|e| unreachable!("fixed group: {e}")))
        .clone()
}

/// The clock the fuzz targets use for expiry checks (Unix seconds).
pub const NOW_SECS: u64 = 1_800_000_000;

/// Computes every fixture now. A fuzz binary calls it before its loop, so the
/// one-time work is done once before AFL forks and does not show up as unstable
/// coverage in the first input of every child.
pub fn warm() {
    for n in 0..IDENTITIES {
        let _ = (identity(n), public(n));
    }
    let _ = (create(), group_id());
}
