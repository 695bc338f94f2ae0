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
