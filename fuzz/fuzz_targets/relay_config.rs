//! AFL target `relay_config`: the body is `kith_relay::fuzzing` (see docs/TESTING.md).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        kith_relay::fuzzing::relay_config(data);
    });
}
