//! Printing results: JSON for scripts (`--json`), aligned text for people.
//!
//! Text for people is printed line by line through [`kith_p2p::display::sanitize_line`],
//! so no control character or bidi override reaches the terminal whatever a caller
//! forgot (callers sanitise each peer-chosen field too, to keep it on its line). JSON
//! is printed as serde_json writes it: its escaping already keeps control characters
//! out of the terminal, and programs get the exact text.

use std::io::Write;

use kith_p2p::display::sanitize_line;
use serde::Serialize;

use crate::failure::Result;

/// Print `value` as one line of JSON on stdout.
pub(crate) fn json<T: Serialize>(value: &T) -> Result {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(anyhow::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Print `key: value` rows with the keys padded to one width.
pub(crate) fn rows(rows: &[(&str, String)]) -> Result {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (key, value) in rows {
        writeln!(out, "{key:>width$}  {}", sanitize_line(value))?;
    }
    Ok(())
}

/// Print text on stdout: each of its lines sanitised, then a newline.
pub(crate) fn line(text: impl std::fmt::Display) -> Result {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", sanitized(&text.to_string()))?;
    Ok(())
}

/// `text` with every line sanitised; the line breaks themselves are kept.
pub(crate) fn sanitized(text: &str) -> String {
    text.split('\n').map(sanitize_line).collect::<Vec<_>>().join("\n")
}

/// Print one line whose `(text, marked)` parts are each sanitised, the marked ones
/// highlighted: bold and underlined on a terminal (unless `NO_COLOR` is set),
/// between `[` and `]` otherwise, so the marks survive a pipe.
pub(crate) fn marked_line(parts: &[(&str, bool)]) -> Result {
    use std::io::IsTerminal;
    let styled = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (open, close) = if styled { ("\x1b[1;4m", "\x1b[0m") } else { ("[", "]") };
    let mut out = std::io::stdout().lock();
    for (text, marked) in parts {
        let text = sanitize_line(&text.replace('\n', " "));
        if *marked {
            write!(out, "{open}{text}{close}")?;
        } else {
            write!(out, "{text}")?;
        }
    }
    writeln!(out)?;
    Ok(())
}
