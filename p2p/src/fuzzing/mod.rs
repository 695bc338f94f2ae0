//! Fuzz targets for every decoder that takes bytes from outside the node.
//!
//! Each target is one function `fn(&[u8])` that feeds the bytes to a decoder and
//! asserts its invariants — not only "no panic": whatever decodes re-encodes and
//! decodes again to the same value, size and count limits hold on what was accepted,
//! and failures are the decoder's typed errors. A violated invariant panics, which is
//! what a fuzzer reports as a crash.
//!
//! The same functions run in two places:
//! - the coverage-guided fuzzer: one AFL binary per target in the separate `fuzz/`
//!   workspace (`fuzz/run.sh`, see docs/TESTING.md), started from the seed corpus
//!   that [`seeds`] generates;
//! - property tests in this crate (`cargo test -p kith-p2p --lib fuzzing`), on
//!   arbitrary bytes and on mutated seeds, so a regression shows up in CI too.
//!
//! Targets whose input must get past a signature or an AEAD tag (sealed envelopes,
//! group messages and operations, peer records) take a first *mode* byte: one mode
//! hands the raw bytes to the decoder, the others build a valid signed or sealed
//! message from the rest of the input with the fixed keys of [`fixtures`], so the
//! fuzzer also reaches the code behind the cryptography.
//!
//! Compiled for tests and with the `test-support` feature only; nothing here is
//! part of the node.

pub mod config;
pub mod control;
pub mod fixtures;
pub mod group;
pub mod protocols;
pub mod records;
pub mod sealed;
pub mod seeds;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

/// A fuzz target: its name (the AFL binary's and the corpus directory's) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name of the target, e.g. `"envelope"`.
    pub name: &'static str,
    /// The target's body: decodes `bytes` and panics if an invariant fails.
    pub run: fn(&[u8]),
}

/// Every fuzz target of this crate, in a fixed order.
pub const TARGETS: [Target; 13] = [
    Target { name: "wire_frame", run: protocols::wire_frame },
    Target { name: "dm", run: protocols::dm },
    Target { name: "mailbox", run: protocols::mailbox },
    Target { name: "grouplog", run: protocols::grouplog },
    Target { name: "envelope", run: sealed::envelope },
    Target { name: "group_message", run: sealed::group_message },
    Target { name: "group_op", run: group::group_op },
    Target { name: "group_post", run: group::group_post },
    Target { name: "payload", run: records::payload },
    Target { name: "peer_record", run: records::peer_record },
    Target { name: "invite", run: records::invite },
    Target { name: "control", run: control::control },
    Target { name: "node_config", run: config::node_config },
];

/// The target named `name`, if there is one.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// Decoding failed only with a decoder's typed errors, never with an encoder's or a
/// stream's.
fn assert_decode_error(e: &crate::wire::WireError) {
    use crate::wire::WireError;
    assert!(
        matches!(
            e,
            WireError::TooLarge { .. }
                | WireError::Malformed(_)
                | WireError::TooMany { .. }
                | WireError::TooLong { .. }
                | WireError::TooDeep { .. }
                | WireError::UnsupportedVersion(_)
        ),
        "unexpected decode error {e:?}"
    );
}

/// Runs `even` or `odd` on the rest of `bytes` by the parity of its first byte, the
/// mode (nothing for empty input).
fn by_mode(bytes: &[u8], even: fn(&[u8]), odd: fn(&[u8])) {
    if let Some((mode, rest)) = split_mode(bytes) {
        if mode % 2 == 0 { even(rest) } else { odd(rest) }
    }
}

/// The first byte of `bytes` as a mode, and the rest.
fn split_mode(bytes: &[u8]) -> Option<(u8, &[u8])> {
    bytes.split_first().map(|(mode, rest)| (*mode, rest))
}
