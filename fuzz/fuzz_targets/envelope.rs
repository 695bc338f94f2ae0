//! AFL target `envelope`: the body is `kith_p2p::fuzzing` (see docs/TESTING.md).

fn main() {
    kith_p2p::fuzzing::fixtures::warm();
    afl::fuzz!(|data: &[u8]| {
        kith_p2p::fuzzing::sealed::envelope(data);
    });
}
