//! AFL target `control`: the body is `kith_p2p::fuzzing::control` (see docs/TESTING.md).

fn main() {
    kith_p2p::fuzzing::fixtures::warm();
    afl::fuzz!(|data: &[u8]| {
        kith_p2p::fuzzing::control::control(data);
    });
    // A process whose loop ends removes its scratch store; run.sh removes the rest.
    kith_p2p::fuzzing::control::cleanup();
}
