//! The fuzz targets as property tests: arbitrary bytes, and seeds mutated by
//! flipping, inserting and cutting bytes. Failing inputs proptest finds are kept in
//! `proptest-regressions/`; crashes the fuzzer finds become tests below.

use proptest::prelude::*;

use super::{TARGETS, Target, seeds::seeds, target};

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    /// XOR the byte at (index modulo length) with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Insert a byte at (index modulo length + 1).
    Insert(prop::sample::Index, u8),
    /// Cut the input at (index modulo length + 1).
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, m)| Edit::Flip(i, m)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        match edit {
            Edit::Flip(i, mask) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= mask;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, byte) => bytes.insert(i.index(bytes.len() + 1), *byte),
            Edit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        }
    }
    bytes
}

fn all_seeds() -> Vec<(Target, Vec<u8>)> {
    TARGETS.iter().flat_map(|t| seeds(t.name).into_iter().map(move |s| (*t, s))).collect()
}

#[test]
fn every_target_has_seeds_and_runs_them() {
    for t in TARGETS {
        let seeds = seeds(t.name);
        assert!(seeds.len() >= 2, "{} has {} seeds", t.name, seeds.len());
        for seed in seeds {
            (t.run)(&seed);
        }
    }
    assert!(target("envelope").is_some() && target("nonsense").is_none());
    super::control::cleanup();
}

/// The seeds get past the decoders, so the fuzzer starts from the deep paths.
#[test]
fn seeds_are_valid_inputs() {
    use crate::envelope::Opener;
    use crate::group::membership::SignedOp;
    use crate::group::sender_key;
    use crate::peer_record::PeerRecord;

    use super::fixtures::{NOW_SECS, group_id, group_secret, identity};

    let mode0 = |name: &str| -> Vec<Vec<u8>> {
        seeds(name).into_iter().filter(|s| s.first() == Some(&0)).map(|s| s[1..].to_vec()).collect()
    };
    for envelope in mode0("envelope") {
        let opened = Opener::new(identity(0), 0).open(&envelope).unwrap();
        crate::payload::Payload::decode(&opened.plaintext).unwrap();
    }
    let messages = mode0("group_message");
    assert!(sender_key::authenticate(&messages[0], group_id(), &group_secret()).is_ok());
    for op in mode0("group_op") {
        SignedOp::decode(&op).unwrap();
    }
    for record in mode0("peer_record") {
        PeerRecord::verify(&record, None, NOW_SECS).unwrap();
    }
    for uri in mode0("invite") {
        crate::invite::Invite::parse(std::str::from_utf8(&uri).unwrap()).unwrap();
    }
    for post in seeds("group_post") {
        crate::group::post::GroupPost::decode(&post).unwrap();
    }
    for config in seeds("node_config") {
        crate::config::Config::parse(std::str::from_utf8(&config).unwrap()).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_targets_survive_arbitrary_bytes(
        which in any::<prop::sample::Index>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let t = TARGETS[which.index(TARGETS.len())];
        (t.run)(&bytes);
        // The control target's scratch store would outlive the test otherwise.
        super::control::cleanup();
    }

    #[test]
    fn prop_targets_survive_mutated_seeds(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let seeds = all_seeds();
        let (t, seed) = &seeds[which.index(seeds.len())];
        (t.run)(&apply(seed.clone(), &edits));
        super::control::cleanup();
    }
}

/// Crashes AFL found in `group_op` (2026-12-03): a member left without an owner
/// after the owner's back-dated leave voided its own addition of the admin who added
/// that member. Fixed in `group::state::apply` (see the membership test
/// `a_change_whose_right_was_voided_does_nothing`).
#[test]
fn regression_group_op_members_without_owner() {
    let crashes: [&[u8]; 3] = [
        &[
            0x01, 0x00, 0x00, 0x41, 0x00, 0x01, 0x00, 0x02, 0xff, 0x00, 0xf9, 0xff, 0xfc, 0xfa, 0x02, 0x01, 0x02, 0x02,
            0x04, 0x00, 0x01, 0x03, 0x01, 0x02,
        ],
        &[
            0x01, 0x00, 0x00, 0x41, 0x00, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x02, 0x02, 0x04, 0x00, 0x20, 0x04,
            0x04, 0xda, 0x70, 0xc8, 0xc7, 0x1e, 0x01, 0x03, 0x01, 0x02,
        ],
        &[
            0x01, 0x00, 0x00, 0x41, 0x00, 0x01, 0x00, 0x02, 0x07, 0x5c, 0xc5, 0x9b, 0x00, 0x00, 0x80, 0x00, 0x20, 0x04,
            0x04, 0xda, 0x70, 0xc8, 0xc7, 0x1e, 0x01, 0x03, 0x01, 0x02,
        ],
    ];
    for input in crashes {
        super::group::group_op(input);
    }
}
