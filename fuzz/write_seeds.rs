//! Writes the seed corpus: `write_seeds DIR` creates `DIR/<target>/seed-<n>` for every
//! fuzz target from `kith_p2p::fuzzing::seeds` and `kith_relay::fuzzing::seeds`.
//! `fuzz/run.sh` does not need it; run it after changing an encoding, then commit
//! `fuzz/corpus/`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut all: Vec<(&str, Vec<Vec<u8>>)> = kith_p2p::fuzzing::TARGETS
        .iter()
        .map(|t| (t.name, kith_p2p::fuzzing::seeds::seeds(t.name)))
        .collect();
    all.push(("relay_config", kith_relay::fuzzing::seeds()));
    for (name, seeds) in all {
        let target = dir.join(name);
        std::fs::create_dir_all(&target)?;
        for (n, seed) in seeds.iter().enumerate() {
            std::fs::write(target.join(format!("seed-{n}")), seed)?;
        }
        println!("{name}: {} seeds", seeds.len());
    }
    Ok(())
}
