//! The `kith-relay` binary (placeholder until the networking is wired).

fn main() {}
