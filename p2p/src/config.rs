//! User settings: `config.toml` in the kith home.
//!
//! Every key is optional; a missing key takes the default documented on its
//! [`Config`] field, and a missing file means all defaults. Unknown keys are errors,
//! so a typo never silently does nothing. Errors name the offending key and its
//! 1-based line ([`ConfigError::Invalid`]).
//!
//! Parsing goes through a private "raw" mirror whose values keep their source spans
//! (`toml::Spanned`), so a bad multiaddr is reported at its own line even inside a
//! multi-line array; the raw values are then validated into [`Config`].
//! `docs/CONFIG.md` is the user-facing reference for these keys.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::Deserialize;
use toml::Spanned;

use crate::home::{Overwrite, write_private_file};

/// Longest accepted `display_name`, in characters. Names travel in invites and peer
/// records, so they are kept short.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// The listen addresses used when `listen` is not set: every IPv4 interface, an
/// OS-chosen port, over TCP and QUIC.
const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"];

/// The keys of `config.toml`, in the order the file lists them.
pub const KEYS: [&str; 9] = [
    "listen",
    "bootstrap",
    "relays",
    "mdns",
    "display_name",
    "read_receipts",
    "presence",
    "notify_command",
    "files.auto_download_max",
];

/// Errors loading, parsing or saving the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key has an invalid value, an unexpected type, or is not a known key.
    #[error("config.toml line {line}: `{key}`: {message}")]
    Invalid {
        /// The offending top-level key.
        key: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid TOML.
    #[error("config.toml line {line}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `kith config get|set` named a key config.toml does not have.
    #[error("no setting `{key}` (the settings: {})", KEYS.join(", "))]
    UnknownKey {
        /// The name given.
        key: String,
    },
    /// `kith config set` was given a value the key cannot take.
    #[error("`{key}`: {message}")]
    BadValue {
        /// The key being set.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing the file failed.
    #[error("config {}: {source}", path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The user's settings. `Config::default()` is what an empty or missing file gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `listen`: addresses the node listens on.
    ///
    /// Default: `["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]` (all IPv4
    /// interfaces, a port chosen by the OS, TCP and QUIC). An empty list means the
    /// node only dials out and is reachable only through relays.
    pub listen: Vec<Multiaddr>,
    /// `bootstrap`: peers to join the DHT through, as multiaddrs ending in
    /// `/p2p/<peer id>`.
    ///
    /// Default: `[]` (rely on mDNS and known contacts only).
    pub bootstrap: Vec<Multiaddr>,
    /// `relays`: pinned relays, as multiaddrs ending in `/p2p/<peer id>`. The node
    /// keeps reservations on them and advertises them in invites and its peer record;
    /// their mailboxes hold this user's mail while offline.
    ///
    /// Default: `[]`.
    pub relays: Vec<Multiaddr>,
    /// `mdns`: discover kith peers on the local network with mDNS.
    ///
    /// Default: `true`.
    pub mdns: bool,
    /// `display_name`: the name offered to contacts in invites and the peer record.
    /// At most [`MAX_DISPLAY_NAME_CHARS`] characters, not blank, no control characters.
    ///
    /// Default: none (contacts see the peer id or their own label).
    pub display_name: Option<String>,
    /// `read_receipts`: tell senders when their messages have been read.
    ///
    /// Default: `true`.
    pub read_receipts: bool,
    /// `presence`: tell contacts when you are online, and see when they are. Off,
    /// nothing is sent and nothing is shown.
    ///
    /// Default: `true`.
    pub presence: bool,
    /// `notify_command`: a shell command run (with `sh -c`) when a message arrives
    /// in a conversation that is not focused. Must not be blank.
    ///
    /// Default: none (no notifications).
    pub notify_command: Option<String>,
    /// `[files] auto_download_max`: received files up to this many bytes (from
    /// contacts and groups) are fetched without being asked for; larger ones on
    /// request (`kith get`). 0 fetches nothing by itself.
    ///
    /// Default: 26214400 (25 MiB).
    pub auto_download_max: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN
                .iter()
                .filter_map(|addr| addr.parse().ok())
                .collect(),
            bootstrap: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            display_name: None,
            read_receipts: true,
            presence: true,
            notify_command: None,
            auto_download_max: crate::files::DEFAULT_AUTO_DOWNLOAD_MAX,
        }
    }
}

/// The `[files]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    auto_download_max: Option<u64>,
}

/// The file as written: every key optional, values with their spans.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Vec<Spanned<String>>>,
    bootstrap: Option<Vec<Spanned<String>>>,
    relays: Option<Vec<Spanned<String>>>,
    mdns: Option<bool>,
    display_name: Option<Spanned<String>>,
    read_receipts: Option<bool>,
    presence: Option<bool>,
    notify_command: Option<Spanned<String>>,
    files: Option<RawFiles>,
}

impl Config {
    /// Parses the text of a `config.toml`, applying defaults for missing keys.
    ///
    /// Errors name the key and 1-based line: unknown keys, wrong types, invalid
    /// multiaddrs, invalid names. Invalid TOML gives [`ConfigError::Syntax`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // Parse the document once on its own, for syntax errors and so a serde error
        // span can be mapped back to the top-level key it falls in.
        let document = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            line: e.span().map_or(1, |span| line_of(text, span.start)),
            message: e.message().to_owned(),
        })?;
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = document
                .get_ref()
                .iter()
                .find(|(key, value)| {
                    span_contains(&key.span(), span.start) || span_contains(&value.span(), span.start)
                })
                .map(|(key, _)| key.get_ref().to_string())
                .unwrap_or_default();
            ConfigError::Invalid {
                key,
                line: line_of(text, span.start),
                message: e.message().to_owned(),
            }
        })?;

        let defaults = Config::default();
        let invalid = |key: &str, span: Range<usize>, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            line: line_of(text, span.start),
            message,
        };
        let addrs = |key: &str, values: Option<Vec<Spanned<String>>>, default: Vec<Multiaddr>| {
            let Some(values) = values else {
                return Ok(default);
            };
            values
                .into_iter()
                .map(|value| {
                    value.get_ref().parse::<Multiaddr>().map_err(|e| {
                        invalid(
                            key,
                            value.span(),
                            format!("invalid multiaddr {:?}: {e}", value.get_ref()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let display_name = match raw.display_name {
            None => None,
            Some(name) => {
                check_display_name(name.get_ref())
                    .map_err(|message| invalid("display_name", name.span(), message))?;
                Some(name.into_inner())
            }
        };
        let notify_command = match raw.notify_command {
            None => None,
            Some(command) if command.get_ref().trim().is_empty() => {
                return Err(invalid(
                    "notify_command",
                    command.span(),
                    "must not be blank".into(),
                ));
            }
            Some(command) => Some(command.into_inner()),
        };
        Ok(Config {
            listen: addrs("listen", raw.listen, defaults.listen)?,
            bootstrap: addrs("bootstrap", raw.bootstrap, defaults.bootstrap)?,
            relays: addrs("relays", raw.relays, defaults.relays)?,
            mdns: raw.mdns.unwrap_or(defaults.mdns),
            display_name,
            read_receipts: raw.read_receipts.unwrap_or(defaults.read_receipts),
            presence: raw.presence.unwrap_or(defaults.presence),
            notify_command,
            auto_download_max: raw.files.and_then(|f| f.auto_download_max).unwrap_or(defaults.auto_download_max),
        })
    }

    /// Loads `path`; a missing file gives [`Config::default`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Renders the configuration as TOML, every key written out (unset optional keys
    /// as commented-out examples), such that `Config::parse(&c.to_toml()) == Ok(c)`.
    pub fn to_toml(&self) -> String {
        let mut out =
            String::from("# kith configuration; every key is documented in docs/CONFIG.md.\n\n");
        let mut addrs = |key: &str, comment: &str, addrs: &[Multiaddr]| {
            out.push_str(&format!("# {comment}\n{key} = ["));
            if !addrs.is_empty() {
                out.push('\n');
                for addr in addrs {
                    out.push_str(&format!("    {},\n", quote(&addr.to_string())));
                }
            }
            out.push_str("]\n\n");
        };
        addrs("listen", "Addresses to listen on.", &self.listen);
        addrs(
            "bootstrap",
            "DHT bootstrap peers (multiaddrs ending in /p2p/<peer id>).",
            &self.bootstrap,
        );
        addrs(
            "relays",
            "Pinned relays (multiaddrs ending in /p2p/<peer id>).",
            &self.relays,
        );
        out.push_str(&format!(
            "# Discover peers on the local network.\nmdns = {}\n\n",
            self.mdns
        ));
        out.push_str("# The name offered to contacts.\n");
        match &self.display_name {
            Some(name) => out.push_str(&format!("display_name = {}\n\n", quote(name))),
            None => out.push_str("# display_name = \"Alice\"\n\n"),
        }
        out.push_str(&format!(
            "# Tell senders when their messages have been read.\nread_receipts = {}\n\n",
            self.read_receipts
        ));
        out.push_str(&format!(
            "# Tell contacts when you are online, and see when they are (off: neither).\npresence = {}\n\n",
            self.presence
        ));
        out.push_str("# Shell command run when a message arrives in an unfocused conversation.\n");
        match &self.notify_command {
            Some(command) => out.push_str(&format!("notify_command = {}\n", quote(command))),
            None => out.push_str("# notify_command = \"notify-send kith 'new message'\"\n"),
        }
        out.push_str(&format!(
            "\n[files]\n# Received files up to this many bytes download by themselves.\nauto_download_max = {}\n",
            self.auto_download_max
        ));
        out
    }

    /// One setting's effective value: lists as arrays of strings, flags as booleans,
    /// an unset optional setting as `null`.
    pub fn get(&self, key: &str) -> Result<serde_json::Value, ConfigError> {
        let strings = |addrs: &[Multiaddr]| serde_json::json!(addrs.iter().map(ToString::to_string).collect::<Vec<_>>());
        Ok(match key {
            "listen" => strings(&self.listen),
            "bootstrap" => strings(&self.bootstrap),
            "relays" => strings(&self.relays),
            "mdns" => self.mdns.into(),
            "display_name" => self.display_name.clone().into(),
            "read_receipts" => self.read_receipts.into(),
            "presence" => self.presence.into(),
            "notify_command" => self.notify_command.clone().into(),
            "files.auto_download_max" => self.auto_download_max.into(),
            _ => return Err(ConfigError::UnknownKey { key: key.to_owned() }),
        })
    }

    /// This configuration with `key` set from `value` as a person types it, checked
    /// exactly as the file is: lists (`listen`, `bootstrap`, `relays`) take items
    /// separated by commas or spaces (none: empty list); flags take
    /// `true|false|yes|no|on|off|1|0`; an empty value unsets `display_name` or
    /// `notify_command`.
    pub fn with(&self, key: &str, value: &str) -> Result<Config, ConfigError> {
        let bad = |message: String| ConfigError::BadValue { key: key.to_owned(), message };
        let mut table: toml::Table = toml::from_str(&self.to_toml()).map_err(|e| bad(e.to_string()))?;
        let value = match key {
            "listen" | "bootstrap" | "relays" => Some(toml::Value::Array(
                value.split([',', ' ']).filter(|item| !item.is_empty()).map(|item| item.into()).collect(),
            )),
            "mdns" | "read_receipts" | "presence" => Some(toml::Value::Boolean(match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                other => return Err(bad(format!("{other:?} is not true or false"))),
            })),
            "display_name" | "notify_command" if value.is_empty() => None,
            "display_name" | "notify_command" => Some(value.into()),
            "files.auto_download_max" => {
                let bytes: i64 = value.parse().map_err(|_| bad(format!("{value:?} is not a number of bytes")))?;
                if bytes < 0 {
                    return Err(bad(format!("{value:?} is not a number of bytes")));
                }
                let files = table.entry("files").or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(files) = files {
                    files.insert("auto_download_max".into(), toml::Value::Integer(bytes));
                }
                None
            }
            _ => return Err(ConfigError::UnknownKey { key: key.to_owned() }),
        };
        match value {
            Some(value) => table.insert(key.to_owned(), value),
            None if key.contains('.') => None,
            None => table.remove(key),
        };
        let text = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Invalid { message, .. } | ConfigError::Syntax { message, .. } => bad(message),
            other => other,
        })
    }

    /// Writes [`Config::to_toml`] to `path` atomically with mode 0600, replacing any
    /// existing file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_private_file(path, self.to_toml().as_bytes(), Overwrite::Allowed).map_err(|source| {
            ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Validates a display name (shared with invites): not blank, no control
/// characters, at most [`MAX_DISPLAY_NAME_CHARS`] characters. The name is kept as
/// written (not trimmed).
pub(crate) fn check_display_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("must not be blank".into())
    } else if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        Err(format!(
            "is longer than {MAX_DISPLAY_NAME_CHARS} characters"
        ))
    } else if name.chars().any(|c| c.is_control() || crate::display::is_unsafe(c)) {
        Err("must not contain control or text-direction characters".into())
    } else {
        Ok(())
    }
}

/// A TOML basic string with the escapes TOML requires.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Whether byte `offset` of a TOML document falls in `span` (an empty span counts as
/// one byte), for pointing errors at the key or value that caused them. Shared with
/// the relay's config.
pub fn span_contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The 1-based line holding byte `offset` of `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const FULL: &str = r#"
listen = [
    "/ip4/0.0.0.0/tcp/4001",
    "/ip6/::/udp/4001/quic-v1",
]
bootstrap = ["/dns4/boot.example.org/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
relays = ["/ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
mdns = false
display_name = "Ada \"the first\" Lovelace"
read_receipts = false
notify_command = "notify-send kith 'new message'"
"#;

    fn invalid(text: &str) -> (String, usize, String) {
        match Config::parse(text) {
            Err(ConfigError::Invalid { key, line, message }) => (key, line, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_gives_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.listen[0].to_string(), "/ip4/0.0.0.0/tcp/0");
        assert_eq!(config.listen[1].to_string(), "/ip4/0.0.0.0/udp/0/quic-v1");
        assert!(config.bootstrap.is_empty() && config.relays.is_empty());
        assert!(config.mdns && config.read_receipts);
        assert_eq!(config.display_name, None);
        assert_eq!(config.notify_command, None);
    }

    #[test]
    fn full_example_parses_and_round_trips() {
        let config = Config::parse(FULL).unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.listen[1].to_string(), "/ip6/::/udp/4001/quic-v1");
        assert_eq!(config.bootstrap.len(), 1);
        assert_eq!(config.relays.len(), 1);
        assert!(!config.mdns && !config.read_receipts);
        assert_eq!(
            config.display_name.as_deref(),
            Some("Ada \"the first\" Lovelace")
        );
        assert_eq!(
            config.notify_command.as_deref(),
            Some("notify-send kith 'new message'")
        );
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = Config::default();
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
        let empty_lists = Config {
            listen: vec![],
            ..Config::default()
        };
        assert_eq!(Config::parse(&empty_lists.to_toml()).unwrap(), empty_lists);
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let config = Config::parse("mdns = false\n").unwrap();
        assert_eq!(
            config,
            Config {
                mdns: false,
                ..Config::default()
            }
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let (key, line, message) = invalid("mdns = true\n\nlisten_on = []\n");
        assert_eq!((key.as_str(), line), ("listen_on", 3));
        assert!(message.contains("unknown field"), "{message}");
        let (key, line, _) = invalid("mdns = true\n[extra]\nx = 1\n");
        assert_eq!((key.as_str(), line), ("extra", 2));
    }

    #[test]
    fn bad_multiaddr_names_key_and_its_own_line() {
        let (key, line, message) =
            invalid("mdns = true\nlisten = [\n  \"/ip4/0.0.0.0/tcp/1\",\n  \"nonsense\",\n]\n");
        assert_eq!((key.as_str(), line), ("listen", 4));
        assert!(message.contains("nonsense"), "{message}");
        let (key, line, _) = invalid("\n\nrelays = [\"/ip4/1.2.3.4/tcp/x\"]\n");
        assert_eq!((key.as_str(), line), ("relays", 3));
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let (key, line, _) = invalid("listen = []\nmdns = \"yes\"\n");
        assert_eq!((key.as_str(), line), ("mdns", 2));
        let (key, line, _) = invalid("\nbootstrap = \"/ip4/1.2.3.4/tcp/1\"\n");
        assert_eq!((key.as_str(), line), ("bootstrap", 2));
    }

    #[test]
    fn invalid_strings_are_rejected() {
        let (key, line, _) = invalid("display_name = \"   \"\n");
        assert_eq!((key.as_str(), line), ("display_name", 1));
        let long = format!(
            "display_name = \"{}\"\n",
            "x".repeat(MAX_DISPLAY_NAME_CHARS + 1)
        );
        assert_eq!(invalid(&long).0, "display_name");
        assert_eq!(invalid("display_name = \"a\\u0007b\"\n").0, "display_name");
        assert_eq!(invalid("\nnotify_command = \"\"\n").1, 2);
    }

    #[test]
    fn syntax_error_has_line() {
        match Config::parse("mdns = true\nlisten = [\n") {
            Err(ConfigError::Syntax { line, .. }) => assert!(line >= 2),
            other => panic!("expected Syntax, got {other:?}"),
        }
        assert!(matches!(
            Config::parse("mdns = true\nmdns = false\n"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
    }

    #[test]
    fn load_missing_is_default_and_save_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        let config = Config::parse(FULL).unwrap();
        config.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Config::load(&path).unwrap(), config);
        Config::default().save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), Config::default());
    }

    #[test]
    fn documented_examples_parse() {
        let doc = include_str!("../../docs/CONFIG.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 2);
        let example = Config::parse(blocks[0]).unwrap();
        assert_eq!(example.display_name.as_deref(), Some("Ada"));
        assert_eq!(Config::parse(blocks[1]).unwrap(), Config::default());
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 100), 3);
    }

    #[test]
    fn get_and_set_one_key_validated_like_the_file() {
        let config = Config::default();
        assert_eq!(config.get("mdns").unwrap(), serde_json::json!(true));
        assert_eq!(config.get("display_name").unwrap(), serde_json::Value::Null);
        assert!(matches!(config.get("colour"), Err(ConfigError::UnknownKey { .. })));

        let named = config.with("display_name", "Alice").unwrap();
        assert_eq!(named.display_name.as_deref(), Some("Alice"));
        assert_eq!(named.with("display_name", "").unwrap().display_name, None);
        let quiet = config.with("mdns", "off").unwrap().with("read_receipts", "no").unwrap();
        assert!(!quiet.mdns && !quiet.read_receipts);
        let relays = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let pinned = config.with("relays", &format!("{relays}, {relays}")).unwrap();
        assert_eq!(pinned.get("relays").unwrap(), serde_json::json!([relays, relays]));
        assert!(config.with("relays", "").unwrap().relays.is_empty());

        // Refused with the key and the reason, and nothing half-applied.
        let error = config.with("listen", "/ip4/nope").unwrap_err();
        assert!(matches!(&error, ConfigError::BadValue { key, .. } if key == "listen"), "{error}");
        assert!(error.to_string().contains("/ip4/nope"), "{error}");
        assert!(matches!(config.with("mdns", "maybe"), Err(ConfigError::BadValue { .. })));
        assert!(matches!(config.with("display_name", "   "), Err(ConfigError::BadValue { .. })));
        assert!(matches!(config.with("colour", "red"), Err(ConfigError::UnknownKey { .. })));
        // Every key the file has can be read, and set back to what it reads.
        for key in KEYS {
            let value = config.get(key).unwrap();
            let typed = match &value {
                serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(","),
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            assert_eq!(config.with(key, &typed).unwrap().get(key).unwrap(), value, "{key}");
        }
    }
}
