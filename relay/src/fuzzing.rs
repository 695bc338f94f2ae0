//! Fuzz target for the relay's TOML configuration ([`RelayConfig::from_toml_str`]).
//!
//! Like kith-p2p's `fuzzing` module: the body is one function that the AFL binary
//! `relay_config` of the `fuzz/` workspace and the property tests below both call.
//! Compiled for tests and with the `test-support` feature only.

use crate::config::{ConfigError, EXAMPLE_CONFIG, RelayConfig};

/// Parse the bytes (as UTF-8, invalid sequences replaced) as a relay configuration.
///
/// Invariants: what parses (parsing validates) serializes to TOML
/// and parses back to the same configuration; errors are syntax or invalid-key
/// errors whose line lies inside the text.
pub fn relay_config(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let config = match RelayConfig::from_toml_str(&text) {
        Ok(config) => config,
        Err(ConfigError::Invalid { line, .. }) => {
            assert!(line.is_none_or(|l| (1..=line_count(&text) + 1).contains(&l)), "error at line {line:?}");
            return;
        }
        Err(ConfigError::Syntax { line, .. }) => {
            assert!((1..=line_count(&text) + 1).contains(&line), "syntax error at line {line}");
            return;
        }
        Err(e) => panic!("parse: unexpected error {e:?}"),
    };
    let rendered = toml::to_string(&config).unwrap_or_else(|e| panic!("serialize a parsed configuration: {e}"));
    match RelayConfig::from_toml_str(&rendered) {
        Ok(again) => assert_eq!(again, config, "serialized configuration parses differently:\n{rendered}"),
        Err(e) => panic!("a serialized configuration does not parse: {e}\n{rendered}"),
    }
}

fn line_count(text: &str) -> usize {
    text.lines().count().max(1)
}

/// Valid configurations: the fuzzer's seed corpus (`fuzz/corpus/relay_config/`).
pub fn seeds() -> Vec<Vec<u8>> {
    let loopback = RelayConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        external_addresses: vec!["/ip4/203.0.113.7/tcp/4001".into()],
        ..RelayConfig::default()
    };
    let defaults = toml::to_string(&RelayConfig::default()).unwrap_or_default();
    let custom = toml::to_string(&loopback).unwrap_or_default();
    vec![
        EXAMPLE_CONFIG.as_bytes().to_vec(),
        defaults.into_bytes(),
        custom.into_bytes(),
        b"listen = [\"/ip4/0.0.0.0/tcp/4001\"]\n[mailbox]\nttl_days = 7\n".to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn seeds_parse_and_survive_the_target() {
        for seed in seeds() {
            let text = String::from_utf8_lossy(&seed).into_owned();
            assert!(RelayConfig::from_toml_str(&text).is_ok(), "seed does not parse:\n{text}");
            relay_config(&seed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn prop_relay_config_survives_arbitrary_text(text in "[a-z_\\[\\]=\"0-9./ \n]{0,200}") {
            relay_config(text.as_bytes());
        }

        #[test]
        fn prop_relay_config_survives_mutated_seeds(
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let seeds = seeds();
            let mut seed = seeds[which.index(seeds.len())].clone();
            let i = at.index(seed.len());
            if cut { seed.truncate(i) } else { seed[i] = byte }
            relay_config(&seed);
        }
    }
}
