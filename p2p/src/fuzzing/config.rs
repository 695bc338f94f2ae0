//! Target for the node's `config.toml` ([`Config::parse`]).

use crate::config::{Config, ConfigError, MAX_DISPLAY_NAME_CHARS};

/// Parse the bytes (as UTF-8, invalid sequences replaced) as a node configuration.
///
/// Invariants: what parses renders with [`Config::to_toml`] to a text that parses to
/// the same configuration (the round trip `Config::to_toml` promises); its display
/// name is within [`MAX_DISPLAY_NAME_CHARS`] without control characters, a notify
/// command is not blank; errors are syntax or invalid-key errors with a line inside
/// the text.
pub fn node_config(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let config = match Config::parse(&text) {
        Ok(config) => config,
        Err(ConfigError::Invalid { line, .. } | ConfigError::Syntax { line, .. }) => {
            let lines = text.lines().count().max(1);
            assert!((1..=lines + 1).contains(&line), "error at line {line} of a {lines}-line text");
            return;
        }
        Err(e) => panic!("parse: unexpected error {e:?}"),
    };
    if let Some(name) = &config.display_name {
        assert!(name.chars().count() <= MAX_DISPLAY_NAME_CHARS && !name.chars().any(char::is_control));
        assert!(!name.trim().is_empty());
    }
    assert!(config.notify_command.as_deref().is_none_or(|c| !c.trim().is_empty()));
    let rendered = config.to_toml();
    match Config::parse(&rendered) {
        Ok(again) => assert_eq!(again, config, "to_toml does not round-trip:\n{rendered}"),
        Err(e) => panic!("a rendered configuration does not parse: {e}\n{rendered}"),
    }
}
