//! The CLI's error type: a message with context plus the exit code it maps to.

use std::fmt;

/// Exit codes, documented in docs/CLI.md. Scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Something went wrong (I/O, network, a refused operation).
    Error = 1,
    /// Bad usage or failed authentication (wrong passphrase, identity exists, bad input).
    Usage = 2,
    /// The command needs a running node (`kith daemon`) and none runs on this home.
    NoNode = 3,
}

impl Code {
    /// The name `--json` errors carry when nothing more specific is known.
    fn name(self) -> &'static str {
        match self {
            Code::Error => "error",
            Code::Usage => "usage",
            Code::NoNode => "no_node",
        }
    }
}

/// A failed command: what to tell the user, which exit code to use, and the stable
/// name `--json` prints (docs/CLI.md).
#[derive(Debug)]
pub(crate) struct Failure {
    code: Code,
    name: &'static str,
    error: anyhow::Error,
}

impl Failure {
    pub(crate) fn new(code: Code, error: impl Into<anyhow::Error>) -> Failure {
        Failure { code, name: code.name(), error: error.into() }
    }

    pub(crate) fn usage(message: impl fmt::Display) -> Failure {
        Failure::new(Code::Usage, anyhow::anyhow!("{message}"))
    }

    /// The same failure under a more specific name (a node's error code, `timeout`).
    pub(crate) fn named(self, name: &'static str) -> Failure {
        Failure { name, ..self }
    }

    pub(crate) fn code(&self) -> i32 {
        self.code as i32
    }

    /// The failure as `--json` prints it on stderr, one line:
    /// `{"error":{"code":NAME,"message":TEXT,"exit":N}}`. Messages can quote names a
    /// peer chose, and stderr is usually a terminal: every character
    /// [`is_unsafe`](kith_p2p::display::is_unsafe) there is written as a `\uXXXX`
    /// escape (serde_json escapes only C0 controls), so the JSON keeps the exact text
    /// and the terminal sees none of it.
    pub(crate) fn to_json_line(&self) -> String {
        let value =
            serde_json::json!({"error": {"code": self.name, "message": format!("{:#}", self.error), "exit": self.code()}});
        json_escaped(&value.to_string())
    }

    /// A write to a closed stdout: the reader went away, which is not our failure.
    /// (A broken control connection is a [`ClientError`](kith_p2p::control::ClientError)
    /// and does not count.)
    pub(crate) fn is_broken_pipe(&self) -> bool {
        let from_the_node = self.error.chain().any(|cause| cause.is::<kith_p2p::control::ClientError>());
        !from_the_node
            && self.error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

/// Anything else becomes a plain error (exit 1); specific cases pick their code.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::new(Code::Error, error)
    }
}

/// Shorthand for command results.
pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;

/// `json` (serialised JSON) with every remaining terminal-unsafe character written as
/// a `\u` escape: such characters can only occur inside strings, where an escape
/// means the same character.
fn json_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if kith_p2p::display::is_unsafe(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_keep_the_text_and_show_the_terminal_none_of_its_controls() {
        let hostile = "\u{1b}[2J\u{9b}1m\u{202e}evil\u{2066}\u{7f}\nnext";
        let failure = Failure::usage(format!("several contacts match: {hostile}"));
        let line = failure.to_json_line();
        assert!(!line.chars().any(kith_p2p::display::is_unsafe), "{line:?}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["error"]["message"], format!("several contacts match: {hostile}"));
        assert_eq!(value["error"]["code"], "usage");
        assert_eq!(value["error"]["exit"], 2);
    }
}
