//! Getting the keystore passphrase: env `KITH_PASSPHRASE`, else a no-echo prompt.

use std::io::IsTerminal;

use crate::failure::{Failure, Result};

/// The environment variable scripts use to supply the passphrase.
pub(crate) const PASSPHRASE_ENV: &str = "KITH_PASSPHRASE";

/// The passphrase to unlock an existing keystore.
pub(crate) fn unlock() -> Result<String> {
    if let Some(value) = from_env() {
        return Ok(value);
    }
    prompt("kith passphrase: ")
}

/// A new passphrase, asked twice on a terminal so a typo cannot lock the user out.
pub(crate) fn choose() -> Result<String> {
    if let Some(value) = from_env() {
        return non_empty(value);
    }
    let first = prompt("new kith passphrase: ")?;
    let second = prompt("repeat passphrase: ")?;
    if first != second {
        return Err(Failure::usage("the two passphrases differ"));
    }
    non_empty(first)
}

fn from_env() -> Option<String> {
    std::env::var(PASSPHRASE_ENV).ok()
}

fn non_empty(value: String) -> Result<String> {
    if value.is_empty() {
        return Err(Failure::usage(
            "an empty passphrase is not allowed; use --no-passphrase to store the key unencrypted",
        ));
    }
    Ok(value)
}

fn prompt(label: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "a passphrase is needed: set {PASSPHRASE_ENV} or run in a terminal"
        )));
    }
    rpassword::prompt_password(label).map_err(|e| Failure::usage(format!("reading passphrase: {e}")))
}
