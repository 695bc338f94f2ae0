//! AFL target `peer_record`: the body is `kith_p2p::fuzzing` (see docs/TESTING.md).

fn main() {
    kith_p2p::fuzzing::fixtures::warm();
    afl::fuzz!(|data: &[u8]| {
        kith_p2p::fuzzing::records::peer_record(data);
    });
}
