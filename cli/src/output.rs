//! Printing results: JSON for scripts (`--json`), aligned text for people.

use std::io::Write;

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
        writeln!(out, "{key:>width$}  {value}")?;
    }
    Ok(())
}

/// Print a line of text on stdout.
pub(crate) fn line(text: impl std::fmt::Display) -> Result {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}
