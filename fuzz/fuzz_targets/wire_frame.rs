//! AFL target `wire_frame`: the body is `kith_p2p::fuzzing` (see docs/TESTING.md).

fn main() {
    kith_p2p::fuzzing::fixtures::warm();
    afl::fuzz!(|data: &[u8]| {
        kith_p2p::fuzzing::protocols::wire_frame(data);
    });
}
